//! Content digests: a stable 128-bit hash of every model, and
//! order-independent fingerprints of sets of models (a subtree, a model
//! type, a whole store) that stores keep up to date as they change.
//!
//! Two stores whose roots ([`LocalStore::fingerprint`](crate::LocalStore::fingerprint))
//! are equal hold the same models under the same parents; the differ skips
//! every pair of subtrees whose fingerprints match.
//!
//! # The item digest
//! XXH3-128 (seed 0) of a canonical encoding of the model type, its
//! identifiers and its attributes. The encoding depends only on the values
//! as serde sees them (the JSON data model), never on the Rust type or the
//! order of fields in memory: a runtime-defined model and a derived one with
//! equal values have equal digests.
//!
//! ```text
//! item    = str(model type) fields(identifiers) fields(attributes)
//! fields  = u64(count) { str(name) value }   -- sorted by name, bytewise
//! value   = 0x00                              -- null, unit, None
//!         | 0x01 | 0x02                       -- false | true
//!         | 0x03 i128                         -- any integer
//!         | 0x04 f64                          -- a float, by its IEEE bits
//!         | 0x05 str                          -- a string or char
//!         | 0x06 u64(len) { value }           -- a sequence, tuple or bytes
//!         | 0x07 u64(len) { value value }     -- a map or struct, entries
//!                                                sorted by their encoding
//! str     = u64(byte length) utf-8 bytes
//! ```
//! Numbers are little-endian. Enums encode as serde_json writes them: a
//! unit variant as its name, any other as a one-entry map from its name.
//!
//! # Fingerprints
//! A [`Fingerprint`] is a count and a wrapping 128-bit sum of one term per
//! model: order-independent, and updated by adding or subtracting a term
//! (unlike XOR, two equal terms do not cancel). A model's term mixes its
//! item digest with its parent's type and key, so moving a model changes
//! the fingerprint.

use serde::Serialize;
use serde::ser;
use serde_json::Value;
use xxhash_rust::xxh3::{xxh3_64, xxh3_128};

use crate::model::{AnyModel, Attrs};

/// A model's 128-bit content digest (see the [module docs](self)).
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(pub u128);

impl std::fmt::Debug for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl std::fmt::Display for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

/// An order-independent summary of a set of models: how many, and the
/// wrapping sum of their terms.
///
/// ```
/// use diffsync::digest::{Digest, Fingerprint};
/// let (a, b) = (Digest(7), Digest(u128::MAX));
/// let mut x = Fingerprint::default();
/// x.add(a);
/// x.add(b);
/// let mut y = Fingerprint::default();
/// y.add(b);
/// y.add(a);
/// assert_eq!(x, y);
/// x.remove(b);
/// assert_eq!(x.count, 1);
/// ```
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Fingerprint {
    /// Models in the set.
    pub count: u64,
    /// Wrapping sum of their terms.
    pub sum: u128,
}

impl Fingerprint {
    /// Adds one model's term.
    pub fn add(&mut self, term: Digest) {
        self.count = self.count.wrapping_add(1);
        self.sum = self.sum.wrapping_add(term.0);
    }

    /// Removes one model's term.
    pub fn remove(&mut self, term: Digest) {
        self.count = self.count.wrapping_sub(1);
        self.sum = self.sum.wrapping_sub(term.0);
    }

    /// Adds a whole set.
    pub fn merge(&mut self, other: Fingerprint) {
        self.count = self.count.wrapping_add(other.count);
        self.sum = self.sum.wrapping_add(other.sum);
    }

    /// Removes a whole set (added before).
    pub fn unmerge(&mut self, other: Fingerprint) {
        self.count = self.count.wrapping_sub(other.count);
        self.sum = self.sum.wrapping_sub(other.sum);
    }
}

/// A model's term in fingerprints: its item digest, mixed with its
/// parent's key when it has one.
pub fn term_of(item: Digest, parent: Option<&crate::ModelKey>) -> Digest {
    term(item, parent.map(|p| parent_hash(p.model_type(), p.unique_id())))
}

