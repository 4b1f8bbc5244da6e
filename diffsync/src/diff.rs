//! The diff: a hierarchical, serializable change set (pure data). The algorithm
//! that computes it is in the `differ` module; its text rendering in `render`.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::key::{KeyValue, ModelKey};
use crate::model::column::Slot;
use crate::model::{Attrs, Names};
use crate::store::TypeIdx;

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

/// One model in a diff: its key, action, attributes and changed children.
///
/// Compact: the attribute values of both sides are kept without their
/// names (shared by every element of a type), and an update keeps the
/// destination's values and the changed attributes only (the source's
/// are those with the changes applied). The accessors and the JSON form
/// give the whole maps.
///
/// Every operation on the tree (clone, compare, drop, walk, render,
/// serialize) runs on an explicit work stack, so a hierarchy 100,000 levels
/// deep is no risk to the call stack.
pub struct DiffElement {
    /// The model's key: its type and identifier values. Its text
    /// ([`ModelKey::unique_id`]) is the unique id diffsync prints
    /// everywhere, and reads back.
    pub key: ModelKey,
    /// Display name among siblings, if the model type defines one.
    pub shortname: Option<String>,
    /// What a sync does.
    pub action: Action,
    /// Changed attributes (updates only).
    pub changes: Vec<AttrChange>,
    /// Unchanged descendants that were compared but not kept as elements.
    pub unchanged_descendants: usize,
    /// Child elements, grouped by model type in the schema's child order.
    pub children: Vec<DiffElement>,
    /// The identifier values, named by `names`, when the key does not
    /// give them back as they are (a float, a list, a map: rare); else
    /// they are read from the key.
    identifiers: Option<Box<[Value]>>,
    /// The names of the identifiers and of the values in `sides` (but
    /// [`Sides::Both`], which names its own).
    names: Arc<Names>,
    /// The attribute values of each side.
    sides: Sides,
    /// Where the differ found the element's models: a sync of the diff
    /// right after it was made from the same stores takes them as they are;
    /// any other sync tries them before a lookup by key, checked. Not
    /// serialized, not compared.
    pub(crate) located: Option<Located>,
}

/// The slots of an element's models in the stores a diff was made from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Located {
    /// In the source store.
    pub(crate) src: Option<(TypeIdx, Slot)>,
    /// In the destination store.
    pub(crate) dst: Option<(TypeIdx, Slot)>,
}

/// Named values of an element (its identifiers, or one side's
/// attributes), borrowed from it: read or serialized (as a JSON object)
/// without building an [`Attrs`] map.
///
/// ```
/// use diffsync::Diff;
///
/// let diff: Diff = serde_json::from_str(r#"{"source": "a", "dest": "b", "elements": [
///     {"model_type": "site", "key": "nyc", "identifiers": {"name": "nyc"},
///      "action": "create", "source_attrs": {"region": "east"}}]}"#).unwrap();
/// let attrs = diff.elements[0].source_fields().unwrap();
/// assert_eq!(attrs.get("region"), Some(&"east".into()));
/// assert_eq!(serde_json::to_string(&attrs).unwrap(), r#"{"region":"east"}"#);
/// ```
#[derive(Clone, Debug)]
pub struct Fields<'a> {
    names: &'a [Cow<'static, str>],
    values: Cow<'a, [Value]>,
}

impl<'a> Fields<'a> {
    fn borrowed(names: &'a [Cow<'static, str>], values: &'a [Value]) -> Fields<'a> {
        Fields {
            names,
            values: Cow::Borrowed(values),
        }
    }

    /// The names and values, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.names.iter().map(|n| n.as_ref()).zip(self.values.iter())
    }

    /// The names, in order: the same slice for every element of a type
    /// and side (so a writer can say them once per type).
    pub fn names(&self) -> &'a [Cow<'static, str>] {
        self.names
    }

    /// The values, in the order of [`names`](Self::names).
    pub fn values(&self) -> &[Value] {
        &self.values
    }

    /// One value by name.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.names.iter().position(|n| n == name).map(|i| &self.values[i])
    }

    /// How many values.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The values as a map.
    pub fn to_attrs(&self) -> Attrs {
        to_attrs(self.names, &self.values)
    }
}

impl Serialize for Fields<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(self.values.len()))?;
        for (n, v) in self.iter() {
            map.serialize_entry(n, v)?;
        }
        map.end()
    }
}

/// Values with the names they go with.
#[derive(Clone)]
struct Side {
    names: Arc<Names>,
    values: Box<[Value]>,
}

/// An element's attribute values on each side.
#[derive(Clone)]
enum Sides {
    /// Neither (a no-change element: both sides are equal).
    None,
    /// The source's alone (a create).
    Source(Box<[Value]>),
    /// The destination's alone (a delete).
    Dest(Box<[Value]>),
    /// An update: the destination's values; the source's are these with
    /// the element's changes applied.
    Changed(Box<[Value]>),
    /// Both, when the two sides' types name their attributes differently
    /// (or a diff read from JSON whose source values are not the
    /// destination's with its changes).
    Both(Box<(Side, Side)>),
}

