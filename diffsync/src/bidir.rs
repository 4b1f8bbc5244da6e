//! Bidirectional sync: two adapters reconciled against the last state they
//! agreed on (the [`Base`]), each model classified three ways (unchanged,
//! changed on one side, changed on both), conflicts resolved by a
//! [`Strategy`] and logged.
//!
//! Detection is by content: a model counts as changed on a side when its
//! attributes (or presence) differ from the base, never by timestamps. The
//! changes are applied through each adapter's ordinary sync (hooks, batch
//! path, report), and the base takes only the keys that ended equal on both
//! sides, so a failed or interrupted run is detected again by the next one.
//!
//! ```
//! use diffsync::bidir::{Base, BiOptions, Strategy, reconcile};
//! use diffsync::{Adapter, AdapterExt, DiffModel, MemoryAdapter};
//!
//! #[derive(DiffModel, Clone, Debug, PartialEq)]
//! #[diffsync(name = "site")]
//! struct Site { #[diffsync(id)] name: String, region: String }
//!
//! let site = |n: &str, r: &str| Site { name: n.into(), region: r.into() };
//! let mut cmdb = MemoryAdapter::new("cmdb", &["site"]);
//! cmdb.store.add(site("nyc", "east"))?;
//! let mut network = MemoryAdapter::new("network", &["site"]);
//! network.store.add(site("lax", "west"))?;
//!
//! // First run: no base yet, so each side's models go to the other.
//! let mut base = Base::new();
//! let opts = BiOptions::new().strategy(Strategy::LeftWins).max_delete_share(None);
//! reconcile(&mut cmdb, &mut network, &mut base, &opts)?;
//! assert!(!cmdb.diff_from(&network)?.has_diffs());
//! assert_eq!(base.len(), 2);
//!
//! // Both edit nyc: a conflict, and the left (cmdb) wins.
//! let v = |r: &str| [("region".into(), r.into())].into_iter().collect();
//! cmdb.store.update_attributes("site", "nyc", diffsync::AttrSource::Values(&v("north")))?;
//! network.store.update_attributes("site", "nyc", diffsync::AttrSource::Values(&v("south")))?;
//! let report = reconcile(&mut cmdb, &mut network, &mut base, &opts)?;
//! assert_eq!(report.conflicts.len(), 1);
//! assert_eq!(network.store.get(&Site::key("nyc"))?.region, "north");
//! # Ok::<(), diffsync::Error>(())
//! ```

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::io::Write;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::diff::{Action, Diff, DiffElement};
use crate::differ;
use crate::error::{Error, Result};
use crate::model::{AnyModel, Attrs, ModelSchema};
use crate::options::Options;
use crate::store::{AttrSource, LocalStore, Store};
use crate::strategy_spec::StrategySpec;
use crate::sync::SyncReport;
use crate::sync::adapter::{Adapter, AdapterExt};

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
    store: LocalStore,
    /// (model type, attribute) pairs the saved base did not record (added
    /// to the type since): a reconcile fills them from the sides, so an
    /// added attribute is never a change by itself.
    unknown: Vec<(String, String)>,
    /// Writes of an interrupted run (see [`Pending`]).
    pending: Vec<Pending>,
    /// Keys an interrupted write left in doubt (its side changed them
    /// since): the next classification takes any change to them as a
    /// conflict.
    suspect: HashSet<(String, String)>,
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
}

