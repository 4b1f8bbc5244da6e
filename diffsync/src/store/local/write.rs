//! Changing and removing models, and compacting sparse tables.

use hashbrown::{HashMap, HashSet};

use crate::model::AttrSource;
use crate::model::DiffModel;
use crate::model::ModelError;
use crate::model::column::TypedVec;
use crate::store::ChangeKind;
use crate::store::{Result, StoreError};

use crate::model::column::Slot;
use crate::store::table::{LEAF, Link, NOTHING, TypeIdx, branch_index};

use super::{COMPACT_MIN_SLOTS, LocalStore, Near};

impl LocalStore {
    /// Replaces a stored model (links stay), or adds it at the top level if absent.
    pub fn update<T: DiffModel>(&mut self, model: T) -> Result<()> {
        let uid = model.unique_id();
        match self.locate(&DiffModel::schema(&model).name, &uid) {
            None => self.add(model).map(|_| ()),
            Some((ty, slot)) => {
                let t = &mut self.tables[ty];
                let stored = t.models.rust_type().name;
                let vec = t.models.as_any_mut().downcast_mut::<TypedVec<T>>().ok_or_else(|| {
                    StoreError::Model(ModelError::TypeMismatch {
                        model_type: DiffModel::schema(&model).name.to_string(),
                        key: uid.clone(),
                        stored: stored.into(),
                        requested: std::any::type_name::<T>().into(),
                    })
                })?;
                vec.0[slot.index()] = Some(model);
                self.redigest(Link { ty, slot });
                Ok(())
            }
        }
    }

    /// Returns the stored model with `model`'s key, or adds `model`; `true` if added.
    pub fn get_or_instantiate<T: DiffModel>(&mut self, model: T) -> Result<(&T, bool)> {
        let uid = model.unique_id();
        let name = DiffModel::schema(&model).name.to_string();
        let created = self.locate(&name, &uid).is_none();
        if created {
            self.add(model)?;
        }
        Ok((self.find(&name, &uid)?, created))
    }

    /// Like [`get_or_instantiate`](Self::get_or_instantiate), but an existing model
    /// takes `model`'s attributes; `true` if added.
    pub fn update_or_instantiate<T: DiffModel>(&mut self, model: T) -> Result<(&T, bool)> {
        let uid = model.unique_id();
        let name = DiffModel::schema(&model).name.to_string();
        let created = match self.locate(&name, &uid) {
            None => {
                self.add(model)?;
                true
            }
            Some(_) => {
                self.update_near(&name, &uid, AttrSource::Model(&model), None)?;
                false
            }
        };
        Ok((self.find(&name, &uid)?, created))
    }

    /// Number of models of one type.
    pub fn count(&self, model_type: &str) -> usize {
        self.table_index(model_type).map_or(0, |t| self.tables[t].live)
    }

    /// Number of models of all types.
    pub fn count_all(&self) -> usize {
        self.tables.iter().map(|t| t.live).sum()
    }

    /// Replaces the attributes of the model `key` names, in place.
    pub fn update_attributes(&mut self, key: impl AsRef<crate::ModelKey>, source: AttrSource<'_>) -> Result<()> {
        let key = key.as_ref();
        self.update_near(key.model_type(), key.unique_id(), source, None)
    }

    /// [`remove`](Self::remove) of the model of type `model_type` whose
    /// unique id is `uid`.
    pub(crate) fn remove_uid(&mut self, model_type: &str, uid: &str, remove_children: bool) -> Result<()> {
        self.remove_many_near(&[(model_type, uid, remove_children)], |_| None)
            .map_err(|(_, e)| e)
    }

    /// [`update_attributes`](Self::update_attributes) of a model that may be at `near`.
    pub(crate) fn update_near(
        &mut self,
        model_type: &str,
        key: &str,
        source: AttrSource<'_>,
        near: Near,
    ) -> Result<()> {
        let (ty, slot) = self
            .locate_near(model_type, key, near)
            .ok_or_else(|| self.not_found(model_type, key))?;
        let result = self.tables[ty].models.update_attrs(slot, source);
        // Even a failed update may have set some attributes.
        self.redigest(Link { ty, slot });
        Ok(result?)
    }

    /// Removes a model. Its children are removed with it when `remove_children`
    /// is set; otherwise they stay, unlinked, at the top level.
    pub fn remove(&mut self, key: impl AsRef<crate::ModelKey>, remove_children: bool) -> Result<()> {
        let key = key.as_ref();
        self.remove_many_near(&[(key.model_type(), key.unique_id(), remove_children)], |_| None)
            .map_err(|(_, e)| e)
    }

    /// Removes several models, each `(key, remove_children)`: every one
    /// it finds, and the first missing one with its index. Each parent's
    /// child list is filtered once, so removing many siblings costs the
    /// list's length once, not once per sibling.
    pub fn remove_many(&mut self, items: &[(crate::ModelKey, bool)]) -> std::result::Result<(), (usize, StoreError)> {
        let items: Vec<(&str, &str, bool)> = items
            .iter()
            .map(|(k, children)| (k.model_type(), k.unique_id(), *children))
            .collect();
        self.remove_many_near(&items, |_| None)
    }

