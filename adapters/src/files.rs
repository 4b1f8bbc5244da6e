//! Files: JSON, YAML and TOML documents (nested: records hold their children
//! under the child type's name) and CSV (one file per model type, children
//! name their parent in a `_parent` column).
//!
//! A nested document lists the top-level types, each record holding its
//! children's list under the child type's name:
//!
//! ```yaml
//! site:
//!   - name: nyc
//!     region: east
//!     device:
//!       - name: nyc-r1
//!         role: edge
//!         interface:
//!           - name: eth0        # "device: nyc-r1" comes from the nesting
//!             mtu: 1500
//! ```
//!
//! A child's identifier named after its parent type (`device`, for a parent
//! with one identifier) or `<parent type>_<identifier>` (`device_name`) is
//! its link to the parent: taken from the nesting when absent, an error
//! when it names another parent (in CSV, the parent is the `_parent` cell).
//!
//! Loading is strict and all or nothing: invalid UTF-8, a duplicate key, an
//! unknown type or field (a typo in a child list's name is one), a child
//! type at the top level, a missing identifier, a CSV child without its
//! `_parent`, a duplicate column or an unclosed quoted cell is an error
//! naming the file, line and the model, key and field at fault.
//!
//! A sync into a [`FileAdapter`] rewrites its file(s) in `sync_complete`:
//! temporary files in the same directory, then renames, so a failure leaves
//! the old content intact; a CSV directory is replaced all or nothing. A
//! rewritten file keeps its permissions (and owner and group, where the
//! process may set them). It does not keep what is not data: comments,
//! key order, quoting, indentation and blank lines of a hand-kept YAML,
//! TOML or JSON file are lost in a rewrite (it is written as the adapter
//! lays it out). A sync that applies nothing to the file does not rewrite
//! it, so a hand-kept file under two-way sync changes only when its data does.

use std::io::Write;
use std::path::{Path, PathBuf};

use diffsync::{Adapter, Diff, HookError, LocalStore, Sink, SyncReport, ValueKind};
use serde_json::{Map, Value};

use crate::document;
use crate::error::{AdapterError, Result};
use crate::registry::{self, PARENT_KEY, Registry};

/// A file format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// JSON document.
    Json,
    /// YAML document.
    Yaml,
    /// TOML document (`null` values are left out).
    Toml,
    /// A directory with one `<model type>.csv` per type.
    Csv,
}

impl Format {
    /// The format for a path: by extension, and CSV for a directory or `.csv`.
    pub fn from_path(path: &Path) -> Option<Format> {
        match path.extension().and_then(|e| e.to_str()) {
            Some("json") => Some(Format::Json),
            Some("yaml" | "yml") => Some(Format::Yaml),
            Some("toml") => Some(Format::Toml),
            Some("csv") => Some(Format::Csv),
            None if path.is_dir() => Some(Format::Csv),
            _ => None,
        }
    }
}

/// An adapter over a file (or, for CSV, a directory of files).
///
/// ```
/// use diffsync::{AdapterExt, DiffModel};
/// use diffsync_adapters::{FileAdapter, Format, Registry};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(DiffModel, Clone, Debug, PartialEq, Serialize, Deserialize)]
/// #[diffsync(name = "site")]
/// struct Site { #[diffsync(id)] name: String, region: String }
///
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("sites.json");
/// std::fs::write(&path, r#"{"site": [{"name": "nyc", "region": "east"}]}"#)?;
/// let registry = Registry::new().with::<Site>();
/// let source = FileAdapter::open("cmdb", &path, Format::Json, registry.clone())?;
/// // A target that does not exist yet: opened as an empty system on purpose.
/// let mut copy = FileAdapter::open_or_empty("copy", dir.path().join("copy.yaml"), Format::Yaml, registry)?;
/// copy.sync_from(&source)?;
/// assert!(std::fs::read_to_string(dir.path().join("copy.yaml"))?.contains("region: east"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct FileAdapter {
    name: String,
    path: PathBuf,
    format: Format,
    registry: Registry,
    store: LocalStore,
    /// A missing file (or CSV directory) is an empty system rather than an error.
    missing_is_empty: bool,
}

