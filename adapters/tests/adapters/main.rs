//! Integration tests of the adapters against the real things (files, SQLite,
//! PostgreSQL and Redis servers started here, object stores), in one binary.

#[cfg(all(feature = "sqlite", feature = "redis"))]
mod chaos_modes;
mod common;
#[cfg(feature = "files")]
mod files;
#[cfg(feature = "object-store")]
mod object_store;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "sqlite")]
mod ranges;
#[cfg(feature = "redis")]
mod redis;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod rollback;
#[cfg(all(feature = "files", feature = "sqlite"))]
mod runtime;
#[cfg(all(feature = "files", feature = "sqlite"))]
mod seams;
/// The private PostgreSQL and Redis servers the tests start (shared with
/// the other test binaries).
mod servers {
    pub use diffsync_tests::servers::*;
}
#[cfg(feature = "sqlite")]
mod sqlite;
#[cfg(feature = "sqlite")]
mod sqlite_chaos;
#[cfg(feature = "sqlite")]
mod sqlite_feed;
