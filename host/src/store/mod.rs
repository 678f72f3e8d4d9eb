//! Content-addressed store (being written).
