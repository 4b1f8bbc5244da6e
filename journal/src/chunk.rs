//! A run's changes as the journal keeps them: in chunks of up to
//! [`CHUNK_CHANGES`], one row each. A chunk is a JSON document whose
//! changes are arrays (a model type and its attribute names are said once
//! per chunk, not once per change), compressed with zstd; beside it, in a
//! row of its own, its changes' key hashes (32 bits each), which a key's
//! history searches inside the database for the chunks to read.

use std::collections::HashMap;

use diffsync::{Action, Attrs, DiffElement};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::record::{Element, Side};

/// Changes in a chunk at most.
pub(crate) const CHUNK_CHANGES: usize = 512;

/// Text at which a chunk is closed before it has [`CHUNK_CHANGES`] (a
/// chunk of large models stays small to read back).
const CHUNK_TEXT: usize = 1 << 20;

/// The largest chunk text a reader unpacks: a row saying more is damaged
/// (a chunk is closed at [`CHUNK_TEXT`], so only a single model of more
/// than this could make one).
pub(crate) const MAX_CHUNK_TEXT: i64 = 256 << 20;

/// How hard zstd works: its fastest level that still packs the JSON's
/// repeats (the chunk is written before the sync may write anything).
const LEVEL: i32 = 1;

/// The hash of a change's model type and key a chunk's row of hashes
/// holds: stable across builds and machines (XXH3's low 32 bits, little
/// endian), as it is kept.
pub(crate) fn key_hash(model_type: &str, key: &str, scratch: &mut Vec<u8>) -> [u8; 4] {
    scratch.clear();
    scratch.extend_from_slice(model_type.as_bytes());
    scratch.push(0);
    scratch.extend_from_slice(key.as_bytes());
    (xxhash_rust::xxh3::xxh3_64(scratch) as u32).to_le_bytes()
}

/// A chunk being written: its changes' text, and the names they refer to.
pub(crate) struct ChunkWriter<'d> {
    /// The side its changes went to (a two-way run's plan per side).
    pub(crate) side: Option<Side>,
    types: Vec<&'d str>,
    names: Vec<Vec<&'d str>>,
    /// A names slice of the diff (the same for every element of a type and
    /// side) by its address, so it is looked up without reading it.
    by_address: HashMap<(usize, usize), usize>,
    /// An update's changed names, joined by NUL.
    by_text: HashMap<String, usize>,
    text: Vec<u8>,
    joined: String,
    /// Changes in the chunk, and how many of each action.
    pub(crate) count: usize,
    pub(crate) counts: [i64; 3],
    /// The changes' key hashes, in order.
    hashes: Vec<u8>,
    scratch: Vec<u8>,
}

impl<'d> ChunkWriter<'d> {
    pub(crate) fn new(side: Option<Side>) -> ChunkWriter<'d> {
        ChunkWriter {
            side,
            types: Vec::new(),
            names: Vec::new(),
            by_address: HashMap::new(),
            by_text: HashMap::new(),
            text: Vec::with_capacity(CHUNK_TEXT),
            joined: String::new(),
            count: 0,
            counts: [0; 3],
            hashes: Vec::with_capacity(4 * CHUNK_CHANGES),
            scratch: Vec::new(),
        }
    }

    /// Whether the chunk should be written now.
    pub(crate) fn is_full(&self) -> bool {
        self.count >= CHUNK_CHANGES || self.text.len() >= CHUNK_TEXT
    }

    fn type_index(&mut self, model_type: &'d str) -> usize {
        match self.types.iter().position(|t| *t == model_type) {
            Some(i) => i,
            None => {
                self.types.push(model_type);
                self.types.len() - 1
            }
        }
    }

    fn names_index(&mut self, names: &'d [std::borrow::Cow<'static, str>]) -> usize {
        let address = (names.as_ptr() as usize, names.len());
        if let Some(&i) = self.by_address.get(&address) {
            return i;
        }
        self.names.push(names.iter().map(|n| n.as_ref()).collect());
        self.by_address.insert(address, self.names.len() - 1);
        self.names.len() - 1
    }

    fn changed_index(&mut self, e: &'d DiffElement) -> usize {
        self.joined.clear();
        for c in &e.changes {
            self.joined.push_str(&c.name);
            self.joined.push('\0');
        }
        if let Some(&i) = self.by_text.get(&self.joined) {
            return i;
        }
        self.names.push(e.changes.iter().map(|c| c.name.as_ref()).collect());
        self.by_text.insert(self.joined.clone(), self.names.len() - 1);
        self.names.len() - 1
    }

    /// Adds the change `e` (under `parent`).
    pub(crate) fn push(&mut self, e: &'d DiffElement, parent: Option<(&'d str, &'d str)>) {
        let model_type = self.type_index(e.model_type());
        let parent = parent.map(|(t, k)| (self.type_index(t), k));
        let ids = e.identifier_fields();
        let ids = (self.names_index(ids.names()), ids);
        let before = e.dest_fields().map(|f| (self.names_index(f.names()), f));
        // An update keeps only what it changes (its whole source side
        // would be made for nothing).
        let source;
        let after = if e.action == Action::Update {
            let names = self.changed_index(e);
            Some((names, Vals::Refs(e.changes.iter().map(|c| &c.new).collect())))
        } else {
            source = e.source_fields();
            source
                .as_ref()
                .map(|f| (self.names_index(f.names()), Vals::Slice(f.values())))
        };
        if self.count > 0 {
            self.text.push(b',');
        }
        let record = (
            model_type,
            e.action.as_str(),
            e.unique_id(),
            parent,
            (ids.0, ids.1.values()),
            before.as_ref().map(|(n, f)| (*n, f.values())),
            after,
        );
        serde_json::to_writer(&mut self.text, &record).expect("a change serializes to JSON");
        self.count += 1;
        match e.action {
            Action::Create => self.counts[0] += 1,
            Action::Update => self.counts[1] += 1,
            _ => self.counts[2] += 1,
        }
        let hash = key_hash(e.model_type(), e.unique_id(), &mut self.scratch);
        self.hashes.extend_from_slice(&hash);
    }

    /// The chunk's document, compressed, its length unpacked, and its
    /// changes' key hashes; the writer is empty again.
    pub(crate) fn take(&mut self) -> (Vec<u8>, usize, Vec<u8>) {
        let mut document = Vec::with_capacity(self.text.len() + 256);
        let header = serde_json::json!({
            "side": self.side.map(Side::as_str),
            "types": self.types,
            "names": self.names,
        });
        serde_json::to_writer(&mut document, &header).expect("a chunk's header serializes to JSON");
        document.pop();
        document.extend_from_slice(b",\"changes\":[");
        document.extend_from_slice(&self.text);
        document.extend_from_slice(b"]}");
        let packed = zstd::bulk::compress(&document, LEVEL).expect("zstd compresses from memory to memory");
        self.types.clear();
        self.names.clear();
        self.by_address.clear();
        self.by_text.clear();
        self.text.clear();
        self.count = 0;
        self.counts = [0; 3];
        let hashes = std::mem::replace(&mut self.hashes, Vec::with_capacity(4 * CHUNK_CHANGES));
        (packed, document.len(), hashes)
    }
}