/// Named values as a map, in order.
fn to_attrs(names: &[Cow<'static, str>], values: &[Value]) -> Attrs {
    names.iter().cloned().zip(values.iter().cloned()).collect()
}

/// `values` if a key made of them does not give them back as they are
/// (see [`KeyValue`]): a float, a list or a map.
fn kept_identifiers(values: Box<[Value]>) -> Option<Box<[Value]>> {
    let exact = |v: &Value| match v {
        Value::Null | Value::Bool(_) | Value::String(_) => true,
        Value::Number(n) => n.is_i64() || n.is_u64(),
        Value::Array(_) | Value::Object(_) => false,
    };
    (!values.iter().all(exact)).then_some(values)
}

/// The values of named values, in order.
pub(crate) fn values_of(attrs: Attrs) -> Box<[Value]> {
    // Pushed into a new list of the right size: collected in place, the
    // pairs' allocation would be shrunk by a reallocation instead.
    let mut out = Vec::with_capacity(attrs.len());
    out.extend(attrs.into_iter().map(|(_, v)| v));
    out.into_boxed_slice()
}

impl DiffElement {
    /// An element read from its parts (a diff's JSON): the names are taken
    /// from the maps.
    fn from_parts(
        identifiers: Attrs,
        source_attrs: Option<Attrs>,
        dest_attrs: Option<Attrs>,
        changes: &[AttrChange],
    ) -> (Option<Box<[Value]>>, Arc<Names>, Sides) {
        let names_of = |a: &Attrs| -> Box<[Cow<'static, str>]> { a.keys().cloned().collect() };
        let names = Arc::new(Names {
            identifiers: names_of(&identifiers),
            attributes: source_attrs
                .as_ref()
                .or(dest_attrs.as_ref())
                .map(names_of)
                .unwrap_or_default(),
        });
        let sides = match (source_attrs, dest_attrs) {
            (None, None) => Sides::None,
            (Some(s), None) => Sides::Source(values_of(s)),
            (None, Some(d)) => Sides::Dest(values_of(d)),
            (Some(s), Some(d)) => {
                let (source_names, dest_names) = (names_of(&s), names_of(&d));
                let (sv, dv) = (values_of(s), values_of(d));
                if dest_names == names.attributes && is_applied(&names.attributes, &dv, changes, &sv) {
                    Sides::Changed(dv)
                } else {
                    let side = |attributes, values| Side {
                        names: Arc::new(Names {
                            identifiers: Box::default(),
                            attributes,
                        }),
                        values,
                    };
                    Sides::Both(Box::new((side(source_names, sv), side(dest_names, dv))))
                }
            }
        };
        (kept_identifiers(values_of(identifiers)), names, sides)
    }

    /// An element of models found in two stores: `identifiers` (kept only
    /// when the key cannot give them back) in the order of `names` (the
    /// primary side's), the values of each side in the order of its
    /// type's names.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn found(
        key: ModelKey,
        shortname: Option<String>,
        identifiers: Option<Box<[Value]>>,
        names: Arc<Names>,
        action: Action,
        source: Option<(Arc<Names>, Box<[Value]>)>,
        dest: Option<(Arc<Names>, Box<[Value]>)>,
        changes: Vec<AttrChange>,
        children: Vec<DiffElement>,
        unchanged_descendants: usize,
        located: Located,
    ) -> DiffElement {
        let sides = match (source, dest) {
            _ if action == Action::NoChange => Sides::None,
            (None, None) => Sides::None,
            (Some((_, s)), None) => Sides::Source(s),
            (None, Some((_, d))) => Sides::Dest(d),
            (Some((sn, s)), Some((dn, d))) => {
                if sn.attributes == dn.attributes && is_applied(&dn.attributes, &d, &changes, &s) {
                    Sides::Changed(d)
                } else {
                    Sides::Both(Box::new((Side { names: sn, values: s }, Side { names: dn, values: d })))
                }
            }
        };
        DiffElement {
            key,
            shortname,
            action,
            changes,
            unchanged_descendants,
            children,
            identifiers,
            names,
            sides,
            located: Some(located),
        }
    }

    /// The model type.
    pub fn model_type(&self) -> &str {
        self.key.model_type()
    }

    /// The unique id's text (`nyc__r1`; a string that reads as a number
    /// quoted: `nyc__"100"`), which the CLI and
    /// [`ModelSchema::parse_key`](crate::ModelSchema::parse_key) read back.
    pub fn unique_id(&self) -> &str {
        self.key.unique_id()
    }

    /// The name shown for this element: its shortname, else its unique id.
    pub fn display_name(&self) -> Cow<'_, str> {
        Cow::Borrowed(self.sibling_name())
    }

    /// The name that tells this element from its siblings: its shortname,
    /// else its unique id.
    pub(crate) fn sibling_name(&self) -> &str {
        self.shortname.as_deref().unwrap_or(self.key.unique_id())
    }

    /// The key of the model this element is about.
    pub fn model_key(&self) -> ModelKey {
        self.key.clone()
    }

    /// Identifier values by name.
    pub fn identifiers(&self) -> Attrs {
        self.identifier_fields().to_attrs()
    }

    /// The identifier values with their names, without building a map.
    pub fn identifier_fields(&self) -> Fields<'_> {
        Fields {
            names: &self.names.identifiers,
            values: self.identifier_values(),
        }
    }

    /// The identifier values, in the order of their names.
    pub(crate) fn identifier_values(&self) -> Cow<'_, [Value]> {
        match &self.identifiers {
            Some(v) => Cow::Borrowed(v),
            None => Cow::Owned(self.key.values().iter().map(KeyValue::to_value).collect()),
        }
    }

    /// One identifier's value.
    pub fn identifier(&self, name: &str) -> Option<Value> {
        let i = self.names.identifiers.iter().position(|n| n == name)?;
        self.identifier_values().get(i).cloned()
    }

    /// All attributes on the source side; `None` when the model is not in
    /// the source, and for no-change elements (both sides are equal).
    pub fn source_attrs(&self) -> Option<Attrs> {
        self.source_fields().map(|f| f.to_attrs())
    }

    /// All attributes on the destination side; `None` when the model is
    /// not in the destination, and for no-change elements.
    pub fn dest_attrs(&self) -> Option<Attrs> {
        self.dest_fields().map(|f| f.to_attrs())
    }

    /// [`source_attrs`](Self::source_attrs) without building a map.
    pub fn source_fields(&self) -> Option<Fields<'_>> {
        let attributes = &self.names.attributes;
        match &self.sides {
            Sides::Source(v) => Some(Fields::borrowed(attributes, v)),
            Sides::Changed(d) => Some(Fields {
                names: attributes,
                values: Cow::Owned(applied(&self.names, d, &self.changes).into_vec()),
            }),
            Sides::Both(b) => Some(Fields::borrowed(&b.0.names.attributes, &b.0.values)),
            Sides::None | Sides::Dest(_) => None,
        }
    }

    /// [`dest_attrs`](Self::dest_attrs) without building a map.
    pub fn dest_fields(&self) -> Option<Fields<'_>> {
        match &self.sides {
            Sides::Dest(v) | Sides::Changed(v) => Some(Fields::borrowed(&self.names.attributes, v)),
            Sides::Both(b) => Some(Fields::borrowed(&b.1.names.attributes, &b.1.values)),
            Sides::None | Sides::Source(_) => None,
        }
    }

    /// One attribute on the source side (see [`source_attrs`](Self::source_attrs)).
    pub fn source_attr(&self, name: &str) -> Option<&Value> {
        fn find<'v>(names: &[Cow<'static, str>], values: &'v [Value], name: &str) -> Option<&'v Value> {
            names.iter().position(|n| n == name).map(|i| &values[i])
        }
        match &self.sides {
            Sides::Source(v) => find(&self.names.attributes, v, name),
            Sides::Changed(d) => match self.changes.iter().find(|c| c.name == name) {
                Some(c) => Some(&c.new),
                None => find(&self.names.attributes, d, name),
            },
            Sides::Both(b) => find(&b.0.names.attributes, &b.0.values, name),
            Sides::None | Sides::Dest(_) => None,
        }
    }

    /// Whether this element or a descendant changes anything.
    pub fn has_diffs(&self) -> bool {
        self.iter().any(|(e, _)| e.action != Action::NoChange)
    }

    /// The attribute values a sync writes: all source attributes for a create,
    /// the changed ones for an update, none for a delete.
    pub fn new_values(&self) -> Attrs {
        match self.action {
            Action::Create => self.source_attrs().unwrap_or_default(),
            Action::Update => self.changes.iter().map(|c| (c.name.clone(), c.new.clone())).collect(),
            Action::Delete | Action::NoChange => Attrs::new(),
        }
    }

    fn add_to(&self, s: &mut Summary) {
        for (e, _) in self.iter() {
            match e.action {
                Action::Create => s.create += 1,
                Action::Update => s.update += 1,
                Action::Delete => s.delete += 1,
                Action::NoChange => s.no_change += 1,
            }
            s.no_change += e.unchanged_descendants;
        }
    }

    /// Counts of this element and its descendants (no `skip`).
    pub fn summary(&self) -> Summary {
        let mut s = Summary::default();
        self.add_to(&mut s);
        s
    }

    /// This element and its descendants with their depth below it, in
    /// pre-order (the sync's order).
    pub fn iter(&self) -> DiffIter<'_> {
        DiffIter {
            stack: vec![(std::slice::from_ref(self).iter(), 0)],
        }
    }

    /// This element without its children.
    fn head(&self) -> DiffElement {
        DiffElement {
            key: self.key.clone(),
            shortname: self.shortname.clone(),
            action: self.action,
            changes: self.changes.clone(),
            unchanged_descendants: self.unchanged_descendants,
            children: Vec::new(),
            identifiers: self.identifiers.clone(),
            names: self.names.clone(),
            sides: self.sides.clone(),
            located: self.located,
        }
    }

    /// This element as a parent kept only for its children: a no-change
    /// element with its identity and the count of unchanged descendants.
    fn structural(&self) -> DiffElement {
        DiffElement {
            key: self.key.clone(),
            shortname: self.shortname.clone(),
            action: Action::NoChange,
            changes: Vec::new(),
            unchanged_descendants: self.unchanged_descendants,
            children: Vec::new(),
            identifiers: self.identifiers.clone(),
            names: self.names.clone(),
            sides: Sides::None,
            located: self.located,
        }
    }

    /// Keeps the changes `keep` accepts (a plan that takes some of an
    /// update's attributes); the source's values stay as they were.
    pub(crate) fn retain_changes(&mut self, keep: impl FnMut(&AttrChange) -> bool) {
        if let Sides::Changed(d) = &self.sides {
            let source = Side {
                names: self.names.clone(),
                values: applied(&self.names, d, &self.changes),
            };
            let dest = Side {
                names: self.names.clone(),
                values: d.clone(),
            };
            self.sides = Sides::Both(Box::new((source, dest)));
        }
        self.changes.retain(keep);
    }

    /// Makes this element a parent kept only for its children.
    fn demote(&mut self) {
        self.action = Action::NoChange;
        self.changes.clear();
        self.sides = Sides::None;
    }

    /// Whether everything but the children is equal.
    fn head_eq(&self, other: &DiffElement) -> bool {
        // Destructured so that a new field cannot be forgotten here.
        let DiffElement {
            key,
            shortname,
            action,
            changes,
            unchanged_descendants,
            children: _,
            identifiers: _,
            names: _,
            sides: _,
            located: _,
        } = self;
        *key == other.key
            && key.unique_id() == other.key.unique_id()
            && *shortname == other.shortname
            && *action == other.action
            && *changes == other.changes
            && *unchanged_descendants == other.unchanged_descendants
            && self.identifiers() == other.identifiers()
            && self.source_attrs() == other.source_attrs()
            && self.dest_attrs() == other.dest_attrs()
    }

    /// Swaps the stores the element's models were found in.
    fn reverse_located(&mut self) {
        if let Some(l) = &mut self.located {
            std::mem::swap(&mut l.src, &mut l.dst);
        }
    }

    /// Swaps the sides of this element alone.
    fn reverse_head(&mut self) {
        self.action = match self.action {
            Action::Create => Action::Delete,
            Action::Delete => Action::Create,
            a => a,
        };
        self.sides = match std::mem::replace(&mut self.sides, Sides::None) {
            Sides::None => Sides::None,
            Sides::Source(v) => Sides::Dest(v),
            Sides::Dest(v) => Sides::Source(v),
            // The new destination is the old source.
            Sides::Changed(d) => Sides::Changed(applied(&self.names, &d, &self.changes)),
            Sides::Both(b) => {
                let (s, d) = *b;
                Sides::Both(Box::new((d, s)))
            }
        };
        self.reverse_located();
        for c in &mut self.changes {
            std::mem::swap(&mut c.old, &mut c.new);
        }
    }
}

