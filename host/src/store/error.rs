//! Owns [`StoreError`], the store's error type: every message names the file or value involved
//! and says what the user can do about it.

use std::io;
use std::path::PathBuf;

use super::digest::Digest;

/// Result alias used throughout the store.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Everything that can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// An I/O operation on a store file failed.
    #[error(
        "cannot {op} {}: {source} (check permissions and free space under the store root, or pass another --root)",
        path.display()
    )]
    Io {
        /// What was being done, e.g. "create" or "rename".
        op: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// A string is not a `sha256:<64 lowercase hex>` digest.
    #[error(
        "invalid digest `{input}`: {reason}; a digest is `sha256:` followed by 64 lowercase hex digits"
    )]
    InvalidDigest {
        /// The rejected text (truncated when very long).
        input: String,
        /// Why it was rejected.
        reason: &'static str,
    },

    /// Content written to the store did not hash to the digest it was announced with.
    #[error(
        "content does not match its digest: expected {expected}, got {actual}; the source is corrupt or was modified in transit, fetch it again"
    )]
    DigestMismatch {
        /// The digest the caller expected.
        expected: Digest,
        /// The digest of the bytes actually received.
        actual: Digest,
    },

    /// A blob already in the store no longer hashes to its name.
    #[error(
        "blob {digest} in the store is corrupt (its content hashes to {actual}); remove it with `wbuild prune` and pull or rebuild the image"
    )]
    CorruptBlob {
        /// The blob's name.
        digest: Digest,
        /// What its content hashes to now.
        actual: Digest,
    },

    /// Reading the source of a blob (a file, a network stream) failed.
    #[error(
        "reading the data for a new blob failed: {0}; check the source (file or network) and retry"
    )]
    SourceRead(#[source] io::Error),

    /// A blob is not in the store.
    #[error("blob {0} is not in the store; pull or rebuild the image that contains it")]
    BlobNotFound(Digest),

    /// An image name given to `-t` (or a lock name) cannot be stored.
    #[error(
        "invalid image name `{name}`: {reason}; use names like `app:1` or `registry.example/team/app:tag`"
    )]
    InvalidRefName {
        /// The rejected name (truncated when very long).
        name: String,
        /// Why it was rejected.
        reason: &'static str,
    },

    /// A lock name cannot be used.
    #[error("invalid lock name `{name}`: {reason}")]
    InvalidLockName {
        /// The rejected name.
        name: String,
        /// Why it was rejected.
        reason: &'static str,
    },

    /// The store root was written by a newer wbuild.
    #[error(
        "the store at {} uses layout version {found}, but this wbuild understands only up to version {supported}; upgrade wbuild or pass another --root",
        root.display()
    )]
    NewerLayout {
        /// The store root.
        root: PathBuf,
        /// The version found on disk.
        found: u32,
        /// The newest version this build understands.
        supported: u32,
    },

    /// The root directory holds something that is not a wbuild store.
    #[error(
        "{} is not a wbuild store (it has other files and no `layout` file); pass an empty or new directory as --root",
        root.display()
    )]
    NotAStore {
        /// The directory that was refused.
        root: PathBuf,
    },

    /// A store file has content that cannot be parsed.
    #[error(
        "store file {} is corrupt: {reason}; remove it (a crash or a manual edit may have damaged it)",
        path.display()
    )]
    Corrupt {
        /// The damaged file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

impl StoreError {
    /// Builds an [`StoreError::Io`] for `op` on `path`.
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| StoreError::Io { op, path, source }
    }
}

/// Shortens user-supplied text for inclusion in an error message.
pub(crate) fn clip(s: &str) -> String {
    const MAX: usize = 120;
    if s.len() <= MAX {
        return s.to_string();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}
