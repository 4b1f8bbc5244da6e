//! Cross-field rules of a `#[derive(DiffModel)]` input.

use crate::ast::{Input, Role};
use crate::attr::Errors;

pub fn check(input: &Input<'_>, errors: &mut Errors) {
    // Without identifiers after a field attribute error, that error is the
    // cause (a typo in `id`, say): one error, not two.
    if input.ids().next().is_none() && !input.field_errors {
        errors.at(
            input.ident.span(),
            "a DiffModel needs at least one identifier: mark a field with #[diffsync(id)]",
        );
    }
    for f in &input.fields {
        let a = &f.attrs;
        let roles = [("id", a.id), ("skip", a.skip), ("flags", a.flags)];
        let set: Vec<_> = roles.iter().filter_map(|(n, s)| s.map(|s| (*n, s))).collect();
        if set.len() > 1 {
            errors.at(
                set[1].1,
                format!("field `{}` cannot be both `{}` and `{}`", f.ident, set[0].0, set[1].0),
            );
        }
        if f.has_compare() && !matches!(f.role, Role::Attr) {
            errors.at(
                f.compare_span(),
                format!(
                    "field `{}` is not a compared attribute, so it takes no comparison",
                    f.ident
                ),
            );
        }
    }
    let timestamps: Vec<_> = input
        .fields
        .iter()
        .filter_map(|f| Some((f, f.attrs.timestamp?)))
        .collect();
    let versions: Vec<_> = input
        .fields
        .iter()
        .filter_map(|f| Some((f, f.attrs.version?)))
        .collect();
    for (what, marked) in [("timestamp", timestamps), ("version", versions)] {
        for (i, (f, span)) in marked.into_iter().enumerate() {
            if !matches!(f.role, Role::Attr) {
                let msg = format!(
                    "field `{}` is not a compared attribute, so it cannot be the model's {what}",
                    f.ident
                );
                errors.at(span, msg);
            } else if i > 0 {
                errors.at(span, format!("a model has one {what} field"));
            }
        }
    }
    if input.fields.iter().filter(|f| matches!(f.role, Role::Flags)).count() > 1 {
        errors.at(
            input.ident.span(),
            "only one field can hold the model's #[diffsync(flags)]",
        );
    }
    for s in &input.attrs.shortname {
        let ok = input
            .fields
            .iter()
            .any(|f| f.ident == s && matches!(f.role, Role::Id | Role::Attr));
        if !ok {
            errors.at(
                s.span(),
                format!(
                    "shortname field `{s}` is not an identifier or attribute of `{}`",
                    input.ident
                ),
            );
        }
    }
    const FLAGS: &[&str] = &[
        "IGNORE",
        "SKIP_CHILDREN_ON_DELETE",
        "SKIP_UNMATCHED_SRC",
        "SKIP_UNMATCHED_DST",
        "SKIP_UNMATCHED_BOTH",
        "NATURAL_DELETION_ORDER",
    ];
    for f in &input.attrs.flags {
        if !FLAGS.contains(&f.to_string().as_str()) {
            errors.at(
                f.span(),
                format!("unknown model flag `{f}`; supported: {}", FLAGS.join(", ")),
            );
        }
    }
    let mut seen = Vec::new();
    for c in &input.attrs.children {
        let text = quote::quote!(#c).to_string();
        if seen.contains(&text) {
            errors.at(
                syn::spanned::Spanned::span(c),
                format!("child model `{text}` is listed twice"),
            );
        }
        seen.push(text);
    }
}
