//! The APIs an OpenAPI 3.0 or 3.1 document describes, as [`NewApi`]s for the merge.
//!
//! - **Grouping.** One API per tag ([`GroupBy::Tag`], the default: tags are how the
//!   document's authors grouped their operations, and what documentation tools show);
//!   an operation without tags goes to its path group, the first path segment that is
//!   neither `api` nor a version ([`template::path_group`]). [`GroupBy::Path`] uses the
//!   path group for every operation. `x-stakeguard-api` names an operation's API
//!   outright.
//! - **Routes.** The path of the first server (`servers` of the operation, else of the
//!   path item, else of the document; variables at their defaults) followed by the
//!   path's template, with the operation's method. A template parameter that fills only
//!   part of a segment (`/files/{name}.{ext}`) becomes one parameter for the whole
//!   segment, which the engine can match, and a note says so. Hosts are left out: the
//!   gateway's host names are rarely the document's.
//! - **Version.** The first version segment of the route (`/api/v3/pet` is `v3`), else
//!   `info.version`; operations of one tag under two versions become two APIs.
//! - **Lifecycle.** `deprecated: true` operations form a deprecated API of their own
//!   (named with `-deprecated` when active operations of the same API remain), since a
//!   lifecycle belongs to a whole API. `deprecated_at` is `x-stakeguard-deprecated-at`
//!   or the importer's default; `x-stakeguard-sunset` and `x-stakeguard-successor` fill
//!   the rest.
//! - **Extensions.** `x-stakeguard-owner`, `-contact`, `-tier` (strings), `-incidents`
//!   (an object of event name to `page`, `ticket` or `info`), `-api`, and the lifecycle
//!   ones above, on the document, a tag object, a path item or an operation; the most
//!   specific wins. Operations that end up in one API must agree on them.

use stakeguard_policies::json::Json;

use super::source::shown;
use super::{NewApi, NewRoute, template};

/// How operations are grouped into APIs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    /// By the operation's first tag; untagged operations by path group.
    Tag,
    /// By path group.
    Path,
}

/// Choices of the import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// How operations are grouped.
    pub group_by: GroupBy,
    /// `deprecated_at` of deprecated APIs that do not say (RFC 3339).
    pub deprecated_at: String,
}

/// A mistake in the document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The JSON pointer of the offending value (a YAML document's path, written the
    /// same way).
    pub pointer: String,
    /// What is wrong.
    pub message: String,
    /// What to do.
    pub hint: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {}; {}",
            shown(&self.pointer),
            self.message,
            self.hint
        )
    }
}

/// What a document describes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Described {
    /// `info.title`.
    pub title: String,
    /// The APIs, in the order their first operation appears.
    pub apis: Vec<NewApi>,
    /// Things the import changed to fit the engine, one line each.
    pub notes: Vec<String>,
}

/// The operation keys of a path item, in the order OpenAPI lists them.
const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// The extensions read, without their `x-stakeguard-` prefix.
const EXTENSIONS: [&str; 8] = [
    "owner",
    "contact",
    "tier",
    "incidents",
    "api",
    "deprecated-at",
    "sunset",
    "successor",
];

/// Extension values in force at some level, each with the pointer it was read at.
#[derive(Debug, Clone, Default)]
struct Settings {
    strings: Vec<(&'static str, String, String)>,
    incidents: Option<(Vec<(String, String)>, String)>,
}

impl Settings {
    fn get(&self, name: &str) -> Option<&(&'static str, String, String)> {
        self.strings.iter().find(|(n, _, _)| *n == name)
    }

    fn value(&self, name: &str) -> Option<String> {
        self.get(name).map(|(_, v, _)| v.clone())
    }