/// A stable 64-bit hash of a parent's (type, key), mixed into its
/// children's terms.
pub(crate) fn parent_hash(model_type: &str, key: &str) -> u64 {
    let len = model_type.len() + key.len() + 16;
    let mut small = [0u8; 192];
    let mut large = Vec::new();
    let buf: &mut [u8] = if len <= small.len() {
        &mut small[..len]
    } else {
        large.resize(len, 0);
        &mut large
    };
    let mut at = 0;
    for s in [model_type, key] {
        buf[at..at + 8].copy_from_slice(&(s.len() as u64).to_le_bytes());
        buf[at + 8..at + 8 + s.len()].copy_from_slice(s.as_bytes());
        at += 8 + s.len();
    }
    xxh3_64(buf)
}

/// A model's term in fingerprints: its digest, mixed with its parent's hash.
pub(crate) fn term(item: Digest, parent: Option<u64>) -> Digest {
    match parent {
        None => item,
        Some(p) => {
            let mut bytes = [0u8; 24];
            bytes[..16].copy_from_slice(&item.0.to_le_bytes());
            bytes[16..].copy_from_slice(&p.to_le_bytes());
            Digest(xxh3_128(&bytes))
        }
    }
}

/// Writes the canonical encoding of a model; see the [module docs](self).
/// Derived models write their fields directly; others go through their
/// identifier and attribute values.
pub struct Encoder {
    buf: Vec<u8>,
    /// Where the field count of the current group is (patched at the end).
    group: Option<(usize, u64)>,
    /// Where the last field's name is in `buf`, to check the order.
    last: (usize, usize),
    sorted: bool,
    entries: Vec<Vec<u8>>,
}

/// An encoder's buffers: the encoding, and map entries being sorted.
type Buffers = (Vec<u8>, Vec<Vec<u8>>);

thread_local! {
    /// Buffers reused from one digest to the next on this thread.
    static SPARE: std::cell::Cell<Option<Buffers>> = const { std::cell::Cell::new(None) };
}

impl Encoder {
    fn new(model_type: &str) -> Self {
        let (mut buf, entries) = SPARE.with(|s| s.take()).unwrap_or_default();
        buf.clear();
        put_str(&mut buf, model_type);
        Encoder {
            buf,
            group: None,
            last: (0, 0),
            sorted: true,
            entries,
        }
    }

    /// Starts the identifiers (then the attributes); fields follow in
    /// name order.
    #[doc(hidden)]
    pub fn begin_group(&mut self) {
        self.end_group();
        self.group = Some((self.buf.len(), 0));
        self.buf.extend_from_slice(&0u64.to_le_bytes());
        self.last = (0, 0);
    }

    fn end_group(&mut self) {
        if let Some((at, n)) = self.group.take() {
            self.buf[at..at + 8].copy_from_slice(&n.to_le_bytes());
        }
    }

    /// One field of the current group. Fields must come sorted by name:
    /// generated code sorts them at compile time.
    #[doc(hidden)]
    pub fn field<T: Serialize + ?Sized>(&mut self, name: &str, value: &T) {
        if let Some((_, n)) = &mut self.group {
            *n += 1;
        }
        // The order is checked in debug builds only: a comparison of names
        // per field was 3 % of a load.
        if cfg!(debug_assertions) {
            let (at, len) = self.last;
            self.sorted &= name.as_bytes() >= &self.buf[at..at + len];
        }
        put_str(&mut self.buf, name);
        if cfg!(debug_assertions) {
            self.last = (self.buf.len() - name.len(), name.len());
        }
        encode_value(&mut self.buf, value, &mut self.entries);
    }

    fn finish(mut self) -> Digest {
        self.end_group();
        debug_assert!(self.sorted, "digest fields out of order");
        let d = Digest(xxh3_128(&self.buf));
        SPARE.with(|s| s.set(Some((self.buf, self.entries))));
        d
    }
}

