//! `#[derive(DiffModel)]` for the `diffsync` crate. See the `diffsync` crate
//! docs for the attributes it reads.

mod ast;
mod attr;
mod expand;
mod valid;

use proc_macro::TokenStream;
use syn::{DeriveInput, parse_macro_input};

/// Derives `diffsync::DiffModel` and `diffsync::StaticModel` for a struct with named fields.
#[proc_macro_derive(DiffModel, attributes(diffsync))]
pub fn derive_diff_model(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand::derive(&input).into()
}
