//! Parallel gzip for layer blobs: [`ParGzEncoder`] writes one gzip member whose deflate stream
//! is compressed in fixed-size chunks on several threads, the way pigz does (without carrying
//! the window across chunks). Every chunk but the last ends with a sync flush, which leaves the
//! stream byte-aligned after a non-final block, so the chunks concatenate into one valid deflate
//! stream; the chunks' CRC-32s are combined in order for the trailer.
//!
//! Chunks that do not compress (a fast probe of their start saves under 2%) are stored rather
//! than deflated: random or already-compressed data costs a copy instead of a full deflate.
//! The output depends only on the input and the level, never on the number of threads, so a
//! layer's digest is the same on every machine. It is a single member, so readers that stop
//! after the first gzip member (many do) read all of it.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;

use flate2::{Compress, Crc, FlushCompress, Status};

/// Uncompressed bytes per chunk. Larger chunks lose less ratio at the boundaries; smaller ones
/// spread a layer over more threads.
pub const CHUNK: usize = 1 << 20;

/// At most this many threads compress one blob.
const MAX_THREADS: usize = 8;

type Reply = io::Result<(Vec<u8>, Crc)>;

struct Job {
    data: Vec<u8>,
    reply: mpsc::SyncSender<Reply>,
}

/// Threads that deflate chunks; started when the first full chunk is ready.
struct Pool {
    jobs: Option<mpsc::Sender<Job>>,
    workers: Vec<thread::JoinHandle<()>>,
}

