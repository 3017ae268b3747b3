//! Replays every committed fuzz corpus (`fuzz/corpus/<target>/`) through its target
//! function, so what fuzzing found keeps being checked by `cargo test` on stable.

#![allow(clippy::panic, reason = "tests fail loudly")]

use std::path::Path;

fn replay(target: &str, run: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../corpus")
        .join(target);
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let mut count = 0;
    for entry in entries {
        let path = entry
            .map(|e| e.path())
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        // A panic names the input, so it can be run again with `cargo fuzz run TARGET FILE`.
        eprintln!("{}", path.display());
        run(&data);
        count += 1;
    }
    assert!(count > 0, "{} holds no corpus", dir.display());
}

#[test]
fn the_policy_corpus_replays_without_a_crash() {
    replay("policy", stakeguard_fuzz_targets::policy);
}

#[test]
fn the_exchange_corpus_replays_without_a_crash() {
    replay("exchange", stakeguard_fuzz_targets::exchange);
}

#[test]
fn the_traffic_corpus_replays_without_a_crash() {
    replay("traffic", stakeguard_fuzz_targets::traffic);
}

#[test]
fn the_host_corpus_replays_without_a_crash() {
    replay("host", stakeguard_fuzz_targets::host);
}

#[test]
fn the_service_answer_corpus_replays_without_a_crash() {
    replay("service_answer", stakeguard_fuzz_targets::service_answer);
}
