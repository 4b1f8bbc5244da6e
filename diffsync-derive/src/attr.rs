//! Parsing of `#[diffsync(...)]` attributes.

use proc_macro2::Span;
use syn::spanned::Spanned;
use syn::{Attribute, Ident, LitStr, Path, Token};

/// Collects errors so all of them are reported at once.
#[derive(Default)]
pub struct Errors(Option<syn::Error>);

impl Errors {
    pub fn push(&mut self, e: syn::Error) {
        match &mut self.0 {
            Some(all) => all.combine(e),
            None => self.0 = Some(e),
        }
    }
    pub fn at(&mut self, span: Span, msg: impl std::fmt::Display) {
        self.push(syn::Error::new(span, msg));
    }
    /// How many errors were reported (a `syn::Error` holds them combined).
    pub fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |e| e.clone().into_iter().count())
    }
    pub fn finish(self) -> Result<(), syn::Error> {
        self.0.map_or(Ok(()), Err)
    }
}

pub const STRUCT_KEYS: &[&str] = &["name", "children", "shortname", "flags"];
pub const FIELD_KEYS: &[&str] = &["id", "skip", "flags", "compare", "compare_with", "timestamp", "version"];

fn supported(keys: &[&str]) -> String {
    keys.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")
}

/// Struct-level attributes.
#[derive(Default)]
pub struct StructAttrs {
    pub name: Option<LitStr>,
    pub children: Vec<Path>,
    pub shortname: Vec<Ident>,
    pub flags: Vec<Ident>,
}

/// A value that may be set once; the first key's span is kept.
fn once(errors: &mut Errors, seen: &mut Vec<String>, key: &Ident) -> bool {
    let k = key.to_string();
    if seen.contains(&k) {
        errors.at(key.span(), format!("duplicate diffsync attribute `{k}`"));
        return false;
    }
    seen.push(k);
    true
}

fn idents_in(meta: &syn::meta::ParseNestedMeta<'_>) -> syn::Result<Vec<Ident>> {
    let content;
    syn::parenthesized!(content in meta.input);
    let list = content.parse_terminated(Ident::parse, Token![,])?;
    Ok(list.into_iter().collect())
}

pub fn struct_attrs(attrs: &[Attribute], errors: &mut Errors) -> StructAttrs {
    let mut out = StructAttrs::default();
    let mut seen = Vec::new();
    for attr in attrs.iter().filter(|a| a.path().is_ident("diffsync")) {
        let r = attr.parse_nested_meta(|meta| {
            let Some(key) = meta.path.get_ident().cloned() else {
                errors.at(
                    meta.path.span(),
                    format!("unknown diffsync attribute; supported: {}", supported(STRUCT_KEYS)),
                );
                return skip_value(&meta);
            };
            match key.to_string().as_str() {
                "name" => {
                    let lit: LitStr = meta.value()?.parse()?;
                    if once(errors, &mut seen, &key) {
                        if lit.value().is_empty() {
                            errors.at(lit.span(), "model name must not be empty");
                        } else if lit.value().contains(':') {
                            errors.at(
                                lit.span(),
                                "model name must not contain `:`: it separates the type from the id in a key's text",
                            );
                        }
                        out.name = Some(lit);
                    }
                }
                "children" => {
                    let content;
                    syn::parenthesized!(content in meta.input);
                    let list = content.parse_terminated(ChildItem::parse, Token![,])?;
                    if once(errors, &mut seen, &key) {
                        for item in list {
                            match item {
                                ChildItem::Type(ty) => match *ty {
                                    syn::Type::Path(p) if p.qself.is_none() && !has_generics(&p.path) => {
                                        out.children.push(p.path)
                                    }
                                    other => errors.at(other.span(), CHILDREN_HELP),
                                },
                                ChildItem::Str(lit) => errors.at(lit.span(), CHILDREN_HELP),
                            }
                        }
                    }
                }
                "shortname" => {
                    let v = idents_in(&meta)?;
                    if once(errors, &mut seen, &key) {
                        out.shortname = v;
                    }
                }
                "flags" => {
                    let v = idents_in(&meta)?;
                    if once(errors, &mut seen, &key) {
                        out.flags = v;
                    }
                }
                other => {
                    errors.at(
                        key.span(),
                        format!(
                            "unknown diffsync attribute `{other}` on a struct; supported: {}",
                            supported(STRUCT_KEYS)
                        ),
                    );
                    return skip_value(&meta);
                }
            }
            Ok(())
        });
        if let Err(e) = r {
            errors.push(e);
        }
    }
    out
}