/// The destination's values `dest` (named by `names`) with the changes'
/// new values in place: the source's.
fn applied(names: &Names, dest: &[Value], changes: &[AttrChange]) -> Box<[Value]> {
    let mut v: Box<[Value]> = dest.into();
    for c in changes {
        if let Some(i) = names.attributes.iter().position(|n| *n == c.name) {
            v[i] = c.new.clone();
        }
    }
    v
}

/// Whether `source` is `dest` (both named by `names`) with the changes'
/// new values in place, each change naming one of them.
fn is_applied(names: &[Cow<'static, str>], dest: &[Value], changes: &[AttrChange], source: &[Value]) -> bool {
    source.len() == names.len()
        && dest.len() == names.len()
        && changes.iter().all(|c| names.contains(&c.name))
        && names
            .iter()
            .zip(dest.iter().zip(source))
            .all(|(n, (d, s))| match changes.iter().find(|c| c.name == *n) {
                Some(c) => c.new == *s,
                None => d == s,
            })
}

/// Pre-order walk of elements with their depth (see [`DiffElement::iter`]).
pub struct DiffIter<'a> {
    stack: Vec<(std::slice::Iter<'a, DiffElement>, usize)>,
}

impl<'a> Iterator for DiffIter<'a> {
    type Item = (&'a DiffElement, usize);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let (siblings, depth) = self.stack.last_mut()?;
            let depth = *depth;
            match siblings.next() {
                Some(e) => {
                    if !e.children.is_empty() {
                        self.stack.push((e.children.iter(), depth + 1));
                    }
                    return Some((e, depth));
                }
                None => {
                    self.stack.pop();
                }
            }
        }
    }
}

