//! wbuild: a container image builder whose build-file languages are WebAssembly components.
//!
//! A *frontend* — a `.wasm` component, the Dockerfile one built in — turns a build file into a
//! stage graph (the [`ir`]); the host validates the graph, prunes it to the target, runs each
//! step in a content-addressed store with sandboxed RUN steps and a build cache, and exports
//! the image. Data flows one way, one module per stage of the pipeline:
//!
//! ```text
//!  build file ─▶ frontend ─▶ graph ─▶ solve ─▶ builder ─▶ export
//!                (wasm)      (IR      (keys,   (exec: RUN in runc,   (OCI, docker,
//!                            check,   order,    snapshot: layers,     registry,
//!                            prune)   cache)    store: blobs, cache)  local, tar)
//! ```
//! `registry` (pull, push) and `progress` sit at the edges; [`session`] runs the whole
//! pipeline and is the library's entry point; [`cli`] only parses arguments and prints.
//!
//! A build through the library, as `wbuild build -t hello .` does it:
//!
//! ```no_run
//! use std::sync::Arc;
//! use wbuild::{BuildFile, BuildOptions, Progress, ProgressMode, Registry, Request, ResultFiles, Session};
//!
//! # fn main() -> anyhow::Result<()> {
//! let session = Session::open("/var/lib/wbuild".as_ref(), Registry::new(vec![]))?;
//! let request = Request {
//!     frontend: None, // the Dockerfile's `# syntax=`, else the embedded Dockerfile frontend
//!     file: BuildFile { path: "Dockerfile".into(), text: std::fs::read_to_string("Dockerfile")? },
//!     context: ".".into(),
//!     build_args: vec![],
//!     target: None,
//!     platform: wbuild::ir::host_platform(),
//!     pull: false,
//!     network: wbuild::ir::Network::Default,
//!     allow: Default::default(),
//!     build_contexts: vec![],
//! };
//! let prepared = session.prepare(&request)?; // sweep, GC lock, translate, validate
//! let mut options = BuildOptions::new(request.platform.clone());
//! options.tags = vec!["hello".into()];
//! let result = prepared.build(options, &ResultFiles::default(), Progress::stderr(ProgressMode::Plain))?;
//! println!("built {}", result.manifest_digest);
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

mod builder;
mod catalog;
mod check;
pub mod cli;
mod context;
mod exec;
mod frontend;
mod graph;
mod image;
pub mod ir;
mod progress;
mod registry;
pub mod session;
mod snapshot;
mod solve;
mod store;
mod sys;
#[cfg(test)]
mod test_skip;
mod userns;

pub use builder::{BuildOptions, BuildResult, Output, PlatformResult, SecretSource};
pub use exec::{ResourceLimits, sandbox_entry};
pub use frontend::{
    CallContext, Diagnostic, FrontendInfo, Input, Limits, LoadKind, Runtime, Translation, embedded,
};
pub use graph::{Plan, reachable as reachable_stages, stage_deps, validate as validate_graph};
pub use progress::{Mode as ProgressMode, Progress};
pub use registry::Registry;
pub use registry::cache::{CacheSource, CacheTarget};
pub use session::{
    BuildFile, Planned, Prepared, Rejected, Request, ResultFiles, Session, build_platforms,
};
pub use snapshot::Compression;
pub use solve::{StepInputs, op_cache_key, run_stages, stage_base_key};
pub use store::{Digest, Store};
pub use userns::enter as enter_user_namespace;
