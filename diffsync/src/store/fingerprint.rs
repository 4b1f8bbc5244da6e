//! Keeping digests and subtree fingerprints current as the store changes.

use hashbrown::HashSet;

use super::ChangeKind;
use crate::digest::{self, Digest, Fingerprint};
use crate::flags::ModelFlags;
use crate::key::ModelKey;

use super::local::LocalStore;
use super::table::{EAGER_DEPTH, Link, Packed, TypeIdx, root_bucket};

impl LocalStore {
    /// Marks a model's subtree fingerprint, and its ancestors', out of
    /// date. Stops at the first one already marked (its ancestors are), so
    /// a bulk load marks each model about once.
    fn mark_dirty(&mut self, mut at: Link) {
        loop {
            let t = &mut self.tables[at.ty];
            // A leaf's subtree is itself: never out of date.
            if let Some(b) = t.branch_mut(at.slot) {
                if b.dirty {
                    return;
                }
                b.dirty = true;
            }
            match t.meta[at.slot].parent {
                Some(p) => at = p,
                None => {
                    self.dirty_roots.push(at);
                    return;
                }
            }
        }
    }

    /// Adds `add` to and takes `remove` out of the subtree fingerprints
    /// (and IGNORE counts) of `from` and each of its ancestors, and of the
    /// root's bucket, so they stay current; past [`EAGER_DEPTH`]
    /// ancestors, the rest are marked out of date instead.
    pub(crate) fn adjust(&mut self, from: Link, add: (Fingerprint, u32), remove: (Fingerprint, u32)) {
        self.adjust_below(from, add, remove, None);
    }

    /// [`adjust`](Self::adjust), stopping below the first model in `stop`.
    pub(crate) fn adjust_below(
        &mut self,
        from: Link,
        add: (Fingerprint, u32),
        remove: (Fingerprint, u32),
        stop: Option<&HashSet<Link>>,
    ) {
        let mut at = Some(from);
        let mut depth = 0;
        while let Some(l) = at {
            if stop.is_some_and(|s| s.contains(&l)) {
                return;
            }
            let t = &mut self.tables[l.ty];
            if t.dirty(l.slot) {
                // Recounted with its ancestors at the next refresh.
                return;
            }
            if depth == EAGER_DEPTH {
                self.mark_dirty(l);
                return;
            }
            depth += 1;
            // A leaf's own subtree follows from its digest, already changed.
            if let Some(b) = t.branch_mut(l.slot) {
                b.subtree.merge(add.0);
                b.subtree.unmerge(remove.0);
                b.flagged = b.flagged.wrapping_add(add.1).wrapping_sub(remove.1);
            }
            let m = &t.meta[l.slot];
            at = m.parent;
            // A root's bucket is the sum of its roots' subtrees: the same change.
            if at.is_none() && !t.roots.is_empty() {
                let b = &mut t.roots[root_bucket(m.hash())];
                b.fingerprint.merge(add.0);
                b.fingerprint.unmerge(remove.0);
                b.flagged = b.flagged.wrapping_add(add.1).wrapping_sub(remove.1);
            }
        }
    }

    /// A model's stable key hash, computed once.
    pub(crate) fn key_hash(&mut self, at: Link) -> u64 {
        let t = &mut self.tables[at.ty];
        let cached = t.key_hash(at.slot);
        if cached != 0 {
            return cached;
        }
        let hash = digest::parent_hash(&t.schema.name, t.key(at.slot));
        if let Some(b) = t.branch_mut(at.slot) {
            b.key_hash = hash;
        }
        hash
    }

    /// A model's content or parent may have changed: its digest and term
    /// follow, and the subscribers hear of a real change.
    pub(crate) fn redigest(&mut self, at: Link) {
        let t = &self.tables[at.ty];
        let m = &t.meta[at.slot];
        let Some(model) = t.models.get(at.slot) else { return };
        let item = digest::item_digest(model);
        let ignored = model.flags().contains(ModelFlags::IGNORE);
        let parent = m.parent.map(|p| self.tables[p.ty].key_hash(p.slot));
        let term = digest::term(item, parent);
        let old_term = digest::term(m.digest.get(), parent);
        let t = &mut self.tables[at.ty];
        let m = &mut t.meta[at.slot];
        let changed = old_term != term;
        let old = (
            Fingerprint {
                count: 1,
                sum: old_term.0,
            },
            u32::from(m.ignored()),
        );
        t.fingerprint.remove(old_term);
        t.fingerprint.add(term);
        m.digest = Packed::new(item);
        m.set_ignored(ignored);
        self.adjust(at, (Fingerprint { count: 1, sum: term.0 }, u32::from(ignored)), old);
        if changed {
            self.emit(ChangeKind::Updated, at);
        }
    }

