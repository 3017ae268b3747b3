//! Support for stakeguard integration tests.
