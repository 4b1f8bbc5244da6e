//! Adapters: a named connection to one system, holding its models in a store
//! ([`Adapter`], the reading side) and, for a system that can be written to,
//! applying a sync's changes back to it through hooks ([`Sink`]).

use crate::diff::Diff;
use crate::differ::{self, Side};
use crate::error::{Error, HookError, Result};
use crate::options::Options;
use crate::store::Store;
use crate::sync::{self, Batch, Change, SyncError, SyncReport};

/// One system to compare and synchronize: the reading side (its store,
/// loaded, read again after changes, refreshed). A system that can be
/// written to is also a [`Sink`] (the hooks a sync calls).
///
/// Implement [`store`](Adapter::store) and [`store_mut`](Adapter::store_mut);
/// fill the store in your own loader (or [`load`](Adapter::load)); implement
/// [`Sink`]'s hooks that write to your system. [`AdapterExt`], implemented
/// for every adapter, diffs (any adapter) and syncs (into a `Sink`).
///
/// ```
/// use diffsync::{Adapter, AdapterExt, Change, DiffModel, HookError, Hooks, LocalStore, Sink, Write};
///
/// #[derive(DiffModel, Clone, Debug, PartialEq)]
/// #[diffsync(name = "site")]
/// struct Site { #[diffsync(id)] name: String, region: String }
///
/// struct Cmdb { store: LocalStore, log: Vec<String> }
///
/// impl Adapter for Cmdb {
///     type Store = LocalStore;
///     fn store(&self) -> &LocalStore { &self.store }
///     fn store_mut(&mut self) -> &mut LocalStore { &mut self.store }
/// }
/// impl Sink for Cmdb {
///     fn apply(&mut self, change: &mut Change<'_>) -> Result<(), HookError> {
///         Hooks::new().on(Self::site).apply(self, change)
///     }
/// }
///
/// impl Cmdb {
///     fn site(&mut self, write: Write<'_, Site>) -> Result<(), HookError> {
///         self.log.push(match write {
///             Write::Create { new, .. } => format!("create {} in {}", new.name, new.region),
///             Write::Update { old, new, .. } => format!("move {} from {} to {}", new.name, old.region, new.region),
///             Write::Delete { old, .. } => format!("delete {}", old.name),
///         });
///         Ok(())
///     }
/// }
///
/// let mut source = Cmdb { store: LocalStore::new("a"), log: vec![] };
/// source.store.add(Site { name: "nyc".into(), region: "east".into() })?;
/// let mut target = Cmdb { store: LocalStore::new("b"), log: vec![] };
///
/// let diff = target.diff_from(&source)?;
/// assert_eq!(diff.summary().create, 1);
/// let report = target.sync_from(&source)?;
/// assert!(report.is_success());
/// assert_eq!(target.log, ["create nyc in east"]);
/// assert!(!target.diff_from(&source)?.has_diffs());
/// # Ok::<(), diffsync::Error>(())
/// ```
pub trait Adapter {
    /// The store type (usually [`LocalStore`](crate::LocalStore)).
    type Store: Store;

    /// The adapter's name, shown in diffs and reports. The default: the
    /// store's name.
    fn name(&self) -> &str {
        self.store().name()
    }
    /// The store.
    fn store(&self) -> &Self::Store;
    /// The store, mutably.
    fn store_mut(&mut self) -> &mut Self::Store;
    /// Top-level model types, in processing order. The default: the
    /// store's registered types that no other type lists as a child, in
    /// registration order.
    fn top_level(&self) -> Vec<&str> {
        let store = self.store().local();
        let child_of_another = |t: &str| {
            store
                .model_types()
                .filter(|p| *p != t)
                .any(|p| store.schema(p).is_some_and(|s| s.children.iter().any(|c| c == t)))
        };
        store.model_types().filter(|t| !child_of_another(t)).collect()
    }

    /// Loads the system into the store (optional: many adapters load in their constructor).
    fn load(&mut self) -> Result<()> {
        Ok(())
    }

    /// Brings the in-memory image up to date for these changed models by
    /// reading them again from the system (a loop calls it before diffing
    /// them). The default has nothing to read: the store is the system.
    fn reread(&mut self, changed: &[crate::feed::ChangeEvent]) -> Result<()> {
        let _ = changed;
        Ok(())
    }
    /// Reads the whole system again into the in-memory image (a loop's
    /// full pass calls it, so a write the feeds missed is found). The
    /// default has nothing to read: the store is the system.
    fn refresh(&mut self) -> Result<()> {
        Ok(())
    }
}

