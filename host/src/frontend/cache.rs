//! The compiled-component cache: Cranelift output of each frontend, keyed by the component's
//! sha256 and the engine's compatibility hash, so a warm load only deserializes.
//!
//! Only artifacts this host wrote are ever deserialized: they live in a directory the host owns
//! and are named by a key derived from the exact bytes compiled and the engine settings.

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Where compiled frontends are kept.
pub struct ArtifactCache {
    dir: Option<PathBuf>,
}

/// How a component was obtained, for `--verbose` output and the benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadKind {
    /// Compiled with Cranelift (and written to the cache when there is one).
    Compiled,
    /// Deserialized from the cache.
    Cached,
}

impl ArtifactCache {
    /// A cache in `dir` (created on first write), or none at all.
    pub fn new(dir: Option<PathBuf>) -> Self {
        ArtifactCache { dir }
    }

    /// Load `bytes` as a component, from the cache when possible.
    pub fn load(&self, engine: &Engine, bytes: &[u8]) -> anyhow::Result<(Component, LoadKind)> {
        let Some(dir) = &self.dir else {
            return Ok((Component::new(engine, bytes)?, LoadKind::Compiled));
        };
        let path = dir.join(format!("{}.cwasm", cache_key(engine, bytes)));
        // Read into memory rather than mapping the file: a file truncated or rewritten in place
        // under a mapping would crash the process (SIGBUS) instead of failing the load.
        if let Ok(artifact) = std::fs::read(&path) {
            // SAFETY: the file is named by the sha256 of the component and the engine's
            // compatibility hash and was written by `store` below (temp file + rename) into a
            // directory only the host writes, so it is an artifact this host produced for this
            // engine configuration; wasmtime still checks its header and engine compatibility.
            match unsafe { Component::deserialize(engine, &artifact) } {
                Ok(c) => return Ok((c, LoadKind::Cached)),
                Err(_) => {
                    // A stale or damaged artifact: compile again and replace it.
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        let component = Component::new(engine, bytes)?;
        // A cache that cannot be written (read-only root) only costs time.
        let _ = store(&path, &component.serialize()?);
        Ok((component, LoadKind::Compiled))
    }
}

/// sha256 of the component bytes and the engine's precompile compatibility hash.
pub fn cache_key(engine: &Engine, bytes: &[u8]) -> String {
    let mut engine_hash = std::collections::hash_map::DefaultHasher::new();
    engine
        .precompile_compatibility_hash()
        .hash(&mut engine_hash);
    let mut h = Sha256::new();
    h.update(bytes);
    h.update(engine_hash.finish().to_le_bytes());
    hex::encode(h.finalize())
}

fn store(path: &Path, artifact: &[u8]) -> anyhow::Result<()> {
    let dir = path.parent().context("artifact path has no parent")?;
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".tmp-{}-{}",
        std::process::id(),
        path.file_name().unwrap().to_string_lossy()
    ));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(artifact)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })?;
    Ok(())
}
