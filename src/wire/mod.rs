//! Zero-copy views over packet bytes (in progress).
