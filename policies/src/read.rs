//! Reading the policy document's types out of [`Json`], every mistake with its path, and
//! the JSON Schema of the same types.
//!
//! A type is declared once, with [`spec_struct!`] or [`spec_enum!`], and gets both its
//! reader and its schema from that declaration, so the document, its validation and
//! `policies/policy.schema.json` cannot drift apart. A reader never stops at the first
//! mistake: a field that cannot be read is reported and skipped, and reading goes on, so
//! one pass finds every structural error. Unknown fields are reported against the names
//! the type asked for, with the nearest one as a suggestion.

use std::borrow::Cow;
use std::collections::BTreeMap;

use crate::error::PolicyError;
use crate::json::Json;

/// Where mistakes are collected, in the order found, each once.
#[derive(Debug, Default)]
pub(crate) struct Errors {
    pub(crate) list: Vec<PolicyError>,
}

impl Errors {
    pub(crate) fn push(&mut self, path: &str, message: impl Into<String>, hint: impl Into<String>) {
        let error = PolicyError::new(
            if path.is_empty() { "(document)" } else { path },
            message,
            hint,
        );
        if !self.list.contains(&error) {
            self.list.push(error);
        }
    }
}

/// `prefix.key`, or `prefix[3]` for an index.
pub(crate) fn join(prefix: &str, key: &str) -> String {
    let mut path = String::with_capacity(prefix.len() + 1 + key.len());
    path.push_str(prefix);
    push_key(&mut path, key);
    path
}

/// `list[i]`, written over the previous item's in `at` (which starts as `list`).
fn item_path<'a>(at: &'a mut String, list: &str, i: usize) -> &'a str {
    use std::fmt::Write as _;
    at.truncate(list.len());
    // Writing to a String cannot fail.
    let _ = write!(at, "[{i}]");
    at
}

/// Appends `key` to `path` as [`join`] does.
fn push_key(path: &mut String, key: &str) {
    if !path.is_empty() && !key.starts_with('[') {
        path.push('.');
    }
    path.push_str(key);
}

/// `` `a`, `b`, `c` ``.
pub(crate) fn quoted_list<S: AsRef<str>>(names: &[S]) -> String {
    names
        .iter()
        .map(|n| format!("`{}`", n.as_ref()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The name within two edits of `key`, if there is one.
pub(crate) fn nearest<'a>(key: &str, names: &[&'a str]) -> Option<&'a str> {
    names
        .iter()
        .map(|name| (edit_distance(key, name), *name))
        .filter(|(distance, _)| *distance <= 2)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, name)| name)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = i;
        let mut next = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let above = row.get(j + 1).copied().unwrap_or(usize::MAX);
            let left = next.last().copied().unwrap_or(usize::MAX);
            let cost = diagonal + usize::from(ca != *cb);
            diagonal = above;
            next.push(
                cost.min(above.saturating_add(1))
                    .min(left.saturating_add(1)),
            );
        }
        row = next;
    }
    row.last().copied().unwrap_or(usize::MAX)
}

/// A type the policy document is made of.
pub(crate) trait FromJson: Sized {
    /// Reads a value, reporting every mistake under `path`; `None` when it cannot be
    /// read at all (the mistakes are already reported).
    fn read(value: &Json, path: &str, errors: &mut Errors) -> Option<Self>;

    /// The type's schema, or a reference to it in `schemas` for named types.
    fn schema(schemas: &mut Schemas) -> Json<'static>;
}

/// The named types' schemas, collected while the document's schema is built.
#[derive(Debug, Default)]
pub(crate) struct Schemas {
    pub(crate) defs: BTreeMap<&'static str, Json<'static>>,
}

impl Schemas {
    /// A `$ref` to a named type, describing it on first use.
    pub(crate) fn reference(
        &mut self,
        name: &'static str,
        describe: impl FnOnce(&mut Schemas) -> Json<'static>,
    ) -> Json<'static> {
        if !self.defs.contains_key(name) {
            // Reserve the name first so that recursive types terminate.
            self.defs.insert(name, Json::Null);
            let schema = describe(self);
            self.defs.insert(name, schema);
        }
        object(vec![("$ref", Json::string(format!("#/$defs/{name}")))])
    }
}

