//! Reading a JSON or YAML document (an OpenAPI description) into the engine's ordered
//! JSON tree, so the rest of the inventory code reads one kind of value whatever the
//! document's syntax, and keys keep the order their authors gave them.
//!
//! JSON is told by its first character (`{` or `[`) and parsed by the engine's reader;
//! anything else is YAML (1.2, through `serde_norway`, with `<<` merge keys applied).
//! Syntax errors carry the line and column; YAML that has no JSON equivalent (a tag, a
//! key that is a list) is an error at its JSON pointer.

use std::path::{Path, PathBuf};

use serde_norway::Value as Yaml;
use stakeguard_policies::json::Json;

/// A document that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The file could not be read.
    #[error("{}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Not valid JSON or YAML, or YAML without a JSON equivalent.
    #[error("{}: {message}", path.display())]
    Syntax {
        /// The file.
        path: PathBuf,
        /// What and where.
        message: String,
    },
}

/// Reads and parses a file.
pub fn read(path: &Path) -> Result<Json<'static>, SourceError> {
    let text = std::fs::read_to_string(path).map_err(|source| SourceError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(path, &text)
}

/// Parses a document's text; `path` names it in messages.
pub fn parse(path: &Path, text: &str) -> Result<Json<'static>, SourceError> {
    let syntax = |message: String| SourceError::Syntax {
        path: path.to_path_buf(),
        message,
    };
    if text.trim_start().starts_with(['{', '[']) {
        return Json::parse(text)
            .map(Json::into_owned)
            .map_err(|e| syntax(format!("not valid JSON: {e}")));
    }
    let mut value: Yaml =
        serde_norway::from_str(text).map_err(|e| syntax(format!("not valid YAML: {e}")))?;
    value
        .apply_merge()
        .map_err(|e| syntax(format!("bad YAML merge key: {e}")))?;
    to_json(&value, "").map_err(syntax)
}

fn to_json(value: &Yaml, pointer: &str) -> Result<Json<'static>, String> {
    Ok(match value {
        Yaml::Null => Json::Null,
        Yaml::Bool(flag) => Json::Bool(*flag),
        Yaml::Number(n) if n.is_nan() || n.is_infinite() => Json::string(n.to_string()),
        Yaml::Number(n) => Json::Number(n.to_string().into()),
        Yaml::String(text) => Json::string(text),
        Yaml::Sequence(items) => Json::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, item)| to_json(item, &format!("{pointer}/{i}")))
                .collect::<Result<_, _>>()?,
        ),
        Yaml::Mapping(map) => {
            let mut fields = Vec::with_capacity(map.len());
            for (key, item) in map {
                // Response codes (`200:`) and similar keys are numbers in YAML.
                let key = match key {
                    Yaml::String(text) => text.clone(),
                    Yaml::Number(n) => n.to_string(),
                    Yaml::Bool(flag) => flag.to_string(),
                    _ => {
                        return Err(format!(
                            "{}: a mapping key that is not a string, number or boolean; JSON keys are text",
                            shown(pointer)
                        ));
                    }
                };
                let inner = format!("{pointer}/{}", key.replace('~', "~0").replace('/', "~1"));
                let item = to_json(item, &inner)?;
                fields.push((key.into(), item));
            }
            Json::Object(fields)
        }
        Yaml::Tagged(tagged) => {
            return Err(format!(
                "{}: the YAML tag `{}` has no JSON equivalent; remove it",
                shown(pointer),
                tagged.tag
            ));
        }
    })
}

/// A JSON pointer for messages (`/` for the root).
pub fn shown(pointer: &str) -> &str {
    if pointer.is_empty() { "/" } else { pointer }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_and_json_give_the_same_tree_in_document_order() {
        let yaml = "openapi: 3.1.0\npaths:\n  /b: {}\n  /a:\n    get:\n      responses:\n        200: {description: ok}\n";
        let json = r#"{"openapi":"3.1.0","paths":{"/b":{},"/a":{"get":{"responses":{"200":{"description":"ok"}}}}}}"#;
        let from_yaml = parse(Path::new("a.yaml"), yaml).unwrap();
        assert_eq!(from_yaml, parse(Path::new("a.json"), json).unwrap());
        let Some(Json::Object(paths)) = from_yaml.get("paths") else {
            panic!("paths")
        };
        assert_eq!(paths[0].0, "/b");
        assert_eq!(
            from_yaml.get("openapi"),
            Some(&Json::String("3.1.0".into()))
        );
    }

    #[test]
    fn syntax_errors_name_the_file_and_place() {
        let e = parse(Path::new("spec.yaml"), "a: [1, 2\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("spec.yaml: not valid YAML:"), "{e}");
        assert!(e.contains("line"), "{e}");
        let e = parse(Path::new("spec.json"), "{\"a\": }")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("spec.json: not valid JSON:") && e.contains("line 1"),
            "{e}"
        );
        let e = parse(Path::new("t.yaml"), "paths:\n  /x: !custom 1\n")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "t.yaml: /paths/~1x: the YAML tag `!custom` has no JSON equivalent; remove it"
        );
    }
}
