//! Identifier parts and unique ids: how identifier values are written in
//! the id a store keys a model by (`nyc__r1`), and read back.

use std::sync::Arc;

use serde_json::Value;

/// A value that can be part of a unique id. Implemented for strings,
/// integers, `bool`, `char` and `Option` of those; implement
/// [`write_text`](IdPart::write_text) for your own key types (they are keyed
/// as strings).
///
/// A unique id joins its parts with `__`, as the Python library does, but
/// unlike it the stored key is an unambiguous encoding of the typed values:
/// a string is written as it is unless it could be read as something else
/// (it contains `__`, starts or ends with `_`, starts with `"`, is empty, is
/// `None`, `true`, `false`, `null` or a number), in which case it is written
/// as a JSON string literal. So `("a__b", "c")` and `("a", "b__c")`, `None`
/// and `"None"`, `1` and `"1"` are different keys, and the usual ids
/// (`r1__eth0`, `sw__7`) read as before. This is the one text form of a
/// key: diffs, errors and typed keys print it, and
/// [`ModelSchema::parse_key`](crate::ModelSchema::parse_key) reads it back.
/// The readable form (plain text joined by `__`, the Python library's, not
/// unique) is [`readable_id_of`].
pub trait IdPart {
    /// Appends this value's plain text (the readable form).
    fn write_text(&self, out: &mut String);
    /// Appends this value's key part (the unambiguous form). The default
    /// keys the text as a string.
    fn write_id(&self, out: &mut String) {
        let mut text = String::new();
        self.write_text(&mut text);
        write_str_id(&text, out);
    }
    /// This value in a [`ModelKey`](super::ModelKey). The default keys the
    /// text as a string; a type that overrides `write_id` to write
    /// something else overrides this to match.
    fn key_value(&self) -> super::KeyValue {
        let mut text = String::new();
        self.write_text(&mut text);
        super::KeyValue::Str(text)
    }
    /// Appends this value's key encoding (that of
    /// [`key_value`](Self::key_value)); whether the key gives back the
    /// value's JSON as it is. Strings, integers and booleans write
    /// themselves without a copy; the default goes through `key_value`
    /// and answers no (the JSON is not known here).
    #[doc(hidden)]
    fn write_key(&self, out: &mut Vec<u8>) -> bool {
        self.key_value().encode(out);
        false
    }
}

/// Appends a string's key encoding.
fn write_str_key(s: &str, out: &mut Vec<u8>) -> bool {
    out.push(0x06);
    super::escape(s.as_bytes(), out);
    true
}

/// Whether a string must be quoted in a key to stay distinct from a
/// number, a boolean, `None` or a separator.
fn needs_quotes(s: &str) -> bool {
    let Some(first) = s.chars().next() else {
        return true;
    };
    s.contains(ID_SEPARATOR)
        || s.starts_with('_')
        || s.ends_with('_')
        || first == '"'
        // Read back, JSON's white space around a value is skipped: ` ""`
        // or ` 5` would come back as another value.
        || s.starts_with([' ', '\t', '\n', '\r'])
        || s.ends_with([' ', '\t', '\n', '\r'])
        || matches!(s, "None" | "true" | "false" | "null")
        || (matches!(first, '0'..='9' | '-' | '+' | '.' | 'i' | 'I' | 'n' | 'N') && s.parse::<f64>().is_ok())
}

/// Appends a string key part: as it is, or quoted when it could be misread.
fn write_str_id(s: &str, out: &mut String) {
    if needs_quotes(s) {
        // A JSON string literal: escaping is well defined and unambiguous.
        out.push_str(&Value::String(s.to_string()).to_string());
    } else {
        out.push_str(s);
    }
}

