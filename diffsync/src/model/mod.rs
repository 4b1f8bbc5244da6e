//! Models: the schema of a model type, the [`DiffModel`] trait that derived and
//! runtime-defined models implement, and [`DynModel`], a model described at run time.

use std::any::Any;
use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::flags::ModelFlags;
use crate::key::{Key, KeyParseError, KeyValue, ModelKey};

mod attrs;
pub(crate) mod column;
mod error;

pub use attrs::Attrs;

pub use error::{BoxError, Chain, ModelError, Said};

/// What a model's checks return.
type Result<T, E = ModelError> = std::result::Result<T, E>;

pub use column::AttrSource;

/// The kind of value a field holds, used to check runtime values.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ValueKind {
    /// A string.
    String,
    /// An integer.
    Integer,
    /// A floating point number (integers are accepted).
    Float,
    /// A boolean.
    Bool,
    /// A list.
    List,
    /// A map with string keys.
    Map,
    /// Anything.
    #[default]
    Any,
}

impl ValueKind {
    /// Whether a value is of this kind.
    pub(crate) fn accepts(self, v: &Value) -> bool {
        match self {
            ValueKind::String => v.is_string(),
            ValueKind::Integer => v.is_i64() || v.is_u64(),
            ValueKind::Float => v.is_number(),
            ValueKind::Bool => v.is_boolean(),
            ValueKind::List => v.is_array(),
            ValueKind::Map => v.is_object(),
            ValueKind::Any => true,
        }
    }
}

/// How an attribute is compared.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Compare {
    /// With the type's own equality.
    #[default]
    Exact,
    /// Collections compared as multisets (order ignored).
    Unordered,
    /// Strings compared without regard to case.
    IgnoreCase,
    /// A user function (derived models only).
    Custom,
}

/// One identifier or attribute of a model type. Read from a file (a
/// config, a schema in JSON), a key it does not have is an error naming it
/// (a typo of `optional` is not silently a required field).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldDef {
    /// Field name.
    pub name: Cow<'static, str>,
    /// Value kind.
    #[serde(default)]
    pub kind: ValueKind,
    /// Whether `null` is allowed.
    #[serde(default)]
    pub optional: bool,
    /// Comparison mode.
    #[serde(default)]
    pub compare: Compare,
    /// The value a runtime-defined model takes when it is built without this
    /// attribute (a create from a source that lacks it, say).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
}

impl FieldDef {
    /// A field of the given kind, required, compared exactly.
    pub const fn new(name: &'static str, kind: ValueKind) -> Self {
        FieldDef {
            name: Cow::Borrowed(name),
            kind,
            optional: false,
            compare: Compare::Exact,
            default: None,
        }
    }

    /// A field named at run time (read from a config, built in a loop).
    pub fn named(name: impl Into<Cow<'static, str>>, kind: ValueKind) -> Self {
        FieldDef {
            name: name.into(),
            ..FieldDef::new("", kind)
        }
    }

    /// The same field, `null` allowed.
    pub fn optional(mut self) -> Self {
        self.optional = true;
        self
    }

    /// The same field, compared so.
    pub fn compared(mut self, compare: Compare) -> Self {
        self.compare = compare;
        self
    }

    /// The same field, with the value a runtime model takes without it.
    pub fn with_default(mut self, default: Value) -> Self {
        self.default = Some(default);
        self
    }
}

/// Describes a model type: its name, identifiers, attributes, children and flags.
///
/// Derived models have a `'static` schema built by `#[derive(DiffModel)]`;
/// runtime-defined models share one behind an [`Arc`], e.g. read from JSON.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSchema {
    /// Model type name, e.g. `"device"`.
    pub name: Cow<'static, str>,
    /// Identifier fields, in unique-id order.
    pub identifiers: Cow<'static, [FieldDef]>,
    /// Compared attributes, in order.
    #[serde(default)]
    pub attributes: Cow<'static, [FieldDef]>,
    /// Fields that form the shortname (a display key unique among siblings);
    /// empty means the unique id.
    #[serde(default)]
    pub shortname: Cow<'static, [Cow<'static, str>]>,
    /// Child model type names, in processing order.
    #[serde(default)]
    pub children: Cow<'static, [Cow<'static, str>]>,
    /// Default flags of every model of this type.
    #[serde(default)]
    pub flags: ModelFlags,
    /// The attribute holding the model's modification time, read by the
    /// bidirectional strategy `newest` (`#[diffsync(timestamp)]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<Cow<'static, str>>,
    /// The attribute holding the model's version number, read by the
    /// bidirectional strategy `highest` (`#[diffsync(version)]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<Cow<'static, str>>,
    /// How bidirectional sync resolves this type's conflicts unless the
    /// run names a strategy for the type: `"left-wins"`, `"newest(30)"`,
    /// ... (the text form of [`Strategy`](crate::bidir::Strategy)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<Cow<'static, str>>,
}

