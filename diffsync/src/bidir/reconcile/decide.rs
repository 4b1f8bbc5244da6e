//! Deciding each key: where its change goes, the conflicts and how the
//! strategies resolve them, moves as one change, deletes that would take
//! what the other side changed.

use std::collections::HashMap;

use crate::bidir::options::BiOptions;
use crate::bidir::strategy::{Conflict, Strategy, merge_plan};
use crate::diff::{Action, DiffElement};
use crate::key::ModelKey;
use crate::model::AnyModel;
use crate::report::{ConflictKind, ConflictRecord, Resolution};
use crate::store::LocalStore;

/// Where an element's change goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Flow {
    /// Structure only (an unchanged parent).
    Keep,
    ToLeft,
    ToRight,
    /// Both sides take part of the other's attributes (a merge).
    Both,
    /// A conflict left as it is.
    Skip,
}

/// Attributes each side takes, by key, for merged conflicts.
pub(super) type MergePlans = HashMap<(String, String), (Vec<String>, Vec<String>)>;

/// (model type, key)
pub(super) type Key<'a> = (&'a str, &'a str);

/// A model moved to another parent on a side (the diff deletes it under
/// one parent and creates it under another), with everything below it in
/// both places: one change, which goes whole one way or not at all.
pub(super) struct Unit {
    /// The moved model's key.
    root: (String, String),
    /// The walk's elements of both subtrees.
    elements: Vec<usize>,
}

/// The moves in a walk, and which elements belong to one.
pub(super) fn moves(walk: &[(&DiffElement, usize)]) -> (Vec<Unit>, Vec<bool>) {
    let mut in_unit = vec![false; walk.len()];
    let mut at: HashMap<Key<'_>, Vec<usize>> = HashMap::new();
    for (i, (e, _)) in walk.iter().enumerate() {
        if matches!(e.action, Action::Create | Action::Delete) {
            at.entry((e.model_type(), e.unique_id())).or_default().push(i);
        }
    }
    at.retain(|_, places| places.len() == 2 && walk[places[0]].0.action != walk[places[1]].0.action);
    if at.is_empty() {
        return (Vec::new(), in_unit);
    }
    let subtree = |i: usize| {
        let depth = walk[i].1;
        let end = walk[i + 1..]
            .iter()
            .position(|(_, d)| *d <= depth)
            .map_or(walk.len(), |n| i + 1 + n);
        i..end
    };
    let mut units = Vec::new();
    for i in 0..walk.len() {
        let (e, _) = walk[i];
        if in_unit[i] {
            continue;
        }
        let Some(places) = at.get(&(e.model_type(), e.unique_id())) else {
            continue;
        };
        let elements: Vec<usize> = places.iter().flat_map(|&p| subtree(p)).collect();
        for &j in &elements {
            in_unit[j] = true;
        }
        units.push(Unit {
            root: (e.model_type().to_string(), e.unique_id().to_string()),
            elements,
        });
    }
    (units, in_unit)
}

/// What decides conflicts: the options, each type's strategy and the three stores.
pub(super) struct Judge<'a> {
    pub(super) opts: &'a BiOptions,
    pub(super) strategies: HashMap<String, Strategy>,
    pub(super) base: &'a LocalStore,
    pub(super) ls: &'a LocalStore,
    pub(super) rs: &'a LocalStore,
}

