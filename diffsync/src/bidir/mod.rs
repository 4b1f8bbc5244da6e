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
//! let nyc = Site::key("nyc");
//! cmdb.store.update_attributes(nyc.erased(), diffsync::AttrSource::Values(&v("north")))?;
//! network.store.update_attributes(nyc.erased(), diffsync::AttrSource::Values(&v("south")))?;
//! let report = reconcile(&mut cmdb, &mut network, &mut base, &opts)?;
//! assert_eq!(report.conflicts.len(), 1);
//! assert_eq!(network.store.get(&Site::key("nyc"))?.region, "north");
//! # Ok::<(), diffsync::Error>(())
//! ```

mod base;
mod log;
mod options;
mod reconcile;
mod strategy;

pub use crate::error::ReconcileError;
pub use crate::report::{BiReport, ConflictKind, ConflictRecord, Resolution};
pub use base::*;
pub use log::*;
pub use options::*;
pub use reconcile::*;
pub use strategy::*;
