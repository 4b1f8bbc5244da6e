//! The base: the last state both sides agreed on, its file format and where it is kept.

use std::collections::HashSet;
use std::fmt;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::diff::{Action, Diff};
use crate::error::{Error, ReconcileError, Result};
use crate::model::{Attrs, ModelSchema};
use crate::store::{AttrSource, LocalStore};

/// The last state both sides agreed on: per model type and key, the
/// identifiers, attributes and parent link. Persist it between runs with
/// [`save`](Base::save) and [`load`](Base::load).
///
/// ```
/// use diffsync::bidir::Base;
/// let base = Base::new();
/// assert!(base.is_empty());
/// ```
#[derive(Clone)]
pub struct Base {
    pub(super) store: LocalStore,
    /// (model type, attribute) pairs the saved base did not record (added
    /// to the type since): a reconcile fills them from the sides, so an
    /// added attribute is never a change by itself.
    pub(super) unknown: Vec<(String, String)>,
    /// Writes of an interrupted run (see [`Pending`]).
    pub(super) pending: Vec<Pending>,
    /// Keys an interrupted write left in doubt (its side changed them
    /// since): a change to one is a conflict, run after run (they are
    /// saved with the base), until both sides agree on it.
    pub(super) suspect: HashSet<(String, String)>,
    /// Of the keys in doubt, the creates the target did not hold after a
    /// crash: whether it never got them or deleted them since cannot be
    /// told, and the side that made the model keeps it (the conflict is
    /// logged, the create sent again), whatever the strategy.
    pub(super) kept: HashSet<(String, String)>,
    /// Conflicts decided and not carried out yet (see [`Decided`]).
    pub(super) decided: Vec<Decided>,
}

impl fmt::Debug for Base {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Base").field("models", &self.len()).finish()
    }
}

impl Default for Base {
    fn default() -> Self {
        Base::new()
    }
}

/// The base file's `format` field.
const BASE_FORMAT: &str = "diffsync-base";
/// The base file's layout version (1: without schemas, still read).
const BASE_VERSION: u32 = 2;

#[derive(Serialize, Deserialize)]
struct BaseDocument {
    format: String,
    version: u32,
    /// Each model type's fields when the base was saved.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    schemas: std::collections::BTreeMap<String, SavedSchema>,
    /// Parents before their children.
    models: Vec<BaseRecord>,
    /// Writes of a run that saved this base ahead of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pending: Vec<Pending>,
    /// Keys in doubt (model type, key): a change to one is a conflict
    /// until both sides agree on it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    suspect: Vec<(String, String)>,
    /// Of those, creates the side that made them keeps.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    kept: Vec<(String, String)>,
    /// Conflicts decided whose resolution has not reached the losing side.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    decided: Vec<Decided>,
}

/// A conflict a run decided whose resolution did not reach the losing side
/// (its write failed, or the run stopped before it): while both sides hold
/// what they held then, the next run carries the decision out as it was
/// made, whatever the strategy says now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Decided {
    pub(super) model_type: String,
    pub(super) key: String,
    /// The left side won (else the right).
    pub(super) left_won: bool,
    /// The strategy that decided it, as logged.
    pub(super) strategy: String,
    /// The item digest each side held (hex; `None`: it held none).
    pub(super) left: Option<String>,
    pub(super) right: Option<String>,
}

impl Decided {
    /// The digest a side holds for a key, as a decision records it.
    pub(super) fn held(side: &LocalStore, t: &str, k: &str) -> Option<String> {
        side.digest_uid(t, k).map(|d| format!("{:032x}", d.0))
    }

    /// Whether both sides hold what they held when it was decided.
    pub(super) fn stands(&self, ls: &LocalStore, rs: &LocalStore) -> bool {
        Decided::held(ls, &self.model_type, &self.key) == self.left
            && Decided::held(rs, &self.model_type, &self.key) == self.right
    }
}

/// A write a reconcile was about to make when it saved its base ahead of
/// its writes: which side, and the model that side holds once the write
/// landed (`None`: deleted). The next run looks at that side: if it holds
/// exactly this, the write landed and the base takes it; else the base
/// keeps what it had.
#[derive(Clone, Serialize, Deserialize)]
pub(super) struct Pending {
    /// The write went to the left side (else the right).
    pub(super) to_left: bool,
    pub(super) model_type: String,
    pub(super) key: String,
    after: Option<BaseRecord>,
}