impl Judge<'_> {
    /// Whether `side` holds the key otherwise than the base: present on one
    /// only, other attributes, or under another parent.
    fn changed(&self, side: &LocalStore, (t, k): Key<'_>) -> bool {
        match (side.find_dyn(t, k), self.base.find_dyn(t, k)) {
            (None, None) => false,
            (Some(_), None) | (None, Some(_)) => true,
            (Some(_), Some(_)) => {
                !self.base.same_attrs(t, k, side) || side.parent_uid(t, k).ok() != self.base.parent_uid(t, k).ok()
            }
        }
    }

    /// Decides a move: the side that moved it (and changed what it likes
    /// below it) wins when the other side changed nothing of the unit; else
    /// each key the two sides changed is a conflict, one record per key,
    /// and the strategy's decision for the first of them moves the whole
    /// unit one way or leaves it (a merge cannot split a move: left alone).
    pub(super) fn moved(
        &self,
        unit: &Unit,
        walk: &[(&DiffElement, usize)],
        flow: &mut [Flow],
        conflicts: &mut Vec<ConflictRecord>,
    ) {
        let root = (unit.root.0.as_str(), unit.root.1.as_str());
        let (left_moved, right_moved) = (self.changed(self.ls, root), self.changed(self.rs, root));
        let mut keys: Vec<Key<'_>> = Vec::new();
        for &i in &unit.elements {
            let key = (walk[i].0.model_type(), walk[i].0.unique_id());
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
        let changed: Vec<(Key<'_>, bool, bool)> = keys
            .iter()
            .map(|&k| (k, self.changed(self.ls, k), self.changed(self.rs, k)))
            .collect();
        let clear = |by_left: bool| {
            changed.iter().all(|(k, l, r)| {
                if by_left {
                    !*r || (*k == root && !right_moved)
                } else {
                    !*l || (*k == root && !left_moved)
                }
            })
        };
        let to = if left_moved && !right_moved && clear(true) {
            Flow::ToRight
        } else if right_moved && !left_moved && clear(false) {
            Flow::ToLeft
        } else {
            // Contested: the keys each side changed where the other changed
            // the unit too.
            let contested: Vec<Key<'_>> = changed
                .iter()
                .filter(|(k, l, r)| {
                    (*l && *r) || (*k == root && (*l || *r)) || (*l && right_moved) || (*r && left_moved)
                })
                .map(|(k, ..)| *k)
                .collect();
            let kind = |(t, k): Key<'_>| match (self.ls.find_dyn(t, k).is_some(), self.rs.find_dyn(t, k).is_some()) {
                (true, false) => ConflictKind::UpdateDelete,
                (false, true) => ConflictKind::DeleteUpdate,
                _ => ConflictKind::UpdateUpdate,
            };
            let lead = contested.first().copied().unwrap_or(root);
            let strategy = self.strategies.get(lead.0).unwrap_or(&self.opts.strategy);
            let resolution = match strategy.resolve(&self.conflict(lead, kind(lead))) {
                Resolution::Merge => Resolution::Skip,
                r => r,
            };
            for k in if contested.is_empty() { vec![root] } else { contested } {
                conflicts.push(record(
                    &self.conflict(k, kind(k)),
                    &strategy.name(),
                    strategy.clock(),
                    resolution,
                    None,
                ));
            }
            match resolution {
                Resolution::Left => Flow::ToRight,
                Resolution::Right => Flow::ToLeft,
                _ => Flow::Skip,
            }
        };
        for &i in &unit.elements {
            if walk[i].0.action != Action::NoChange {
                flow[i] = to;
            }
        }
    }

    pub(super) fn conflict<'c>(&'c self, (t, k): Key<'c>, kind: ConflictKind) -> Conflict<'c> {
        let (base, left, right) = (self.base.find_dyn(t, k), self.ls.find_dyn(t, k), self.rs.find_dyn(t, k));
        Conflict {
            key: left
                .or(right)
                .or(base)
                .map_or_else(|| ModelKey::from_unique_id(t, k), |m| m.model_key()),
            kind,
            base,
            left,
            right,
            left_replica: self.ls.name(),
            right_replica: self.rs.name(),
        }
    }

    /// How a deletion of a model with changes below it on the other side
    /// is resolved: `keeper`, the side that kept (and changed under) it,
    /// wins when modifications beat deletions; else the type's strategy
    /// decides (a merge cannot: unresolved). Returns the resolution, the
    /// strategy's name and its clock.
    fn child_under_delete(&self, key: Key<'_>, keeper: Resolution) -> (Resolution, String, Option<String>) {
        let strategy = self.strategies.get(key.0).unwrap_or(&self.opts.strategy);
        if self.opts.modification_beats_deletion {
            return (keeper, MODIFICATION_WINS.to_string(), None);
        }
        let resolution = match strategy.resolve(&self.conflict(key, ConflictKind::ChildUnderDelete)) {
            Resolution::Merge => Resolution::Skip,
            r => r,
        };
        (resolution, strategy.name(), strategy.clock().map(str::to_string))
    }

    /// Resolves one conflict with the model type's strategy.
    /// A create in doubt after a crash (see `Base::kept`): the side that
    /// holds the model keeps it and sends it again, whatever the strategy.
    pub(super) fn kept(&self, key: Key<'_>, kind: ConflictKind) -> (Flow, ConflictRecord) {
        let c = self.conflict(key, kind);
        let (resolution, flow) = match kind {
            ConflictKind::UpdateDelete => (Resolution::Left, Flow::ToRight),
            _ => (Resolution::Right, Flow::ToLeft),
        };
        (flow, record(&c, CREATE_IN_DOUBT, None, resolution, None))
    }

    pub(super) fn decide(&self, key: Key<'_>, kind: ConflictKind, merges: &mut MergePlans) -> (Flow, ConflictRecord) {
        let c = self.conflict(key, kind);
        let (t, k) = key;
        let strategy = self.strategies.get(t).unwrap_or(&self.opts.strategy);
        let modification = match kind {
            ConflictKind::UpdateDelete => Some(Resolution::Left),
            ConflictKind::DeleteUpdate => Some(Resolution::Right),
            _ => None,
        }
        .filter(|_| self.opts.modification_beats_deletion);
        let (mut resolution, name) = match modification {
            Some(r) => (r, MODIFICATION_WINS.to_string()),
            None => (strategy.resolve(&c), strategy.name()),
        };
        let mut left_takes = None;
        let flow = match resolution {
            Resolution::Left => Flow::ToRight,
            Resolution::Right => Flow::ToLeft,
            Resolution::Skip => Flow::Skip,
            Resolution::Merge => {
                let plan = (kind == ConflictKind::UpdateUpdate)
                    .then(|| merge_plan(&c, strategy.overlap_winner(&c)))
                    .flatten();
                match plan {
                    None => {
                        resolution = Resolution::Skip;
                        Flow::Skip
                    }
                    Some((l, r)) => {
                        let flow = match (l.is_empty(), r.is_empty()) {
                            (true, _) => Flow::ToRight,
                            (_, true) => Flow::ToLeft,
                            _ => Flow::Both,
                        };
                        left_takes = Some(l.clone());
                        merges.insert((t.to_string(), k.to_string()), (l, r));
                        flow
                    }
                }
            }
        };
        let record = record(&c, &name, strategy.clock(), resolution, left_takes.as_deref());
        (flow, record)
    }
}

