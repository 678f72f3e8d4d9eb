//! Owns the build cache index: a step's cache key (a digest) → an opaque result record
//! (bytes chosen by the solver), one file per key in `cache/`, written atomically.

use std::path::PathBuf;

use super::Store;
use super::digest::Digest;
use super::error::Result;
use super::fsutil;

impl Store {
    fn cache_path(&self, key: &Digest) -> PathBuf {
        self.cache_dir().join(key.hex())
    }

    /// Records `value` for `key`, atomically replacing any previous record.
    pub fn put_cache(&self, key: &Digest, value: &[u8]) -> Result<()> {
        fsutil::write_atomic(&self.tmp_dir(), &self.cache_path(key), value)
    }

    /// Records `value` for `key` after one syncfs of the store's filesystem, which makes
    /// durable everything written before — the step's blob (see
    /// [`super::BlobWriter::finish_unsynced`]), its snapshot, and this record's content — and
    /// only then renames the record into place. After a crash the record is either absent or
    /// whole, and a record that survived names only durable data.
    pub fn put_cache_synced(&self, key: &Digest, value: &[u8]) -> Result<()> {
        use std::io::Write as _;
        let mut tmp = fsutil::TempFile::new_in(&self.tmp_dir())?;
        tmp.file()
            .write_all(value)
            .map_err(super::error::StoreError::io("write", tmp.path()))?;
        self.sync_filesystem()?;
        tmp.rename_unsynced(&self.cache_path(key))
    }

    /// The record for `key`, if any.
    pub fn get_cache(&self, key: &Digest) -> Result<Option<Vec<u8>>> {
        fsutil::read_optional(&self.cache_path(key))
    }

    /// Removes the record for `key`; returns whether it existed.
    pub fn remove_cache(&self, key: &Digest) -> Result<bool> {
        fsutil::remove_optional(&self.cache_path(key))
    }

    /// Every cache key and the size of its record.
    pub fn list_cache(&self) -> Result<Vec<(Digest, u64)>> {
        Ok(fsutil::list_files(&self.cache_dir())?
            .into_iter()
            .filter_map(|(name, size)| Digest::from_hex(&name).ok().map(|d| (d, size)))
            .collect())
    }
}
