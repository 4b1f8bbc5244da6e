//! [`Attrs`]: a model's named values, in order.

use std::borrow::Cow;
use std::fmt;

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use hashbrown::{DefaultHashBuilder, HashTable};
use std::hash::BuildHasher;

/// Named values (identifiers or attributes), in schema order, each name
/// once. Names of derived models borrow their `'static` field names, so
/// building one allocates no name.
///
/// A list, not a hash map: a model has a handful of fields, and maps are
/// made per model or per change (hooks, the journal, a diff's accessors),
/// so one allocation of `(name, value)` pairs, found by a scan, beats a
/// hash table beside them. Past 16 values (a wide table's row, say) a hash index of the
/// names keeps lookups constant. Compared like a map: the
/// same names with the same values, in any order.
///
/// ```
/// use diffsync::Attrs;
///
/// let mut a = Attrs::new();
/// a.insert("role".into(), "edge".into());
/// a.insert("mtu".into(), 9000.into());
/// assert_eq!(a["role"], "edge");
/// assert_eq!(a.insert("role".into(), "core".into()), Some("edge".into()));
/// assert_eq!(a.keys().collect::<Vec<_>>(), ["role", "mtu"]);
/// let b: Attrs = [("mtu".into(), 9000.into()), ("role".into(), "core".into())].into_iter().collect();
/// assert_eq!(a, b);
/// ```
#[derive(Clone, Default)]
pub struct Attrs {
    pairs: Vec<(Cow<'static, str>, Value)>,
    /// The position of each name, once there are more than [`INDEXED_FROM`].
    index: Option<Box<Index>>,
}

/// How many values an [`Attrs`] holds before it indexes their names.
const INDEXED_FROM: usize = 16;

#[derive(Clone)]
struct Index {
    positions: HashTable<u32>,
    hasher: DefaultHashBuilder,
}

impl Index {
    fn of(pairs: &[(Cow<'static, str>, Value)]) -> Box<Index> {
        let mut index = Box::new(Index {
            positions: HashTable::with_capacity(pairs.len()),
            hasher: DefaultHashBuilder::default(),
        });
        for i in 0..pairs.len() {
            index.add(pairs, i);
        }
        index
    }

    /// Indexes `pairs[i]`'s name (not there yet).
    fn add(&mut self, pairs: &[(Cow<'static, str>, Value)], i: usize) {
        let hasher = &self.hasher;
        let at = u32::try_from(i).expect("fewer than 2^32 values");
        self.positions.insert_unique(hasher.hash_one(&*pairs[i].0), at, |&j| {
            hasher.hash_one(&*pairs[j as usize].0)
        });
    }

    fn find(&self, pairs: &[(Cow<'static, str>, Value)], name: &str) -> Option<usize> {
        self.positions
            .find(self.hasher.hash_one(name), |&j| pairs[j as usize].0 == name)
            .map(|&j| j as usize)
    }
}

/// A name and its value, borrowed.
type Pair<'a> = (&'a Cow<'static, str>, &'a Value);

/// The iterator of [`Attrs::iter`].
pub type Iter<'a> =
    std::iter::Map<std::slice::Iter<'a, (Cow<'static, str>, Value)>, fn(&'a (Cow<'static, str>, Value)) -> Pair<'a>>;

impl Attrs {
    /// No values.
    pub fn new() -> Attrs {
        Attrs::default()
    }

    /// No values, with room for `n`.
    pub fn with_capacity(n: usize) -> Attrs {
        Attrs {
            pairs: Vec::with_capacity(n),
            index: None,
        }
    }

    /// How many values.
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    fn position(&self, name: &str) -> Option<usize> {
        match &self.index {
            Some(index) => index.find(&self.pairs, name),
            None => self.pairs.iter().position(|(n, _)| n == name),
        }
    }

    /// The index, after the names changed other than by a push.
    fn reindex(&mut self) {
        self.index = (self.pairs.len() > INDEXED_FROM).then(|| Index::of(&self.pairs));
    }

    /// Sets `name` to `value`: in its place if it is there (returning the
    /// value it had), else at the end.
    pub fn insert(&mut self, name: Cow<'static, str>, value: Value) -> Option<Value> {
        if let Some(i) = self.position(&name) {
            return Some(std::mem::replace(&mut self.pairs[i].1, value));
        }
        self.pairs.push((name, value));
        match &mut self.index {
            Some(index) => index.add(&self.pairs, self.pairs.len() - 1),
            None if self.pairs.len() > INDEXED_FROM => self.index = Some(Index::of(&self.pairs)),
            None => {}
        }
        None
    }

    /// The value of `name`.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.position(name).map(|i| &self.pairs[i].1)
    }

    /// The value of `name`, to change it.
    pub fn get_mut(&mut self, name: &str) -> Option<&mut Value> {
        self.position(name).map(|i| &mut self.pairs[i].1)
    }

    /// Whether `name` has a value.
    pub fn contains_key(&self, name: &str) -> bool {
        self.position(name).is_some()
    }

    /// Takes `name` out, keeping the others in order.
    pub fn shift_remove(&mut self, name: &str) -> Option<Value> {
        let i = self.position(name)?;
        let (_, value) = self.pairs.remove(i);
        self.reindex();
        Some(value)
    }

    /// Keeps the values `keep` says yes to, in order.
    pub fn retain(&mut self, mut keep: impl FnMut(&Cow<'static, str>, &mut Value) -> bool) {
        self.pairs.retain_mut(|(n, v)| keep(n, v));
        self.reindex();
    }

    /// The names and values, in order.
    pub fn iter(&self) -> Iter<'_> {
        self.pairs.iter().map(|(n, v)| (n, v))
    }

    /// The names and values, in order, the values to change.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&Cow<'static, str>, &mut Value)> {
        self.pairs.iter_mut().map(|(n, v)| (&*n, v))
    }

    /// The names, in order.
    pub fn keys(&self) -> impl DoubleEndedIterator<Item = &Cow<'static, str>> + ExactSizeIterator {
        self.pairs.iter().map(|(n, _)| n)
    }

