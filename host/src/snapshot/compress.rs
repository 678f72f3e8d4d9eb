//! Layer blob encoding: [`LayerWriter`] compresses a layer tar and hashes it in one pass
//! (diff_id of the tar, digest and size of the blob); [`decompress`] sniffs a blob's format.

use std::io::{self, Read, Write};

use sha2::{Digest, Sha256};

use super::pgzip::ParGzEncoder;

/// Compression of a layer blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// gzip (flate2 with the zlib-rs backend, on several threads: [`super::ParGzEncoder`]); level 0–9.
    Gzip {
        /// 0 (stored) to 9.
        level: u32,
    },
    /// zstd; level 1–22 (0 = zstd's default).
    Zstd {
        /// 1 to 22.
        level: i32,
    },
    /// Uncompressed tar.
    None,
}

impl Compression {
    /// OCI media type of a layer blob in this compression.
    pub fn media_type(self) -> &'static str {
        match self {
            Compression::Gzip { .. } => "application/vnd.oci.image.layer.v1.tar+gzip",
            Compression::Zstd { .. } => "application/vnd.oci.image.layer.v1.tar+zstd",
            Compression::None => "application/vnd.oci.image.layer.v1.tar",
        }
    }
}

/// Digests of a finished layer blob. Digests are `sha256:<hex>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerDigests {
    /// sha256 of the uncompressed tar (the config's `rootfs.diff_ids` entry).
    pub diff_id: String,
    /// sha256 of the bytes written to the output (the manifest's layer digest).
    pub digest: String,
    /// Size of the blob (compressed bytes written to the output).
    pub size: u64,
    /// Size of the uncompressed tar.
    pub uncompressed_size: u64,
}

/// Counts and hashes everything written through it (an uncompressed blob's bytes are the
/// tar's, already hashed as the diff_id: `hash` is None then).
struct HashCount<W> {
    inner: W,
    hash: Option<Sha256>,
    n: u64,
}

impl<W: Write> Write for HashCount<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        if let Some(h) = &mut self.hash {
            h.update(&buf[..n]);
        }
        self.n += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

enum Enc<W: Write> {
    Gzip(ParGzEncoder<HashCount<W>>),
    Zstd(zstd::stream::write::Encoder<'static, HashCount<W>>),
    None(HashCount<W>),
}

/// Write a layer tar into it; it compresses to `out` and hashes both sides on the way.
pub struct LayerWriter<W: Write> {
    enc: Enc<W>,
    diff: Sha256,
    n: u64,
}

impl<W: Write> LayerWriter<W> {
    /// Start a blob on `out` with the given compression.
    pub fn new(out: W, compression: Compression) -> io::Result<Self> {
        let hc = HashCount {
            inner: out,
            hash: (compression != Compression::None).then(Sha256::new),
            n: 0,
        };
        let enc = match compression {
            // Same bytes whatever the number of threads: reproducible.
            Compression::Gzip { level } => Enc::Gzip(ParGzEncoder::new(hc, level)?),
            Compression::Zstd { level } => Enc::Zstd(zstd::stream::write::Encoder::new(hc, level)?),
            Compression::None => Enc::None(hc),
        };
        Ok(LayerWriter {
            enc,
            diff: Sha256::new(),
            n: 0,
        })
    }

    /// Flush the compressor and return the digests and the output writer.
    pub fn finish(self) -> io::Result<(LayerDigests, W)> {
        let mut hc = match self.enc {
            Enc::Gzip(e) => e.finish()?,
            Enc::Zstd(e) => e.finish()?,
            Enc::None(h) => h,
        };
        hc.flush()?;
        let diff_id = format!("sha256:{}", hex::encode(self.diff.finalize()));
        let d = LayerDigests {
            digest: match hc.hash.take() {
                Some(h) => format!("sha256:{}", hex::encode(h.finalize())),
                None => diff_id.clone(),
            },
            diff_id,
            size: hc.n,
            uncompressed_size: self.n,
        };
        Ok((d, hc.inner))
    }
}

impl<W: Write> Write for LayerWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = match &mut self.enc {
            Enc::Gzip(e) => e.write(buf)?,
            Enc::Zstd(e) => e.write(buf)?,
            Enc::None(e) => e.write(buf)?,
        };
        self.diff.update(&buf[..n]);
        self.n += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        match &mut self.enc {
            Enc::Gzip(e) => e.flush(),
            Enc::Zstd(e) => e.flush(),
            Enc::None(e) => e.flush(),
        }
    }
}

/// Formats [`decompress`] recognises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Gzip,
    Zstd,
    Bzip2,
    Xz,
    Plain,
}

/// Identify the compression from the first bytes of a stream.
pub fn sniff(magic: &[u8]) -> Format {
    if magic.starts_with(&[0x1f, 0x8b]) {
        Format::Gzip
    } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Format::Zstd
    } else if magic.starts_with(b"BZh") {
        Format::Bzip2
    } else if magic.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        Format::Xz
    } else {
        Format::Plain
    }
}

/// Wrap `reader` in the decompressor its magic bytes call for (gzip, zstd, bzip2, xz), or pass
/// it through unchanged. Concatenated gzip/bzip2/xz members are all read.
pub fn decompress<'a>(mut reader: impl Read + Send + 'a) -> io::Result<Box<dyn Read + Send + 'a>> {
    let mut magic = [0u8; 6];
    let mut got = 0;
    while got < magic.len() {
        match reader.read(&mut magic[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let head = io::Cursor::new(magic[..got].to_vec());
    let r = head.chain(reader);
    Ok(match sniff(&magic[..got]) {
        Format::Gzip => Box::new(flate2::read::MultiGzDecoder::new(r)),
        Format::Zstd => Box::new(zstd::stream::read::Decoder::new(r)?),
        Format::Bzip2 => Box::new(bzip2::read::MultiBzDecoder::new(r)),
        Format::Xz => Box::new(liblzma::read::XzDecoder::new_multi_decoder(r)),
        Format::Plain => Box::new(r),
    })
}