/// Values as a change's record writes them.
#[derive(Serialize)]
#[serde(untagged)]
enum Vals<'x> {
    Slice(&'x [Value]),
    Refs(Vec<&'x Value>),
}

/// A chunk as read back.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    side: Option<String>,
    types: Vec<String>,
    names: Vec<Vec<String>>,
    changes: Vec<Record>,
}

/// A change: type, action, key, parent, identifiers, before, after.
#[derive(Deserialize)]
struct Record(
    usize,
    Action,
    String,
    Option<(usize, String)>,
    Values,
    Option<Values>,
    Option<Values>,
);

/// Values, and the index of their names.
#[derive(Deserialize)]
struct Values(usize, Vec<Value>);

/// The changes of a chunk whose first change is number `first` of its
/// run, from its packed body and the length its row says it unpacks to
/// (outcomes pending), each with its key's text as it was written (what
/// a key's history is looked up by). A damaged chunk is an error saying
/// what is wrong.
pub(crate) fn read(first: u32, size: i64, body: &[u8]) -> Result<Vec<(Element, String)>, String> {
    use std::io::Read;
    if !(0..=MAX_CHUNK_TEXT).contains(&size) {
        return Err(format!("a chunk says it unpacks to {size} bytes"));
    }
    // Unpacked as far as its row says and a byte more, never further (the
    // text grows with what is read, not with what the row says).
    let mut text = Vec::new();
    zstd::stream::read::Decoder::with_buffer(body)
        .and_then(|d| d.take(size as u64 + 1).read_to_end(&mut text))
        .map_err(|e| format!("a chunk does not unpack: {e}"))?;
    if text.len() as i64 != size {
        return Err(format!(
            "a chunk unpacks to more or less than the {size} bytes its row says"
        ));
    }
    let document: Document = serde_json::from_slice(&text).map_err(|e| format!("a chunk does not read: {e}"))?;
    let side = Side::read(document.side.as_deref())?;
    let type_name = |i: usize| {
        document
            .types
            .get(i)
            .ok_or_else(|| format!("a change of model type number {i}, of {}", document.types.len()))
    };
    let attrs = |values: Values| -> Result<Attrs, String> {
        let names = document
            .names
            .get(values.0)
            .ok_or_else(|| format!("names number {}, of {}", values.0, document.names.len()))?;
        if names.len() != values.1.len() {
            return Err(format!("{} names for {} values", names.len(), values.1.len()));
        }
        Ok(names.iter().map(|n| n.clone().into()).zip(values.1).collect())
    };
    let mut out = Vec::with_capacity(document.changes.len());
    for (i, Record(ty, action, key, parent, ids, before, after)) in document.changes.into_iter().enumerate() {
        let model_type = type_name(ty)?;
        let parent = match parent {
            Some((t, k)) => Some(crate::record::parent_key(type_name(t)?, &k).map_err(|e| e.to_string())?),
            None => None,
        };
        let identifiers = attrs(ids)?;
        let before = before.map(attrs).transpose()?;
        let after = crate::record::values_after(action, before.as_ref(), after.map(attrs).transpose()?);
        let seq = u32::try_from(i)
            .ok()
            .and_then(|i| first.checked_add(i))
            .ok_or("a chunk with more changes than a run has numbers")?;
        let element = Element {
            seq,
            key: diffsync::ModelKey::new(model_type.clone(), identifiers.values().map(diffsync::KeyValue::from)),
            parent,
            side,
            identifiers,
            action,
            outcome: diffsync::Outcome::Pending,
            before,
            after,
        };
        out.push((element, key));
    }
    Ok(out)
}