/// A write a reconcile was about to make when it saved its base ahead of
/// its writes: which side, and the model that side holds once the write
/// landed (`None`: deleted). The next run looks at that side: if it holds
/// exactly this, the write landed and the base takes it; else the base
/// keeps what it had.
#[derive(Clone, Serialize, Deserialize)]
struct Pending {
    /// The write went to the left side (else the right).
    to_left: bool,
    model_type: String,
    key: String,
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
        let fail = |field: &str, message: String| Error::BaseSchema {
            path: origin.to_string(),
            model_type: model_type.to_string(),
            field: field.to_string(),
            message,
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
        };
        serde_json::to_vec(&file).map_err(|e| Error::Base {
            path: String::new(),
            message: e.to_string(),
        })
    }

    /// A base from [`to_bytes`](Base::to_bytes); the model types come from
    /// `like` (one side's store); `origin` names where the bytes came from.
    ///
    /// A model type whose schema changed since the base was saved: an
    /// attribute added since is unknown to the base (a reconcile takes it
    /// from the sides, so it is no change by itself), a removed one is
    /// dropped, and an identifier or an attribute of another kind now is
    /// [`Error::BaseSchema`] naming them.
    pub fn from_bytes(bytes: &[u8], like: &LocalStore, origin: &str) -> Result<Base> {
        let fail = |message: String| Error::Base {
            path: origin.to_string(),
            message,
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
        let mut unknown: Vec<(String, String)> = Vec::new();
        let pending = file.pending;
        let mut todo = file.models;
        for r in &mut todo {
            let Some(schema) = like.schema(&r.model_type) else {
                continue;
            };
            r.attributes.retain(|name, _| schema.attribute_index(name).is_some());
            for f in schema.attributes.iter() {
                if !r.attributes.contains_key(f.name.as_ref()) {
                    let value = like
                        .get_dyn_by_id(&r.model_type, &r.key)
                        .ok()
                        .and_then(|m| m.attribute(&f.name))
                        .unwrap_or_else(|| placeholder(f));
                    r.attributes.insert(f.name.clone(), value);
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
                    && store.get_dyn_by_id(t, k).is_err()
                {
                    waiting.push(r);
                    continue;
                }
                let model = store
                    .build(&r.model_type, &r.identifiers, &r.attributes)
                    .map_err(|e| fail(e.to_string()))?;
                let parent = r.parent.as_ref().map(|(t, k)| (t.as_str(), k.as_str()));
                store.insert_boxed(model, parent).map_err(|e| fail(e.to_string()))?;
            }
            match waiting.first() {
                None => {
                    return Ok(Base {
                        store,
                        unknown,
                        pending,
                        suspect: HashSet::new(),
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
        let fail = |message: String| Error::Base {
            path: path.display().to_string(),
            message,
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
                    Err(Error::Base {
                        path: path.display().to_string(),
                        message: format!(
                            "the directory {} does not exist (a mistyped path?); create it for a first run",
                            dir.display()
                        ),
                    })
                }
            }
            Err(e) => Err(Error::Base {
                path: path.display().to_string(),
                message: e.to_string(),
            }),
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
                let parent = s.parent_of(t, &key)?.map(|(pt, pk)| (pt.to_string(), pk.to_string()));
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
    fn resolve_pending(&mut self, ls: &LocalStore, rs: &LocalStore) -> Result<()> {
        for p in std::mem::take(&mut self.pending) {
            let side = if p.to_left { ls } else { rs };
            let (t, k) = (p.model_type.as_str(), p.key.as_str());
            if side.schema(t).is_none() {
                continue;
            }
            let now = side.get_dyn_by_id(t, k).ok().map(|m| m.attributes());
            let before = self.store.get_dyn_by_id(t, k).is_ok();
            match (&p.after, &now) {
                // Landed, or the side deleted the key itself since (the
                // write not landed): which one is not known, so the base
                // takes the deletion and a change the other side made
                // since is a conflict, not a create.
                (None, None) => {
                    if before {
                        self.store.remove(t, k, false)?;
                    }
                    self.suspect.insert((t.to_string(), k.to_string()));
                }
                (Some(after), Some(now)) if *now == after.attributes => self.agree(side, t, k)?,
                // The side still holds the base's version of a model the
                // write was to change or delete: it did not land, and the
                // next classification sends it again.
                (_, Some(now)) if self.store.get_dyn_by_id(t, k).is_ok_and(|b| b.attributes() == *now) => {}
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
    fn intents(plan: &Diff, target: &LocalStore, to_left: bool) -> Vec<Pending> {
        let mut out = Vec::new();
        let mut path: Vec<(String, String)> = Vec::new();
        for (e, depth) in plan.iter() {
            path.truncate(depth);
            let key = (e.model_type.to_string(), e.key.clone());
            path.push(key.clone());
            let after = match e.action {
                Action::NoChange => continue,
                Action::Delete => None,
                Action::Create => Some(BaseRecord {
                    model_type: key.0.clone(),
                    key: key.1.clone(),
                    parent: depth.checked_sub(1).and_then(|d| path.get(d).cloned()),
                    identifiers: e.identifiers.clone(),
                    attributes: e.new_values(),
                }),
                Action::Update => {
                    let Ok(now) = target.get_dyn_by_id(&key.0, &key.1) else {
                        continue;
                    };
                    let mut attributes = now.attributes();
                    attributes.extend(e.new_values());
                    Some(BaseRecord {
                        model_type: key.0.clone(),
                        key: key.1.clone(),
                        parent: None,
                        identifiers: e.identifiers.clone(),
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

    /// Gives the attributes the saved base did not record the sides'
    /// values (the left's where it has the model, else the right's), so
    /// they count as unchanged since the base.
    fn fill_unknown(&mut self, ls: &LocalStore, rs: &LocalStore) -> Result<()> {
        for (t, attr) in std::mem::take(&mut self.unknown) {
            let keys: Vec<String> = self.store.get_all_dyn(&t).map(|m| m.unique_id()).collect();
            for k in keys {
                let value = [ls, rs]
                    .iter()
                    .find_map(|side| side.get_dyn_by_id(&t, &k).ok().and_then(|m| m.attribute(&attr)));
                if let Some(v) = value
                    && self.store.get_dyn_by_id(&t, &k)?.attribute(&attr).as_ref() != Some(&v)
                {
                    let values: Attrs = [(attr.clone().into(), v)].into_iter().collect();
                    self.store.update_attributes(&t, &k, AttrSource::Values(&values))?;
                }
            }
        }
        self.store.refresh_fingerprints();
        Ok(())
    }

    /// Makes the base hold the model `side` has under this key (as agreed
    /// by both sides), under its parent there when the base has that too.
    fn agree(&mut self, side: &LocalStore, t: &str, key: &str) -> Result<()> {
        let model = side.get_dyn_by_id(t, key)?;
        if self.store.get_dyn_by_id(t, key).is_ok() {
            if !self.store.same_attrs(t, key, side) {
                self.store.update_attributes(t, key, AttrSource::Model(model))?;
            }
            return Ok(());
        }
        let parent = side
            .parent_of(t, key)?
            .filter(|(pt, pk)| self.store.get_dyn_by_id(pt, pk).is_ok());
        let built = self.store.build(t, &model.identifiers(), &model.attributes())?;
        self.store.insert_boxed(built, parent)
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

/// How a conflict is resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Resolution {
    /// The left side's version goes to both sides.
    Left,
    /// The right side's version goes to both sides.
    Right,
    /// Neither side changes; the conflict stays, and the next run finds it again.
    Skip,
    /// Attributes changed on one side only are merged: each side takes the
    /// other's changes (with [`Strategy::Merge`], attributes changed on
    /// both go to its fallback; from a closure, such an overlap leaves the
    /// conflict unapplied). Only for update/update conflicts.
    Merge,
}

/// What kind of conflict: what each side did since the base.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum ConflictKind {
    /// Both sides changed the model's attributes, differently.
    UpdateUpdate,
    /// The left side changed the model, the right side deleted it.
    UpdateDelete,
    /// The left side deleted the model, the right side changed it.
    DeleteUpdate,
    /// Both sides created the key, with different attributes.
    CreateCreate,
    /// One side deleted the model while the other changed something below it.
    ChildUnderDelete,
}

impl ConflictKind {
    /// The kind's name, as in the log: `update/update`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            ConflictKind::UpdateUpdate => "update/update",
            ConflictKind::UpdateDelete => "update/delete",
            ConflictKind::DeleteUpdate => "delete/update",
            ConflictKind::CreateCreate => "create/create",
            ConflictKind::ChildUnderDelete => "child-under-delete",
        }
    }
}

/// A conflict as a [`Strategy::Custom`] closure sees it.
pub struct Conflict<'a> {
    /// Model type name.
    pub model_type: &'a str,
    /// Unique id.
    pub key: &'a str,
    /// What each side did.
    pub kind: ConflictKind,
    /// The agreed version, if there was one.
    pub base: Option<&'a dyn AnyModel>,
    /// The left side's version, if it has one.
    pub left: Option<&'a dyn AnyModel>,
    /// The right side's version, if it has one.
    pub right: Option<&'a dyn AnyModel>,
    /// The left side's replica id (its store's name), for tiebreaks.
    pub left_replica: &'a str,
    /// The right side's replica id.
    pub right_replica: &'a str,
}

impl Conflict<'_> {
    /// The same decision on every run and on both sides: the replica whose
    /// id sorts last wins.
    pub fn tiebreak(&self) -> Resolution {
        if self.left_replica >= self.right_replica {
            Resolution::Left
        } else {
            Resolution::Right
        }
    }

    /// Decides by one attribute of both versions: `newer` says whether the
    /// left value wins, `None` for a tie (decided by [`tiebreak`](Self::tiebreak)).
    /// A modification beats a deletion; a value missing on a side leaves
    /// the conflict unapplied.
    fn by_field(&self, field: Option<&str>, newer: impl Fn(&Value, &Value) -> Option<Option<bool>>) -> Resolution {
        let Some(field) = field else {
            return Resolution::Skip;
        };
        match (self.left, self.right) {
            (Some(_), None) => Resolution::Left,
            (None, Some(_)) => Resolution::Right,
            (None, None) => Resolution::Skip,
            (Some(l), Some(r)) => match (l.attribute(field), r.attribute(field)) {
                (Some(a), Some(b)) => match newer(&a, &b) {
                    Some(Some(true)) => Resolution::Left,
                    Some(Some(false)) => Resolution::Right,
                    Some(None) => self.tiebreak(),
                    None => Resolution::Skip,
                },
                _ => Resolution::Skip,
            },
        }
    }
}

/// A user rule for conflicts.
pub type ResolveFn = Arc<dyn Fn(&Conflict<'_>) -> Resolution + Send + Sync>;

/// How conflicts are resolved.
///
/// Every strategy but a closure has a text form, which [`name`](Self::name)
/// writes and [`parse`](Self::parse) reads (a runtime-defined model type
/// names its strategy in its schema this way): `safe`, `left-wins`,
/// `right-wins`, `newest`, `newest(SKEW)`, `newest(FIELD)`,
/// `newest(FIELD, SKEW)`, `highest`, `highest(FIELD)`, `merge` (same as
/// `merge(safe)`), `merge(FALLBACK)`.
///
/// ```
/// use diffsync::bidir::Strategy;
/// let s = Strategy::parse("merge(newest(updated_at, 30))")?;
/// assert_eq!(s.name(), "merge(newest(updated_at, 30))");
/// # Ok::<(), diffsync::Error>(())
/// ```
#[derive(Clone, Default)]
#[non_exhaustive]
pub enum Strategy {
    /// Apply no conflict: log it and leave both sides (the default).
    #[default]
    Safe,
    /// The left side's version wins.
    LeftWins,
    /// The right side's version wins.
    RightWins,
    /// The version whose `field` is newer wins: numbers (epoch seconds, or
    /// any clock) or RFC 3339 strings (compared as text). Numbers less than
    /// `skew` apart are a true conflict, decided by [`Conflict::tiebreak`];
    /// a modification beats a deletion; a missing or non-comparable field
    /// leaves the conflict unapplied. Detection stays by content: the
    /// field only decides.
    Newest {
        /// The timestamp attribute; `None`: the model type's declared one
        /// (`#[diffsync(timestamp)]`, or `timestamp` in its schema).
        field: Option<String>,
        /// Clock skew tolerated between the sides (in the field's unit).
        skew: f64,
    },
    /// The version with the higher number in `field` wins; equal numbers
    /// are decided by [`Conflict::tiebreak`]; a modification beats a deletion.
    Highest {
        /// The version attribute; `None`: the model type's declared one
        /// (`#[diffsync(version)]`, or `version` in its schema).
        field: Option<String>,
    },
    /// Attribute-level merge of update/update conflicts: attributes changed
    /// on one side only merge; attributes changed on both, and the other
    /// kinds of conflict, go to `fallback`.
    Merge {
        /// Decides what merging cannot.
        fallback: Box<Strategy>,
    },
    /// A user closure decides.
    Custom(ResolveFn),
}

impl Strategy {
    /// Newest wins by the model type's declared timestamp field.
    pub fn newest(skew: f64) -> Strategy {
        Strategy::Newest { field: None, skew }
    }

    /// Newest wins by a named timestamp attribute.
    pub fn newest_by(field: impl Into<String>, skew: f64) -> Strategy {
        Strategy::Newest {
            field: Some(field.into()),
            skew,
        }
    }

    /// Highest version wins, by the model type's declared version field.
    pub fn highest() -> Strategy {
        Strategy::Highest { field: None }
    }

    /// Highest version wins, by a named attribute.
    pub fn highest_by(field: impl Into<String>) -> Strategy {
        Strategy::Highest {
            field: Some(field.into()),
        }
    }

    /// Attribute-level merge; what cannot merge goes to `fallback`.
    pub fn merge(fallback: Strategy) -> Strategy {
        Strategy::Merge {
            fallback: Box::new(fallback),
        }
    }

    /// The strategy's text form, as in the log: `safe`, `newest(updated_at, 30)`, ...
    pub fn name(&self) -> String {
        let args = |field: &Option<String>, skew: Option<f64>| {
            let parts: Vec<String> = field
                .iter()
                .cloned()
                .chain(skew.filter(|s| *s != 0.0).map(|s| s.to_string()))
                .collect();
            if parts.is_empty() {
                String::new()
            } else {
                format!("({})", parts.join(", "))
            }
        };
        match self {
            Strategy::Safe => "safe".into(),
            Strategy::LeftWins => "left-wins".into(),
            Strategy::RightWins => "right-wins".into(),
            Strategy::Newest { field, skew } => format!("newest{}", args(field, Some(*skew))),
            Strategy::Highest { field } => format!("highest{}", args(field, None)),
            Strategy::Merge { fallback } => format!("merge({})", fallback.name()),
            Strategy::Custom(_) => "custom".into(),
        }
    }

    /// Reads a strategy's text form (see the type's docs).
    pub fn parse(text: &str) -> Result<Strategy> {
        let spec = StrategySpec::parse(text).map_err(|message| Error::Strategy {
            strategy: text.to_string(),
            model_type: String::new(),
            message: message.to_string(),
        })?;
        Ok(Strategy::from_spec(spec))
    }

    fn from_spec(spec: StrategySpec) -> Strategy {
        match spec {
            StrategySpec::Safe => Strategy::Safe,
            StrategySpec::LeftWins => Strategy::LeftWins,
            StrategySpec::RightWins => Strategy::RightWins,
            StrategySpec::Newest { field, skew } => Strategy::Newest { field, skew },
            StrategySpec::Highest { field } => Strategy::Highest { field },
            StrategySpec::Merge(fallback) => Strategy::merge(Strategy::from_spec(*fallback)),
        }
    }

    /// The strategy with the fields it leaves to the model type filled
    /// from `schema`; an error when the type declares none.
    fn bind(&self, schema: &ModelSchema) -> Result<Strategy> {
        let fail = |what: &str, attr: &str| Error::Strategy {
            strategy: self.name(),
            model_type: schema.name.to_string(),
            message: format!(
                "the model type declares no {what} field: mark one with #[diffsync({attr})], set `{attr}` in its schema, or name the field"
            ),
        };
        let check = |f: &str| {
            if schema.attribute_index(f).is_none() {
                return Err(Error::Strategy {
                    strategy: self.name(),
                    model_type: schema.name.to_string(),
                    message: format!("{f:?} is not an attribute of the model type"),
                });
            }
            Ok(f.to_string())
        };
        Ok(match self {
            Strategy::Newest { field, skew } => Strategy::Newest {
                field: Some(check(match field {
                    Some(f) => f,
                    None => schema
                        .timestamp
                        .as_deref()
                        .ok_or_else(|| fail("timestamp", "timestamp"))?,
                })?),
                skew: *skew,
            },
            Strategy::Highest { field } => Strategy::Highest {
                field: Some(check(match field {
                    Some(f) => f,
                    None => schema.version.as_deref().ok_or_else(|| fail("version", "version"))?,
                })?),
            },
            Strategy::Merge { fallback } => Strategy::merge(fallback.bind(schema)?),
            other => other.clone(),
        })
    }

    /// The attribute this strategy decides by, if any.
    fn clock(&self) -> Option<&str> {
        match self {
            Strategy::Newest { field, .. } | Strategy::Highest { field } => field.as_deref(),
            Strategy::Merge { fallback } => fallback.clock(),
            _ => None,
        }
    }

    fn resolve(&self, c: &Conflict<'_>) -> Resolution {
        match self {
            Strategy::Safe => Resolution::Skip,
            Strategy::LeftWins => Resolution::Left,
            Strategy::RightWins => Resolution::Right,
            Strategy::Newest { field, skew } => c.by_field(field.as_deref(), |a, b| match (a, b) {
                (Value::Number(_), Value::Number(_)) => {
                    let (a, b) = (a.as_f64()?, b.as_f64()?);
                    Some(((a - b).abs() > *skew).then_some(a > b))
                }
                (Value::String(a), Value::String(b)) => Some((a != b).then_some(a > b)),
                _ => None,
            }),
            Strategy::Highest { field } => c.by_field(field.as_deref(), |a, b| {
                let (a, b) = (a.as_f64()?, b.as_f64()?);
                Some((a != b).then_some(a > b))
            }),
            Strategy::Merge { fallback } => {
                if c.kind != ConflictKind::UpdateUpdate {
                    return fallback.resolve(c);
                }
                match merge_plan(c, None) {
                    Some(_) => Resolution::Merge,
                    // Attributes changed on both sides: the fallback decides them.
                    None => match fallback.resolve(c) {
                        Resolution::Left | Resolution::Right => Resolution::Merge,
                        other => other,
                    },
                }
            }
            Strategy::Custom(f) => f(c),
        }
    }

    /// For a merge: which side's value wins attributes changed on both.
    fn overlap_winner(&self, c: &Conflict<'_>) -> Option<Resolution> {
        match self {
            Strategy::Merge { fallback } => match fallback.resolve(c) {
                r @ (Resolution::Left | Resolution::Right) => Some(r),
                _ => None,
            },
            _ => None,
        }
    }
}

impl std::str::FromStr for Strategy {
    type Err = Error;
    fn from_str(text: &str) -> Result<Strategy> {
        Strategy::parse(text)
    }
}

/// The attributes each side takes from the other in a merge: `(left
/// takes, right takes)`; `None` when an attribute changed on both sides and
/// `overlap` names no winner.
fn merge_plan(c: &Conflict<'_>, overlap: Option<Resolution>) -> Option<(Vec<String>, Vec<String>)> {
    let (l, r) = (c.left?.attributes(), c.right?.attributes());
    let b = c.base.map(|m| m.attributes()).unwrap_or_default();
    let (mut left_takes, mut right_takes) = (Vec::new(), Vec::new());
    for (name, lv) in &l {
        let rv = r.get(name);
        if rv == Some(lv) {
            continue;
        }
        let bv = b.get(name);
        if bv == Some(lv) {
            left_takes.push(name.to_string());
        } else if bv == rv {
            right_takes.push(name.to_string());
        } else {
            match overlap? {
                Resolution::Left => right_takes.push(name.to_string()),
                _ => left_takes.push(name.to_string()),
            }
        }
    }
    Some((left_takes, right_takes))
}

impl fmt::Debug for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// One logged conflict.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConflictRecord {
    /// Model type name.
    pub model_type: String,
    /// Unique id.
    pub key: String,
    /// What each side did.
    pub kind: ConflictKind,
    /// Attributes of the agreed version.
    pub base: Option<Attrs>,
    /// Attributes of the left side's version.
    pub left: Option<Attrs>,
    /// Attributes of the right side's version.
    pub right: Option<Attrs>,
    /// The strategy that decided.
    pub strategy: String,
    /// What it decided.
    pub resolution: Resolution,
    /// The attribute read as the models' clock: the one the strategy
    /// compared, else the type's declared timestamp, else its version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock: Option<String>,
    /// The left version's clock value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub left_clock: Option<Value>,
    /// The right version's clock value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub right_clock: Option<Value>,
    /// The left side's replica id (its store's name).
    pub left_replica: String,
    /// The right side's replica id.
    pub right_replica: String,
    /// The run that met the conflict (unique per reconcile).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub run: String,
    /// Whether the resolution reached the systems: `Some(true)` once the
    /// winner's version (or the merge) is in the losing side's system,
    /// `Some(false)` when it did not get there (or nothing was to be
    /// applied), `None` while not known: a record written ahead of the
    /// writes whose run then stopped before it could tell (a crash), or
    /// whose losing side's sync panicked (what it wrote is unknown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied: Option<bool>,
    /// The version the resolution gives both sides: the winner's, or the
    /// merge (`None`: deleted, or nothing applied).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Attrs>,
}

impl fmt::Display for ConflictRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let resolution = match self.resolution {
            Resolution::Left => "left wins",
            Resolution::Right => "right wins",
            Resolution::Skip => "not applied",
            Resolution::Merge => "merged",
        };
        write!(
            f,
            "{} {} {:?}: {resolution} ({})",
            self.kind.as_str(),
            self.model_type,
            self.key,
            self.strategy
        )?;
        let none = Attrs::new();
        let (l, r) = (
            self.left.as_ref().unwrap_or(&none),
            self.right.as_ref().unwrap_or(&none),
        );
        let names: Vec<&str> = l
            .keys()
            .chain(r.keys())
            .map(|k| k.as_ref())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let show = |a: &Option<Attrs>, k: &str| match a.as_ref().map(|a| a.get(k)) {
            None => "-".to_string(),
            Some(None) => "-".to_string(),
            Some(Some(v)) => v.as_str().map_or_else(|| v.to_string(), str::to_string),
        };
        if let Some(clock) = &self.clock {
            let v = |c: &Option<Value>| c.as_ref().map_or("-".to_string(), Value::to_string);
            write!(
                f,
                "\n  clock {clock}: {}={} {}={}",
                self.left_replica,
                v(&self.left_clock),
                self.right_replica,
                v(&self.right_clock)
            )?;
        }
        for k in names.into_iter().filter(|k| l.get(*k) != r.get(*k)) {
            write!(
                f,
                "\n  {k}    base({})    left({})    right({})",
                show(&self.base, k),
                show(&self.left, k),
                show(&self.right, k)
            )?;
            if self.resolution != Resolution::Skip {
                write!(f, "    → {}", show(&self.result, k))?;
            }
        }
        Ok(())
    }
}

/// Where conflict records go: a file, a table, a monitoring system.
///
/// Given to a reconcile ([`BiOptions::log_to`]), a sink is written ahead:
/// [`write`](Self::write) takes a run's conflicts before either side is
/// written (a failure stops the run before any write), and
/// [`settle`](Self::settle) takes them again with
/// [`applied`](ConflictRecord::applied) set once the syncs are done. A
/// crash in between leaves the records with `applied: None`.
pub trait ConflictSink {
    /// Takes the conflicts of one run; they must be durable on return.
    fn write(&mut self, records: &[ConflictRecord]) -> std::result::Result<(), crate::BoxError>;
    /// Takes the same records again, [`applied`](ConflictRecord::applied)
    /// now known. The default does nothing (a sink that only counts, say).
    fn settle(&mut self, records: &[ConflictRecord]) -> std::result::Result<(), crate::BoxError> {
        let _ = records;
        Ok(())
    }
}

/// The same record: same run, model type and key.
fn same_record(a: &ConflictRecord, b: &ConflictRecord) -> bool {
    a.run == b.run && a.model_type == b.model_type && a.key == b.key
}

impl ConflictSink for Vec<ConflictRecord> {
    fn write(&mut self, records: &[ConflictRecord]) -> std::result::Result<(), crate::BoxError> {
        self.extend_from_slice(records);
        Ok(())
    }
    fn settle(&mut self, records: &[ConflictRecord]) -> std::result::Result<(), crate::BoxError> {
        for r in records {
            match self.iter_mut().rev().find(|w| same_record(w, r)) {
                Some(w) => w.applied = r.applied,
                None => self.push(r.clone()),
            }
        }
        Ok(())
    }
}

/// Appends each conflict as one JSON line to a file (synced to disk before
/// `write` returns); a settled outcome is one more, shorter line
/// (`{"settled": RUN, "model_type": .., "key": .., "applied": BOOL}`).
/// [`JsonLines::read`] gives the records with their outcomes.
pub struct JsonLines(pub std::path::PathBuf);

/// A settled outcome's line in a [`JsonLines`] file.
#[derive(Serialize, Deserialize)]
struct Settled {
    settled: String,
    model_type: String,
    key: String,
    applied: bool,
}

impl JsonLines {
    fn append(
        &self,
        lines: impl IntoIterator<Item = serde_json::Result<Vec<u8>>>,
    ) -> std::result::Result<(), crate::BoxError> {
        let mut text = Vec::new();
        for line in lines {
            text.extend(line?);
            text.push(b'\n');
        }
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&self.0)?;
        f.write_all(&text)?;
        f.sync_all()?;
        Ok(())
    }

    /// Every record in the file, once each, with its settled outcome (a
    /// record a crash left unsettled has `applied: None`).
    pub fn read(&self) -> Result<Vec<ConflictRecord>> {
        let path = self.0.display().to_string();
        let text = std::fs::read_to_string(&self.0).map_err(|e| Error::Base {
            path: path.clone(),
            message: e.to_string(),
        })?;
        let mut out: Vec<ConflictRecord> = Vec::new();
        for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let fail = |e: serde_json::Error| Error::Base {
                path: format!("{path}:{}", i + 1),
                message: e.to_string(),
            };
            if line.starts_with("{\"settled\"") {
                let s: Settled = serde_json::from_str(line).map_err(fail)?;
                if let Some(r) = out
                    .iter_mut()
                    .rev()
                    .find(|r| r.run == s.settled && r.model_type == s.model_type && r.key == s.key)
                {
                    r.applied = Some(s.applied);
                }
            } else {
                out.push(serde_json::from_str(line).map_err(fail)?);
            }
        }
        Ok(out)
    }
}

impl ConflictSink for JsonLines {
    fn write(&mut self, records: &[ConflictRecord]) -> std::result::Result<(), crate::BoxError> {
        self.append(records.iter().map(serde_json::to_vec))
    }
    fn settle(&mut self, records: &[ConflictRecord]) -> std::result::Result<(), crate::BoxError> {
        self.append(records.iter().filter_map(|r| {
            let settled = Settled {
                settled: r.run.clone(),
                model_type: r.model_type.clone(),
                key: r.key.clone(),
                applied: r.applied?,
            };
            Some(serde_json::to_vec(&settled))
        }))
    }
}

/// A conflict sink shared by the runs that log to it.
pub type SharedSink = Arc<std::sync::Mutex<dyn ConflictSink + Send>>;

/// Options of a [`reconcile`].
#[derive(Clone)]
pub struct BiOptions {
    strategy: Strategy,
    per_type: Vec<(String, Strategy)>,
    max_delete_share: Option<f64>,
    allow_empty_side: bool,
    dry_run: bool,
    modification_beats_deletion: bool,
    log: Option<SharedSink>,
    saved: Option<SharedBaseStore>,
}

impl fmt::Debug for BiOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BiOptions")
            .field("strategy", &self.strategy)
            .field("per_type", &self.per_type)
            .field("max_delete_share", &self.max_delete_share)
            .field("allow_empty_side", &self.allow_empty_side)
            .field("dry_run", &self.dry_run)
            .field("modification_beats_deletion", &self.modification_beats_deletion)
            .field("log", &self.log.is_some())
            .field("saved", &self.saved.is_some())
            .finish()
    }
}

impl Default for BiOptions {
    fn default() -> Self {
        BiOptions {
            strategy: Strategy::Safe,
            per_type: Vec::new(),
            max_delete_share: Some(0.5),
            allow_empty_side: false,
            dry_run: false,
            modification_beats_deletion: false,
            log: None,
            saved: None,
        }
    }
}

impl BiOptions {
    /// Safe strategy, at most half of a side deleted, no empty side.
    pub fn new() -> Self {
        Self::default()
    }
    /// The strategy for every model type without its own.
    pub fn strategy(mut self, s: Strategy) -> Self {
        self.strategy = s;
        self
    }
    /// The strategy for one model type (before the one its schema names,
    /// if any, and the default).
    pub fn strategy_for(mut self, model_type: impl Into<String>, s: Strategy) -> Self {
        self.per_type.push((model_type.into(), s));
        self
    }
    /// Stop before writing anything when a side would lose more than this
    /// share of its models (`None`: no limit).
    pub fn max_delete_share(mut self, share: Option<f64>) -> Self {
        self.max_delete_share = share;
        self
    }
    /// Reconcile even when one side is empty and the base is not (a side
    /// that came up empty would otherwise delete everything on the other).
    pub fn allow_empty_side(mut self, allow: bool) -> Self {
        self.allow_empty_side = allow;
        self
    }
    /// Plan only: report what would go where, write nothing, keep the base.
    pub fn dry_run(mut self, dry_run: bool) -> Self {
        self.dry_run = dry_run;
        self
    }

    /// Update/delete and delete/update conflicts go to the modification,
    /// whatever the strategy (a deletion never loses an edit it did not
    /// see). Off by default: the strategy decides (`newest` and `highest`
    /// let the modification win anyway: a deletion has no clock).
    pub fn modification_beats_deletion(mut self, on: bool) -> Self {
        self.modification_beats_deletion = on;
        self
    }

    /// Logs every conflict to `sink`, written ahead: the records are in
    /// the sink before either side is written (a sink that fails stops the
    /// run before any write, with [`Error::ConflictLog`]), and settled
    /// once the writes are done (see [`ConflictSink`]). A dry run logs
    /// nothing.
    pub fn log_to<S: ConflictSink + Send + 'static>(mut self, sink: Arc<std::sync::Mutex<S>>) -> Self {
        self.log = Some(sink);
        self
    }

    /// Saves the base to `store` as the run goes: before either side is
    /// written (with the writes about to be made, so a run that dies half
    /// way is settled by the next one: a write that landed counts, one that
    /// did not does not), and once more at the end. A save that fails
    /// before the writes stops the run before any write; one that fails at
    /// the end makes the run [`Error::Unfinished`]. A dry run saves nothing.
    pub fn save_to<S: BaseStore + 'static>(mut self, store: Arc<std::sync::Mutex<S>>) -> Self {
        self.saved = Some(store);
        self
    }

    /// Saves to this shared base store (see [`save_to`](Self::save_to)).
    pub fn save_to_shared(mut self, store: Option<SharedBaseStore>) -> Self {
        self.saved = store;
        self
    }

    /// The sink conflicts are logged to, if any.
    pub fn sink(&self) -> Option<&SharedSink> {
        self.log.as_ref()
    }

    /// Logs to this shared sink (one that [`sink`](Self::sink) returned, or a wrapper of it).
    pub fn log_to_shared(mut self, sink: Option<SharedSink>) -> Self {
        self.log = sink;
        self
    }

    /// Each model type's strategy, fields bound to the type's declared ones:
    /// the run's choice for the type, else its schema's, else the default.
    fn strategies(&self, stores: [&LocalStore; 2]) -> Result<HashMap<String, Strategy>> {
        // A strategy for a type neither side has is a typo, not a no-op.
        for (t, s) in &self.per_type {
            if stores.iter().all(|st| st.schema(t).is_none()) {
                let mut known: Vec<&str> = stores.iter().flat_map(|st| st.model_types()).collect();
                known.sort_unstable();
                known.dedup();
                return Err(Error::Strategy {
                    strategy: s.name(),
                    model_type: t.clone(),
                    message: format!("neither side has this model type; known: [{}]", known.join(", ")),
                });
            }
        }
        let mut out = HashMap::new();
        for store in stores {
            for t in store.model_types() {
                let Some(schema) = store.schema(t) else { continue };
                if out.contains_key(t) {
                    continue;
                }
                let named = match self.per_type.iter().find(|(n, _)| n == t) {
                    Some((_, s)) => s.clone(),
                    None => match &schema.strategy {
                        Some(text) => Strategy::parse(text).map_err(|e| match e {
                            Error::Strategy { strategy, message, .. } => Error::Strategy {
                                strategy,
                                model_type: t.to_string(),
                                message,
                            },
                            other => other,
                        })?,
                        None => self.strategy.clone(),
                    },
                };
                out.insert(t.to_string(), named.bind(schema)?);
            }
        }
        Ok(out)
    }
}

/// What a [`reconcile`] did.
#[derive(Debug)]
#[non_exhaustive]
pub struct BiReport {
    /// What went (in a dry run: would go) to the left side, as a diff.
    pub plan_left: Diff,
    /// What went (would go) to the right side.
    pub plan_right: Diff,
    /// The changes that went to the left side (its sync's report).
    pub to_left: SyncReport,
    /// The changes that went to the right side.
    pub to_right: SyncReport,
    /// Every conflict, with its resolution.
    pub conflicts: Vec<ConflictRecord>,
    /// Models both sides changed the same way (resolved silently).
    pub identical: usize,
    /// The left side's sync stopped with this error (its report is in `to_left`).
    pub left_error: Option<Error>,
    /// The right side's sync stopped with this error.
    pub right_error: Option<Error>,
}

impl BiReport {
    /// The side whose sync stopped first, and its error (`None`: both
    /// syncs ran to their end).
    pub fn stopped(&self) -> Option<(&str, &Error)> {
        match (&self.left_error, &self.right_error) {
            (Some(e), _) => Some((self.to_left.dest.as_str(), e)),
            (None, Some(e)) => Some((self.to_right.dest.as_str(), e)),
            (None, None) => None,
        }
    }

    /// Conflicts the run left unapplied (`safe`, a closure's skip, a merge
    /// that could not merge): they stay until one side changes again.
    pub fn unresolved(&self) -> usize {
        self.conflicts
            .iter()
            .filter(|c| c.resolution == Resolution::Skip)
            .count()
    }

    /// Whether both syncs completed and no conflict was left unapplied.
    pub fn is_clean(&self) -> bool {
        self.left_error.is_none()
            && self.right_error.is_none()
            && self.to_left.is_success()
            && self.to_right.is_success()
            && self.conflicts.iter().all(|c| c.resolution != Resolution::Skip)
    }

    /// The plan as text: the writes to each side ([`Diff::to_writes`]) and
    /// each conflict.
    pub fn plan(&self) -> String {
        let mut out = String::new();
        for (arrow, d) in [("left", &self.plan_left), ("right", &self.plan_right)] {
            out.push_str(&format!("to the {arrow} ({}):\n", d.dest));
            for line in d.to_writes().lines() {
                out.push_str(&format!("  {line}\n"));
            }
        }
        out.push_str(&format!("conflicts: {}", self.conflicts.len()));
        for c in &self.conflicts {
            for line in c.to_string().lines() {
                out.push_str(&format!("\n  {line}"));
            }
        }
        out
    }

    /// Writes the conflicts to a sink (a file, a table).
    pub fn log_to(&self, sink: &mut dyn ConflictSink) -> std::result::Result<(), crate::BoxError> {
        sink.write(&self.conflicts)
    }

    /// Counts of conflicts by kind.
    pub fn conflicts_by_kind(&self) -> Vec<(ConflictKind, usize)> {
        count_by(&self.conflicts, |c| c.kind)
    }

    /// Counts of conflicts by the strategy that decided them.
    pub fn conflicts_by_strategy(&self) -> Vec<(String, usize)> {
        count_by(&self.conflicts, |c| c.strategy.clone())
    }
}

fn count_by<K: Ord>(records: &[ConflictRecord], key: impl Fn(&ConflictRecord) -> K) -> Vec<(K, usize)> {
    let mut counts: std::collections::BTreeMap<K, usize> = Default::default();
    for c in records {
        *counts.entry(key(c)).or_default() += 1;
    }
    counts.into_iter().collect()
}

impl fmt::Display for BiReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (l, r) = (self.to_left.totals(), self.to_right.totals());
        for (dest, e) in [
            (&self.to_left.dest, &self.left_error),
            (&self.to_right.dest, &self.right_error),
        ] {
            if let Some(e) = e {
                writeln!(f, "UNFINISHED: the sync to {dest} stopped: {e}")?;
            }
        }
        write!(
            f,
            "to {}: {} applied, {} failed; to {}: {} applied, {} failed; {} conflicts, {} identical changes",
            self.to_left.dest,
            l.applied,
            l.failed,
            self.to_right.dest,
            r.applied,
            r.failed,
            self.conflicts.len(),
            self.identical
        )?;
        for c in &self.conflicts {
            write!(f, "\n{c}")?;
        }
        Ok(())
    }
}

/// Where an element's change goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flow {
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
type MergePlans = HashMap<(String, String), (Vec<String>, Vec<String>)>;

/// (model type, key)
type Key<'a> = (&'a str, &'a str);

/// Base keys neither side holds any more (deleted on both).
fn deleted_on_both(base: &LocalStore, ls: &LocalStore, rs: &LocalStore) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for t in base.model_types() {
        for m in base.get_all_dyn(t) {
            let k = m.unique_id();
            if ls.get_dyn_by_id(t, &k).is_err() && rs.get_dyn_by_id(t, &k).is_err() {
                out.push((t.to_string(), k));
            }
        }
    }
    out
}

