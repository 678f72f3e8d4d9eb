//! The store's view of the filesystem primitives of [`crate::sys`]: temp files in `root/tmp`,
//! atomic small-file writes and directory fsyncs with the store's errors, and the read, remove
//! and list helpers its files share.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

use super::error::{Result, StoreError};
use crate::sys;

pub(crate) use crate::sys::{TMP_SUFFIX, flock};

/// A temp file in `root/tmp`, locked while alive (see [`crate::sys::TempFile`]), with the
/// store's errors.
pub(crate) struct TempFile(sys::TempFile);

impl TempFile {
    /// Creates a new, uniquely named, locked temp file in `dir`.
    pub(crate) fn new_in(dir: &Path) -> Result<TempFile> {
        sys::TempFile::new_in(dir, "")
            .map(TempFile)
            .map_err(StoreError::io("create a temp file in", dir))
    }

    pub(crate) fn file(&mut self) -> &mut File {
        self.0.file()
    }

    pub(crate) fn path(&self) -> &Path {
        self.0.path()
    }

    /// fsyncs, renames to `dest` and fsyncs `dest`'s directory.
    pub(crate) fn publish(self, dest: &Path) -> Result<()> {
        self.0
            .publish(dest)
            .map_err(StoreError::io("publish", dest))
    }
}

impl TempFile {
    /// Renames to `dest` without an fsync (see [`crate::sys::TempFile::rename_unsynced`]).
    pub(crate) fn rename_unsynced(self, dest: &Path) -> Result<()> {
        self.0
            .rename_unsynced(dest)
            .map_err(StoreError::io("rename into place", dest))
    }
}

/// Atomically replaces `dest` with `data`: temp file in `tmp_dir`, fsync, rename, fsync dir.
pub(crate) fn write_atomic(tmp_dir: &Path, dest: &Path, data: &[u8]) -> Result<()> {
    sys::write_atomic_in(tmp_dir, dest, |f| f.write_all(data))
        .map_err(StoreError::io("write", dest))
}

/// fsyncs a directory (makes renames and unlinks in it durable).
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    sys::sync_dir(dir).map_err(StoreError::io("fsync directory", dir))
}

/// Reads a whole small file, mapping "not found" to `None`.
pub(crate) fn read_optional(path: &Path) -> Result<Option<Vec<u8>>> {
    match fs::read(path) {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StoreError::io("read", path)(e)),
    }
}

/// Removes a file, returning whether it existed.
pub(crate) fn remove_optional(path: &Path) -> Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(StoreError::io("remove", path)(e)),
    }
}

/// Lists the regular files of `dir` as (file name, size), skipping temp files and anything
/// that is not valid UTF-8.
pub(crate) fn list_files(dir: &Path) -> Result<Vec<(String, u64)>> {
    let mut out = Vec::new();
    let entries = fs::read_dir(dir).map_err(StoreError::io("list", dir))?;
    for entry in entries {
        let entry = entry.map_err(StoreError::io("list", dir))?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if name.ends_with(TMP_SUFFIX) {
            continue;
        }
        let meta = match entry.metadata() {
            Ok(m) => m,
            // Removed concurrently.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(StoreError::io("stat", entry.path())(e)),
        };
        if meta.is_file() {
            out.push((name, meta.len()));
        }
    }
    out.sort();
    Ok(out)
}
