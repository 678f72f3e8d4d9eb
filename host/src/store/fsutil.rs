//! Owns the low-level file primitives the store is built on: uniquely named temp files in
//! `root/tmp` (held under an advisory lock while alive), fsync of files and directories,
//! atomic publish by rename, atomic small-file writes, and `flock` wrappers.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use super::error::{Result, StoreError};

/// Suffix of every temp file the store creates.
pub(crate) const TMP_SUFFIX: &str = ".tmp";

/// A temp file in `root/tmp`: locked (exclusive `flock`) for its whole life so that
/// `cleanup_tmp` never deletes it under a live writer, and removed on drop unless published.
pub(crate) struct TempFile {
    file: Option<File>,
    path: PathBuf,
}

impl TempFile {
    /// Creates a new, uniquely named, locked temp file in `dir`.
    pub(crate) fn new_in(dir: &Path) -> Result<TempFile> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let pid = std::process::id();
        loop {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            let path = dir.join(format!("{pid}-{n}-{nanos:x}{TMP_SUFFIX}"));
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(file) => {
                    // Lock at once; cleanup only removes unlocked files that are also old.
                    flock(&file, libc::LOCK_EX).map_err(StoreError::io("lock", &path))?;
                    return Ok(TempFile {
                        file: Some(file),
                        path,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(StoreError::io("create", &path)(e)),
            }
        }
    }

    pub(crate) fn file(&mut self) -> &mut File {
        self.file.as_mut().expect("temp file used after publish")
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// fsyncs the content, renames the file to `dest` (atomically replacing any existing file)
    /// and fsyncs `dest`'s directory so the new name survives a crash.
    pub(crate) fn publish(mut self, dest: &Path) -> Result<()> {
        let file = self.file.take().expect("temp file published twice");
        file.sync_all()
            .map_err(StoreError::io("fsync", &self.path))?;
        fs::rename(&self.path, dest).map_err(StoreError::io("rename into place", dest))?;
        // The rename succeeded: from here on, the temp name no longer exists.
        self.path = PathBuf::new();
        drop(file);
        if let Some(parent) = dest.parent() {
            sync_dir(parent)?;
        }
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Atomically replaces `dest` with `data`: temp file in `tmp_dir`, fsync, rename, fsync dir.
pub(crate) fn write_atomic(tmp_dir: &Path, dest: &Path, data: &[u8]) -> Result<()> {
    let mut tmp = TempFile::new_in(tmp_dir)?;
    let path = tmp.path().to_path_buf();
    tmp.file()
        .write_all(data)
        .map_err(StoreError::io("write", path))?;
    tmp.publish(dest)
}

/// fsyncs a directory (makes renames and unlinks in it durable).
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(StoreError::io("fsync directory", dir))
}

/// `flock(2)` with EINTR retry. `op` is `LOCK_EX`, `LOCK_SH`, optionally `| LOCK_NB`.
pub(crate) fn flock(file: &File, op: libc::c_int) -> io::Result<()> {
    loop {
        // SAFETY: flock on a valid, open file descriptor owned by `file`.
        let rc = unsafe { libc::flock(file.as_raw_fd(), op) };
        if rc == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
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
