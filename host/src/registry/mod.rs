//! Registries: pulling base images, pushing results, sharing the build cache.
//!
//! The rest of the host sees a blocking API; inside, one tokio runtime drives `oci-client`.
//! One job per file: [`reference`] (names, plain-HTTP hosts), [`auth`] (Docker's config file
//! and credential helpers), [`client`] (connections, retries, error messages), [`pull`],
//! [`push`], [`resolve`] (store first, registry second, for builds and frontends) and
//! [`cache`] (the build cache exported to and imported from a registry or a directory) and
//! [`artifact`] (frontends published and pulled as wasm OCI artifacts).

pub mod artifact;
pub mod auth;
pub mod cache;
mod client;
pub mod pull;
pub mod push;
pub mod reference;
pub mod resolve;

pub use client::Registry;
pub(crate) use pull::matches_platform;
pub use reference::ImageName;
pub use resolve::Images;