/// Rebuilds a lost or corrupt base: reconciles with an empty one, so every
/// model on one side only goes to the other (deletes since the lost base
/// cannot be told from creates) and every key the sides hold differently
/// is a create/create conflict for `strategy`. Returns the new base.
pub fn resync<L: Adapter + ?Sized, R: Adapter + ?Sized>(
    left: &mut L,
    right: &mut R,
    strategy: Strategy,
    opts: &BiOptions,
) -> Result<(Base, BiReport)> {
    let mut base = Base::new();
    let report = reconcile(left, right, &mut base, &opts.clone().strategy(strategy))?;
    Ok((base, report))
}

/// What each side did since the base, and how the sides differ: the
/// first step of a [`reconcile`], before any strategy.
#[derive(Debug)]
#[non_exhaustive]
pub struct Classification {
    /// The diff that makes the left side look like the right one.
    pub diff: Diff,
    /// Every key where a side differs from the base (changed on one side,
    /// or on both: identically, or a conflict when the sides differ).
    pub changes: Vec<KeyChange>,
    /// Base keys neither side holds any more (deleted on both: no conflict).
    pub deleted_on_both: Vec<(String, String)>,
}

/// What each side did to one key since the base: `Create`, `Update`,
/// `Delete`, or `None` for unchanged.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyChange {
    /// Model type name.
    pub model_type: std::borrow::Cow<'static, str>,
    /// Unique id.
    pub key: String,
    /// What the left side did.
    pub left: Option<Action>,
    /// What the right side did.
    pub right: Option<Action>,
}

