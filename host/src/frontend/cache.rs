//! The compiled-component cache: Cranelift output of each frontend, keyed by the component's
//! sha256 and the engine's compatibility hash, so a warm load only deserializes.
//!
//! Only artifacts this host wrote are ever deserialized: they live in a directory the host owns
//! and are named by a key derived from the exact bytes compiled and the engine settings.
//! Beside each artifact `KEY.cwasm` a small `KEY.json` records what was compiled (component
//! digest, where it was loaded from, the engine hash), so `wbuild frontends` can list the cache.

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};
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

/// What `KEY.json` records about the artifact `KEY.cwasm`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactInfo {
    /// `sha256:` digest of the component that was compiled.
    pub digest: String,
    /// Where the component was loaded from when it was compiled: a path, or the name of an
    /// embedded frontend.
    pub source: String,
    /// Size of the component in bytes.
    pub size: u64,
    /// The engine's compatibility hash (hex); an artifact of another engine is never loaded.
    pub engine: String,
}

/// A compiled frontend found in the cache.
#[derive(Debug, Clone)]
pub struct CachedArtifact {
    pub path: PathBuf,
    /// None for an artifact without a readable `KEY.json`.
    pub info: Option<ArtifactInfo>,
    /// Whether this engine can load it.
    pub usable: bool,
    /// Size of the compiled artifact in bytes.
    pub artifact_size: u64,
}

impl ArtifactCache {
    /// A cache in `dir` (created on first write), or none at all.
    pub fn new(dir: Option<PathBuf>) -> Self {
        ArtifactCache { dir }
    }