    /// [`remove_many`](Self::remove_many) of models that may be where
    /// `near` says (by the item's index).
    pub(crate) fn remove_many_near(
        &mut self,
        items: &[(&str, &str, bool)],
        near: impl Fn(usize) -> Near,
    ) -> std::result::Result<(), (usize, StoreError)> {
        let mut first = None;
        let mut found = Vec::with_capacity(items.len());
        for (i, &(model_type, key, remove_children)) in items.iter().enumerate() {
            match self.locate_near(model_type, key, near(i)) {
                Some((ty, slot)) => found.push((ty, slot, remove_children)),
                None => {
                    first.get_or_insert_with(|| (i, self.not_found(model_type, key)));
                }
            }
        }
        // Each removed model's subtree leaves its ancestors' fingerprints,
        // up to the nearest one removed here too (whose own subtree, this
        // one included, leaves the ancestors above it).
        let removing: HashSet<Link> = found.iter().map(|&(ty, slot, _)| Link { ty, slot }).collect();
        for &at in &removing {
            let t = &self.tables[at.ty];
            if let Some(parent) = t.meta[at.slot].parent {
                let gone = (self.subtree_at(at), t.flagged(at.slot));
                self.adjust_below(parent, NOTHING, gone, Some(&removing));
            }
        }
        // (parent type, parent slot, child list) → the slots leaving it.
        let mut leaving: HashMap<(TypeIdx, Slot, usize), HashSet<Slot>> = HashMap::new();
        for &(ty, slot, _) in &found {
            if let Some(p) = self.tables[ty].meta[slot].parent
                && let Some(ci) = self.tables[p.ty].child_types.iter().position(|c| *c == Some(ty))
            {
                leaving.entry((p.ty, p.slot, ci)).or_default().insert(slot);
            }
        }
        for ((pty, pslot, ci), gone) in leaving {
            if let Some(b) = self.tables[pty].branch_mut(pslot) {
                b.children[ci].retain(|s| !gone.contains(s));
            }
        }
        for (ty, slot, remove_children) in found {
            // A subtree removed earlier in the list may have taken it already.
            if self.tables[ty].meta[slot].alive() {
                self.drop_slot(ty, slot, remove_children);
            }
        }
        self.compact_if_sparse();
        first.map_or(Ok(()), Err)
    }

    /// Reclaims removed slots of tables that are more than half empty (so a
    /// long-lived store with churn does not grow), keeping insertion order.
    fn compact_if_sparse(&mut self) {
        for ty in 0..self.tables.len() {
            let t = &self.tables[ty];
            if t.meta.len() > COMPACT_MIN_SLOTS && t.live * 2 < t.meta.len() {
                self.compact_table(TypeIdx::new(ty));
            }
        }
    }

    fn compact_table(&mut self, ty: TypeIdx) {
        self.epoch += 1;
        let t = &mut self.tables[ty];
        // Old slot → new slot; a dead one maps past the end (a reference
        // to it, which must not exist, would fail loudly).
        let mut remap = vec![Slot::MAX; t.meta.len()];
        let mut next = 0;
        for (old, m) in t.meta.iter().enumerate() {
            if m.alive() {
                remap[old] = Slot::new(next);
                next += 1;
            }
        }
        t.meta.retain(|m| m.alive());
        let old_keys = std::mem::take(&mut t.keys);
        let old_branches = std::mem::take(&mut t.branches);
        for m in t.meta.iter_mut() {
            m.uid = t.keys.push(old_keys.get(m.uid));
            if let Some(b) = (m.branch() != LEAF).then(|| &old_branches[m.branch() as usize]) {
                t.branches.push(b.clone());
                m.set_branch(branch_index(t.branches.len() - 1));
            }
        }
        t.models.compact();
        for l in self.dirty_roots.iter_mut().filter(|l| l.ty == ty) {
            l.slot = remap[l.slot.index()];
        }
        t.index.clear();
        let meta = &t.meta;
        for (slot, m) in meta.iter().enumerate() {
            t.index.insert_unique(m.hash(), Slot::new(slot), |&i| meta[i].hash());
        }
        // Every reference to this table's slots: parents' child lists, children's parent links.
        for u in &mut self.tables {
            let child_lists: Vec<usize> = (0..u.child_types.len())
                .filter(|&ci| u.child_types[ci] == Some(ty))
                .collect();
            // Removed slots elsewhere hold no live references (and no child lists).
            for m in u.meta.iter_mut().filter(|m| m.alive()) {
                if let Some(p) = &mut m.parent
                    && p.ty == ty
                {
                    p.slot = remap[p.slot.index()];
                }
            }
            for b in u.branches.iter_mut() {
                for &ci in &child_lists {
                    for s in &mut b.children[ci] {
                        *s = remap[s.index()];
                    }
                }
            }
        }
    }

    /// Frees a slot; its children are freed too (a work stack, not
    /// recursion: subtrees may be deep) or left parentless.
    fn drop_slot(&mut self, ty: TypeIdx, slot: Slot, remove_children: bool) {
        let mut stack = vec![(ty, slot)];
        while let Some((ty, slot)) = stack.pop() {
            self.emit(ChangeKind::Deleted, Link { ty, slot });
            let term = self.term_at(Link { ty, slot });
            let t = &mut self.tables[ty];
            if t.meta[slot].parent.is_none() {
                t.root_bucket_update(slot, false);
            }
            // The lists are emptied, not dropped: a branch keeps one per child type.
            let children: Vec<Vec<Slot>> = t
                .branch_mut(slot)
                .map(|b| b.children.iter_mut().map(std::mem::take).collect())
                .unwrap_or_default();
            let meta = &mut t.meta[slot];
            meta.kill();
            let hash = meta.hash();
            if let Ok(e) = t.index.find_entry(hash, |&i| i == slot) {
                e.remove();
            }
            t.models.clear(slot);
            t.live -= 1;
            t.fingerprint.remove(term);
            t.parentless -= usize::from(meta.parent.is_none());
            for (ci, list) in children.into_iter().enumerate() {
                let Some(cty) = self.tables[ty].child_types[ci] else {
                    continue;
                };
                if remove_children {
                    stack.extend(list.into_iter().map(|c| (cty, c)));
                } else {
                    for c in list {
                        self.orphan(Link { ty: cty, slot: c });
                    }
                }
            }
        }
    }
}