/// A model type's fields as a base saw them.
#[derive(Serialize, Deserialize, PartialEq)]
struct SavedSchema {
    /// XXH3-128 of the fields below, in hex: equal fingerprints, same fields.
    fingerprint: String,
    identifiers: Vec<SavedField>,
    attributes: Vec<SavedField>,
}

#[derive(Serialize, Deserialize, PartialEq)]
struct SavedField {
    name: String,
    kind: crate::model::ValueKind,
    #[serde(default)]
    optional: bool,
}

impl SavedSchema {
    fn of(schema: &ModelSchema) -> SavedSchema {
        let fields = |defs: &[crate::model::FieldDef]| -> Vec<SavedField> {
            defs.iter()
                .map(|f| SavedField {
                    name: f.name.to_string(),
                    kind: f.kind,
                    optional: f.optional,
                })
                .collect()
        };
        let (identifiers, attributes) = (fields(&schema.identifiers), fields(&schema.attributes));
        let bytes = serde_json::to_vec(&(&identifiers, &attributes)).unwrap_or_default();
        SavedSchema {
            fingerprint: format!("{:032x}", xxhash_rust::xxh3::xxh3_128(&bytes)),
            identifiers,
            attributes,
        }
    }

    /// What the base can keep of a type whose schema changed since: added
    /// and removed attributes are fine; an identifier, or an attribute of
    /// another kind now, is not.
    fn check(&self, now: &SavedSchema, model_type: &str, origin: &str) -> Result<()> {
        if self.fingerprint == now.fingerprint {
            return Ok(());
        }
        let fail = |field: &str, message: String| {
            Error::Reconcile(ReconcileError::BaseSchema {
                path: origin.to_string(),
                model_type: model_type.to_string(),
                field: field.to_string(),
                message,
            })
        };
        if self.identifiers != now.identifiers {
            let names = |f: &[SavedField]| f.iter().map(|f| f.name.as_str()).collect::<Vec<_>>().join(", ");
            let field = now
                .identifiers
                .iter()
                .zip(&self.identifiers)
                .find(|(a, b)| a != b)
                .map_or("", |(a, _)| a.name.as_str());
            return Err(fail(
                field,
                format!(
                    "the identifiers were [{}], now [{}]",
                    names(&self.identifiers),
                    names(&now.identifiers)
                ),
            ));
        }
        for was in &self.attributes {
            if let Some(is) = now.attributes.iter().find(|f| f.name == was.name)
                && is.kind != was.kind
                && is.kind != crate::model::ValueKind::Any
            {
                return Err(fail(&was.name, format!("was {:?}, is {:?} now", was.kind, is.kind)));
            }
        }
        Ok(())
    }
}

impl SavedSchema {
    /// Whether a record of the type fits this schema: the same identifier
    /// and attribute names, each value of its field's kind.
    fn holds(&self, r: &BaseRecord) -> std::result::Result<(), String> {
        for (fields, values, what) in [
            (&self.identifiers, &r.identifiers, "identifier"),
            (&self.attributes, &r.attributes, "attribute"),
        ] {
            for f in fields {
                match values.get(f.name.as_str()) {
                    None => return Err(format!("its {what} {:?} is missing (the file's schema has it)", f.name)),
                    Some(v) if !(f.kind.accepts(v) || (v.is_null() && f.optional)) => {
                        return Err(format!("its {what} {:?} is {v}, not of kind {:?}", f.name, f.kind));
                    }
                    Some(_) => {}
                }
            }
            if let Some((name, _)) = values
                .iter()
                .find(|(n, _)| !fields.iter().any(|f| f.name == n.as_ref()))
            {
                return Err(format!("it has an {what} {name:?} the file's schema does not"));
            }
        }
        Ok(())
    }
}

/// A set of keys as a file keeps it: sorted.
fn sorted(keys: &HashSet<(String, String)>) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = keys.iter().cloned().collect();
    out.sort();
    out
}