impl FileAdapter {
    /// Opens `path` and loads it. A missing file (or CSV directory) is
    /// [`AdapterError::NotFound`]: a mistyped path must not read as an
    /// empty system, which a sync would take as "delete everything". Open
    /// a target that is to be created with [`open_or_empty`](Self::open_or_empty).
    pub fn open(name: &str, path: impl Into<PathBuf>, format: Format, registry: Registry) -> Result<Self> {
        Self::open_with(name, path.into(), format, registry, false)
    }

    /// Opens `path` like [`open`](Self::open), but a missing file (or CSV
    /// directory) is an empty system: for a target the first sync creates.
    /// Re-reads ([`Adapter::refresh`]) keep that choice.
    pub fn open_or_empty(name: &str, path: impl Into<PathBuf>, format: Format, registry: Registry) -> Result<Self> {
        Self::open_with(name, path.into(), format, registry, true)
    }

    fn open_with(
        name: &str,
        path: PathBuf,
        format: Format,
        registry: Registry,
        missing_is_empty: bool,
    ) -> Result<Self> {
        let mut store = LocalStore::new(name);
        registry.register_all(&mut store)?;
        let mut a = FileAdapter {
            name: name.to_string(),
            path,
            format,
            registry,
            store,
            missing_is_empty,
        };
        a.load_file()?;
        Ok(a)
    }

    /// The same adapter opened again: the file as it is now.
    fn reopen(&self) -> Result<FileAdapter> {
        Self::open_with(
            &self.name,
            self.path.clone(),
            self.format,
            self.registry.clone(),
            self.missing_is_empty,
        )
    }

    /// A missing file is an empty system only when asked for.
    fn missing(&self) -> Result<()> {
        if self.missing_is_empty {
            Ok(())
        } else {
            Err(AdapterError::NotFound { path: self.origin() })
        }
    }

