//! Keys: a model named by its type and its identifier values.
//!
//! A [`ModelKey`] is a model type plus the values of its identifiers; a
//! [`Key<T>`] is the same for a model type known at compile time, so a key
//! of one type cannot fetch another. Keys are built only from identifier
//! values (`#[derive(DiffModel)]` generates `Device::key(site, name)` and
//! `device.key()`), never from a hand-joined string.
//!
//! # The canonical encoding
//!
//! [`ModelKey::to_bytes`] is the key's canonical byte form: stable across
//! processes, platforms and versions (a change to it is a new format
//! version), and ordered: comparing two encodings byte by byte orders the
//! keys by model type name (bytewise), then by their identifier values in
//! order, each value by kind first (`null` < `false` < `true` < integers <
//! other numbers < strings) and then by value (integers numerically, other
//! numbers by IEEE 754 total order, strings bytewise). `ModelKey`'s `Ord`
//! is this order. It is the order range-based reconciliation and per-key
//! history use.
//!
//! | part | bytes |
//! |---|---|
//! | model type | its UTF-8 bytes, escaped, then `00` |
//! | `null` / `false` / `true` | `01` / `02` / `03` |
//! | integer (up to 128 bits) | `04`, then 16 bytes big-endian of the value with its sign bit flipped |
//! | other number | `05`, then 8 bytes big-endian: the IEEE 754 bits, all flipped when negative, else the sign bit flipped |
//! | string | `06`, then its UTF-8 bytes, escaped, then `00` |
//!
//! Escaped: each `00` byte is written `00 FF`. So no encoding is a prefix
//! of another's part, and the encoding is injective: `"100"` and `100`,
//! `("a__b", "c")` and `("a", "b__c")` are different keys.
//!
//! # The text form
//!
//! `Display` writes `type:unique_id`, e.g. `device:nyc__r1`, where the
//! unique id joins the values with `__`, quoting (as a JSON string) any
//! string that could be misread (`vlan__"100"`). [`ModelKey::parse`]
//! reads it back, for command lines and runtime models.
//!
//! ```
//! use diffsync::{DiffModel, Key, ModelKey};
//!
//! #[derive(DiffModel, Clone, Debug, PartialEq)]
//! #[diffsync(name = "vlan")]
//! struct Vlan {
//!     #[diffsync(id)]
//!     site: String,
//!     #[diffsync(id)]
//!     name: String,
//!     vid: u16,
//! }
//!
//! let key: Key<Vlan> = Vlan::key("nyc", "100");
//! assert_eq!(key.to_string(), r#"vlan:nyc__"100""#);
//! let vlan = Vlan { site: "nyc".into(), name: "100".into(), vid: 100 };
//! assert_eq!(vlan.key(), key);
//! assert_eq!(ModelKey::parse(&key.to_string()).unwrap(), *key.erased());
//! assert!(Vlan::key("nyc", "100") < Vlan::key("nyc", "20")); // strings: bytewise
//! ```

use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::marker::PhantomData;

use serde_json::Value;

mod id;

pub use id::{ID_SEPARATOR, IdPart, readable_id_of, unique_id_of};

/// One identifier value of a key.
#[derive(Clone, Debug)]
pub enum KeyValue {
    /// No value (`None`, JSON `null`).
    Null,
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i128),
    /// A number that is not an integer.
    Float(f64),
    /// A string (lists and maps as identifiers are keyed by their JSON text).
    Str(String),
}

impl KeyValue {
    /// The value as JSON (what a model's `identifiers()` holds).
    pub fn to_value(&self) -> Value {
        match self {
            KeyValue::Null => Value::Null,
            KeyValue::Bool(b) => Value::Bool(*b),
            KeyValue::Int(i) => i64::try_from(*i)
                .map(Value::from)
                .or_else(|_| u64::try_from(*i).map(Value::from))
                .unwrap_or_else(|_| Value::String(i.to_string())),
            KeyValue::Float(f) => Value::from(*f),
            KeyValue::Str(s) => Value::String(s.clone()),
        }
    }