/// A value of `kind` to stand in for an attribute the base never recorded
/// until a reconcile fills it from the sides.
fn placeholder(f: &crate::model::FieldDef) -> Value {
    use crate::model::ValueKind;
    match (&f.default, f.optional, f.kind) {
        (Some(v), _, _) => v.clone(),
        (None, true, _) | (None, _, ValueKind::Any) => Value::Null,
        (None, false, ValueKind::String) => Value::String(String::new()),
        (None, false, ValueKind::Integer) => Value::from(0),
        (None, false, ValueKind::Float) => Value::from(0.0),
        (None, false, ValueKind::Bool) => Value::Bool(false),
        (None, false, ValueKind::List) => Value::Array(Vec::new()),
        (None, false, ValueKind::Map) => Value::Object(Default::default()),
    }
}

#[derive(Clone, Serialize, Deserialize)]
struct BaseRecord {
    model_type: String,
    key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    parent: Option<(String, String)>,
    identifiers: Attrs,
    attributes: Attrs,
}

impl Base {
    /// An empty base: the first run, when the sides never agreed on anything.
    pub fn new() -> Base {
        Base {
            store: LocalStore::new("base"),
            unknown: Vec::new(),
            pending: Vec::new(),
            suspect: HashSet::new(),
            kept: HashSet::new(),
            decided: Vec::new(),
        }
    }

    /// A base holding these models (rebuilding a lost base from a side
    /// known to be right, say).
    pub fn from_store(store: LocalStore) -> Base {
        Base {
            store,
            unknown: Vec::new(),
            pending: Vec::new(),
            suspect: HashSet::new(),
            kept: HashSet::new(),
            decided: Vec::new(),
        }
    }

    /// The models of the base.
    pub fn store(&self) -> &LocalStore {
        &self.store
    }

    /// Number of models.
    pub fn len(&self) -> usize {
        self.store.count_all()
    }

