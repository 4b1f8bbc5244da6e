//! Compile errors of `#[derive(DiffModel)]`, and of a typed key used for
//! another model type, with committed `.stderr` files.

#[test]
fn derive_compile_errors() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
