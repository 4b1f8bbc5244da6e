//! Files: JSON, YAML and TOML documents (nested: records hold their children
//! under the child type's name) and CSV (one file per model type, children
//! name their parent in a `_parent` column).
//!
//! A sync into a [`FileAdapter`] rewrites its file(s) atomically in
//! `sync_complete`: a temporary file in the same directory, then a rename, so a
//! failure leaves the old content intact.

use std::io::Write;
use std::path::{Path, PathBuf};

use diffsync::{Adapter, Diff, HookError, LocalStore, SyncReport, ValueKind};
use serde_json::{Map, Value};

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
/// use diffsync::{Adapter, DiffModel};
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
/// let mut copy = FileAdapter::open("copy", dir.path().join("copy.yaml"), Format::Yaml, registry)?;
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
}

impl FileAdapter {
    /// Opens `path` and loads it; a missing file (or directory) is an empty system.
    pub fn open(name: &str, path: impl Into<PathBuf>, format: Format, registry: Registry) -> Result<Self> {
        let path = path.into();
        let mut store = LocalStore::new(name);
        registry.register_all(&mut store)?;
        let mut a = FileAdapter {
            name: name.to_string(),
            path,
            format,
            registry,
            store,
        };
        a.load_file()?;
        Ok(a)
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
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io(&self.path, e)),
        };
        let origin = self.origin();
        let doc: Value = match self.format {
            Format::Json => serde_json::from_str(&text).map_err(|e| AdapterError::Parse {
                path: origin.clone(),
                line: e.line(),
                column: e.column(),
                // serde_json appends " at line L column C", which the error already shows.
                message: e.to_string().split(" at line ").next().unwrap_or_default().to_string(),
            })?,
            Format::Yaml => serde_saphyr::from_str(&text).map_err(|e| {
                let (line, column) = e
                    .location()
                    .map_or((0, 0), |l| (l.line() as usize, l.column() as usize));
                AdapterError::Parse {
                    path: origin.clone(),
                    line,
                    column,
                    message: e.to_string(),
                }
            })?,
            Format::Toml => toml::from_str(&text).map_err(|e| {
                let (line, column) = e.span().map_or((0, 0), |s| line_column(&text, s.start));
                AdapterError::Parse {
                    path: origin.clone(),
                    line,
                    column,
                    message: e.message().to_string(),
                }
            })?,
            Format::Csv => Value::Null,
        };
        registry::load_tree(&self.registry, &mut self.store, doc, &origin)
    }

    fn load_csv(&mut self) -> Result<()> {
        if !self.path.exists() {
            return Ok(());
        }
        for model_type in self.registry.load_order() {
            let file = self.path.join(format!("{model_type}.csv"));
            if !file.exists() {
                continue;
            }
            let schema = self.registry.schema(model_type)?;
            let mut reader = csv::Reader::from_path(&file).map_err(|e| csv_error(&file, e))?;
            let headers = reader.headers().map_err(|e| csv_error(&file, e))?.clone();
            let origin = file.display().to_string();
            for row in reader.records() {
                let row = row.map_err(|e| csv_error(&file, e))?;
                let line = row.position().map_or(0, |p| p.line() as usize);
                let mut fields = Map::new();
                for (name, cell) in headers.iter().zip(row.iter()) {
                    let kind = schema
                        .identifiers
                        .iter()
                        .chain(schema.attributes.iter())
                        .find(|f| f.name == name)
                        .map(|f| (f.kind, f.optional));
                    let value = cell_value(cell, kind).map_err(|message| AdapterError::Parse {
                        path: origin.clone(),
                        line,
                        column: 0,
                        message: format!("column {name:?}: {message}"),
                    })?;
                    fields.insert(name.to_string(), value);
                }
                registry::insert_flat(&self.registry, &mut self.store, model_type, fields, &origin)?;
            }
        }
        Ok(())
    }

    /// Writes the store to the file(s), atomically per file.
    pub fn save(&self) -> Result<()> {
        if self.format == Format::Csv {
            return self.save_csv();
        }
        let doc = registry::dump_tree(&self.registry, &self.store)?;
        let origin = self.origin();
        let text = match self.format {
            Format::Json => serde_json::to_string_pretty(&doc).map_err(|e| format_err(&origin, e))?,
            Format::Yaml => serde_saphyr::to_string(&doc).map_err(|e| format_err(&origin, e))?,
            Format::Toml => toml::to_string_pretty(&without_nulls(doc)).map_err(|e| format_err(&origin, e))?,
            Format::Csv => String::new(),
        };
        write_atomic(&self.path, text.as_bytes())
    }

    fn save_csv(&self) -> Result<()> {
        std::fs::create_dir_all(&self.path).map_err(|e| io(&self.path, e))?;
        for (model_type, rows) in registry::flat_records(&self.registry, &self.store)? {
            let file = self.path.join(format!("{model_type}.csv"));
            let mut headers: Vec<String> = Vec::new();
            for row in &rows {
                for k in row.keys() {
                    if !headers.contains(k) {
                        headers.push(k.clone());
                    }
                }
            }
            if headers.is_empty() {
                let schema = self.registry.schema(&model_type)?;
                headers = schema
                    .identifiers
                    .iter()
                    .chain(schema.attributes.iter())
                    .map(|f| f.name.to_string())
                    .collect();
                if self.registry.parent_type(&model_type).is_some() {
                    headers.push(PARENT_KEY.into());
                }
            }
            let mut w = csv::Writer::from_writer(Vec::new());
            w.write_record(&headers).map_err(|e| csv_error(&file, e))?;
            for row in &rows {
                let cells = headers.iter().map(|h| match row.get(h) {
                    None | Some(Value::Null) => String::new(),
                    Some(Value::String(s)) => s.clone(),
                    Some(other) => other.to_string(),
                });
                w.write_record(cells).map_err(|e| csv_error(&file, e))?;
            }
            let bytes = w.into_inner().map_err(|e| io(&file, e.into_error()))?;
            write_atomic(&file, &bytes)?;
        }
        Ok(())
    }
}

impl Adapter for FileAdapter {
    registry_adapter_basics!();
    fn sync_complete(&mut self, _diff: &Diff, _report: &SyncReport) -> Result<(), HookError> {
        self.save().map_err(Into::into)
    }
}

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| io(dir, e))?;
    tmp.write_all(bytes).map_err(|e| io(tmp.path(), e))?;
    tmp.as_file().sync_all().map_err(|e| io(tmp.path(), e))?;
    tmp.persist(path).map_err(|e| io(path, e.error))?;
    Ok(())
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

/// 1-based line and column of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset.min(text.len())).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
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