/// Classifies every model of both sides against `base` in one walk of
/// the hierarchy (the sides against each other, each against the base by
/// content). Writes nothing.
pub fn classify<L: Adapter + ?Sized, R: Adapter + ?Sized>(left: &L, right: &R, base: &Base) -> Result<Classification> {
    let (ls, rs) = (left.store().local(), right.store().local());
    let (src, dst) = crate::sync::adapter::sides(left, right);
    let (diff, three) = differ::diff_three(&src, &dst, &base.store, &mut Options::new())?;
    let differ::ThreeWay { changes, seen, .. } = three;
    let deleted_on_both = if seen < base.len() {
        deleted_on_both(&base.store, ls, rs)
    } else {
        Vec::new()
    };
    let changes = changes
        .into_iter()
        .map(|c| KeyChange {
            model_type: c.model_type,
            key: c.key,
            left: c.dst,
            right: c.src,
        })
        .collect();
    Ok(Classification {
        diff,
        changes,
        deleted_on_both,
    })
}

/// Reconciles two adapters against `base`: what changed on one side only
/// goes to the other, what changed on both is a conflict for the strategy,
/// and the base takes every key that ends equal on both sides.
pub fn reconcile<L: Adapter + ?Sized, R: Adapter + ?Sized>(
    left: &mut L,
    right: &mut R,
    base: &mut Base,
    opts: &BiOptions,
) -> Result<BiReport> {
    if base.store.model_types().next().is_none() {
        base.store = left.store().local().empty_like("base");
    }
    let (ls, rs) = (left.store().local(), right.store().local());
    if !opts.allow_empty_side && !base.is_empty() {
        for (name, s) in [(left.name(), ls), (right.name(), rs)] {
            if s.count_all() == 0 {
                return Err(Error::EmptySide {
                    side: name.to_string(),
                    base: base.len(),
                });
            }
        }
    }
    let strategies = opts.strategies([ls, rs])?;
    let base_before = base.store.fingerprint();
    if !base.unknown.is_empty() {
        base.fill_unknown(ls, rs)?;
    }
    let resolved = !base.pending.is_empty();
    if resolved {
        base.resolve_pending(ls, rs)?;
    }
    let Classification {
        diff: d,
        changes,
        deleted_on_both: both_deleted,
    } = classify(left, right, base)?;
    let (mut cl, mut cr): (HashMap<Key<'_>, Action>, HashMap<Key<'_>, Action>) = Default::default();
    for c in &changes {
        let key = (c.model_type.as_ref(), c.key.as_str());
        if let Some(a) = c.left {
            cl.insert(key, a);
        }
        if let Some(a) = c.right {
            cr.insert(key, a);
        }
    }
    let suspects = std::mem::take(&mut base.suspect);
    let judge = Judge {
        opts,
        strategies,
        base: &base.store,
        ls,
        rs,
    };
    let walk: Vec<_> = d.iter().collect();
    let mut flow = vec![Flow::Keep; walk.len()];
    let mut conflicts = Vec::new();
    let mut merges = MergePlans::new();
    for (i, (e, _)) in walk.iter().enumerate() {
        if e.action == Action::NoChange {
            continue;
        }
        let key = (e.model_type.as_ref(), e.key.as_str());
        flow[i] = match (cl.get(&key), cr.get(&key)) {
            // A key an interrupted write left in doubt: a conflict, by what
            // each side holds.
            (a, b) if (a.is_none() || b.is_none()) && suspects.contains(&(key.0.to_string(), key.1.to_string())) => {
                let kind = match (
                    ls.get_dyn_by_id(key.0, key.1).is_ok(),
                    rs.get_dyn_by_id(key.0, key.1).is_ok(),
                ) {
                    (true, false) => ConflictKind::UpdateDelete,
                    (false, true) => ConflictKind::DeleteUpdate,
                    _ => ConflictKind::UpdateUpdate,
                };
                let (flow, record) = judge.decide(key, kind, &mut merges);
                conflicts.push(record);
                flow
            }
            (None, Some(_)) => Flow::ToLeft,
            (Some(_), None) => Flow::ToRight,
            (Some(a), Some(b)) => {
                let kind = match (a, b) {
                    (Action::Update, Action::Delete) => ConflictKind::UpdateDelete,
                    (Action::Delete, Action::Update) => ConflictKind::DeleteUpdate,
                    (Action::Create, Action::Create) => ConflictKind::CreateCreate,
                    _ => ConflictKind::UpdateUpdate,
                };
                let (flow, record) = judge.decide(key, kind, &mut merges);
                conflicts.push(record);
                flow
            }
            // Equal to the base on both sides yet different: the base is
            // not what either holds (a base edited by hand); leave it.
            (None, None) => Flow::Skip,
        };
    }
    guard_deletes(&walk, &mut flow, &judge, &mut conflicts);
    drop(judge);

    // The flow of each element, by address: the selections below see the same elements.
    let flows: HashMap<*const DiffElement, Flow> = walk
        .iter()
        .zip(&flow)
        .filter(|(_, f)| matches!(f, Flow::ToLeft | Flow::ToRight | Flow::Both))
        .map(|((e, _), f)| (*e as *const DiffElement, *f))
        .collect();
    let goes = |e: &DiffElement, to: Flow| {
        let f = flows.get(&(e as *const DiffElement));
        f == Some(&to) || f == Some(&Flow::Both)
    };
    let mut to_left = d.select(false, |e| goes(e, Flow::ToLeft));
    let mut to_right = d.select(true, |e| goes(e, Flow::ToRight));
    drop(flows);
    // A merged element brings each side only the attributes it takes.
    for (plan, takes) in [(&mut to_left, 0), (&mut to_right, 1)] {
        crate::diff::for_each_mut(&mut plan.elements, |e| {
            let key = (e.model_type.to_string(), e.key.clone());
            if let Some(p) = merges.get(&key) {
                let names = if takes == 0 { &p.0 } else { &p.1 };
                e.changes.retain(|c| names.iter().any(|n| *n == c.name));
            }
        });
    }
    for (diff, name, store) in [(&to_left, left.name(), ls), (&to_right, right.name(), rs)] {
        let deletes = diff.summary().delete;
        if let Some(share) = opts.max_delete_share
            && deletes > 0
            && deletes as f64 > share * store.count_all() as f64
        {
            return Err(Error::TooManyDeletes {
                side: name.to_string(),
                deletes,
                total: store.count_all(),
                share,
            });
        }
    }
    // Parents before children, each key once.
    let touched: Vec<Key<'_>> = {
        let mut seen = HashSet::new();
        walk.iter()
            .map(|(e, _)| (e.model_type.as_ref(), e.key.as_str()))
            .chain(changes.iter().map(|c| (c.model_type.as_ref(), c.key.as_str())))
            .chain(both_deleted.iter().map(|(t, k)| (t.as_str(), k.as_str())))
            .filter(|k| seen.insert(*k))
            .collect()
    };
    let differing: HashSet<Key<'_>> = walk
        .iter()
        .filter(|(e, _)| e.action != Action::NoChange)
        .map(|(e, _)| (e.model_type.as_ref(), e.key.as_str()))
        .collect();
    drop(walk);

    // Write-ahead: the base, with the writes about to be made, is saved
    // before either side is written, so a crash in between cannot leave a
    // base older than the sides (which would take a deletion made later
    // for a creation on the other side).
    let saved = opts.saved.as_ref().filter(|_| !opts.dry_run);
    let writes = !opts.dry_run && (to_left.has_diffs() || to_right.has_diffs());
    let mut intents = Vec::new();
    if writes {
        intents = Base::intents(&to_left, ls, true);
        intents.extend(Base::intents(&to_right, rs, false));
    }
    if let Some(store) = saved.filter(|_| writes) {
        base.pending.clone_from(&intents);
        let ahead = lock_base(store).save(base);
        base.pending.clear();
        ahead?;
    }
    // Write-ahead: every conflict is in the log before either side is written.
    let run = run_id();
    for c in &mut conflicts {
        c.run.clone_from(&run);
    }
    let sink = opts.log.as_ref().filter(|_| !opts.dry_run && !conflicts.is_empty());
    if let Some(sink) = sink {
        lock_sink(sink)
            .write(&conflicts)
            .map_err(|source| Error::ConflictLog { source })?;
    }

    // Without source models: an update writes exactly its element's
    // changes (a merge takes only some), a create its element's values. A
    // panicking hook ends the run after what it did is recorded: the base
    // and the log are brought up to date, then the panic goes on.
    let sync_side = |side: &mut dyn FnMut() -> Result<SyncReport>| match catch_unwind(AssertUnwindSafe(side)) {
        Ok(r) => (r, None),
        Err(panic) => (Err(not_run(panic_text(&*panic))), Some(panic)),
    };
    let (left_result, mut panic) =
        sync_side(&mut || left.sync_diff(&to_left, &mut Options::new().dry_run(opts.dry_run)));
    let left_panicked = panic.is_some();
    let right_result = match panic {
        Some(_) => Err(not_run("not started: the other side's sync panicked".into())),
        None => {
            let (r, p) = sync_side(&mut || right.sync_diff(&to_right, &mut Options::new().dry_run(opts.dry_run)));
            panic = p;
            r
        }
    };
    let panicked = [left_panicked, !left_panicked && panic.is_some()];
    let (plan_left, plan_right) = (to_left, to_right);
    let (to_left, left_error) = split(left_result, left.name(), right.name());
    let (to_right, right_error) = split(right_result, right.name(), left.name());
    // What a system did not acknowledge stays out of the base, whatever its
    // store's image says (an image can be ahead of its system when a
    // store's flush or a `sync_complete` failed).
    let unacked_left = unacknowledged(&plan_left, &to_left, left_error.as_ref());
    let unacked_right = unacknowledged(&plan_right, &to_right, right_error.as_ref());
    settle(
        &mut conflicts,
        [
            SideOutcome {
                plan: &plan_left,
                unacked: &unacked_left,
                panicked: panicked[0],
            },
            SideOutcome {
                plan: &plan_right,
                unacked: &unacked_right,
                panicked: panicked[1],
            },
        ],
    );
    if let Some(sink) = sink
        && let Err(e) = lock_sink(sink).settle(&conflicts)
    {
        tracing::warn!(error = %e, run = %run, "conflict log: the outcomes could not be recorded");
    }
    // The writes of a side whose sync panicked are not known to have
    // landed or not: they stay pending, and the next run looks at the side.
    let pending: Vec<Pending> = intents
        .into_iter()
        .filter(|p| panicked[usize::from(!p.to_left)])
        .collect();
    let unacked: HashSet<(String, String)> = unacked_left.into_iter().chain(unacked_right).collect();

    let mut identical = both_deleted.len();
    let (ls, rs) = (left.store().local(), right.store().local());
    for key in &touched {
        let (t, k) = *key;
        if !unacked.is_empty() && unacked.contains(&(t.to_string(), k.to_string())) {
            continue;
        }
        let (in_left, in_right) = (ls.get_dyn_by_id(t, k).is_ok(), rs.get_dyn_by_id(t, k).is_ok());
        let agreed = match (in_left, in_right) {
            (true, true) => ls.same_attrs(t, k, rs),
            (false, false) => true,
            _ => false,
        };
        if !agreed {
            continue;
        }
        if !differing.contains(key) && cl.contains_key(key) {
            identical += 1;
        }
        if opts.dry_run {
            continue;
        }
        if in_left {
            base.agree(ls, t, k)?;
        } else if base.store.get_dyn_by_id(t, k).is_ok() {
            base.store.remove(t, k, false)?;
        }
    }
    base.store.refresh_fingerprints();
    base.pending = pending;
    let moved = writes || resolved || base.store.fingerprint() != base_before;
    let base_error = saved
        .filter(|_| moved)
        .and_then(|store| lock_base(store).save(base).err());
    let report = BiReport {
        plan_left,
        plan_right,
        to_left,
        to_right,
        conflicts,
        identical,
        left_error,
        right_error,
    };
    if let Some(panic) = panic {
        resume_unwind(panic);
    }
    let stopped = report
        .stopped()
        .map(|(side, e)| (side.to_string(), e.to_string()))
        .or_else(|| base_error.map(|e| ("the base store".to_string(), e.to_string())));
    match stopped {
        None => Ok(report),
        Some((side, message)) => Err(Error::Unfinished {
            side,
            message,
            report: Box::new(report),
        }),
    }
}