/// Writes `attrs` as one group, sorted by name.
pub(crate) fn write_attrs(enc: &mut Encoder, attrs: &Attrs) {
    let mut fields: Vec<(&str, &Value)> = attrs.iter().map(|(k, v)| (k.as_ref(), v)).collect();
    fields.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    enc.begin_group();
    for (name, v) in fields {
        enc.field(name, v);
    }
}

/// The item digest of any model.
pub fn item_digest(model: &dyn AnyModel) -> Digest {
    let mut enc = Encoder::new(model.model_type());
    model.write_digest(&mut enc);
    enc.finish()
}

/// The digest of a model given by its parts (a change's values, a row).
pub fn digest_of(model_type: &str, identifiers: &Attrs, attributes: &Attrs) -> Digest {
    let mut enc = Encoder::new(model_type);
    write_attrs(&mut enc, identifiers);
    write_attrs(&mut enc, attributes);
    enc.finish()
}

/// A 64-bit fingerprint of what makes two processes' digests of a model
/// type comparable: its name, its identifiers in order and its attributes
/// by name, each with its value kind and whether null is allowed, and its
/// child types. Two peers whose fingerprints of a type differ would see
/// every model of it as changed; a peer protocol refuses them by name
/// instead. Comparison modes, flags and strategies are left out: they do
/// not change a digest.
///
/// ```
/// use diffsync::ModelSchema;
/// use diffsync::digest::schema_fingerprint;
///
/// let schema = |kind: &str| -> ModelSchema {
///     serde_json::from_value(serde_json::json!({
///         "name": "site",
///         "identifiers": [{"name": "name", "kind": "string"}],
///         "attributes": [{"name": "asn", "kind": kind}],
///     }))
///     .unwrap()
/// };
/// assert_eq!(schema_fingerprint(&schema("integer")), schema_fingerprint(&schema("integer")));
/// assert_ne!(schema_fingerprint(&schema("integer")), schema_fingerprint(&schema("string")));
/// ```
pub fn schema_fingerprint(schema: &crate::model::ModelSchema) -> u64 {
    let mut buf = Vec::with_capacity(128);
    put_str(&mut buf, &schema.name);
    let field = |buf: &mut Vec<u8>, f: &crate::model::FieldDef| {
        put_str(buf, &f.name);
        put_str(buf, &format!("{:?}", f.kind));
        buf.push(u8::from(f.optional));
    };
    buf.extend_from_slice(&(schema.identifiers.len() as u64).to_le_bytes());
    for f in schema.identifiers.iter() {
        field(&mut buf, f);
    }
    let mut attributes: Vec<_> = schema.attributes.iter().collect();
    attributes.sort_unstable_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
    buf.extend_from_slice(&(attributes.len() as u64).to_le_bytes());
    for f in attributes {
        field(&mut buf, f);
    }
    let mut children: Vec<&str> = schema.children.iter().map(|c| c.as_ref()).collect();
    children.sort_unstable();
    buf.extend_from_slice(&(children.len() as u64).to_le_bytes());
    for c in children {
        put_str(&mut buf, c);
    }
    xxh3_64(&buf)
}

fn put_str(buf: &mut Vec<u8>, s: &str) {
    buf.extend_from_slice(&(s.len() as u64).to_le_bytes());
    buf.extend_from_slice(s.as_bytes());
}

fn encode_value<T: Serialize + ?Sized>(buf: &mut Vec<u8>, value: &T, spare: &mut Vec<Vec<u8>>) {
    // The canonical serializer cannot fail: every serde type has an encoding.
    let _ = value.serialize(Canonical { buf, spare });
}

/// The serde serializer that writes the canonical encoding.
struct Canonical<'a> {
    buf: &'a mut Vec<u8>,
    /// Reusable buffers for map entries (sorted before they are written).
    spare: &'a mut Vec<Vec<u8>>,
}

/// The canonical serializer never fails; serde requires an error type.
#[derive(Debug)]
struct Never;

impl std::fmt::Display for Never {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("unreachable")
    }
}

