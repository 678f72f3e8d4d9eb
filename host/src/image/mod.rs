//! OCI image formats: image config (Docker/BuildKit compatible), manifests and indexes, export to
//! OCI layouts and Docker-loadable tars, and import of `docker save` / OCI archives.
//!
//! This module owns the *format*, not the storage: blobs come from a [`BlobSource`] and go into a
//! [`BlobSink`], two tiny traits the content-addressed store defines and implements (`crate::store`). A
//! test-only `DirBlobs` (a plain `blobs/sha256/<hex>` directory) implements both for the tests.
//!
//! - [`config`]: [`ImageConfig`] and [`ConfigBuilder`] (Dockerfile config edits, history, diff_ids).
//! - [`manifest`]: OCI image manifest / index construction, layer media types, canonical JSON.
//! - [`export`]: OCI layout directory or tar, Docker-loadable tar (OCI layout + `manifest.json`).
//! - [`import`]: `docker save` archives (legacy and blobs layouts) and OCI layouts (tar or dir).
//! - [`normalize`] / [`familiar`]: image names as Docker normalises and shows them.

pub mod compressed;
pub mod config;
pub mod export;
pub mod import;
pub mod index;
pub mod load;
pub mod manifest;
pub mod named;
pub mod provenance;
mod reference;
#[cfg(test)]
mod roundtrip_tests;

pub use config::{ConfigBuilder, Healthcheck, ImageConfig};
pub use export::{ExportOptions, export_docker_tar, export_oci_dir, export_oci_tar, export_tar_to};
pub use import::import_path;
pub use manifest::{Compression, canonical_json, image_index};
pub use reference::{familiar, normalize};

use sha2::{Digest as _, Sha256};
use std::io::{self, Read};
#[cfg(test)]
use std::{fs, io::Write, path::PathBuf};

pub use crate::store::{BlobSink, BlobSource};

/// `sha256:<hex>` of a byte slice.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Checks that `digest` is `sha256:` followed by 64 lowercase hex digits and returns the hex part.
/// Everything that turns a digest into a path goes through this, so a digest can never carry a
/// path component.
pub fn digest_hex(digest: &str) -> io::Result<&str> {
    match digest.strip_prefix("sha256:") {
        Some(h) if h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) => {
            Ok(h)
        }
        _ => Err(invalid(format!("invalid or unsupported digest {digest:?}"))),
    }
}

pub(crate) fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// A reader that hashes (sha256) and counts what passes through it.
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }
    /// `(sha256:<hex>, bytes read)` so far.
    pub fn finish(self) -> (String, u64) {
        (
            format!("sha256:{}", hex::encode(self.hasher.finalize())),
            self.count,
        )
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
/// Blobs in a plain directory: `<root>/blobs/sha256/<hex>` (the OCI layout's blob layout).
/// Writes go to a temp file that is renamed into place only after its digest checked out.
#[derive(Debug, Clone)]
pub struct DirBlobs {
    root: PathBuf,
}

#[cfg(test)]
impl DirBlobs {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }
    pub fn path_of(&self, digest: &str) -> io::Result<PathBuf> {
        Ok(self.root.join("blobs/sha256").join(digest_hex(digest)?))
    }
    /// Store in-memory bytes (configs, manifests); returns the digest.
    pub fn put_bytes(&self, bytes: &[u8]) -> io::Result<String> {
        Ok(self.put_blob(&mut &bytes[..], None)?.0)
    }
}

#[cfg(test)]
impl BlobSource for DirBlobs {
    fn open_blob(&self, digest: &str) -> io::Result<Box<dyn Read + '_>> {
        Ok(Box::new(fs::File::open(self.path_of(digest)?)?))
    }
}

#[cfg(test)]
impl DirBlobs {
    fn blob_size(&self, digest: &str) -> io::Result<u64> {
        Ok(fs::metadata(self.path_of(digest)?)?.len())
    }
}

#[cfg(test)]
impl BlobSink for DirBlobs {
    fn put_blob(&self, reader: &mut dyn Read, expected: Option<&str>) -> io::Result<(String, u64)> {
        if let Some(e) = expected {
            digest_hex(e)?;
        }
        let dir = self.root.join("blobs/sha256");
        fs::create_dir_all(&dir)?;
        let mut tmp = tempfile::NamedTempFile::new_in(&dir)?;
        let mut hr = HashingReader::new(reader);
        io::copy(&mut hr, &mut tmp)?;
        tmp.flush()?;
        let (digest, size) = hr.finish();
        if let Some(e) = expected
            && e != digest
        {
            return Err(invalid(format!(
                "digest mismatch: expected {e}, content is {digest}"
            )));
        }
        tmp.persist(dir.join(digest_hex(&digest)?))
            .map_err(|e| e.error)?;
        Ok((digest, size))
    }
}

pub(crate) use crate::sys::write_atomic;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_validation() {
        let d = sha256_digest(b"");
        assert_eq!(
            d,
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert!(digest_hex(&d).is_ok());
        assert!(digest_hex("sha256:../../etc/passwd").is_err());
        assert!(digest_hex("sha512:abcd").is_err());
        assert!(digest_hex(&d.to_uppercase()).is_err());
    }

    #[test]
    fn dir_blobs_verify_on_put() {
        let t = tempfile::tempdir().unwrap();
        let b = DirBlobs::new(t.path());
        let d = b.put_bytes(b"hello").unwrap();
        assert_eq!(b.blob_size(&d).unwrap(), 5);
        let wrong = sha256_digest(b"other");
        let err = b.put_blob(&mut &b"hello"[..], Some(&wrong)).unwrap_err();
        assert!(err.to_string().contains("digest mismatch"), "{err}");
        assert!(b.open_blob(&wrong).is_err());
    }
}
