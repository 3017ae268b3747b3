//! gRPC as Envoy 1.40 answers it: a local reply to a gRPC request (`content-type:
//! application/grpc`, or `application/grpc+proto` and the like) is not an HTTP error but
//! a *trailers-only* gRPC response: HTTP 200, `content-type: application/grpc`, the
//! `grpc-status` the module gave (or one mapped from the HTTP status as Envoy's
//! `Grpc::Utility::httpToGrpcStatus` maps it, after gRPC's own
//! `http-grpc-status-mapping.md`), the body as a percent-encoded `grpc-message`, and no
//! body. The harness builds local replies (and the 503 of a failed VM) through
//! [`local_reply`], so the report shows what a gRPC client gets.

/// The name of a gRPC status code, as the gRPC specification spells it.
pub fn code_name(code: u32) -> &'static str {
    match code {
        0 => "OK",
        1 => "CANCELLED",
        2 => "UNKNOWN",
        3 => "INVALID_ARGUMENT",
        4 => "DEADLINE_EXCEEDED",
        5 => "NOT_FOUND",
        6 => "ALREADY_EXISTS",
        7 => "PERMISSION_DENIED",
        8 => "RESOURCE_EXHAUSTED",
        9 => "FAILED_PRECONDITION",
        10 => "ABORTED",
        11 => "OUT_OF_RANGE",
        12 => "UNIMPLEMENTED",
        13 => "INTERNAL",
        14 => "UNAVAILABLE",
        15 => "DATA_LOSS",
        16 => "UNAUTHENTICATED",
        _ => "(not a gRPC status)",
    }
}

/// The gRPC status Envoy gives a local reply of HTTP status `http` when the module named
/// none.
pub fn http_to_grpc_status(http: u32) -> u32 {
    match http {
        400 => 13,
        401 => 16,
        403 => 7,
        404 => 12,
        429 | 502 | 503 | 504 => 14,
        _ => 2,
    }
}

/// Whether request headers make a gRPC request in Envoy's eyes: a `content-type` of
/// `application/grpc`, alone or followed by `+` or `;` (Envoy's
/// `Grpc::Common::hasGrpcContentType`).
pub fn is_grpc_request<'a>(mut headers: impl Iterator<Item = (&'a str, &'a str)>) -> bool {
    headers.any(|(name, value)| {
        name.eq_ignore_ascii_case("content-type")
            && value
                .strip_prefix("application/grpc")
                .is_some_and(|rest| rest.is_empty() || rest.starts_with(['+', ';']))
    })
}

/// A `grpc-message` value: bytes outside printable ASCII (below space, from `~` up) and
/// `%` become `%XX`, as Envoy's `PercentEncoding::encode` writes them.
pub fn percent_encode(message: &[u8]) -> String {
    let mut out = String::with_capacity(message.len());
    for &b in message {
        if !(b' '..b'~').contains(&b) || b == b'%' {
            out.push_str(&format!("%{b:02X}"));
        } else {
            out.push(char::from(b));
        }
    }
    out
}

/// What the client gets for a local reply: the response headers and the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// Response headers, `:status` first.
    pub headers: Vec<(String, String)>,
    /// The body (empty for a gRPC reply: trailers-only).
    pub body: Vec<u8>,
    /// The `grpc-status` of a gRPC reply.
    pub grpc_status: Option<u32>,
}

/// The response Envoy makes of `proxy_send_local_response(status, body, headers,
/// grpc_status)`. For HTTP: `:status`, then `content-length` and `content-type:
/// text/plain` when there is a body, then the module's headers. For a gRPC request:
/// `:status: 200`, the module's headers, `content-type: application/grpc`,
/// `grpc-status` (a module's own `grpc-status` header wins, then its `grpc_status`
/// argument when it is a gRPC code, else the mapped HTTP status), `grpc-message` from the
/// body (one trailing newline dropped) and no body.
pub fn local_reply(
    status: u32,
    body: &[u8],
    module_headers: &[(String, String)],
    grpc_status: i32,
    grpc_request: bool,
) -> Reply {
    if !grpc_request {
        let mut headers = vec![(":status".to_string(), status.to_string())];
        if !body.is_empty() {
            headers.push(("content-length".to_string(), body.len().to_string()));
            headers.push(("content-type".to_string(), "text/plain".to_string()));
        }
        headers.extend(module_headers.iter().cloned());
        return Reply {
            headers,
            body: body.to_vec(),
            grpc_status: None,
        };
    }
    let mut headers = vec![(":status".to_string(), "200".to_string())];
    headers.extend(
        module_headers
            .iter()
            .filter(|(n, _)| !n.eq_ignore_ascii_case("content-type"))
            .cloned(),
    );
    headers.push(("content-type".to_string(), "application/grpc".to_string()));
    let own = module_headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("grpc-status"))
        .and_then(|(_, v)| v.parse::<u32>().ok());
    let code = own.unwrap_or_else(|| match u32::try_from(grpc_status) {
        Ok(code @ 0..=16) => code,
        _ => http_to_grpc_status(status),
    });
    if own.is_none() {
        headers.push(("grpc-status".to_string(), code.to_string()));
    }
    let message = body.strip_suffix(b"\n").unwrap_or(body);
    if !message.is_empty() {
        headers.push(("grpc-message".to_string(), percent_encode(message)));
    }
    Reply {
        headers,
        body: Vec::new(),
        grpc_status: Some(code),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_statuses_map_as_envoy_maps_them() {
        let mapped: Vec<u32> = [400, 401, 403, 404, 429, 502, 503, 504, 500, 200, 418]
            .into_iter()
            .map(http_to_grpc_status)
            .collect();
        assert_eq!(mapped, [13, 16, 7, 12, 14, 14, 14, 14, 2, 2, 2]);
        assert_eq!(code_name(7), "PERMISSION_DENIED");
    }

    #[test]
    fn grpc_content_types_are_recognised_and_lookalikes_are_not() {
        let is = |v: &str| is_grpc_request([("Content-Type", v)].into_iter());
        assert!(is("application/grpc"));
        assert!(is("application/grpc+proto"));
        assert!(is("application/grpc;charset=utf-8"));
        assert!(!is("application/grpc-web"));
        assert!(!is("application/json"));
    }

    #[test]
    fn messages_are_percent_encoded_outside_printable_ascii() {
        assert_eq!(percent_encode(b"access denied"), "access denied");
        assert_eq!(
            percent_encode("50% ~ é\n".as_bytes()),
            "50%25 %7E %C3%A9%0A"
        );
    }

    #[test]
    fn a_grpc_local_reply_is_trailers_only_with_the_mapped_status() {
        let reply = local_reply(
            403,
            b"denied: 100%\n",
            &[("x-why".into(), "policy".into())],
            -1,
            true,
        );
        assert_eq!(
            reply.headers,
            [
                (":status", "200"),
                ("x-why", "policy"),
                ("content-type", "application/grpc"),
                ("grpc-status", "7"),
                ("grpc-message", "denied: 100%25"),
            ]
            .map(|(n, v)| (n.to_string(), v.to_string()))
        );
        assert!(reply.body.is_empty());
        assert_eq!(reply.grpc_status, Some(7));
        // The module's own code wins over the mapping; a plain request stays HTTP.
        assert_eq!(local_reply(403, b"", &[], 16, true).grpc_status, Some(16));
        let http = local_reply(403, b"no", &[], -1, false);
        assert_eq!(http.headers[0], (":status".to_string(), "403".to_string()));
        assert_eq!(
            (http.body.as_slice(), http.grpc_status),
            (b"no".as_slice(), None)
        );
    }
}