/// A JSON object from static keys.
pub(crate) fn object(fields: Vec<(&str, Json<'static>)>) -> Json<'static> {
    Json::Object(
        fields
            .into_iter()
            .map(|(k, v)| (Cow::Owned(k.to_owned()), v))
            .collect(),
    )
}

fn type_schema(name: &str) -> Json<'static> {
    object(vec![("type", Json::string(name))])
}

/// The field names an object reader makes room for at once: most types of the document
/// have fewer, so that reading one of them grows no list.
const ASKED: usize = 16;

/// `path` copied with room for a key or an index after it, so that the paths of an
/// object's fields or a list's items are written in place, without growing it.
fn with_room(path: &str) -> String {
    let mut room = String::with_capacity(path.len() + 32);
    room.push_str(path);
    room
}

/// Reads the fields of one object, remembering which were asked for, so that the rest
/// can be reported as unknown.
pub(crate) struct ObjectReader<'v, 'e> {
    fields: &'v [(Cow<'v, str>, Json<'v>)],
    path: String,
    asked: Vec<&'static str>,
    pub(crate) errors: &'e mut Errors,
}

impl<'v, 'e> ObjectReader<'v, 'e> {
    /// Starts reading an object; reports and returns `None` for anything else.
    pub(crate) fn new(value: &'v Json<'v>, path: &str, errors: &'e mut Errors) -> Option<Self> {
        match value {
            Json::Object(fields) => Some(ObjectReader {
                fields,
                path: with_room(path),
                asked: Vec::with_capacity(ASKED),
                errors,
            }),
            other => {
                errors.push(
                    path,
                    format!("expected an object, found {}", other.kind()),
                    "",
                );
                None
            }
        }
    }

    /// An optional field.
    pub(crate) fn optional<T: FromJson>(&mut self, key: &'static str) -> Option<T> {
        self.asked.push(key);
        let value = self.fields.iter().find(|(k, _)| k == key).map(|(_, v)| v)?;
        if *value == Json::Null {
            return None;
        }
        // The field's path is the object's with the key on it for the time of the read:
        // most fields are read without a mistake, and a path of their own for each would
        // be an allocation per field of a policy of thousands of APIs.
        let object = self.path.len();
        push_key(&mut self.path, key);
        let read = T::read(value, &self.path, self.errors);
        self.path.truncate(object);
        read
    }

    /// A field left as JSON, for the caller to read piece by piece.
    pub(crate) fn raw(&mut self, key: &'static str) -> Option<&'v Json<'v>> {
        self.asked.push(key);
        self.fields.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// A required field: reported as missing when absent.
    pub(crate) fn required<T: FromJson>(&mut self, key: &'static str) -> Option<T> {
        let present = self
            .fields
            .iter()
            .any(|(k, v)| k == key && *v != Json::Null);
        if !present {
            self.asked.push(key);
            let path = join(&self.path, key);
            self.errors.push(&path, "missing", "this field is required");
            return None;
        }
        self.optional(key)
    }

    /// Reports every field that was not asked for.
    pub(crate) fn finish(self) {
        for (key, _) in self.fields {
            if self.asked.contains(&key.as_ref()) {
                continue;
            }
            let hint = match nearest(key, &self.asked) {
                Some(near) => format!("did you mean `{near}`?"),
                None => format!("expected one of {}", quoted_list(&self.asked)),
            };
            self.errors.push(
                &join(&self.path, key),
                format!("unknown field `{key}`"),
                hint,
            );
        }
    }
}

/// Declares a struct of the policy document: its fields (`req` or `opt`, an optional
/// JSON name with `as`), its reader and its schema. A field marked `flat` is a struct
/// whose fields sit in the same JSON object (an API's control overrides).
macro_rules! spec_struct {
    (
        $(#[doc = $sdoc:literal])*
        pub struct $name:ident {
            $(
                $(#[doc = $fdoc:literal])*
                $field:ident $(as $key:literal)? : $kind:ident $ty:ty,
            )*
        }
    ) => {
        $(#[doc = $sdoc])*
        #[derive(Debug, Clone)]
        pub struct $name {
            $(
                $(#[doc = $fdoc])*
                pub $field: spec_struct!(@type $kind $ty),
            )*
        }

        impl $name {
            /// The JSON names of the fields (a `flat` field counts by its own name).
            #[allow(dead_code, reason = "used for the types that other objects embed")]
            pub(crate) const FIELDS: &'static [&'static str] =
                &[$(spec_struct!(@key $field $($key)?)),*];

            /// Reads this type's fields from an object reader (shared with a struct
            /// that embeds it with `flat`).
            pub(crate) fn read_fields(reader: &mut $crate::read::ObjectReader<'_, '_>) -> Option<Self> {
                $( let $field = spec_struct!(@read reader $kind $ty, spec_struct!(@key $field $($key)?)); )*
                Some(Self { $( $field: spec_struct!(@unwrap $kind $field), )* })
            }

            /// This type's properties and required names, for its schema.
            pub(crate) fn describe_fields(
                schemas: &mut $crate::read::Schemas,
                properties: &mut Vec<(std::borrow::Cow<'static, str>, $crate::json::Json<'static>)>,
                required: &mut Vec<$crate::json::Json<'static>>,
            ) {
                $(
                    spec_struct!(@describe schemas properties required $kind $ty,
                        spec_struct!(@key $field $($key)?), concat!($($fdoc, "\n",)*));
                )*
            }
        }

        impl $crate::read::FromJson for $name {
            fn read(value: &$crate::json::Json, path: &str, errors: &mut $crate::read::Errors) -> Option<Self> {
                let mut reader = $crate::read::ObjectReader::new(value, path, errors)?;
                let parsed = Self::read_fields(&mut reader);
                reader.finish();
                parsed
            }

            fn schema(schemas: &mut $crate::read::Schemas) -> $crate::json::Json<'static> {
                schemas.reference(stringify!($name), |schemas| {
                    let mut properties = Vec::new();
                    let mut required = Vec::new();
                    Self::describe_fields(schemas, &mut properties, &mut required);
                    $crate::read::struct_schema(concat!($($sdoc, "\n",)*), properties, required)
                })
            }
        }
    };
    (@type req $ty:ty) => { $ty };
    (@type opt $ty:ty) => { Option<$ty> };
    (@type flat $ty:ty) => { $ty };
    (@key $field:ident) => { stringify!($field) };
    (@key $field:ident $key:literal) => { $key };
    (@read $reader:ident req $ty:ty, $key:expr) => { $reader.required::<$ty>($key) };
    (@read $reader:ident opt $ty:ty, $key:expr) => { $reader.optional::<$ty>($key) };
    (@read $reader:ident flat $ty:ty, $key:expr) => { <$ty>::read_fields($reader) };
    (@unwrap req $field:ident) => { $field? };
    (@unwrap flat $field:ident) => { $field? };
    (@unwrap opt $field:ident) => { $field };
    (@describe $s:ident $p:ident $r:ident flat $ty:ty, $key:expr, $doc:expr) => {
        <$ty>::describe_fields($s, $p, $r)
    };
    (@describe $s:ident $p:ident $r:ident $kind:ident $ty:ty, $key:expr, $doc:expr) => {{
        let schema = <$ty as $crate::read::FromJson>::schema($s);
        $p.push(($key.into(), $crate::read::with_description(schema, $doc)));
        if stringify!($kind) == "req" {
            $r.push($crate::json::Json::String($key.into()));
        }
    }};
}

/// Declares a string enum of the policy document: its variants with their JSON names,
/// `as_str`, `ALL`, its reader and its schema.
macro_rules! spec_enum {
    (
        $(#[doc = $edoc:literal])*
        pub enum $name:ident {
            $( $(#[doc = $vdoc:literal])* $variant:ident = $text:literal, )*
        }
    ) => {
        $(#[doc = $edoc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $( $(#[doc = $vdoc])* $variant, )*
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),*];

            /// The name as written in the policy, and in metrics, logs and alerts.
            pub fn as_str(self) -> &'static str {
                match self {
                    $( $name::$variant => $text, )*
                }
            }

            /// The variant written as `text`.
            pub fn from_name(text: &str) -> Option<Self> {
                match text {
                    $( $text => Some($name::$variant), )*
                    _ => None,
                }
            }
        }

        impl $crate::read::FromJson for $name {
            fn read(value: &$crate::json::Json, path: &str, errors: &mut $crate::read::Errors) -> Option<Self> {
                $crate::read::read_named(value, path, errors, Self::from_name, &[$($text),*])
            }

            fn schema(schemas: &mut $crate::read::Schemas) -> $crate::json::Json<'static> {
                schemas.reference(stringify!($name), |_| {
                    $crate::read::enum_schema(concat!($($edoc, "\n",)*), &[$($text),*])
                })
            }
        }
    };
}

pub(crate) use {spec_enum, spec_struct};

/// Reads a string that must be one of `names`.
pub(crate) fn read_named<T>(
    value: &Json,
    path: &str,
    errors: &mut Errors,
    parse: fn(&str) -> Option<T>,
    names: &[&str],
) -> Option<T> {
    let Json::String(text) = value else {
        errors.push(
            path,
            format!("expected a string, found {}", value.kind()),
            format!("write one of {}", quoted_list(names)),
        );
        return None;
    };
    let parsed = parse(text);
    if parsed.is_none() {
        let hint = match nearest(text, names) {
            Some(near) => format!("did you mean `{near}`?"),
            None => format!("expected one of {}", quoted_list(names)),
        };
        errors.push(path, format!("unknown value `{text}`"), hint);
    }
    parsed
}

fn description(doc: &str) -> String {
    doc.lines()
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(" ")
        .trim()
        .to_owned()
}

/// Adds a description to a schema (wrapping a `$ref`, which takes no siblings in older
/// drafts, in `allOf`).
pub(crate) fn with_description(schema: Json<'static>, doc: &str) -> Json<'static> {
    let text = description(doc);
    if text.is_empty() {
        return schema;
    }
    let mut schema = match schema {
        Json::Object(fields) if fields.iter().any(|(k, _)| k == "$ref") => {
            object(vec![("allOf", Json::Array(vec![Json::Object(fields)]))])
        }
        other => other,
    };
    if let Json::Object(fields) = &mut schema {
        fields.insert(0, (Cow::Borrowed("description"), Json::String(text.into())));
    }
    schema
}

pub(crate) fn struct_schema(
    doc: &str,
    properties: Vec<(Cow<'static, str>, Json<'static>)>,
    required: Vec<Json<'static>>,
) -> Json<'static> {
    let mut fields = vec![
        ("description", Json::string(description(doc))),
        ("type", Json::string("object")),
        ("properties", Json::Object(properties)),
    ];
    if !required.is_empty() {
        fields.push(("required", Json::Array(required)));
    }
    fields.push(("additionalProperties", Json::Bool(false)));
    object(fields)
}

pub(crate) fn enum_schema(doc: &str, names: &[&str]) -> Json<'static> {
    object(vec![
        ("description", Json::string(description(doc))),
        ("type", Json::string("string")),
        (
            "enum",
            Json::Array(names.iter().map(|n| Json::string(*n)).collect()),
        ),
    ])
}

impl FromJson for String {
    fn read(value: &Json, path: &str, errors: &mut Errors) -> Option<Self> {
        match value {
            Json::String(text) => Some(text.to_string()),
            other => {
                errors.push(
                    path,
                    format!("expected a string, found {}", other.kind()),
                    "",
                );
                None
            }
        }
    }

    fn schema(_: &mut Schemas) -> Json<'static> {
        type_schema("string")
    }
}

impl FromJson for bool {
    fn read(value: &Json, path: &str, errors: &mut Errors) -> Option<Self> {
        match value {
            Json::Bool(flag) => Some(*flag),
            other => {
                errors.push(
                    path,
                    format!("expected true or false, found {}", other.kind()),
                    "",
                );
                None
            }
        }
    }

    fn schema(_: &mut Schemas) -> Json<'static> {
        type_schema("boolean")
    }
}

