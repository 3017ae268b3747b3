//! `cargo +nightly fuzz run host`: see `stakeguard_fuzz_targets::host`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| stakeguard_fuzz_targets::host(data));
