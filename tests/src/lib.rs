//! Shared fixtures for the integration tests: a site → device → interface
//! inventory and an adapter that records its hook calls and can be told to fail.

pub mod fuzz;
pub mod servers;
#[cfg(feature = "storage")]
pub mod storage;

use std::collections::{HashMap, HashSet};

use diffsync::Action;
use diffsync::{Adapter, Batch, Change, DiffModel, HookError, LocalStore, ModelFlags, Sink};
use serde::{Deserialize, Serialize};

/// A key from its text form (`device:r1`), for tests that name models by
/// the text diffsync prints.
pub fn key_of(text: &str) -> diffsync::ModelKey {
    text.parse().expect("a key's text")
}

/// A typed key from its text form, read against `T`'s identifiers.
pub fn typed_key<T: diffsync::StaticModel>(text: &str) -> diffsync::Key<T> {
    text.parse().expect("a key's text")
}

/// A site.
#[derive(DiffModel, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[diffsync(name = "site", children(Device))]
pub struct Site {
    /// Site name.
    #[diffsync(id)]
    pub name: String,
    /// Region.
    pub region: String,
}

/// A device.
#[derive(DiffModel, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[diffsync(name = "device", children(Interface))]
pub struct Device {
    /// Device name.
    #[diffsync(id)]
    pub name: String,
    /// Role.
    pub role: String,
    /// Serial number.
    pub serial: Option<String>,
    /// Local-only database key (not in a system's records: read back as 0).
    #[diffsync(skip)]
    #[serde(default)]
    pub db_pk: i64,
    /// Per-instance flags (never written to a system).
    #[diffsync(flags)]
    #[serde(skip)]
    pub flags: ModelFlags,
}

/// An interface.
#[derive(DiffModel, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[diffsync(name = "interface", shortname(name))]
pub struct Interface {
    /// Owning device.
    #[diffsync(id)]
    pub device_name: String,
    /// Interface name.
    #[diffsync(id)]
    pub name: String,
    /// Description (may be multi-line).
    pub description: String,
    /// MTU.
    pub mtu: u32,
}

/// A node of a tree of one self-referencing type.
#[derive(DiffModel, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[diffsync(name = "node", children(Node))]
pub struct Node {
    /// Node name.
    #[diffsync(id)]
    pub name: String,
    /// A compared attribute.
    pub label: String,
    /// Per-instance flags.
    #[diffsync(flags)]
    #[serde(skip)]
    pub flags: ModelFlags,
}

impl Node {
    /// A node without flags.
    pub fn new(name: impl Into<String>, label: impl Into<String>) -> Node {
        Node {
            name: name.into(),
            label: label.into(),
            flags: ModelFlags::empty(),
        }
    }
}

