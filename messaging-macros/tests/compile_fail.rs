//! The compile-time checks of typed services: mistakes a user would otherwise find at run
//! time must not compile. Each case's expected compiler output is in `ui/<case>.stderr`
//! (regenerate with `TRYBUILD=overwrite` after a compiler upgrade, and review the diff).

#[test]
fn mistakes_do_not_compile() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/*.rs");
}
