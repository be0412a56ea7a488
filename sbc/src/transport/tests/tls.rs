//! TLS tests (filled in below).