impl std::error::Error for Never {}

impl ser::Error for Never {
    fn custom<T: std::fmt::Display>(_: T) -> Self {
        Never
    }
}

const NULL: u8 = 0x00;
const FALSE: u8 = 0x01;
const TRUE: u8 = 0x02;
const INT: u8 = 0x03;
const FLOAT: u8 = 0x04;
const STR: u8 = 0x05;
const SEQ: u8 = 0x06;
const MAP: u8 = 0x07;

impl<'a> Canonical<'a> {
    fn int(self, v: i128) -> Result<(), Never> {
        self.buf.push(INT);
        self.buf.extend_from_slice(&v.to_le_bytes());
        Ok(())
    }
    fn str(self, v: &str) -> Result<(), Never> {
        self.buf.push(STR);
        put_str(self.buf, v);
        Ok(())
    }
    fn seq(self, len: Option<usize>) -> Seq<'a> {
        self.buf.push(SEQ);
        let at = self.buf.len();
        self.buf.extend_from_slice(&(len.unwrap_or(0) as u64).to_le_bytes());
        Seq {
            buf: self.buf,
            spare: self.spare,
            at,
            n: 0,
        }
    }
    fn map(self) -> Map<'a> {
        Map {
            buf: self.buf,
            entries: Vec::new(),
            spare: self.spare,
        }
    }
    /// `{variant: ...}` as serde_json writes non-unit variants.
    fn variant_map(self, variant: &str) -> Map<'a> {
        let mut m = self.map();
        let mut key = m.spare.pop().unwrap_or_default();
        key.clear();
        let _ = Canonical {
            buf: &mut key,
            spare: m.spare,
        }
        .str(variant);
        m.entries.push(key);
        m
    }
}

struct Seq<'a> {
    buf: &'a mut Vec<u8>,
    spare: &'a mut Vec<Vec<u8>>,
    at: usize,
    n: u64,
}

impl Seq<'_> {
    fn element<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Never> {
        self.n += 1;
        v.serialize(Canonical {
            buf: self.buf,
            spare: self.spare,
        })
    }
    fn finish(self) -> Result<(), Never> {
        self.buf[self.at..self.at + 8].copy_from_slice(&self.n.to_le_bytes());
        Ok(())
    }
}

/// Entries are encoded each into its own buffer (key then value), sorted,
/// then written: the encoding does not depend on the map's order.
struct Map<'a> {
    buf: &'a mut Vec<u8>,
    /// Finished entries; an odd count means a key waits for its value.
    entries: Vec<Vec<u8>>,
    spare: &'a mut Vec<Vec<u8>>,
}

impl Map<'_> {
    fn key<T: Serialize + ?Sized>(&mut self, k: &T) -> Result<(), Never> {
        let mut e = self.spare.pop().unwrap_or_default();
        e.clear();
        k.serialize(Canonical {
            buf: &mut e,
            spare: self.spare,
        })?;
        self.entries.push(e);
        Ok(())
    }
    fn value<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Never> {
        let Some(e) = self.entries.last_mut() else {
            return Ok(());
        };
        v.serialize(Canonical {
            buf: e,
            spare: self.spare,
        })
    }
    fn finish(mut self) -> Result<(), Never> {
        self.entries.sort_unstable();
        self.buf.push(MAP);
        self.buf.extend_from_slice(&(self.entries.len() as u64).to_le_bytes());
        for e in self.entries.drain(..) {
            self.buf.extend_from_slice(&e);
            self.spare.push(e);
        }
        Ok(())
    }
}

/// A variant's content inside `{variant: ...}`.
struct VariantSeq<'a> {
    map: Map<'a>,
    seq: Vec<u8>,
    n: u64,
}

impl<'a> ser::Serializer for Canonical<'a> {
    type Ok = ();
    type Error = Never;
    type SerializeSeq = Seq<'a>;
    type SerializeTuple = Seq<'a>;
    type SerializeTupleStruct = Seq<'a>;
    type SerializeTupleVariant = VariantSeq<'a>;
    type SerializeMap = Map<'a>;
    type SerializeStruct = Map<'a>;
    type SerializeStructVariant = VariantStruct<'a>;

