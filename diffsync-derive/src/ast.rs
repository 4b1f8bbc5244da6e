//! The typed model of a `#[derive(DiffModel)]` input.

use proc_macro2::Span;
use syn::{Data, DeriveInput, Fields, Ident, Type};

use crate::attr::{self, CompareMode, Errors, FieldAttrs, StructAttrs};

pub enum Role {
    Id,
    Attr,
    Skip,
    Flags,
}

pub struct Field<'a> {
    pub ident: &'a Ident,
    pub ty: &'a Type,
    pub role: Role,
    pub attrs: FieldAttrs,
}

pub struct Input<'a> {
    pub ident: &'a Ident,
    pub vis: &'a syn::Visibility,
    pub generics: &'a syn::Generics,
    pub attrs: StructAttrs,
    pub fields: Vec<Field<'a>>,
    pub name: String,
    /// A field's `#[diffsync(..)]` did not parse (its role is unknown).
    pub field_errors: bool,
}

impl<'a> Input<'a> {
    pub fn from_syn(input: &'a DeriveInput, errors: &mut Errors) -> Option<Self> {
        let attrs = attr::struct_attrs(&input.attrs, errors);
        let named = match &input.data {
            Data::Struct(s) => match &s.fields {
                Fields::Named(n) => Some(n),
                _ => None,
            },
            _ => None,
        };
        let Some(named) = named else {
            errors.at(
                input.ident.span(),
                "DiffModel can only be derived for structs with named fields",
            );
            return None;
        };
        let mut field_errors = false;
        let fields = named
            .named
            .iter()
            .filter_map(|f| {
                let ident = f.ident.as_ref()?;
                let before = errors.len();
                let fa = attr::field_attrs(&f.attrs, errors);
                field_errors |= errors.len() > before;
                let role = if fa.id.is_some() {
                    Role::Id
                } else if fa.skip.is_some() {
                    Role::Skip
                } else if fa.flags.is_some() {
                    Role::Flags
                } else {
                    Role::Attr
                };
                Some(Field {
                    ident,
                    ty: &f.ty,
                    role,
                    attrs: fa,
                })
            })
            .collect();
        let name = attrs
            .name
            .as_ref()
            .map(|l| l.value())
            .unwrap_or_else(|| snake_case(&input.ident.to_string()));
        Some(Input {
            field_errors,
            ident: &input.ident,
            vis: &input.vis,
            generics: &input.generics,
            attrs,
            fields,
            name,
        })
    }

    pub fn ids(&self) -> impl Iterator<Item = &Field<'a>> {
        self.fields.iter().filter(|f| matches!(f.role, Role::Id))
    }
    pub fn attributes(&self) -> impl Iterator<Item = &Field<'a>> {
        self.fields.iter().filter(|f| matches!(f.role, Role::Attr))
    }
    pub fn flags_field(&self) -> Option<&Field<'a>> {
        self.fields.iter().find(|f| matches!(f.role, Role::Flags))
    }
}

impl Field<'_> {
    pub fn compare_span(&self) -> Span {
        self.attrs.compare_span.unwrap_or_else(|| self.ident.span())
    }
    pub fn has_compare(&self) -> bool {
        !matches!(self.attrs.compare, CompareMode::Exact)
    }
}

fn snake_case(s: &str) -> String {
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if c.is_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// The value kind of a field type (by its last path segment), and whether it is an `Option`.
pub fn kind_of(ty: &Type) -> (&'static str, bool) {
    let Type::Path(p) = ty else {
        if let Type::Reference(r) = ty {
            return kind_of(&r.elem);
        }
        return ("Any", false);
    };
    let Some(seg) = p.path.segments.last() else {
        return ("Any", false);
    };
    let name = seg.ident.to_string();
    if name == "Option" {
        if let syn::PathArguments::AngleBracketed(args) = &seg.arguments
            && let Some(syn::GenericArgument::Type(inner)) = args.args.first()
        {
            return (kind_of(inner).0, true);
        }
        return ("Any", true);
    }
    let kind = match name.as_str() {
        "String" | "str" | "Box" | "Arc" | "Rc" | "Cow" => {
            if matches!(name.as_str(), "String" | "str") {
                "String"
            } else {
                "Any"
            }
        }
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" | "u8" | "u16" | "u32" | "u64" | "u128" | "usize" => "Integer",
        "f32" | "f64" => "Float",
        "bool" => "Bool",
        "Vec" | "VecDeque" | "HashSet" | "BTreeSet" | "IndexSet" => "List",
        "HashMap" | "BTreeMap" | "IndexMap" => "Map",
        _ => "Any",
    };
    (kind, false)
}
