//! Code generation for `#[derive(DiffModel)]`.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::DeriveInput;
use syn::spanned::Spanned;

use crate::ast::{Field, Input, kind_of};
use crate::attr::{CompareMode, Errors};
use crate::valid;

pub fn derive(input: &DeriveInput) -> TokenStream {
    let mut errors = Errors::default();
    let parsed = Input::from_syn(input, &mut errors);
    if let Some(p) = &parsed {
        valid::check(p, &mut errors);
    }
    match (parsed, errors.finish()) {
        (Some(p), Ok(())) => expand(&p),
        (_, Err(e)) => {
            let stub = stub(input);
            let errs = e.to_compile_error();
            quote!(#errs #stub)
        }
        (None, Ok(())) => TokenStream::new(),
    }
}

/// Impls with empty bodies, so a user sees the attribute error and not a
/// cascade of "DiffModel is not implemented" errors (nor one at a parent
/// type's `children(..)`, which needs `StaticModel`).
fn stub(input: &DeriveInput) -> TokenStream {
    let ident = &input.ident;
    let (ig, tg, wc) = input.generics.split_for_impl();
    let p = quote!(::diffsync::__private);
    quote! {
        impl #ig #p::DiffModel for #ident #tg #wc {
            type Field = ::core::convert::Infallible;
            fn field(_: &str) -> ::core::option::Option<Self::Field> { ::core::unreachable!() }
            fn schema(&self) -> &#p::ModelSchema { ::core::unreachable!() }
            fn schema_ref(&self) -> #p::SchemaRef { ::core::unreachable!() }
            fn write_unique_id(&self, _: &mut ::std::string::String) { ::core::unreachable!() }
            fn identifiers(&self) -> #p::Attrs { ::core::unreachable!() }
            fn attributes(&self) -> #p::Attrs { ::core::unreachable!() }
            fn attribute(&self, _: &str) -> ::core::option::Option<#p::Value> { ::core::unreachable!() }
            fn attributes_equal(&self, _: &Self) -> bool { ::core::unreachable!() }
            fn changed_attributes(&self, _: &Self, _: &mut ::std::vec::Vec<usize>) { ::core::unreachable!() }
            fn copy_attributes_from(&mut self, _: &Self) { ::core::unreachable!() }
            fn set_attributes(&mut self, _: &#p::Attrs) -> #p::Result<()> { ::core::unreachable!() }
            fn from_parts(_: &#p::SchemaRef, _: &#p::Attrs, _: &#p::Attrs) -> #p::Result<Self> { ::core::unreachable!() }
            fn copy_for_create(&self) -> Self { ::core::unreachable!() }
        }
        impl #ig #p::StaticModel for #ident #tg #wc {
            const NAME: &'static str = "";
            fn static_schema() -> &'static #p::ModelSchema { ::core::unreachable!() }
        }
    }
}

/// `mtu_bytes` → `MtuBytes` (a raw identifier loses its `r#`).
fn pascal_case(ident: &str) -> String {
    let out = ident
        .trim_start_matches("r#")
        .split('_')
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_uppercase().chain(c).collect())
                .unwrap_or_default()
        })
        .collect::<Vec<String>>()
        .concat();
    // `_` alone, or a name that starts with a digit after the split.
    match out.chars().next() {
        Some(c) if c.is_alphabetic() => out,
        _ => format!("F{out}"),
    }
}

fn field_def(f: &Field<'_>) -> TokenStream {
    let p = quote!(::diffsync::__private);
    let name = f.ident.to_string();
    let (kind, optional) = kind_of(f.ty);
    let kind = format_ident!("{}", kind);
    let compare = match &f.attrs.compare {
        CompareMode::Exact => quote!(Exact),
        CompareMode::Unordered(_) => quote!(Unordered),
        CompareMode::IgnoreCase(_) => quote!(IgnoreCase),
        CompareMode::With(_) => quote!(Custom),
    };
    quote! {
        #p::FieldDef {
            name: #p::Cow::Borrowed(#name),
            kind: #p::ValueKind::#kind,
            optional: #optional,
            compare: #p::Compare::#compare,
            default: ::core::option::Option::None,
        }
    }
}

