//! The config file: the model types (described at run time), the systems
//! and where the journal is. TOML or YAML, by extension.
//!
//! ```toml
//! journal = "runs.db"            # beside the config unless absolute
//! # or, a journal a team shares:
//! # journal_postgres = "host=db user=ops dbname=diffsync"
//!
//! [[models]]
//! name = "site"
//! identifiers = [{ name = "name", kind = "string" }]
//! attributes = [{ name = "region", kind = "string" }]
//! children = ["device"]
//!
//! [systems.cmdb]
//! file = "cmdb.json"             # JSON, YAML, TOML, or a CSV directory
//!
//! [systems.network]
//! sqlite = "network.db"          # or postgres = "host=... dbname=..."
//!                                # (keep_hashes = true: row hashes kept in
//!                                # its tables, read by range diffs)
//!
//! [systems.cache]
//! redis = "redis://127.0.0.1:6379/"
//! namespace = "inventory"        # the keys' prefix (default: the name)
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;

use diffsync::{LocalStore, ModelSchema, Sink, StoreAdapter};
use diffsync_adapters::Registry;
use diffsync_adapters::files::{FileAdapter, Format};
use diffsync_adapters::redis::RedisStore;
use diffsync_journal::Journal;
use serde::Deserialize;

/// A system the commands read or write, opened.
pub enum System {
    /// A file or a database: its models read into memory, changes written
    /// back through its hooks.
    Local(Box<dyn Sink<Store = LocalStore> + Send>),
    /// A Redis namespace: the store itself is in Redis.
    Redis(Box<StoreAdapter<RedisStore>>),
}

impl System {
    /// Its models, as read.
    pub fn local(&self) -> &LocalStore {
        match self {
            System::Local(s) => s.store(),
            System::Redis(s) => diffsync::Store::local(&s.store),
        }
    }
}

/// Runs `$body` with `$adapter` bound to the system's adapter, whatever
/// its store (`$system` by reference: `&system` or `&mut system`).
macro_rules! with_system {
    ($system:expr, $adapter:ident => $body:expr) => {
        match $system {
            $crate::config::System::Local($adapter) => $body,
            $crate::config::System::Redis($adapter) => $body,
        }
    };
}
pub(crate) use with_system;

/// A feed of a system's changes, for the loop.
pub type Feed = Box<dyn diffsync::feed::ChangeFeed>;

/// What can be wrong with a config, or opening what it names.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("config {path} cannot be read")]
    Read {
        /// The config file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file does not parse, or holds a key no config has (the
    /// parser's message names the line and the key).
    #[error("config {path}: {message}")]
    Parse {
        /// The config file.
        path: String,
        /// The parser's words.
        message: String,
    },
    /// The file parses and says something that cannot be.
    #[error("config {path}: {message}")]
    Invalid {
        /// The config file.
        path: String,
        /// What.
        message: String,
    },
    /// A model key given on the command line does not name a model type
    /// of the config, or does not fit its identifiers.
    #[error("{message}")]
    Key {
        /// What is wrong, naming the type and the key.
        message: String,
    },
    /// A system cannot be opened.
    #[error("system {name:?}")]
    Open {
        /// The system's name in the config.
        name: String,
        /// Why.
        source: Box<diffsync_adapters::AdapterError>,
    },
    /// A peer system cannot be reached, or refused this side.
    #[error("system {name:?}: the peer cannot be reached")]
    Peer {
        /// The system's name in the config.
        name: String,
        /// Why.
        source: diffsync::BoxError,
    },
    /// The journal cannot be opened.
    #[error("journal {path}")]
    Journal {
        /// Where it is.
        path: String,
        /// Why.
        source: Box<diffsync_journal::JournalError>,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    journal: Option<PathBuf>,
    journal_postgres: Option<String>,
    #[serde(default)]
    models: Vec<ModelSchema>,
    #[serde(default)]
    systems: indexmap::IndexMap<String, SystemConfig>,
}

/// Where one system is: exactly one of these.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SystemConfig {
    file: Option<PathBuf>,
    sqlite: Option<PathBuf>,
    postgres: Option<String>,
    redis: Option<String>,
    namespace: Option<String>,
    /// A remote diffsync peer's URL (`https://host:port`, `quic://...`).
    peer: Option<String>,
    /// The peer's TLS certificate (DER), which the connection trusts.
    certificate: Option<PathBuf>,
    /// The peer's Ed25519 public key, pinned.
    key: Option<String>,
    /// This side's state directory (its key pair, what the peer knows).
    state: Option<PathBuf>,
    /// The name the peer's certificate is for (default: the URL's host).
    tls_name: Option<String>,
    /// A PostgreSQL system's rows' hashes kept in columns of its tables
    /// (`keep_row_hashes`), which its range diffs read.
    #[serde(default)]
    keep_hashes: bool,
}