    /// The path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn origin(&self) -> String {
        self.path.display().to_string()
    }

    fn load_file(&mut self) -> Result<()> {
        if self.format == Format::Csv {
            return self.load_csv();
        }
        let Some(text) = read_text(&self.path)? else {
            return self.missing();
        };
        let origin = self.origin();
        let doc = document::parse(&text, self.format, &origin)?;
        document::load(&self.registry, &mut self.store, doc, &text, self.format, &origin)
    }

    fn load_csv(&mut self) -> Result<()> {
        if !self.path.exists() {
            return self.missing();
        }
        if !self.path.is_dir() {
            return Err(AdapterError::Format {
                origin: self.origin(),
                message: "is a file: the CSV format reads a directory holding one <model type>.csv per type".into(),
            });
        }
        let mut staged = self.store.clone();
        for model_type in self.registry.load_order() {
            let file = self.path.join(format!("{model_type}.csv"));
            let Some(text) = read_text(&file)? else { continue };
            load_csv_file(&self.registry, &mut staged, model_type, &file, &text)?;
        }
        self.store = staged;
        Ok(())
    }

    /// Writes the store to the file(s): all or nothing.
    pub fn save(&self) -> Result<()> {
        if self.format == Format::Csv {
            return self.save_csv();
        }
        let doc = document::dump(&self.registry, &self.store)?;
        let origin = self.origin();
        let text = match self.format {
            Format::Json => serde_json::to_string_pretty(&doc).map_err(|e| format_err(&origin, e))?,
            Format::Yaml => serde_saphyr::to_string(&doc).map_err(|e| format_err(&origin, e))?,
            Format::Toml => toml::to_string_pretty(&without_nulls(doc)).map_err(|e| format_err(&origin, e))?,
            Format::Csv => String::new(),
        };
        write_atomic(&self.path, text.as_bytes())
    }

    /// Every file is written to a temporary file first; only when all are
    /// written are they renamed over the old ones, and if a rename fails
    /// the files already replaced get their old content back.
    fn save_csv(&self) -> Result<()> {
        std::fs::create_dir_all(&self.path).map_err(|e| io(&self.path, e))?;
        let mut staged = Vec::new();
        for (model_type, rows) in registry::flat_records(&self.registry, &self.store)? {
            let file = self.path.join(format!("{model_type}.csv"));
            let bytes = self.csv_bytes(&model_type, &rows, &file)?;
            staged.push((file, temp_file(&self.path, &bytes)?));
        }
        let mut replaced: Vec<(PathBuf, Option<Vec<u8>>)> = Vec::new();
        for (file, tmp) in &staged {
            keep_metadata(file, tmp)?;
        }
        for (file, tmp) in staged {
            let old = std::fs::read(&file).ok();
            if let Err(e) = tmp.persist(&file) {
                for (done, old) in replaced.into_iter().rev() {
                    // Best effort: the error below is what the caller needs.
                    let _ = match old {
                        Some(bytes) => write_atomic(&done, &bytes),
                        None => std::fs::remove_file(&done).map_err(|e| io(&done, e)),
                    };
                }
                return Err(io(&file, e.error));
            }
            replaced.push((file, old));
        }
        Ok(())
    }

    fn csv_bytes(&self, model_type: &str, rows: &[registry::Record], file: &Path) -> Result<Vec<u8>> {
        let mut headers: Vec<String> = Vec::new();
        for row in rows {
            for k in row.keys() {
                if !headers.contains(k) {
                    headers.push(k.clone());
                }
            }
        }
        if headers.is_empty() {
            let schema = self.registry.schema(model_type)?;
            headers = schema
                .identifiers
                .iter()
                .chain(schema.attributes.iter())
                .map(|f| f.name.to_string())
                .collect();
        }
        if self.registry.parent_type(model_type).is_some() && !headers.iter().any(|h| h == PARENT_KEY) {
            headers.push(PARENT_KEY.into());
        }
        let mut w = csv::Writer::from_writer(Vec::new());
        w.write_record(&headers).map_err(|e| csv_error(file, e))?;
        for row in rows {
            let cells = headers.iter().map(|h| match row.get(h) {
                None | Some(Value::Null) => String::new(),
                Some(Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
            });
            w.write_record(cells).map_err(|e| csv_error(file, e))?;
        }
        w.into_inner().map_err(|e| io(file, e.into_error()))
    }
}

