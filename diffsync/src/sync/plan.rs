//! The plan: a diff turned into an ordered batch of changes, checked
//! against the destination store.

use hashbrown::{HashMap, HashSet};

use super::change::Change;
use crate::diff::{Action, DiffElement};
use crate::error::{Error, Result, SyncError};
use crate::flags::ModelFlags;
use crate::model::{AnyModel, ModelError};
use crate::report::{Cause, Outcome};
use crate::store::{LocalStore, Near, StoreError};

/// What an element of the report is, in sync order.
pub(super) enum Entry {
    /// A change: index in the batch.
    Change(usize),
    /// A no-change element under this ancestor change (if any).
    Unchanged(Option<usize>),
    /// A descendant of this `SKIP_CHILDREN_ON_DELETE` delete.
    RemovedWith(usize),
}

/// The plan: the batch's changes and every element in sync order.
pub(super) struct Plan<'a> {
    pub(super) changes: Vec<Change<'a>>,
    /// Outcomes decided by the pre-check (creates of existing keys, say).
    pub(super) outcomes: Vec<Outcome>,
    pub(super) entries: Vec<(&'a DiffElement, Entry)>,
}

/// A step of the planner's walk.
enum Visit<'a, 'd> {
    /// Plan an element, then its children.
    Element {
        e: &'a DiffElement,
        parent: Option<&'a DiffElement>,
        parent_dep: Option<usize>,
    },
    /// A `NATURAL_DELETION_ORDER` delete, after its children: the changes
    /// from `first` on are theirs, and it waits for them.
    AfterChildren {
        e: &'a DiffElement,
        dst: Option<&'d dyn AnyModel>,
        parent: Option<&'a DiffElement>,
        parent_dep: Option<usize>,
        first: usize,
    },
}

pub(super) struct Planner<'a, 'd> {
    pub(super) source: Option<&'a LocalStore>,
    pub(super) dest: &'d LocalStore,
    /// Check that elements agree with the models their keys find (diffs that
    /// were not just computed from these stores).
    pub(super) check_identifiers: bool,
    /// The diff was just made from these stores: its elements' models are
    /// where the differ found them (no lookups by key).
    pub(super) located: bool,
    /// Keys this plan creates, so children may go under them and duplicates fail.
    pub(super) created: HashSet<(&'a str, &'a str)>,
    /// Keys this plan deletes, with the delete: a later create may reuse them.
    pub(super) deleted: HashMap<(&'a str, &'a str), usize>,
    pub(super) plan: Plan<'a>,
}

