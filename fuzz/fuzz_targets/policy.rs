//! `cargo +nightly fuzz run policy`: see `stakeguard_fuzz_targets::policy`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| stakeguard_fuzz_targets::policy(data));
