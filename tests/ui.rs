//! Compile-time guarantees of the macros, pinned with trybuild: every misuse is a spanned error that says what to
//! do, and every supported shape compiles. Regenerate the `.stderr` files with `TRYBUILD=overwrite cargo test
//! --test ui` and review the diff.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/gate/*.rs");
    t.compile_fail("tests/ui/tool/*.rs");
    t.pass("tests/ui/pass/*.rs");
}