impl<'a, 'd> Planner<'a, 'd> {
    /// The destination's model of `e`, if it holds one. A create's key is
    /// looked up: the differ pairs models under their parents, and the
    /// destination may hold the key under another one (a move).
    fn dest_model(&self, e: &DiffElement) -> Option<&'d dyn AnyModel> {
        match e.located.filter(|_| self.located && e.action != Action::Create) {
            Some(at) => at.dst.and_then(|(t, s)| self.dest.tables[t].models.get(s)),
            None => self
                .dest
                .find_dyn_near(e.model_type(), e.unique_id(), self.dest_slot(e)),
        }
    }

    /// The source's model of `e`, when syncing from a source that holds
    /// one (a delete's key is looked up, as a create's in the destination).
    fn source_model(&self, e: &DiffElement) -> Option<&'a dyn AnyModel> {
        let source = self.source?;
        match e.located.filter(|_| self.located && e.action != Action::Delete) {
            Some(at) => at.src.and_then(|(t, s)| source.tables[t].models.get(s)),
            None => source.find_dyn_near(e.model_type(), e.unique_id(), e.located.and_then(|at| at.src)),
        }
    }

    /// Where the destination holds `e`'s model, by the differ: a hint the
    /// store checks ([`Near`]), so a diff made from other stores, or
    /// reversed, or from stores written since, finds its keys all the same
    /// (a two-way run applies parts of its classification to both sides).
    fn dest_slot(&self, e: &DiffElement) -> Near {
        e.located.and_then(|at| at.dst)
    }

    fn invalid(&self, e: &DiffElement, message: impl Into<String>) -> Error {
        Error::Sync(SyncError::InvalidDiff {
            store: self.dest.name().to_string(),
            key: e.model_key(),
            message: message.into(),
        })
    }

    /// Plans the elements in sync order, on a work stack (hierarchies may
    /// be deep).
    pub(super) fn plan(&mut self, elements: &'a [DiffElement]) -> Result<()> {
        // The deletes of moved keys go first, so each create finds its key
        // free whatever the order of the two parents.
        let hoisted = moved_deletes(elements);
        for &(e, parent) in &hoisted {
            self.walk(
                vec![Visit::Element {
                    e,
                    parent,
                    parent_dep: None,
                }],
                &HashSet::new(),
            )?;
        }
        let hoisted: HashSet<*const DiffElement> = hoisted.iter().map(|(e, _)| *e as *const DiffElement).collect();
        let work: Vec<Visit<'a, 'd>> = elements
            .iter()
            .rev()
            .map(|e| Visit::Element {
                e,
                parent: None,
                parent_dep: None,
            })
            .collect();
        self.walk(work, &hoisted)
    }

    /// Plans what `work` holds, and below it; `skip`: elements planned already.
    fn walk(&mut self, mut work: Vec<Visit<'a, 'd>>, skip: &HashSet<*const DiffElement>) -> Result<()> {
        while let Some(v) = work.pop() {
            match v {
                Visit::Element { e, .. } if skip.contains(&(e as *const DiffElement)) => {}
                Visit::Element { e, parent, parent_dep } => self.element(e, parent, parent_dep, &mut work)?,
                Visit::AfterChildren {
                    e,
                    dst,
                    parent,
                    parent_dep,
                    first,
                } => {
                    let kids: Vec<usize> = (first..self.plan.changes.len()).collect();
                    let me = self.change(e, dst, false, parent, parent_dep)?;
                    self.plan.changes[me].child_deps = kids;
                }
            }
        }
        Ok(())
    }

    /// Plans one element; its children go on the work stack.
    fn element(
        &mut self,
        e: &'a DiffElement,
        parent: Option<&'a DiffElement>,
        parent_dep: Option<usize>,
        work: &mut Vec<Visit<'a, 'd>>,
    ) -> Result<()> {
        // One lookup per element at most: `change` takes what it found.
        let dst = self.dest_model(e);
        if e.action != Action::Create
            && let Some(m) = dst
            && self.check_identifiers
            && m.identifiers() != e.identifiers()
        {
            return Err(self.invalid(e, "the element's identifiers do not match its key"));
        }
        let dst_flags = dst.map(|m| m.flags()).unwrap_or_default();
        let delete = e.action == Action::Delete;
        let subtree = delete && dst_flags.contains(ModelFlags::SKIP_CHILDREN_ON_DELETE);
        if delete && dst_flags.contains(ModelFlags::NATURAL_DELETION_ORDER) && !subtree {
            // Children first; the parent waits for all of them, and they for
            // whatever this model's own parent waits on.
            work.push(Visit::AfterChildren {
                e,
                dst,
                parent,
                parent_dep,
                first: self.plan.changes.len(),
            });
            work.extend(e.children.iter().rev().map(|c| Visit::Element {
                e: c,
                parent: Some(e),
                parent_dep,
            }));
            return Ok(());
        }
        let me = if e.action == Action::NoChange {
            if dst.is_none() {
                return Err(self.invalid(e, "a no-change element the destination does not hold"));
            }
            self.plan.entries.push((e, Entry::Unchanged(parent_dep)));
            parent_dep
        } else {
            Some(self.change(e, dst, subtree, parent, parent_dep)?)
        };
        if let Some(me) = me
            && subtree
        {
            let mut stack: Vec<&DiffElement> = e.children.iter().rev().collect();
            while let Some(c) = stack.pop() {
                self.plan.entries.push((c, Entry::RemovedWith(me)));
                stack.extend(c.children.iter().rev());
            }
            return Ok(());
        }
        work.extend(e.children.iter().rev().map(|c| Visit::Element {
            e: c,
            parent: Some(e),
            parent_dep: me,
        }));
        Ok(())
    }

    /// Checks one change against the destination store and adds it. `dst`:
    /// the destination's model with this key; `subtree`: a delete that takes
    /// the subtree with it (`SKIP_CHILDREN_ON_DELETE`).
    fn change(
        &mut self,
        e: &'a DiffElement,
        dst: Option<&'d dyn AnyModel>,
        subtree: bool,
        parent: Option<&'a DiffElement>,
        parent_dep: Option<usize>,
    ) -> Result<usize> {
        let src_model = self.source_model(e);
        let parent_key = parent.map(|p| (p.model_type(), p.unique_id()));
        let mut outcome = Outcome::Pending;
        let mut new_model = None;
        let mut frees = None;
        let i = self.plan.changes.len();
        match e.action {
            Action::Create => {
                if let (Some((pt, pk)), Some(p)) = (parent_key, parent) {
                    if self.dest_model(p).is_none() && !self.created.contains(&(pt, pk)) {
                        return Err(self.invalid(e, format!("its parent {pt} {pk:?} is neither stored nor created")));
                    }
                    if let Some(schema) = self.dest.schema(pt)
                        && !schema.children.iter().any(|c| c == e.model_type())
                    {
                        return Err(self.invalid(
                            e,
                            format!(
                                "its parent type {pt} does not declare {} children (declared: [{}])",
                                e.model_type(),
                                schema.children.join(", ")
                            ),
                        ));
                    }
                }
                let freed = self.deleted.remove(&(e.model_type(), e.unique_id()));
                let taken = freed.is_none() && dst.is_some();
                frees = freed;
                if taken || !self.created.insert((e.model_type(), e.unique_id())) {
                    // The reference's pre-check: this element fails, not the sync.
                    outcome = Outcome::Failed(Cause::from_error(Box::new(StoreError::AlreadyExists {
                        store: self.dest.name().to_string(),
                        key: e.model_key(),
                    })));
                } else {
                    match new_model_for(e, src_model, self.dest) {
                        // A diff just computed from these stores keys its models right.
                        Ok(m) if self.check_identifiers && m.unique_id() != e.unique_id() => {
                            return Err(self.invalid(e, format!("its identifiers give the key {:?}", m.unique_id())));
                        }
                        Ok(m) => new_model = Some(m),
                        // Values the diff carries itself (read from a file, say)
                        // that do not fit: the diff is wrong, nothing is applied.
                        Err(err) if src_model.is_none() => return Err(self.invalid(e, err.to_string())),
                        // The destination's type cannot hold the source's model (a
                        // required attribute it lacks, a value of the wrong kind):
                        // this element fails.
                        Err(err) => outcome = Outcome::Failed(Cause::from_error(Box::new(err))),
                    }
                }
            }
            Action::Update => {
                let Some(stored) = dst else {
                    return Err(self.invalid(e, "an update of a model the destination does not hold"));
                };
                if src_model.is_none_or(|s| s.as_any().type_id() != stored.as_any().type_id()) {
                    // Values cross types or come from a loaded diff: try them on a copy.
                    let mut probe = stored.clone_box();
                    let values = match src_model {
                        Some(s) => s.attributes(),
                        None => e.new_values(),
                    };
                    match probe.set_attributes(&values) {
                        Ok(()) => {}
                        Err(err) if src_model.is_none() => return Err(self.invalid(e, err.to_string())),
                        Err(err) => outcome = Outcome::Failed(Cause::from_error(Box::new(err))),
                    }
                }
            }
            Action::Delete => {
                if dst.is_none() {
                    return Err(self.invalid(e, "a delete of a model the destination does not hold"));
                }
                self.deleted.insert((e.model_type(), e.unique_id()), i);
            }
            Action::NoChange => {}
        }
        self.plan.changes.push(Change {
            action: e.action,
            element: e,
            attrs: std::cell::OnceCell::new(),
            source: src_model,
            parent,
            new_model,
            parent_dep,
            child_deps: Vec::new(),
            frees,
            remove_subtree: subtree,
            near: self.dest_slot(e),
            parent_near: parent.and_then(|p| self.dest_slot(p)),
        });
        self.plan.outcomes.push(outcome);
        self.plan.entries.push((e, Entry::Change(i)));
        Ok(i)
    }
}

