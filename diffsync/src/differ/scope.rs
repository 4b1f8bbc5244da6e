//! A diff limited to some keys and their subtrees.

use crate::model::column::Slot;
use crate::store::{LocalStore, TypeIdx};
use hashbrown::HashSet;

/// The part of two stores a diff covers ([`Options::part`]), as slots:
/// per side (source, destination) the requested models and their ancestors.
pub(crate) struct Scope {
    full: [HashSet<(TypeIdx, Slot)>; 2],
    path: [HashSet<(TypeIdx, Slot)>; 2],
    /// (type, key) of ancestors outside every requested subtree: in the
    /// result they are no-change parents.
    pub(super) outside: HashSet<(String, String)>,
}

impl Scope {
    pub(super) fn new(stores: [&LocalStore; 2], keys: &[(String, String)]) -> Scope {
        let mut sc = Scope {
            full: Default::default(),
            path: Default::default(),
            outside: HashSet::new(),
        };
        for (i, store) in stores.into_iter().enumerate() {
            for (t, k) in keys {
                let Some((ty, slot)) = store.locate(t, k) else { continue };
                sc.full[i].insert((ty, slot));
                let mut up = store.tables[ty].meta[slot].parent;
                while let Some(l) = up {
                    sc.path[i].insert((l.ty, l.slot));
                    up = store.tables[l.ty].meta[l.slot].parent;
                }
            }
            for &(ty, slot) in &sc.path[i] {
                let mut at = Some((ty, slot));
                let mut inside = false;
                while let Some((t, s)) = at {
                    inside |= sc.full[i].contains(&(t, s));
                    at = store.tables[t].meta[s].parent.map(|l| (l.ty, l.slot));
                }
                if !inside {
                    let t = &store.tables[ty];
                    sc.outside.insert((t.schema.name.to_string(), t.key(slot).to_string()));
                }
            }
        }
        sc
    }

    /// The keys of one model type (its table on each side) that are
    /// requested or on the way to one, on either side.
    pub(super) fn keys<'s>(&self, sides: [(&'s LocalStore, Option<TypeIdx>); 2]) -> HashSet<&'s str> {
        let mut out = HashSet::new();
        for (i, (store, ty)) in sides.into_iter().enumerate() {
            let Some(ty) = ty else { continue };
            let t = &store.tables[ty];
            for &(mt, slot) in self.full[i].iter().chain(&self.path[i]) {
                if mt == ty {
                    out.insert(t.key(slot));
                }
            }
        }
        out
    }

    /// Whether a pair is in a requested subtree (`Some(true)`), only on
    /// the way to one (`Some(false)`), or outside the part.
    pub(super) fn place(
        &self,
        st: Option<TypeIdx>,
        s: Option<Slot>,
        dt: Option<TypeIdx>,
        d: Option<Slot>,
    ) -> Option<bool> {
        let has = |set: &HashSet<(TypeIdx, Slot)>, t: Option<TypeIdx>, slot: Option<Slot>| {
            t.zip(slot).is_some_and(|k| set.contains(&k))
        };
        if has(&self.full[0], st, s) || has(&self.full[1], dt, d) {
            Some(true)
        } else if has(&self.path[0], st, s) || has(&self.path[1], dt, d) {
            Some(false)
        } else {
            None
        }
    }
}
