//! The generated inventories the scaling benches share (`decide` here, natively;
//! `harness/benches/scaling.rs` through stakeguard.wasm): `n` APIs over a few hosts, each
//! with an exact, a template and a glob route, in a tier whose allow path checks
//! credentials, lifecycle and body limits, and requests spread over the whole inventory,
//! so a large one is not helped by a hot corner of it. Generated, never committed.

/// The policy document of an inventory of `n` APIs.
pub fn inventory_json(n: usize) -> String {
    let apis: Vec<serde_json::Value> = (0..n)
        .map(|i| {
            serde_json::json!({
                "name": format!("svc{i}"), "version": "v1", "owner": format!("team-{}", i % 50), "tier": "standard",
                "routes": [
                    { "host": format!("h{}.example.com", i % 7), "path": format!("/api/svc{i}/items"), "methods": ["GET", "POST"] },
                    { "host": format!("h{}.example.com", i % 7), "path": format!("/api/svc{i}/items/{{id}}"), "methods": ["GET"] },
                    { "path": format!("/public/svc{i}/**") }
                ]
            })
        })
        .collect();
    serde_json::json!({
        "revision": format!("bench-{n}"),
        "tiers": { "standard": {
            "auth": { "required": ["authorization"] },
            "body": { "max_bytes": 65536, "content_types": ["application/json"] },
            "response": { "strip": ["server"] }
        } },
        "apis": apis,
        "unknown_routes": { "action": "block" }
    })
    .to_string()
}

/// The authority and path of the `k`th of the requests sent to an inventory of `n`.
pub fn request_target(k: usize, n: usize) -> (String, String) {
    let i = (k * 7919) % n;
    (
        format!("h{}.example.com:443", i % 7),
        format!("/api/svc{i}/items/{k}?expand=owner"),
    )
}
