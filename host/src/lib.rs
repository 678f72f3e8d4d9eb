//! wbuild: a container image builder whose build-file languages are WebAssembly components.
//!
//! The pipeline, one module per stage, data flowing one way:
//! [`frontend`] (load, compile-cache and call components) → [`graph`] (validate the IR, prune to
//! the target) → solver, executor, store and exporters (to come), with [`cli`] at the edge.

pub mod build;
pub mod catalog;
pub mod check;
pub mod cli;
pub mod context;
pub mod exec;
pub mod frontend;
pub mod graph;
pub mod image;
pub mod progress;
pub mod registry;
pub mod snapshot;
pub mod solve;
pub mod store;
