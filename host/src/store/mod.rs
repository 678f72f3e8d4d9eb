//! Content-addressed store: the on-disk root that holds blobs by sha256 digest, unpacked
//! snapshots, the build cache index, named image references, locks and temp files.
//!
//! Layout under the root (version [`LAYOUT_VERSION`], recorded in `layout`):
//! ```text
//! layout               "wbuild store layout <n>"
//! blobs/sha256/<hex>   blob content
//! snapshots/           unpacked filesystems (owned by the snapshotter)
//! cache/<hex>          cache key → result record
//! refs/<encoded name>  image name → manifest digest
//! locks/<name>.lock    advisory flock files
//! tmp/                 in-progress writes; ignored by readers, cleaned by `cleanup_tmp`
//! exec/                the sandbox's state: runc's root and the bundles of running steps
//! cache-mounts/<hex>   `RUN --mount=type=cache` directories, by id
//! registry-sources/<hex>  repositories a blob was pulled from (for cross-repository mounts)
//! cache/context-hashes/     the build contexts' content-hash memos (one file per context)
//! cache/layer-variants/     an uncompressed layer blob → its compressed blob, per compression
//! cache/frontends/     compiled frontend components
//! ```
//! Every other module asks the store for these paths; none spells them out.
//! Crash safety: everything reaches its final name by fsync + rename from `tmp/`, so a torn
//! write never appears under a final name. Concurrency: writers use unique temp names, so two
//! processes writing the same blob both succeed; [`Store::lock`] serializes the rest.
//!
//! This file owns [`Store`] itself: opening and layout versioning, temp cleanup, disk usage
//! and pruning. Blobs, refs, cache and locks live in their own files.

mod blobs;
mod cache;
mod digest;
mod error;
mod fsutil;
mod lock;
mod names;
mod refs;
mod source;
mod sources;
#[cfg(test)]
mod tests;

use sha2::{Digest as _, Sha256};
use std::collections::HashSet;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

pub use digest::Digest;
pub use error::{Result, StoreError};
pub use lock::LockGuard;
pub use source::{BlobSink, BlobSource};

/// The layout version this build writes and the newest it reads.
pub const LAYOUT_VERSION: u32 = 1;

const LAYOUT_FILE: &str = "layout";
const LAYOUT_MAGIC: &str = "wbuild store layout ";
const DIRS: [&str; 7] = [
    "blobs",
    "blobs/sha256",
    "snapshots",
    "cache",
    "refs",
    "locks",
    "tmp",
];

/// Temp files older than this are presumed abandoned by [`Store::cleanup_tmp`].
pub const TMP_MAX_AGE: Duration = Duration::from_secs(3600);

/// An open store root. Cheap to clone; safe to share between threads and processes.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

/// What the store holds, as reported by `wbuild du`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Number of blobs.
    pub blobs: u64,
    /// Bytes in blobs.
    pub blob_bytes: u64,
    /// Number of named references.
    pub refs: u64,
    /// Number of cache index entries.
    pub cache_entries: u64,
    /// Bytes in cache index records.
    pub cache_bytes: u64,
    /// Number of leftover or in-progress temp files.
    pub tmp_files: u64,
    /// Bytes in temp files.
    pub tmp_bytes: u64,
}

impl Store {
    /// The lock that `prune` takes exclusively and builds take shared, so a prune never
    /// deletes a blob a running build has written but not yet referenced.
    pub const GC_LOCK: &'static str = "gc";

