//! Build context (being written).
