//! Local replies: the status, headers and JSON body a blocked client sees.
//!
//! The body names the error and carries the request's reference, the same one that is in
//! the incident log line and the published decision, so a complaint leads straight to
//! the record. Nothing from the request is echoed back.

use crate::decision::{LocalReply, Verdict};
use crate::json::ObjectWriter;

/// A local reply with a JSON body `{"error": ..., "message": ..., "reference": ...}`.
pub(crate) fn error_reply(
    status: u16,
    error: &str,
    message: &str,
    reference: &str,
    headers: Vec<(String, String)>,
) -> Verdict {
    let body = ObjectWriter::new()
        .string("error", error)
        .string("message", message)
        .string("reference", reference)
        .finish();
    Verdict::Reply(LocalReply {
        status,
        headers,
        body,
    })
}

/// Seconds to tell a client in `Retry-After`: at least one, rounded up.
pub(crate) fn retry_after_seconds(millis: u64) -> u64 {
    millis.div_ceil(1_000).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_is_json_with_the_reference_escaped() {
        let Verdict::Reply(reply) = error_reply(429, "rate_limited", "slow down", "a\"b", vec![])
        else {
            panic!("not a reply");
        };
        let body = crate::json::Json::parse(&reply.body).unwrap();
        assert_eq!(
            body.get("error").and_then(|v| v.as_str()),
            Some("rate_limited")
        );
        assert_eq!(body.get("reference").and_then(|v| v.as_str()), Some("a\"b"));
        assert_eq!(reply.status, 429);
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_seconds(0), 1);
        assert_eq!(retry_after_seconds(1_001), 2);
        assert_eq!(retry_after_seconds(60_000), 60);
    }
}
