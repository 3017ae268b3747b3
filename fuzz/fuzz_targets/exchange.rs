//! `cargo +nightly fuzz run exchange`: see `stakeguard_fuzz_targets::exchange`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| stakeguard_fuzz_targets::exchange(data));