/// The strategy named in the log when a create in doubt was kept.
const CREATE_IN_DOUBT: &str = "a create in doubt is kept";

/// The strategy named in the log when a modification beat a deletion.
const MODIFICATION_WINS: &str = "modification beats deletion";

/// A conflict's log record; `clock`: the attribute the strategy compared.
/// `left_takes`: for a merge, the attributes the left takes from the right.
pub(super) fn record(
    c: &Conflict<'_>,
    strategy: &str,
    clock: Option<&str>,
    resolution: Resolution,
    left_takes: Option<&[String]>,
) -> ConflictRecord {
    let result = match resolution {
        Resolution::Left => c.left.map(|m| m.attributes()),
        Resolution::Right => c.right.map(|m| m.attributes()),
        Resolution::Skip => None,
        Resolution::Merge => c.left.zip(c.right).zip(left_takes).map(|((l, r), takes)| {
            let mut merged = l.attributes();
            for name in takes {
                if let Some(v) = r.attribute(name) {
                    merged.insert(name.clone().into(), v);
                }
            }
            merged
        }),
    };
    let schema = c.left.or(c.right).or(c.base).map(|m| m.schema());
    let clock = clock
        .map(str::to_string)
        .or_else(|| schema.and_then(|s| s.timestamp.as_ref().or(s.version.as_ref()).map(|f| f.to_string())));
    let value = |m: Option<&dyn AnyModel>| m.zip(clock.as_deref()).and_then(|(m, f)| m.attribute(f));
    ConflictRecord {
        key: c.key.clone(),
        kind: c.kind,
        base: c.base.map(|m| m.attributes()),
        left: c.left.map(|m| m.attributes()),
        right: c.right.map(|m| m.attributes()),
        strategy: strategy.to_string(),
        resolution,
        left_clock: value(c.left),
        right_clock: value(c.right),
        clock,
        left_replica: c.left_replica.to_string(),
        right_replica: c.right_replica.to_string(),
        run: String::new(),
        applied: None,
        result,
    }
}