/// A remote diffsync peer, as the config names it.
struct PeerPlace {
    url: String,
    certificate: PathBuf,
    key: diffsync_peer::identity::PublicKey,
    state: PathBuf,
    tls_name: String,
}

/// How the command line reaches a peer (HTTP/2 or QUIC, by its URL).
type PeerWire = Box<dyn diffsync_peer::transport::Transport + Send>;

/// Where a system is, checked.
enum Where {
    File(PathBuf),
    Sqlite(PathBuf),
    /// Connection parameters, and whether its row hashes are kept.
    Postgres(String, bool),
    /// A Redis URL and the namespace.
    Redis(String, String),
    /// A remote diffsync peer.
    Peer(PeerPlace),
}

/// Where the journal is.
enum JournalAt {
    /// An SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL database (connection parameters), shared by a team.
    Postgres(String),
}

/// A config, read and checked.
pub struct Config {
    path: String,
    dir: PathBuf,
    journal: JournalAt,
    registry: Registry,
    systems: indexmap::IndexMap<String, Where>,
}

impl Config {
    /// Reads and checks the config at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: shown.clone(),
            source,
        })?;
        let parse = |message: String| ConfigError::Parse {
            path: shown.clone(),
            message,
        };
        let file: File = match path.extension().and_then(|e| e.to_str()) {
            Some("yaml" | "yml") => serde_saphyr::from_str(&text).map_err(|e| parse(e.to_string()))?,
            _ => toml::from_str(&text).map_err(|e| parse(e.to_string()))?,
        };
        let invalid = |message: String| ConfigError::Invalid {
            path: shown.clone(),
            message,
        };
        let names: Vec<&str> = file.models.iter().map(|m| m.name.as_ref()).collect();
        let mut registry = Registry::new();
        for model in &file.models {
            for child in model.children.iter() {
                if !names.contains(&child.as_ref()) {
                    return Err(invalid(format!(
                        "model {:?} lists the child type {child:?}, which no model defines (models: {})",
                        model.name,
                        names.join(", ")
                    )));
                }
            }
            registry = registry
                .with_schema(Arc::new(model.clone()))
                .map_err(|e| invalid(diffsync::Chain(&e).to_string()))?;
        }
        let mut systems = indexmap::IndexMap::new();
        for (name, system) in file.systems {
            let SystemConfig {
                file,
                sqlite,
                postgres,
                redis,
                namespace,
                peer,
                certificate,
                key,
                state,
                tls_name,
                keep_hashes,
            } = system;
            if keep_hashes && postgres.is_none() {
                return Err(invalid(format!(
                    "system {name:?}: keep_hashes is for a postgres system only"
                )));
            }
            if namespace.is_some() && redis.is_none() {
                return Err(invalid(format!(
                    "system {name:?}: namespace is for a redis system only"
                )));
            }
            let peer_fields = certificate.is_some() || key.is_some() || state.is_some() || tls_name.is_some();
            if peer_fields && peer.is_none() {
                return Err(invalid(format!(
                    "system {name:?}: certificate, key, state and tls_name are for a peer system only"
                )));
            }
            let place = match (file, sqlite, postgres, redis, peer) {
                (Some(file), None, None, None, None) => Where::File(file),
                (None, Some(db), None, None, None) => Where::Sqlite(db),
                (None, None, Some(params), None, None) => Where::Postgres(params, keep_hashes),
                (None, None, None, Some(url), None) => Where::Redis(url, namespace.unwrap_or_else(|| name.clone())),
                (None, None, None, None, Some(url)) => {
                    let need = |field: &str| invalid(format!("system {name:?}: a peer needs {field}"));
                    let key = key.ok_or_else(|| need("key (its public key, pinned)"))?;
                    let key = key
                        .parse()
                        .map_err(|e| invalid(format!("system {name:?}: key {key:?}: {e}")))?;
                    let tls_name = match tls_name {
                        Some(n) => n,
                        None => {
                            url_host(&url).ok_or_else(|| invalid(format!("system {name:?}: {url:?} names no host")))?
                        }
                    };
                    Where::Peer(PeerPlace {
                        certificate: certificate.ok_or_else(|| need("certificate (its TLS certificate, DER)"))?,
                        state: state.ok_or_else(|| need("state (this side's state directory)"))?,
                        key,
                        tls_name,
                        url,
                    })
                }
                _ => {
                    return Err(invalid(format!(
                        "system {name:?} needs exactly one of file, sqlite, postgres, redis, peer"
                    )));
                }
            };
            systems.insert(name, place);
        }
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let journal = match (file.journal, file.journal_postgres) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "journal and journal_postgres name two journals: give one".into(),
                ));
            }
            (None, Some(params)) => JournalAt::Postgres(params),
            (path, None) => JournalAt::Sqlite(dir.join(path.unwrap_or_else(|| "diffsync-journal.db".into()))),
        };
        Ok(Config {
            path: shown,
            dir,
            journal,
            registry,
            systems,
        })
    }

    /// The tables of the system `name` for a diff by ranges
    /// ([`diffsync_adapters::ranges`]), when it is an SQL database
    /// (`None`: it is not).
    pub fn range_tables(&self, name: &str) -> Result<Option<diffsync_adapters::ranges::SqlTables>, ConfigError> {
        self.sql_tables(name, true)
    }

    /// [`range_tables`](Self::range_tables); a PostgreSQL system's row
    /// hashes are kept first (as its config says) only when `may_write`.
    fn sql_tables(
        &self,
        name: &str,
        may_write: bool,
    ) -> Result<Option<diffsync_adapters::ranges::SqlTables>, ConfigError> {
        use diffsync_adapters::ranges::SqlTables;
        let (system, opened) = (self.place(name)?, open_error(name));
        let registry = self.registry.clone();
        Ok(match system {
            Where::Sqlite(db) => Some(SqlTables::sqlite(name, self.dir.join(db), registry).map_err(opened)?),
            Where::Postgres(params, keep) => {
                if *keep && may_write {
                    // One query a table once they are kept.
                    diffsync_adapters::postgres::keep_row_hashes(params, &registry).map_err(&opened)?;
                }
                Some(SqlTables::postgres(name, params, registry).map_err(opened)?)
            }
            Where::File(_) | Where::Redis(..) | Where::Peer(_) => None,
        })
    }

    /// The system `name`, loaded, as one side of a range diff against a
    /// database ([`SqlTables::memory`](diffsync_adapters::ranges::SqlTables::memory)).
    pub fn memory_tables(&self, name: &str) -> Result<diffsync_adapters::ranges::SqlTables, ConfigError> {
        let system = self.open(name)?;
        diffsync_adapters::ranges::SqlTables::memory(name, system.local(), self.registry.clone())
            .map_err(open_error(name))
    }

    /// Whether the system `name` can be read as the config says, without
    /// writing to it: a database's tables and their columns (read-only),
    /// a file parsed, a Redis store reached. `Ok(note)`: what was found.
    pub fn check(&self, name: &str) -> Result<String, ConfigError> {
        let system = self.place(name)?;
        match system {
            Where::Sqlite(db) if !self.dir.join(db).exists() => Ok("not made yet (a sync creates it)".into()),
            Where::File(file) if !self.dir.join(file).exists() => {
                Ok("no such file yet (sync --create-target makes it)".into())
            }
            Where::Sqlite(_) | Where::Postgres(..) => {
                // Read only: a system whose hashes are to be kept is not
                // changed by a check.
                self.sql_tables(name, false)?;
                Ok(format!(
                    "tables of {} model types, as declared",
                    self.registry.names().len()
                ))
            }
            Where::File(_) | Where::Redis(..) => Ok(format!("{} models read", self.open(name)?.local().count_all())),
            Where::Peer(_) => Ok(format!("{} models pulled", self.open(name)?.local().count_all())),
        }
    }

    /// Opens the SQL system `name` on `image` (a range diff's image of
    /// it) without loading the rest; `None` for a system of another kind.
    pub fn open_image(&self, name: &str, image: LocalStore) -> Result<Option<System>, ConfigError> {
        let (system, opened) = (self.place(name)?, open_error(name));
        let registry = self.registry.clone();
        Ok(match system {
            Where::Sqlite(db) => Some(System::Local(Box::new(
                diffsync_adapters::sqlite::SqliteAdapter::open_image(name, self.dir.join(db), registry, image)
                    .map_err(opened)?,
            ))),
            Where::Postgres(params, _) => Some(System::Local(Box::new(
                diffsync_adapters::postgres::PostgresAdapter::connect_image(name, params, registry, image)
                    .map_err(opened)?,
            ))),
            Where::File(_) | Where::Redis(..) | Where::Peer(_) => None,
        })
    }

    /// The schema of the model type `model_type`, or an error naming the
    /// config's types.
    pub fn key_type(&self, model_type: &str) -> Result<&diffsync::ModelSchema, ConfigError> {
        self.registry
            .schemas()
            .find(|s| s.name == model_type)
            .ok_or_else(|| ConfigError::Key {
                message: format!(
                    "no model type {model_type:?} in the config (types: {})",
                    self.model_types().join(", ")
                ),
            })
    }

    /// Opens the system the config names `name`.
    pub fn open(&self, name: &str) -> Result<System, ConfigError> {
        self.open_target(name, false)
    }

    /// Opens the system `name` to be written; with `create`, a file that
    /// does not exist yet is an empty system (written at the sync's end).
    pub fn open_target(&self, name: &str, create: bool) -> Result<System, ConfigError> {
        let (system, opened) = (self.place(name)?, open_error(name));
        let registry = self.registry.clone();
        Ok(match system {
            Where::File(file) => {
                let path = self.dir.join(file);
                let format = self.format_of(name, &path)?;
                let file = if create {
                    FileAdapter::open_or_empty(name, path, format, registry)
                } else {
                    FileAdapter::open(name, path, format, registry)
                };
                System::Local(Box::new(file.map_err(opened)?))
            }
            Where::Sqlite(db) => System::Local(Box::new(
                diffsync_adapters::sqlite::SqliteAdapter::open(name, self.dir.join(db), registry).map_err(opened)?,
            )),
            Where::Postgres(params, _) => System::Local(Box::new(
                diffsync_adapters::postgres::PostgresAdapter::connect(name, params, registry).map_err(opened)?,
            )),
            Where::Redis(url, namespace) => System::Redis(Box::new(self.redis(name, url, namespace)?)),
            Where::Peer(place) => System::Local(Box::new(self.peer(name, place)?)),
        })
    }

    /// Opens the system the config names `name` with a feed of its changes
    /// (by any writer) for `consumer`: a file is watched; a database's
    /// feed is durable, resuming after what `consumer` last handled.
    pub fn open_with_feed(&self, name: &str, consumer: &str) -> Result<(System, Feed), ConfigError> {
        let (opened, registry) = (open_error(name), self.registry.clone());
        match self.systems.get(name) {
            None => Err(self.unknown(name)),
            Some(Where::File(file)) => {
                let path = self.dir.join(file);
                let format = self.format_of(name, &path)?;
                let file = FileAdapter::open(name, path, format, registry).map_err(opened)?;
                let feed = file.change_feed().map_err(opened)?;
                Ok((System::Local(Box::new(file)), Box::new(feed)))
            }
            Some(Where::Sqlite(db)) => {
                let mut db = diffsync_adapters::sqlite::SqliteAdapter::open(name, self.dir.join(db), registry)
                    .map_err(opened)?;
                db.enable_change_feed().map_err(opened)?;
                let feed = db.change_feed(consumer).map_err(opened)?;
                Ok((System::Local(Box::new(db)), Box::new(feed)))
            }
            Some(Where::Postgres(params, _)) => {
                let mut db =
                    diffsync_adapters::postgres::PostgresAdapter::connect(name, params, registry).map_err(opened)?;
                db.enable_change_feed().map_err(opened)?;
                let feed = db.change_feed(consumer).map_err(opened)?;
                Ok((System::Local(Box::new(db)), Box::new(feed)))
            }
            Some(Where::Peer(place)) => {
                // The changes come on a session of their own (the peer
                // relays them when it serves with a feed).
                let feed = diffsync_peer::PeerFeed::new(self.connect_peer(name, place)?);
                Ok((System::Local(Box::new(self.peer(name, place)?)), Box::new(feed)))
            }
            Some(Where::Redis(url, namespace)) => {
                let redis = self.redis(name, url, namespace)?;
                let feed = redis.store.change_feed(consumer).map_err(opened)?;
                Ok((System::Redis(Box::new(redis)), Box::new(feed)))
            }
        }
    }

    /// The remote peer `place` as the system `name`: connected with this
    /// side's key pair (made on first use in its state directory), the
    /// peer's certificate trusted and its key pinned, and pulled (its
    /// image is its store as it is now). A sync into it pushes.
    fn peer(&self, name: &str, place: &PeerPlace) -> Result<diffsync_peer::RemotePeer<PeerWire>, ConfigError> {
        let mut peer = self.connect_peer(name, place)?;
        peer.pull().map_err(|e| ConfigError::Peer {
            name: name.to_string(),
            source: e.into(),
        })?;
        Ok(peer)
    }

    /// The remote peer `place`, connected (a session of its own), not
    /// pulled.
    fn connect_peer(&self, name: &str, place: &PeerPlace) -> Result<diffsync_peer::RemotePeer<PeerWire>, ConfigError> {
        let opened = |e: diffsync::BoxError| ConfigError::Peer {
            name: name.to_string(),
            source: e,
        };
        let path = self.dir.join(&place.certificate);
        let certificate = std::fs::read(&path)
            .map_err(|e| opened(format!("certificate {}: {e}", path.display()).into()))?
            .into();
        let state = diffsync_peer::state::StateDir::open(self.dir.join(&place.state)).map_err(|e| opened(e.into()))?;
        let identity = state.identity().map_err(|e| opened(e.into()))?;
        let mut image = LocalStore::new(name);
        self.registry.register_all(&mut image).map_err(open_error(name))?;
        let wire = diffsync_peer::socket::dial(
            &place.url,
            &place.tls_name,
            &[certificate],
            diffsync_peer::http::HttpOptions::default(),
        )
        .map_err(|e| opened(e.into()))?;
        diffsync_peer::RemotePeer::connect_pinned(name, image, wire, identity, place.key).map_err(|e| opened(e.into()))
    }

    /// The Redis namespace `namespace` at `url`, as the system `name`.
    fn redis(&self, name: &str, url: &str, namespace: &str) -> Result<StoreAdapter<RedisStore>, ConfigError> {
        let store = RedisStore::open(url, namespace, self.registry.clone()).map_err(|source| ConfigError::Open {
            name: name.to_string(),
            source: Box::new(source),
        })?;
        Ok(StoreAdapter::with_store(name, &self.registry.top_level(), store))
    }

    /// The systems, by name, each with what it is, in words that hold no
    /// secret (a database's connection string is not shown).
    pub fn systems(&self) -> impl Iterator<Item = (&str, String)> {
        self.systems.iter().map(|(name, place)| {
            let what = match place {
                Where::File(file) => format!("file {}", file.display()),
                Where::Sqlite(db) => format!("SQLite {}", db.display()),
                Where::Postgres(..) => "PostgreSQL".to_string(),
                Where::Redis(_, namespace) => format!("Redis, namespace {namespace}"),
                Where::Peer(p) => format!("peer {} (key {})", p.url, p.key),
            };
            (name.as_str(), what)
        })
    }

    /// The model types the config describes.
    pub fn model_types(&self) -> Vec<&str> {
        self.registry.schemas().map(|s| s.name.as_ref()).collect()
    }

    /// The key of a model of `model_type` from its text as diffsync prints
    /// it (`nyc__r1`, `nyc__"100"`, `device:nyc__r1`), read against the
    /// type's identifiers: a type the config does not define, or text that
    /// does not fit, is an error naming both.
    pub fn key(&self, model_type: &str, text: &str) -> Result<diffsync::ModelKey, ConfigError> {
        let schema = self.key_type(model_type)?;
        schema
            .parse_key(text)
            .map_err(|e| ConfigError::Key { message: e.to_string() })
    }

    /// Where the system `name` is, or an error naming the config's systems.
    fn place(&self, name: &str) -> Result<&Where, ConfigError> {
        self.systems.get(name).ok_or_else(|| self.unknown(name))
    }

    fn unknown(&self, name: &str) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.clone(),
            message: format!(
                "no system named {name:?} (systems: {})",
                self.systems.keys().map(String::as_str).collect::<Vec<_>>().join(", ")
            ),
        }
    }

    fn format_of(&self, name: &str, path: &Path) -> Result<Format, ConfigError> {
        Format::from_path(path).ok_or_else(|| ConfigError::Invalid {
            path: self.path.clone(),
            message: format!(
                "system {name:?}: {} is not .json, .yaml, .toml or a CSV directory",
                path.display()
            ),
        })
    }

    /// Where the base of a two-way reconcile of `left` and `right` is kept:
    /// beside the config, one file per pair.
    pub fn base_path(&self, left: &str, right: &str) -> PathBuf {
        self.dir.join(format!("{left}--{right}.base"))
    }

    /// Opens the journal.
    pub fn journal(&self) -> Result<Journal, ConfigError> {
        let (opened, path) = match &self.journal {
            JournalAt::Sqlite(path) => (Journal::open(path), path.display().to_string()),
            JournalAt::Postgres(params) => (Journal::connect_postgres(params), where_postgres(params)),
        };
        opened.map_err(|source| ConfigError::Journal {
            path,
            source: Box::new(source),
        })
    }
}