    /// Reads the `x-stakeguard-*` fields of `object` (at `pointer`) over these.
    fn overlay(&self, object: &Json<'_>, pointer: &str, problems: &mut Vec<Problem>) -> Settings {
        let mut out = self.clone();
        let Json::Object(fields) = object else {
            return out;
        };
        for (key, value) in fields {
            let Some(name) = key.strip_prefix("x-stakeguard-") else {
                continue;
            };
            let at = format!("{pointer}/{}", key.replace('~', "~0").replace('/', "~1"));
            let Some(name) = EXTENSIONS.iter().copied().find(|n| *n == name) else {
                problems.push(problem(
                    &at,
                    format!("unknown extension `{key}`"),
                    format!(
                        "stakeguard reads {}",
                        EXTENSIONS.map(|n| format!("`x-stakeguard-{n}`")).join(", ")
                    ),
                ));
                continue;
            };
            if name == "incidents" {
                match incidents(value, &at, problems) {
                    Some(list) => out.incidents = Some((list, at)),
                    None => continue,
                }
                continue;
            }
            let Some(text) = value.as_str() else {
                problems.push(problem(
                    &at,
                    format!("is {}", value.kind()),
                    "write a string".to_owned(),
                ));
                continue;
            };
            out.strings.retain(|(n, _, _)| *n != name);
            out.strings.push((name, text.to_owned(), at));
        }
        out
    }
}

fn incidents(
    value: &Json<'_>,
    at: &str,
    problems: &mut Vec<Problem>,
) -> Option<Vec<(String, String)>> {
    let Json::Object(fields) = value else {
        problems.push(problem(
            at,
            format!("is {}", value.kind()),
            "write an object of event name to severity, e.g. {\"login_lockout\": \"page\"}"
                .to_owned(),
        ));
        return None;
    };
    let mut list = Vec::new();
    for (event, severity) in fields {
        match severity.as_str() {
            Some(s) => list.push((event.to_string(), s.to_owned())),
            None => problems.push(problem(
                &format!("{at}/{event}"),
                format!("is {}", severity.kind()),
                "write `page`, `ticket` or `info`".to_owned(),
            )),
        }
    }
    Some(list)
}

fn problem(pointer: &str, message: String, hint: String) -> Problem {
    Problem {
        pointer: pointer.to_owned(),
        message,
        hint,
    }
}

/// One operation, placed.
struct Operation {
    name: String,
    version: String,
    deprecated: bool,
    settings: Settings,
    path: String,
    method: String,
    pointer: String,
}

/// Reads the APIs of an OpenAPI document. Every problem found is returned at once.
pub fn describe(doc: &Json<'_>, options: &Options) -> Result<Described, Vec<Problem>> {
    let mut problems = Vec::new();
    let mut notes = Vec::new();
    check_version(doc, &mut problems);
    let title = doc
        .pointer("/info/title")
        .and_then(Json::as_text)
        .unwrap_or("(untitled)")
        .to_owned();
    let info_version = doc.pointer("/info/version").and_then(Json::as_text);
    let root = Settings::default().overlay(doc, "", &mut problems);
    let root_servers = doc.get("servers");
    let mut operations = Vec::new();
    let paths = match doc.get("paths") {
        Some(Json::Object(paths)) => paths.as_slice(),
        None => &[],
        Some(other) => {
            problems.push(problem(
                "/paths",
                format!("is {}", other.kind()),
                "write an object of paths".to_owned(),
            ));
            &[]
        }
    };
    for (key, item) in paths {
        let item_pointer = format!("/paths/{}", key.replace('~', "~0").replace('/', "~1"));
        if !key.starts_with('/') {
            problems.push(problem(
                &item_pointer,
                format!("the path `{key}` does not start with `/`"),
                "write paths as `/pets/{petId}`".to_owned(),
            ));
            continue;
        }
        let item = match item.get("$ref").and_then(Json::as_str) {
            Some(reference) => match reference.strip_prefix('#').and_then(|p| doc.pointer(p)) {
                Some(target) => target,
                None => {
                    problems.push(problem(
                        &format!("{item_pointer}/$ref"),
                        format!("`{reference}` does not point into this document"),
                        "inline the path item or point at `#/components/pathItems/...`".to_owned(),
                    ));
                    continue;
                }
            },
            None => item,
        };
        let Json::Object(fields) = item else {
            continue;
        };
        for (method, operation) in fields {
            if !METHODS.contains(&method.as_ref()) {
                continue;
            }
            let pointer = format!("{item_pointer}/{method}");
            let servers = operation
                .get("servers")
                .or_else(|| item.get("servers"))
                .or(root_servers);
            let (path, note) = route_path(&base_path(servers, &mut notes), key);
            if let Some(note) = note {
                notes.push(format!("{pointer}: {note}"));
            }
            let tag = operation
                .pointer("/tags/0")
                .and_then(Json::as_str)
                .filter(|_| options.group_by == GroupBy::Tag);
            let tag_object = tag.and_then(|t| tag_object(doc, t));
            // Most specific last: the document, the tag, the path item, the operation.
            let mut settings = root.clone();
            if let Some((object, tag_pointer)) = &tag_object {
                settings = settings.overlay(object, tag_pointer, &mut problems);
            }
            let settings = settings
                .overlay(item, &item_pointer, &mut problems)
                .overlay(operation, &pointer, &mut problems);
            let name = settings
                .value("api")
                .or_else(|| tag.map(str::to_owned))
                .unwrap_or_else(|| template::path_group(&path).0);
            let version = match (template::path_group(&path).1, info_version) {
                (Some(version), _) => version,
                (None, Some(version)) => version.to_owned(),
                (None, None) => {
                    problems.push(problem(
                        "/info/version",
                        "missing".to_owned(),
                        "give the document an `info.version`, or version its paths (`/v1/...`)"
                            .to_owned(),
                    ));
                    continue;
                }
            };
            operations.push(Operation {
                name,
                version,
                deprecated: operation.get("deprecated") == Some(&Json::Bool(true)),
                settings,
                path,
                method: method.to_ascii_uppercase(),
                pointer,
            });
        }
    }
    let apis = group(&operations, options, &mut problems);
    // Tags, path items and servers are read once per operation they apply to.
    dedup_in_order(&mut problems);
    dedup_in_order(&mut notes);
    if problems.is_empty() {
        Ok(Described { title, apis, notes })
    } else {
        Err(problems)
    }
}

fn dedup_in_order<T: PartialEq>(items: &mut Vec<T>) {
    let mut kept: Vec<T> = Vec::with_capacity(items.len());
    for item in items.drain(..) {
        if !kept.contains(&item) {
            kept.push(item);
        }
    }
    *items = kept;
}

fn check_version(doc: &Json<'_>, problems: &mut Vec<Problem>) {
    match doc.get("openapi").and_then(Json::as_text) {
        Some(v) if v.starts_with("3.0") || v.starts_with("3.1") => {}
        Some(v) => problems.push(problem(
            "/openapi",
            format!("OpenAPI `{v}` is not supported"),
            "import an OpenAPI 3.0 or 3.1 document".to_owned(),
        )),
        None if doc.get("swagger").is_some() => problems.push(problem(
            "/swagger",
            "Swagger 2.0 is not supported".to_owned(),
            "convert the document to OpenAPI 3 first (e.g. with swagger2openapi)".to_owned(),
        )),
        None => problems.push(problem(
            "/openapi",
            "missing".to_owned(),
            "an OpenAPI document starts with `openapi: 3.0.x` or `3.1.x`".to_owned(),
        )),
    }
}

fn tag_object<'d, 't>(doc: &'d Json<'t>, name: &str) -> Option<(&'d Json<'t>, String)> {
    let Some(Json::Array(tags)) = doc.get("tags") else {
        return None;
    };
    tags.iter()
        .enumerate()
        .find(|(_, t)| t.get("name").and_then(Json::as_str) == Some(name))
        .map(|(i, t)| (t, format!("/tags/{i}")))
}

/// The path part of the first server's URL, variables at their defaults, without a
/// trailing slash (`""` for the root).
fn base_path(servers: Option<&Json<'_>>, notes: &mut Vec<String>) -> String {
    let Some(server) = servers.and_then(|s| s.pointer("/0")) else {
        return String::new();
    };
    let mut url = server
        .get("url")
        .and_then(Json::as_str)
        .unwrap_or("/")
        .to_owned();
    if let Some(Json::Object(variables)) = server.get("variables") {
        for (name, variable) in variables {
            let default = variable
                .get("default")
                .and_then(Json::as_text)
                .unwrap_or("");
            url = url.replace(&format!("{{{name}}}"), default);
        }
    }
    let path = match url.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("", |at| rest.get(at..).unwrap_or("")),
        None => url.as_str(),
    };
    let path = path
        .split(['?', '#'])
        .next()
        .unwrap_or("")
        .trim_end_matches('/');
    if servers.and_then(|s| s.pointer("/1")).is_some() {
        notes.push(
            "the document lists several servers: routes use the first one's base path".to_owned(),
        );
    }
    match path.starts_with('/') || path.is_empty() {
        true => path.to_owned(),
        false => format!("/{path}"),
    }
}

