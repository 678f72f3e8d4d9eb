//! Owns advisory locks: `flock(2)` on files in `locks/`, for the few operations that must be
//! serialized between threads and processes. Locks are released when the guard drops or the
//! process dies, so a crash never leaves a stale lock.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use super::Store;
use super::error::{Result, StoreError};
use super::fsutil::flock;
use super::names::{encode_file_name, validate_lock_name};

/// A held lock; dropping it releases the lock.
#[derive(Debug)]
pub struct LockGuard {
    _file: File,
    path: PathBuf,
}

impl LockGuard {
    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Store {
    fn lock_file(&self, name: &str) -> Result<(File, PathBuf)> {
        validate_lock_name(name)?;
        let path = self
            .locks_dir()
            .join(format!("{}.lock", encode_file_name(name)));
        // Lock files are not deleted while someone may lock them: that would race with a process
        // about to lock one. (Step locks go only under the GC lock held exclusively; see
        // `check::remove_step_locks`.)
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(StoreError::io("open lock file", &path))?;
        Ok((file, path))
    }

    fn acquire(&self, name: &str, op: libc::c_int) -> Result<Option<LockGuard>> {
        let (file, path) = self.lock_file(name)?;
        match flock(&file, op) {
            Ok(()) => Ok(Some(LockGuard { _file: file, path })),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(StoreError::io("lock", path)(e)),
        }
    }

    /// Takes the exclusive lock `name`, waiting for other holders (threads or processes).
    /// Hold it only around short critical sections, never across a RUN.
    pub fn lock(&self, name: &str) -> Result<LockGuard> {
        Ok(self
            .acquire(name, libc::LOCK_EX)?
            .expect("a blocking flock does not report WouldBlock"))
    }

    /// Takes `name` in shared mode: many shared holders at once, none while an exclusive
    /// holder has it (e.g. builds hold [`Store::GC_LOCK`] shared, prune holds it exclusively).
    pub fn lock_shared(&self, name: &str) -> Result<LockGuard> {
        Ok(self
            .acquire(name, libc::LOCK_SH)?
            .expect("a blocking flock does not report WouldBlock"))
    }

    /// Takes the exclusive lock `name` if nobody holds it, without waiting.
    pub fn try_lock(&self, name: &str) -> Result<Option<LockGuard>> {
        self.acquire(name, libc::LOCK_EX | libc::LOCK_NB)
    }
}