/// What a system named `name` that cannot be opened is.
fn open_error(name: &str) -> impl Fn(diffsync_adapters::AdapterError) -> ConfigError + Copy + '_ {
    move |source| ConfigError::Open {
        name: name.to_string(),
        source: Box::new(source),
    }
}

/// Where a PostgreSQL database is, from its connection parameters (no
/// password).
fn where_postgres(params: &str) -> String {
    let field = |name: &str| {
        params
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
            .unwrap_or("?")
    };
    format!("postgres://{}:{}/{}", field("host"), field("port"), field("dbname"))
}

/// The host of a peer's URL (`https://host:port`, `quic://[::1]:port`, a
/// bare `host:port`).
fn url_host(url: &str) -> Option<String> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next()?;
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next()?,
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    (!host.is_empty()).then(|| host.to_string())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_peers_host_is_read_from_its_url() {
        use super::url_host;
        assert_eq!(url_host("https://hq.example:7443").as_deref(), Some("hq.example"));
        assert_eq!(url_host("quic://[::1]:7443").as_deref(), Some("::1"));
        assert_eq!(url_host("127.0.0.1:7443").as_deref(), Some("127.0.0.1"));
        assert_eq!(url_host("https://:7443"), None);
    }

    #[test]
    fn any_text_as_a_peers_url_gives_a_host_from_it_or_none() {
        use super::url_host;
        let alphabet: Vec<char> = "hq.:/[]@1 ".chars().collect();
        each_seed("a peer's url", |rng| {
            let url: String = (0..rng.usize(..24))
                .map(|_| alphabet[rng.usize(..alphabet.len())])
                .collect();
            if let Some(host) = url_host(&url) {
                assert!(!host.is_empty() && url.contains(&host), "{url:?} -> {host:?}");
            }
        });
    }

    use diffsync_tests::fuzz::{each_seed, mutate_bytes, mutate_json};

    use super::Config;

    const CONFIG: &str = r#"
