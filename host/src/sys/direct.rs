//! Direct I/O (`O_DIRECT`) for the big sequential files the host writes once and reads once: a
//! layer blob, an exported archive. Through the page cache, every page of such a file is first
//! allocated and zeroed by the kernel, then written back, then evicted again; on a machine whose
//! memory is costly to touch (a VM whose balloon takes free pages back) that costs several
//! seconds a GiB, far more than the disk. Written and read directly, the bytes go from one
//! buffer of ours to the disk and back.
//!
//! Both directions fall back to the page cache by themselves: a filesystem that refuses
//! `O_DIRECT` (tmpfs, some FUSE mounts), a write at an offset that is not aligned, the short tail
//! of a file. A small file never goes direct. Durability is unchanged: a direct write is in the
//! disk's cache only, and the store's fsync or syncfs is what makes it durable, as before.

use std::alloc::{self, Layout};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::ptr::NonNull;

/// The size of one direct write or read, and of the buffer behind it.
pub(crate) const CHUNK: usize = 1 << 20;

/// Offsets, lengths and buffer addresses of direct I/O are multiples of this (the page size,
/// which covers every logical block size in use).
const ALIGN: usize = 4096;

/// A file at least this big is read directly when it is not in the page cache already.
const DIRECT_READ_MIN: u64 = 8 << 20;

/// One [`CHUNK`] of memory aligned for direct I/O.
struct AlignedBuf(NonNull<u8>);

// SAFETY: the buffer is plain memory owned by this value alone.
unsafe impl Send for AlignedBuf {}
unsafe impl Sync for AlignedBuf {}

impl AlignedBuf {
    fn layout() -> Layout {
        Layout::from_size_align(CHUNK, ALIGN).expect("a valid layout")
    }

    fn new() -> AlignedBuf {
        // SAFETY: the layout has a non-zero size.
        let p = unsafe { alloc::alloc_zeroed(Self::layout()) };
        AlignedBuf(NonNull::new(p).unwrap_or_else(|| alloc::handle_alloc_error(Self::layout())))
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: CHUNK initialised (zeroed) bytes owned by self.
        unsafe { std::slice::from_raw_parts(self.0.as_ptr(), CHUNK) }
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as above, borrowed mutably through &mut self.
        unsafe { std::slice::from_raw_parts_mut(self.0.as_ptr(), CHUNK) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { alloc::dealloc(self.0.as_ptr(), Self::layout()) }
    }
}

/// Turns `O_DIRECT` on or off for the open file.
fn set_direct(file: &File, on: bool) -> io::Result<()> {
    let fd = file.as_raw_fd();
    // SAFETY: fcntl on a valid descriptor owned by `file`.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    let want = if on {
        flags | libc::O_DIRECT
    } else {
        flags & !libc::O_DIRECT
    };
    // SAFETY: as above.
    if want != flags && unsafe { libc::fcntl(fd, libc::F_SETFL, want) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Whether direct I/O is on, off for good, or not tried yet.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Untried,
    On,
    Off,
}

/// The buffer of a sequential writer: bytes gather into a [`CHUNK`]; a full chunk at an aligned
/// offset is written with `O_DIRECT`, anything else through the page cache. It does not own
/// the file (the store's temp file does), so each [`DirectChunks::drain`] is given it.
pub(crate) struct DirectChunks {
    buf: AlignedBuf,
    len: usize,
    /// Bytes written to the file so far (its offset: writes are sequential).
    written: u64,
    mode: Mode,
}

impl DirectChunks {
    pub(crate) fn new() -> DirectChunks {
        DirectChunks {
            buf: AlignedBuf::new(),
            len: 0,
            written: 0,
            mode: Mode::Untried,
        }
    }

    /// Copies as much of `data` as fits into the buffer; returns how much.
    pub(crate) fn fill(&mut self, data: &[u8]) -> usize {
        let n = data.len().min(CHUNK - self.len);
        self.buf.bytes_mut()[self.len..self.len + n].copy_from_slice(&data[..n]);
        self.len += n;
        n
    }

    pub(crate) fn is_full(&self) -> bool {
        self.len == CHUNK
    }

    /// Writes out what is buffered to `file`, at its current offset.
    pub(crate) fn drain(&mut self, file: &File) -> io::Result<()> {
        if self.len == 0 {
            return Ok(());
        }
        let aligned = self.len == CHUNK && self.written.is_multiple_of(ALIGN as u64);
        if aligned && self.mode == Mode::Untried {
            self.mode = if set_direct(file, true).is_ok() {
                Mode::On
            } else {
                Mode::Off
            };
        }
        let direct = aligned && self.mode == Mode::On;
        if !direct && self.mode == Mode::On {
            // A tail, or an offset a flush left unaligned: through the page cache.
            set_direct(file, false)?;
            self.mode = Mode::Untried;
        }
        let mut done = 0;
        while done < self.len {
            match (&*file).write(&self.buf.bytes()[done..self.len]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if self.mode == Mode::On && e.raw_os_error() == Some(libc::EINVAL) => {
                    // The filesystem took the flag but not the write: page cache from now on.
                    set_direct(file, false)?;
                    self.mode = Mode::Off;
                }
                Err(e) => return Err(e),
            }
        }
        self.written += self.len as u64;
        self.len = 0;
        Ok(())
    }
}

/// A buffered [`Write`] over a file it borrows, writing whole chunks directly (see
/// [`DirectChunks`]). [`Write::flush`] writes out the rest; dropping it unflushed loses the
/// buffered bytes, as a `BufWriter` whose flush failed.
pub(crate) struct DirectWriter<'a> {
    file: &'a File,
    chunks: DirectChunks,
}