    /// The compiled artifacts in the cache, sorted by path.
    pub fn list(&self, engine: &Engine) -> anyhow::Result<Vec<CachedArtifact>> {
        let Some(dir) = &self.dir else {
            return Ok(Vec::new());
        };
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
        };
        let engine_hash = engine_hash(engine);
        let mut out = Vec::new();
        for entry in entries {
            let path = entry?.path();
            if path.extension().is_none_or(|e| e != "cwasm") {
                continue;
            }
            let info: Option<ArtifactInfo> = std::fs::read(path.with_extension("json"))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
            let usable = info.as_ref().is_some_and(|i| i.engine == engine_hash);
            let artifact_size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            out.push(CachedArtifact {
                path,
                info,
                usable,
                artifact_size,
            });
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    /// Deserialize an artifact [`ArtifactCache::list`] found usable.
    pub fn load_listed(
        &self,
        engine: &Engine,
        artifact: &CachedArtifact,
    ) -> anyhow::Result<Component> {
        let in_cache = self
            .dir
            .as_deref()
            .is_some_and(|d| artifact.path.parent() == Some(d));
        if !in_cache || !artifact.usable {
            anyhow::bail!(
                "{} is not a usable artifact of this cache",
                artifact.path.display()
            );
        }
        map_artifact(engine, &artifact.path)
            .with_context(|| format!("loading {}", artifact.path.display()))
    }

    /// The cached artifact of the component whose sha256 is `digest`, when this engine has
    /// one; a damaged or stale artifact is removed (the next load compiles it again).
    pub fn load_cached(&self, engine: &Engine, digest: &[u8; 32]) -> Option<Component> {
        let path = self.artifact_path(engine, digest)?;
        if !path.is_file() {
            return None;
        }
        match map_artifact(engine, &path) {
            Ok(c) => Some(c),
            Err(_) => {
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    fn artifact_path(&self, engine: &Engine, digest: &[u8; 32]) -> Option<PathBuf> {
        let dir = self.dir.as_ref()?;
        Some(dir.join(format!("{}.cwasm", cache_key(engine, digest))))
    }

    /// Load `bytes` (whose sha256 is `digest`) as a component, from the cache when possible;
    /// `source` says where the bytes came from (recorded when the artifact is written).
    pub fn load(
        &self,
        engine: &Engine,
        bytes: &[u8],
        digest: &[u8; 32],
        source: &str,
    ) -> anyhow::Result<(Component, LoadKind)> {
        if let Some(c) = self.load_cached(engine, digest) {
            return Ok((c, LoadKind::Cached));
        }
        let component = Component::new(engine, bytes)?;
        // A cache that cannot be written (read-only root) only costs time. The artifact goes
        // first: a `KEY.json` always describes a complete artifact.
        if let Some(path) = self.artifact_path(engine, digest)
            && store(&path, &component.serialize()?).is_ok()
        {
            let info = ArtifactInfo {
                digest: format!("sha256:{}", hex::encode(digest)),
                source: source.to_string(),
                size: bytes.len() as u64,
                engine: engine_hash(engine),
            };
            let _ = store(&path.with_extension("json"), &serde_json::to_vec(&info)?);
        }
        Ok((component, LoadKind::Compiled))
    }

    /// The directory of remembered file digests ([`super::file_digest`]), beside the artifacts.
    pub fn file_digests_dir(&self) -> Option<PathBuf> {
        self.dir.as_ref().map(|d| d.join("files"))
    }
}

/// Maps the artifact at `path` rather than reading it: nothing is copied, and the linear
/// memory images (CPython's heap, for a componentize-py frontend) are mapped copy-on-write from
/// the file instead of being written into a memfd on every run.
///
/// The one thing a mapping cannot survive is the file being truncated or rewritten in place
/// while it is mapped (the process would die of SIGBUS). Artifacts are never written in place:
/// [`store`] writes a temp file and renames it, and `prune` unlinks, which leaves a mapping
/// intact. The directory belongs to the store's owner.
fn map_artifact(engine: &Engine, path: &Path) -> anyhow::Result<Component> {
    // SAFETY: the file is named by the sha256 of the component and the engine's compatibility
    // hash and was written by `store` (temp file + rename) into a directory only the host
    // writes, so it is an artifact this host produced for this engine configuration, never
    // modified in place (see above); wasmtime still checks its header and engine compatibility.
    unsafe { Component::deserialize_file(engine, path) }.map_err(anyhow::Error::from)
}

/// The engine's precompile compatibility hash, folded to 64 bits.
fn engine_hash_u64(engine: &Engine) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    h.finish()
}

fn engine_hash(engine: &Engine) -> String {
    format!("{:016x}", engine_hash_u64(engine))
}

/// sha256 over the component's sha256 and the engine's precompile compatibility hash.
pub fn cache_key(engine: &Engine, digest: &[u8; 32]) -> String {
    let mut h = Sha256::new();
    h.update(b"wbuild-frontend-artifact-v2");
    h.update(digest);
    h.update(engine_hash_u64(engine).to_le_bytes());
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
    // Read-only: an artifact is mapped while it is used and must never be rewritten in place.
    f.set_permissions(std::fs::Permissions::from_mode(0o444))?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_lists_what_it_compiled() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::default();
        let cache = ArtifactCache::new(Some(dir.path().join("frontends")));
        assert!(cache.list(&engine).unwrap().is_empty());
        // The smallest component there is.
        let bytes = b"\0asm\x0d\0\x01\0";
        let digest: [u8; 32] = Sha256::digest(bytes).into();
        let (_, kind) = cache
            .load(&engine, bytes, &digest, "/somewhere/empty.wasm")
            .unwrap();
        assert_eq!(kind, LoadKind::Compiled);
        let listed = cache.list(&engine).unwrap();
        assert_eq!(listed.len(), 1);
        let info = listed[0].info.as_ref().unwrap();
        assert_eq!(info.source, "/somewhere/empty.wasm");
        assert_eq!(info.size, 8);
        assert_eq!(
            info.digest,
            format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
        );
        assert!(listed[0].usable && listed[0].artifact_size > 0);
        cache.load_listed(&engine, &listed[0]).unwrap();

        // Another engine configuration cannot use it.
        let mut config = wasmtime::Config::new();
        config.epoch_interruption(true);
        let other = Engine::new(&config).unwrap();
        let listed = cache.list(&other).unwrap();
        assert!(!listed[0].usable);
        assert!(cache.load_listed(&other, &listed[0]).is_err());

        // An artifact without its description is listed, never loaded.
        std::fs::remove_file(listed[0].path.with_extension("json")).unwrap();
        let listed = cache.list(&engine).unwrap();
        assert!(listed[0].info.is_none() && !listed[0].usable);
        assert!(cache.load_listed(&engine, &listed[0]).is_err());
    }
}