/// Calls `f` on every element of these trees, parents before children.
pub(crate) fn for_each_mut(elements: &mut [DiffElement], mut f: impl FnMut(&mut DiffElement)) {
    let mut stack: Vec<&mut DiffElement> = elements.iter_mut().collect();
    while let Some(e) = stack.pop() {
        f(e);
        stack.extend(e.children.iter_mut());
    }
}

/// Rebuilds trees bottom-up. `pre` sees each element (children still
/// attached) and returns a state, or `None` to drop its subtree; `post`
/// gets the element with its rebuilt children and the state, and returns
/// what replaces it.
fn rebuild<S>(
    elements: Vec<DiffElement>,
    mut pre: impl FnMut(&DiffElement) -> Option<S>,
    mut post: impl FnMut(DiffElement, S) -> Option<DiffElement>,
) -> Vec<DiffElement> {
    struct Frame<S> {
        element: DiffElement,
        state: S,
        todo: std::vec::IntoIter<DiffElement>,
        done: Vec<DiffElement>,
    }
    let mut top = elements.into_iter();
    let mut out = Vec::new();
    let mut stack: Vec<Frame<S>> = Vec::new();
    loop {
        let next = match stack.last_mut() {
            Some(f) => f.todo.next(),
            None => top.next(),
        };
        if let Some(mut element) = next {
            if let Some(state) = pre(&element) {
                let todo = std::mem::take(&mut element.children).into_iter();
                stack.push(Frame {
                    element,
                    state,
                    done: Vec::with_capacity(todo.len()),
                    todo,
                });
            }
            continue;
        }
        let Some(mut f) = stack.pop() else { break };
        f.element.children = f.done;
        if let Some(e) = post(f.element, f.state) {
            match stack.last_mut() {
                Some(parent) => parent.done.push(e),
                None => out.push(e),
            }
        }
    }
    out
}

