//! # Writing your own adapter
//!
//! An adapter connects diffsync to one system. It has four jobs:
//!
//! 1. **Hold** a store ([`Adapter::store`](crate::Adapter::store)); the
//!    name ([`Adapter::name`](crate::Adapter::name)) and the top-level model
//!    types ([`Adapter::top_level`](crate::Adapter::top_level)) come from it
//!    unless overridden.
//! 2. **Load** the system into a [`Store`](crate::Store): top-level models with
//!    [`LocalStore::add`](crate::LocalStore::add), children with
//!    [`LocalStore::add_child`](crate::LocalStore::add_child) (the store keeps
//!    the links). Loading in bulk and once per sync is what makes diffs cheap.
//! 3. **Write** changes back, in an `impl Sink` (a system with none is
//!    read-only: it can be diffed and synced from, never into). Either
//!    override [`apply`](crate::Sink::apply)
//!    (called once per change, parents before children; with a
//!    [`Hooks`](crate::Hooks) table each model type gets its own typed
//!    hook, see [`hooks`](crate::hooks); keep the part that writes to
//!    the system, a client say, in a field of its own and its hooks
//!    get the old model borrowed from the store instead of a copy:
//!    [`Hooks::apply_parts`](crate::Hooks::apply_parts)), or override
//!    [`apply_batch`](crate::Sink::apply_batch) to write many changes at
//!    once (one transaction, one bulk request), setting each change's outcome.
//!    The syncer then applies what succeeded to the store. Returning `Err` from
//!    `apply_batch` means nothing of the batch was applied.
//! 4. Optionally, **finish** in [`sync_complete`](crate::Sink::sync_complete),
//!    called only when something changed (flush a file, commit, notify).
//!
//! Hooks get a [`Change`](crate::Change): the action, the diff element
//! (type, key, identifiers, attribute changes), `attrs` (all source attributes
//! for a create, the changed ones for an update), the full `source` model when
//! syncing from an adapter, the `parent`'s (type, key), and for a create the
//! model that will be stored, which a hook may edit (say, to record the id the
//! system assigned).
//!
//! ## A complete adapter for an HTTP-like API
//!
//! `InventoryApi` stands in for a REST client: a device list endpoint, a bulk
//! upsert endpoint and a delete endpoint, with a request counter so we can see
//! the batch hook at work.
//!
//! ```
//! use std::collections::BTreeMap;
//! use diffsync::{Adapter, AdapterExt, Batch, DiffModel, Edit, HookError, LocalStore, Sink, Typed};
//!
//! /// The API's own record type.
//! #[derive(Clone, Debug, PartialEq)]
//! struct ApiDevice { id: u64, name: String, role: String }
//!
//! /// An in-process stand-in for an HTTP API client.
//! #[derive(Default)]
//! struct InventoryApi { devices: BTreeMap<String, ApiDevice>, next_id: u64, requests: usize }
//!
//! impl InventoryApi {
//!     fn list_devices(&mut self) -> Vec<ApiDevice> {
//!         self.requests += 1;
//!         self.devices.values().cloned().collect()
//!     }
//!     /// POST /devices/bulk: creates or updates many devices; returns their ids.
//!     fn bulk_upsert(&mut self, items: Vec<(String, String)>) -> Result<Vec<u64>, String> {
//!         self.requests += 1;
//!         let mut ids = Vec::new();
//!         for (name, role) in items {
//!             if role.is_empty() {
//!                 return Err(format!("device {name}: role is required"));
//!             }
//!             let next = &mut self.next_id;
//!             let d = self.devices.entry(name.clone()).or_insert_with(|| {
//!                 *next += 1;
//!                 ApiDevice { id: *next, name, role: String::new() }
//!             });
//!             d.role = role;
//!             ids.push(d.id);
//!         }
//!         Ok(ids)
//!     }
//!     /// DELETE /devices/{name}
//!     fn delete(&mut self, name: &str) -> Result<(), String> {
//!         self.requests += 1;
//!         self.devices.remove(name).map(|_| ()).ok_or(format!("device {name} not found"))
//!     }
//! }
//!
//! #[derive(DiffModel, Clone, Debug, PartialEq)]
//! #[diffsync(name = "device")]
//! struct Device {
//!     #[diffsync(id)] name: String,
//!     role: String,
//!     #[diffsync(skip)] api_id: u64, // local-only: the id the API assigned
//! }
//!
//! struct ApiAdapter { api: InventoryApi, store: LocalStore }
//!
//! impl ApiAdapter {
//!     /// Loads everything with one request.
//!     fn connect(api: InventoryApi) -> diffsync::Result<Self> {
//!         let mut a = ApiAdapter { api, store: LocalStore::new("api") };
//!         a.store.register::<Device>()?;
//!         for d in a.api.list_devices() {
//!             a.store.add(Device { name: d.name, role: d.role, api_id: d.id })?;
//!         }
//!         Ok(a)
//!     }
//! }
//!
//! impl Adapter for ApiAdapter {
//!     type Store = LocalStore;
//!     fn store(&self) -> &LocalStore { &self.store }
//!     fn store_mut(&mut self) -> &mut LocalStore { &mut self.store }
//!     fn top_level(&self) -> Vec<&str> { vec!["device"] }
//! }
//! impl Sink for ApiAdapter {
//!     /// Creates and updates go out in one bulk request, deletes one by one.
//!     fn apply_batch(&mut self, batch: &mut Batch<'_, '_>) -> Result<(), HookError> {
//!         let mut upserts = Vec::new(); // (change index, name, role)
//!         // The batch's devices to write now, typed (changes whose parent
//!         // failed, or after an abort, are left out and reported).
//!         for Typed { index, edit, .. } in batch.typed::<Device>(&self.store)? {
//!             match edit {
//!                 // The model the store will hold, or the stored one with
//!                 // the change's values.
//!                 Edit::Create { new, .. } | Edit::Update { new, .. } => upserts.push((index, new.name, new.role)),
//!                 Edit::Delete { old, .. } => {
//!                     let r = self.api.delete(&old.name);
//!                     batch.set_outcome(index, r.map_err(Into::into));
//!                 }
//!             }
//!         }
//!         let items = upserts.iter().map(|(_, n, r)| (n.clone(), r.clone())).collect();
//!         match self.api.bulk_upsert(items) {
//!             Ok(ids) => {
//!                 for ((i, _, _), id) in upserts.into_iter().zip(ids) {
//!                     // Keep the id the API assigned on the model the store will hold.
//!                     if let Some(d) = batch.change_mut(i).new_model_mut::<Device>() {
//!                         d.api_id = id;
//!                     }
//!                     batch.set_outcome(i, Ok(()));
//!                 }
//!             }
//!             // The API rejects the whole bulk request: those changes failed.
//!             Err(e) => {
//!                 for (i, _, _) in upserts {
//!                     batch.set_outcome(i, Err(e.clone().into()));
//!                 }
//!             }
//!         }
//!         Ok(())
//!     }
//! }
//!
//! // The source of truth, e.g. a CMDB, as a plain in-memory adapter.
//! struct Cmdb(LocalStore);
//! impl Adapter for Cmdb {
//!     type Store = LocalStore;
//!     fn store(&self) -> &LocalStore { &self.0 }
//!     fn store_mut(&mut self) -> &mut LocalStore { &mut self.0 }
//!     fn top_level(&self) -> Vec<&str> { vec!["device"] }
//! }
//!
//! let mut api = InventoryApi::default();
//! api.bulk_upsert(vec![("r1".into(), "edge".into()), ("old".into(), "spare".into())]).unwrap();
//! let mut cmdb = Cmdb(LocalStore::new("cmdb"));
//! for (name, role) in [("r1", "core"), ("r2", "edge"), ("r3", "edge")] {
//!     cmdb.0.add(Device { name: name.into(), role: role.into(), api_id: 0 })?;
//! }
//!
//! let mut target = ApiAdapter::connect(api)?;
//! let report = target.sync_from(&cmdb)?;
//! assert!(report.is_success());
//! // 1 list + 1 setup call, then one bulk upsert for 3 changes and one delete.
//! assert_eq!(target.api.requests, 4);
//! assert_eq!(target.store.get(&Device::key("r3"))?.api_id, 4);
//! assert!(!target.diff_from(&cmdb)?.has_diffs());
//! # Ok::<(), diffsync::Error>(())
//! ```
//!
//! ## Checklist
//!
//! - Errors: return them from hooks (any `std::error::Error` converts with
//!   `?`); the report records them per change, and without
//!   `CONTINUE_ON_FAILURE` the sync stops with
//!   [`SyncError::Aborted`](crate::SyncError::Aborted) naming the model.
//!   [`HookError::soft`](crate::HookError::soft) says "not applied, go on"
//!   (the Python library's `None`), [`HookError::fatal`](crate::HookError::fatal)
//!   "stop now".
//! - In a batch hook, ask [`Batch::should_apply`](crate::Batch::should_apply)
//!   before each change (it skips what depends on a failure and what comes
//!   after an abort). Record `Ok` only for what is in the system for good; a
//!   change written in a transaction that may still roll back is
//!   [`Batch::stage`](crate::Batch::stage)d and committed with
//!   [`Batch::commit_staged`](crate::Batch::commit_staged).
//! - A networked store (the system itself is the store, e.g. Redis) implements
//!   [`Store`](crate::Store) instead: keep an in-memory [`LocalStore`](crate::LocalStore)
//!   image for reads and write each change through in `insert`,
//!   `update_attributes` and `remove`.
//! - Ready adapters (files, SQLite, PostgreSQL, object stores, a Redis store)
//!   are in the `diffsync-adapters` crate.