/// A delete must not take descendants that do not go the same way: one
/// side deleted a model while the other changed something below it (a
/// child created, updated or deleted). The parent's strategy decides, as
/// for any conflict (with `modification_beats_deletion`, the modifying
/// side wins): the deletion wins and takes the subtree with it (each
/// change below it that is lost is logged); the modification wins and the
/// parent is recreated on the deleting side; or, left unresolved (`safe`),
/// neither the parent nor anything below it is touched. One record per
/// key: a key that already has one gets its resolution updated. Walks the
/// pre-order backwards (children first).
pub(super) fn guard_deletes(
    walk: &[(&DiffElement, usize)],
    flow: &mut [Flow],
    judge: &Judge<'_>,
    conflicts: &mut Vec<ConflictRecord>,
) {
    let mut records: Records = conflicts
        .iter()
        .enumerate()
        .map(|(i, c)| ((c.model_type().to_string(), c.key.unique_id().to_string()), i))
        .collect();
    type Records = HashMap<(String, String), usize>;
    fn log(records: &mut Records, conflicts: &mut Vec<ConflictRecord>, c: ConflictRecord) {
        match records.get(&(c.model_type().to_string(), c.key.unique_id().to_string())) {
            Some(&at) => {
                let r = &mut conflicts[at];
                r.resolution = c.resolution;
                r.strategy = c.strategy;
            }
            None => {
                records.insert(
                    (c.model_type().to_string(), c.key.unique_id().to_string()),
                    conflicts.len(),
                );
                conflicts.push(c);
            }
        }
    }
    // Per depth: the flows seen among the descendants of the current element.
    let mut below: Vec<(bool, bool, bool)> = Vec::new(); // (to left, to right, skip)
    for i in (0..walk.len()).rev() {
        let (e, depth) = walk[i];
        let mut kids = below.get(depth + 1).copied().unwrap_or_default();
        below.truncate(depth + 1);
        below.resize(depth + 1, (false, false, false));
        // In the diff that makes the left look like the right, a Delete is
        // only on the left (deleted on the right) and a Create only on the right.
        let by_right = e.action == Action::Delete && flow[i] == Flow::ToLeft;
        let by_left = e.action == Action::Create && flow[i] == Flow::ToRight;
        let contested = (by_right && (kids.1 || kids.2)) || (by_left && (kids.0 || kids.2));
        if contested {
            let key = (e.model_type(), e.unique_id());
            let (deleter, keeper) = if by_right {
                (Resolution::Right, Resolution::Left)
            } else {
                (Resolution::Left, Resolution::Right)
            };
            let (mut resolution, name, clock) = judge.child_under_delete(key, keeper);
            let end = walk[i + 1..]
                .iter()
                .position(|(_, d)| *d <= depth)
                .map_or(walk.len(), |n| i + 1 + n);
            let c = judge.conflict(key, ConflictKind::ChildUnderDelete);
            if resolution == deleter {
                // The deletion stands, and takes the subtree with it.
                let to = flow[i];
                for j in i + 1..end {
                    if flow[j] != to {
                        let (d, _) = walk[j];
                        let lost = judge.conflict((d.model_type(), d.unique_id()), ConflictKind::ChildUnderDelete);
                        log(
                            &mut records,
                            conflicts,
                            record(&lost, &name, clock.as_deref(), deleter, None),
                        );
                        flow[j] = to;
                    }
                }
            } else if resolution == keeper && !kids.2 {
                flow[i] = if by_right { Flow::ToRight } else { Flow::ToLeft };
            } else {
                resolution = Resolution::Skip;
                flow[i] = Flow::Skip;
                for j in i + 1..end {
                    if flow[j] != Flow::Keep {
                        flow[j] = Flow::Skip;
                        let (d, _) = walk[j];
                        if let Some(&at) = records.get(&(d.model_type().to_string(), d.unique_id().to_string())) {
                            conflicts[at].resolution = Resolution::Skip;
                        }
                    }
                }
            }
            log(
                &mut records,
                conflicts,
                record(&c, &name, clock.as_deref(), resolution, None),
            );
            kids = flow[i + 1..end].iter().fold((false, false, false), |k, f| {
                (
                    k.0 || matches!(f, Flow::ToLeft | Flow::Both),
                    k.1 || matches!(f, Flow::ToRight | Flow::Both),
                    k.2 || *f == Flow::Skip,
                )
            });
        }
        let me = &mut below[depth];
        me.0 |= kids.0 || matches!(flow[i], Flow::ToLeft | Flow::Both);
        me.1 |= kids.1 || matches!(flow[i], Flow::ToRight | Flow::Both);
        me.2 |= kids.2 || flow[i] == Flow::Skip;
    }
}
