//! Typed hooks: an adapter says, per model type, how to write a change to
//! its system, and each hook reads plain Rust on the user's own struct.
//!
//! [`Sink::apply`](crate::Sink::apply) receives every change erased (a [`Change`]); a
//! [`Hooks`] table turns it into a [`Write`] of the model's own type and
//! calls the hook registered for that type:
//!
//! ```
//! use diffsync::{Adapter, AdapterExt, Change, DiffModel, HookError, Hooks, LocalStore, Sink, Write};
//!
//! #[derive(DiffModel, Clone, Debug, PartialEq)]
//! #[diffsync(name = "device")]
//! struct Device { #[diffsync(id)] name: String, role: String, mtu: u32 }
//!
//! struct Network { store: LocalStore, pushed: Vec<String> }
//!
//! impl Adapter for Network {
//!     type Store = LocalStore;
//!     fn store(&self) -> &LocalStore { &self.store }
//!     fn store_mut(&mut self) -> &mut LocalStore { &mut self.store }
//! }
//! impl Sink for Network {
//!     fn apply(&mut self, change: &mut Change<'_>) -> Result<(), HookError> {
//!         Hooks::new().on(Self::device).apply(self, change)
//!     }
//! }
//!
//! impl Network {
//!     fn device(&mut self, write: Write<'_, Device>) -> Result<(), HookError> {
//!         let line = match write {
//!             Write::Create { new, .. } => format!("add {} as {}", new.name, new.role),
//!             Write::Update { old, new, changed } if changed == [DeviceField::Role] => {
//!                 format!("{}: role {} -> {}", new.name, old.role, new.role)
//!             }
//!             Write::Update { new, changed, .. } => format!("{}: {changed:?}", new.name),
//!             Write::Delete { old, .. } => format!("remove {}", old.name),
//!         };
//!         self.pushed.push(line);
//!         Ok(())
//!     }
//! }
//!
//! let r1 = |role: &str| Device { name: "r1".into(), role: role.into(), mtu: 1500 };
//! let mut cmdb = Network { store: LocalStore::new("cmdb"), pushed: vec![] };
//! cmdb.store.add(r1("edge"))?;
//! let mut net = Network { store: LocalStore::new("net"), pushed: vec![] };
//! net.store.add(r1("core"))?;
//! net.sync_from(&cmdb)?;
//! assert_eq!(net.pushed, ["r1: role core -> edge"]);
//! # Ok::<(), diffsync::Error>(())
//! ```
//!
//! A change whose type has no hook in the table fails (it is reported, and
//! the store does not take it): a type the adapter forgot is never
//! silently "applied" to a system that did not get it. Runtime models
//! ([`DynModel`]) register by type name with [`Hooks::on_dyn`], or, for
//! types known only at run time (a config's), in a [`DynHooks`] table
//! built in a loop and added with [`Hooks::on_table`]. An adapter
//! that writes SQL for any type keeps the erased view: [`Change`] in
//! [`Sink::apply`](crate::Sink::apply), or a whole [`Batch`](crate::Batch) in
//! [`Sink::apply_batch`](crate::Sink::apply_batch).

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::Arc;

use crate::diff::Action;
use crate::key::ModelKey;
use crate::model::{DiffModel, DynModel, StaticModel};
use crate::store::{LocalStore, Store};
use crate::sync::Change;
use crate::sync::HookError;
use crate::sync::adapter::Adapter;

/// What a typed hook is asked to do to one model of type `T`. The store
/// takes the change only after the hook returned `Ok`. The old model is
/// the one in the adapter's store: borrowed from it when the hooks write
/// through a part of the adapter ([`Hooks::apply_parts`]), a copy when
/// they have the whole adapter mutably ([`Hooks::apply`]).
#[derive(Debug)]
pub enum Write<'a, T: DiffModel> {
    /// Create `new` in the system. `new` is the model the store will hold
    /// (also for a diff read from a file: it is built from its values); a
    /// hook may set its local-only fields, a database id say.
    Create {
        /// The model to create.
        new: &'a mut T,
        /// Its parent's key, if it is a child.
        parent: Option<ModelKey>,
    },
    /// Change `old` (as this side holds it) into `new`.
    Update {
        /// The model as this side holds it.
        old: &'a T,
        /// The model as the change leaves it.
        new: &'a T,
        /// The attributes that change, in schema order.
        changed: &'a [T::Field],
    },
    /// Delete `old` from the system.
    Delete {
        /// The model as this side holds it.
        old: &'a T,
        /// Its descendants go with it (the model's
        /// `SKIP_CHILDREN_ON_DELETE`): they get no change of their own, so
        /// the hook removes them from the system too.
        subtree: bool,
    },
}