    /// Whether [`to_value`](Self::to_value) gives back the JSON value
    /// this was made from, whatever it was (an integer out of JSON's
    /// range reads back as its text).
    pub(crate) fn reads_back(&self) -> bool {
        match self {
            KeyValue::Int(i) => i64::try_from(*i).is_ok() || u64::try_from(*i).is_ok(),
            KeyValue::Float(_) => false,
            KeyValue::Null | KeyValue::Bool(_) | KeyValue::Str(_) => true,
        }
    }

    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        match self {
            KeyValue::Null => out.push(0x01),
            KeyValue::Bool(false) => out.push(0x02),
            KeyValue::Bool(true) => out.push(0x03),
            KeyValue::Int(i) => {
                out.push(0x04);
                out.extend_from_slice(&((*i as u128) ^ (1 << 127)).to_be_bytes());
            }
            KeyValue::Float(f) => {
                out.push(0x05);
                let bits = f.to_bits();
                let ordered = if bits >> 63 == 1 { !bits } else { bits ^ (1 << 63) };
                out.extend_from_slice(&ordered.to_be_bytes());
            }
            KeyValue::Str(s) => {
                out.push(0x06);
                escape(s.as_bytes(), out);
            }
        }
    }
}

impl From<&Value> for KeyValue {
    fn from(v: &Value) -> KeyValue {
        match v {
            Value::Null => KeyValue::Null,
            Value::Bool(b) => KeyValue::Bool(*b),
            Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
                (Some(i), _, _) => KeyValue::Int(i.into()),
                (_, Some(u), _) => KeyValue::Int(u.into()),
                (_, _, Some(f)) => KeyValue::Float(f),
                _ => KeyValue::Str(n.to_string()),
            },
            Value::String(s) => KeyValue::Str(s.clone()),
            other => KeyValue::Str(other.to_string()),
        }
    }
}

impl PartialEq for KeyValue {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for KeyValue {}

impl PartialOrd for KeyValue {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// The order of the canonical encoding.
impl Ord for KeyValue {
    fn cmp(&self, other: &Self) -> Ordering {
        let rank = |v: &KeyValue| match v {
            KeyValue::Null => 0,
            KeyValue::Bool(false) => 1,
            KeyValue::Bool(true) => 2,
            KeyValue::Int(_) => 3,
            KeyValue::Float(_) => 4,
            KeyValue::Str(_) => 5,
        };
        match (self, other) {
            (KeyValue::Int(a), KeyValue::Int(b)) => a.cmp(b),
            (KeyValue::Float(a), KeyValue::Float(b)) => a.total_cmp(b),
            (KeyValue::Str(a), KeyValue::Str(b)) => a.as_bytes().cmp(b.as_bytes()),
            _ => rank(self).cmp(&rank(other)),
        }
    }
}

impl IdPart for KeyValue {
    fn write_text(&self, out: &mut String) {
        self.to_value().write_text(out)
    }
    fn write_id(&self, out: &mut String) {
        self.to_value().write_id(out)
    }
    fn key_value(&self) -> KeyValue {
        self.clone()
    }
}

/// Appends `bytes` escaped (`00` → `00 FF`) and terminated (`00`).
/// Appends the key encoding of JSON identifier values; whether a key
/// gives every one of them back as it is (not a float, a list or a map).
pub(crate) fn encode_values<'a>(values: impl IntoIterator<Item = &'a Value>, out: &mut Vec<u8>) -> bool {
    let mut exact = true;
    for v in values {
        match v {
            Value::String(s) => {
                out.push(0x06);
                escape(s.as_bytes(), out);
            }
            Value::Array(_) | Value::Object(_) => {
                exact = false;
                KeyValue::from(v).encode(out);
            }
            other => {
                let k = KeyValue::from(other);
                exact &= k.reads_back();
                k.encode(out);
            }
        }
    }
    exact
}

fn escape(bytes: &[u8], out: &mut Vec<u8>) {
    // Copied a run at a time between NUL bytes (there are none in most
    // keys), not pushed a byte at a time.
    let mut rest = bytes;
    while let Some(i) = rest.iter().position(|&b| b == 0) {
        out.extend_from_slice(&rest[..=i]);
        out.push(0xFF);
        rest = &rest[i + 1..];
    }
    out.extend_from_slice(rest);
    out.push(0);
}

/// Reads an escaped, terminated byte string from the front of `input`.
fn unescape(input: &mut &[u8]) -> Result<Vec<u8>, KeyParseError> {
    let mut out = Vec::new();
    let mut i = 0;
    loop {
        match input.get(i) {
            None => return Err(KeyParseError::Encoding("a string without its end".into())),
            Some(0) if input.get(i + 1) == Some(&0xFF) => {
                out.push(0);
                i += 2;
            }
            Some(0) => {
                *input = &input[i + 1..];
                return Ok(out);
            }
            Some(&b) => {
                out.push(b);
                i += 1;
            }
        }
    }
}

/// A key that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyParseError {
    /// The text has no `type:` in front.
    #[error("{0:?} is not a key: expected type:id, e.g. device:nyc__r1")]
    NoType(String),
    /// A quoted part is not a valid JSON string.
    #[error("key {key:?}: the quoted part {part:?} is not a valid JSON string")]
    Quoted {
        /// The whole text.
        key: String,
        /// The part at fault.
        part: String,
    },
    /// A typed key of another model type.
    #[error("key {key:?} is of model type {found:?}, not {expected:?}")]
    WrongType {
        /// The whole text.
        key: String,
        /// The type the key names.
        found: String,
        /// The type asked for.
        expected: String,
    },
    /// Bytes that are not a canonical key encoding.
    #[error("not a key encoding: {0}")]
    Encoding(String),
    /// A key's text does not fit its model type's identifiers (how many
    /// there are, or the kind of one).
    #[error("{key:?} is no key of model type {model_type:?}: {message}")]
    Schema {
        /// The text.
        key: String,
        /// The model type.
        model_type: String,
        /// What does not fit.
        message: String,
    },
}

