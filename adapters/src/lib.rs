//! Ready adapters for [`diffsync`], generic over any `#[derive(DiffModel)]`
//! model that is also `Serialize + Deserialize`: list your model types in a
//! [`Registry`] and open an adapter on a file, a database or an object store,
//! or keep an adapter's models in Redis with [`RedisStore`](crate::redis::RedisStore).
//!
//! Each family is a cargo feature (all on by default): `files`, `sqlite`,
//! `postgres`, `object-store`, `redis`. The core crate depends on none of them.
//!
//! Local-only (`#[diffsync(skip)]`) fields are not stored by the SQL adapters:
//! give them `#[serde(default)]` so records read back.

mod error;
mod registry;

#[cfg(feature = "files")]
mod document;
#[cfg(feature = "files")]
pub mod files;
#[cfg(feature = "object-store")]
pub mod object_store;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub mod ranges;
#[cfg(feature = "redis")]
pub mod redis;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod sql;
#[cfg(feature = "sqlite")]
pub mod sqlite;

pub use error::{AdapterError, Result};
#[cfg(feature = "files")]
pub use files::{FileAdapter, Format};
pub use registry::{PARENT_KEY, Registry};
