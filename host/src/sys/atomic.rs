//! Atomic file writes: a uniquely named temp file, locked while it is alive, that reaches its
//! final name only by fsync + rename (+ fsync of the directory), so a reader never sees half a
//! file and a crash leaves at worst an unlocked temp file for a sweep to remove.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Suffix of every temp file [`TempFile`] creates.
pub(crate) const TMP_SUFFIX: &str = ".tmp";

/// A temp file: locked (exclusive `flock`) for its whole life so that a cleanup never deletes it
/// under a live writer, and removed on drop unless published.
pub(crate) struct TempFile {
    file: Option<File>,
    path: PathBuf,
}

impl TempFile {
    /// Creates a new, uniquely named (`PREFIX<pid>-<n>-<time>.tmp`), locked temp file in `dir`.
    pub(crate) fn new_in(dir: &Path, prefix: &str) -> io::Result<TempFile> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let pid = std::process::id();
        loop {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            let path = dir.join(format!("{prefix}{pid}-{n}-{nanos:x}{TMP_SUFFIX}"));
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(file) => {
                    // Lock at once; cleanup only removes unlocked files that are also old.
                    if let Err(e) = flock(&file, libc::LOCK_EX) {
                        let _ = fs::remove_file(&path);
                        return Err(e);
                    }
                    return Ok(TempFile {
                        file: Some(file),
                        path,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// The open file.
    pub(crate) fn file(&mut self) -> &mut File {
        self.file.as_mut().expect("temp file used after publish")
    }

    /// Where the temp file is.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// fsyncs the content, renames the file to `dest` (atomically replacing any existing file)
    /// and fsyncs `dest`'s directory so the new name survives a crash.
    pub(crate) fn publish(mut self, dest: &Path) -> io::Result<()> {
        let file = self.file.take().expect("temp file published twice");
        file.sync_all()?;
        fs::rename(&self.path, dest)?;
        // The rename succeeded: from here on, the temp name no longer exists.
        self.path = PathBuf::new();
        drop(file);
        if let Some(parent) = dest.parent().filter(|p| !p.as_os_str().is_empty()) {
            sync_dir(parent)?;
        }
        Ok(())
    }
}

impl TempFile {
    /// Renames the file to `dest` without an fsync: durable only once the caller syncs the
    /// filesystem (see `Store::sync_filesystem`), which must happen before anything durable
    /// names `dest`.
    pub(crate) fn rename_unsynced(mut self, dest: &Path) -> io::Result<()> {
        let file = self.file.take().expect("temp file published twice");
        fs::rename(&self.path, dest)?;
        self.path = PathBuf::new();
        drop(file);
        Ok(())
    }
}

/// syncfs(2) of the filesystem holding `dir`: every write, rename and unlink on it so far is
/// durable when this returns.
pub(crate) fn sync_filesystem(dir: &Path) -> io::Result<()> {
    let d = File::open(dir)?;
    // SAFETY: syncfs on a descriptor we own.
    if unsafe { libc::syncfs(std::os::fd::AsRawFd::as_raw_fd(&d)) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Atomically replaces `dest` with what `fill` writes, through a temp file in `tmp_dir` (which
/// must be on `dest`'s filesystem).
pub(crate) fn write_atomic_in(
    tmp_dir: &Path,
    dest: &Path,
    fill: impl FnOnce(&mut File) -> io::Result<()>,
) -> io::Result<()> {
    let mut tmp = TempFile::new_in(tmp_dir, ".wbuild-")?;
    fill(tmp.file())?;
    tmp.publish(dest)
}

/// Atomically replaces `dest` with what `fill` writes, through a temp file beside it.
pub(crate) fn write_atomic(
    dest: &Path,
    fill: impl FnOnce(&mut File) -> io::Result<()>,
) -> io::Result<()> {
    let dir = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    write_atomic_in(dir, dest, fill)
}

/// fsyncs a directory (makes renames and unlinks in it durable).
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir).and_then(|d| d.sync_all())
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
