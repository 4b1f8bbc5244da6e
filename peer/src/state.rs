//! What a replica keeps about its peers across restarts, in a directory:
//! its own key pair (made on first use), the peers it allows, and per peer
//! it talks to a record — address, pinned key, feed cursor, last sync and
//! its result, and the queue of batches sent but not yet answered.
//!
//! ```text
//! <dir>/identity.pk8        this replica's key pair (PKCS#8, owner-only)
//! <dir>/allowed             peers allowed to call this replica, one a line:
//!                           <name> <public key> read|read-write [type,type]
//! <dir>/peers/<name>.json   a peer this replica calls (KnownPeer)
//! <dir>/peers/<name>.base   the two-way base with that peer (bidir::Base)
//! ```
//!
//! Files are replaced whole (written aside, synced, renamed), so a crash
//! leaves the old record or the new one, never half of one.
//!
//! ```
//! use diffsync_peer::state::StateDir;
//!
//! let dir = std::env::temp_dir().join(format!("diffsync-state-doc-{}", std::process::id()));
//! let state = StateDir::open(&dir).unwrap();
//! let me = state.identity().unwrap(); // made on first use
//! assert_eq!(state.identity().unwrap().public_key(), me.public_key());
//! let mut hq = state.peer("hq").unwrap();
//! hq.address = Some("10.0.0.1:7443".into());
//! hq.save().unwrap();
//! assert_eq!(state.peer("hq").unwrap().address.as_deref(), Some("10.0.0.1:7443"));
//! # std::fs::remove_dir_all(&dir).unwrap();
//! ```

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::identity::{Identity, Peers, PublicKey, Rights};
use crate::proto::{Cursor, Push};

/// What can go wrong reading or writing peer state.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// A file cannot be read or written.
    #[error("peer state: cannot use {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A file holds something other than what was written there.
    #[error("peer state: {path} is unreadable: {message}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A peer name that cannot be a file name.
    #[error("peer state: {0:?} is not a peer name (letters, digits, '.', '-', '_')")]
    Name(String),
}

/// A replica's directory of peer state.
#[derive(Clone, Debug)]
pub struct StateDir {
    dir: PathBuf,
}

impl StateDir {
    /// The state in `dir`, created if it does not exist.
    pub fn open(dir: impl AsRef<Path>) -> Result<StateDir, StateError> {
        let dir = dir.as_ref().to_path_buf();
        let peers = dir.join("peers");
        std::fs::create_dir_all(&peers).map_err(|source| StateError::Io { path: peers, source })?;
        Ok(StateDir { dir })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// This replica's key pair; made and saved (readable by its owner
    /// only) the first time.
    pub fn identity(&self) -> Result<Identity, StateError> {
        let path = self.dir.join("identity.pk8");
        match std::fs::read(&path) {
            Ok(bytes) => Identity::from_pkcs8(&bytes).map_err(|e| StateError::Corrupt {
                path,
                message: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let identity = Identity::generate();
                replace(&path, &identity.to_pkcs8(), true)?;
                Ok(identity)
            }
            Err(source) => Err(StateError::Io { path, source }),
        }
    }

    /// The peers allowed to call this replica (the `allowed` file; none if
    /// there is no such file).
    pub fn allowed(&self) -> Result<Peers, StateError> {
        let path = self.dir.join("allowed");
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Peers::new()),
            Err(source) => return Err(StateError::Io { path, source }),
        };
        let mut peers = Peers::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let corrupt = |message: String| StateError::Corrupt {
                path: path.clone(),
                message: format!("line {}: {message}", n + 1),
            };
            let mut words = line.split_whitespace();
            let (Some(name), Some(key), Some(access)) = (words.next(), words.next(), words.next()) else {
                return Err(corrupt("expected <name> <public key> read|read-write [types]".into()));
            };
            let key: PublicKey = key
                .parse()
                .map_err(|e: crate::identity::BadKey| corrupt(e.to_string()))?;
            let mut rights = match access {
                "read" => Rights::read(),
                "read-write" => Rights::read_write(),
                other => return Err(corrupt(format!("{other:?} is neither read nor read-write"))),
            };
            if let Some(types) = words.next() {
                rights = rights.only(&types.split(',').collect::<Vec<_>>());
            }
            peers = peers.allow(name, key, rights);
        }
        Ok(peers)
    }

    /// Adds a line to the `allowed` file (or replaces the line of a peer
    /// of that name).
    pub fn allow(&self, name: &str, key: PublicKey, rights: &Rights) -> Result<(), StateError> {
        check_name(name)?;
        let path = self.dir.join("allowed");
        let old = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(source) => return Err(StateError::Io { path, source }),
        };
        let mut text: String = old
            .lines()
            .filter(|l| l.split_whitespace().next() != Some(name))
            .map(|l| format!("{l}\n"))
            .collect();
        let access = if rights.write { "read-write" } else { "read" };
        text.push_str(&format!("{name} {key} {access}"));
        if let Some(types) = &rights.types {
            text.push_str(&format!(" {}", types.join(",")));
        }
        text.push('\n');
        replace(&path, text.as_bytes(), false)
    }

    /// The record of a peer this replica calls: as saved, or a new one.
    pub fn peer(&self, name: &str) -> Result<KnownPeer, StateError> {
        check_name(name)?;
        let path = self.dir.join("peers").join(format!("{name}.json"));
        match std::fs::read(&path) {
            Ok(bytes) => {
                let mut known: KnownPeer = serde_json::from_slice(&bytes).map_err(|e| StateError::Corrupt {
                    path: path.clone(),
                    message: e.to_string(),
                })?;
                known.path = path;
                Ok(known)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(KnownPeer {
                name: name.to_string(),
                address: None,
                key: None,
                cursor: None,
                last: None,
                pending: Vec::new(),
                path,
            }),
            Err(source) => Err(StateError::Io { path, source }),
        }
    }

    /// Every peer with a saved record, by name.
    pub fn known(&self) -> Result<Vec<KnownPeer>, StateError> {
        let dir = self.dir.join("peers");
        let entries = std::fs::read_dir(&dir).map_err(|source| StateError::Io { path: dir, source })?;
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                name.strip_suffix(".json").map(str::to_string)
            })
            .collect();
        names.sort();
        names.iter().map(|n| self.peer(n)).collect()
    }

    /// Where the two-way base with a peer is kept (for
    /// [`Base::save`](diffsync::bidir::Base::save) and `load`).
    pub fn base_path(&self, name: &str) -> Result<PathBuf, StateError> {
        check_name(name)?;
        Ok(self.dir.join("peers").join(format!("{name}.base")))
    }
}