/// A system that can be written to: the hooks a sync calls with each
/// change ([`apply`](Sink::apply), or a whole [`apply_batch`](Sink::apply_batch))
/// and once it is done ([`sync_complete`](Sink::sync_complete)). An
/// [`Adapter`] is a source; a `Sink` is also a target, so a read-only
/// system (an export, a report, an API without writes) implements only
/// `Adapter` and cannot be synced into by mistake: `sync_from`, `sync_to`,
/// `reconcile` and a loop's targets need a `Sink`. Every method has a
/// default, so `impl Sink for Cmdb {}` makes an adapter whose store is the
/// system (it writes nothing else) a target.
///
/// ```compile_fail
/// use diffsync::{Adapter, AdapterExt, LocalStore, MemoryAdapter};
///
/// /// A read-only export: an `Adapter`, no `Sink`.
/// struct Export(LocalStore);
/// impl Adapter for Export {
///     type Store = LocalStore;
///     fn store(&self) -> &LocalStore { &self.0 }
///     fn store_mut(&mut self) -> &mut LocalStore { &mut self.0 }
/// }
///
/// let cmdb = MemoryAdapter::new("cmdb", &["site"]);
/// let mut export = Export(LocalStore::new("export"));
/// export.diff_from(&cmdb).unwrap(); // reading: fine
/// export.sync_from(&cmdb).unwrap(); // error: `Export` is read-only
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is read-only: it is an `Adapter` but not a `Sink`, so nothing can be synced into it",
    label = "not a `Sink`",
    note = "implement `diffsync::Sink` for it (an empty `impl Sink` when its store is the whole system)"
)]
pub trait Sink: Adapter {
    /// Writes one change to the system: typed, through a [`Hooks`](crate::Hooks)
    /// table (`Hooks::new().on(Self::device).apply(self, change)`), or
    /// erased, matching on `change.action`. The default writes nothing: the
    /// store is the system.
    fn apply(&mut self, change: &mut Change<'_>) -> Result<(), HookError> {
        let _ = change;
        Ok(())
    }
    /// Applies a whole batch. The default calls [`apply`](Sink::apply)
    /// for each change in order ([`Batch::apply_each`]); a database adapter overrides it to write many
    /// changes in one statement or transaction, recording each outcome with
    /// [`Batch::set_outcome`] (in the system for good) or [`Batch::stage`]
    /// (in an open transaction). Returning `Err` (or panicking) means the
    /// staged changes rolled back: the store does not take them, and the sync
    /// ends with [`SyncError::Aborted`](crate::SyncError::Aborted) naming the
    /// change the hook recorded as failed. A failure that stops the sync
    /// (see [`HookError`]) also ends it with `SyncAborted`, after what the
    /// system took is applied to the store.
    fn apply_batch(&mut self, batch: &mut Batch<'_, '_>) -> Result<(), HookError> {
        batch.apply_each(self);
        Ok(())
    }
    /// Called after a sync that attempted at least one change (even if every
    /// change failed softly), and after a sync that stopped early once it
    /// applied one (the report says which): an adapter that writes its
    /// system here writes what its store took. An error here means the
    /// system took none of the sync (a reconcile then takes none of it).
    fn sync_complete(&mut self, diff: &Diff, report: &SyncReport) -> Result<(), HookError> {
        let _ = (diff, report);
        Ok(())
    }

    /// Tags the writes made from now on as `origin`'s (their change events
    /// carry it), or untags them.
    fn set_origin(&mut self, origin: Option<&str>) {
        self.store_mut().set_origin(origin);
    }
}

/// A boxed adapter is an adapter (a command line picks its systems at run
/// time, `Box<dyn Sink<Store = LocalStore> + Send>` for a target): every method goes
/// to the boxed one.
impl<A: Adapter + ?Sized> Adapter for Box<A> {
    type Store = A::Store;
    fn name(&self) -> &str {
        (**self).name()
    }
    fn store(&self) -> &A::Store {
        (**self).store()
    }
    fn store_mut(&mut self) -> &mut A::Store {
        (**self).store_mut()
    }
    fn top_level(&self) -> Vec<&str> {
        (**self).top_level()
    }
    fn load(&mut self) -> Result<()> {
        (**self).load()
    }
    fn reread(&mut self, changed: &[crate::feed::ChangeEvent]) -> Result<()> {
        (**self).reread(changed)
    }
    fn refresh(&mut self) -> Result<()> {
        (**self).refresh()
    }
}
impl<A: Sink + ?Sized> Sink for Box<A> {
    fn apply(&mut self, change: &mut Change<'_>) -> Result<(), HookError> {
        (**self).apply(change)
    }
    fn apply_batch(&mut self, batch: &mut Batch<'_, '_>) -> Result<(), HookError> {
        (**self).apply_batch(batch)
    }
    fn sync_complete(&mut self, diff: &Diff, report: &SyncReport) -> Result<(), HookError> {
        (**self).sync_complete(diff, report)
    }
    fn set_origin(&mut self, origin: Option<&str>) {
        (**self).set_origin(origin)
    }
}