impl ModelSchema {
    /// A model type with no field yet, built at run time:
    ///
    /// ```
    /// use diffsync::{FieldDef, ModelSchema, ValueKind};
    ///
    /// let device = ModelSchema::new("device")
    ///     .identifier(FieldDef::named("name", ValueKind::String))
    ///     .attribute(FieldDef::named("role", ValueKind::String))
    ///     .attribute(FieldDef::named("serial", ValueKind::String).optional())
    ///     .child("interface");
    /// device.validate()?;
    /// assert_eq!(device.parse_key("r1")?.to_string(), "device:r1");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(name: impl Into<Cow<'static, str>>) -> ModelSchema {
        ModelSchema {
            name: name.into(),
            identifiers: Cow::Owned(Vec::new()),
            attributes: Cow::Owned(Vec::new()),
            shortname: Cow::Owned(Vec::new()),
            children: Cow::Owned(Vec::new()),
            flags: ModelFlags::empty(),
            timestamp: None,
            version: None,
            strategy: None,
        }
    }

    /// The same type with one more identifier (in unique-id order).
    pub fn identifier(mut self, field: FieldDef) -> Self {
        self.identifiers.to_mut().push(field);
        self
    }

    /// The same type with one more attribute.
    pub fn attribute(mut self, field: FieldDef) -> Self {
        self.attributes.to_mut().push(field);
        self
    }

    /// The same type with one more child type.
    pub fn child(mut self, model_type: impl Into<Cow<'static, str>>) -> Self {
        self.children.to_mut().push(model_type.into());
        self
    }

    /// Checks that the schema is usable: a name (without `:`), at least one identifier, no
    /// field listed twice, shortname fields that exist.
    pub fn validate(&self) -> Result<()> {
        let err = |message: String| ModelError::Schema {
            model_type: self.name.to_string(),
            message,
        };
        if self.name.is_empty() {
            return Err(err("empty model type name".into()));
        }
        if self.name.contains(':') {
            return Err(err(
                "a model type name must not contain ':' (it separates the type from the id in a key's text)".into(),
            ));
        }
        if self.identifiers.is_empty() {
            return Err(err("a model type needs at least one identifier".into()));
        }
        let mut seen = std::collections::HashSet::new();
        for f in self.identifiers.iter().chain(self.attributes.iter()) {
            if !seen.insert(f.name.as_ref()) {
                return Err(err(format!("field {:?} is listed twice", f.name)));
            }
        }
        for s in self.shortname.iter() {
            if !seen.contains(s.as_ref()) {
                return Err(err(format!("shortname field {s:?} is not a field")));
            }
        }
        for (what, field) in [("timestamp", &self.timestamp), ("version", &self.version)] {
            if let Some(f) = field
                && self.attribute_index(f).is_none()
            {
                return Err(err(format!("{what} field {f:?} is not an attribute")));
            }
        }
        if let Some(text) = &self.strategy {
            crate::strategy_spec::StrategySpec::parse(text)
                .map_err(|message| err(format!("strategy {text:?}: {message}")))?;
        }
        Ok(())
    }

    /// Position of an attribute by name.
    pub fn attribute_index(&self, name: &str) -> Option<usize> {
        self.attributes.iter().position(|f| f.name == name)
    }

    /// A key of this type from its text, `nyc__r1` or `device:nyc__r1`
    /// (what diffsync prints), each value read as its identifier's kind:
    /// for a string identifier `100` is the string "100" (quoted, `"100"`,
    /// it is the same), for an integer the number; a value of kind `any`
    /// is read as written (`100` a number, `"100"` a string). Text with
    /// another number of parts, or a value that does not fit its kind, is
    /// an error naming the type and the text.
    ///
    /// ```
    /// use diffsync::{DiffModel, ModelKey};
    ///
    /// #[derive(DiffModel, Clone, Debug, PartialEq)]
    /// #[diffsync(name = "vlan")]
    /// struct Vlan {
    ///     #[diffsync(id)]
    ///     site: String,
    ///     #[diffsync(id)]
    ///     name: String,
    ///     vid: u16,
    /// }
    ///
    /// let schema = Vlan::static_schema();
    /// let key = Vlan::key("nyc", "100");
    /// assert_eq!(schema.parse_key("nyc__100").unwrap(), *key.erased());
    /// assert_eq!(schema.parse_key(&key.to_string()).unwrap(), *key.erased());
    /// assert!(schema.parse_key("nyc").is_err()); // one part of two
    /// # use diffsync::StaticModel;
    /// ```
    pub fn parse_key(&self, text: &str) -> std::result::Result<ModelKey, KeyParseError> {
        let wrong = |message: String| KeyParseError::Schema {
            key: text.to_string(),
            model_type: self.name.to_string(),
            message,
        };
        let prefix = format!("{}:", self.name);
        let id = text.strip_prefix(prefix.as_str()).unwrap_or(text);
        let parts = crate::key::text_parts(id, self.identifiers.len()).map_err(wrong)?;
        let mut values = Vec::with_capacity(parts.len());
        for (field, part) in self.identifiers.iter().zip(parts) {
            use crate::key::TextPart;
            let misfit = |what: &str| wrong(format!("{} is {what}, not of kind {:?}", field.name, field.kind));
            let value = match (field.kind, part) {
                (_, TextPart::Plain("None" | "null")) if field.optional => KeyValue::Null,
                (ValueKind::String, TextPart::Quoted(s)) => KeyValue::Str(s),
                (ValueKind::String, TextPart::Plain(p)) => KeyValue::Str(p.to_string()),
                (ValueKind::Integer, TextPart::Plain(p)) => {
                    KeyValue::Int(p.parse::<i128>().map_err(|_| misfit(&format!("{p:?}")))?)
                }
                (ValueKind::Float, TextPart::Plain(p)) => match p.parse::<i128>() {
                    Ok(i) => KeyValue::Int(i),
                    Err(_) => KeyValue::Float(p.parse::<f64>().map_err(|_| misfit(&format!("{p:?}")))?),
                },
                (ValueKind::Bool, TextPart::Plain("true")) => KeyValue::Bool(true),
                (ValueKind::Bool, TextPart::Plain("false")) => KeyValue::Bool(false),
                (ValueKind::Any, TextPart::Quoted(s)) => KeyValue::Str(s),
                (ValueKind::Any | ValueKind::List | ValueKind::Map, TextPart::Plain(p)) => crate::key::plain_value(p),
                (ValueKind::List | ValueKind::Map, TextPart::Quoted(s)) => KeyValue::Str(s),
                (_, TextPart::Quoted(s)) => return Err(misfit(&format!("the string {s:?}"))),
                (_, TextPart::Plain(p)) => return Err(misfit(&format!("{p:?}"))),
            };
            values.push(value);
        }
        Ok(ModelKey::new(self.name.clone(), values))
    }

    /// Position of a child type by name.
    pub fn child_index(&self, name: &str) -> Option<usize> {
        self.children.iter().position(|c| c == name)
    }
}

