//! The stakeguard harness.