/// One interface: (name, description, mtu).
pub type IntfSpec<'a> = (&'a str, &'a str, u32);
/// One device: (name, role, serial, interfaces).
pub type DevSpec<'a> = (&'a str, &'a str, Option<&'a str>, &'a [IntfSpec<'a>]);
/// One site: (name, region, devices).
pub type SiteSpec<'a> = (&'a str, &'a str, &'a [DevSpec<'a>]);

/// An adapter over a [`LocalStore`] that logs hook calls and fails on request.
#[derive(Clone, Debug)]
pub struct Inventory {
    /// Adapter name.
    pub name: String,
    /// The store.
    pub store: LocalStore,
    /// Hook calls, e.g. `create interface nyc-r1__eth2 {"description":"new","mtu":1500}`.
    pub log: Vec<String>,
    /// (model type, key) pairs whose hooks fail.
    pub fail: HashSet<(String, String)>,
    /// How often `sync_complete` ran.
    pub completed: usize,
    /// When set, `apply_batch` fails as a whole (like a rolled-back transaction).
    pub fail_batch: bool,
    /// (model type, key) pairs whose hooks fail this many more times, then work.
    pub flaky: HashMap<(String, String), usize>,
    /// When set, `sync_complete` fails: the system took nothing of the sync
    /// (a file that could not be written), while the store took it all.
    pub fail_complete: bool,
    /// (model type, key) pairs whose hooks panic.
    pub panic_on: HashSet<(String, String)>,
    /// When set, `refresh` fails (the system cannot be read: a server down).
    pub fail_refresh: bool,
}

impl Inventory {
    /// An empty inventory.
    pub fn empty(name: &str) -> Self {
        let mut store = LocalStore::new(name);
        store.register::<Site>().expect("fresh store");
        store.register::<Device>().expect("fresh store");
        store.register::<Interface>().expect("fresh store");
        Inventory {
            name: name.into(),
            store,
            log: Vec::new(),
            fail: HashSet::new(),
            completed: 0,
            fail_batch: false,
            flaky: HashMap::new(),
            fail_complete: false,
            panic_on: HashSet::new(),
            fail_refresh: false,
        }
    }

    /// An inventory holding `sites`.
    pub fn new(name: &str, sites: &[SiteSpec<'_>]) -> Self {
        let mut inv = Inventory::empty(name);
        for (site, region, devices) in sites {
            inv.store
                .add(Site {
                    name: site.to_string(),
                    region: region.to_string(),
                })
                .expect("unique site");
            for (dev, role, serial, intfs) in devices.iter() {
                inv.store
                    .add_child(
                        Site::key(*site),
                        Device {
                            name: dev.to_string(),
                            role: role.to_string(),
                            serial: serial.map(str::to_string),
                            db_pk: 0,
                            flags: ModelFlags::empty(),
                        },
                    )
                    .expect("unique device");
                for (intf, descr, mtu) in intfs.iter() {
                    inv.store
                        .add_child(
                            Device::key(*dev),
                            Interface {
                                device_name: dev.to_string(),
                                name: intf.to_string(),
                                description: descr.to_string(),
                                mtu: *mtu,
                            },
                        )
                        .expect("unique interface");
                }
            }
        }
        inv
    }

    /// Makes the hooks of one model fail.
    pub fn fail_on(mut self, model_type: &str, key: &str) -> Self {
        self.fail.insert((model_type.into(), key.into()));
        self
    }

    fn record(&mut self, verb: &str, change: &Change<'_>) -> Result<(), HookError> {
        let attrs = serde_json::to_string(change.attrs()).unwrap_or_default();
        let line = if change.attrs().is_empty() {
            format!("{verb} {} {}", change.model_type(), change.key())
        } else {
            format!("{verb} {} {} {attrs}", change.model_type(), change.key())
        };
        self.log.push(line);
        let key = (change.model_type().to_string(), change.key().to_string());
        if self.panic_on.contains(&key) {
            panic!("{verb} {} {}: the hook panicked", key.0, key.1);
        }
        let flaky = self.flaky.get_mut(&key).filter(|n| **n > 0).map(|n| *n -= 1).is_some();
        if flaky || self.fail.contains(&key) {
            return Err(format!("{} {} refused by backend", change.model_type(), change.key()).into());
        }
        Ok(())
    }
}

impl Adapter for Inventory {
    type Store = LocalStore;
    fn name(&self) -> &str {
        &self.name
    }
    fn store(&self) -> &LocalStore {
        &self.store
    }
    fn store_mut(&mut self) -> &mut LocalStore {
        &mut self.store
    }
    fn refresh(&mut self) -> diffsync::Result<()> {
        if self.fail_refresh {
            return Err(diffsync::Error::Load {
                adapter: self.name.clone(),
                source: "the system cannot be read".into(),
            });
        }
        Ok(())
    }
    fn top_level(&self) -> Vec<&str> {
        vec!["site"]
    }
}
impl Sink for Inventory {
    fn apply(&mut self, change: &mut Change<'_>) -> Result<(), HookError> {
        match change.action {
            Action::Create => {
                self.record("create", change)?;
                if let Some(dev) = change.new_model_mut::<Device>() {
                    dev.db_pk = 1000;
                }
                Ok(())
            }
            Action::Update => self.record("update", change),
            Action::Delete => self.record("delete", change),
            _ => Ok(()),
        }
    }
    fn apply_batch(&mut self, batch: &mut Batch<'_, '_>) -> Result<(), HookError> {
        if self.fail_batch {
            return Err("transaction rolled back".into());
        }
        batch.apply_each(self);
        Ok(())
    }
    fn sync_complete(&mut self, _diff: &diffsync::Diff, _report: &diffsync::SyncReport) -> Result<(), HookError> {
        if self.fail_complete {
            return Err("disk full: nothing written".into());
        }
        self.completed += 1;
        Ok(())
    }
}

/// System A of the Python library's worked example.
pub fn sys_a() -> Inventory {
    Inventory::new(
        "sys-a",
        &[
            (
                "nyc",
                "east",
                &[(
                    "nyc-r1",
                    "router",
                    Some("A1"),
                    &[("eth0", "uplink", 1500), ("eth1", "to-sw", 1500)],
                )],
            ),
            (
                "sfo",
                "west",
                &[("sfo-r1", "router", None, &[("eth0", "uplink", 1500)])],
            ),
        ],
    )
}

/// System B of the Python library's worked example.
pub fn sys_b() -> Inventory {
    Inventory::new(
        "sys-b",
        &[
            (
                "nyc",
                "east",
                &[(
                    "nyc-r1",
                    "edge",
                    Some("A1"),
                    &[("eth0", "UPLINK", 1500), ("eth2", "new", 1500)],
                )],
            ),
            (
                "lax",
                "west",
                &[("lax-r1", "router", None, &[("eth0", "uplink", 1500)])],
            ),
        ],
    )
}

/// The README's code blocks, compiled and run as doctests (here, where every
/// crate they use is a dependency).
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

/// The book's chapters' code blocks, compiled and run as doctests, as the
/// README's (`book/src`; each chapter a type of its own, so a failure
/// names its chapter).
#[cfg(doctest)]
pub mod book {
    #[doc = include_str!("../../book/src/bidirectional.md")]
    pub struct Bidirectional;
    #[doc = include_str!("../../book/src/digests.md")]
    pub struct Digests;
    #[doc = include_str!("../../book/src/live.md")]
    pub struct Live;
    #[doc = include_str!("../../book/src/peers.md")]
    pub struct Peers;
    #[doc = include_str!("../../book/src/journal.md")]
    pub struct Journal;
    #[doc = include_str!("../../book/src/cli.md")]
    pub struct Cli;
    #[doc = include_str!("../../book/src/adapters.md")]
    pub struct Adapters;
    #[doc = include_str!("../../book/src/security.md")]
    pub struct Security;
    #[doc = include_str!("../../book/src/semantics.md")]
    pub struct Semantics;
    #[doc = include_str!("../../book/src/migrating.md")]
    pub struct Migrating;
    #[doc = include_str!("../../book/src/performance.md")]
    pub struct Performance;
}
