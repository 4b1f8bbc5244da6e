//! Human-readable rendering of a diff: a tree in the spirit of the Python
//! library's `Diff.str()`, with multi-line strings shown as unified line diffs.

use std::fmt::{self, Write};

use serde_json::Value;

use crate::diff::{Action, Diff, DiffElement};

impl fmt::Display for Diff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let walk: Vec<(&DiffElement, usize)> = self.iter().collect();
        let shown = with_diffs(&walk);
        let mut out = String::new();
        // The model type whose header was written last at each depth.
        let mut group: Vec<Option<&str>> = Vec::new();
        for ((e, depth), _) in walk.iter().zip(&shown).filter(|(_, shown)| **shown) {
            group.truncate(depth + 1);
            group.resize(depth + 1, None);
            let (indent, mark) = indent_of(*depth);
            if group[*depth] != Some(e.model_type()) {
                let _ = writeln!(out, "{:indent$}{mark}{}", "", e.model_type());
                group[*depth] = Some(e.model_type());
            }
            render_element(&mut out, e, indent + 2, &mark, &self.source, &self.dest);
        }
        if out.is_empty() {
            return f.write_str("(no diffs)");
        }
        f.write_str(out.trim_end_matches('\n'))
    }
}

impl Diff {
    /// The diff as the writes it makes to its destination, a verb a line:
    /// `create`, `update` (each changed attribute `old → new`), `delete`,
    /// under the unchanged parents that hold them. What a two-way plan
    /// shows (where "MISSING in" would read backwards).
    pub fn to_writes(&self) -> String {
        let walk: Vec<(&DiffElement, usize)> = self.iter().collect();
        let shown = with_diffs(&walk);
        let mut out = String::new();
        for ((e, depth), _) in walk.iter().zip(&shown).filter(|(_, shown)| **shown) {
            let (indent, mark) = indent_of(*depth);
            let verb = match e.action {
                Action::Create => "create ",
                Action::Update => "update ",
                Action::Delete => "delete ",
                Action::NoChange => "",
            };
            let _ = writeln!(out, "{:indent$}{mark}{verb}{} {}", "", e.model_type(), e.display_name());
            if e.action != Action::Update {
                continue;
            }
            let pad = indent + 4;
            for c in &e.changes {
                match (c.new.as_str(), c.old.as_str()) {
                    (Some(new), Some(old)) if new.contains('\n') || old.contains('\n') => {
                        let _ = writeln!(out, "{:pad$}{}:", "", c.name);
                        line_diff(&mut out, old, new, &self.dest, &self.source, pad + 2);
                    }
                    _ => {
                        let _ = writeln!(out, "{:pad$}{}: {} → {}", "", c.name, show(&c.old), show(&c.new));
                    }
                }
            }
        }
        if out.is_empty() {
            return "(nothing)".to_string();
        }
        out.truncate(out.trim_end_matches('\n').len());
        out
    }
}

/// Appends the unified diff of two multi-line values, indented by `pad`.
fn line_diff(out: &mut String, old: &str, new: &str, old_name: &str, new_name: &str, pad: usize) {
    let text = similar::TextDiff::from_lines(old, new);
    let unified = text
        .unified_diff()
        .context_radius(2)
        .missing_newline_hint(false)
        .header(old_name, new_name)
        .to_string();
    for line in unified.lines() {
        let _ = writeln!(out, "{:pad$}{}", "", line);
    }
}

/// Levels indented in full; deeper levels keep this indentation and show
/// their depth instead, so the text grows linearly with the depth.
const INDENTED_LEVELS: usize = 16;

/// Indentation of a level's type header, and the depth mark of deep levels.
fn indent_of(depth: usize) -> (usize, String) {
    if depth <= INDENTED_LEVELS {
        (4 * depth, String::new())
    } else {
        (4 * INDENTED_LEVELS, format!("[{depth}] "))
    }
}

/// For each element of a pre-order walk, whether it or a descendant has
/// diffs: one backward pass (a child's answer is ready before its parent's).
fn with_diffs(walk: &[(&DiffElement, usize)]) -> Vec<bool> {
    let mut shown = vec![false; walk.len()];
    // Whether anything seen so far at each depth, under the current parent, has diffs.
    let mut below: Vec<bool> = Vec::new();
    for (i, (e, depth)) in walk.iter().enumerate().rev() {
        let has = e.action != Action::NoChange || below.get(depth + 1).copied().unwrap_or(false);
        below.truncate(depth + 1);
        below.resize(depth + 1, false);
        below[*depth] |= has;
        shown[i] = has;
    }
    shown
}