fn lock_base(store: &SharedBaseStore) -> std::sync::MutexGuard<'_, dyn BaseStore + 'static> {
    store.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A run's id: unique per process and time.
fn run_id() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{nanos:x}-{:x}-{n}", std::process::id())
}

fn lock_sink(sink: &SharedSink) -> std::sync::MutexGuard<'_, dyn ConflictSink + Send + 'static> {
    sink.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A panic's message.
fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    let text = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".into());
    format!("a hook panicked: {text}")
}

/// A side's sync that did not run to its end with a report (it panicked,
/// or did not start): nothing of it is taken as acknowledged.
fn not_run(message: String) -> Error {
    Error::SyncAborted {
        model_type: String::new(),
        key: String::new(),
        message,
        cause: None,
        report: Box::default(),
    }
}

/// How one side's sync of a run ended, as [`settle`] needs it.
struct SideOutcome<'a> {
    /// What the side was to apply.
    plan: &'a Diff,
    /// The keys of `plan` its system did not acknowledge.
    unacked: &'a HashSet<(String, String)>,
    /// The side's sync panicked: what it planned is not known.
    panicked: bool,
}

/// Sets each conflict's `applied`: whether its resolution reached the
/// losing side's system (`None` when that side's sync panicked).
fn settle(conflicts: &mut [ConflictRecord], sides: [SideOutcome<'_>; 2]) {
    let planned: Vec<HashSet<(&str, &str)>> = sides
        .iter()
        .map(|side| {
            side.plan
                .iter()
                .filter(|(e, _)| e.action != Action::NoChange)
                .map(|(e, _)| (e.model_type.as_ref(), e.key.as_str()))
                .collect()
        })
        .collect();
    let reached = |side: usize, c: &ConflictRecord| -> Option<bool> {
        if !planned[side].contains(&(c.model_type.as_str(), c.key.as_str())) {
            return Some(false);
        }
        if sides[side].panicked {
            return None;
        }
        Some(!sides[side].unacked.contains(&(c.model_type.clone(), c.key.clone())))
    };
    for c in conflicts {
        c.applied = match c.resolution {
            Resolution::Left => reached(1, c),
            Resolution::Right => reached(0, c),
            Resolution::Merge => match (reached(0, c), reached(1, c)) {
                (None, _) | (_, None) => None,
                (Some(l), Some(r)) => {
                    let whole = |side: usize| !sides[side].unacked.contains(&(c.model_type.clone(), c.key.clone()));
                    Some((l || r) && whole(0) && whole(1))
                }
            },
            Resolution::Skip => Some(false),
        };
    }
}

/// The keys of `plan`'s changes that did not reach the side's system:
/// those its report does not show applied, or all of them when the
/// store or the adapter failed to write the sync as a whole.
fn unacknowledged(plan: &Diff, report: &SyncReport, error: Option<&Error>) -> HashSet<(String, String)> {
    let changed = plan
        .iter()
        .map(|(e, _)| e)
        .filter(|e| e.action != Action::NoChange)
        .map(|e| (e.model_type.to_string(), e.key.clone()));
    let whole = match error {
        None => false,
        Some(Error::SyncAborted { .. }) => false,
        Some(Error::StoreApply { model_type, .. }) => model_type.is_empty(),
        Some(_) => true,
    };
    if whole {
        return changed.collect();
    }
    let acked: HashSet<(&str, &str)> = report
        .elements
        .iter()
        .filter(|e| {
            matches!(
                e.outcome,
                crate::sync::Outcome::Applied | crate::sync::Outcome::RemovedWithParent
            )
        })
        .map(|e| (e.model_type.as_str(), e.key.as_str()))
        .collect();
    let at = match error {
        Some(Error::StoreApply { model_type, key, .. }) => Some((model_type.as_str(), key.as_str())),
        _ => None,
    };
    changed
        .filter(|(t, k)| {
            let key = (t.as_str(), k.as_str());
            !acked.contains(&key) || at == Some(key)
        })
        .collect()
}

/// A side's sync result as its report and its error, if it stopped.
fn split(r: Result<SyncReport>, dest: &str, source: &str) -> (SyncReport, Option<Error>) {
    match r {
        Ok(report) => (report, None),
        Err(e) => {
            let report = match &e {
                Error::SyncAborted { report, .. } | Error::StoreApply { report, .. } => (**report).clone(),
                _ => SyncReport {
                    source: source.to_string(),
                    dest: dest.to_string(),
                    ..SyncReport::default()
                },
            };
            (report, Some(e))
        }
    }
}

/// What decides conflicts: the options, each type's strategy and the three stores.
struct Judge<'a> {
    opts: &'a BiOptions,
    strategies: HashMap<String, Strategy>,
    base: &'a LocalStore,
    ls: &'a LocalStore,
    rs: &'a LocalStore,
}