macro_rules! unsigned {
    ($($ty:ty),*) => {$(
        impl FromJson for $ty {
            fn read(value: &Json, path: &str, errors: &mut Errors) -> Option<Self> {
                let parsed = match value {
                    Json::Number(text) => text.parse::<$ty>().ok(),
                    _ => None,
                };
                if parsed.is_none() {
                    errors.push(
                        path,
                        format!("expected a whole number from 0 to {}, found {}", <$ty>::MAX, value),
                        "",
                    );
                }
                parsed
            }

            fn schema(_: &mut Schemas) -> Json<'static> {
                object(vec![
                    ("type", Json::string("integer")),
                    ("minimum", Json::Number("0".into())),
                    ("maximum", Json::Number(<$ty>::MAX.to_string().into())),
                ])
            }
        }
    )*};
}

unsigned!(u16, u32, u64);

impl<T: FromJson> FromJson for Vec<T> {
    fn read(value: &Json, path: &str, errors: &mut Errors) -> Option<Self> {
        let Json::Array(items) = value else {
            errors.push(path, format!("expected a list, found {}", value.kind()), "");
            return None;
        };
        let mut at = with_room(path);
        Some(
            items
                .iter()
                .enumerate()
                .filter_map(|(i, item)| T::read(item, item_path(&mut at, path, i), errors))
                .collect(),
        )
    }