impl<'a> DirectWriter<'a> {
    /// A writer appending at `file`'s current offset, which must be 0 or aligned for its chunks
    /// to go direct (a fresh file is).
    pub(crate) fn new(file: &'a File) -> DirectWriter<'a> {
        DirectWriter {
            file,
            chunks: DirectChunks::new(),
        }
    }
}

impl Write for DirectWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.chunks.fill(buf);
        if self.chunks.is_full() {
            self.chunks.drain(self.file)?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.chunks.drain(self.file)?;
        (&*self.file).flush()
    }
}

/// Whether the page at `offset` of `file` is in the page cache: a read that must not wait
/// (`RWF_NOWAIT`) succeeds only then.
fn cached_at(file: &File, offset: u64) -> bool {
    let mut page = [0u8; 512];
    let iov = libc::iovec {
        iov_base: page.as_mut_ptr().cast(),
        iov_len: page.len(),
    };
    // SAFETY: one iovec over a live local buffer, on a descriptor owned by `file`.
    let n = unsafe {
        libc::preadv2(
            file.as_raw_fd(),
            &iov,
            1,
            offset as libc::off_t,
            libc::RWF_NOWAIT,
        )
    };
    n > 0
}

/// Opens `path` to be read once from start to end: directly when it is big and not in the page
/// cache (its first and middle pages are probed), else as a plain file.
pub(crate) fn open_sequential(path: &std::path::Path) -> io::Result<Box<dyn Read + Send>> {
    let file = File::open(path)?;
    let size = file.metadata()?.len();
    if size < DIRECT_READ_MIN || cached_at(&file, 0) || cached_at(&file, size / 2) {
        return Ok(Box::new(file));
    }
    if set_direct(&file, true).is_err() {
        return Ok(Box::new(file));
    }
    Ok(Box::new(DirectReader {
        file,
        buf: AlignedBuf::new(),
        pos: 0,
        len: 0,
        direct: true,
    }))
}

/// A [`Read`] of a file opened `O_DIRECT`: whole chunks into an aligned buffer, handed out from
/// there. A read the kernel refuses (an offset a short read left unaligned) turns the flag off
/// and goes on through the page cache.
struct DirectReader {
    file: File,
    buf: AlignedBuf,
    pos: usize,
    len: usize,
    direct: bool,
}

impl Read for DirectReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.pos == self.len {
            self.pos = 0;
            self.len = loop {
                match self.file.read(self.buf.bytes_mut()) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) if self.direct && e.raw_os_error() == Some(libc::EINVAL) => {
                        set_direct(&self.file, false)?;
                        self.direct = false;
                    }
                    Err(e) => return Err(e),
                }
            };
        }
        let n = out.len().min(self.len - self.pos);
        out[..n].copy_from_slice(&self.buf.bytes()[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_direct(file: &File) -> bool {
        // SAFETY: fcntl on a valid descriptor.
        let flags = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GETFL) };
        flags & libc::O_DIRECT != 0
    }

    /// Bytes that differ at every offset, so a misplaced chunk shows.
    fn pattern(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 + i / 4093) as u8).collect()
    }

    #[test]
    fn writes_and_reads_back_across_chunks_tails_and_flushes() {
        let dir = tempfile::tempdir().unwrap();
        let data = pattern(3 * CHUNK + 12345);
        let path = dir.path().join("f");
        let file = File::create(&path).unwrap();
        let mut w = DirectWriter::new(&file);
        // Odd piece sizes, and a flush in the middle that leaves the offset unaligned.
        let (a, b) = data.split_at(CHUNK + 777);
        for piece in a.chunks(100_003) {
            w.write_all(piece).unwrap();
        }
        w.flush().unwrap();
        for piece in b.chunks(CHUNK / 3) {
            w.write_all(piece).unwrap();
        }
        w.flush().unwrap();
        drop(file);
        assert_eq!(std::fs::read(&path).unwrap(), data);

        // Where the filesystem takes O_DIRECT, a full chunk at an aligned offset is written with
        // it (the descriptor's flags say so), and the tail turns it off again.
        let probe = dir.path().join("probe");
        File::create(&probe).unwrap();
        if set_direct(&File::open(&probe).unwrap(), true).is_ok() {
            let file = File::create(dir.path().join("g")).unwrap();
            let mut w = DirectWriter::new(&file);
            w.write_all(&data[..CHUNK]).unwrap();
            assert!(is_direct(&file), "a full chunk was not written directly");
            w.write_all(&data[..10]).unwrap();
            w.flush().unwrap();
            assert!(!is_direct(&file), "the tail went direct");
        }

        // Bigger than the direct-read floor, and not cached: drop it from the page cache first.
        let big = pattern(DIRECT_READ_MIN as usize + 4097);
        let path = dir.path().join("big");
        let file = File::create(&path).unwrap();
        let mut w = DirectWriter::new(&file);
        w.write_all(&big).unwrap();
        w.flush().unwrap();
        file.sync_all().unwrap();
        // SAFETY: advice on a valid descriptor.
        unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        let mut back = Vec::new();
        let mut r = open_sequential(&path).unwrap();
        let mut piece = vec![0u8; 8192];
        loop {
            let n = r.read(&mut piece).unwrap();
            if n == 0 {
                break;
            }
            back.extend_from_slice(&piece[..n]);
        }
        assert_eq!(back.len(), big.len());
        assert!(back == big, "read back differs");
    }
}