/// A model's schema, either static (derived) or shared (runtime-defined).
#[derive(Clone, Debug)]
pub enum SchemaRef {
    /// Built at compile time.
    Static(&'static ModelSchema),
    /// Built at run time.
    Shared(Arc<ModelSchema>),
}

impl std::ops::Deref for SchemaRef {
    type Target = ModelSchema;
    fn deref(&self) -> &ModelSchema {
        match self {
            SchemaRef::Static(s) => s,
            SchemaRef::Shared(s) => s,
        }
    }
}

pub use crate::key::{ID_SEPARATOR, IdPart, readable_id_of, unique_id_of};

/// A typed record that diffsync can store, compare and sync.
///
/// Implement it with `#[derive(DiffModel)]`; [`DynModel`] implements it for
/// models described at run time. Attributes are compared in place with their own
/// equality (or the per-field override); values only become [`serde_json::Value`]s
/// when a diff element is built for a change.
///
/// ```
/// use diffsync::DiffModel;
///
/// #[derive(DiffModel, Clone, Debug, PartialEq)]
/// #[diffsync(name = "site")]
/// struct Site {
///     #[diffsync(id)]
///     name: String,
///     region: String,
///     #[diffsync(skip)]
///     db_pk: i64,
/// }
///
/// let a = Site { name: "nyc".into(), region: "east".into(), db_pk: 1 };
/// let b = Site { name: "nyc".into(), region: "east".into(), db_pk: 2 };
/// assert_eq!(a.unique_id(), "nyc");
/// assert!(a.attributes_equal(&b)); // db_pk is local-only
/// ```
pub trait DiffModel: Any + Clone + fmt::Debug + Send + Sync {
    /// A compared attribute's name as a value: `#[derive(DiffModel)]` on
    /// `Device` generates `enum DeviceField { Role, Mtu, .. }`, one variant
    /// per compared field; a [`DynModel`] names attributes by string. A
    /// typed hook's update lists the changed ones
    /// ([`Write::Update`](crate::Write::Update)).
    type Field: Clone + fmt::Debug + PartialEq + Send + Sync + 'static;
    /// The compared attribute called `name` (`None`: no such attribute).
    fn field(name: &str) -> Option<Self::Field>
    where
        Self: Sized;
    /// The model type's schema.
    fn schema(&self) -> &ModelSchema;
    /// The schema as an owned handle (static for derived models).
    fn schema_ref(&self) -> SchemaRef;
    /// Appends the unique id (identifier values joined by `__`).
    fn write_unique_id(&self, out: &mut String);
    /// The unique id.
    fn unique_id(&self) -> String {
        let mut s = String::new();
        self.write_unique_id(&mut s);
        s
    }
    /// Identifier values by name, in unique-id order.
    fn identifiers(&self) -> Attrs;
    /// The model's key: its type and identifier values.
    fn model_key(&self) -> crate::ModelKey {
        crate::ModelKey::new(
            self.schema().name.to_string(),
            self.identifiers().values().map(crate::KeyValue::from),
        )
    }
    /// The model's typed key (`#[derive(DiffModel)]` also generates
    /// `T::key(id, ..)` to build one from identifier values).
    fn key(&self) -> crate::Key<Self>
    where
        Self: Sized,
    {
        crate::key::Key::assume(self.model_key())
    }
    /// Attribute values by name, in schema order.
    fn attributes(&self) -> Attrs;
    /// Appends the key encoding of the identifiers (as
    /// [`model_key`](Self::model_key)'s); whether the key gives their
    /// JSON values back as they are. `#[derive(DiffModel)]` writes the
    /// fields directly.
    #[doc(hidden)]
    fn __write_key(&self, out: &mut Vec<u8>) -> bool {
        crate::key::encode_values(self.identifiers().values(), out)
    }
    /// The attribute values in schema order, when the type knows them
    /// without building [`attributes`](Self::attributes) (`None`: it does
    /// not). `#[derive(DiffModel)]` gives them.
    #[doc(hidden)]
    fn __attribute_values(&self) -> Option<Box<[Value]>> {
        None
    }
    /// One attribute's value, if the model has it.
    fn attribute(&self, name: &str) -> Option<Value>;
    /// Whether every attribute compares equal (typed, in place).
    fn attributes_equal(&self, other: &Self) -> bool;
    /// Appends the schema indices of attributes that differ from `other`.
    fn changed_attributes(&self, other: &Self, out: &mut Vec<usize>);
    /// Copies every attribute from `other` (identifiers and local fields stay).
    fn copy_attributes_from(&mut self, other: &Self);
    /// Sets the named attributes from values; names the model does not have are ignored.
    fn set_attributes(&mut self, attrs: &Attrs) -> Result<()>;
    /// Builds a model from identifier and attribute values. Local-only fields
    /// take their `Default`. `schema` is the destination type's schema (used by
    /// runtime-defined models).
    fn from_parts(schema: &SchemaRef, identifiers: &Attrs, attributes: &Attrs) -> Result<Self>;
    /// The model a sync stores when it creates this one in a destination of
    /// the same type: identifiers and attributes copied, local-only fields at
    /// their `Default`, flags at the type's default.
    fn copy_for_create(&self) -> Self;
    /// Writes the canonical encoding of the identifiers, then of the
    /// attributes, for the item [`Digest`](crate::digest::Digest). The
    /// default goes through their values; `#[derive(DiffModel)]` writes
    /// the fields directly.
    fn write_digest(&self, enc: &mut crate::digest::Encoder) {
        crate::digest::write_attrs(enc, &self.identifiers());
        crate::digest::write_attrs(enc, &self.attributes());
    }
    /// This instance's flags (the schema's by default).
    fn flags(&self) -> ModelFlags {
        self.schema().flags
    }
    /// The shortname, if the schema defines one.
    fn shortname(&self) -> Option<String> {
        None
    }
}

/// A model type's field names, shared by the diff elements of the type.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Names {
    /// Identifier names, in unique-id order.
    pub(crate) identifiers: Box<[Cow<'static, str>]>,
    /// Attribute names, in schema order.
    pub(crate) attributes: Box<[Cow<'static, str>]>,
}

impl Names {
    /// `names` if they name these identifiers and attributes in order,
    /// else names made from them (a model whose maps do not follow its
    /// schema).
    pub(crate) fn fitted(names: &Arc<Names>, identifiers: &Attrs, attributes: Option<&Attrs>) -> Arc<Names> {
        let fits = |n: &[Cow<'static, str>], a: &Attrs| a.len() == n.len() && a.keys().zip(n).all(|(a, b)| a == b);
        if fits(&names.identifiers, identifiers) && attributes.is_none_or(|a| fits(&names.attributes, a)) {
            return names.clone();
        }
        Arc::new(Names {
            identifiers: identifiers.keys().cloned().collect(),
            attributes: match attributes {
                Some(a) => a.keys().cloned().collect(),
                None => names.attributes.clone(),
            },
        })
    }

    /// The names of a schema's fields.
    pub(crate) fn of(schema: &ModelSchema) -> Names {
        Names {
            identifiers: schema.identifiers.iter().map(|f| f.name.clone()).collect(),
            attributes: schema.attributes.iter().map(|f| f.name.clone()).collect(),
        }
    }
}

/// A derived model type, whose schema and name are known at compile time.
pub trait StaticModel: DiffModel {
    /// The model type name.
    const NAME: &'static str;
    /// The schema.
    fn static_schema() -> &'static ModelSchema;
}

/// Typed keys of derived models (here, above `key`, which knows no model).
impl<T: StaticModel> Key<T> {
    /// The key of the `T` with these identifier values (in the schema's
    /// identifier order). The derive's `T::key(..)` calls it.
    pub fn from_values(values: impl IntoIterator<Item = KeyValue>) -> Key<T> {
        Key::assume(ModelKey::new(T::NAME, values))
    }

    /// Reads the text form back (`device:nyc__r1`) against `T`'s
    /// identifiers (`nyc__100` is the string "100" when the identifier is a
    /// string); refuses another type's key.
    pub fn parse(text: &str) -> Result<Key<T>, KeyParseError> {
        match text.split_once(':') {
            Some((ty, _)) if ty == T::NAME => Ok(Key::assume(T::static_schema().parse_key(text)?)),
            Some((ty, _)) if !ty.is_empty() => Err(KeyParseError::WrongType {
                key: text.to_string(),
                found: ty.to_string(),
                expected: T::NAME.to_string(),
            }),
            _ => Err(KeyParseError::NoType(text.to_string())),
        }
    }
}

/// The text form read by [`Key::parse`]: `"device:nyc__r1".parse::<Key<Device>>()`.
impl<T: StaticModel> std::str::FromStr for Key<T> {
    type Err = KeyParseError;

    fn from_str(text: &str) -> Result<Key<T>, KeyParseError> {
        Key::parse(text)
    }
}

/// An erased key as a typed one: `Key::<Device>::try_from(key)?`. Refused
/// (naming the key and both types) when it names another model type, or
/// when its values do not fit `T`'s identifiers (an integer where `T` has
/// a string).
impl<T: StaticModel> TryFrom<ModelKey> for Key<T> {
    type Error = KeyParseError;

    fn try_from(key: ModelKey) -> Result<Key<T>, KeyParseError> {
        if key.model_type() != T::NAME {
            return Err(KeyParseError::WrongType {
                key: key.to_string(),
                found: key.model_type().to_string(),
                expected: T::NAME.to_string(),
            });
        }
        // The values fit when the text they print reads back as them.
        if T::static_schema().parse_key(key.unique_id())? != key {
            return Err(KeyParseError::Schema {
                key: key.to_string(),
                model_type: T::NAME.to_string(),
                message: "its values are not of the kinds of the identifiers".into(),
            });
        }
        Ok(Key::assume(key))
    }
}

/// Object-safe view of any [`DiffModel`], for code that handles several model types.
pub trait AnyModel: Any + fmt::Debug + Send + Sync {
    /// As [`Any`], to downcast.
    fn as_any(&self) -> &dyn Any;
    /// As mutable [`Any`], to downcast.
    fn as_any_mut(&mut self) -> &mut dyn Any;
    /// The schema.
    fn schema(&self) -> &ModelSchema;
    /// The schema handle.
    fn schema_ref(&self) -> SchemaRef;
    /// The model type name.
    fn model_type(&self) -> &str {
        &self.schema().name
    }
    /// The unique id.
    fn unique_id(&self) -> String;
    /// The key: type and identifier values.
    fn model_key(&self) -> crate::ModelKey;
    /// Identifier values.
    fn identifiers(&self) -> Attrs;
    /// Attribute values.
    fn attributes(&self) -> Attrs;
    /// Appends the key encoding of the identifiers; whether the key gives
    /// their JSON values back as they are.
    fn write_key(&self, out: &mut Vec<u8>) -> bool;
    /// The attribute values in schema order, if the type knows them
    /// without building the map.
    fn attribute_values(&self) -> Option<Box<[Value]>>;
    /// One attribute's value.
    fn attribute(&self, name: &str) -> Option<Value>;
    /// Flags.
    fn flags(&self) -> ModelFlags;
    /// Writes the canonical encoding for the item digest.
    fn write_digest(&self, enc: &mut crate::digest::Encoder);
    /// Shortname.
    fn shortname(&self) -> Option<String>;
    /// Sets attributes from values.
    fn set_attributes(&mut self, attrs: &Attrs) -> Result<()>;
    /// A boxed clone.
    fn clone_box(&self) -> Box<dyn AnyModel>;
    /// A boxed [`DiffModel::copy_for_create`].
    fn copy_for_create_box(&self) -> Box<dyn AnyModel>;
    #[doc(hidden)]
    fn __new_vec(&self) -> column::ErasedVec;
}

impl<T: DiffModel> AnyModel for T {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
    fn schema(&self) -> &ModelSchema {
        DiffModel::schema(self)
    }
    fn schema_ref(&self) -> SchemaRef {
        DiffModel::schema_ref(self)
    }
    fn unique_id(&self) -> String {
        DiffModel::unique_id(self)
    }
    fn model_key(&self) -> crate::ModelKey {
        DiffModel::model_key(self)
    }
    fn identifiers(&self) -> Attrs {
        DiffModel::identifiers(self)
    }
    fn attributes(&self) -> Attrs {
        DiffModel::attributes(self)
    }
    fn write_key(&self, out: &mut Vec<u8>) -> bool {
        DiffModel::__write_key(self, out)
    }
    fn attribute_values(&self) -> Option<Box<[Value]>> {
        DiffModel::__attribute_values(self)
    }
    fn attribute(&self, name: &str) -> Option<Value> {
        DiffModel::attribute(self, name)
    }
    fn flags(&self) -> ModelFlags {
        DiffModel::flags(self)
    }
    fn write_digest(&self, enc: &mut crate::digest::Encoder) {
        DiffModel::write_digest(self, enc)
    }
    fn shortname(&self) -> Option<String> {
        DiffModel::shortname(self)
    }
    fn set_attributes(&mut self, attrs: &Attrs) -> Result<()> {
        DiffModel::set_attributes(self, attrs)
    }
    fn clone_box(&self) -> Box<dyn AnyModel> {
        Box::new(self.clone())
    }
    fn copy_for_create_box(&self) -> Box<dyn AnyModel> {
        Box::new(self.copy_for_create())
    }
    fn __new_vec(&self) -> column::ErasedVec {
        column::__new_vec::<T>()
    }
}

impl dyn AnyModel {
    /// Downcasts to a concrete model type.
    pub fn downcast_ref<T: DiffModel>(&self) -> Option<&T> {
        self.as_any().downcast_ref()
    }
    /// Downcasts mutably to a concrete model type.
    pub fn downcast_mut<T: DiffModel>(&mut self) -> Option<&mut T> {
        self.as_any_mut().downcast_mut()
    }
}

/// Comparison helpers used by derived code and [`DynModel`].
pub mod cmp {
    use serde_json::Value;

    /// Order-insensitive comparison of two collections (as multisets).
    pub fn unordered<'a, C, T>(a: &'a C, b: &'a C) -> bool
    where
        &'a C: IntoIterator<Item = &'a T>,
        T: Ord + 'a,
    {
        let mut x: Vec<&T> = a.into_iter().collect();
        let mut y: Vec<&T> = b.into_iter().collect();
        if x.len() != y.len() {
            return false;
        }
        x.sort_unstable();
        y.sort_unstable();
        x == y
    }

    /// Case-insensitive comparison of strings (also through `Option`).
    pub fn ignore_case<S: CaseFold + ?Sized>(a: &S, b: &S) -> bool {
        a.eq_fold(b)
    }

    /// Strings that can be compared without regard to case.
    pub trait CaseFold {
        /// Case-insensitive equality.
        fn eq_fold(&self, other: &Self) -> bool;
    }
    impl CaseFold for str {
        fn eq_fold(&self, other: &Self) -> bool {
            self.chars()
                .flat_map(char::to_lowercase)
                .eq(other.chars().flat_map(char::to_lowercase))
        }
    }
    impl CaseFold for String {
        fn eq_fold(&self, other: &Self) -> bool {
            self.as_str().eq_fold(other.as_str())
        }
    }
    impl<T: CaseFold> CaseFold for Option<T> {
        fn eq_fold(&self, other: &Self) -> bool {
            match (self, other) {
                (Some(a), Some(b)) => a.eq_fold(b),
                (None, None) => true,
                _ => false,
            }
        }
    }

    /// Compares two runtime values with a comparison mode.
    pub fn values(mode: super::Compare, a: &Value, b: &Value) -> bool {
        match (mode, a, b) {
            (super::Compare::IgnoreCase, Value::String(x), Value::String(y)) => x.eq_fold(y),
            (super::Compare::Unordered, Value::Array(x), Value::Array(y)) => {
                if x.len() != y.len() {
                    return false;
                }
                let mut used = vec![false; y.len()];
                x.iter().all(|v| {
                    let hit = y.iter().enumerate().find(|(i, w)| !used[*i] && *w == v);
                    match hit {
                        Some((i, _)) => {
                            used[i] = true;
                            true
                        }
                        None => false,
                    }
                })
            }
            _ => a == b,
        }
    }
}

/// A model whose type is described at run time by a [`ModelSchema`] and whose
/// values are [`serde_json::Value`]s. It works with the same stores, adapters,
/// diff and sync as derived models.
///
/// ```
/// use std::sync::Arc;
/// use diffsync::{DynModel, ModelSchema};
///
/// let schema: ModelSchema = serde_json::from_str(r#"{
///     "name": "device",
///     "identifiers": [{"name": "name", "kind": "string"}],
///     "attributes": [{"name": "role", "kind": "string"}]
/// }"#).unwrap();
/// let schema = Arc::new(schema);
/// let dev = DynModel::from_json(&schema, serde_json::json!({"name": "r1", "role": "edge"})).unwrap();
/// assert_eq!(diffsync::DiffModel::unique_id(&dev), "r1");
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct DynModel {
    schema: Arc<ModelSchema>,
    ids: Vec<Value>,
    attrs: Vec<Value>,
    flags: ModelFlags,
}

impl DynModel {
    /// Builds a model from a JSON object holding its identifiers and attributes.
    /// Missing attributes take the field's default, else `null` (an error
    /// unless optional); other keys are ignored.
    pub fn from_json(schema: &Arc<ModelSchema>, value: Value) -> Result<Self> {
        let Value::Object(map) = value else {
            return Err(ModelError::InvalidValue {
                model_type: schema.name.to_string(),
                key: String::new(),
                field: String::new(),
                message: format!("expected a JSON object, got {value}"),
            });
        };
        let attrs: Attrs = map.into_iter().map(|(k, v)| (Cow::Owned(k), v)).collect();
        Self::new(schema, &attrs, &attrs)
    }

    /// Builds a model from identifier and attribute values.
    pub fn new(schema: &Arc<ModelSchema>, identifiers: &Attrs, attributes: &Attrs) -> Result<Self> {
        let mut ids = Vec::with_capacity(schema.identifiers.len());
        for f in schema.identifiers.iter() {
            let v = identifiers.get(f.name.as_ref()).cloned().unwrap_or(Value::Null);
            ids.push(v);
        }
        let key = unique_id_of(ids.iter());
        for (f, v) in schema.identifiers.iter().zip(&ids) {
            check_value(&schema.name, &key, f, v)?;
        }
        let mut attrs = Vec::with_capacity(schema.attributes.len());
        for f in schema.attributes.iter() {
            let v = attributes
                .get(f.name.as_ref())
                .or(f.default.as_ref())
                .cloned()
                .unwrap_or(Value::Null);
            check_value(&schema.name, &key, f, &v)?;
            attrs.push(v);
        }
        Ok(DynModel {
            schema: schema.clone(),
            ids,
            attrs,
            flags: schema.flags,
        })
    }

    /// Sets this instance's flags.
    pub fn with_flags(mut self, flags: ModelFlags) -> Self {
        self.flags = flags;
        self
    }

    /// The shared schema.
    pub fn shared_schema(&self) -> &Arc<ModelSchema> {
        &self.schema
    }
}

fn check_value(model_type: &str, key: &str, f: &FieldDef, v: &Value) -> Result<()> {
    if v.is_null() {
        if f.optional {
            return Ok(());
        }
        return Err(ModelError::InvalidValue {
            model_type: model_type.to_string(),
            key: key.to_string(),
            field: f.name.to_string(),
            message: "missing value for a required field".into(),
        });
    }
    if !f.kind.accepts(v) {
        return Err(ModelError::InvalidValue {
            model_type: model_type.to_string(),
            key: key.to_string(),
            field: f.name.to_string(),
            message: format!("expected {:?}, got {v}", f.kind),
        });
    }
    Ok(())
}

impl DiffModel for DynModel {
    /// A runtime model's attributes are named by their schema's strings.
    type Field = String;
    fn field(name: &str) -> Option<String> {
        Some(name.to_string())
    }
    fn schema(&self) -> &ModelSchema {
        &self.schema
    }
    fn schema_ref(&self) -> SchemaRef {
        SchemaRef::Shared(self.schema.clone())
    }
    fn write_unique_id(&self, out: &mut String) {
        for (i, v) in self.ids.iter().enumerate() {
            if i > 0 {
                out.push_str(ID_SEPARATOR);
            }
            v.write_id(out);
        }
    }
    fn identifiers(&self) -> Attrs {
        self.schema
            .identifiers
            .iter()
            .map(|f| f.name.clone())
            .zip(self.ids.iter().cloned())
            .collect()
    }
    fn attributes(&self) -> Attrs {
        self.schema
            .attributes
            .iter()
            .map(|f| f.name.clone())
            .zip(self.attrs.iter().cloned())
            .collect()
    }
    fn __write_key(&self, out: &mut Vec<u8>) -> bool {
        crate::key::encode_values(&self.ids, out)
    }
    fn __attribute_values(&self) -> Option<Box<[Value]>> {
        Some(self.attrs.as_slice().into())
    }
    fn attribute(&self, name: &str) -> Option<Value> {
        self.schema.attribute_index(name).map(|i| self.attrs[i].clone())
    }
    fn attributes_equal(&self, other: &Self) -> bool {
        if !Arc::ptr_eq(&self.schema, &other.schema) && self.schema.attributes != other.schema.attributes {
            let mut v = Vec::new();
            self.changed_attributes(other, &mut v);
            return v.is_empty();
        }
        self.schema
            .attributes
            .iter()
            .zip(self.attrs.iter().zip(&other.attrs))
            .all(|(f, (a, b))| cmp::values(f.compare, a, b))
    }
    fn changed_attributes(&self, other: &Self, out: &mut Vec<usize>) {
        for (i, f) in self.schema.attributes.iter().enumerate() {
            // Only attributes both sides have are compared (the Python library's rule).
            let Some(j) = other.schema.attribute_index(&f.name) else {
                continue;
            };
            if !cmp::values(f.compare, &self.attrs[i], &other.attrs[j]) {
                out.push(i);
            }
        }
    }
    fn copy_attributes_from(&mut self, other: &Self) {
        for (i, f) in self.schema.attributes.iter().enumerate() {
            if let Some(j) = other.schema.attribute_index(&f.name) {
                self.attrs[i] = other.attrs[j].clone();
            }
        }
    }
    fn set_attributes(&mut self, attrs: &Attrs) -> Result<()> {
        let key = DiffModel::unique_id(self);
        let mut staged = self.attrs.clone();
        for (name, v) in attrs {
            if let Some(i) = self.schema.attribute_index(name) {
                check_value(&self.schema.name, &key, &self.schema.attributes[i], v)?;
                staged[i] = v.clone();
            }
        }
        self.attrs = staged;
        Ok(())
    }
    fn from_parts(schema: &SchemaRef, identifiers: &Attrs, attributes: &Attrs) -> Result<Self> {
        let shared = match schema {
            SchemaRef::Shared(s) => s.clone(),
            SchemaRef::Static(s) => Arc::new((*s).clone()),
        };
        DynModel::new(&shared, identifiers, attributes)
    }
    fn copy_for_create(&self) -> Self {
        DynModel {
            flags: self.schema.flags,
            ..self.clone()
        }
    }
    fn flags(&self) -> ModelFlags {
        self.flags
    }
    fn shortname(&self) -> Option<String> {
        if self.schema.shortname.is_empty() {
            return None;
        }
        let parts = self.schema.shortname.iter().filter_map(|n| {
            self.schema
                .identifiers
                .iter()
                .position(|f| f.name == *n)
                .map(|i| &self.ids[i])
                .or_else(|| self.schema.attribute_index(n).map(|i| &self.attrs[i]))
        });
        Some(unique_id_of(parts))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unique_id_joins_identifier_text() {
        assert_eq!(unique_id_of(["a", "b"]), "a__b");
        assert_eq!(unique_id_of([json!("r1"), json!(7), json!(null)]), "r1__7__None");
        let mut s = String::new();
        Some(3u8).write_id(&mut s);
        None::<u8>.write_id(&mut s);
        assert_eq!(s, "3None");
    }

    #[cfg(feature = "compact_str")]
    #[test]
    fn a_compact_string_keys_as_a_string_does() {
        for text in ["r1", "a__b", "", "7", "None", "_x"] {
            let (mut compact, mut string) = (String::new(), String::new());
            compact_str::CompactString::from(text).write_id(&mut compact);
            text.to_string().write_id(&mut string);
            assert_eq!(compact, string, "{text:?}");
        }
    }

    #[test]
    fn unique_ids_are_injective_and_readable_ids_are_not() {
        let pairs: [(Vec<Value>, Vec<Value>); 6] = [
            (vec![json!("a__b"), json!("c")], vec![json!("a"), json!("b__c")]),
            (vec![json!(null)], vec![json!("None")]),
            (vec![json!(1)], vec![json!("1")]),
            (vec![json!(true)], vec![json!("true")]),
            (vec![json!("a_"), json!("b")], vec![json!("a"), json!("_b")]),
            (vec![json!(""), json!("x")], vec![json!("\"\""), json!("x")]),
        ];
        for (a, b) in pairs {
            assert_ne!(unique_id_of(a.iter()), unique_id_of(b.iter()), "{a:?} vs {b:?}");
        }
        assert_eq!(readable_id_of(["a__b", "c"]), readable_id_of(["a", "b__c"]));
        // Typed and runtime values key alike.
        assert_eq!(unique_id_of(["1"]), unique_id_of([json!("1")]));
        assert_eq!(unique_id_of([7u32]), unique_id_of([json!(7)]));
        assert_eq!(unique_id_of([Some("None")]), r#""None""#);
        assert_eq!(unique_id_of(["r1", "1/0/1", "eth0"]), "r1__1/0/1__eth0");
        assert_eq!(unique_id_of(["vlan", "100"]), r#"vlan__"100""#);
    }

    #[test]
    fn comparison_helpers() {
        assert!(cmp::unordered(&vec![3, 1, 2], &vec![1, 2, 3]));
        assert!(!cmp::unordered(&vec![1, 1, 2], &vec![1, 2, 2]));
        assert!(cmp::ignore_case("ÉCOLE", "école"));
        assert!(!cmp::ignore_case("eth0", "eth1"));
        assert!(cmp::ignore_case(&Some("ABC".to_string()), &Some("abc".to_string())));
        assert!(!cmp::ignore_case(&Some("a".to_string()), &None));
        assert!(cmp::values(Compare::Unordered, &json!([1, 2, 2]), &json!([2, 1, 2])));
        assert!(!cmp::values(Compare::Unordered, &json!([1, 1, 2]), &json!([2, 1, 2])));
        assert!(cmp::values(Compare::IgnoreCase, &json!("Eth0"), &json!("eth0")));
        assert!(!cmp::values(Compare::Exact, &json!("Eth0"), &json!("eth0")));
    }

    #[test]
    fn schema_validation_names_the_problem() {
        let mut s = ModelSchema {
            name: "vlan".into(),
            identifiers: vec![FieldDef::new("vid", ValueKind::Integer)].into(),
            attributes: vec![FieldDef::new("name", ValueKind::String)].into(),
            shortname: vec!["label".into()].into(),
            children: Cow::Borrowed(&[]),
            flags: ModelFlags::empty(),
            timestamp: None,
            version: None,
            strategy: None,
        };
        assert!(
            s.validate()
                .unwrap_err()
                .to_string()
                .contains("shortname field \"label\"")
        );
        s.shortname = vec!["name".into()].into();
        s.validate().unwrap();
        s.timestamp = Some("updated".into());
        assert!(
            s.validate()
                .unwrap_err()
                .to_string()
                .contains("timestamp field \"updated\" is not an attribute")
        );
        s.timestamp = None;
        s.strategy = Some("oldest".into());
        assert!(s.validate().unwrap_err().to_string().contains("strategy \"oldest\""));
        s.strategy = Some("newest(name, 30)".into());
        s.validate().unwrap();
        s.name = "".into();
        assert!(s.validate().is_err());
        s.name = "net:vlan".into();
        assert!(s.validate().unwrap_err().to_string().contains("must not contain ':'"));
    }

    #[test]
    fn dyn_model_shortname_and_flags() {
        let schema: ModelSchema = serde_json::from_value(json!({
            "name": "interface", "shortname": ["name"], "flags": "IGNORE",
            "identifiers": [{"name": "device"}, {"name": "name"}],
        }))
        .unwrap();
        let schema = Arc::new(schema);
        let m = DynModel::from_json(&schema, json!({"device": "r1", "name": "eth0"})).unwrap();
        assert_eq!(DiffModel::unique_id(&m), "r1__eth0");
        assert_eq!(DiffModel::shortname(&m).as_deref(), Some("eth0"));
        assert_eq!(DiffModel::flags(&m), ModelFlags::IGNORE);
        assert_eq!(
            DiffModel::flags(&m.with_flags(ModelFlags::empty())),
            ModelFlags::empty()
        );
    }
}