fn render_element(out: &mut String, e: &DiffElement, indent: usize, mark: &str, src: &str, dst: &str) {
    let _ = write!(out, "{:indent$}{mark}{}: {}", "", e.model_type(), e.display_name());
    match e.action {
        Action::Create => {
            let _ = write!(out, " MISSING in {dst}");
        }
        Action::Delete => {
            let _ = write!(out, " MISSING in {src}");
        }
        Action::Update | Action::NoChange => {}
    }
    out.push('\n');
    let pad = indent + 2;
    for c in &e.changes {
        match (c.new.as_str(), c.old.as_str()) {
            (Some(new), Some(old)) if new.contains('\n') || old.contains('\n') => {
                let _ = writeln!(out, "{:pad$}{}", "", c.name);
                line_diff(out, old, new, dst, src, pad + 2);
            }
            _ => {
                let _ = writeln!(
                    out,
                    "{:pad$}{}    {src}({})    {dst}({})",
                    "",
                    c.name,
                    show(&c.new),
                    show(&c.old)
                );
            }
        }
    }
}

impl Diff {
    /// The diff in the Python library's `Diff.dict()` layout, for tools built
    /// on it: `{type: {name: {"-": {..}, "+": {..}, child_type: {..}}}}`, with
    /// only elements that have diffs, keyed by shortname (else unique id).
    /// `"-"` holds destination values and `"+"` source values: every attribute
    /// for a delete or a create, the changed ones for an update, and both
    /// empty for an unchanged parent of changes.
    pub fn to_python_dict(&self) -> Value {
        Value::Object(dict_level(&self.elements))
    }
}

fn dict_level(elements: &[DiffElement]) -> serde_json::Map<String, Value> {
    let mut out = serde_json::Map::new();
    for e in elements.iter().filter(|e| e.has_diffs()) {
        let mut el = serde_json::Map::new();
        let attrs = |a: &Option<crate::Attrs>| -> Value {
            Value::Object(a.iter().flatten().map(|(k, v)| (k.to_string(), v.clone())).collect())
        };
        let changed = |new: bool| -> Value {
            Value::Object(
                e.changes
                    .iter()
                    .map(|c| (c.name.to_string(), if new { c.new.clone() } else { c.old.clone() }))
                    .collect(),
            )
        };
        match e.action {
            Action::Create => {
                el.insert("+".into(), attrs(&e.source_attrs()));
            }
            Action::Delete => {
                el.insert("-".into(), attrs(&e.dest_attrs()));
            }
            Action::Update | Action::NoChange => {
                el.insert("-".into(), changed(false));
                el.insert("+".into(), changed(true));
            }
        }
        for (ty, group) in dict_level(&e.children) {
            el.insert(ty, group);
        }
        let group = out
            .entry(e.model_type().to_string())
            .or_insert_with(|| Value::Object(serde_json::Map::new()));
        if let Value::Object(g) = group {
            g.insert(python_name(e), Value::Object(el));
        }
    }
    out
}

/// The name the Python library's `dict()` gives an element: its shortname,
/// else the plain `__`-joined text of its identifiers (not unique: the
/// dict's shape is the reference's, where the text render uses the key's
/// one text form).
fn python_name(e: &DiffElement) -> String {
    match &e.shortname {
        Some(s) => s.clone(),
        None => match e.identifier_values() {
            ids if ids.is_empty() => e.unique_id().to_string(),
            ids => crate::model::readable_id_of(ids.iter()),
        },
    }
}

/// A value as shown in text: strings bare, everything else as JSON.
fn show(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_show_bare_strings_and_json_otherwise() {
        assert_eq!(show(&json!("edge")), "edge");
        assert_eq!(show(&json!(1500)), "1500");
        assert_eq!(show(&json!(null)), "null");
        assert_eq!(show(&json!(["a", 1])), r#"["a",1]"#);
    }

    #[test]
    fn an_empty_diff_says_so() {
        assert_eq!(Diff::default().to_string(), "(no diffs)");
    }
}