    /// Recounts the subtree fingerprints marked out of date (changes more
    /// than [`EAGER_DEPTH`] levels down): a walk of those subtrees' changed
    /// paths. Sync and reconcile call it on the stores they change.
    pub(crate) fn refresh_fingerprints(&mut self) {
        let roots = std::mem::take(&mut self.dirty_roots);
        // Post-order on a work stack (trees may be deep): (model, children done).
        let mut stack: Vec<(Link, bool)> = Vec::new();
        for root in roots {
            let t = &self.tables[root.ty];
            let alive = t
                .meta
                .get(root.slot.index())
                .is_some_and(|m| m.alive() && m.parent.is_none())
                && t.dirty(root.slot);
            if !alive {
                continue;
            }
            stack.push((root, false));
            while let Some((at, done)) = stack.pop() {
                let t = &self.tables[at.ty];
                let m = &t.meta[at.slot];
                if !done {
                    stack.push((at, true));
                    for (ci, list) in t.children(at.slot).iter().enumerate() {
                        let Some(cty) = t.child_types[ci] else { continue };
                        let ct = &self.tables[cty];
                        stack.extend(
                            list.iter()
                                .filter(|&&c| ct.dirty(c))
                                .map(|&c| (Link { ty: cty, slot: c }, false)),
                        );
                    }
                    continue;
                }
                let mut fp = Fingerprint::default();
                fp.add(self.term_at(at));
                let mut flagged = u32::from(m.ignored());
                // The children's terms mix in this model's key.
                let key_hash = Some(t.key_hash(at.slot));
                for (ci, list) in t.children(at.slot).iter().enumerate() {
                    let Some(cty) = t.child_types[ci] else { continue };
                    let ct = &self.tables[cty];
                    for &c in list {
                        fp.merge(ct.subtree(c, key_hash));
                        flagged = flagged.wrapping_add(ct.flagged(c));
                    }
                }
                let t = &mut self.tables[at.ty];
                let root = t.meta[at.slot].parent.is_none();
                if root {
                    t.root_bucket_update(at.slot, false);
                }
                if let Some(b) = t.branch_mut(at.slot) {
                    b.subtree = fp;
                    b.flagged = flagged;
                    b.dirty = false;
                }
                if root {
                    t.root_bucket_update(at.slot, true);
                }
            }
        }
    }

    /// Whether every subtree fingerprint is up to date.
    pub(crate) fn fingerprints_fresh(&self) -> bool {
        self.dirty_roots.is_empty()
    }

    /// The fingerprint of the whole store: equal for two stores holding
    /// the same models under the same parents, whatever the order they
    /// were added in. Kept up to date by every change: O(model types).
    pub fn fingerprint(&self) -> Fingerprint {
        let mut fp = Fingerprint::default();
        for t in &self.tables {
            fp.merge(t.fingerprint);
        }
        fp
    }

    /// The fingerprint of every model of one type.
    pub fn type_fingerprint(&self, model_type: &str) -> Fingerprint {
        self.table_index(model_type)
            .map_or_else(Fingerprint::default, |t| self.tables[t].fingerprint)
    }

    /// Every model's key and term (its item digest mixed with its parent's
    /// key: what the store's fingerprint sums), type by type, leaving out
    /// models flagged IGNORE. What a peer protocol builds its key-ordered
    /// index from: two stores hold the same models under the same parents
    /// exactly when these sets are equal.
    pub fn terms(&self) -> impl Iterator<Item = (ModelKey, Digest)> + '_ {
        self.tables.iter().enumerate().flat_map(move |(ty, t)| {
            t.slots().filter_map(move |slot| {
                if t.meta[slot].ignored() {
                    return None;
                }
                let term = self.term_at(Link {
                    ty: TypeIdx::new(ty),
                    slot,
                });
                Some((t.models.get(slot)?.model_key(), term))
            })
        })
    }

    /// The item digest of the model `key` names.
    pub fn digest(&self, key: impl AsRef<crate::ModelKey>) -> Option<Digest> {
        let key = key.as_ref();
        self.digest_uid(key.model_type(), key.unique_id())
    }

    /// [`digest`](Self::digest) of the model of type `model_type` whose
    /// unique id is `uid`.
    pub(crate) fn digest_uid(&self, model_type: &str, uid: &str) -> Option<Digest> {
        let (ty, slot) = self.locate(model_type, uid)?;
        Some(self.tables[ty].meta[slot].digest.get())
    }

    /// The fingerprint of the model `key` names and everything below it
    /// (counted now where a change deep down left it out of date).
    pub fn subtree_fingerprint(&self, key: impl AsRef<crate::ModelKey>) -> Option<Fingerprint> {
        let key = key.as_ref();
        let (ty, slot) = self.locate(key.model_type(), key.unique_id())?;
        let mut fp = Fingerprint::default();
        let mut stack = vec![Link { ty, slot }];
        while let Some(at) = stack.pop() {
            let t = &self.tables[at.ty];
            if !t.dirty(at.slot) {
                fp.merge(self.subtree_at(at));
                continue;
            }
            fp.add(self.term_at(at));
            for (ci, list) in t.children(at.slot).iter().enumerate() {
                if let Some(cty) = t.child_types[ci] {
                    stack.extend(list.iter().map(|&c| Link { ty: cty, slot: c }));
                }
            }
        }
        Some(fp)
    }
}