impl Judge<'_> {
    fn conflict<'c>(&'c self, (t, k): Key<'c>, kind: ConflictKind) -> Conflict<'c> {
        Conflict {
            model_type: t,
            key: k,
            kind,
            base: self.base.get_dyn_by_id(t, k).ok(),
            left: self.ls.get_dyn_by_id(t, k).ok(),
            right: self.rs.get_dyn_by_id(t, k).ok(),
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
    fn decide(&self, key: Key<'_>, kind: ConflictKind, merges: &mut MergePlans) -> (Flow, ConflictRecord) {
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

/// The strategy named in the log when a modification beat a deletion.
const MODIFICATION_WINS: &str = "modification beats deletion";

/// A conflict's log record; `clock`: the attribute the strategy compared.
/// `left_takes`: for a merge, the attributes the left takes from the right.
fn record(
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
        model_type: c.model_type.to_string(),
        key: c.key.to_string(),
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
fn guard_deletes(
    walk: &[(&DiffElement, usize)],
    flow: &mut [Flow],
    judge: &Judge<'_>,
    conflicts: &mut Vec<ConflictRecord>,
) {
    let mut records: Records = conflicts
        .iter()
        .enumerate()
        .map(|(i, c)| ((c.model_type.clone(), c.key.clone()), i))
        .collect();
    type Records = HashMap<(String, String), usize>;
    fn log(records: &mut Records, conflicts: &mut Vec<ConflictRecord>, c: ConflictRecord) {
        match records.get(&(c.model_type.clone(), c.key.clone())) {
            Some(&at) => {
                let r = &mut conflicts[at];
                r.resolution = c.resolution;
                r.strategy = c.strategy;
            }
            None => {
                records.insert((c.model_type.clone(), c.key.clone()), conflicts.len());
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
            let key = (e.model_type.as_ref(), e.key.as_str());
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
                        let lost =
                            judge.conflict((d.model_type.as_ref(), d.key.as_str()), ConflictKind::ChildUnderDelete);
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
                        if let Some(&at) = records.get(&(d.model_type.to_string(), d.key.clone())) {
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