use syn::parse::Parse;

const CHILDREN_HELP: &str = "children expects model types like `children(Interface)`, not a collection or a string";

/// One entry of `children(...)`: a type, or a string (rejected with a hint).
enum ChildItem {
    Type(Box<syn::Type>),
    Str(LitStr),
}

impl Parse for ChildItem {
    fn parse(input: syn::parse::ParseStream<'_>) -> syn::Result<Self> {
        if input.peek(LitStr) {
            input.parse().map(ChildItem::Str)
        } else {
            input.parse().map(|t| ChildItem::Type(Box::new(t)))
        }
    }
}

fn has_generics(p: &Path) -> bool {
    p.segments.iter().any(|s| !s.arguments.is_empty())
}

/// Consumes whatever follows an unknown key so parsing can go on.
fn skip_value(meta: &syn::meta::ParseNestedMeta<'_>) -> syn::Result<()> {
    if meta.input.peek(Token![=]) {
        let _: syn::Expr = meta.value()?.parse()?;
    } else if meta.input.peek(syn::token::Paren) {
        let content;
        syn::parenthesized!(content in meta.input);
        let _: proc_macro2::TokenStream = content.parse()?;
    }
    Ok(())
}

/// How a field is compared.
pub enum CompareMode {
    Exact,
    Unordered(Span),
    IgnoreCase(Span),
    With(Path),
}

/// Field-level attributes.
pub struct FieldAttrs {
    pub id: Option<Span>,
    pub skip: Option<Span>,
    pub flags: Option<Span>,
    pub compare: CompareMode,
    pub compare_span: Option<Span>,
    /// The model's modification time (newest-wins conflict resolution).
    pub timestamp: Option<Span>,
    /// The model's version number (highest-wins conflict resolution).
    pub version: Option<Span>,
}

pub fn field_attrs(attrs: &[Attribute], errors: &mut Errors) -> FieldAttrs {
    let mut out = FieldAttrs {
        id: None,
        skip: None,
        flags: None,
        compare: CompareMode::Exact,
        compare_span: None,
        timestamp: None,
        version: None,
    };
    let mut seen = Vec::new();
    for attr in attrs.iter().filter(|a| a.path().is_ident("diffsync")) {
        let r = attr.parse_nested_meta(|meta| {
            let Some(key) = meta.path.get_ident().cloned() else {
                errors.at(meta.path.span(), format!("unknown diffsync attribute; supported: {}", supported(FIELD_KEYS)));
                return skip_value(&meta);
            };
            let name = key.to_string();
            match name.as_str() {
                "id" | "skip" | "flags" | "timestamp" | "version" => {
                    if once(errors, &mut seen, &key) {
                        let slot = match name.as_str() {
                            "id" => &mut out.id,
                            "skip" => &mut out.skip,
                            "timestamp" => &mut out.timestamp,
                            "version" => &mut out.version,
                            _ => &mut out.flags,
                        };
                        *slot = Some(key.span());
                    }
                }
                "compare" | "compare_with" => {
                    let mode = if name == "compare" {
                        let lit: LitStr = meta.value()?.parse()?;
                        match lit.value().as_str() {
                            "unordered" => Some(CompareMode::Unordered(lit.span())),
                            "ignore_case" => Some(CompareMode::IgnoreCase(lit.span())),
                            "exact" => Some(CompareMode::Exact),
                            other => {
                                errors.at(
                                    lit.span(),
                                    format!("unknown comparison `{other}`; supported: \"exact\", \"unordered\", \"ignore_case\", or compare_with = path::to::fn"),
                                );
                                None
                            }
                        }
                    } else {
                        Some(CompareMode::With(meta.value()?.parse()?))
                    };
                    if seen.iter().any(|s| s == "compare" || s == "compare_with") {
                        errors.at(key.span(), format!("duplicate diffsync attribute `{name}`: a field has one comparison"));
                    } else {
                        seen.push(name.clone());
                        if let Some(m) = mode {
                            out.compare = m;
                            out.compare_span = Some(key.span());
                        }
                    }
                }
                "children" => {
                    errors.at(
                        key.span(),
                        "`children` goes on the struct and names child model types: #[diffsync(children(Interface))]",
                    );
                    return skip_value(&meta);
                }
                other => {
                    errors.at(
                        key.span(),
                        format!("unknown diffsync attribute `{other}` on a field; supported: {}", supported(FIELD_KEYS)),
                    );
                    return skip_value(&meta);
                }
            }
            Ok(())
        });
        if let Err(e) = r {
            errors.push(e);
        }
    }
    out
}