/// Clones trees without recursion.
fn clone_all(elements: &[DiffElement]) -> Vec<DiffElement> {
    struct Frame<'a> {
        element: DiffElement,
        todo: std::slice::Iter<'a, DiffElement>,
    }
    let mut top = elements.iter();
    let mut out = Vec::with_capacity(elements.len());
    let mut stack: Vec<Frame<'_>> = Vec::new();
    loop {
        let next = match stack.last_mut() {
            Some(f) => f.todo.next(),
            None => top.next(),
        };
        if let Some(e) = next {
            let mut element = e.head();
            element.children.reserve_exact(e.children.len());
            stack.push(Frame {
                element,
                todo: e.children.iter(),
            });
            continue;
        }
        let Some(f) = stack.pop() else { break };
        match stack.last_mut() {
            Some(parent) => parent.element.children.push(f.element),
            None => out.push(f.element),
        }
    }
    out
}

/// Compares trees without recursion.
fn eq_all(a: &[DiffElement], b: &[DiffElement]) -> bool {
    let mut stack = vec![(a, b)];
    while let Some((a, b)) = stack.pop() {
        if a.len() != b.len() {
            return false;
        }
        for (x, y) in a.iter().zip(b) {
            if !x.head_eq(y) {
                return false;
            }
            stack.push((&x.children, &y.children));
        }
    }
    true
}

impl Clone for DiffElement {
    fn clone(&self) -> Self {
        let mut v = clone_all(std::slice::from_ref(self));
        v.pop().unwrap_or_else(|| self.head())
    }
}

impl PartialEq for DiffElement {
    fn eq(&self, other: &Self) -> bool {
        eq_all(std::slice::from_ref(self), std::slice::from_ref(other))
    }
}

impl Drop for DiffElement {
    // The default drop recurses once per level.
    fn drop(&mut self) {
        let mut stack = std::mem::take(&mut self.children);
        while let Some(mut e) = stack.pop() {
            stack.append(&mut e.children);
        }
    }
}