impl Pool {
    fn start(threads: usize, level: u32) -> io::Result<Pool> {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let mut workers = Vec::with_capacity(threads);
        for i in 0..threads {
            let rx = Arc::clone(&rx);
            let handle = thread::Builder::new()
                .name(format!("wbuild-gzip-{i}"))
                .spawn(move || {
                    loop {
                        // The guard is a temporary: released as soon as a job is taken.
                        let job = match rx.lock() {
                            Ok(rx) => rx.recv(),
                            Err(_) => return,
                        };
                        let Ok(job) = job else { return };
                        let out = deflate_chunk(level, &job.data, false);
                        let _ = job.reply.send(out);
                    }
                })?;
            workers.push(handle);
        }
        Ok(Pool {
            jobs: Some(tx),
            workers,
        })
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // Closing the channel ends the workers once they finish their current chunk.
        self.jobs.take();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

/// Bytes at the start of a chunk that decide whether it is worth compressing.
const PROBE: usize = 64 << 10;

/// Whether a fast deflate of the chunk's first [`PROBE`] bytes saves less than 2%: then the
/// chunk is random-looking (already compressed files, encrypted or random data) and deflating
/// it at the asked level would cost tens of CPU-seconds per GiB for nothing.
pub(super) fn incompressible(data: &[u8]) -> bool {
    if data.len() < PROBE {
        return false;
    }
    let sample = &data[..PROBE];
    let mut c = Compress::new(flate2::Compression::new(2), false);
    let mut out = Vec::with_capacity(PROBE + PROBE / 8);
    match c.compress_vec(sample, &mut out, FlushCompress::Finish) {
        Ok(Status::StreamEnd) => out.len() * 50 >= sample.len() * 49,
        _ => false,
    }
}

/// Raw deflate of one chunk: sync-flushed, or finished when it is the last. A random-looking
/// chunk goes into stored blocks (level 0), which cost about a copy. The choice depends only
/// on the chunk's bytes, so the output stays reproducible.
fn deflate_chunk(level: u32, data: &[u8], last: bool) -> Reply {
    let level = if level > 0 && incompressible(data) {
        0
    } else {
        level
    };
    let mut c = Compress::new(flate2::Compression::new(level), false);
    let mut out = Vec::with_capacity(data.len() + data.len() / 8 + 64);
    let flush = if last {
        FlushCompress::Finish
    } else {
        FlushCompress::Sync
    };
    loop {
        let consumed = c.total_in() as usize;
        let status = c
            .compress_vec(&data[consumed..], &mut out, flush)
            .map_err(io::Error::other)?;
        if status == Status::StreamEnd {
            break;
        }
        // A sync flush is complete once all input is in and the output did not fill up.
        if !last && c.total_in() as usize == data.len() && out.len() < out.capacity() {
            break;
        }
        out.reserve(out.capacity().max(4096));
    }
    let mut crc = Crc::new();
    crc.update(data);
    Ok((out, crc))
}

/// A gzip writer that compresses on several threads; see the module doc for the format.
pub struct ParGzEncoder<W: Write> {
    inner: W,
    level: u32,
    threads: usize,
    buf: Vec<u8>,
    pool: Option<Pool>,
    pending: VecDeque<mpsc::Receiver<Reply>>,
    crc: Crc,
    total: u64,
}

impl<W: Write> ParGzEncoder<W> {
    /// Compress to `inner` at `level` (0–9) with up to as many threads as there are cores.
    pub fn new(inner: W, level: u32) -> io::Result<Self> {
        let cores = thread::available_parallelism().map_or(1, |n| n.get());
        Self::with_threads(inner, level, cores.min(MAX_THREADS))
    }

    /// Compress with exactly `threads` threads (1: all on the caller's thread).
    pub fn with_threads(mut inner: W, level: u32, threads: usize) -> io::Result<Self> {
        let level = level.min(9);
        // The header GzEncoder writes: no name, mtime 0, OS "unknown" — reproducible.
        let xfl = match level {
            9 => 2,
            0 | 1 => 4,
            _ => 0,
        };
        inner.write_all(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, xfl, 255])?;
        Ok(ParGzEncoder {
            inner,
            level,
            threads: threads.max(1),
            buf: Vec::with_capacity(CHUNK),
            pool: None,
            pending: VecDeque::new(),
            crc: Crc::new(),
            total: 0,
        })
    }

    /// Write out finished chunks, in order, until at most `keep` are in flight.
    fn drain(&mut self, keep: usize) -> io::Result<()> {
        while self.pending.len() > keep {
            let rx = self.pending.pop_front().expect("non-empty");
            let (out, crc) = rx
                .recv()
                .map_err(|_| io::Error::other("a gzip thread stopped"))??;
            self.emit(&out, &crc)?;
        }
        Ok(())
    }

    fn emit(&mut self, out: &[u8], crc: &Crc) -> io::Result<()> {
        self.inner.write_all(out)?;
        self.crc.combine(crc);
        Ok(())
    }

    /// Hand the full buffer to the threads (or compress it here with one thread).
    fn submit(&mut self) -> io::Result<()> {
        let data = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        if self.threads == 1 {
            let (out, crc) = deflate_chunk(self.level, &data, false)?;
            return self.emit(&out, &crc);
        }
        if self.pool.is_none() {
            self.pool = Some(Pool::start(self.threads, self.level)?);
        }
        let (reply, rx) = mpsc::sync_channel(1);
        let jobs = self.pool.as_ref().and_then(|p| p.jobs.as_ref());
        jobs.expect("pool has a channel")
            .send(Job { data, reply })
            .map_err(|_| io::Error::other("the gzip threads stopped"))?;
        self.pending.push_back(rx);
        // Two chunks per thread in flight keeps every thread busy and memory bounded.
        self.drain(2 * self.threads)
    }

    /// Compress the rest, write the trailer and return the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.drain(0)?;
        let rest = std::mem::take(&mut self.buf);
        let (out, crc) = deflate_chunk(self.level, &rest, true)?;
        self.emit(&out, &crc)?;
        let mut trailer = [0u8; 8];
        trailer[..4].copy_from_slice(&self.crc.sum().to_le_bytes());
        trailer[4..].copy_from_slice(&(self.total as u32).to_le_bytes());
        self.inner.write_all(&trailer)?;
        self.pool.take();
        Ok(self.inner)
    }
}

impl<W: Write> Write for ParGzEncoder<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        self.total += n as u64;
        if self.buf.len() == CHUNK {
            self.submit()?;
        }
        Ok(n)
    }

    /// Chunks stay buffered until they are full or the stream finishes: flushing earlier would
    /// make the output depend on how the caller wrote.
    fn flush(&mut self) -> io::Result<()> {
        self.drain(0)?;
        self.inner.flush()
    }
}
