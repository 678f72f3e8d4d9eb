//! Owns named image references (`-t app:1` → manifest digest): one small JSON file per name in
//! `refs/`, file name percent-encoded from the validated name, replaced atomically.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::Store;
use super::digest::Digest;
use super::error::{Result, StoreError};
use super::fsutil;
use super::names::{encode_file_name, validate_ref_name};

/// A name record as [`Store::scan_refs`] finds it: the name and digest, or why it is unreadable.
pub type ScannedRef = Result<(String, Digest)>;

#[derive(Serialize, Deserialize)]
struct RefRecord {
    name: String,
    digest: Digest,
}

impl Store {
    fn ref_path(&self, name: &str) -> Result<PathBuf> {
        validate_ref_name(name)?;
        Ok(self.refs_dir().join(encode_file_name(name)))
    }

    /// Points `name` at `digest` (creating or replacing it atomically).
    pub fn set_ref(&self, name: &str, digest: &Digest) -> Result<()> {
        let path = self.ref_path(name)?;
        let record = RefRecord {
            name: name.to_string(),
            digest: *digest,
        };
        let mut data = serde_json::to_vec(&record).expect("a ref record always serializes");
        data.push(b'\n');
        fsutil::write_atomic(&self.tmp_dir(), &path, &data)
    }

    /// The digest `name` points at, if the name exists.
    pub fn get_ref(&self, name: &str) -> Result<Option<Digest>> {
        let path = self.ref_path(name)?;
        let Some(data) = fsutil::read_optional(&path)? else {
            return Ok(None);
        };
        let record = parse_record(&path, &data)?;
        if record.name != name {
            return Err(StoreError::Corrupt {
                path,
                reason: format!("it names `{}`, not `{name}`", record.name),
            });
        }
        Ok(Some(record.digest))
    }

    /// Every name and its digest, sorted by name.
    pub fn list_refs(&self) -> Result<Vec<(String, Digest)>> {
        let dir = self.refs_dir();
        let mut out = Vec::new();
        for (file_name, _) in fsutil::list_files(&dir)? {
            let path = dir.join(&file_name);
            // Removed concurrently: skip.
            let Some(data) = fsutil::read_optional(&path)? else {
                continue;
            };
            let record = parse_record(&path, &data)?;
            out.push((record.name, record.digest));
        }
        out.sort();
        Ok(out)
    }

    /// Every name record, each parsed on its own, so one damaged record does not hide the
    /// others (for `wbuild check`): (file path, name and digest or why it is unreadable).
    pub fn scan_refs(&self) -> Result<Vec<(PathBuf, ScannedRef)>> {
        let dir = self.refs_dir();
        let mut out = Vec::new();
        for (file_name, _) in fsutil::list_files(&dir)? {
            let path = dir.join(&file_name);
            let Some(data) = fsutil::read_optional(&path)? else {
                continue;
            };
            let parsed = parse_record(&path, &data).and_then(|r| {
                if encode_file_name(&r.name) == file_name {
                    Ok((r.name, r.digest))
                } else {
                    Err(StoreError::Corrupt {
                        path: path.clone(),
                        reason: format!("it names `{}`, which is stored elsewhere", r.name),
                    })
                }
            });
            out.push((path, parsed));
        }
        Ok(out)
    }

    /// Removes a damaged name record found by [`Store::scan_refs`]; the path must be in `refs/`.
    pub fn remove_ref_file(&self, path: &std::path::Path) -> Result<bool> {
        if path.parent() != Some(self.refs_dir().as_path()) {
            return Err(StoreError::Corrupt {
                path: path.to_path_buf(),
                reason: "not a name record of this store".into(),
            });
        }
        fsutil::remove_optional(path)
    }

    /// Removes `name`; returns whether it existed.
    pub fn remove_ref(&self, name: &str) -> Result<bool> {
        let path = self.ref_path(name)?;
        let removed = fsutil::remove_optional(&path)?;
        if removed {
            fsutil::sync_dir(&self.refs_dir())?;
        }
        Ok(removed)
    }
}

fn parse_record(path: &std::path::Path, data: &[u8]) -> Result<RefRecord> {
    serde_json::from_slice(data).map_err(|e| StoreError::Corrupt {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}