/// Reads one CSV file of a type into `store`.
fn load_csv_file(reg: &Registry, store: &mut LocalStore, model_type: &str, file: &Path, text: &str) -> Result<()> {
    let origin = file.display().to_string();
    let parse = |line: usize, column: usize, message: String| AdapterError::Parse {
        path: origin.clone(),
        line,
        column,
        message,
    };
    if let Some((line, column)) = unterminated_quote(text) {
        return Err(parse(line, column, "a quoted cell is not closed".into()));
    }
    let schema = reg.schema(model_type)?;
    let parent_type = reg.parent_type(model_type);
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let headers = reader.headers().map_err(|e| csv_error(file, e))?.clone();
    for (i, h) in headers.iter().enumerate() {
        if headers.iter().take(i).any(|o| o == h) {
            return Err(parse(1, 0, format!("duplicate column {h:?}")));
        }
    }
    if let Some(pt) = parent_type
        && !headers.iter().any(|h| h == PARENT_KEY)
    {
        return Err(parse(
            1,
            0,
            format!("{model_type} is a child type: a {PARENT_KEY:?} column must name each row's {pt}"),
        ));
    }
    for row in reader.records() {
        let row = row.map_err(|e| csv_error(file, e))?;
        let line = row.position().map_or(0, |p| p.line() as usize);
        let mut fields = Map::new();
        let mut parent = None;
        for (name, cell) in headers.iter().zip(row.iter()) {
            if name == PARENT_KEY {
                parent = Some(cell.to_string()).filter(|c| !c.is_empty());
                continue;
            }
            if cell.is_empty() && schema.identifiers.iter().any(|f| f.name == name) {
                continue; // a missing identifier, reported below
            }
            let kind = schema
                .identifiers
                .iter()
                .chain(schema.attributes.iter())
                .find(|f| f.name == name)
                .map(|f| (f.kind, f.optional));
            let value =
                cell_value(cell, kind).map_err(|message| parse(line, 0, format!("column {name:?}: {message}")))?;
            fields.insert(name.to_string(), value);
        }
        let fault = |fields: &Map<String, Value>, message: String| AdapterError::Record {
            path: origin.clone(),
            line,
            column: 0,
            model_type: model_type.to_string(),
            key: document::shown_key(schema, fields),
            message,
        };
        let parent = match (parent_type, parent) {
            (Some(pt), Some(pk)) => {
                let parent_schema = reg.schema(pt).map_err(|e| fault(&fields, e.to_string()))?;
                let key = parent_schema
                    .parse_key(&pk)
                    .map_err(|e| fault(&fields, format!("{PARENT_KEY}: {e}")))?;
                let p = store
                    .get_dyn(&key)
                    .map_err(|_| fault(&fields, format!("{PARENT_KEY} names {key}, which is not loaded")))?;
                document::link_to_parent(schema, &mut fields, p).map_err(|(_, m)| fault(&fields, m))?;
                Some(key)
            }
            (Some(pt), None) => return Err(fault(&fields, format!("no {PARENT_KEY}: the row must name its {pt}"))),
            (None, _) => None,
        };
        if let Some(id) = schema
            .identifiers
            .iter()
            .find(|f| !f.optional && fields.get(f.name.as_ref()).is_none_or(Value::is_null))
        {
            return Err(fault(&fields, format!("missing identifier {:?}", id.name)));
        }
        let model = reg
            .from_value(model_type, fields.clone(), &origin)
            .map_err(|e| match e {
                AdapterError::Model { message, .. } => fault(&fields, message),
                other => other,
            })?;
        if let Some(unknown) = document::unknown_field(reg, schema, &fields, &*model) {
            return Err(fault(&fields, format!("unknown column {unknown:?}")));
        }
        store
            .insert_boxed(model, parent.as_ref())
            .map_err(|e| fault(&fields, e.to_string()))?;
    }
    Ok(())
}

/// Where a quoted cell opens that is never closed (RFC 4180: quotes in a
/// quoted cell are doubled, so every quote toggles the state).
fn unterminated_quote(text: &str) -> Option<(usize, usize)> {
    let mut open = None;
    for (i, c) in text.char_indices() {
        if c == '"' {
            open = match open {
                None => Some(i),
                Some(_) => None,
            };
        }
    }
    open.map(|i| document::line_column(text, i))
}

/// A file's text; `None` when it does not exist. Invalid UTF-8 is an error
/// at its line and column.
fn read_text(path: &Path) -> Result<Option<String>> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(path, e)),
    };
    match String::from_utf8(bytes) {
        Ok(text) => Ok(Some(text)),
        Err(e) => {
            let valid = e.utf8_error().valid_up_to();
            let before = String::from_utf8_lossy(&e.as_bytes()[..valid]).into_owned();
            let (line, column) = document::line_column(&before, valid);
            Err(AdapterError::Parse {
                path: path.display().to_string(),
                line,
                column,
                message: "invalid UTF-8".into(),
            })
        }
    }
}

