//! diffsync compares and synchronizes data systems: a network inventory against
//! a CMDB, a database against its cloud copies, a cache against its source of truth.
//!
//! You describe records as typed [`DiffModel`]s (identifiers, compared
//! attributes, child types), load each system into an [`Adapter`]'s [`Store`],
//! and ask for a [`Diff`] (hierarchical, renderable, serializable) or a sync,
//! which applies creates, updates and deletes through the adapter's hooks and
//! returns a [`SyncReport`].
//!
//! ```
//! use diffsync::{Adapter, AdapterExt, DiffModel, LocalStore, Sink};
//!
//! #[derive(DiffModel, Clone, Debug, PartialEq)]
//! #[diffsync(name = "device", children(Interface))]
//! struct Device {
//!     #[diffsync(id)] name: String,
//!     role: String,
//!     #[diffsync(skip)] db_pk: i64,
//! }
//!
//! #[derive(DiffModel, Clone, Debug, PartialEq)]
//! #[diffsync(name = "interface", shortname(name))]
//! struct Interface {
//!     #[diffsync(id)] device: String,
//!     #[diffsync(id)] name: String,
//!     description: String,
//! }
//!
//! struct Inventory { store: LocalStore }
//! impl Adapter for Inventory {
//!     type Store = LocalStore;
//!     fn store(&self) -> &LocalStore { &self.store }
//!     fn store_mut(&mut self) -> &mut LocalStore { &mut self.store }
//! }
//! // Its store is the whole system: a sync's target as it is.
//! impl Sink for Inventory {}
//! impl Inventory {
//!     fn new(name: &'static str, role: &str, descr: &str) -> Result<Self, diffsync::Error> {
//!         let mut store = LocalStore::new(name);
//!         store.add(Device { name: "r1".into(), role: role.into(), db_pk: 0 })?;
//!         store.add_child(Device::key("r1"), Interface {
//!             device: "r1".into(), name: "eth0".into(), description: descr.into(),
//!         })?;
//!         Ok(Inventory { store })
//!     }
//! }
//!
//! let cmdb = Inventory::new("cmdb", "edge", "uplink")?;
//! let mut network = Inventory::new("network", "router", "UPLINK")?;
//! let diff = network.diff_from(&cmdb)?;
//! assert_eq!(diff.to_string(), "\
//! device
//!   device: r1
//!     role    cmdb(edge)    network(router)
//!     interface
//!       interface: eth0
//!         description    cmdb(uplink)    network(UPLINK)");
//! network.sync_from(&cmdb)?;
//! assert!(!network.diff_from(&cmdb)?.has_diffs());
//! # Ok::<(), diffsync::Error>(())
//! ```
//!
//! # Models
//! `#[derive(DiffModel)]` reads `#[diffsync(...)]` attributes:
//! - on the struct: `name = "..."` (the model type name; default: the struct
//!   name in snake case), `children(TypeA, TypeB)` (child model types, in
//!   processing order), `shortname(field, ...)`, `flags(NAME, ...)` (the
//!   type's default [`ModelFlags`], e.g. `flags(NATURAL_DELETION_ORDER)`);
//! - on a field: `id` (an identifier, in unique-id order), `skip` (local-only,
//!   never compared), `flags` (this instance's [`ModelFlags`]), `compare =
//!   "unordered"` / `"ignore_case"`, `compare_with = path::to::fn`
//!   (`fn(&T, &T) -> bool`), `timestamp` / `version` (the attribute that
//!   the bidirectional strategies `newest` / `highest` compare: see
//!   [`bidir::Strategy`]). Any other field is a compared attribute.
//!   Identifier types implement [`IdPart`] (strings, integers, `bool`, `char`,
//!   `Option` of those). Identifier and attribute values cross into diffs as
//!   JSON, so their types implement serde's `Serialize` and `Deserialize`;
//!   `skip` fields implement `Default` (a model built from a diff gets it).
//!
//! Next to the struct, the derive generates `T::key(ids..)` (a typed
//! [`Key`]) and an enum `<Struct>Field` (`DeviceField::Role`, ..), one
//! variant per compared attribute, with the struct's visibility: a typed
//! hook's update names the changed fields with it ([`Write::Update`]).
//!
//! Runtime-defined model types are a [`ModelSchema`] (serde-readable) with
//! [`DynModel`] values; they work wherever derived models do. Their schema
//! may also declare `timestamp`, `version` and the bidirectional
//! `strategy` of the type (its text form, e.g. `"newest(30)"`).
//!
//! # Stores and adapters
//! A [`Store`] keeps models per type in insertion order and the parent →
//! children links; [`LocalStore`] is the in-memory one. An [`Adapter`] names a
//! system and reads it into a store; a system that can be written to is also
//! a [`Sink`], which writes changes to it: per model type through typed
//! [`hooks`] (a [`Write`] of the user's own struct: create, update with the
//! old and new model and the changed fields, delete), or erased through
//! [`Sink::apply`] / [`Sink::apply_batch`]. [`AdapterExt`] diffs any adapter
//! and syncs into any sink.
//!
//! # Diffs
//! [`Diff`] is a tree of [`DiffElement`]s: source order, then destination-only
//! models. [`Diff::summary`] counts create, update, delete, no-change and skip
//! with the Python library's meanings. It renders as text (`Display`), as JSON
//! (serde, and it reads back), and as a one-line summary; it can be filtered,
//! reordered and reversed.
//!
//! Depth is no limit: the differ, the planner, the text render, the JSON
//! form (a flat list in sync order, each element with its `depth`) and
//! every operation on the tree run on explicit work stacks, so a
//! hierarchy 100,000 levels deep works like a flat one. Text indents the
//! first 16 levels and marks deeper lines with their depth (`[17] node: n17`),
//! so the text stays linear in size. [`Diff::to_python_dict`] nests one JSON
//! object per level, like the Python library; prefer the serde form for very
//! deep hierarchies.
//!
//! # Bidirectional sync
//! [`bidir::reconcile`] reconciles two adapters that are both edited
//! against the last state they agreed on ([`bidir::Base`], persisted
//! between runs): a change on one side goes to the other, the same change
//! on both is no conflict, and a conflict (update/update, update/delete,
//! create/create, a child changed under a parent deleted on the other
//! side) is decided by a [`bidir::Strategy`] — safe (log, apply nothing:
//! the default), left wins, right wins, or a closure, per model type — and
//! logged. It stops before writing when a side would lose more than half
//! of its models or came up empty while the base is not.
//!
//! # Sync
//! A sync orders the changes (parents first; deletes per
//! [`ModelFlags::NATURAL_DELETION_ORDER`]), checks them against the
//! destination store before any hook runs, calls the destination's hooks,
//! applies what the system took to the destination store and returns a
//! [`SyncReport`] listing every element of the diff with its [`Outcome`].
//! A hook fails in one of three ways ([`HookError`]): recoverable (stops
//! the sync unless `CONTINUE_ON_FAILURE`), soft (never stops it) or fatal
//! (always stops it); a failed parent skips its children. Whatever fails —
//! a hook, a whole batch, a panic — the store holds exactly what the system
//! took, so the next diff shows exactly the unfinished work. [`DiffFlags`]
//! and [`Options`] control failures, skips, ordering, dry runs and progress.
//!
//! # Differences from the Python library
//! Meanings (flags, summary counts, hook order, text and dict renders)
//! follow the Python `diffsync`. Where it loses track of the system, this
//! crate deliberately does not:
//! - **Orphans stay visible.** When a parent's delete applies but a child's
//!   own delete does not (it failed, soft-failed, was skipped by `IGNORE` or
//!   `SKIP_UNMATCHED_DST`, or the sync stopped first), the child stays in the
//!   store without a parent, and the next diff shows it at the top level of
//!   the diff, so the next sync deletes it. The Python library removes the
//!   whole subtree from its store, so the next diff never sees those models
//!   again although the system holds them. `SKIP_CHILDREN_ON_DELETE` still
//!   removes the subtree (the system removed it).
//! - **A failed child holds back a natural-order delete.** With
//!   `NATURAL_DELETION_ORDER` a parent's delete waits for its children's;
//!   if one does not apply, the parent is not deleted (reported "child
//!   failed"), as the system still needs it.
//! - **`sync_complete` runs after a sync that stopped early** once anything
//!   was applied, so what the store took reaches the system written there.
//! - **Unique ids are injective.** The Python library joins identifier text
//!   with `__`, so `("a__b", "c")` and `("a", "b__c")`, or `None` and
//!   `"None"`, are one key. Here the stored key quotes a string that could be
//!   misread (see [`IdPart`]), and that one form is what diffs, errors and
//!   the command line print and read; the reference's plain `a__b` form is
//!   kept for [`Diff::to_python_dict`] only.
//! - **A create stores the destination's model type**: the destination's
//!   schema, attribute defaults and flags, local-only fields at their
//!   default, not a copy of the source object.
//! - **Plans are checked first.** A loaded or edited diff that does not fit
//!   the destination store is refused before any hook runs
//!   ([`SyncError::InvalidDiff`]); a create of a key the store already holds
//!   fails that element, as the reference's pre-check does.
//! - **Only parentless models are roots**, so a type may be its own child
//!   (`children(Node)`), and a top-level type name no store knows is an
//!   error ([`DiffError::UnknownModelType`]), not an empty diff.
//! - **Nothing stored is out of sight.** The Python library walks from the
//!   `top_level` types through each model's child lists, so a model no list
//!   reaches is never diffed (nor counted). Here every parentless model is
//!   a root, whatever its type: a model stored without its parent (an
//!   orphan left by a failed delete, a row whose parent row is gone) is
//!   diffed at the top level, so a sync puts it right instead of ignoring it.
//! - **Links live in the store, not in the models.** A parent's child list
//!   is not a field the user fills: a child is added under its parent, and
//!   the store keeps the link. A list naming a child that is not stored (the
//!   Python library's `ObjectNotFound` at diff time) cannot be written down.
//! - **Fail closed on an empty or missing source.** A file adapter opened
//!   on a path that does not exist is an error naming it (opt in with
//!   `open_or_empty`), a one-way sync from a source that holds nothing into
//!   a destination that holds models is refused ([`SyncError::EmptySource`];
//!   [`Options::allow_empty_source`]), and a sync may be capped at a share
//!   of deletes ([`Options::max_delete_share`]). The Python library syncs an
//!   empty source as "delete everything".

