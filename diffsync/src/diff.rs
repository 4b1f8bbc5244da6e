//! The diff: a hierarchical, serializable change set (pure data). The algorithm
//! that computes it is in the `differ` module; its text rendering in `render`.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::model::Attrs;

/// What a sync does with an element.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Action {
    /// Only in the source: create it in the destination.
    Create,
    /// In both, some attribute differs: update the destination.
    Update,
    /// Only in the destination: delete it.
    Delete,
    /// In both and equal (kept as the parent of changed children).
    NoChange,
}

impl Action {
    /// The action's name as in summaries: `create`, `update`, `delete`, `no-change`.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Update => "update",
            Action::Delete => "delete",
            Action::NoChange => "no-change",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One changed attribute of an updated element.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AttrChange {
    /// Attribute name.
    pub name: Cow<'static, str>,
    /// The destination's (current) value.
    pub old: Value,
    /// The source's (wanted) value.
    pub new: Value,
}

/// One model in a diff: its identity, action, attributes and changed children.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DiffElement {
    /// Model type name.
    pub model_type: Cow<'static, str>,
    /// Unique id.
    pub key: String,
    /// Display name among siblings, if the model type defines one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shortname: Option<String>,
    /// Identifier values.
    pub identifiers: Attrs,
    /// What a sync does.
    pub action: Action,
    /// All attributes on the source side; absent when the model is not in the
    /// source, and for no-change elements (both sides are equal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_attrs: Option<Attrs>,
    /// All attributes on the destination side; absent when the model is not in
    /// the destination, and for no-change elements.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dest_attrs: Option<Attrs>,
    /// Changed attributes (updates only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<AttrChange>,
    /// Unchanged descendants that were compared but not kept as elements.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub unchanged_descendants: usize,
    /// Child elements, grouped by model type in the schema's child order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<DiffElement>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl DiffElement {
    /// The name shown for this element: its shortname, else the readable
    /// form of its unique id ([`readable_id_of`](crate::readable_id_of) of
    /// its identifiers, the Python library's `a__b`).
    pub fn display_name(&self) -> Cow<'_, str> {
        match &self.shortname {
            Some(s) => Cow::Borrowed(s),
            None if self.identifiers.is_empty() => Cow::Borrowed(&self.key),
            None => Cow::Owned(crate::model::readable_id_of(self.identifiers.values())),
        }
    }

    /// The name that tells this element from its siblings: its shortname,
    /// else its unique id.
    pub(crate) fn sibling_name(&self) -> &str {
        self.shortname.as_deref().unwrap_or(&self.key)
    }

    /// Whether this element or a descendant changes anything.
    pub fn has_diffs(&self) -> bool {
        self.action != Action::NoChange || self.children.iter().any(DiffElement::has_diffs)
    }

    /// The attribute values a sync writes: all source attributes for a create,
    /// the changed ones for an update, none for a delete.
    pub fn new_values(&self) -> Attrs {
        match self.action {
            Action::Create => self.source_attrs.clone().unwrap_or_default(),
            Action::Update => self.changes.iter().map(|c| (c.name.clone(), c.new.clone())).collect(),
            Action::Delete | Action::NoChange => Attrs::new(),
        }
    }

    fn add_to(&self, s: &mut Summary) {
        match self.action {
            Action::Create => s.create += 1,
            Action::Update => s.update += 1,
            Action::Delete => s.delete += 1,
            Action::NoChange => s.no_change += 1,
        }
        s.no_change += self.unchanged_descendants;
        for c in &self.children {
            c.add_to(s);
        }
    }

    /// Counts of this element and its descendants (no `skip`).
    pub fn summary(&self) -> Summary {
        let mut s = Summary::default();
        self.add_to(&mut s);
        s
    }

    fn reversed(&self) -> DiffElement {
        DiffElement {
            model_type: self.model_type.clone(),
            key: self.key.clone(),
            shortname: self.shortname.clone(),
            identifiers: self.identifiers.clone(),
            action: match self.action {
                Action::Create => Action::Delete,
                Action::Delete => Action::Create,
                a => a,
            },
            source_attrs: self.dest_attrs.clone(),
            dest_attrs: self.source_attrs.clone(),
            changes: self
                .changes
                .iter()
                .map(|c| AttrChange {
                    name: c.name.clone(),
                    old: c.new.clone(),
                    new: c.old.clone(),
                })
                .collect(),
            unchanged_descendants: self.unchanged_descendants,
            children: self.children.iter().map(DiffElement::reversed).collect(),
        }
    }

    /// Filters children; returns whether this element is kept.
    fn retain(&mut self, pred: &mut dyn FnMut(&DiffElement) -> bool) -> bool {
        let keep_self = pred(self);
        if !keep_self && self.action == Action::Create {
            // Children of a model that is not created cannot be created either.
            return false;
        }
        self.children.retain_mut(|c| c.retain(pred));
        if keep_self {
            return true;
        }
        if self.children.is_empty() {
            return false;
        }
        // Kept only as the parent of kept children: it applies nothing itself.
        self.action = Action::NoChange;
        self.changes.clear();
        true
    }

    fn order(&mut self, model_type: &str, order: &ChildOrder) {
        order_group(&mut self.children, model_type, order);
        for c in &mut self.children {
            c.order(model_type, order);
        }
    }

    fn walk<'a>(&'a self, depth: usize, f: &mut dyn FnMut(&'a DiffElement, usize)) {
        f(self, depth);
        for c in &self.children {
            c.walk(depth + 1, f);
        }
    }
}

