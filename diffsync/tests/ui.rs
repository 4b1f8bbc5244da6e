//! Compile errors of `#[derive(DiffModel)]`, of a typed key used for
//! another model type and of a sync into a read-only adapter, with
//! committed `.stderr` files.

#[test]
fn derive_compile_errors() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