    /// The values, in order.
    pub fn values(&self) -> impl DoubleEndedIterator<Item = &Value> + ExactSizeIterator {
        self.pairs.iter().map(|(_, v)| v)
    }
}

impl PartialEq for Attrs {
    fn eq(&self, other: &Attrs) -> bool {
        self.len() == other.len() && self.iter().all(|(n, v)| other.get(n) == Some(v))
    }
}

impl Eq for Attrs {}

impl fmt::Debug for Attrs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl std::ops::Index<&str> for Attrs {
    type Output = Value;

    /// The value of `name`; panics if it has none (as a map's index does).
    fn index(&self, name: &str) -> &Value {
        self.get(name).unwrap_or_else(|| {
            panic!(
                "no value named {name:?} among [{}]",
                self.keys().map(|k| k.as_ref()).collect::<Vec<_>>().join(", ")
            )
        })
    }
}

impl FromIterator<(Cow<'static, str>, Value)> for Attrs {
    fn from_iter<I: IntoIterator<Item = (Cow<'static, str>, Value)>>(iter: I) -> Attrs {
        let mut out = Attrs::new();
        out.extend(iter);
        out
    }
}

impl Extend<(Cow<'static, str>, Value)> for Attrs {
    fn extend<I: IntoIterator<Item = (Cow<'static, str>, Value)>>(&mut self, iter: I) {
        for (n, v) in iter {
            self.insert(n, v);
        }
    }
}

impl IntoIterator for Attrs {
    type Item = (Cow<'static, str>, Value);
    type IntoIter = std::vec::IntoIter<(Cow<'static, str>, Value)>;
    fn into_iter(self) -> Self::IntoIter {
        self.pairs.into_iter()
    }
}

impl<'a> IntoIterator for &'a Attrs {
    type Item = Pair<'a>;
    type IntoIter = Iter<'a>;
    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

impl Serialize for Attrs {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.len()))?;
        for (n, v) in self {
            map.serialize_entry(n, v)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Attrs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Attrs, D::Error> {
        struct Named;
        impl<'de> Visitor<'de> for Named {
            type Value = Attrs;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of names to values")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Attrs, A::Error> {
                let mut out = Attrs::with_capacity(map.size_hint().unwrap_or(0));
                while let Some((n, v)) = map.next_entry::<String, Value>()? {
                    out.insert(Cow::Owned(n), v);
                }
                Ok(out)
            }
        }
        d.deserialize_map(Named)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_set_again_keeps_its_place_and_a_removal_keeps_the_order() {
        let mut a: Attrs = [("a".into(), 1.into()), ("b".into(), 2.into()), ("c".into(), 3.into())]
            .into_iter()
            .collect();
        assert_eq!(a.insert("b".into(), 20.into()), Some(2.into()));
        assert_eq!(a.shift_remove("a"), Some(1.into()));
        assert_eq!(a.shift_remove("a"), None);
        assert_eq!(
            a.iter().map(|(n, v)| (n.as_ref(), v.clone())).collect::<Vec<_>>(),
            [("b", 20.into()), ("c", 3.into())]
        );
        *a.get_mut("c").unwrap() = 30.into();
        assert_eq!(serde_json::to_string(&a).unwrap(), r#"{"b":20,"c":30}"#);
        let back: Attrs = serde_json::from_str(r#"{"b":20,"c":30,"b":21}"#).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(back["b"], 21);
        assert_ne!(back, a);
        assert_eq!(format!("{a:?}"), r#"{"b": Number(20), "c": Number(30)}"#);
    }

    #[test]
    fn a_wide_one_finds_its_names_through_every_change() {
        let name = |i: usize| Cow::Owned(format!("col{i:03}"));
        let mut a: Attrs = (0..40).map(|i| (name(i), i.into())).collect();
        assert!(a.index.is_some());
        assert_eq!(a.insert(name(7), 700.into()), Some(7.into()));
        assert_eq!(a.shift_remove("col003"), Some(3.into()));
        a.retain(|n, _| n.as_ref() != "col010");
        a.insert(name(99), 99.into());
        assert_eq!(a.len(), 39);
        for i in (0..40).filter(|&i| i != 3 && i != 10) {
            let want = if i == 7 { 700 } else { i };
            assert_eq!(a.get(&name(i)), Some(&want.into()), "col{i:03}");
        }
        assert_eq!(
            (a.get("col003"), a.get("col010"), a["col099"].clone()),
            (None, None, 99.into())
        );
        // The same values in another order, and fewer than the index needs.
        let reversed: Attrs = a.clone().into_iter().rev().collect();
        assert_eq!(reversed, a);
        a.retain(|n, _| n.as_ref() < "col005");
        assert!(a.index.is_none());
        assert_eq!(
            a.keys().map(|k| k.as_ref()).collect::<Vec<_>>(),
            ["col000", "col001", "col002", "col004"]
        );
    }
}
