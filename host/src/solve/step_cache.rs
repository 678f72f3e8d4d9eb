//! The step-cache protocol: what the cache index maps a step's record key to ([`CacheRecord`]:
//! the layer the step made, or none), how a lookup decides a hit (the record parses and its
//! layer blob is in the store), and the per-step lock that makes two builds running the same
//! step wait for each other instead of running it twice.
//!
//! Keys come from [`super::op_cache_key`] (a record's key is its step's key); this file only stores and
//! finds them. `wbuild check` reads records through [`cache_record_layer`].

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use crate::store::{Digest, LockGuard, Store};

/// Prefix of the per-step lock names (their files are removed by `wbuild prune`).
pub(crate) const STEP_LOCK_PREFIX: &str = "step-";

/// A layer as the manifest and the cache index record it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LayerRef {
    /// `sha256:` digest of the (compressed) blob.
    pub digest: String,
    /// `sha256:` digest of the uncompressed tar.
    pub diff_id: String,
    /// Size of the blob.
    pub size: u64,
    /// Media type of the blob.
    pub media_type: String,
}

/// What the cache index maps a step's record key to.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CacheRecord {
    /// The layer the step made; None for a step that changed no file.
    pub layer: Option<LayerRef>,
}

impl CacheRecord {
    /// Parses a record as the cache index holds it.
    pub(crate) fn parse(bytes: &[u8]) -> anyhow::Result<CacheRecord> {
        serde_json::from_slice(bytes).context("a cache record")
    }
}

/// The layer digest a cache index record points at (None for a step that made no layer), or
/// why the record is unreadable. Used by `wbuild check`.
pub(crate) fn cache_record_layer(bytes: &[u8]) -> anyhow::Result<Option<String>> {
    Ok(CacheRecord::parse(bytes)?.layer.map(|l| l.digest))
}

/// The lock a build holds while it runs the step with cache key `key`.
pub(crate) fn step_lock_name(key: &Digest) -> String {
    format!("{STEP_LOCK_PREFIX}{}", key.hex())
}

/// The step cache of one store.
pub(crate) struct StepCache<'a> {
    store: &'a Store,
}

impl<'a> StepCache<'a> {
    pub(crate) fn new(store: &'a Store) -> Self {
        StepCache { store }
    }

    /// The record under `record`, if it parses and the store still has its layer blob.
    pub(crate) fn lookup(&self, record: &Digest) -> anyhow::Result<Option<CacheRecord>> {
        Ok(self
            .store
            .get_cache(record)?
            .and_then(|b| serde_json::from_slice::<CacheRecord>(&b).ok())
            .filter(|r| {
                r.layer.as_ref().is_none_or(|l| {
                    l.digest
                        .parse()
                        .is_ok_and(|d: Digest| self.store.has_blob(&d))
                })
            }))
    }

    /// Takes the lock of step `key` at once, or None when another build holds it.
    pub(crate) fn try_lock_step(&self, key: &Digest) -> anyhow::Result<Option<LockGuard>> {
        Ok(self.store.try_lock(&step_lock_name(key))?)
    }

    /// Waits for the lock of step `key`.
    pub(crate) fn lock_step(&self, key: &Digest) -> anyhow::Result<LockGuard> {
        Ok(self.store.lock(&step_lock_name(key))?)
    }

    /// Records `rec` under `record`; returns the bytes written (for `--cache-to`).
    pub(crate) fn record(&self, record: &Digest, rec: &CacheRecord) -> anyhow::Result<Vec<u8>> {
        let bytes = serde_json::to_vec(rec)?;
        self.store.put_cache_synced(record, &bytes)?;
        Ok(bytes)
    }
}
