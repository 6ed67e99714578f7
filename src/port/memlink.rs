//! In-memory link (in progress).