    /// The default root: `/var/lib/wbuild` for root, else `$XDG_DATA_HOME/wbuild`
    /// (`~/.local/share/wbuild` when unset).
    pub fn default_root() -> PathBuf {
        // Root of a user namespace (rootless wbuild) is still the user: their store.
        if crate::userns::privilege() == crate::userns::Privilege::Root {
            return PathBuf::from("/var/lib/wbuild");
        }
        let data = std::env::var_os("XDG_DATA_HOME")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".local/share")))
            .unwrap_or_else(|| PathBuf::from("/tmp"));
        data.join("wbuild")
    }

    /// Opens the store at `root`, creating it (and any missing directory of the layout) if
    /// needed. Refuses a layout written by a newer wbuild and a non-empty directory that is
    /// not a store.
    pub fn open(root: &Path) -> Result<Store> {
        fs::create_dir_all(root).map_err(StoreError::io("create the store root", root))?;
        let store = Store {
            root: root.to_path_buf(),
        };
        let layout = root.join(LAYOUT_FILE);
        match fsutil::read_optional(&layout)? {
            Some(data) => {
                let version = parse_layout(&data).ok_or_else(|| StoreError::Corrupt {
                    path: layout.clone(),
                    reason: format!("expected `{LAYOUT_MAGIC}<number>`"),
                })?;
                if version > LAYOUT_VERSION {
                    return Err(StoreError::NewerLayout {
                        root: root.to_path_buf(),
                        found: version,
                        supported: LAYOUT_VERSION,
                    });
                }
                store.create_dirs()?;
            }
            None => {
                // New, or created by a process that crashed (or is running) before writing
                // `layout`: accept only our own directory names.
                let entries = fs::read_dir(root).map_err(StoreError::io("list", root))?;
                for entry in entries {
                    let entry = entry.map_err(StoreError::io("list", root))?;
                    let name = entry.file_name();
                    if !DIRS.iter().any(|d| name == **d) {
                        return Err(StoreError::NotAStore {
                            root: root.to_path_buf(),
                        });
                    }
                }
                store.create_dirs()?;
                let text = format!("{LAYOUT_MAGIC}{LAYOUT_VERSION}\n");
                fsutil::write_atomic(&store.tmp_dir(), &layout, text.as_bytes())?;
            }
        }
        Ok(store)
    }

    fn create_dirs(&self) -> Result<()> {
        for dir in DIRS {
            let path = self.root.join(dir);
            fs::create_dir_all(&path).map_err(StoreError::io("create", path))?;
        }
        Ok(())
    }

    /// The store root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// syncfs of the store's filesystem: everything written to the store so far is durable.
    pub fn sync_filesystem(&self) -> Result<()> {
        crate::sys::sync_filesystem(&self.root).map_err(StoreError::io("sync", self.root.clone()))
    }

    /// Directory for in-progress writes (same filesystem as the store, so renames are atomic).
    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// Directory owned by the snapshotter for unpacked filesystems.
    pub fn snapshots_dir(&self) -> PathBuf {
        self.root.join("snapshots")
    }

    /// Blob files, named by the hex of their sha256.
    pub(crate) fn blobs_dir(&self) -> PathBuf {
        self.root.join("blobs/sha256")
    }

    /// The cache index: one record file per cache key.
    pub(crate) fn cache_dir(&self) -> PathBuf {
        self.root.join("cache")
    }

    fn refs_dir(&self) -> PathBuf {
        self.root.join("refs")
    }

    /// Lock files.
    pub(crate) fn locks_dir(&self) -> PathBuf {
        self.root.join("locks")
    }

    /// The sandbox's state directory (runc's root, bundles of running steps).
    pub fn exec_dir(&self) -> PathBuf {
        self.root.join("exec")
    }

    /// Where `RUN --mount=type=cache` directories are kept across builds.
    pub fn cache_mounts_dir(&self) -> PathBuf {
        self.root.join("cache-mounts")
    }

    /// Records of which repositories each blob was pulled from.
    fn registry_sources_dir(&self) -> PathBuf {
        self.root.join("registry-sources")
    }

    /// The content-hash memo of the build context at `context_dir`: one file per context
    /// directory, so a build reads only the entries of its own context.
    pub fn context_memo_path(&self, context_dir: &Path) -> PathBuf {
        let dir = std::path::absolute(context_dir).unwrap_or_else(|_| context_dir.to_path_buf());
        let h = Sha256::digest(dir.as_os_str().as_encoded_bytes());
        self.context_memo_dir()
            .join(format!("{}.memo", hex::encode(&h[..16])))
    }

    /// Where the build contexts' content-hash memos are.
    pub fn context_memo_dir(&self) -> PathBuf {
        self.cache_dir().join("context-hashes")
    }

    /// Where the compressed forms of uncompressed layer blobs are remembered: one file per
    /// layer and compression, `<hex of the tar>.<compression>`, holding the compressed blob's
    /// digest and size (see `image::compressed`).
    pub fn layer_variants_dir(&self) -> PathBuf {
        self.cache_dir().join("layer-variants")
    }

    /// Where compiled frontend components are cached.
    pub fn frontend_cache_dir(&self) -> PathBuf {
        self.cache_dir().join("frontends")
    }

    /// Removes temp files left by killed processes: those older than [`TMP_MAX_AGE`] that no
    /// live writer holds. Returns how many were removed.
    pub fn cleanup_tmp(&self) -> Result<usize> {
        self.cleanup_tmp_older_than(TMP_MAX_AGE)
    }

    /// Like [`Store::cleanup_tmp`] with a chosen age. Files a live writer holds (locked) are
    /// always kept; a very small age may remove a file whose writer has not locked it yet, so
    /// use it only when no other process uses the store.
    pub fn cleanup_tmp_older_than(&self, age: Duration) -> Result<usize> {
        let dir = self.tmp_dir();
        let cutoff = SystemTime::now()
            .checked_sub(age)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let mut removed = 0;
        let entries = fs::read_dir(&dir).map_err(StoreError::io("list", &dir))?;
        for entry in entries {
            let entry = entry.map_err(StoreError::io("list", &dir))?;
            let path = entry.path();
            let Ok(meta) = entry.metadata() else { continue };
            if !meta.is_file() || meta.modified().is_ok_and(|m| m > cutoff) {
                continue;
            }
            let file = match File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(StoreError::io("open", path)(e)),
            };
            match fsutil::flock(&file, libc::LOCK_EX | libc::LOCK_NB) {
                Ok(()) => {
                    if fsutil::remove_optional(&path)? {
                        removed += 1;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(StoreError::io("lock", path)(e)),
            }
        }
        Ok(removed)
    }

    /// Counts and sizes of what the store holds (snapshots are the snapshotter's to report).
    pub fn disk_usage(&self) -> Result<Usage> {
        let mut usage = Usage::default();
        for (_, size) in self.list_blobs()? {
            usage.blobs += 1;
            usage.blob_bytes += size;
        }
        usage.refs = fsutil::list_files(&self.refs_dir())?.len() as u64;
        for (_, size) in self.list_cache()? {
            usage.cache_entries += 1;
            usage.cache_bytes += size;
        }
        let tmp = self.tmp_dir();
        for entry in fs::read_dir(&tmp).map_err(StoreError::io("list", &tmp))? {
            let entry = entry.map_err(StoreError::io("list", &tmp))?;
            if let Ok(meta) = entry.metadata()
                && meta.is_file()
            {
                usage.tmp_files += 1;
                usage.tmp_bytes += meta.len();
            }
        }
        Ok(usage)
    }

    /// Removes every blob not in `keep`; returns the bytes freed. Callers should hold
    /// [`Store::GC_LOCK`] exclusively (builds hold it shared) so in-flight blobs survive.
    pub fn prune_blobs(&self, keep: &HashSet<Digest>) -> Result<u64> {
        let mut freed = 0;
        for (digest, size) in self.list_blobs()? {
            if !keep.contains(&digest) && self.remove_blob(&digest)? {
                freed += size;
            }
        }
        fsutil::sync_dir(&self.blobs_dir())?;
        Ok(freed)
    }
}

fn parse_layout(data: &[u8]) -> Option<u32> {
    let text = std::str::from_utf8(data).ok()?;
    let version: u32 = text.trim_end().strip_prefix(LAYOUT_MAGIC)?.parse().ok()?;
    (version > 0).then_some(version)
}
