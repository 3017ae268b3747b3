//! conformance module
