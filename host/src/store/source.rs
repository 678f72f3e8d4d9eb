//! The blob traits the image formats are written against — [`BlobSource`] to read, [`BlobSink`]
//! to write content-addressed blobs by `sha256:<hex>` digest — and the store's implementation of
//! both. Exporters, importers and registries take `&dyn BlobSource` / `&dyn BlobSink`, so they
//! work on the store or on any plain blob directory.

use std::io::{self, Read};

use super::{Digest, Store, StoreError};

/// Read access to content-addressed blobs (`sha256:<hex>` digests).
pub trait BlobSource {
    /// Open a blob for streaming. Implementations need not verify; exporters verify as they copy.
    fn open_blob(&self, digest: &str) -> io::Result<Box<dyn Read + '_>>;
}

/// Write access to a content-addressed blob store.
pub trait BlobSink {
    /// Store the whole of `reader` as a blob and return its `(digest, size)`. When `expected` is
    /// given, the sink must fail (and keep nothing) if the content does not hash to it.
    fn put_blob(&self, reader: &mut dyn Read, expected: Option<&str>) -> io::Result<(String, u64)>;
}

fn digest(s: &str) -> io::Result<Digest> {
    s.parse()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{e}")))
}

fn io_err(e: StoreError) -> io::Error {
    io::Error::other(e)
}

impl BlobSource for Store {
    fn open_blob(&self, d: &str) -> io::Result<Box<dyn Read + '_>> {
        let r: Box<dyn Read> = Store::stream_blob(self, &digest(d)?).map_err(io_err)?;
        Ok(r)
    }
}

impl BlobSink for Store {
    fn put_blob(&self, reader: &mut dyn Read, expected: Option<&str>) -> io::Result<(String, u64)> {
        let expected = expected.map(digest).transpose()?;
        let (d, size) = self
            .put_blob_from_reader(reader, expected.as_ref())
            .map_err(io_err)?;
        Ok((d.to_string(), size))
    }
}
