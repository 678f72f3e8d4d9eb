//! The fuzz entry points, shared by the cargo-fuzz targets in `fuzz_targets/` and by the test
//! `tests/fuzz_corpus.rs`, which replays the committed corpus through them on stable Rust.
//! Each takes raw bytes and must never panic, hang or blow the stack, whatever they are.

#[cfg(feature = "graph")]
mod graph;
mod text;

#[cfg(feature = "graph")]
pub use graph::graph;
pub use text::{dockerfile, expand, ext};