thread_local! {
    /// Nesting of `Debug` output in progress on this thread.
    static DEBUG_DEPTH: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// `Debug` shows this many levels of children, then their count.
const DEBUG_LEVELS: usize = 32;

impl fmt::Debug for DiffElement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Elided(usize);
        impl fmt::Debug for Elided {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "[.. {} elements]", self.0)
            }
        }
        let depth = DEBUG_DEPTH.get();
        DEBUG_DEPTH.set(depth + 1);
        let mut s = f.debug_struct("DiffElement");
        s.field("key", &self.key)
            .field("shortname", &self.shortname)
            .field("identifiers", &self.identifiers())
            .field("action", &self.action)
            .field("source_attrs", &self.source_attrs())
            .field("dest_attrs", &self.dest_attrs())
            .field("changes", &self.changes)
            .field("unchanged_descendants", &self.unchanged_descendants);
        if depth < DEBUG_LEVELS || self.children.is_empty() {
            s.field("children", &self.children);
        } else {
            s.field("children", &Elided(self.children.len()));
        }
        let r = s.finish();
        DEBUG_DEPTH.set(depth);
        r
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
    let Some(start) = elements.iter().position(|e| e.model_type() == model_type) else {
        return;
    };
    let len = elements[start..]
        .iter()
        .take_while(|e| e.model_type() == model_type)
        .count();
    let group = &mut elements[start..start + len];
    match order {
        ChildOrder::Insertion => {}
        ChildOrder::ByKey => group.sort_by(|a, b| a.unique_id().cmp(b.unique_id())),
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
    /// Top-level elements, grouped by model type. Serialized as one flat
    /// list in sync order, each element with its `depth` (omitted at 0), so
    /// that reading and writing never recurse, however deep the hierarchy.
    #[serde(with = "flat")]
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
    pub fn iter(&self) -> DiffIter<'_> {
        DiffIter {
            stack: vec![(self.elements.iter(), 0)],
        }
    }

    /// The diff with source and destination swapped: creates become deletes,
    /// old and new values trade places. Syncing it undoes the original.
    pub fn reversed(&self) -> Diff {
        Diff {
            source: self.dest.clone(),
            dest: self.source.clone(),
            elements: {
                let mut elements = self.elements.clone();
                for_each_mut(&mut elements, DiffElement::reverse_head);
                elements
            },
            unchanged: self.unchanged,
            skipped: self.skipped,
        }
    }

    /// Keeps the elements `pred` accepts. A rejected create is dropped with its
    /// subtree (its children could not exist without it); a rejected update or
    /// delete with accepted descendants stays as a no-change parent, so they can
    /// still be applied; otherwise it is dropped.
    pub fn retain(&mut self, mut pred: impl FnMut(&DiffElement) -> bool) {
        let elements = std::mem::take(&mut self.elements);
        self.elements = rebuild(
            elements,
            |e| {
                let keep = pred(e);
                // Children of a model that is not created cannot be created either.
                (keep || e.action != Action::Create).then_some(keep)
            },
            |mut e, keep| {
                if keep {
                    return Some(e);
                }
                if e.children.is_empty() {
                    return None;
                }
                // Kept only as the parent of kept children: it applies nothing itself.
                e.demote();
                Some(e)
            },
        );
    }

    /// A copy keeping only what `pred` accepts (see [`retain`](Self::retain)).
    /// Only kept elements are copied; a parent kept for its children is a
    /// plain no-change element.
    pub fn filtered(&self, pred: impl FnMut(&DiffElement) -> bool) -> Diff {
        self.select(false, pred)
    }

    /// [`filtered`](Self::filtered), optionally of the reversed diff (`pred`
    /// sees the elements as they are here), copying only what it keeps.
    pub(crate) fn select(&self, reverse: bool, mut pred: impl FnMut(&DiffElement) -> bool) -> Diff {
        struct Frame<'a> {
            element: DiffElement,
            keep: bool,
            todo: std::slice::Iter<'a, DiffElement>,
        }
        let creates = |a: Action| {
            if reverse {
                a == Action::Delete
            } else {
                a == Action::Create
            }
        };
        let mut top = self.elements.iter();
        let mut out = Vec::new();
        let mut stack: Vec<Frame<'_>> = Vec::new();
        loop {
            let next = match stack.last_mut() {
                Some(f) => f.todo.next(),
                None => top.next(),
            };
            if let Some(e) = next {
                let keep = pred(e);
                // Children of a model that is not created cannot be created either.
                if !keep && creates(e.action) {
                    continue;
                }
                let mut element = if keep {
                    let mut h = e.head();
                    if reverse {
                        h.reverse_head();
                    }
                    h
                } else {
                    let mut s = e.structural();
                    if reverse {
                        s.reverse_located();
                    }
                    s
                };
                element.children.reserve(e.children.len().min(16));
                stack.push(Frame {
                    element,
                    keep,
                    todo: e.children.iter(),
                });
                continue;
            }
            let Some(f) = stack.pop() else { break };
            if !f.keep && f.element.children.is_empty() {
                continue;
            }
            match stack.last_mut() {
                Some(parent) => parent.element.children.push(f.element),
                None => out.push(f.element),
            }
        }
        let (source, dest) = if reverse {
            (self.dest.clone(), self.source.clone())
        } else {
            (self.source.clone(), self.dest.clone())
        };
        Diff {
            source,
            dest,
            elements: out,
            unchanged: self.unchanged,
            skipped: self.skipped,
        }
    }

    /// A copy keeping only elements of these model types (and the parents they need).
    pub fn only_types(&self, model_types: &[&str]) -> Diff {
        self.filtered(|e| model_types.contains(&e.model_type()))
    }

    /// A copy keeping only these models and their subtrees (under their
    /// ancestors as no-change parents): what [`Options::part`](crate::Options::part)
    /// diffs, picked out of a whole diff (one made by a range diff, say).
    pub fn only_keys(&self, keys: &[ModelKey]) -> Diff {
        let mut inside: std::collections::HashSet<*const DiffElement> = std::collections::HashSet::new();
        // The depth of the part being walked, if any.
        let mut part: Option<usize> = None;
        for (e, depth) in self.iter() {
            if part.is_some_and(|d| depth <= d) {
                part = None;
            }
            if part.is_none() && keys.contains(&e.key) {
                part = Some(depth);
            }
            if part.is_some() {
                inside.insert(e as *const _);
            }
        }
        self.filtered(|e| inside.contains(&(e as *const _)))
    }

    /// A copy keeping only elements with these actions (and the parents they need).
    pub fn only_actions(&self, actions: &[Action]) -> Diff {
        self.filtered(|e| actions.contains(&e.action))
    }

    /// Orders the siblings of one model type everywhere in the diff.
    pub fn order(&mut self, model_type: &str, order: &ChildOrder) {
        order_group(&mut self.elements, model_type, order);
        for_each_mut(&mut self.elements, |e| order_group(&mut e.children, model_type, order));
    }

    /// The one-line summary, e.g. `cmdb → network: create: 1, update: 0, ...`.
    pub fn summary_line(&self) -> String {
        format!("{} \u{2192} {}: {}", self.source, self.dest, self.summary())
    }
}

/// The wire form of [`Diff::elements`]: one flat list in pre-order, each
/// element with its depth. Writing walks the tree with a work stack and
/// reading rebuilds it with one, so neither recurses per level (nor hits
/// a format's nesting limit).
mod flat {
    use std::borrow::Cow;
    use std::fmt;

    use serde::de::{self, SeqAccess, Visitor};
    use serde::ser::SerializeSeq;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::{Action, AttrChange, DiffElement, DiffIter, Fields};
    use crate::key::ModelKey;
    use crate::model::Attrs;

    fn is_zero(n: &usize) -> bool {
        *n == 0
    }

