//! limitador-server's limits file: a YAML list of limits, each with `namespace`,
//! `max_value`, `seconds`, `conditions` and `variables` (CEL over `descriptors`; see
//! [`crate::counting`]), optionally `name`. Read with Limitador's own `Limit` type, so a
//! file this peer takes is one limitador-server takes.

use std::path::Path;

use limitador::limit::Limit;

/// The limits in `path`; the error names the file and, from the YAML reader, the place.
pub fn read(path: &Path) -> Result<Vec<Limit>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("limits file {}: {e}", path.display()))?;
    parse(&text).map_err(|e| format!("limits file {}: {e}", path.display()))
}

/// The limits in a limits file's text.
pub fn parse(text: &str) -> Result<Vec<Limit>, String> {
    serde_norway::from_str(text).map_err(|e| {
        format!("{e}; expected a list of limits with namespace, max_value, seconds, conditions, variables")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_limitador_server_file_is_read_with_its_cel_conditions() {
        let limits = parse(
            "- namespace: bank\n  max_value: 5\n  seconds: 60\n  conditions:\n    - \"descriptors[0].control == 'login'\"\n  variables:\n    - descriptors[0].key\n",
        )
        .unwrap();
        assert_eq!(limits.len(), 1);
        assert_eq!(limits[0].max_value(), 5);
        assert_eq!(limits[0].seconds(), 60);
        assert_eq!(limits[0].namespace().as_ref(), "bank");
    }

    #[test]
    fn a_bad_condition_is_refused_with_the_place() {
        let err = parse("- namespace: bank\n  max_value: 5\n  seconds: 60\n  conditions: [\"descriptors[0].(\"]\n  variables: []\n")
            .unwrap_err();
        assert!(err.contains("line") || err.contains("conditions"), "{err}");
    }
}