/// A model named by its type and identifier values (see the [module
/// docs](self) for its encoding, order and text form).
#[derive(Clone)]
pub struct ModelKey {
    model_type: Cow<'static, str>,
    /// The identifier values, encoded.
    ids: Box<[u8]>,
    /// The unique id's text (what a store indexes by), made once: a lookup
    /// by key builds no string.
    uid: Box<str>,
}

impl ModelKey {
    /// The key of the `model_type` model with these identifier values (in
    /// the schema's identifier order).
    pub fn new(model_type: impl Into<Cow<'static, str>>, values: impl IntoIterator<Item = KeyValue>) -> ModelKey {
        let values: Vec<KeyValue> = values.into_iter().collect();
        let mut ids = Vec::new();
        for v in &values {
            v.encode(&mut ids);
        }
        ModelKey {
            model_type: model_type.into(),
            ids: ids.into(),
            uid: unique_id_of(&values).into(),
        }
    }

    /// The key of a `model_type` model with these identifier values (JSON,
    /// in the schema's order) whose unique id's text `uid` was made from
    /// them already (a stored model's, a diff element's): the text is
    /// taken, not made again, and no value is copied on the way.
    pub(crate) fn with_unique_id<'a>(
        model_type: Cow<'static, str>,
        values: impl IntoIterator<Item = &'a Value>,
        uid: &str,
    ) -> ModelKey {
        // The encoding is about as long as the text (a tag per value, a
        // few escapes): one allocation, not a doubling per push.
        let mut ids = Vec::with_capacity(uid.len() + 8);
        encode_values(values, &mut ids);
        ModelKey {
            model_type,
            ids: ids.into(),
            uid: uid.into(),
        }
    }

    /// The key of a `model_type` model whose identifier values were
    /// encoded into `ids` already (a model's own
    /// [`write_key`](crate::model::AnyModel::write_key)), with the text
    /// `uid` made from the same values.
    pub(crate) fn from_encoded(model_type: Cow<'static, str>, ids: Vec<u8>, uid: &str) -> ModelKey {
        ModelKey {
            model_type,
            ids: ids.into(),
            uid: uid.into(),
        }
    }

    /// The model type.
    pub fn model_type(&self) -> &str {
        &self.model_type
    }

    /// The identifier values, in the schema's order.
    pub fn values(&self) -> Vec<KeyValue> {
        let mut rest: &[u8] = &self.ids;
        let mut out = Vec::new();
        while !rest.is_empty() {
            // Built by `new` or checked by `from_bytes`: well formed.
            out.push(read_value(&mut rest).expect("a key's own encoding"));
        }
        out
    }

    /// The unique id the store keys the model by (`nyc__r1`).
    pub fn unique_id(&self) -> &str {
        &self.uid
    }

    /// The canonical byte encoding.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.model_type.len() + 1 + self.ids.len());
        escape(self.model_type.as_bytes(), &mut out);
        out.extend_from_slice(&self.ids);
        out
    }

    /// Reads a canonical byte encoding back.
    pub fn from_bytes(bytes: &[u8]) -> Result<ModelKey, KeyParseError> {
        let mut rest = bytes;
        let model_type = String::from_utf8(unescape(&mut rest)?)
            .map_err(|_| KeyParseError::Encoding("a model type that is not UTF-8".into()))?;
        let mut values = Vec::new();
        while !rest.is_empty() {
            values.push(read_value(&mut rest)?);
        }
        Ok(ModelKey::new(model_type, values))
    }

    /// The key of the `model_type` model the store keys by `unique_id`, a
    /// text [`unique_id_of`] made (read back into its values, which that
    /// text quotes wherever a kind could be misread; an id no model would
    /// have is keyed as one string). Text a user typed is read against the
    /// type's schema instead ([`ModelSchema::parse_key`](crate::ModelSchema::parse_key)).
    pub(crate) fn from_unique_id(model_type: &str, unique_id: &str) -> ModelKey {
        let values = parse_unique_id(unique_id).unwrap_or_else(|_| vec![KeyValue::Str(unique_id.to_string())]);
        ModelKey::new(model_type.to_string(), values)
    }

    /// Reads the text form (`device:nyc__r1`) back.
    pub fn parse(text: &str) -> Result<ModelKey, KeyParseError> {
        let Some((model_type, id)) = text.split_once(':').filter(|(t, _)| !t.is_empty()) else {
            return Err(KeyParseError::NoType(text.to_string()));
        };
        let values = parse_unique_id(id).map_err(|part| KeyParseError::Quoted {
            key: text.to_string(),
            part,
        })?;
        Ok(ModelKey::new(model_type.to_string(), values))
    }
}