    fn serialize_bool(self, v: bool) -> Result<(), Never> {
        self.buf.push(if v { TRUE } else { FALSE });
        Ok(())
    }
    fn serialize_i8(self, v: i8) -> Result<(), Never> {
        self.int(v.into())
    }
    fn serialize_i16(self, v: i16) -> Result<(), Never> {
        self.int(v.into())
    }
    fn serialize_i32(self, v: i32) -> Result<(), Never> {
        self.int(v.into())
    }
    fn serialize_i64(self, v: i64) -> Result<(), Never> {
        self.int(v.into())
    }
    fn serialize_i128(self, v: i128) -> Result<(), Never> {
        self.int(v)
    }
    fn serialize_u8(self, v: u8) -> Result<(), Never> {
        self.int(v.into())
    }
    fn serialize_u16(self, v: u16) -> Result<(), Never> {
        self.int(v.into())
    }
    fn serialize_u32(self, v: u32) -> Result<(), Never> {
        self.int(v.into())
    }
    fn serialize_u64(self, v: u64) -> Result<(), Never> {
        self.int(v.into())
    }
    fn serialize_u128(self, v: u128) -> Result<(), Never> {
        match i128::try_from(v) {
            Ok(v) => self.int(v),
            // Beyond i128: as its decimal text (no JSON number holds it).
            Err(_) => self.str(&v.to_string()),
        }
    }
    fn serialize_f32(self, v: f32) -> Result<(), Never> {
        self.serialize_f64(v.into())
    }
    fn serialize_f64(self, v: f64) -> Result<(), Never> {
        self.buf.push(FLOAT);
        self.buf.extend_from_slice(&v.to_bits().to_le_bytes());
        Ok(())
    }
    fn serialize_char(self, v: char) -> Result<(), Never> {
        self.str(v.encode_utf8(&mut [0; 4]))
    }
    fn serialize_str(self, v: &str) -> Result<(), Never> {
        self.str(v)
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<(), Never> {
        let mut s = self.seq(Some(v.len()));
        for b in v {
            s.element(b)?;
        }
        s.finish()
    }
    fn serialize_none(self) -> Result<(), Never> {
        self.buf.push(NULL);
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> Result<(), Never> {
        v.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), Never> {
        self.serialize_none()
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), Never> {
        self.serialize_none()
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, variant: &'static str) -> Result<(), Never> {
        self.str(variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _: &'static str, v: &T) -> Result<(), Never> {
        v.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        v: &T,
    ) -> Result<(), Never> {
        let mut m = self.variant_map(variant);
        m.value(v)?;
        m.finish()
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<Seq<'a>, Never> {
        Ok(self.seq(len))
    }
    fn serialize_tuple(self, len: usize) -> Result<Seq<'a>, Never> {
        Ok(self.seq(Some(len)))
    }
    fn serialize_tuple_struct(self, _: &'static str, len: usize) -> Result<Seq<'a>, Never> {
        Ok(self.seq(Some(len)))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<VariantSeq<'a>, Never> {
        Ok(VariantSeq {
            map: self.variant_map(variant),
            seq: Vec::new(),
            n: 0,
        })
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Map<'a>, Never> {
        Ok(self.map())
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Map<'a>, Never> {
        Ok(self.map())
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<VariantStruct<'a>, Never> {
        let outer = self.variant_map(variant);
        Ok(VariantStruct {
            outer,
            inner: Vec::new(),
            entries: Vec::new(),
        })
    }
}

macro_rules! seq_impl {
    ($($t:ident :: $m:ident),*) => {$(
        impl ser::$t for Seq<'_> {
            type Ok = ();
            type Error = Never;
            fn $m<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Never> {
                self.element(v)
            }
            fn end(self) -> Result<(), Never> {
                self.finish()
            }
        }
    )*};
}
seq_impl!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field
);

impl ser::SerializeTupleVariant for VariantSeq<'_> {
    type Ok = ();
    type Error = Never;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Never> {
        self.n += 1;
        v.serialize(Canonical {
            buf: &mut self.seq,
            spare: self.map.spare,
        })
    }
    fn end(mut self) -> Result<(), Never> {
        if let Some(e) = self.map.entries.last_mut() {
            e.push(SEQ);
            e.extend_from_slice(&self.n.to_le_bytes());
            e.extend_from_slice(&self.seq);
        }
        self.map.finish()
    }
}

