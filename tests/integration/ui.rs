//! Compile errors of `#[derive(DiffModel)]`, with committed `.stderr` files.

#[test]
fn derive_compile_errors() {
    let t = trybuild::TestCases::new();
    t.compile_fail("ui/*.rs");
}
