//! The sha256 of a `--frontend FILE`, remembered by the file's stat, so that a warm load of an
//! unchanged file neither reads nor hashes it (a componentize-py frontend is 18 MB: reading
//! and hashing it was most of a warm load).
//!
//! One small JSON file per frontend path, named by the sha256 of its absolute path, in the
//! artifact cache's `files/` directory. An entry is used only when *every* stat field of the
//! open file matches: device, inode, size, mtime and ctime in nanoseconds. A write always moves
//! ctime, which user space cannot set back, so a changed file is always read again (the same
//! rule as the build context's hash memo). A file changed within [`RACY_WINDOW`] of being read
//! is not remembered: a write in the same clock tick could leave every field unchanged.
//!
//! The memo is only a cache: a missing, torn or foreign entry is a miss, and a failed write
//! costs the next load a read.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// Files whose mtime or ctime is this close to the read are not remembered. Kernel file
/// timestamps come from a coarse clock (one tick, at most 10 ms at HZ=100).
pub const RACY_WINDOW: Duration = Duration::from_millis(50);

/// The stat fields an entry must match, and the digest it gives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    path: String,
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
    sha256: String,
}

impl Entry {
    fn of(path: &Path, md: &fs::Metadata) -> Entry {
        Entry {
            path: path.to_string_lossy().into_owned(),
            dev: md.dev(),
            ino: md.ino(),
            size: md.size(),
            mtime_ns: md.mtime() as i128 * 1_000_000_000 + md.mtime_nsec() as i128,
            ctime_ns: md.ctime() as i128 * 1_000_000_000 + md.ctime_nsec() as i128,
            sha256: String::new(),
        }
    }

    fn same_file(&self, other: &Entry) -> bool {
        Entry {
            sha256: String::new(),
            ..self.clone()
        } == Entry {
            sha256: String::new(),
            ..other.clone()
        }
    }
}

/// Remembered digests of frontend files, in `dir` (none: nothing is remembered).
pub struct FileDigests {
    dir: Option<PathBuf>,
}

impl FileDigests {
    pub fn new(dir: Option<PathBuf>) -> Self {
        FileDigests { dir }
    }

    fn entry_path(&self, path: &Path) -> Option<PathBuf> {
        let dir = self.dir.as_ref()?;
        let name = hex::encode(Sha256::digest(path.as_os_str().as_encoded_bytes()));
        Some(dir.join(format!("{name}.json")))
    }

    /// The remembered sha256 of the file open at absolute `path`, whose metadata is `md`.
    pub fn lookup(&self, path: &Path, md: &fs::Metadata) -> Option<[u8; 32]> {
        let bytes = fs::read(self.entry_path(path)?).ok()?;
        let entry: Entry = serde_json::from_slice(&bytes).ok()?;
        if !entry.same_file(&Entry::of(path, md)) {
            return None;
        }
        hex::decode(&entry.sha256).ok()?.try_into().ok()
    }

    /// Remember `digest` for the file at `path`: `before` and `after` are its metadata before
    /// and after it was read (from the open file), `started` when the read began.
    pub fn remember(
        &self,
        path: &Path,
        before: &fs::Metadata,
        after: &fs::Metadata,
        started: SystemTime,
        digest: &[u8; 32],
    ) {
        let Some(file) = self.entry_path(path) else {
            return;
        };
        let entry = Entry::of(path, before);
        let racy_limit = started
            .checked_sub(RACY_WINDOW)
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos() as i128);
        if !entry.same_file(&Entry::of(path, after))
            || entry.mtime_ns >= racy_limit
            || entry.ctime_ns >= racy_limit
        {
            let _ = fs::remove_file(&file);
            return;
        }
        let entry = Entry {
            sha256: hex::encode(digest),
            ..entry
        };
        let _ = write_replace(&file, &serde_json::to_vec(&entry).unwrap_or_default());
    }
}

/// Temp file + rename, so a reader sees the old entry or the new one, never half of one.
fn write_replace(file: &Path, data: &[u8]) -> std::io::Result<()> {
    let dir = file.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".tmp-{}-{}",
        std::process::id(),
        file.file_name().unwrap_or_default().to_string_lossy()
    ));
    let mut f = fs::File::create(&tmp)?;
    f.write_all(data)?;
    drop(f);
    fs::rename(&tmp, file).inspect_err(|_| {
        let _ = fs::remove_file(&tmp);
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn old_file(dir: &Path, name: &str, content: &[u8]) -> PathBuf {
        let p = dir.join(name);
        fs::write(&p, content).unwrap();
        p
    }

    #[test]
    fn remembers_an_unchanged_file_and_forgets_a_changed_one() {
        let dir = tempfile::tempdir().unwrap();
        let memo = FileDigests::new(Some(dir.path().join("files")));
        let p = old_file(dir.path(), "fe.wasm", b"one");
        std::thread::sleep(RACY_WINDOW * 2);
        let md = fs::metadata(&p).unwrap();
        assert_eq!(memo.lookup(&p, &md), None);
        let digest: [u8; 32] = Sha256::digest(b"one").into();
        memo.remember(&p, &md, &md, SystemTime::now(), &digest);
        assert_eq!(memo.lookup(&p, &fs::metadata(&p).unwrap()), Some(digest));

        // The same size, rewritten: ctime moved, so the entry does not match.
        std::thread::sleep(Duration::from_millis(20));
        fs::write(&p, b"two").unwrap();
        assert_eq!(memo.lookup(&p, &fs::metadata(&p).unwrap()), None);

        // Another path with the same content has its own entry.
        let q = old_file(dir.path(), "other.wasm", b"one");
        assert_eq!(memo.lookup(&q, &fs::metadata(&q).unwrap()), None);
    }

    #[test]
    fn a_file_changed_just_before_the_read_is_not_remembered() {
        let dir = tempfile::tempdir().unwrap();
        let memo = FileDigests::new(Some(dir.path().join("files")));
        let p = old_file(dir.path(), "fe.wasm", b"fresh");
        let md = fs::metadata(&p).unwrap();
        let digest: [u8; 32] = Sha256::digest(b"fresh").into();
        memo.remember(&p, &md, &md, SystemTime::now(), &digest);
        assert_eq!(memo.lookup(&p, &md), None);
    }

    #[test]
    fn a_torn_entry_is_a_miss() {
        let dir = tempfile::tempdir().unwrap();
        let memo = FileDigests::new(Some(dir.path().join("files")));
        let p = old_file(dir.path(), "fe.wasm", b"x");
        let entry = memo.entry_path(&p).unwrap();
        fs::create_dir_all(entry.parent().unwrap()).unwrap();
        fs::write(&entry, b"{\"path\":").unwrap();
        assert_eq!(memo.lookup(&p, &fs::metadata(&p).unwrap()), None);
    }
}
