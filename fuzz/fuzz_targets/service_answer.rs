//! `cargo +nightly fuzz run service_answer`: see `stakeguard_fuzz_targets::service_answer`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| stakeguard_fuzz_targets::service_answer(data));