impl FileAdapter {
    /// A feed of changes to this adapter's file (or CSV directory), by any
    /// writer: each time the file changes, it is parsed again and compared
    /// with the previous version, model by model. A watcher overflow (or a
    /// lost watch) is a gap; so is a change the watcher did not report,
    /// found by comparing the file's size, time and inode at each poll. A
    /// file that does not parse is an error of the poll naming the file and
    /// line, once: it is read again at its next change.
    pub fn change_feed(&self) -> Result<FileFeed> {
        let watched = match self.format {
            Format::Csv => self.path.clone(),
            _ => self
                .path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."))
                .to_path_buf(),
        };
        let (tx, rx) = std::sync::mpsc::channel();
        let fail = |e: notify::Error| AdapterError::backend(watched.display().to_string(), e);
        let mut watcher = notify::recommended_watcher(tx).map_err(fail)?;
        // Editors save by writing a new file and renaming it: watch the directory.
        notify::Watcher::watch(&mut watcher, &watched, notify::RecursiveMode::NonRecursive).map_err(fail)?;
        let mut feed = FileFeed {
            watcher,
            watched,
            rx,
            name: self.name.clone(),
            path: self.path.clone(),
            format: self.format,
            registry: self.registry.clone(),
            missing_is_empty: self.missing_is_empty,
            image: self.store.clone(),
            seen: Vec::new(),
            broken: false,
            suspect: None,
            unsettled: None,
        };
        feed.seen = feed.signature();
        Ok(feed)
    }
}

/// What a file looks like from outside: modification time, length and
/// inode of each file read (`None`: missing).
type Signature = Vec<Option<(std::time::SystemTime, u64, u64)>>;

/// The change feed of a file (see [`FileAdapter::change_feed`]).
pub struct FileFeed {
    watcher: notify::RecommendedWatcher,
    watched: PathBuf,
    rx: std::sync::mpsc::Receiver<notify::Result<notify::Event>>,
    name: String,
    path: PathBuf,
    format: Format,
    registry: Registry,
    missing_is_empty: bool,
    /// The file as last parsed.
    image: LocalStore,
    /// The file's signature when it was last read (parsed or not).
    seen: Signature,
    /// The file did not parse when last read (and that was reported).
    broken: bool,
    /// A signature no event announced yet, and since when.
    suspect: Option<(Signature, std::time::Instant)>,
    /// A read that did not parse, not told yet, and since when: an
    /// editor's save that is not atomic leaves the file empty or half
    /// written for a moment.
    unsettled: Option<(Signature, std::time::Instant)>,
}

/// How long the watcher may stay silent about a change before it counts as missed.
const MISSED_AFTER: std::time::Duration = std::time::Duration::from_millis(100);

/// How long a file that does not parse is given to be written to the end
/// (the rest of a save that is not atomic) before that is told.
const SETTLE: std::time::Duration = std::time::Duration::from_millis(250);

impl FileFeed {
    fn concerns(&self, event: &notify::Event) -> bool {
        self.format == Format::Csv || event.paths.iter().any(|p| p.file_name() == self.path.file_name())
    }

    fn signature(&self) -> Signature {
        let files: Vec<PathBuf> = match self.format {
            Format::Csv => self
                .registry
                .load_order()
                .into_iter()
                .map(|t| self.path.join(format!("{t}.csv")))
                .collect(),
            _ => vec![self.path.clone()],
        };
        files
            .iter()
            .map(|f| {
                let m = std::fs::metadata(f).ok()?;
                #[cfg(unix)]
                let inode = std::os::unix::fs::MetadataExt::ino(&m);
                #[cfg(not(unix))]
                let inode = 0;
                Some((m.modified().ok()?, m.len(), inode))
            })
            .collect()
    }
}

