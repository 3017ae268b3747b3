//! The traffic readers on hand-written samples: HAR 1.2, Envoy tap traces (buffered and
//! streamed), stakeguard JSON Lines, and bad input naming file, entry, line and field.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use stakeguard_harness::traffic::{read_file, read_file_lenient, read_paths, read_paths_lenient};

#[test]
fn har_entries_become_records_with_pseudo_headers_from_the_url() {
    let records = read_file(&common::data("sample.har")).unwrap();
    assert_eq!(records.len(), 2);
    let login = &records[0];
    assert_eq!(login.request.method, "POST");
    assert_eq!(login.request.scheme, "https");
    assert_eq!(login.request.authority, "bank.example.com");
    assert_eq!(login.request.path, "/api/v2/login?next=%2Fhome");
    assert_eq!(
        login.request.headers,
        vec![("content-type".to_string(), "application/json".to_string())]
    );
    assert_eq!(login.request.body, br#"{"username":"ana"}"#);
    assert_eq!(login.connection.as_deref(), Some("1001"));
    let response = login.response.as_ref().unwrap();
    assert_eq!(response.status, 401);
    assert_eq!(response.body, b"nope!\n");
    assert_eq!(login.time_ns, Some(1_772_355_600_000_000_000));
    // Devtools' status 0 means no answer; an empty path is `/`.
    assert!(records[1].response.is_none());
    assert_eq!(records[1].request.path, "/");
    assert_eq!(records[1].time_ns, Some(1_772_355_601_500_000_000));
}

#[test]
fn buffered_tap_traces_carry_headers_bodies_and_peers() {
    let records = read_file(&common::data("tap-buffered.json")).unwrap();
    let r = &records[0];
    assert_eq!(
        (r.request.method.as_str(), r.request.path.as_str()),
        ("GET", "/api/v2/accounts/42")
    );
    assert_eq!(
        r.request.headers,
        vec![("x-user-id".to_string(), "ana".to_string())]
    );
    assert_eq!(r.source.as_deref(), Some("192.0.2.7:51234"));
    assert_eq!(r.connection.as_deref(), Some("192.0.2.7:51234"));
    assert_eq!(r.destination.as_deref(), Some("10.0.0.2:10000"));
    let resp = r.response.as_ref().unwrap();
    assert_eq!(
        (resp.status, resp.body.as_slice()),
        (200, br#"{"balance":10}"#.as_slice())
    );
}

#[test]
fn streamed_tap_segments_are_joined_by_trace_id() {
    let records = read_file(&common::data("tap-streamed.jsonl")).unwrap();
    assert_eq!(records.len(), 2);
    assert_eq!(records[0].request.path, "/upload");
    assert_eq!(records[0].request.body, b"hello world");
    assert_eq!(records[0].response.as_ref().unwrap().status, 201);
    assert_eq!(records[1].response.as_ref().unwrap().status, 404);
}

#[test]
fn a_bad_jsonl_entry_names_file_entry_line_and_field() {
    let err = read_file(&common::data("bad.jsonl"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("bad.jsonl: entry 1 (line 2): request.headers[0]"),
        "{err}"
    );
    let (records, errors) = read_file_lenient(&common::data("bad.jsonl")).unwrap();
    assert_eq!(records.len(), 1);
    let messages: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(messages.len(), 3, "{messages:?}");
    assert!(
        messages[1].contains("entry 2 (line 3): time: `not a time` is not an RFC 3339 timestamp"),
        "{messages:?}"
    );
    assert!(
        messages[2].contains("entry 3 (line 4)") && messages[2].contains("bodyy"),
        "{messages:?}"
    );
}

#[test]
fn a_bad_har_entry_names_the_entry_and_field() {
    let (records, errors) = read_file_lenient(&common::data("bad.har")).unwrap();
    assert_eq!(records.len(), 1);
    let message = errors[0].to_string();
    assert!(
        message.contains(
            "bad.har: entry 1: log.entries[1].request.url: `/relative` is not an absolute URL"
        ),
        "{message}"
    );
}

#[test]
fn unknown_formats_and_missing_files_say_so() {
    let dir = std::env::temp_dir().join(format!("stakeguard-traffic-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("x.txt");
    std::fs::write(&path, "GET / HTTP/1.1\r\n").unwrap();
    assert!(
        read_file(&path)
            .unwrap_err()
            .to_string()
            .contains("unknown format")
    );
    assert!(
        read_file(&dir.join("missing.jsonl"))
            .unwrap_err()
            .to_string()
            .contains("failed to read traffic file")
    );
}

/// A scratch directory for one test.
fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("stakeguard-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn a_cut_short_or_empty_file_says_what_was_expected_and_where_it_stopped() {
    let dir = scratch("truncated");
    let whole = std::fs::read_to_string(common::data("tap-buffered.json")).unwrap();
    // Cut inside the response headers, as a tap file still being written would be.
    let cut = &whole[..whole.find(r#""content-type""#).unwrap()];
    let path = dir.join("cut.json");
    std::fs::write(&path, cut).unwrap();
    let err = read_file(&path).unwrap_err().to_string();
    let last_line = cut.lines().count();
    assert!(
        err.contains("cut short: an Envoy tap trace ends before it is complete")
            && err.contains(&format!("reading stopped at line {last_line} column ")),
        "{err}"
    );
    let empty = dir.join("empty.jsonl");
    std::fs::write(&empty, "\n").unwrap();
    let err = read_file(&empty).unwrap_err().to_string();
    assert!(
        err.contains("empty.jsonl: empty: the text ends before any JSON (reading stopped at line 2 column 0); expected HAR 1.2"),
        "{err}"
    );
}

#[test]
fn a_directory_is_read_whole_and_an_empty_one_is_refused() {
    let records = read_paths(&[common::data("tap-dir")]).unwrap();
    assert_eq!(records.len(), 8);
    let dir = scratch("empty-dir");
    // Hidden files (an editor's or a sink's temporary files) are not traffic.
    std::fs::write(dir.join(".partial"), "{").unwrap();
    let err = read_paths(std::slice::from_ref(&dir))
        .unwrap_err()
        .to_string();
    assert!(err.contains("holds no files"), "{err}");
    // A bad file in a directory is named by its own path.
    std::fs::write(dir.join("b.json"), "").unwrap();
    let err = read_paths(std::slice::from_ref(&dir))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!("{}: empty", dir.join("b.json").display())),
        "{err}"
    );
    // Leniently, such a file is reported and the others are read.
    std::fs::copy(common::data("tap-buffered.json"), dir.join("a.json")).unwrap();
    let (records, errors) = read_paths_lenient(std::slice::from_ref(&dir)).unwrap();
    assert_eq!((records.len(), errors.len()), (1, 1));
    assert!(
        errors[0].to_string().contains("b.json: empty"),
        "{errors:?}"
    );
}