journal = "runs.db"

[[models]]
name = "site"
identifiers = [{ name = "name", kind = "string" }]
attributes = [{ name = "region", kind = "string", optional = true }]
children = ["device"]

[[models]]
name = "device"
identifiers = [{ name = "name", kind = "string" }]
attributes = [{ name = "role", kind = "string" }, { name = "ports", kind = "list" }]

[systems.cmdb]
file = "cmdb.json"

[systems.network]
sqlite = "network.db"

[systems.cache]
redis = "redis://127.0.0.1:1/"
namespace = "inv"
"#;

    /// Config files mutated as TOML trees, as YAML, and byte by byte: each
    /// read (a typed error or a config), and a config that reads opens its
    /// file and SQLite systems or says why not.
    #[test]
    fn config_files_read_or_fail_typed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("cmdb.json"),
            r#"{"site": [{"name": "nyc", "device": [{"name": "r1", "role": "edge", "ports": []}]}]}"#,
        )
        .unwrap();
        let tree: serde_json::Value = toml::from_str(CONFIG).unwrap();
        each_seed("a config file", |rng| {
            let (name, text) = match rng.u8(..3) {
                0 => ("fuzz.toml", mutate_bytes(rng, CONFIG.as_bytes())),
                1 => {
                    let mut doc = tree.clone();
                    mutate_json(rng, &mut doc);
                    // A tree TOML cannot hold (a null) is a config no one writes.
                    let Ok(text) = toml::to_string(&doc) else { return };
                    ("fuzz.toml", text.into_bytes())
                }
                _ => {
                    let mut doc = tree.clone();
                    mutate_json(rng, &mut doc);
                    ("fuzz.yaml", serde_json::to_vec(&doc).unwrap())
                }
            };
            let path = dir.path().join(name);
            std::fs::write(&path, &text).unwrap();
            if let Ok(config) = Config::load(&path) {
                for system in ["cmdb", "network"] {
                    let _ = config.open(system);
                }
                let _ = config.model_types();
            }
        });
    }
}