impl diffsync::feed::ChangeFeed for FileFeed {
    fn poll(
        &mut self,
        max: usize,
        wait: std::time::Duration,
    ) -> std::result::Result<diffsync::feed::FeedBatch, diffsync::BoxError> {
        use diffsync::feed::{ChangeEvent, ChangeKind, FeedBatch};
        let mut batch = FeedBatch::default();
        let mut changed = false;
        let first = match self.rx.recv_timeout(wait) {
            Ok(e) => Some(e),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => None,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return Err("the file watcher stopped".into()),
        };
        for event in first.into_iter().chain(self.rx.try_iter()) {
            match event {
                // The watcher lost events (a queue overflow) or its watch.
                Err(_) => batch.gap = true,
                Ok(e) if e.need_rescan() => batch.gap = true,
                Ok(e) => changed |= self.concerns(&e),
            }
        }
        let signature = self.signature();
        if changed || batch.gap || signature == self.seen {
            self.suspect = None;
        } else {
            // Changed without a word from the watcher. Its events come from
            // a thread of its own: only a change it stays silent about for
            // a while was missed (lost events, or a lost watch: a directory
            // replaced, say). Then watch again.
            match &self.suspect {
                Some((s, since)) if *s == signature && since.elapsed() >= MISSED_AFTER => {
                    batch.gap = true;
                    self.suspect = None;
                    let _ =
                        notify::Watcher::watch(&mut self.watcher, &self.watched, notify::RecursiveMode::NonRecursive);
                }
                Some((s, _)) if *s == signature => {}
                _ => self.suspect = Some((signature.clone(), std::time::Instant::now())),
            }
        }
        // A read that did not parse is read again once the file had time
        // to be written to its end.
        if matches!(&self.unsettled, Some((s, since)) if *s == signature && since.elapsed() >= SETTLE) {
            changed = true;
        }
        if (!changed && !batch.gap) || (self.broken && signature == self.seen) {
            return Ok(batch);
        }
        // Read until the file stays as it was while it was read (a few
        // times at most: a file written without pause is read as it is):
        // what is recorded as seen (and, if it does not parse, as told) is
        // what was read, not a save that landed during the read.
        let mut signature = signature;
        let mut reads = 0;
        let read = loop {
            reads += 1;
            let read = FileAdapter::open_with(
                &self.name,
                self.path.clone(),
                self.format,
                self.registry.clone(),
                self.missing_is_empty,
            );
            let after = self.signature();
            if after == signature || reads == 4 {
                break read;
            }
            signature = after;
        };
        self.seen = signature.clone();
        let now = match read {
            Ok(a) => a.store,
            // Told once, by the error or the gap's full pass; read again
            // when the file changes.
            Err(_) if batch.gap => {
                self.broken = true;
                return Ok(batch);
            }
            Err(e) => {
                // Told only once the file stayed so for a while.
                let settled =
                    matches!(&self.unsettled, Some((s, since)) if *s == signature && since.elapsed() >= SETTLE);
                if !settled {
                    if self.unsettled.as_ref().is_none_or(|(s, _)| *s != signature) {
                        self.unsettled = Some((signature, std::time::Instant::now()));
                    }
                    return Ok(batch);
                }
                self.unsettled = None;
                self.broken = true;
                return Err(Box::new(e));
            }
        };
        self.unsettled = None;
        self.broken = false;
        let event = |kind, store: &LocalStore, m: &dyn diffsync::model::AnyModel| ChangeEvent {
            kind,
            key: m.model_key(),
            parent: store.parent(m.model_key()).ok().flatten(),
            origin: None,
        };
        let types: Vec<String> = now.model_types().map(str::to_string).collect();
        for t in &types {
            for m in now.get_all_dyn(t) {
                let key = m.model_key();
                match self.image.digest(&key) {
                    None => batch.events.push(event(ChangeKind::Created, &now, m)),
                    Some(d) if Some(d) != now.digest(&key) => batch.events.push(event(ChangeKind::Updated, &now, m)),
                    Some(_) => {}
                }
            }
            for m in self.image.get_all_dyn(t) {
                if now.digest(m.model_key()).is_none() {
                    batch.events.push(event(ChangeKind::Deleted, &self.image, m));
                }
            }
        }
        // More changes than asked for: all the same (the file is one unit).
        let _ = max;
        self.image = now;
        Ok(batch)
    }
}

impl Adapter for FileAdapter {
    type Store = LocalStore;
    fn store(&self) -> &LocalStore {
        &self.store
    }
    fn store_mut(&mut self) -> &mut LocalStore {
        &mut self.store
    }

    /// A file is read whole: any change reads it again.
    fn reread(&mut self, _changed: &[diffsync::feed::ChangeEvent]) -> diffsync::Result<()> {
        self.refresh()
    }

