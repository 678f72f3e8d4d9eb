//! The sha256 of a `--frontend FILE`, remembered by the file's stat, so that a warm load of an
//! unchanged file neither reads nor hashes it (a componentize-py frontend is 18 MB: reading
//! and hashing it was most of a warm load).
//!
//! One small JSON file per frontend path, named by the sha256 of its absolute path, in the
//! artifact cache's `files/` directory. An entry is used only when the open file's whole
//! [`FileStat`] matches (the rule of the build context's hash memo), and a digest is
//! remembered only as [`FileStat::rememberable`] allows.
//!
//! The memo is only a cache: a missing, torn or foreign entry is a miss, and a failed write
//! costs the next load a read.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::sys::FileStat;

/// The path and stat an entry must match, and the digest it gives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    path: String,
    stat: FileStat,
    sha256: String,
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
        if entry.path != path.to_string_lossy() || entry.stat != FileStat::of(md) {
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
        let stat = FileStat::of(before);
        if !stat.rememberable(&FileStat::of(after), started) {
            let _ = fs::remove_file(&file);
            return;
        }
        let entry = Entry {
            path: path.to_string_lossy().into_owned(),
            stat,
            sha256: hex::encode(digest),
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
    use std::time::Duration;

    use super::*;
    use crate::sys::RACY_WINDOW;

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