    #[derive(Serialize)]
    struct Out<'a> {
        #[serde(skip_serializing_if = "is_zero")]
        depth: usize,
        model_type: &'a str,
        key: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        shortname: &'a Option<String>,
        identifiers: Fields<'a>,
        action: Action,
        #[serde(skip_serializing_if = "Option::is_none")]
        source_attrs: Option<Fields<'a>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        dest_attrs: Option<Fields<'a>>,
        #[serde(skip_serializing_if = "<[_]>::is_empty")]
        changes: &'a [AttrChange],
        #[serde(skip_serializing_if = "is_zero")]
        unchanged_descendants: usize,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct In {
        #[serde(default)]
        depth: usize,
        model_type: Cow<'static, str>,
        key: String,
        #[serde(default)]
        shortname: Option<String>,
        identifiers: Attrs,
        action: Action,
        #[serde(default)]
        source_attrs: Option<Attrs>,
        #[serde(default)]
        dest_attrs: Option<Attrs>,
        #[serde(default)]
        changes: Vec<AttrChange>,
        #[serde(default)]
        unchanged_descendants: usize,
    }

    pub(super) fn serialize<S: Serializer>(elements: &[DiffElement], s: S) -> Result<S::Ok, S::Error> {
        let walk = DiffIter {
            stack: vec![(elements.iter(), 0)],
        };
        let mut seq = s.serialize_seq(None)?;
        for (e, depth) in walk {
            seq.serialize_element(&Out {
                depth,
                model_type: e.model_type(),
                key: e.unique_id(),
                shortname: &e.shortname,
                identifiers: e.identifier_fields(),
                action: e.action,
                source_attrs: e.source_fields(),
                dest_attrs: e.dest_fields(),
                changes: &e.changes,
                unchanged_descendants: e.unchanged_descendants,
            })?;
        }
        seq.end()
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<DiffElement>, D::Error> {
        struct Elements;
        impl<'de> Visitor<'de> for Elements {
            type Value = Vec<DiffElement>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of diff elements in pre-order, each with its depth")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                // The open ancestors of the next element: its depth is at most their count.
                let mut open: Vec<DiffElement> = Vec::new();
                while let Some(e) = seq.next_element::<In>()? {
                    if e.depth > open.len() {
                        return Err(de::Error::custom(format_args!(
                            "{} {:?} at depth {} follows an element at depth {}",
                            e.model_type,
                            e.key,
                            e.depth,
                            open.len().saturating_sub(1)
                        )));
                    }
                    close(&mut open, &mut out, e.depth);
                    let key = ModelKey::with_unique_id(e.model_type, e.identifiers.values(), &e.key);
                    let (identifiers, names, sides) =
                        DiffElement::from_parts(e.identifiers, e.source_attrs, e.dest_attrs, &e.changes);
                    open.push(DiffElement {
                        key,
                        shortname: e.shortname,
                        action: e.action,
                        changes: e.changes,
                        unchanged_descendants: e.unchanged_descendants,
                        children: Vec::new(),
                        identifiers,
                        names,
                        sides,
                        located: None,
                    });
                }
                close(&mut open, &mut out, 0);
                Ok(out)
            }
        }
        d.deserialize_seq(Elements)
    }