    /// Whether the base holds no model.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The base as versioned JSON bytes (to keep it in a database row, a
    /// key, an object).
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let schemas = self
            .store
            .model_types()
            .filter_map(|t| Some((t.to_string(), SavedSchema::of(self.store.schema(t)?))))
            .collect();
        let file = BaseDocument {
            format: BASE_FORMAT.into(),
            version: BASE_VERSION,
            schemas,
            models: self.records()?,
            pending: self.pending.clone(),
            suspect: sorted(&self.suspect),
            kept: sorted(&self.kept),
            decided: self.decided.clone(),
        };
        serde_json::to_vec(&file).map_err(|e| {
            Error::Reconcile(ReconcileError::Base {
                path: String::new(),
                message: e.to_string(),
            })
        })
    }

    /// A base from [`to_bytes`](Base::to_bytes); the model types come from
    /// `like` (one side's store); `origin` names where the bytes came from.
    ///
    /// A model type whose schema changed since the base was saved: an
    /// attribute added since is unknown to the base (a reconcile takes it
    /// from the sides, so it is no change by itself), a removed one is
    /// dropped, and an identifier or an attribute of another kind now is
    /// [`ReconcileError::BaseSchema`](crate::ReconcileError::BaseSchema) naming them.
    pub fn from_bytes(bytes: &[u8], like: &LocalStore, origin: &str) -> Result<Base> {
        let fail = |message: String| {
            Error::Reconcile(ReconcileError::Base {
                path: origin.to_string(),
                message,
            })
        };
        let file: BaseDocument = serde_json::from_slice(bytes)
            .map_err(|e| fail(format!("{e} (a damaged or truncated file?); rebuild it with a resync")))?;
        if file.format != BASE_FORMAT || !(1..=BASE_VERSION).contains(&file.version) {
            return Err(fail(format!(
                "format {:?} version {} (expected {BASE_FORMAT:?} version {BASE_VERSION}); rebuild it with a resync",
                file.format, file.version
            )));
        }
        for (t, saved) in &file.schemas {
            if let Some(now) = like.schema(t) {
                saved.check(&SavedSchema::of(now), t, origin)?;
            }
        }
        for r in &file.models {
            if let Some(saved) = file.schemas.get(&r.model_type) {
                saved
                    .holds(r)
                    .map_err(|message| fail(format!("{} {:?}: {message}", r.model_type, r.key)))?;
            }
        }
        let mut unknown: Vec<(String, String)> = Vec::new();
        let (pending, suspect, kept, decided) = (
            file.pending,
            file.suspect.into_iter().collect(),
            file.kept.into_iter().collect(),
            file.decided,
        );
        let mut todo = file.models;
        for r in &mut todo {
            let Some(schema) = like.schema(&r.model_type) else {
                continue;
            };
            r.attributes.retain(|name, _| schema.attribute_index(name).is_some());
            for f in schema.attributes.iter() {
                if !r.attributes.contains_key(f.name.as_ref()) {
                    // Unknown: never a side's value (that side would look
                    // unchanged, and its old value overwrite the other's
                    // edit); the field's default, which is what a system
                    // holds until someone sets it.
                    r.attributes.insert(f.name.clone(), placeholder(f));
                    let pair = (r.model_type.clone(), f.name.to_string());
                    if !unknown.contains(&pair) {
                        unknown.push(pair);
                    }
                }
            }
        }
        let mut store = like.empty_like("base");
        // Parents come first in a file this crate wrote; a record whose
        // parent is not read yet waits for another pass all the same.
        loop {
            let before = todo.len();
            let mut waiting = Vec::new();
            for r in todo {
                if let Some((t, k)) = &r.parent
                    && store.find_dyn(t, k).is_none()
                {
                    waiting.push(r);
                    continue;
                }
                let model = store
                    .build(&r.model_type, &r.identifiers, &r.attributes)
                    .map_err(|e| fail(e.to_string()))?;
                let parent = r.parent.as_ref().map(|(t, k)| (t.as_str(), k.as_str()));
                store
                    .insert_near(model, parent, None)
                    .map_err(|e| fail(e.to_string()))?;
            }
            match waiting.first() {
                None => {
                    return Ok(Base {
                        store,
                        unknown,
                        pending,
                        suspect,
                        kept,
                        decided,
                    });
                }
                Some(first) if waiting.len() == before => {
                    // Name a record whose parent is nowhere (not one waiting itself).
                    let waits = |(t, k): &(String, String)| waiting.iter().any(|w| w.model_type == *t && w.key == *k);
                    let r = waiting
                        .iter()
                        .find(|w| w.parent.as_ref().is_some_and(|p| !waits(p)))
                        .unwrap_or(first);
                    let (t, k) = r.parent.as_ref().map_or(("", ""), |(t, k)| (t.as_str(), k.as_str()));
                    return Err(fail(format!(
                        "{} {:?} names a parent {t} {k:?} that the base does not hold",
                        r.model_type, r.key
                    )));
                }
                Some(_) => todo = waiting,
            }
        }
    }

    /// Writes the base to `path`: a temporary file in the same directory,
    /// then a rename, so a crash leaves the old base or the new one.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let fail = |message: String| {
            Error::Reconcile(ReconcileError::Base {
                path: path.display().to_string(),
                message,
            })
        };
        let text = self.to_bytes()?;
        let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
        let written = std::fs::File::create(&tmp).and_then(|mut f| {
            f.write_all(&text)?;
            f.sync_all()
        });
        written.and_then(|()| std::fs::rename(&tmp, path)).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            fail(e.to_string())
        })
    }

    /// Reads a base written by [`save`](Base::save); the model types come
    /// from `like` (one side's store). A missing file in an existing
    /// directory is an empty base (the first run); a missing directory is
    /// an error (a mistyped path would otherwise look like a first run and
    /// turn every deletion since the last one into a create).
    pub fn load(path: impl AsRef<Path>, like: &LocalStore) -> Result<Base> {
        let path = path.as_ref();
        match std::fs::read(path) {
            Ok(bytes) => Base::from_bytes(&bytes, like, &path.display().to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let dir = match path.parent() {
                    Some(d) if !d.as_os_str().is_empty() => d,
                    _ => Path::new("."),
                };
                if dir.is_dir() {
                    Ok(Base::new())
                } else {
                    Err(Error::Reconcile(ReconcileError::Base {
                        path: path.display().to_string(),
                        message: format!(
                            "the directory {} does not exist (a mistyped path?); create it for a first run",
                            dir.display()
                        ),
                    }))
                }
            }
            Err(e) => Err(Error::Reconcile(ReconcileError::Base {
                path: path.display().to_string(),
                message: e.to_string(),
            })),
        }
    }

    /// Every model, type by type (a type after the types it is a child
    /// of) and in each type in store order: parents come before children,
    /// and a base read back keeps the order its side loads in, which the
    /// three-way walk uses to find base models at the side's slot.
    fn records(&self) -> Result<Vec<BaseRecord>> {
        let s = &self.store;
        let mut types: Vec<&str> = Vec::new();
        let mut todo: Vec<&str> = s.model_types().collect();
        while !todo.is_empty() {
            let ready = |t: &&str| {
                !todo
                    .iter()
                    .any(|p| p != t && s.schema(p).is_some_and(|sc| sc.children.iter().any(|c| c == t)))
            };
            // A cycle of distinct types cannot be ordered: keep the rest as they are.
            let next = todo.iter().position(ready).unwrap_or(0);
            types.push(todo.remove(next));
        }
        let mut out = Vec::with_capacity(s.count_all());
        for t in types {
            for m in s.get_all_dyn(t) {
                let key = m.unique_id();
                let parent = s.parent_uid(t, &key)?.map(|(pt, pk)| (pt.to_string(), pk.to_string()));
                out.push(BaseRecord {
                    model_type: t.to_string(),
                    key,
                    parent,
                    identifiers: m.identifiers(),
                    attributes: m.attributes(),
                });
            }
        }
        Ok(out)
    }

    /// Settles the writes of an interrupted run: a write whose side holds
    /// what it wrote landed, and the base takes it; for any other the base
    /// keeps its version, and the key is in doubt (see `suspect`).
    pub(super) fn resolve_pending(&mut self, ls: &LocalStore, rs: &LocalStore) -> Result<()> {
        for p in std::mem::take(&mut self.pending) {
            let side = if p.to_left { ls } else { rs };
            let (t, k) = (p.model_type.as_str(), p.key.as_str());
            if side.schema(t).is_none() {
                continue;
            }
            let now = side.find_dyn(t, k).map(|m| m.attributes());
            let before = self.store.find_dyn(t, k).is_some();
            match (&p.after, &now) {
                // Landed, or the side deleted the key itself since (the
                // write not landed): which one is not known, so the base
                // takes the deletion and a change the other side made
                // since is a conflict, not a create.
                (None, None) => {
                    if before {
                        self.store.remove_uid(t, k, false)?;
                    }
                    self.suspect.insert((t.to_string(), k.to_string()));
                }
                (Some(after), Some(now)) if *now == after.attributes => self.agree(side, t, k)?,
                // A create the side does not hold: it never landed, or the
                // side's user deleted it again, which cannot be told apart.
                // In doubt, and kept: the next run logs the conflict and
                // sends the create again, whatever the strategy, so nothing
                // the creating side made is lost to the doubt (and a
                // deletion it overrides is in the log).
                (Some(_), None) if !before => {
                    self.suspect.insert((t.to_string(), k.to_string()));
                    self.kept.insert((t.to_string(), k.to_string()));
                }
                // The side still holds the base's version of a model the
                // write was to change or delete: it did not land, and the
                // next classification sends it again.
                (_, Some(now)) if self.store.find_dyn(t, k).is_some_and(|b| b.attributes() == *now) => {}
                // Otherwise it did not land, or it did and the side changed
                // the key since (a create deleted again, say). Which one is
                // not known, so a change on either side is a conflict, never
                // a silent overwrite.
                _ => {
                    self.suspect.insert((t.to_string(), k.to_string()));
                }
            }
        }
        self.store.refresh_fingerprints();
        Ok(())
    }

    /// The writes `plan` makes to a side, as pending records (`target`:
    /// the side's store before the writes).
    pub(super) fn intents(plan: &Diff, target: &LocalStore, to_left: bool) -> Vec<Pending> {
        let mut out = Vec::new();
        let mut path: Vec<(String, String)> = Vec::new();
        for (e, depth) in plan.iter() {
            path.truncate(depth);
            let key = (e.model_type().to_string(), e.unique_id().to_string());
            path.push(key.clone());
            let after = match e.action {
                Action::NoChange => continue,
                Action::Delete => None,
                Action::Create => Some(BaseRecord {
                    model_type: key.0.clone(),
                    key: key.1.clone(),
                    parent: depth.checked_sub(1).and_then(|d| path.get(d).cloned()),
                    identifiers: e.identifiers(),
                    attributes: e.new_values(),
                }),
                Action::Update => {
                    let Some(now) = target.find_dyn(&key.0, &key.1) else {
                        continue;
                    };
                    let mut attributes = now.attributes();
                    attributes.extend(e.new_values());
                    Some(BaseRecord {
                        model_type: key.0.clone(),
                        key: key.1.clone(),
                        parent: None,
                        identifiers: e.identifiers(),
                        attributes,
                    })
                }
            };
            out.push(Pending {
                to_left,
                model_type: key.0,
                key: key.1,
                after,
            });
        }
        out
    }

    /// Gives the attributes the saved base did not record the value the
    /// sides agree on, where they do; elsewhere the base keeps the
    /// field's default, so a side that holds it is unchanged and one that
    /// does not is an edit (and two different edits are a conflict).
    pub(super) fn fill_unknown(&mut self, ls: &LocalStore, rs: &LocalStore) -> Result<()> {
        for (t, attr) in std::mem::take(&mut self.unknown) {
            let keys: Vec<String> = self.store.get_all_dyn(&t).map(|m| m.unique_id()).collect();
            for k in keys {
                let [l, r] = [ls, rs].map(|side| side.find_dyn(&t, &k).and_then(|m| m.attribute(&attr)));
                if let (Some(v), Some(w)) = (l, r)
                    && v == w
                    && self.store.get_dyn_uid(&t, &k)?.attribute(&attr).as_ref() != Some(&v)
                {
                    let values: Attrs = [(attr.clone().into(), v)].into_iter().collect();
                    self.store.update_near(&t, &k, AttrSource::Values(&values), None)?;
                }
            }
        }
        self.store.refresh_fingerprints();
        Ok(())
    }

    /// Makes the base hold the model `side` has under this key (as agreed
    /// by both sides), under its parent there when the base has that too.
    pub(super) fn agree(&mut self, side: &LocalStore, t: &str, key: &str) -> Result<()> {
        let model = side.get_dyn_uid(t, key)?;
        if self.store.find_dyn(t, key).is_some() {
            let parent = side.parent_uid(t, key)?;
            let moved = self.store.parent_uid(t, key)? != parent
                && parent.is_none_or(|(pt, pk)| self.store.find_dyn(pt, pk).is_some());
            if !moved {
                if !self.store.same_attrs(t, key, side) {
                    self.store.update_near(t, key, AttrSource::Model(model), None)?;
                }
                return Ok(());
            }
            // Moved: out with what is below it (a reconcile agrees on those
            // after it, parents first) and in under its new parent.
            self.store.remove_uid(t, key, true)?;
        }
        let parent = side
            .parent_uid(t, key)?
            .filter(|(pt, pk)| self.store.find_dyn(pt, pk).is_some());
        let built = self.store.build(t, &model.identifiers(), &model.attributes())?;
        Ok(self.store.insert_near(built, parent, None)?)
    }
}

/// Where a base is kept between runs: a file ([`BaseFile`]), a database
/// row or a key (the adapters crate has them). A reconcile loop loads its
/// base from one at start and saves it after each pass that moved it.
pub trait BaseStore: Send {
    /// The saved base; an empty one when none was saved yet (the first
    /// run). `like`: one side's store (the model types).
    fn load(&mut self, like: &LocalStore) -> Result<Base>;
    /// Replaces the saved base at once: a crash leaves the old one or the
    /// new one, never half of each.
    fn save(&mut self, base: &Base) -> Result<()>;
}

/// A base store shared by the runs that save to it.
pub type SharedBaseStore = Arc<std::sync::Mutex<dyn BaseStore>>;

/// A base kept in a file ([`Base::save`] / [`Base::load`]).
#[derive(Clone, Debug)]
pub struct BaseFile(pub std::path::PathBuf);

impl BaseStore for BaseFile {
    fn load(&mut self, like: &LocalStore) -> Result<Base> {
        Base::load(&self.0, like)
    }
    fn save(&mut self, base: &Base) -> Result<()> {
        base.save(&self.0)
    }
}