/// Reads one encoded value from the front of `input`.
fn read_value(input: &mut &[u8]) -> Result<KeyValue, KeyParseError> {
    let (&tag, rest) = input
        .split_first()
        .ok_or_else(|| KeyParseError::Encoding("a value without its kind".into()))?;
    *input = rest;
    let mut fixed = |n: usize| -> Result<&[u8], KeyParseError> {
        if input.len() < n {
            return Err(KeyParseError::Encoding("a number cut short".into()));
        }
        let (head, tail) = input.split_at(n);
        *input = tail;
        Ok(head)
    };
    Ok(match tag {
        0x01 => KeyValue::Null,
        0x02 => KeyValue::Bool(false),
        0x03 => KeyValue::Bool(true),
        0x04 => {
            let b: [u8; 16] = fixed(16)?.try_into().expect("16 bytes");
            KeyValue::Int((u128::from_be_bytes(b) ^ (1 << 127)) as i128)
        }
        0x05 => {
            let b: [u8; 8] = fixed(8)?.try_into().expect("8 bytes");
            let ordered = u64::from_be_bytes(b);
            let bits = if ordered >> 63 == 1 {
                ordered ^ (1 << 63)
            } else {
                !ordered
            };
            KeyValue::Float(f64::from_bits(bits))
        }
        0x06 => KeyValue::Str(
            String::from_utf8(unescape(input)?)
                .map_err(|_| KeyParseError::Encoding("a string that is not UTF-8".into()))?,
        ),
        other => return Err(KeyParseError::Encoding(format!("unknown value kind {other:#04x}"))),
    })
}

