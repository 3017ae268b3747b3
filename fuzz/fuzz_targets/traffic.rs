//! `cargo +nightly fuzz run traffic`: see `stakeguard_fuzz_targets::traffic`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| stakeguard_fuzz_targets::traffic(data));