extern crate self as diffsync;

pub mod bidir;
mod chunked;
pub mod diff;
mod differ;
pub mod digest;
mod error;
pub mod feed;
mod flags;
pub mod guide;
pub mod hooks;
pub mod key;
pub mod model;
mod options;
mod render;
mod report;
pub mod store;
mod strategy_spec;
mod sync;

pub use bidir::ReconcileError;
pub use diff::{Action, AttrChange, ChildOrder, Diff, DiffElement, DiffIter, Fields, Summary};
pub use diffsync_derive::DiffModel;
pub use error::DiffError;
pub use error::{Error, Result};
pub use feed::{ChangeEvent, ChangeFeed, ChangeKind};
pub use flags::{DiffFlags, ModelFlags};
pub use hooks::{DynHooks, Hooks, Write};
pub use key::{Key, KeyParseError, KeyValue, ModelKey};
pub use model::{
    Attrs, DiffModel, DynModel, FieldDef, IdPart, ModelSchema, SchemaRef, StaticModel, ValueKind, readable_id_of,
    unique_id_of,
};
pub use model::{BoxError, Chain, ModelError, Said};
pub use options::{Options, Progress, Stage};
pub use store::StoreError;
pub use store::{AttrSource, Handle, LocalStore, Store};
pub use sync::adapter::{Adapter, AdapterExt, Layer, Layered, MemoryAdapter, Sink, StoreAdapter};
pub use sync::{Batch, Change, Edit, ElementReport, Outcome, SkipReason, SyncReport, Totals, Typed};
pub use sync::{Cause, HookError, SyncError};

