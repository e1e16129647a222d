//! The macros with agentguard renamed in Cargo.toml (`guard = { package = "agentguard", ... }`): with
//! `crate = guard` the generated code compiles and runs through a guard; without it, one error says what to write.
//! Regenerate the `.stderr` files with `TRYBUILD=overwrite cargo test -p agentguard-ui-renamed` and review the diff.

#[test]
fn ui_renamed() {
    let t = trybuild::TestCases::new();
    t.pass("pass/*.rs");
    t.compile_fail("fail/*.rs");
}