fn eq_expr(f: &Field<'_>) -> TokenStream {
    let p = quote!(::diffsync::__private);
    let id = f.ident;
    match &f.attrs.compare {
        CompareMode::Exact => quote_spanned!(f.ty.span()=> self.#id == other.#id),
        CompareMode::Unordered(s) => quote_spanned!(*s=> #p::cmp::unordered(&self.#id, &other.#id)),
        CompareMode::IgnoreCase(s) => quote_spanned!(*s=> #p::cmp::ignore_case(&self.#id, &other.#id)),
        CompareMode::With(path) => quote_spanned!(path.span()=> #path(&self.#id, &other.#id)),
    }
}

fn expand(input: &Input<'_>) -> TokenStream {
    let p = quote!(::diffsync::__private);
    let ident = input.ident;
    let (ig, tg, wc) = input.generics.split_for_impl();
    let name = &input.name;
    let ids: Vec<&Field<'_>> = input.ids().collect();
    let attrs: Vec<&Field<'_>> = input.attributes().collect();
    let id_defs = ids.iter().map(|f| field_def(f));
    let attr_defs = attrs.iter().map(|f| field_def(f));
    let shortname = input.attrs.shortname.iter().map(|s| {
        let s = s.to_string();
        quote!(#p::Cow::Borrowed(#s))
    });
    let children = input
        .attrs
        .children
        .iter()
        .map(|c| quote_spanned!(c.span()=> #p::Cow::Borrowed(<#c as #p::StaticModel>::NAME)));
    let flag_bits = input.attrs.flags.iter().map(|f| quote!(| #p::ModelFlags::#f.bits()));
    let field_named = |marked: fn(&Field<'_>) -> bool| match attrs.iter().find(|f| marked(f)) {
        Some(f) => {
            let n = f.ident.to_string();
            quote!(::core::option::Option::Some(#p::Cow::Borrowed(#n)))
        }
        None => quote!(::core::option::Option::None),
    };
    // The digest's canonical encoding takes fields sorted by name: sorted here, once.
    let sorted_fields = |fields: &[&Field<'_>]| {
        let mut v: Vec<(String, &Field<'_>)> = fields.iter().map(|f| (f.ident.to_string(), *f)).collect();
        v.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        // Spanned on the field's type and through `attr`, like the values:
        // one error per bad type.
        let calls = v.into_iter().map(|(name, f)| {
            let id = f.ident;
            quote_spanned!(f.ty.span()=> #p::attr(&self.#id).digest(enc, #name);)
        });
        quote! {
            enc.begin_group();
            #(#calls)*
        }
    };
    let digest_ids = sorted_fields(&ids);
    let digest_attrs = sorted_fields(&attrs);
    let timestamp = field_named(|f| f.attrs.timestamp.is_some());
    let version = field_named(|f| f.attrs.version.is_some());

    let id_idents: Vec<_> = ids.iter().map(|f| f.ident).collect();
    let id_names: Vec<String> = id_idents.iter().map(|i| i.to_string()).collect();
    let attr_idents: Vec<_> = attrs.iter().map(|f| f.ident).collect();
    let attr_names: Vec<String> = attr_idents.iter().map(|i| i.to_string()).collect();
    let attr_types: Vec<_> = attrs.iter().map(|f| f.ty).collect();
    let attr_index: Vec<usize> = (0..attrs.len()).collect();
    let (n_ids, n_attrs) = (ids.len(), attrs.len());
    let eqs: Vec<TokenStream> = attrs.iter().map(|f| eq_expr(f)).collect();
    let staged: Vec<_> = attr_idents.iter().map(|i| format_ident!("__new_{}", i)).collect();

    // Serde calls carry the field type's span, so a type without
    // Serialize/Deserialize is reported at the field.
    let to_json = |f: &Field<'_>| {
        let id = f.ident;
        quote_spanned!(f.ty.span()=> #p::attr(&self.#id).to_value())
    };
    let id_values: Vec<TokenStream> = ids.iter().map(|f| to_json(f)).collect();
    let attr_values: Vec<TokenStream> = attrs.iter().map(|f| to_json(f)).collect();
    let from_json = |f: &Field<'_>, map: TokenStream| {
        let (ty, n) = (f.ty, f.ident.to_string());
        quote_spanned!(f.ty.span()=> #p::from_value::<#ty>(#name, &key, #n, #map.get(#n).unwrap_or(&null))?)
    };
    let id_reads: Vec<TokenStream> = ids.iter().map(|f| from_json(f, quote!(ids))).collect();
    let attr_reads: Vec<TokenStream> = attrs.iter().map(|f| from_json(f, quote!(attrs))).collect();
    let attr_sets: Vec<TokenStream> = attrs
        .iter()
        .map(|f| {
            let (ty, n) = (f.ty, f.ident.to_string());
            quote_spanned!(f.ty.span()=> #p::from_value::<#ty>(#name, &key, #n, value)?)
        })
        .collect();

    let write_ids = id_idents.iter().enumerate().map(|(i, id)| {
        let sep = (i > 0).then(|| quote!(out.push_str(#p::ID_SEPARATOR);));
        quote_spanned!(id.span()=> #sep #p::IdPart::write_id(&self.#id, out);)
    });
    let flags_fn = input.flags_field().map(|f| {
        let id = f.ident;
        quote!(fn flags(&self) -> #p::ModelFlags { self.#id })
    });
    let shortname_fn = (!input.attrs.shortname.is_empty()).then(|| {
        let parts = input.attrs.shortname.iter().enumerate().map(|(i, s)| {
            let sep = (i > 0).then(|| quote!(out.push_str(#p::ID_SEPARATOR);));
            quote!(#sep #p::IdPart::write_text(&self.#s, &mut out);)
        });
        quote! {
            fn shortname(&self) -> ::core::option::Option<::std::string::String> {
                let mut out = ::std::string::String::new();
                #(#parts)*
                ::core::option::Option::Some(out)
            }
        }
    });
    let local_inits = input
        .fields
        .iter()
        .filter(|f| matches!(f.role, crate::ast::Role::Skip))
        .map(|f| {
            let id = f.ident;
            quote_spanned!(f.ty.span()=> #id: ::core::default::Default::default())
        });
    let flags_init = input.flags_field().map(|f| {
        let id = f.ident;
        quote!(#id: __SCHEMA.flags,)
    });
    let local_inits: Vec<TokenStream> = local_inits.collect();
    let id_types: Vec<_> = ids.iter().map(|f| f.ty).collect();
    let key_doc = format!(" The key of the `{name}` model with these identifier values.");
    let field_enum = format_ident!("{}Field", ident);
    let field_variants: Vec<_> = attr_idents
        .iter()
        .map(|i| format_ident!("{}", pascal_case(&i.to_string()), span = i.span()))
        .collect();
    let vis = input.vis;
    let enum_doc =
        format!(" The compared attributes of [`{ident}`], by name: a typed hook's update lists the changed ones.");
    let variant_docs = attr_names.iter().map(|n| format!(" `{n}`"));

    quote! {
        #[doc = #enum_doc]
        #[derive(::core::clone::Clone, ::core::marker::Copy, ::core::fmt::Debug, ::core::cmp::PartialEq, ::core::cmp::Eq, ::core::hash::Hash)]
        #[allow(dead_code)]
        #vis enum #field_enum {
            #(#[doc = #variant_docs] #field_variants,)*
        }

        #[allow(dead_code)]
        impl #field_enum {
            /// The attribute's name.
            pub const fn name(self) -> &'static str {
                match self {
                    #(Self::#field_variants => #attr_names,)*
                }
            }
        }

        const _: () = {
            static __SCHEMA: #p::ModelSchema = #p::ModelSchema {
                name: #p::Cow::Borrowed(#name),
                identifiers: #p::Cow::Borrowed(&[#(#id_defs),*]),
                attributes: #p::Cow::Borrowed(&[#(#attr_defs),*]),
                shortname: #p::Cow::Borrowed(&[#(#shortname),*]),
                children: #p::Cow::Borrowed(&[#(#children),*]),
                flags: #p::ModelFlags::from_bits_retain(0 #(#flag_bits)*),
                timestamp: #timestamp,
                version: #version,
                strategy: ::core::option::Option::None,
            };

            impl #ig #ident #tg #wc {
                #[doc = #key_doc]
                #[allow(dead_code)]
                pub fn key(#(#id_idents: impl ::core::convert::Into<#id_types>),*) -> #p::Key<Self> {
                    #(let #id_idents: #id_types = ::core::convert::Into::into(#id_idents);)*
                    #p::Key::from_values([#(#p::IdPart::key_value(&#id_idents)),*])
                }
            }

            impl #ig #p::StaticModel for #ident #tg #wc {
                const NAME: &'static str = #name;
                fn static_schema() -> &'static #p::ModelSchema {
                    &__SCHEMA
                }
            }

            // A model without attributes leaves some bindings unused.
            #[allow(unused_mut, unused_variables)]
            impl #ig #p::DiffModel for #ident #tg #wc {
                type Field = #field_enum;
                fn field(name: &str) -> ::core::option::Option<#field_enum> {
                    match name {
                        #(#attr_names => ::core::option::Option::Some(#field_enum::#field_variants),)*
                        _ => ::core::option::Option::None,
                    }
                }
                fn schema(&self) -> &#p::ModelSchema {
                    &__SCHEMA
                }
                fn schema_ref(&self) -> #p::SchemaRef {
                    #p::SchemaRef::Static(&__SCHEMA)
                }
                fn write_unique_id(&self, out: &mut ::std::string::String) {
                    #(#write_ids)*
                }
                fn model_key(&self) -> #p::ModelKey {
                    #p::ModelKey::new(#name, [#(#p::IdPart::key_value(&self.#id_idents)),*])
                }
                fn identifiers(&self) -> #p::Attrs {
                    let mut m = #p::Attrs::with_capacity(#n_ids);
                    #(m.insert(#p::Cow::Borrowed(#id_names), #id_values);)*
                    m
                }
                fn attributes(&self) -> #p::Attrs {
                    let mut m = #p::Attrs::with_capacity(#n_attrs);
                    #(m.insert(#p::Cow::Borrowed(#attr_names), #attr_values);)*
                    m
                }
                fn __write_key(&self, out: &mut ::std::vec::Vec<u8>) -> bool {
                    // Every part is written (`&`, not `&&`).
                    true #(& #p::IdPart::write_key(&self.#id_idents, out))*
                }
                fn __attribute_values(&self) -> ::core::option::Option<::std::boxed::Box<[#p::Value]>> {
                    let values: [#p::Value; #n_attrs] = [#(#attr_values),*];
                    ::core::option::Option::Some(::std::boxed::Box::new(values))
                }
                fn write_digest(&self, enc: &mut #p::Encoder) {
                    #digest_ids
                    #digest_attrs
                }
                fn attribute(&self, name: &str) -> ::core::option::Option<#p::Value> {
                    match name {
                        #(#attr_names => ::core::option::Option::Some(#attr_values),)*
                        _ => ::core::option::Option::None,
                    }
                }
                fn attributes_equal(&self, other: &Self) -> bool {
                    true #(&& (#eqs))*
                }
                fn changed_attributes(&self, other: &Self, out: &mut ::std::vec::Vec<usize>) {
                    #(if !(#eqs) { out.push(#attr_index); })*
                }
                fn copy_attributes_from(&mut self, other: &Self) {
                    #(self.#attr_idents = ::core::clone::Clone::clone(&other.#attr_idents);)*
                }
                fn set_attributes(&mut self, attrs: &#p::Attrs) -> #p::Result<()> {
                    let key = #p::DiffModel::unique_id(self);
                    // Parse every value first, so a bad one leaves the model unchanged.
                    #(let mut #staged: ::core::option::Option<#attr_types> = ::core::option::Option::None;)*
                    for (name, value) in attrs {
                        match name.as_ref() {
                            #(#attr_names => #staged = ::core::option::Option::Some(#attr_sets),)*
                            _ => {}
                        }
                    }
                    #(if let ::core::option::Option::Some(v) = #staged { self.#attr_idents = v; })*
                    ::core::result::Result::Ok(())
                }
                fn from_parts(_schema: &#p::SchemaRef, ids: &#p::Attrs, attrs: &#p::Attrs) -> #p::Result<Self> {
                    let key = #p::unique_id_of(ids.values());
                    let null = #p::Value::Null;
                    ::core::result::Result::Ok(#ident {
                        #(#id_idents: #id_reads,)*
                        #(#attr_idents: #attr_reads,)*
                        #flags_init
                        #(#local_inits,)*
                    })
                }
                fn copy_for_create(&self) -> Self {
                    #ident {
                        #(#id_idents: ::core::clone::Clone::clone(&self.#id_idents),)*
                        #(#attr_idents: ::core::clone::Clone::clone(&self.#attr_idents),)*
                        #flags_init
                        #(#local_inits,)*
                    }
                }
                #flags_fn
                #shortname_fn
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use super::derive;

    fn expand(src: &str) -> String {
        let input: syn::DeriveInput = syn::parse_str(src).expect("test input parses");
        let file: syn::File = syn::parse2(derive(&input)).expect("expansion parses as a file");
        prettyplease::unparse(&file)
    }

    #[test]
    fn full_model() {
        insta::assert_snapshot!(expand(
            r#"
            #[diffsync(name = "device", children(Interface), shortname(name), flags(NATURAL_DELETION_ORDER))]
            struct Device {
                #[diffsync(id)] site: String,
                #[diffsync(id)] name: String,
                role: String,
                serial: Option<String>,
                #[diffsync(compare = "unordered")] tags: Vec<String>,
                #[diffsync(compare = "ignore_case")] label: String,
                #[diffsync(compare_with = close)] speed: f64,
                #[diffsync(timestamp)] changed_at: i64,
                #[diffsync(version)] revision: u64,
                #[diffsync(skip)] db_pk: i64,
                #[diffsync(flags)] flags: ModelFlags,
            }
            "#
        ));
    }

    #[test]
    fn minimal_model() {
        insta::assert_snapshot!(expand("struct VlanGroup { #[diffsync(id)] vid: u16 }"));
    }

    #[test]
    fn errors_come_with_a_stub_impl() {
        insta::assert_snapshot!(expand("#[diffsync(nmae = \"x\")] struct Site { name: String }"));
    }
}