/// The traits a diffsync user calls methods of: `use diffsync::prelude::*;`.
pub mod prelude {
    pub use crate::{Adapter, AdapterExt, Change, DiffModel, HookError, Hooks, Sink, Store, Write};
}

#[doc(hidden)]
pub mod __private {
    pub use serde_json::Value;
    pub use std::borrow::Cow;

    pub use crate::digest::Encoder;
    /// What a derived model's checks return.
    pub type Result<T> = std::result::Result<T, crate::ModelError>;
    pub use crate::flags::ModelFlags;
    pub use crate::key::{Key, ModelKey};
    pub use crate::model::{
        Attrs, Compare, DiffModel, FieldDef, ID_SEPARATOR, IdPart, ModelSchema, SchemaRef, StaticModel, ValueKind, cmp,
        unique_id_of,
    };

    /// What an attribute's type needs: serde both ways. A field whose type
    /// lacks it gets this message instead of serde's list of candidates.
    #[diagnostic::on_unimplemented(
        message = "`{Self}` cannot be a diffsync attribute: it must implement serde's `Serialize` and `Deserialize`",
        label = "this field's type does not implement `Serialize` and `Deserialize`",
        note = "derive `serde::Serialize` and `serde::Deserialize` for `{Self}`, or mark the field `#[diffsync(skip)]` to keep it out of the compared attributes"
    )]
    pub trait Attribute: Sized {
        /// The value as JSON.
        fn to_json(&self) -> serde_json::Result<Value>;
        /// The value from JSON.
        fn from_json(v: &Value) -> serde_json::Result<Self>;
        /// Writes the value as a field of the digest encoding.
        fn digest_into(&self, enc: &mut Encoder, name: &str);
    }

    #[diagnostic::do_not_recommend]
    impl<T: serde::Serialize + serde::de::DeserializeOwned> Attribute for T {
        fn to_json(&self) -> serde_json::Result<Value> {
            serde_json::to_value(self)
        }
        fn from_json(v: &Value) -> serde_json::Result<Self> {
            T::deserialize(v)
        }
        fn digest_into(&self, enc: &mut Encoder, name: &str) {
            enc.field(name, self)
        }
    }

    /// A field as an attribute: its JSON value and its digest encoding.
    /// Every generated use goes through here, so a field type without serde
    /// gets one error, not one per use.
    pub fn attr<T: Attribute>(v: &T) -> &dyn AttrRef {
        v
    }

    /// What generated code does with an attribute's value.
    pub trait AttrRef {
        /// The value for a diff element; a value that cannot be
        /// represented as JSON shows as its error text.
        fn to_value(&self) -> Value;
        /// Writes the value as a field of the digest encoding.
        fn digest(&self, enc: &mut Encoder, name: &str);
    }

    impl<T: Attribute> AttrRef for T {
        fn to_value(&self) -> Value {
            self.to_json()
                .unwrap_or_else(|e| Value::String(format!("<unserializable: {e}>")))
        }
        fn digest(&self, enc: &mut Encoder, name: &str) {
            self.digest_into(enc, name)
        }
    }

    /// Reads a field from a value, naming the model, key and field on failure.
    pub fn from_value<T: Attribute>(model_type: &str, key: &str, field: &str, v: &Value) -> Result<T> {
        T::from_json(v).map_err(|e| crate::ModelError::InvalidValue {
            model_type: model_type.to_string(),
            key: key.to_string(),
            field: field.to_string(),
            message: e.to_string(),
        })
    }
}