    fn refresh(&mut self) -> diffsync::Result<()> {
        let fresh = self.reopen().map_err(crate::error::load_failed(&self.name))?;
        self.store = fresh.store;
        Ok(())
    }
}
impl Sink for FileAdapter {
    /// Writes the file(s), when the sync applied a change (a file nothing
    /// changed in is left as it is, comments and layout included). When
    /// the write fails nothing was replaced, and the store is read back
    /// from the file so it never holds what the file does not (a reconcile
    /// then knows the changes did not land).
    fn sync_complete(&mut self, _diff: &Diff, report: &SyncReport) -> Result<(), HookError> {
        if report.totals().applied == 0 {
            return Ok(());
        }
        let Err(e) = self.save() else { return Ok(()) };
        if let Ok(fresh) = self.reopen() {
            self.store = fresh.store;
        }
        Err(e.into())
    }
}

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let tmp = temp_file(dir, bytes)?;
    keep_metadata(path, &tmp)?;
    tmp.persist(path).map_err(|e| io(path, e.error))?;
    Ok(())
}

/// Gives the temporary file that replaces `path` the permissions (and,
/// where this process may, the owner and group) `path` has: a rename
/// would otherwise leave the file with the temporary file's (0600).
fn keep_metadata(path: &Path, tmp: &tempfile::NamedTempFile) -> Result<()> {
    let Ok(meta) = std::fs::metadata(path) else {
        return Ok(()); // a new file: the process's defaults
    };
    std::fs::set_permissions(tmp.path(), meta.permissions()).map_err(|e| io(tmp.path(), e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        // Only root (or the owner, for the group) may: best effort.
        let _ = std::os::unix::fs::chown(tmp.path(), Some(meta.uid()), Some(meta.gid()));
    }
    Ok(())
}

/// A synced temporary file in `dir` holding `bytes`.
fn temp_file(dir: &Path, bytes: &[u8]) -> Result<tempfile::NamedTempFile> {
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| io(dir, e))?;
    tmp.write_all(bytes).map_err(|e| io(tmp.path(), e))?;
    tmp.as_file().sync_all().map_err(|e| io(tmp.path(), e))?;
    Ok(tmp)
}

fn io(path: &Path, source: std::io::Error) -> AdapterError {
    AdapterError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn format_err(origin: &str, e: impl std::fmt::Display) -> AdapterError {
    AdapterError::Format {
        origin: origin.to_string(),
        message: e.to_string(),
    }
}

fn csv_error(path: &Path, e: csv::Error) -> AdapterError {
    let line = e.position().map_or(0, |p| p.line() as usize);
    AdapterError::Parse {
        path: path.display().to_string(),
        line,
        column: 0,
        message: e.to_string(),
    }
}

/// A CSV cell as a value of the field's kind (unknown fields: JSON if it parses, else text).
fn cell_value(cell: &str, kind: Option<(ValueKind, bool)>) -> std::result::Result<Value, String> {
    match kind {
        Some((_, true)) if cell.is_empty() => Ok(Value::Null),
        Some((ValueKind::String, _)) => Ok(Value::String(cell.to_string())),
        Some((ValueKind::Integer, _)) => cell
            .parse::<i64>()
            .map(Value::from)
            .map_err(|e| format!("{cell:?} is not an integer ({e})")),
        Some((ValueKind::Float, _)) => cell
            .parse::<f64>()
            .map(Value::from)
            .map_err(|e| format!("{cell:?} is not a number ({e})")),
        Some((ValueKind::Bool, _)) => match cell {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            _ => Err(format!("{cell:?} is not true or false")),
        },
        Some((ValueKind::List | ValueKind::Map, _)) => {
            serde_json::from_str(cell).map_err(|e| format!("{cell:?} is not JSON ({e})"))
        }
        Some((ValueKind::Any, _)) | None => {
            Ok(serde_json::from_str(cell).unwrap_or_else(|_| Value::String(cell.to_string())))
        }
    }
}

fn without_nulls(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, without_nulls(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(without_nulls).collect()),
        other => other,
    }
}
