//! The allow path allocates (almost) nothing: in stakeguard.wasm every allocation goes
//! through the module's allocator, which costs more than the rest of a typical decision.
//!
//! A counting allocator (per thread, so the test harness's own threads do not count)
//! watches the bank policy's everyday traffic: an anonymous read of a public API and an
//! authenticated one whose bearer token the ownership control reads, both from the mTLS
//! partner the policy exempts from rate limits, then their hardened responses.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests fail loudly"
)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use stakeguard_policies::{HeaderChange, MemoryStore, Policy, Request, Response, Verdict};

mod common;

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

fn count() {
    // `try_with`: the thread's slot may already be gone while the thread shuts down.
    let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
}

// SAFETY: every call is forwarded to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: the caller's contract is passed on as it is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract is passed on as it is.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: the caller's contract is passed on as it is.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// How many allocations `f` makes on this thread, and what it returned.
fn allocations<T>(f: impl FnOnce() -> T) -> (usize, T) {
    let before = ALLOCATIONS.with(Cell::get);
    let result = f();
    (ALLOCATIONS.with(Cell::get) - before, result)
}

/// `{"sub":"alice","accounts":["1000","1001","1002"],"scope":"accounts:read transfers:write"}`
const TOKEN: &str = "Bearer eyJhbGciOiJSUzI1NiIsImtpZCI6ImJhbmstMjAyNiJ9.eyJzdWIiOiJhbGljZSIsImFjY291bnRzIjpbIjEwMDAiLCIxMDAxIiwiMTAwMiJdLCJzY29wZSI6ImFjY291bnRzOnJlYWQgdHJhbnNmZXJzOndyaXRlIn0.c2lnbmF0dXJl";

#[test]
fn the_bank_allow_path_allocates_only_the_response_changes() {
    let policy = Policy::from_json(&common::example("bank")).unwrap();
    let store = MemoryStore::new();
    let now = common::START;
    let anonymous = [
        (":method", "GET"),
        (":authority", "bank.example.com"),
        (":path", "/api/v1/rates/EUR012?at=now"),
        ("user-agent", "bench/1.0"),
        ("accept", "application/json"),
        ("x-request-id", "bench-12"),
    ];
    let authenticated = [
        (":method", "GET"),
        (":authority", "bank.example.com"),
        (":path", "/api/v2/accounts"),
        ("user-agent", "bench/1.0"),
        ("accept", "application/json"),
        ("x-request-id", "bench-13"),
        ("authorization", TOKEN),
    ];
    let response_headers = [
        (":status", "200"),
        ("server", "nginx/1.25.3"),
        ("x-powered-by", "Express"),
        ("content-type", "application/json"),
    ];
    // The list of changes a host keeps from response to response (the filter keeps one
    // per worker): grown once, then reused.
    let mut changes = Vec::with_capacity(16);
    for headers in [&anonymous[..], &authenticated[..]] {
        let path = headers[2].1;
        let request = Request {
            method: "GET",
            authority: "bank.example.com",
            path,
            headers: &headers,
            source_address: Some("198.51.100.7:40000"),
            peer_uri_san: Some("spiffe://partners.example/aggregator"),
            reference: "ref-test",
        };
        let (on_request, (mut stream, verdict)) =
            allocations(|| policy.on_request(&request, &now, &store));
        assert_eq!(verdict, Verdict::Continue, "{path}");
        assert_eq!(on_request, 0, "allocations in on_request for {path}");
        assert!(stream.wants_response());

        let response = Response {
            status: 200,
            headers: &response_headers,
        };
        changes.clear();
        let (on_response, ()) = allocations(|| {
            let read = stream.needs_response_headers().then_some(&response);
            policy.on_response(&mut stream, read, &now, &store, &mut changes);
        });
        assert!(
            changes.contains(&HeaderChange::Remove("server".into())),
            "{changes:?}"
        );
        assert_eq!(on_response, 0, "allocations in on_response for {path}");
        assert!(stream.take_events().is_empty(), "{path}");
    }
}