    fn schema(schemas: &mut Schemas) -> Json<'static> {
        object(vec![
            ("type", Json::string("array")),
            ("items", T::schema(schemas)),
        ])
    }
}

/// A JSON object keyed by names, in document order.
#[derive(Debug, Clone, Default)]
pub struct Named<T>(pub Vec<(String, T)>);

impl<T: FromJson> FromJson for Named<T> {
    fn read(value: &Json, path: &str, errors: &mut Errors) -> Option<Self> {
        let Json::Object(fields) = value else {
            errors.push(
                path,
                format!("expected an object, found {}", value.kind()),
                "",
            );
            return None;
        };
        Some(Named(
            fields
                .iter()
                .filter_map(|(key, item)| {
                    T::read(item, &join(path, key), errors).map(|v| (key.to_string(), v))
                })
                .collect(),
        ))
    }

    fn schema(schemas: &mut Schemas) -> Json<'static> {
        object(vec![
            ("type", Json::string("object")),
            ("additionalProperties", T::schema(schemas)),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    spec_enum! {
        /// A colour.
        pub enum Colour {
            /// Red.
            Red = "red",
            /// Dark blue.
            DarkBlue = "dark_blue",
        }
    }

    spec_struct! {
        /// A thing.
        pub struct Thing {
            /// Its name.
            name: req String,
            /// Its colour.
            colour: opt Colour,
            /// How many.
            count as "n": opt u32,
        }
    }

    fn read(text: &str) -> (Option<Thing>, Vec<String>) {
        let mut errors = Errors::default();
        let thing = Thing::read(&Json::parse(text).unwrap(), "things[0]", &mut errors);
        (thing, errors.list.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn a_struct_reads_its_fields() {
        let (thing, errors) = read(r#"{"name":"a","colour":"dark_blue","n":3}"#);
        assert!(errors.is_empty(), "{errors:?}");
        let thing = thing.unwrap();
        assert_eq!(
            (thing.name.as_str(), thing.colour, thing.count),
            ("a", Some(Colour::DarkBlue), Some(3))
        );
    }

    #[test]
    fn every_mistake_is_reported_in_one_pass() {
        let (thing, errors) = read(r#"{"colour":"blu","n":-1,"nme":"x"}"#);
        assert!(thing.is_none());
        assert_eq!(
            errors,
            vec![
                "things[0].name: missing; this field is required",
                "things[0].colour: unknown value `blu`; expected one of `red`, `dark_blue`",
                "things[0].n: expected a whole number from 0 to 4294967295, found -1",
                "things[0].nme: unknown field `nme`; did you mean `name`?",
            ]
        );
    }

    #[test]
    fn the_schema_comes_from_the_declaration() {
        let mut schemas = Schemas::default();
        let reference = Thing::schema(&mut schemas);
        assert_eq!(reference.to_string(), r##"{"$ref":"#/$defs/Thing"}"##);
        let thing = schemas.defs.get("Thing").unwrap();
        assert_eq!(
            thing.pointer("/required/0").and_then(Json::as_str),
            Some("name")
        );
        assert_eq!(
            thing
                .pointer("/properties/n/description")
                .and_then(Json::as_str),
            Some("How many.")
        );
        assert_eq!(thing.get("additionalProperties"), Some(&Json::Bool(false)));
        assert_eq!(
            Colour::ALL.iter().map(|c| c.as_str()).collect::<Vec<_>>(),
            ["red", "dark_blue"]
        );
        let colour = schemas.defs.get("Colour").unwrap();
        assert_eq!(
            colour.pointer("/enum/1").and_then(Json::as_str),
            Some("dark_blue")
        );
    }
}