/// A peer this replica calls, as remembered between runs.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KnownPeer {
    /// Its name (the record's file name).
    pub name: String,
    /// Where it is reached (for whoever makes the transport).
    pub address: Option<String>,
    /// Its key: set by hand, or pinned the first time it answered; a
    /// server with another key is refused from then on.
    #[serde(with = "hex_key")]
    pub key: Option<PublicKey>,
    /// Where following its change events left off.
    pub cursor: Option<Cursor>,
    /// The last pull or push and how it ended.
    pub last: Option<LastSync>,
    /// Batches sent and not answered yet, oldest first: sent again (same
    /// ids) before anything else the next time.
    pending: Vec<Push>,
    #[serde(skip)]
    path: PathBuf,
}

impl KnownPeer {
    /// Writes the record (whole, atomically).
    pub fn save(&self) -> Result<(), StateError> {
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| StateError::Corrupt {
            path: self.path.clone(),
            message: e.to_string(),
        })?;
        replace(&self.path, &bytes, false)
    }

    /// Batches waiting for an answer.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    pub(crate) fn pending_batches(&self) -> &[Push] {
        &self.pending
    }

    /// Changes the record here and on disk: the file is read again and
    /// the change made to it, so two handles on one peer's record (a
    /// [`RemotePeer`](crate::RemotePeer) writing batches, a
    /// [`PeerFeed`](crate::PeerFeed) moving its cursor) keep each other's
    /// fields.
    pub(crate) fn update(&mut self, change: impl Fn(&mut KnownPeer)) -> Result<(), StateError> {
        static WRITING: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _one_at_a_time = WRITING.lock().unwrap_or_else(|p| p.into_inner());
        let mut on_disk = match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| StateError::Corrupt {
                path: self.path.clone(),
                message: e.to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => self.clone(),
            Err(source) => {
                return Err(StateError::Io {
                    path: self.path.clone(),
                    source,
                });
            }
        };
        change(self);
        change(&mut on_disk);
        on_disk.path = self.path.clone();
        on_disk.save()
    }

    pub(crate) fn queue(record: &mut KnownPeer, push: &Push) {
        if !record.pending.iter().any(|p| p.batch == push.batch) {
            record.pending.push(push.clone());
        }
    }

    pub(crate) fn answered(record: &mut KnownPeer, batch: u64) {
        record.pending.retain(|p| p.batch != batch);
    }
}

/// How the last exchange with a peer ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastSync {
    /// When, in seconds since the Unix epoch.
    pub at: u64,
    /// Whether it completed.
    pub ok: bool,
    /// What it did, or why it failed.
    pub summary: String,
}

impl LastSync {
    pub(crate) fn now(ok: bool, summary: String) -> LastSync {
        let at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        LastSync { at, ok, summary }
    }
}