/// Diff and sync, for every [`Adapter`] (`dyn` ones too): import it with
/// the trait (`use diffsync::{Adapter, AdapterExt}`, or `diffsync::prelude::*`).
pub trait AdapterExt: Adapter {
    /// What would change in `self` to make it look like `source`.
    fn diff_from<S: Adapter + ?Sized>(&self, source: &S) -> Result<Diff> {
        self.diff_from_with(source, &mut Options::new())
    }
    /// [`diff_from`](AdapterExt::diff_from) with options.
    fn diff_from_with<S: Adapter + ?Sized>(&self, source: &S, opts: &mut Options<'_>) -> Result<Diff> {
        diff_between(self, source, opts)
    }
    /// What would change in `target` to make it look like `self`.
    fn diff_to<D: Adapter + ?Sized>(&self, target: &D) -> Result<Diff> {
        diff_between(target, self, &mut Options::new())
    }
    /// Makes `self` look like `source`: diff, then apply through the hooks.
    fn sync_from<S: Adapter + ?Sized>(&mut self, source: &S) -> Result<SyncReport>
    where
        Self: Sink,
    {
        sync_between(self, source, &mut Options::new())
    }
    /// [`sync_from`](AdapterExt::sync_from) with options.
    fn sync_from_with<S: Adapter + ?Sized>(&mut self, source: &S, opts: &mut Options<'_>) -> Result<SyncReport>
    where
        Self: Sink,
    {
        sync_between(self, source, opts)
    }
    /// [`sync_from_with`](AdapterExt::sync_from_with), handing the diff to
    /// `observe` on a second thread while the sync plans and checks its
    /// changes (a journal writes it there, say, instead of adding to the
    /// sync's time). Nothing is written to the target before `observe`
    /// returned: when it fails, nothing is
    /// ([`SyncError::Observer`](crate::SyncError::Observer)). The outer
    /// error: the diff could not be made (`observe` never ran), or
    /// `observe` failed; else the sync's result, with `observe`'s answer.
    /// A panic in a hook or in `observe` is resumed once both have stopped.
    fn sync_from_observed<S: Adapter + ?Sized, R: Send>(
        &mut self,
        source: &S,
        opts: &mut Options<'_>,
        observe: impl FnOnce(&Diff) -> std::result::Result<R, crate::BoxError> + Send,
    ) -> Result<(Result<SyncReport>, R)>
    where
        Self: Sink,
    {
        let diff = diff_between(&*self, source, opts)?;
        std::thread::scope(|scope| {
            let (done, observed) = std::sync::mpsc::channel::<bool>();
            let diff = &diff;
            let observer = scope.spawn(move || {
                // Told even when `observe` panics (the sender drops).
                let result = observe(diff);
                let _ = done.send(result.is_ok());
                result
            });
            let mut gate = || match observed.recv() {
                Ok(true) => Ok(()),
                _ => Err(()),
            };
            // The diff was made from these stores just now: fresh.
            let result = sync::sync_gated(self, diff, Some(source.store().local()), true, opts, &mut gate);
            let observed = observer.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            match observed {
                Ok(r) => Ok((result, r)),
                Err(source) => Err(Error::Sync(SyncError::Observer { source })),
            }
        })
    }
    /// Makes `target` look like `self`.
    fn sync_to<D: Sink + ?Sized>(&self, target: &mut D) -> Result<SyncReport> {
        sync_between(target, self, &mut Options::new())
    }
    /// Applies a precomputed diff, with the full source models from `source`.
    /// Flags that shape a diff (skips, ignore) have no further effect.
    fn sync_diff_from<S: Adapter + ?Sized>(
        &mut self,
        source: &S,
        diff: &Diff,
        opts: &mut Options<'_>,
    ) -> Result<SyncReport>
    where
        Self: Sink,
    {
        sync::sync(self, diff, Some(source.store().local()), false, opts)
    }
    /// Applies a diff without its source (e.g. loaded from JSON): created
    /// models are built from the element's identifiers and attributes.
    fn sync_diff(&mut self, diff: &Diff, opts: &mut Options<'_>) -> Result<SyncReport>
    where
        Self: Sink,
    {
        sync::sync(self, diff, None, false, opts)
    }
}

impl<A: Adapter + ?Sized> AdapterExt for A {}

/// What would change in `dest` to make it look like `source`.
fn diff_between<D: Adapter + ?Sized, S: Adapter + ?Sized>(
    dest: &D,
    source: &S,
    opts: &mut Options<'_>,
) -> Result<Diff> {
    let (src, dst) = sides(dest, source);
    differ::diff(&src, &dst, opts)
}

/// The differ's view of a source and a destination adapter.
pub(crate) fn sides<'a, D: Adapter + ?Sized, S: Adapter + ?Sized>(dest: &'a D, source: &'a S) -> (Side<'a>, Side<'a>) {
    let (mut src_top, mut dst_top) = (source.top_level(), dest.top_level());
    // A side with no top-level types (the default on a store that holds
    // nothing yet) takes the other side's: an empty target is filled, not
    // skipped as "top level on one side only".
    if dst_top.is_empty() {
        dst_top.clone_from(&src_top);
    } else if src_top.is_empty() {
        src_top.clone_from(&dst_top);
    }
    let src = Side {
        store: source.store().local(),
        name: source.name(),
        top_level: src_top,
    };
    let dst = Side {
        store: dest.store().local(),
        name: dest.name(),
        top_level: dst_top,
    };
    (src, dst)
}

/// Makes `dest` look like `source`.
fn sync_between<D: Sink + ?Sized, S: Adapter + ?Sized>(
    dest: &mut D,
    source: &S,
    opts: &mut Options<'_>,
) -> Result<SyncReport> {
    let diff = diff_between(&*dest, source, opts)?;
    let report = sync::sync(dest, &diff, Some(source.store().local()), true, opts);
    crate::differ::discard(diff);
    report
}

/// An adapter over a store with no write hooks: for sources (a CMDB export,
/// a file you parsed yourself, test fixtures) and for targets whose only
/// state is the store. [`MemoryAdapter`] is the in-memory one; any other
/// [`Store`] (a networked one, say) works the same way.
///
/// ```
/// use diffsync::{Adapter, AdapterExt, DiffModel, MemoryAdapter};
///
/// #[derive(DiffModel, Clone, Debug, PartialEq)]
/// #[diffsync(name = "site")]
/// struct Site { #[diffsync(id)] name: String, region: String }
///
/// let mut cmdb = MemoryAdapter::new("cmdb", &["site"]);
/// cmdb.store.add(Site { name: "nyc".into(), region: "east".into() })?;
/// let mut copy = MemoryAdapter::new("copy", &["site"]);
/// copy.sync_from(&cmdb)?;
/// assert_eq!(copy.store.count("site"), 1);
/// # Ok::<(), diffsync::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct StoreAdapter<S: Store = crate::LocalStore> {
    name: String,
    top_level: Vec<String>,
    /// The models.
    pub store: S,
}

