//! SBC runtime.