/// The model a create stores in the destination, built from the
/// destination's model type: a typed copy when the source model is of that
/// very type (same Rust type and schema), else rebuilt from the values.
/// Local-only fields take their default, flags the destination type's.
fn new_model_for(
    e: &DiffElement,
    src: Option<&dyn AnyModel>,
    dest: &LocalStore,
) -> Result<Box<dyn AnyModel>, ModelError> {
    let Some(t) = dest.table_index(e.model_type()).map(|t| &dest.tables[t]) else {
        return match src {
            Some(m) => Ok(m.copy_for_create_box()),
            None => Err(ModelError::Schema {
                model_type: e.model_type().to_string(),
                message: format!(
                    "cannot create {:?}: the destination has not registered this model type",
                    e.key
                ),
            }),
        };
    };
    if let Some(m) = src
        && m.as_any().type_id() == t.models.rust_type().id
        && (std::ptr::eq(m.schema(), &*t.schema) || *m.schema() == *t.schema)
    {
        return Ok(m.copy_for_create_box());
    }
    let attrs = match src {
        Some(m) => m.attributes(),
        None => e.source_attrs().unwrap_or_default(),
    };
    t.models.build(&t.schema, &e.identifiers(), &attrs)
}

/// The deletes of keys the diff also creates (a model moved to another
/// parent), each with its parent element: the highest such delete of a
/// subtree only (its descendants go with it).
fn moved_deletes(elements: &[DiffElement]) -> Vec<(&DiffElement, Option<&DiffElement>)> {
    let mut created: HashSet<(&str, &str)> = HashSet::new();
    let mut stack: Vec<&DiffElement> = elements.iter().collect();
    while let Some(e) = stack.pop() {
        if e.action == Action::Create {
            created.insert((e.model_type(), e.unique_id()));
        }
        stack.extend(e.children.iter());
    }
    if created.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut stack: Vec<(&DiffElement, Option<&DiffElement>)> = elements.iter().rev().map(|e| (e, None)).collect();
    while let Some((e, parent)) = stack.pop() {
        if e.action == Action::Delete && created.contains(&(e.model_type(), e.unique_id())) {
            out.push((e, parent));
            continue;
        }
        stack.extend(e.children.iter().rev().map(|c| (c, Some(e))));
    }
    out
}