fn check_name(name: &str) -> Result<(), StateError> {
    let ok = !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if ok { Ok(()) } else { Err(StateError::Name(name.into())) }
}

/// Replaces a file whole: written aside, synced, renamed over the old one.
fn replace(path: &Path, bytes: &[u8], secret: bool) -> Result<(), StateError> {
    let io = |source| StateError::Io {
        path: path.to_path_buf(),
        source,
    };
    let aside = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if secret {
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    }
    #[cfg(not(unix))]
    let _ = secret;
    let mut file = options.open(&aside).map_err(io)?;
    file.write_all(bytes).map_err(io)?;
    file.sync_all().map_err(io)?;
    std::fs::rename(&aside, path).map_err(io)?;
    if let Some(dir) = path.parent()
        && let Ok(dir) = std::fs::File::open(dir)
    {
        // The rename is durable once the directory is; not every platform
        // can sync a directory, and the file itself is already synced.
        let _ = dir.sync_all();
    }
    Ok(())
}

/// A key as 64 hex digits in the record, not an array of numbers.
mod hex_key {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::identity::PublicKey;

    pub fn serialize<S: Serializer>(key: &Option<PublicKey>, s: S) -> Result<S::Ok, S::Error> {
        match key {
            Some(k) => s.serialize_some(&k.to_string()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PublicKey>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|hex| hex.parse().map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("diffsync-state-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn the_identity_is_made_once_and_kept_private() {
        let dir = temp("identity");
        let state = StateDir::open(&dir).unwrap();
        let first = state.identity().unwrap();
        assert_eq!(
            StateDir::open(&dir).unwrap().identity().unwrap().public_key(),
            first.public_key()
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join("identity.pk8"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "{mode:o}");
        }
        std::fs::write(dir.join("identity.pk8"), b"not a key").unwrap();
        assert!(matches!(state.identity(), Err(StateError::Corrupt { .. })));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn allowed_peers_round_trip_and_a_bad_line_is_named() {
        let dir = temp("allowed");
        let state = StateDir::open(&dir).unwrap();
        let (a, b) = (Identity::generate().public_key(), Identity::generate().public_key());
        state
            .allow("branch", a, &Rights::read().only(&["site", "device"]))
            .unwrap();
        state.allow("edge", b, &Rights::read_write()).unwrap();
        state.allow("branch", a, &Rights::read()).unwrap();
        let peers = state.allowed().unwrap();
        assert_eq!(peers.get(&a), Some(&("branch".to_string(), Rights::read())));
        assert_eq!(peers.get(&b), Some(&("edge".to_string(), Rights::read_write())));
        std::fs::write(
            dir.join("allowed"),
            format!("branch {a} read site,device\nedge {b} admin\n"),
        )
        .unwrap();
        let err = state.allowed().unwrap_err().to_string();
        assert!(err.contains("line 2") && err.contains("admin"), "{err}");
        std::fs::write(dir.join("allowed"), format!("branch {a} read site,device\n")).unwrap();
        let peers = state.allowed().unwrap();
        assert_eq!(peers.get(&a).unwrap().1, Rights::read().only(&["site", "device"]));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_record_survives_a_reopen_and_names_that_are_paths_are_refused() {
        let dir = temp("record");
        let state = StateDir::open(&dir).unwrap();
        let mut hq = state.peer("hq").unwrap();
        hq.key = Some(Identity::generate().public_key());
        hq.cursor = Some(Cursor { epoch: 7, seq: 42 });
        hq.last = Some(LastSync::now(false, "the transport failed".into()));
        hq.save().unwrap();
        let push = Push {
            batch: 9,
            continue_on_failure: true,
            changes: Vec::new(),
        };
        // Another handle on the same record moves the cursor; the first
        // queues a batch: each keeps the other's change.
        let mut other = state.peer("hq").unwrap();
        other.update(|k| k.cursor = Some(Cursor { epoch: 7, seq: 43 })).unwrap();
        hq.update(|k| KnownPeer::queue(k, &push)).unwrap();
        hq.cursor = Some(Cursor { epoch: 7, seq: 43 });
        let again = StateDir::open(&dir).unwrap().peer("hq").unwrap();
        assert_eq!((again.key, again.cursor, &again.last), (hq.key, hq.cursor, &hq.last));
        assert_eq!(again.pending_batches(), [push]);
        assert_eq!(state.known().unwrap().len(), 1);
        for bad in ["../etc", "a/b", "", ".hidden"] {
            assert!(matches!(state.peer(bad), Err(StateError::Name(_))), "{bad}");
        }
        std::fs::write(dir.join("peers/hq.json"), b"{").unwrap();
        assert!(matches!(state.peer("hq"), Err(StateError::Corrupt { .. })));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