/// The five counts of a diff, with the Python library's meanings.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Summary {
    /// Models to create (a created subtree counts every model in it).
    pub create: usize,
    /// Models whose attributes differ.
    pub update: usize,
    /// Models to delete.
    pub delete: usize,
    /// Models in both with equal attributes, including parents of changed children.
    #[serde(rename = "no-change")]
    pub no_change: usize,
    /// Models left out by flags (each skipped subtree counts once) or by a
    /// model type present on one side only.
    pub skip: usize,
}

impl Summary {
    /// create + update + delete + no-change.
    pub fn elements(&self) -> usize {
        self.create + self.update + self.delete + self.no_change
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "create: {}, update: {}, delete: {}, no-change: {}, skip: {}",
            self.create, self.update, self.delete, self.no_change, self.skip
        )
    }
}

/// A custom sibling comparison.
pub type OrderFn = Arc<dyn Fn(&DiffElement, &DiffElement) -> Ordering + Send + Sync>;

/// How the siblings of one model type are ordered in a diff (and so in a sync).
#[derive(Clone, Default)]
pub enum ChildOrder {
    /// Source order, then destination-only models in destination order.
    #[default]
    Insertion,
    /// Sorted by unique id.
    ByKey,
    /// Sorted by a user comparison (stable).
    Custom(OrderFn),
}

impl fmt::Debug for ChildOrder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChildOrder::Insertion => f.write_str("Insertion"),
            ChildOrder::ByKey => f.write_str("ByKey"),
            ChildOrder::Custom(_) => f.write_str("Custom(..)"),
        }
    }
}

fn order_group(elements: &mut [DiffElement], model_type: &str, order: &ChildOrder) {
    let Some(start) = elements.iter().position(|e| e.model_type == model_type) else {
        return;
    };
    let len = elements[start..]
        .iter()
        .take_while(|e| e.model_type == model_type)
        .count();
    let group = &mut elements[start..start + len];
    match order {
        ChildOrder::Insertion => {}
        ChildOrder::ByKey => group.sort_by(|a, b| a.key.cmp(&b.key)),
        ChildOrder::Custom(f) => group.sort_by(|a, b| f(a, b)),
    }
}

/// A hierarchical change set: what would change in the destination to make it
/// look like the source. Serializable, so it can be saved, reviewed and synced later.
///
/// ```
/// use diffsync::{Action, Diff, DiffElement};
///
/// let diff: Diff = serde_json::from_str(r#"{
///   "source": "cmdb", "dest": "network",
///   "elements": [{"model_type": "site", "key": "nyc", "identifiers": {"name": "nyc"},
///                 "action": "create", "source_attrs": {"region": "east"}}]
/// }"#).unwrap();
/// assert!(diff.has_diffs());
/// assert_eq!(diff.summary().create, 1);
/// assert_eq!(diff.reversed().elements[0].action, Action::Delete);
/// assert_eq!(diff.to_string(), "site\n  site: nyc MISSING in network");
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Diff {
    /// The source adapter's name.
    pub source: String,
    /// The destination adapter's name.
    pub dest: String,
    /// Top-level elements, grouped by model type.
    pub elements: Vec<DiffElement>,
    /// Unchanged top-level subtrees' models that were compared but not kept as elements.
    #[serde(default)]
    pub unchanged: usize,
    /// Models left out (the summary's `skip`).
    #[serde(default)]
    pub skipped: usize,
}

impl Diff {
    /// Counts of the whole diff.
    pub fn summary(&self) -> Summary {
        let mut s = Summary {
            no_change: self.unchanged,
            skip: self.skipped,
            ..Summary::default()
        };
        for e in &self.elements {
            e.add_to(&mut s);
        }
        s
    }

    /// Whether applying the diff would change anything.
    pub fn has_diffs(&self) -> bool {
        self.elements.iter().any(DiffElement::has_diffs)
    }

    /// Number of compared models (create + update + delete + no-change).
    pub fn len(&self) -> usize {
        self.summary().elements()
    }

    /// Whether no model was compared at all.
    pub fn is_empty(&self) -> bool {
        self.elements.is_empty() && self.unchanged == 0
    }

    /// Every kept element with its depth, in pre-order (the sync's order).
    pub fn iter(&self) -> impl Iterator<Item = (&DiffElement, usize)> {
        let mut out = Vec::new();
        for e in &self.elements {
            e.walk(0, &mut |el, d| out.push((el, d)));
        }
        out.into_iter()
    }

