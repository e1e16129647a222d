//! Compile-time guarantees of the macros, pinned with trybuild: every misuse is a spanned error that says what to
//! do, and every supported shape compiles. Regenerate the `.stderr` files with `TRYBUILD=overwrite cargo test
//! -p agentguard-ui-tests` and review the diff.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("gate/*.rs");
    t.compile_fail("tool/*.rs");
    t.compile_fail("rig/*.rs");
    t.pass("pass/*.rs");
}