impl IdPart for String {
    fn write_text(&self, out: &mut String) {
        out.push_str(self);
    }
    fn write_id(&self, out: &mut String) {
        write_str_id(self, out);
    }
    fn write_key(&self, out: &mut Vec<u8>) -> bool {
        write_str_key(self, out)
    }
}
impl IdPart for str {
    fn write_text(&self, out: &mut String) {
        out.push_str(self);
    }
    fn write_id(&self, out: &mut String) {
        write_str_id(self, out);
    }
    fn write_key(&self, out: &mut Vec<u8>) -> bool {
        write_str_key(self, out)
    }
}
impl IdPart for Box<str> {
    fn write_text(&self, out: &mut String) {
        out.push_str(self);
    }
    fn write_id(&self, out: &mut String) {
        write_str_id(self, out);
    }
    fn write_key(&self, out: &mut Vec<u8>) -> bool {
        write_str_key(self, out)
    }
}
impl IdPart for Arc<str> {
    fn write_text(&self, out: &mut String) {
        out.push_str(self);
    }
    fn write_id(&self, out: &mut String) {
        write_str_id(self, out);
    }
    fn write_key(&self, out: &mut Vec<u8>) -> bool {
        write_str_key(self, out)
    }
}
#[cfg(feature = "compact_str")]
impl IdPart for compact_str::CompactString {
    fn write_text(&self, out: &mut String) {
        out.push_str(self);
    }
    fn write_id(&self, out: &mut String) {
        write_str_id(self, out);
    }
    fn write_key(&self, out: &mut Vec<u8>) -> bool {
        write_str_key(self, out)
    }
}
impl IdPart for char {
    fn write_text(&self, out: &mut String) {
        out.push(*self);
    }
    fn write_id(&self, out: &mut String) {
        write_str_id(self.encode_utf8(&mut [0; 4]), out);
    }
}
impl<T: IdPart + ?Sized> IdPart for &T {
    fn write_text(&self, out: &mut String) {
        (**self).write_text(out)
    }
    fn write_id(&self, out: &mut String) {
        (**self).write_id(out)
    }
    fn key_value(&self) -> super::KeyValue {
        (**self).key_value()
    }
    fn write_key(&self, out: &mut Vec<u8>) -> bool {
        (**self).write_key(out)
    }
}
impl<T: IdPart> IdPart for Option<T> {
    fn write_text(&self, out: &mut String) {
        match self {
            Some(v) => v.write_text(out),
            None => out.push_str("None"),
        }
    }
    fn write_id(&self, out: &mut String) {
        match self {
            Some(v) => v.write_id(out),
            None => out.push_str("None"),
        }
    }
    fn key_value(&self) -> super::KeyValue {
        match self {
            Some(v) => v.key_value(),
            None => super::KeyValue::Null,
        }
    }
    fn write_key(&self, out: &mut Vec<u8>) -> bool {
        match self {
            Some(v) => v.write_key(out),
            None => {
                super::KeyValue::Null.encode(out);
                true
            }
        }
    }
}
macro_rules! id_part_display {
    ($($t:ty),*) => {$(
        impl IdPart for $t {
            fn write_text(&self, out: &mut String) {
                use std::fmt::Write;
                let _ = write!(out, "{self}");
            }
            fn write_id(&self, out: &mut String) {
                self.write_text(out)
            }
            fn key_value(&self) -> super::KeyValue {
                #[allow(clippy::unnecessary_fallible_conversions)]
                match i128::try_from(*self) {
                    Ok(i) => super::KeyValue::Int(i),
                    Err(_) => super::KeyValue::Str(self.to_string()),
                }
            }
            fn write_key(&self, out: &mut Vec<u8>) -> bool {
                let k = self.key_value();
                k.encode(out);
                // As JSON, a number (or out of JSON's range: not read back).
                matches!(k, super::KeyValue::Int(_)) && k.reads_back()
            }
        }
    )*};
}
id_part_display!(i8, i16, i32, i64, i128, isize, u8, u16, u32, u64, u128, usize);

impl IdPart for bool {
    fn write_text(&self, out: &mut String) {
        out.push_str(if *self { "true" } else { "false" });
    }
    fn write_id(&self, out: &mut String) {
        self.write_text(out)
    }
    fn key_value(&self) -> super::KeyValue {
        super::KeyValue::Bool(*self)
    }
    fn write_key(&self, out: &mut Vec<u8>) -> bool {
        self.key_value().encode(out);
        true
    }
}

impl IdPart for Value {
    fn write_text(&self, out: &mut String) {
        match self {
            Value::String(s) => out.push_str(s),
            Value::Null => out.push_str("None"),
            other => {
                use std::fmt::Write;
                let _ = write!(out, "{other}");
            }
        }
    }
    fn write_id(&self, out: &mut String) {
        match self {
            Value::String(s) => write_str_id(s, out),
            // Lists and maps as identifiers: keyed by their JSON text, quoted.
            Value::Array(_) | Value::Object(_) => write_str_id(&self.to_string(), out),
            other => other.write_text(out),
        }
    }
    fn key_value(&self) -> super::KeyValue {
        super::KeyValue::from(self)
    }
    fn write_key(&self, out: &mut Vec<u8>) -> bool {
        super::encode_values([self], out)
    }
}

/// The separator between identifier values in a unique id.
pub const ID_SEPARATOR: &str = "__";

/// Builds a unique id (the store key) from identifier values, e.g. `r1__eth0`.
pub fn unique_id_of<I: IdPart>(values: impl IntoIterator<Item = I>) -> String {
    let mut out = String::new();
    for (i, v) in values.into_iter().enumerate() {
        if i > 0 {
            out.push_str(ID_SEPARATOR);
        }
        v.write_id(&mut out);
    }
    out
}

/// The readable form of a unique id: the values' plain text joined by `__`
/// (the Python library's unique id). Not unique in general: for display only.
pub fn readable_id_of<I: IdPart>(values: impl IntoIterator<Item = I>) -> String {
    let mut out = String::new();
    for (i, v) in values.into_iter().enumerate() {
        if i > 0 {
            out.push_str(ID_SEPARATOR);
        }
        v.write_text(&mut out);
    }
    out
}