    /// Closes open elements down to `depth` open ones, each into its parent.
    fn close(open: &mut Vec<DiffElement>, out: &mut Vec<DiffElement>, depth: usize) {
        while open.len() > depth {
            let Some(e) = open.pop() else { break };
            match open.last_mut() {
                Some(parent) => parent.children.push(e),
                None => out.push(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn el(ty: &'static str, key: &str, action: Action, children: Vec<DiffElement>) -> DiffElement {
        let names = Arc::new(Names {
            identifiers: Box::new(["name".into()]),
            attributes: Box::new(["role".into()]),
        });
        let values = || -> Box<[Value]> { Box::new(["edge".into()]) };
        DiffElement {
            key: ModelKey::new(ty, [crate::KeyValue::Str(key.into())]),
            shortname: None,
            action,
            changes: Vec::new(),
            unchanged_descendants: 0,
            children,
            identifiers: None,
            names,
            sides: match action {
                Action::Create => Sides::Source(values()),
                Action::Delete => Sides::Dest(values()),
                Action::Update => Sides::Changed(values()),
                Action::NoChange => Sides::None,
            },
            located: None,
        }
    }

    #[test]
    fn a_diff_element_takes_208_bytes() {
        // A diff holds one per changed model and one per parent kept for
        // them: a field added here costs a large diff its size that often.
        assert_eq!(std::mem::size_of::<DiffElement>(), 208);
    }

    #[test]
    fn identifiers_the_key_gives_back_are_not_kept_twice() {
        let json = r#"{"source": "a", "dest": "b", "elements": [
            {"model_type": "port", "key": "r1__7__true", "identifiers": {"dev": "r1", "n": 7, "up": true}, "action": "delete",
             "dest_attrs": {"mtu": 1500}},
            {"model_type": "probe", "key": "1.5__[1,2]", "identifiers": {"x": 1.5, "at": [1, 2]}, "action": "delete",
             "dest_attrs": {}}]}"#;
        let d: Diff = serde_json::from_str(json).unwrap();
        assert!(d.elements[0].identifiers.is_none());
        // A float and a list read back from a key as other values: kept.
        assert!(d.elements[1].identifiers.is_some());
        assert_eq!(d.elements[0].identifier("n"), Some(Value::from(7)));
        assert_eq!(d.elements[1].identifiers()["at"], serde_json::json!([1, 2]));
        let back: Value = serde_json::to_value(&d).unwrap();
        assert_eq!(
            back["elements"],
            serde_json::from_str::<Value>(json).unwrap()["elements"]
        );
    }

    #[test]
    fn an_update_keeps_one_side_and_gives_both() {
        let json = r#"{"source": "a", "dest": "b", "elements": [
            {"model_type": "device", "key": "d1", "identifiers": {"name": "d1"}, "action": "update",
             "source_attrs": {"role": "core", "mtu": 9000}, "dest_attrs": {"role": "edge", "mtu": 9000},
             "changes": [{"name": "role", "old": "edge", "new": "core"}]},
            {"model_type": "device", "key": "d2", "identifiers": {"name": "d2"}, "action": "update",
             "source_attrs": {"role": "core", "mtu": 1500}, "dest_attrs": {"role": "edge", "mtu": 9000},
             "changes": [{"name": "role", "old": "edge", "new": "core"}]}]}"#;
        let d: Diff = serde_json::from_str(json).unwrap();
        assert!(matches!(d.elements[0].sides, Sides::Changed(_)));
        // Source values the changes do not explain are kept as they are.
        assert!(matches!(d.elements[1].sides, Sides::Both(_)));
        assert_eq!(d.elements[0].source_attrs().unwrap()["role"], "core");
        assert_eq!(d.elements[0].source_attr("mtu"), Some(&Value::from(9000)));
        assert_eq!(d.elements[0].identifier("name"), Some(Value::from("d1")));
        assert_eq!(d.elements[1].source_attrs().unwrap()["mtu"], 1500);
        let back: Value = serde_json::to_value(&d).unwrap();
        assert_eq!(
            back["elements"],
            serde_json::from_str::<Value>(json).unwrap()["elements"]
        );
        let r = d.reversed();
        assert_eq!(r.elements[0].source_attrs().unwrap()["role"], "edge");
        assert_eq!(r.elements[0].dest_attrs().unwrap()["role"], "core");
        assert_eq!(r.reversed(), d);
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
                {
                    let mut same = el(
                        "site",
                        "same",
                        Action::NoChange,
                        vec![el("device", "d3", Action::Update, vec![])],
                    );
                    same.unchanged_descendants = 5;
                    same
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
        let keys: Vec<_> = d.iter().map(|(e, depth)| (e.unique_id(), e.action, depth)).collect();
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
    fn json_is_a_flat_list_with_depths_and_reads_back() {
        let d = sample();
        let json = serde_json::to_value(&d).unwrap();
        let depths: Vec<u64> = json["elements"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e.get("depth").map_or(0, |d| d.as_u64().unwrap()))
            .collect();
        assert_eq!(depths, [0, 1, 0, 1, 0, 1]);
        assert_eq!(serde_json::from_value::<Diff>(json).unwrap(), d);
    }

    #[test]
    fn json_with_a_depth_jump_or_nested_children_is_refused() {
        let jump = r#"{"source": "a", "dest": "b", "elements": [
            {"model_type": "site", "key": "s", "identifiers": {}, "action": "no-change"},
            {"depth": 2, "model_type": "device", "key": "d", "identifiers": {}, "action": "delete"}]}"#;
        let err = serde_json::from_str::<Diff>(jump).unwrap_err().to_string();
        assert!(
            err.starts_with(r#"device "d" at depth 2 follows an element at depth 0"#),
            "{err}"
        );
        let nested = r#"{"source": "a", "dest": "b", "elements": [
            {"model_type": "site", "key": "s", "identifiers": {}, "action": "no-change", "children": []}]}"#;
        let err = serde_json::from_str::<Diff>(nested).unwrap_err().to_string();
        assert!(err.starts_with("unknown field `children`"), "{err}");
    }

    #[test]
    fn only_keys_keeps_their_subtrees_under_plain_parents() {
        let key = |ty: &'static str, k: &str| ModelKey::new(ty, [crate::KeyValue::Str(k.into())]);
        let d = sample().only_keys(&[key("device", "d3"), key("site", "new")]);
        let kept: Vec<_> = d.iter().map(|(e, depth)| (e.unique_id(), e.action, depth)).collect();
        assert_eq!(
            kept,
            [
                ("new", Action::Create, 0),
                ("d1", Action::Create, 1),
                ("same", Action::NoChange, 0),
                ("d3", Action::Update, 1),
            ]
        );
        assert!(!sample().only_keys(&[key("site", "none")]).has_diffs());
    }

    #[test]
    fn order_sorts_only_the_named_type() {
        let mut d = sample();
        d.order("site", &ChildOrder::ByKey);
        let keys: Vec<_> = d.elements.iter().map(|e| e.unique_id()).collect();
        assert_eq!(keys, ["new", "old", "same"]);
        d.order(
            "site",
            &ChildOrder::Custom(Arc::new(|a, b| b.unique_id().cmp(a.unique_id()))),
        );
        let keys: Vec<_> = d.elements.iter().map(|e| e.unique_id()).collect();
        assert_eq!(keys, ["same", "old", "new"]);
    }
}
