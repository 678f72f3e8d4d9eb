//! What a build is asked to do ([`BuildOptions`], [`Output`], [`SecretSource`]) and what it
//! reports ([`BuildResult`]).

use std::path::PathBuf;

use crate::exec;
use crate::ir::Platform;
use crate::registry::cache::{CacheSource, CacheTarget};
use crate::snapshot::Compression;
use crate::store::Digest;

/// Where the result goes besides the store.
#[derive(Debug, Clone)]
pub enum Output {
    /// OCI image layout: a tar file when the path ends in `.tar`, else a directory.
    Oci(PathBuf),
    /// OCI layout plus `manifest.json`, loadable by `docker load`, podman and skopeo.
    Docker(PathBuf),
    /// The final filesystem as a directory.
    Local(PathBuf),
    /// The final filesystem as a tar file.
    Tar(PathBuf),
    /// Pushed to a registry under this name (`-o type=registry,name=…`, `--push`).
    Registry(String),
    /// Loaded into the local Docker engine (`--load`).
    Load,
}

impl Output {
    /// Whether the image leaves the store with its layers compressed (a registry, an OCI
    /// layout, a docker archive); `--load` sends them as the store keeps them, uncompressed,
    /// as BuildKit's image stays uncompressed in dockerd.
    pub fn compresses(&self) -> bool {
        matches!(
            self,
            Output::Oci(_) | Output::Docker(_) | Output::Registry(_)
        )
    }
}

/// How to build.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// Stages built at the same time (`--jobs`).
    pub jobs: usize,
    /// Run every step, ignoring the build cache (`--no-cache`).
    pub no_cache: bool,
    /// Names for the result in the store (`-t`).
    pub tags: Vec<String>,
    /// Where the result is written besides the store (`-o`, `--push`).
    pub outputs: Vec<Output>,
    /// `SOURCE_DATE_EPOCH`: clamps file times and fixes the config's timestamps.
    pub source_date_epoch: Option<i64>,
    /// The target platform: of stages that name none, and of the images they pull.
    pub platform: Platform,
    /// The build file's name, for messages.
    pub file_name: String,
    /// How layers are compressed when the image leaves the store for a registry, an OCI
    /// layout, a docker archive or an exported cache (`--compression`); the store keeps
    /// them uncompressed.
    pub compression: Compression,
    /// `--ssh ID[=SOCKET]`: SSH agent sockets RUN steps may mount, by id.
    pub ssh: Vec<(String, PathBuf)>,
    /// `--secret id=ID,...`: the secrets RUN steps may mount, by id.
    pub secrets: Vec<(String, SecretSource)>,
    /// `--cache-from`: build caches imported before the build.
    pub cache_from: Vec<CacheSource>,
    /// `--cache-to`: where the build cache is exported after the build.
    pub cache_to: Vec<CacheTarget>,
    /// `--memory`, `--pids-limit`: cgroup limits of every RUN.
    pub limits: exec::ResourceLimits,
    /// `--add-host NAME:IP`: /etc/hosts lines of every RUN (the names are in the cache key, the
    /// addresses not, as in BuildKit).
    pub extra_hosts: Vec<(String, std::net::IpAddr)>,
    /// `--label`: labels set on the result's config.
    pub labels: Vec<(String, String)>,
    /// `--annotation`: annotations of the result's manifest.
    pub annotations: std::collections::BTreeMap<String, String>,
    /// `--annotation index:…`: annotations of the result's image index (several platforms, or
    /// provenance).
    pub index_annotations: std::collections::BTreeMap<String, String>,
    /// `--no-cache-filter`: stages (by name, case-insensitive, or index) whose steps all run.
    pub no_cache_stages: Vec<String>,
    /// `--shm-size`: size of every RUN's /dev/shm.
    pub shm_size: Option<u64>,
}

impl BuildOptions {
    /// What `wbuild build` does with no options: one stage per core at a time, the cache used,
    /// gzip level 6, no names, outputs, secrets, caches or limits.
    pub fn new(platform: Platform) -> Self {
        BuildOptions {
            jobs: std::thread::available_parallelism().map_or(2, |n| n.get()),
            no_cache: false,
            tags: vec![],
            outputs: vec![],
            source_date_epoch: None,
            platform,
            file_name: String::new(),
            compression: Compression::Gzip { level: 6 },
            ssh: vec![],
            secrets: vec![],
            cache_from: vec![],
            cache_to: vec![],
            limits: exec::ResourceLimits::default(),
            extra_hosts: vec![],
            labels: vec![],
            annotations: Default::default(),
            index_annotations: Default::default(),
            no_cache_stages: vec![],
            shm_size: None,
        }
    }
}

/// Where the value of a `--secret` comes from. Read only when a step mounts it.
#[derive(Debug, Clone)]
pub enum SecretSource {
    /// `src=PATH`: the content of a file.
    File(PathBuf),
    /// `env=VAR`: the value of an environment variable of the build process.
    Env(String),
}

/// The outcome of a build.
pub struct BuildResult {
    /// Digest of the image manifest (of the image index, for a multi-platform build or one
    /// with provenance).
    pub manifest_digest: Digest,
    /// Digest of the image config (the image ID); for an index of several platforms, the
    /// index digest.
    pub config_digest: String,
    /// Size of the manifest (or index) blob.
    pub manifest_size: u64,
    /// The media type of that blob: an image manifest or an image index.
    pub media_type: &'static str,
    /// For an index: each platform's image.
    pub platforms: Vec<PlatformResult>,
    /// Steps that ran.
    pub ran: usize,
    /// Steps taken from the cache.
    pub cached: usize,
}

/// One platform's image of a multi-platform result.
#[derive(Debug, Clone)]
pub struct PlatformResult {
    /// `os/arch[/variant]`.
    pub platform: String,
    /// Its image manifest.
    pub manifest_digest: Digest,
    /// Its config (the image ID).
    pub config_digest: String,
    /// Its attestation manifest, with provenance.
    pub attestation: Option<Digest>,
    /// Steps of this platform's build that ran.
    pub ran: usize,
    /// Steps of it taken from the cache (among them those another platform ran in this build).
    pub cached: usize,
}
