//! Owns blobs: content stored under `blobs/sha256/<hex>`, written by streaming through a
//! [`BlobWriter`] (hash while writing, verify, fsync, atomic rename) and read, sized, verified
//! and removed by digest.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::PathBuf;

use sha2::Digest as _;

use super::Store;
use super::digest::Digest;
use super::error::{Result, StoreError};
use super::fsutil::{self, TempFile};
use crate::sys::DirectChunks;

const BUF_SIZE: usize = 256 * 1024;

/// Streams a new blob into the store: write the bytes (it implements [`Write`]), then
/// [`BlobWriter::finish`]. The data lives in a locked temp file in `root/tmp` until it is
/// verified and renamed into place; dropping the writer unfinished removes the temp file.
/// Writes reach the file in whole 1 MiB chunks, each written directly (`O_DIRECT`) where the
/// filesystem allows it (see [`crate::sys::DirectChunks`]): a layer tar is written in 512-byte
/// headers and 8 KiB pieces, and a big blob is read again only once at a time (to be exported,
/// uploaded or unpacked), so it need not pass through the page cache.
pub struct BlobWriter {
    tmp: TempFile,
    /// None for a writer whose caller hashes the very same bytes
    /// ([`Store::blob_writer_unhashed`]): its digest is the caller's.
    hasher: Option<sha2::Sha256>,
    size: u64,
    blobs_dir: PathBuf,
    chunks: DirectChunks,
}

impl BlobWriter {
    /// Bytes written so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Writes out what is buffered.
    fn drain(&mut self) -> io::Result<()> {
        self.chunks.drain(self.tmp.file())
    }

    /// The digest of what was written: hashed, and checked against `expected` when given; of
    /// an unhashed writer, `expected` itself (which it must be given).
    fn settle(&mut self, expected: Option<&Digest>) -> Result<Digest> {
        let path = self.tmp.path().to_path_buf();
        self.drain()
            .map_err(StoreError::io("write", path.clone()))?;
        let actual = match self.hasher.take() {
            Some(h) => Digest::from_sha256(h.finalize().into()),
            None => {
                return expected.copied().ok_or_else(|| StoreError::Corrupt {
                    path,
                    reason: "a blob written unhashed was finished without its digest".into(),
                });
            }
        };
        if let Some(expected) = expected
            && *expected != actual
        {
            return Err(StoreError::DigestMismatch {
                expected: *expected,
                actual,
            });
        }
        Ok(actual)
    }

    /// Verifies the content against `expected` (if given), then fsyncs and atomically renames
    /// it to its final name. On a mismatch the temp file is removed and nothing is stored.
    /// Returns the content's digest and size.
    pub fn finish(mut self, expected: Option<&Digest>) -> Result<(Digest, u64)> {
        let actual = self.settle(expected)?;
        // Renaming over an existing blob is fine: same content, and it repairs a damaged copy.
        self.tmp.publish(&self.blobs_dir.join(actual.hex()))?;
        Ok((actual, self.size))
    }

    /// As [`BlobWriter::finish`], without the two fsyncs: the blob is in place but durable
    /// only after the next [`Store::sync_filesystem`], which the caller must run before any
    /// durable record names it ([`Store::put_cache_synced`] does). A build step's layer takes
    /// this path: one syncfs per step instead of an fsync per file.
    pub fn finish_unsynced(mut self, expected: Option<&Digest>) -> Result<(Digest, u64)> {
        let actual = self.settle(expected)?;
        self.tmp
            .rename_unsynced(&self.blobs_dir.join(actual.hex()))?;
        Ok((actual, self.size))
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.chunks.fill(buf);
        if let Some(h) = &mut self.hasher {
            h.update(&buf[..n]);
        }
        self.size += n as u64;
        if self.chunks.is_full() {
            self.drain()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.drain()?;
        self.tmp.file().flush()
    }
}

impl Store {
    /// Starts writing a new blob; see [`BlobWriter`].
    pub fn blob_writer(&self) -> Result<BlobWriter> {
        self.new_blob_writer(Some(sha2::Sha256::new()))
    }