impl ser::SerializeMap for Map<'_> {
    type Ok = ();
    type Error = Never;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, k: &T) -> Result<(), Never> {
        self.key(k)
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Never> {
        self.value(v)
    }
    fn end(self) -> Result<(), Never> {
        self.finish()
    }
}

impl ser::SerializeStruct for Map<'_> {
    type Ok = ();
    type Error = Never;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, name: &'static str, v: &T) -> Result<(), Never> {
        self.key(name)?;
        self.value(v)
    }
    fn end(self) -> Result<(), Never> {
        self.finish()
    }
}

/// `{variant: {field: value, ...}}`.
struct VariantStruct<'a> {
    outer: Map<'a>,
    inner: Vec<u8>,
    entries: Vec<Vec<u8>>,
}

impl ser::SerializeStructVariant for VariantStruct<'_> {
    type Ok = ();
    type Error = Never;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, name: &'static str, v: &T) -> Result<(), Never> {
        let mut e = Vec::new();
        Canonical {
            buf: &mut e,
            spare: &mut *self.outer.spare,
        }
        .str(name)?;
        v.serialize(Canonical {
            buf: &mut e,
            spare: &mut *self.outer.spare,
        })?;
        self.entries.push(e);
        Ok(())
    }
    fn end(mut self) -> Result<(), Never> {
        self.entries.sort_unstable();
        self.inner.push(MAP);
        self.inner.extend_from_slice(&(self.entries.len() as u64).to_le_bytes());
        for e in &self.entries {
            self.inner.extend_from_slice(e);
        }
        if let Some(e) = self.outer.entries.last_mut() {
            e.extend_from_slice(&self.inner);
        }
        self.outer.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn enc<T: Serialize>(v: &T) -> Vec<u8> {
        let mut buf = Vec::new();
        encode_value(&mut buf, v, &mut Vec::new());
        buf
    }

    #[test]
    fn typed_values_encode_like_their_json() {
        #[derive(Serialize)]
        struct Port {
            speed: u32,
            name: String,
            tags: Vec<&'static str>,
            extra: Option<bool>,
        }
        #[derive(Serialize)]
        enum Mode {
            Off,
            Fixed(u16),
            Range { lo: u8, hi: u8 },
            Pair(i8, f64),
        }
        let p = Port {
            speed: 1000,
            name: "eth0".into(),
            tags: vec!["a", "b"],
            extra: None,
        };
        assert_eq!(enc(&p), enc(&serde_json::to_value(&p).unwrap()));
        for m in [
            Mode::Off,
            Mode::Fixed(7),
            Mode::Range { lo: 1, hi: 9 },
            Mode::Pair(-1, 2.5),
        ] {
            assert_eq!(enc(&m), enc(&serde_json::to_value(&m).unwrap()));
        }
        let mut h = std::collections::HashMap::new();
        for i in 0..20 {
            h.insert(format!("k{i}"), i);
        }
        assert_eq!(enc(&h), enc(&serde_json::to_value(&h).unwrap()));
        assert_ne!(enc(&json!(1)), enc(&json!(1.0)), "integers and floats are typed");
        assert_ne!(enc(&json!([1, 2])), enc(&json!([2, 1])), "sequences keep their order");
        assert_eq!(enc(&json!({"a": 1, "b": 2})), enc(&json!({"b": 2, "a": 1})));
    }
}