/// A [`StoreAdapter`] over a [`LocalStore`](crate::LocalStore).
pub type MemoryAdapter = StoreAdapter<crate::LocalStore>;

impl StoreAdapter<crate::LocalStore> {
    /// An empty in-memory adapter (its store has the same name) with these top-level types.
    pub fn new(name: impl Into<String>, top_level: &[&str]) -> Self {
        let name = name.into();
        let store = crate::LocalStore::new(name.clone());
        Self::with_store(name, top_level, store)
    }
}

impl<S: Store> StoreAdapter<S> {
    /// An adapter over an existing store.
    pub fn with_store(name: impl Into<String>, top_level: &[&str], store: S) -> Self {
        StoreAdapter {
            name: name.into(),
            top_level: top_level.iter().map(|t| t.to_string()).collect(),
            store,
        }
    }
}

impl<S: Store> Adapter for StoreAdapter<S> {
    type Store = S;
    /// The store reads these models again from its backend (a networked
    /// store; a no-op in memory).
    fn reread(&mut self, changed: &[crate::feed::ChangeEvent]) -> Result<()> {
        Ok(self.store.reread(changed)?)
    }
    fn refresh(&mut self) -> Result<()> {
        Ok(self.store.refresh()?)
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn store(&self) -> &S {
        &self.store
    }
    fn store_mut(&mut self) -> &mut S {
        &mut self.store
    }
    fn top_level(&self) -> Vec<&str> {
        self.top_level.iter().map(String::as_str).collect()
    }
}

/// The store is the system: a sync's changes are the store's to take.
impl<S: Store> Sink for StoreAdapter<S> {}

/// What a [`Layered`] adapter runs around the adapter it wraps: look at
/// each change before and after it is applied (log, count, check), or veto
/// one. Layers compose by wrapping: `Layered::new(Layered::new(db, log), veto)`.
///
/// ```
/// use diffsync::{Adapter, AdapterExt, Batch, HookError, Layer, Layered, MemoryAdapter, Outcome};
///
/// /// Counts what reached the system, and refuses to delete any site.
/// #[derive(Default)]
/// struct Guard { applied: usize }
///
/// impl Layer for Guard {
///     fn before(&mut self, batch: &mut Batch<'_, '_>) {
///         for i in 0..batch.len() {
///             let c = &batch.changes()[i];
///             if c.action == diffsync::Action::Delete && c.model_type() == "site" {
///                 batch.set_outcome(i, Err(HookError::soft("sites are never deleted here")));
///             }
///         }
///     }
///     fn after(&mut self, batch: &Batch<'_, '_>, _result: &Result<(), HookError>) {
///         self.applied += batch.outcomes().iter().filter(|o| **o == Outcome::Applied).count();
///     }
/// }
///
/// #[derive(diffsync::DiffModel, Clone, Debug, PartialEq)]
/// #[diffsync(name = "site")]
/// struct Site { #[diffsync(id)] name: String }
///
/// let mut source = MemoryAdapter::new("source", &["site"]);
/// source.store.add(Site { name: "lax".into() })?;
/// let mut system = MemoryAdapter::new("target", &["site"]);
/// system.store.add(Site { name: "nyc".into() })?;
/// let mut target = Layered::new(system, Guard::default());
/// let report = target.sync_from(&source)?;
/// assert_eq!(target.layer.applied, 1); // lax was created
/// assert!(target.store().contains(Site::key("nyc"))); // nyc's delete was vetoed
/// assert_eq!(report.totals().soft_failed, 1);
/// # Ok::<(), diffsync::Error>(())
/// ```
pub trait Layer {
    /// Before the wrapped adapter applies a batch. A change given an
    /// outcome here is not applied (`set_outcome(i, Err(HookError::soft(..)))`
    /// vetoes it; what depends on it is skipped).
    fn before(&mut self, batch: &mut Batch<'_, '_>) {
        let _ = batch;
    }
    /// After the wrapped adapter applied the batch: each change's outcome
    /// is in `batch.outcomes()`. When `result` is `Err` the batch rolled
    /// back: changes still `Pending` did not reach the system.
    fn after(&mut self, batch: &Batch<'_, '_>, result: &Result<(), HookError>) {
        let _ = (batch, result);
    }
}

/// An adapter wrapped in a [`Layer`]: every method goes to the wrapped
/// adapter (`sync_complete`, `reread`, `refresh`, `set_origin` included,
/// so a file adapter still writes its file), and the layer sees each batch
/// before and after the wrapped adapter applies it.
pub struct Layered<A, L> {
    /// The wrapped adapter.
    pub inner: A,
    /// The layer.
    pub layer: L,
}

impl<A: Adapter, L: Layer> Layered<A, L> {
    /// `inner`, wrapped in `layer`.
    pub fn new(inner: A, layer: L) -> Self {
        Layered { inner, layer }
    }
}

impl<A: Adapter, L: Layer> Adapter for Layered<A, L> {
    type Store = A::Store;
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn store(&self) -> &A::Store {
        self.inner.store()
    }
    fn store_mut(&mut self) -> &mut A::Store {
        self.inner.store_mut()
    }
    fn top_level(&self) -> Vec<&str> {
        self.inner.top_level()
    }
    fn load(&mut self) -> Result<()> {
        self.inner.load()
    }
    fn reread(&mut self, changed: &[crate::feed::ChangeEvent]) -> Result<()> {
        self.inner.reread(changed)
    }
    fn refresh(&mut self) -> Result<()> {
        self.inner.refresh()
    }
}
impl<A: Sink, L: Layer> Sink for Layered<A, L> {
    fn apply(&mut self, change: &mut Change<'_>) -> Result<(), HookError> {
        self.inner.apply(change)
    }
    fn apply_batch(&mut self, batch: &mut Batch<'_, '_>) -> Result<(), HookError> {
        self.layer.before(batch);
        let result = self.inner.apply_batch(batch);
        // A batch hook that returned Ok committed what it staged.
        if result.is_ok() {
            batch.commit_staged();
        }
        self.layer.after(batch, &result);
        result
    }
    fn sync_complete(&mut self, diff: &Diff, report: &SyncReport) -> Result<(), HookError> {
        self.inner.sync_complete(diff, report)
    }
    fn set_origin(&mut self, origin: Option<&str>) {
        self.inner.set_origin(origin)
    }
}