    /// A [`BlobWriter`] that does not hash, for a caller that hashes exactly the bytes it
    /// writes (an uncompressed layer: its diff_id is its digest) and finishes it with that
    /// digest.
    pub fn blob_writer_unhashed(&self) -> Result<BlobWriter> {
        self.new_blob_writer(None)
    }

    fn new_blob_writer(&self, hasher: Option<sha2::Sha256>) -> Result<BlobWriter> {
        Ok(BlobWriter {
            tmp: TempFile::new_in(&self.tmp_dir())?,
            hasher,
            size: 0,
            blobs_dir: self.blobs_dir(),
            chunks: DirectChunks::new(),
        })
    }

    /// Streams `reader` into the store (never holding the whole blob in memory), verifying it
    /// against `expected` when given. Returns its digest and size.
    pub fn put_blob_from_reader(
        &self,
        mut reader: impl Read,
        expected: Option<&Digest>,
    ) -> Result<(Digest, u64)> {
        let mut writer = self.blob_writer()?;
        let mut buf = vec![0u8; BUF_SIZE];
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(StoreError::SourceRead(e)),
            };
            let path = writer.tmp.path().to_path_buf();
            writer
                .write_all(&buf[..n])
                .map_err(StoreError::io("write", path))?;
        }
        writer.finish(expected)
    }

    /// Where the blob `digest` lives (whether or not it is present).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.blobs_dir().join(digest.hex())
    }

    /// Whether the blob is in the store.
    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// Opens the blob for reading.
    pub fn open_blob(&self, digest: &Digest) -> Result<File> {
        let path = self.blob_path(digest);
        File::open(&path).map_err(|e| not_found_or(e, digest, "open", path))
    }

    /// Opens the blob to be read once from start to end (an export, an upload, an unpack): a
    /// big blob that is not in the page cache is read directly (see
    /// [`crate::sys::open_sequential`]).
    pub fn stream_blob(&self, digest: &Digest) -> Result<Box<dyn Read + Send>> {
        let path = self.blob_path(digest);
        crate::sys::open_sequential(&path).map_err(|e| not_found_or(e, digest, "open", path))
    }

    /// The blob's size in bytes.
    pub fn blob_size(&self, digest: &Digest) -> Result<u64> {
        let path = self.blob_path(digest);
        fs::metadata(&path)
            .map(|m| m.len())
            .map_err(|e| not_found_or(e, digest, "stat", path))
    }

    /// Re-hashes the blob; fails with [`StoreError::CorruptBlob`] if it no longer matches.
    pub fn verify_blob(&self, digest: &Digest) -> Result<()> {
        let mut file = self.open_blob(digest)?;
        let mut hasher = sha2::Sha256::new();
        let mut buf = vec![0u8; BUF_SIZE];
        loop {
            match file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => hasher.update(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(StoreError::io("read", self.blob_path(digest))(e)),
            }
        }
        let actual = Digest::from_sha256(hasher.finalize().into());
        if actual != *digest {
            return Err(StoreError::CorruptBlob {
                digest: *digest,
                actual,
            });
        }
        Ok(())
    }

    /// Removes the blob; returns whether it was present.
    pub fn remove_blob(&self, digest: &Digest) -> Result<bool> {
        fsutil::remove_optional(&self.blob_path(digest))
    }

    /// Digests and sizes of every blob in the store (temp files and stray names skipped).
    pub fn list_blobs(&self) -> Result<Vec<(Digest, u64)>> {
        Ok(fsutil::list_files(&self.blobs_dir())?
            .into_iter()
            .filter_map(|(name, size)| Digest::from_hex(&name).ok().map(|d| (d, size)))
            .collect())
    }
}

fn not_found_or(e: io::Error, digest: &Digest, op: &'static str, path: PathBuf) -> StoreError {
    if e.kind() == io::ErrorKind::NotFound {
        StoreError::BlobNotFound(*digest)
    } else {
        StoreError::Io {
            op,
            path,
            source: e,
        }
    }
}