/// The route pattern of a path under `base`, and a note when a template had to widen.
fn route_path(base: &str, key: &str) -> (String, Option<String>) {
    let mut widened = Vec::new();
    let segments: Vec<String> = key
        .split('/')
        .map(|segment| {
            let whole = segment.starts_with('{')
                && segment.ends_with('}')
                && segment.matches('{').count() == 1;
            match segment.find('{') {
                Some(open) if !whole => {
                    let name = segment
                        .get(open + 1..)
                        .and_then(|rest| rest.split('}').next())
                        .unwrap_or("param");
                    widened.push(segment.to_owned());
                    format!("{{{name}}}")
                }
                _ => segment.to_owned(),
            }
        })
        .collect();
    let path = format!("{base}{}", segments.join("/"));
    let note = (!widened.is_empty()).then(|| {
        format!(
            "`{}` fills part of a segment with a parameter; the route takes the whole segment as one",
            widened.join("`, `")
        )
    });
    (path, note)
}

/// Gathers operations into APIs, checking that each API's operations agree.
fn group(operations: &[Operation], options: &Options, problems: &mut Vec<Problem>) -> Vec<NewApi> {
    let mut keys: Vec<(&str, &str, bool)> = Vec::new();
    for op in operations {
        let key = (op.name.as_str(), op.version.as_str(), op.deprecated);
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    keys.iter()
        .map(|&(name, version, deprecated)| {
            let members: Vec<&Operation> = operations
                .iter()
                .filter(|o| o.name == name && o.version == version && o.deprecated == deprecated)
                .collect();
            let agreed =
                |field: &str, problems: &mut Vec<Problem>| agree(&members, field, problems);
            let owner = agreed("owner", problems);
            let contact = agreed("contact", problems);
            let tier = agreed("tier", problems);
            let incidents = agree_incidents(&members, problems);
            let twin = deprecated && keys.contains(&(name, version, false));
            let lifecycle = deprecated.then(|| {
                let mut fields = vec![
                    ("status".into(), Json::string("deprecated")),
                    (
                        "deprecated_at".into(),
                        Json::String(
                            agreed("deprecated-at", problems)
                                .unwrap_or_else(|| options.deprecated_at.clone())
                                .into(),
                        ),
                    ),
                ];
                for (field, key) in [("sunset", "sunset"), ("successor", "successor")] {
                    if let Some(value) = agreed(field, problems) {
                        fields.push((key.into(), Json::string(value)));
                    }
                }
                Json::Object(fields)
            });
            let mut routes: Vec<NewRoute> = Vec::new();
            for op in &members {
                match routes.iter_mut().find(|r| r.path == op.path) {
                    Some(route) if !route.methods.contains(&op.method) => {
                        route.methods.push(op.method.clone())
                    }
                    Some(_) => {}
                    None => routes.push(NewRoute {
                        host: None,
                        path: op.path.clone(),
                        methods: vec![op.method.clone()],
                        origin: op.pointer.clone(),
                    }),
                }
            }
            NewApi {
                name: if twin {
                    format!("{name}-deprecated")
                } else {
                    name.to_owned()
                },
                version: version.to_owned(),
                owner,
                contact,
                tier,
                incidents,
                lifecycle,
                routes,
            }
        })
        .collect()
}

/// The value every operation of an API gives an extension, if any gives one.
fn agree(members: &[&Operation], field: &str, problems: &mut Vec<Problem>) -> Option<String> {
    let mut first: Option<&(&str, String, String)> = None;
    for op in members {
        let Some(setting) = op.settings.get(field) else {
            continue;
        };
        match first {
            None => first = Some(setting),
            Some((_, value, at)) if *value != setting.1 => {
                problems.push(disagreement(&setting.2, field, at, &op.name));
                return None;
            }
            Some(_) => {}
        }
    }
    first.map(|(_, value, _)| value.clone())
}

fn agree_incidents(members: &[&Operation], problems: &mut Vec<Problem>) -> Vec<(String, String)> {
    let mut first: Option<&(Vec<(String, String)>, String)> = None;
    for op in members {
        let Some(setting) = &op.settings.incidents else {
            continue;
        };
        match first {
            None => first = Some(setting),
            Some((list, at)) if *list != setting.0 => {
                problems.push(disagreement(&setting.1, "incidents", at, &op.name));
                return Vec::new();
            }
            Some(_) => {}
        }
    }
    first.map(|(list, _)| list.clone()).unwrap_or_default()
}

fn disagreement(here: &str, field: &str, there: &str, api: &str) -> Problem {
    problem(
        here,
        format!("`x-stakeguard-{field}` differs from the one at {there}, in the same API `{api}`"),
        "give the API's operations the same value, or move one to another API with `x-stakeguard-api`".to_owned(),
    )
}