/// Reads a unique id (`nyc__r1`, `vlan__"100"`) into its values: the
/// inverse of [`unique_id_of`]. `Err`: the quoted part that is not JSON.
fn parse_unique_id(id: &str) -> Result<Vec<KeyValue>, String> {
    let mut out = Vec::new();
    // An empty string value is written quoted: nothing here is no value.
    if id.is_empty() {
        return Ok(out);
    }
    let mut rest = id;
    loop {
        let (part, tail) = if rest.starts_with('"') {
            // A JSON string literal: up to its closing quote.
            let mut de = serde_json::Deserializer::from_str(rest).into_iter::<String>();
            let s = match de.next() {
                Some(Ok(s)) => s,
                _ => return Err(rest.split(ID_SEPARATOR).next().unwrap_or(rest).to_string()),
            };
            let used = de.byte_offset();
            out.push(KeyValue::Str(s));
            (None, &rest[used..])
        } else {
            match rest.find(ID_SEPARATOR) {
                Some(i) => (Some(&rest[..i]), &rest[i..]),
                None => (Some(rest), ""),
            }
        };
        if let Some(part) = part {
            out.push(plain_value(part));
        }
        match tail.strip_prefix(ID_SEPARATOR) {
            Some(t) => rest = t,
            None if tail.is_empty() => return Ok(out),
            None => return Err(tail.to_string()),
        }
    }
}

/// One part of a key's text: a quoted JSON string, or the text as it is.
pub(crate) enum TextPart<'a> {
    /// `"..."`: a string, unescaped.
    Quoted(String),
    /// As written.
    Plain(&'a str),
}

/// A unique id's text cut into `n` parts at the `__` outside quoted parts
/// (a key of one identifier is one part, `__` and all). `Err`: why not.
pub(crate) fn text_parts(id: &str, n: usize) -> Result<Vec<TextPart<'_>>, String> {
    let quoted = |text: &str| -> Option<(String, usize)> {
        let mut de = serde_json::Deserializer::from_str(text).into_iter::<String>();
        match de.next() {
            Some(Ok(s)) => Some((s, de.byte_offset())),
            _ => None,
        }
    };
    if n == 1 {
        return Ok(vec![match quoted(id) {
            Some((s, used)) if used == id.len() => TextPart::Quoted(s),
            _ => TextPart::Plain(id),
        }]);
    }
    let mut out = Vec::new();
    let mut rest = id;
    loop {
        let tail = if rest.starts_with('"') {
            let (s, used) = quoted(rest).ok_or_else(|| format!("the quoted part {rest:?} is not a JSON string"))?;
            out.push(TextPart::Quoted(s));
            &rest[used..]
        } else {
            let end = rest.find(ID_SEPARATOR).unwrap_or(rest.len());
            out.push(TextPart::Plain(&rest[..end]));
            &rest[end..]
        };
        match tail.strip_prefix(ID_SEPARATOR) {
            Some(t) => rest = t,
            None if tail.is_empty() => break,
            None => return Err(format!("{tail:?} follows a quoted part")),
        }
    }
    if out.len() != n {
        return Err(format!("{} parts where {n} identifiers are", out.len()));
    }
    Ok(out)
}

/// An unquoted part of a unique id: `None`, a boolean, a number or a string.
pub(crate) fn plain_value(part: &str) -> KeyValue {
    match part {
        "None" | "null" => KeyValue::Null,
        "true" => KeyValue::Bool(true),
        "false" => KeyValue::Bool(false),
        _ => {
            if let Ok(i) = part.parse::<i128>() {
                return KeyValue::Int(i);
            }
            // A string that reads as a number is written quoted.
            match part.parse::<f64>() {
                Ok(f) => KeyValue::Float(f),
                Err(_) => KeyValue::Str(part.to_string()),
            }
        }
    }
}

impl PartialEq for ModelKey {
    fn eq(&self, other: &Self) -> bool {
        self.model_type == other.model_type && self.ids == other.ids
    }
}

impl Eq for ModelKey {}

impl Hash for ModelKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.model_type.hash(state);
        self.ids.hash(state);
    }
}

