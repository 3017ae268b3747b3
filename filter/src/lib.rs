//! The stakeguard proxy-wasm filter.