/// A table of typed hooks, one per model type, for [`Sink::apply`](crate::Sink::apply):
/// `Hooks::new().on(Self::site).on(Self::device).apply(self, change)`.
///
/// Building one costs nothing (no allocation: each `on` wraps the table in
/// a new type), so `apply` builds it on every call.
pub struct Hooks<A: ?Sized, H = NoHook> {
    handlers: H,
    adapter: PhantomData<fn(&mut A)>,
}

impl<A: ?Sized> Hooks<A> {
    /// An empty table.
    pub fn new() -> Self {
        Hooks {
            handlers: NoHook,
            adapter: PhantomData,
        }
    }
}

impl<A: ?Sized> Default for Hooks<A> {
    fn default() -> Self {
        Self::new()
    }
}

impl<A: ?Sized, H: Handler<A>> Hooks<A, H> {
    /// Registers the hook for model type `T` (a method
    /// `fn device(&mut self, write: Write<'_, Device>) -> Result<(), HookError>`).
    pub fn on<T, F>(self, hook: F) -> Hooks<A, On<T, F, H>>
    where
        T: StaticModel,
        F: FnMut(&mut A, Write<'_, T>) -> Result<(), HookError>,
    {
        Hooks {
            handlers: On {
                hook,
                next: self.handlers,
                model: PhantomData,
            },
            adapter: PhantomData,
        }
    }

    /// Registers the hook for the runtime model type called `model_type`.
    pub fn on_dyn<F>(self, model_type: &str, hook: F) -> Hooks<A, OnDyn<'_, F, H>>
    where
        F: FnMut(&mut A, Write<'_, DynModel>) -> Result<(), HookError>,
    {
        Hooks {
            handlers: OnDyn {
                model_type,
                hook,
                next: self.handlers,
            },
            adapter: PhantomData,
        }
    }

    /// Adds a table of hooks for runtime model types, by type name (built
    /// in a loop: see [`DynHooks`]).
    pub fn on_table(self, table: &DynHooks<A>) -> Hooks<A, OnTable<'_, A, H>> {
        Hooks {
            handlers: OnTable {
                table,
                next: self.handlers,
            },
            adapter: PhantomData,
        }
    }

    /// Hands `change` to the hook registered for its type, as a [`Write`]
    /// whose old model is a copy (the hook has the whole adapter mutably,
    /// its store included). A type with no hook fails the change.
    pub fn apply(mut self, adapter: &mut A, change: &mut Change<'_>) -> Result<(), HookError>
    where
        A: Adapter,
    {
        let handled = self.handlers.handle(
            &mut Lent {
                store: OldModels::Inside(|a: &A| a.store().local()),
                writer: adapter,
            },
            change,
        );
        // The adapter's name is read only for a type with no hook.
        handled.unwrap_or_else(|| Err(no_hook(adapter.name(), change)))
    }

    /// Hands `change` to the hook registered for its type, as a [`Write`]
    /// whose old model is borrowed from `store`, not copied: the hooks are
    /// methods of `writer`, the part of the adapter that writes to its
    /// system (a client, a connection), lent beside the store. A type with
    /// no hook fails the change.
    ///
    /// ```
    /// use diffsync::{Adapter, AdapterExt, Change, DiffModel, HookError, Hooks, LocalStore, Sink, Write};
    ///
    /// #[derive(DiffModel, Clone, Debug, PartialEq)]
    /// #[diffsync(name = "device")]
    /// struct Device { #[diffsync(id)] name: String, role: String }
    ///
    /// /// What writes to the network (a connection, in a real adapter).
    /// struct Client { sent: Vec<String> }
    ///
    /// impl Client {
    ///     fn device(&mut self, write: Write<'_, Device>) -> Result<(), HookError> {
    ///         if let Write::Update { old, new, .. } = write {
    ///             self.sent.push(format!("{}: {} -> {}", new.name, old.role, new.role));
    ///         }
    ///         Ok(())
    ///     }
    /// }
    ///
    /// struct Network { store: LocalStore, client: Client }
    ///
    /// impl Adapter for Network {
    ///     type Store = LocalStore;
    ///     fn store(&self) -> &LocalStore { &self.store }
    ///     fn store_mut(&mut self) -> &mut LocalStore { &mut self.store }
    /// }
    /// impl Sink for Network {
    ///     fn apply(&mut self, change: &mut Change<'_>) -> Result<(), HookError> {
    ///         Hooks::new().on(Client::device).apply_parts(&self.store, &mut self.client, change)
    ///     }
    /// }
    ///
    /// let r1 = |role: &str| Device { name: "r1".into(), role: role.into() };
    /// let mut cmdb = Network { store: LocalStore::new("cmdb"), client: Client { sent: vec![] } };
    /// cmdb.store.add(r1("edge"))?;
    /// let mut net = Network { store: LocalStore::new("net"), client: Client { sent: vec![] } };
    /// net.store.add(r1("core"))?;
    /// net.sync_from(&cmdb)?;
    /// assert_eq!(net.client.sent, ["r1: core -> edge"]);
    /// # Ok::<(), diffsync::Error>(())
    /// ```
    pub fn apply_parts(mut self, store: &LocalStore, writer: &mut A, change: &mut Change<'_>) -> Result<(), HookError> {
        let mut lent = Lent {
            store: OldModels::Beside(store),
            writer,
        };
        self.handlers
            .handle(&mut lent, change)
            .unwrap_or_else(|| Err(no_hook(store.name(), change)))
    }
}

fn no_hook(adapter: &str, change: &Change<'_>) -> HookError {
    HookError::Failed(
        format!(
            "adapter `{adapter}` has no hook for model type `{}`",
            change.model_type()
        )
        .into(),
    )
}

/// What a [`Hooks`] table writes through: the part of an adapter its
/// hooks are methods of, and the store that holds the old models (lent
/// beside it, or inside it when the part is the whole adapter).
pub struct Lent<'a, W: ?Sized> {
    store: OldModels<'a, W>,
    writer: &'a mut W,
}

/// Where a [`Lent`] finds the old models.
enum OldModels<'a, W: ?Sized> {
    /// In a store lent beside the writer: borrowed.
    Beside(&'a LocalStore),
    /// In the writer's own store: copied out before the writer is lent.
    Inside(fn(&W) -> &LocalStore),
}

impl<W: ?Sized> Lent<'_, W> {
    /// Builds the [`Write`] for `change` and calls `hook` with it.
    fn write<T, F>(&mut self, change: &mut Change<'_>, hook: &mut F) -> Result<(), HookError>
    where
        T: DiffModel,
        F: FnMut(&mut W, Write<'_, T>) -> Result<(), HookError>,
    {
        if change.action == Action::Create {
            let parent = change.parent();
            let model_type = change.model_type();
            let Some(new) = change.new_model_mut::<T>() else {
                return Err(not_a::<T>(model_type, change.key()));
            };
            return hook(self.writer, Write::Create { new, parent });
        }
        if !matches!(change.action, Action::Update | Action::Delete) {
            return Ok(());
        }
        match self.store {
            OldModels::Beside(store) => write_old(self.writer, stored::<T>(store, change)?, change, hook),
            OldModels::Inside(store_of) => {
                let old = stored::<T>(store_of(self.writer), change)?.clone();
                write_old(self.writer, &old, change, hook)
            }
        }
    }
}

/// One entry of a [`Hooks`] table (implemented by the table's own types).
pub trait Handler<A: ?Sized> {
    /// `None`: no hook for this change's type.
    fn handle(&mut self, lent: &mut Lent<'_, A>, change: &mut Change<'_>) -> Option<Result<(), HookError>>;
}

/// The end of a [`Hooks`] table.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoHook;

impl<A: ?Sized> Handler<A> for NoHook {
    fn handle(&mut self, _: &mut Lent<'_, A>, _: &mut Change<'_>) -> Option<Result<(), HookError>> {
        None
    }
}

/// A [`Hooks`] entry for the derived model type `T`.
pub struct On<T, F, Next> {
    hook: F,
    next: Next,
    model: PhantomData<fn(T)>,
}

impl<A, T, F, Next> Handler<A> for On<T, F, Next>
where
    A: ?Sized,
    T: StaticModel,
    F: FnMut(&mut A, Write<'_, T>) -> Result<(), HookError>,
    Next: Handler<A>,
{
    fn handle(&mut self, lent: &mut Lent<'_, A>, change: &mut Change<'_>) -> Option<Result<(), HookError>> {
        if change.model_type() != T::NAME {
            return self.next.handle(lent, change);
        }
        Some(lent.write(change, &mut self.hook))
    }
}

/// A [`Hooks`] entry for a runtime model type.
pub struct OnDyn<'n, F, Next> {
    model_type: &'n str,
    hook: F,
    next: Next,
}

impl<A, F, Next> Handler<A> for OnDyn<'_, F, Next>
where
    A: ?Sized,
    F: FnMut(&mut A, Write<'_, DynModel>) -> Result<(), HookError>,
    Next: Handler<A>,
{
    fn handle(&mut self, lent: &mut Lent<'_, A>, change: &mut Change<'_>) -> Option<Result<(), HookError>> {
        if change.model_type() != self.model_type {
            return self.next.handle(lent, change);
        }
        Some(lent.write(change, &mut self.hook))
    }
}

/// A hook of a [`DynHooks`] table.
type DynHook<A> = dyn Fn(&mut A, Write<'_, DynModel>) -> Result<(), HookError> + Send + Sync;

/// Hooks for runtime model types ([`DynModel`]), one per type name, built
/// in a loop over types known only at run time (a config's), and handed
/// to [`Hooks::on_table`]. Cloning it is cheap (the table is shared), so
/// an adapter keeps one and lends a clone to each `apply`:
///
/// ```
/// use std::sync::Arc;
/// use diffsync::{Adapter, Change, DynHooks, HookError, Hooks, LocalStore, Sink, Write};
///
/// struct Generic { store: LocalStore, hooks: DynHooks<Generic>, log: Vec<String> }
///
/// impl Adapter for Generic {
///     type Store = LocalStore;
///     fn store(&self) -> &LocalStore { &self.store }
///     fn store_mut(&mut self) -> &mut LocalStore { &mut self.store }
/// }
/// impl Sink for Generic {
///     fn apply(&mut self, change: &mut Change<'_>) -> Result<(), HookError> {
///         let hooks = self.hooks.clone();
///         Hooks::new().on_table(&hooks).apply(self, change)
///     }
/// }
///
/// let mut hooks = DynHooks::new();
/// for table in ["site", "device"] {
///     hooks.insert(table, move |a: &mut Generic, write: Write<'_, _>| {
///         let what = match write { Write::Create { .. } => "insert", Write::Update { .. } => "update", Write::Delete { .. } => "delete" };
///         a.log.push(format!("{what} into {table}"));
///         Ok(())
///     });
/// }
/// assert_eq!(hooks.len(), 2);
/// # let _ = Generic { store: LocalStore::new("g"), hooks, log: Vec::new() };
/// ```
pub struct DynHooks<A: ?Sized> {
    hooks: Arc<HashMap<String, Arc<DynHook<A>>>>,
}

impl<A: ?Sized> DynHooks<A> {
    /// An empty table.
    pub fn new() -> Self {
        DynHooks {
            hooks: Arc::new(HashMap::new()),
        }
    }

    /// Registers `hook` for the runtime model type named `model_type`
    /// (replacing an earlier one for that type).
    pub fn insert<F>(&mut self, model_type: impl Into<String>, hook: F) -> &mut Self
    where
        F: Fn(&mut A, Write<'_, DynModel>) -> Result<(), HookError> + Send + Sync + 'static,
    {
        Arc::make_mut(&mut self.hooks).insert(model_type.into(), Arc::new(hook));
        self
    }

    /// How many types have a hook.
    pub fn len(&self) -> usize {
        self.hooks.len()
    }

    /// Whether no type has a hook.
    pub fn is_empty(&self) -> bool {
        self.hooks.is_empty()
    }
}

impl<A: ?Sized> Clone for DynHooks<A> {
    fn clone(&self) -> Self {
        DynHooks {
            hooks: Arc::clone(&self.hooks),
        }
    }
}

impl<A: ?Sized> Default for DynHooks<A> {
    fn default() -> Self {
        Self::new()
    }
}

/// A [`Hooks`] entry for the runtime types of a [`DynHooks`] table.
pub struct OnTable<'t, A: ?Sized, Next> {
    table: &'t DynHooks<A>,
    next: Next,
}

impl<A, Next> Handler<A> for OnTable<'_, A, Next>
where
    A: ?Sized,
    Next: Handler<A>,
{
    fn handle(&mut self, lent: &mut Lent<'_, A>, change: &mut Change<'_>) -> Option<Result<(), HookError>> {
        match self.table.hooks.get(change.model_type()) {
            Some(hook) => Some(lent.write(change, &mut |a: &mut A, w| hook(a, w))),
            None => self.next.handle(lent, change),
        }
    }
}

/// Calls `hook` with the update or delete `change` makes of `old`.
fn write_old<W, T, F>(writer: &mut W, old: &T, change: &Change<'_>, hook: &mut F) -> Result<(), HookError>
where
    W: ?Sized,
    T: DiffModel,
    F: FnMut(&mut W, Write<'_, T>) -> Result<(), HookError>,
{
    if change.action == Action::Delete {
        let subtree = change.removes_subtree();
        return hook(writer, Write::Delete { old, subtree });
    }
    let new = change.updated(old)?;
    let changed: Vec<T::Field> = change.changed_fields().filter_map(T::field).collect();
    hook(
        writer,
        Write::Update {
            old,
            new: &new,
            changed: &changed,
        },
    )
}

/// The model `change` names as the store holds it, as a `T`.
fn stored<'s, T: DiffModel>(store: &'s LocalStore, change: &Change<'_>) -> Result<&'s T, HookError> {
    let model = store.get_dyn_uid(change.model_type(), change.key())?;
    model
        .downcast_ref::<T>()
        .ok_or_else(|| not_a::<T>(change.model_type(), change.key()))
}

fn not_a<T>(model_type: &str, key: &str) -> HookError {
    HookError::Failed(
        format!(
            "`{model_type}` `{key}` is not stored as a `{}`: its hook is registered for another Rust type",
            std::any::type_name::<T>()
        )
        .into(),
    )
}