impl PartialOrd for ModelKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// The order of the canonical encoding (the escaped type name is
/// order-preserving and ends before any value).
impl Ord for ModelKey {
    fn cmp(&self, other: &Self) -> Ordering {
        self.model_type
            .as_bytes()
            .cmp(other.model_type.as_bytes())
            .then_with(|| self.ids.cmp(&other.ids))
    }
}

impl fmt::Display for ModelKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.model_type, self.unique_id())
    }
}

impl fmt::Debug for ModelKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ModelKey({self})")
    }
}

impl std::str::FromStr for ModelKey {
    type Err = KeyParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ModelKey::parse(s)
    }
}

/// The key of a model of type `T` (see [`ModelKey`]): a key of one type
/// cannot fetch another.
pub struct Key<T> {
    key: ModelKey,
    _type: PhantomData<fn() -> T>,
}

impl<T> Key<T> {
    /// A typed key over an erased one the caller knows is of `T`'s type.
    pub(crate) fn assume(key: ModelKey) -> Key<T> {
        Key {
            key,
            _type: PhantomData,
        }
    }

    /// The erased key.
    pub fn erased(&self) -> &ModelKey {
        &self.key
    }

    /// The erased key, owned.
    pub fn into_erased(self) -> ModelKey {
        self.key
    }

    /// The unique id the store keys the model by.
    pub fn unique_id(&self) -> &str {
        self.key.unique_id()
    }

    /// The model type.
    pub fn model_type(&self) -> &str {
        self.key.model_type()
    }
}

impl<T> Clone for Key<T> {
    fn clone(&self) -> Self {
        Key::assume(self.key.clone())
    }
}

impl<T> PartialEq for Key<T> {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}

impl<T> Eq for Key<T> {}

impl<T> Hash for Key<T> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.key.hash(state)
    }
}

impl<T> PartialOrd for Key<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<T> Ord for Key<T> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key.cmp(&other.key)
    }
}

impl<T> fmt::Display for Key<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.key.fmt(f)
    }
}

impl<T> fmt::Debug for Key<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({})", self.key)
    }
}

impl<T> From<Key<T>> for ModelKey {
    fn from(k: Key<T>) -> ModelKey {
        k.key
    }
}

impl AsRef<ModelKey> for ModelKey {
    fn as_ref(&self) -> &ModelKey {
        self
    }
}

impl<T> AsRef<ModelKey> for Key<T> {
    fn as_ref(&self) -> &ModelKey {
        &self.key
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key(values: &[Value]) -> ModelKey {
        ModelKey::new("t", values.iter().map(KeyValue::from))
    }

    #[test]
    fn text_form_reads_back_for_every_kind() {
        for values in [
            vec![json!("nyc"), json!("r1")],
            vec![json!("100"), json!(100), json!(-7), json!(1.5), json!(-0.25)],
            vec![json!(null), json!("None"), json!(true), json!("true"), json!("")],
            vec![json!("a__b"), json!("_x_"), json!("\"q\""), json!("é\u{0}z")],
            vec![json!(u64::MAX), json!(i64::MIN), json!(1e300)],
        ] {
            let k = key(&values);
            assert_eq!(ModelKey::parse(&k.to_string()).unwrap(), k, "{k}");
            assert_eq!(ModelKey::from_bytes(&k.to_bytes()).unwrap(), k);
            assert_eq!(k.unique_id(), unique_id_of(values.iter()), "the store's key");
        }
    }

    #[test]
    fn bad_text_and_bytes_are_typed_errors() {
        assert!(matches!(ModelKey::parse("nyc__r1"), Err(KeyParseError::NoType(_))));
        assert!(matches!(
            ModelKey::parse(r#"t:"unclosed__x"#),
            Err(KeyParseError::Quoted { .. })
        ));
        assert!(ModelKey::from_bytes(&[b't', 0, 0x04, 1]).is_err());
        assert!(ModelKey::from_bytes(&[b't', 0, 0x09]).is_err());
        assert!(ModelKey::from_bytes(b"t").is_err());
    }
}
