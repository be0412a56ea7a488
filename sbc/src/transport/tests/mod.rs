//! Transport tests on loopback sockets.