    /// The diff with source and destination swapped: creates become deletes,
    /// old and new values trade places. Syncing it undoes the original.
    pub fn reversed(&self) -> Diff {
        Diff {
            source: self.dest.clone(),
            dest: self.source.clone(),
            elements: self.elements.iter().map(DiffElement::reversed).collect(),
            unchanged: self.unchanged,
            skipped: self.skipped,
        }
    }

    /// Keeps the elements `pred` accepts. A rejected create is dropped with its
    /// subtree (its children could not exist without it); a rejected update or
    /// delete with accepted descendants stays as a no-change parent, so they can
    /// still be applied; otherwise it is dropped.
    pub fn retain(&mut self, mut pred: impl FnMut(&DiffElement) -> bool) {
        self.elements.retain_mut(|e| e.retain(&mut pred));
    }

    /// A copy keeping only what `pred` accepts (see [`retain`](Self::retain)).
    pub fn filtered(&self, pred: impl FnMut(&DiffElement) -> bool) -> Diff {
        let mut d = self.clone();
        d.retain(pred);
        d
    }

    /// A copy keeping only elements of these model types (and the parents they need).
    pub fn only_types(&self, model_types: &[&str]) -> Diff {
        self.filtered(|e| model_types.contains(&e.model_type.as_ref()))
    }

    /// A copy keeping only elements with these actions (and the parents they need).
    pub fn only_actions(&self, actions: &[Action]) -> Diff {
        self.filtered(|e| actions.contains(&e.action))
    }

    /// Orders the siblings of one model type everywhere in the diff.
    pub fn order(&mut self, model_type: &str, order: &ChildOrder) {
        order_group(&mut self.elements, model_type, order);
        for e in &mut self.elements {
            e.order(model_type, order);
        }
    }

    /// The one-line summary, e.g. `cmdb → network: create: 1, update: 0, ...`.
    pub fn summary_line(&self) -> String {
        format!("{} \u{2192} {}: {}", self.source, self.dest, self.summary())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn el(ty: &'static str, key: &str, action: Action, children: Vec<DiffElement>) -> DiffElement {
        DiffElement {
            model_type: ty.into(),
            key: key.into(),
            shortname: None,
            identifiers: Attrs::new(),
            action,
            source_attrs: (action != Action::Delete).then(Attrs::new),
            dest_attrs: (action != Action::Create).then(Attrs::new),
            changes: Vec::new(),
            unchanged_descendants: 0,
            children,
        }
    }

    fn sample() -> Diff {
        Diff {
            source: "a".into(),
            dest: "b".into(),
            elements: vec![
                el(
                    "site",
                    "new",
                    Action::Create,
                    vec![el("device", "d1", Action::Create, vec![])],
                ),
                el(
                    "site",
                    "old",
                    Action::Delete,
                    vec![el("device", "d2", Action::Delete, vec![])],
                ),
                DiffElement {
                    unchanged_descendants: 5,
                    ..el(
                        "site",
                        "same",
                        Action::NoChange,
                        vec![el("device", "d3", Action::Update, vec![])],
                    )
                },
            ],
            unchanged: 2,
            skipped: 1,
        }
    }

    #[test]
    fn summary_counts_kept_and_unmaterialized_elements() {
        let s = sample().summary();
        assert_eq!(
            (s.create, s.update, s.delete, s.no_change, s.skip),
            (2, 1, 2, 1 + 5 + 2, 1)
        );
        assert_eq!(sample().len(), 13);
    }

    #[test]
    fn retain_drops_rejected_creates_and_demotes_rejected_deletes() {
        let d = sample().only_types(&["device"]);
        let keys: Vec<_> = d.iter().map(|(e, depth)| (e.key.as_str(), e.action, depth)).collect();
        assert_eq!(
            keys,
            [
                ("old", Action::NoChange, 0),
                ("d2", Action::Delete, 1),
                ("same", Action::NoChange, 0),
                ("d3", Action::Update, 1),
            ]
        );
    }

    #[test]
    fn reversing_twice_is_identity_and_swaps_actions() {
        let d = sample();
        let r = d.reversed();
        assert_eq!((r.source.as_str(), r.dest.as_str()), ("b", "a"));
        assert_eq!(r.elements[0].action, Action::Delete);
        assert_eq!(r.elements[1].children[0].action, Action::Create);
        assert_eq!(r.reversed(), d);
    }

    #[test]
    fn order_sorts_only_the_named_type() {
        let mut d = sample();
        d.order("site", &ChildOrder::ByKey);
        let keys: Vec<_> = d.elements.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["new", "old", "same"]);
        d.order("site", &ChildOrder::Custom(Arc::new(|a, b| b.key.cmp(&a.key))));
        let keys: Vec<_> = d.elements.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["same", "old", "new"]);
    }
}
