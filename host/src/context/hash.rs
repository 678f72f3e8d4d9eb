//! Content hashing of COPY sources for cache keys, and [`HashMemo`], the stat-keyed memo of
//! file content digests that lets an unchanged context be hashed without reading it again.
//!
//! An entry is keyed by the file's path and reused only when its whole [`FileStat`] (dev, ino,
//! size, mtime ns, ctime ns) matches; what may be remembered follows
//! [`FileStat::rememberable`] (never a file changed within 50 ms of its read).

use std::collections::HashMap;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result};
use sha2::{Digest as _, Sha256};

use super::resolve::{self, os_bytes};
use super::{FileKind, Match};

use crate::sys::FileStat;

/// First line of a memo file; a file with another first line is an empty memo.
const MEMO_HEADER: &str = "wbuild-context-memo 2";

#[derive(Debug, Clone, PartialEq, Eq)]
struct MemoEntry {
    stat: FileStat,
    sha256: String,
}

/// Counters of one memo's use since it was created or loaded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoStats {
    /// Files whose digest came from the memo.
    pub hits: u64,
    /// Files that were read and hashed.
    pub misses: u64,
    /// Bytes read and hashed.
    pub bytes_hashed: u64,
}

/// Stat-keyed memo of file content sha256 digests, optionally persisted to a file.
#[derive(Debug, Default)]
pub struct HashMemo {
    file: Option<PathBuf>,
    entries: HashMap<String, MemoEntry>,
    dirty: bool,
    stats: MemoStats,
}

impl HashMemo {
    /// A memo that lives only in memory.
    pub fn in_memory() -> HashMemo {
        HashMemo::default()
    }

    /// Loads the memo persisted at `file`. A missing or malformed file, or one of another
    /// version, gives an empty memo (it is only a cache); I/O errors other than "not found"
    /// are errors.
    ///
    /// The file is one line per entry, `SHA256 DEV INO SIZE MTIME_NS CTIME_NS PATH` (the path
    /// last, so it may hold spaces; paths with a newline are never remembered), after a header
    /// line: it is read on every build, and this parses several times faster than JSON.
    pub fn load(file: &Path) -> Result<HashMemo> {
        let entries = match fs::read(file) {
            Ok(bytes) => parse_memo(&bytes).unwrap_or_default(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => HashMap::new(),
            Err(e) => return Err(e).with_context(|| format!("reading {}", file.display())),
        };
        Ok(HashMemo {
            file: Some(file.to_path_buf()),
            entries,
            dirty: false,
            stats: MemoStats::default(),
        })
    }

    /// Writes the memo back to its file (temp file + fsync + rename) if it changed.
    /// A no-op for in-memory memos.
    pub fn save(&mut self) -> Result<()> {
        let Some(file) = &self.file else {
            return Ok(());
        };
        if !self.dirty {
            return Ok(());
        }
        let mut data = Vec::with_capacity(self.entries.len() * 160);
        data.extend_from_slice(MEMO_HEADER.as_bytes());
        data.push(b'\n');
        for (path, e) in &self.entries {
            if path.contains('\n') {
                continue;
            }
            data.extend_from_slice(
                format!(
                    "{} {} {} {} {} {} {path}\n",
                    e.sha256, e.stat.dev, e.stat.ino, e.stat.size, e.stat.mtime_ns, e.stat.ctime_ns
                )
                .as_bytes(),
            );
        }
        let dir = file.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(dir)?;
        let mut tmp = tempfile_in(dir)?;
        tmp.1.write_all(&data)?;
        tmp.1.sync_all()?;
        fs::rename(&tmp.0, file).with_context(|| format!("writing {}", file.display()))?;
        self.dirty = false;
        Ok(())
    }

    /// Usage counters.
    #[cfg(test)]
    pub fn stats(&self) -> MemoStats {
        self.stats
    }

    /// Number of memoized files.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is memoized.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// sha256 (hex) of each regular file `rels` names under `root`, in order. Files the memo
    /// does not know are read and hashed on several threads (a cold context of thousands of
    /// files is otherwise one core's work).
    ///
    /// Each file comes with what the context walk's `lstat` saw of it (a [`super::Entry`]): a
    /// memo entry that matches it is used without opening the file.
    pub(crate) fn files_sha256(
        &mut self,
        root: &Path,
        rels: &[(&str, FileStat)],
    ) -> Result<Vec<String>> {
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(HASH_THREADS);
        let this = &*self;
        let results: Vec<Result<Hashed>> =
            super::parallel::map(rels, threads, |(rel, seen)| this.hash_one(root, rel, seen));
        let mut out = Vec::with_capacity(rels.len());
        for r in results {
            match r? {
                Hashed::Memo(sha) => {
                    self.stats.hits += 1;
                    out.push(sha);
                }
                Hashed::Read {
                    key,
                    keep,
                    sha,
                    bytes,
                } => {
                    self.stats.misses += 1;
                    self.stats.bytes_hashed += bytes;
                    match keep {
                        Some(entry) => {
                            self.entries.insert(key, entry);
                            self.dirty = true;
                        }
                        None => {
                            if self.entries.remove(&key).is_some() {
                                self.dirty = true;
                            }
                        }
                    }
                    out.push(sha);
                }
            }
        }
        Ok(out)
    }

    /// One file's digest: from the memo when an entry matches the stat the walk saw (`seen`)
    /// or the open file's, else read and hashed (with the entry to remember, when the file is
    /// not racy).
    fn hash_one(&self, root: &Path, rel: &str, seen: &FileStat) -> Result<Hashed> {
        let key = root.join(rel).to_string_lossy().into_owned();
        let remembered = self.entries.get(&key);
        if let Some(e) = remembered
            && e.stat == *seen
        {
            return Ok(Hashed::Memo(e.sha256.clone()));
        }
        let started = SystemTime::now();
        let (mut f, md) = resolve::open_regular(root, rel)?;
        let stat = FileStat::of(&md);
        if let Some(e) = remembered
            && e.stat == stat
        {
            return Ok(Hashed::Memo(e.sha256.clone()));
        }
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 256 * 1024];
        let mut bytes = 0u64;
        loop {
            let n = match f.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e).with_context(|| format!("reading {}", key)),
            };
            h.update(&buf[..n]);
            bytes += n as u64;
        }
        let sha = hex::encode(h.finalize());
        let after = FileStat::of(&f.metadata()?);
        let keep = stat.rememberable(&after, started).then(|| MemoEntry {
            stat,
            sha256: sha.clone(),
        });
        Ok(Hashed::Read {
            key,
            keep,
            sha,
            bytes,
        })
    }
}

/// At most this many threads hash one COPY's files.
const HASH_THREADS: usize = 8;

/// One file's digest, and what the memo learns from it.
enum Hashed {
    /// From the memo.
    Memo(String),
    /// Read and hashed; `keep` is the entry to remember (None: forget any old one).
    Read {
        key: String,
        keep: Option<MemoEntry>,
        sha: String,
        bytes: u64,
    },
}

/// The entries of a memo file, or None when it is not one (see [`HashMemo::load`]).
fn parse_memo(bytes: &[u8]) -> Option<HashMap<String, MemoEntry>> {
    let text = std::str::from_utf8(bytes).ok()?;
    let mut lines = text.lines();
    if lines.next()? != MEMO_HEADER {
        return None;
    }
    let mut entries = HashMap::new();
    for line in lines {
        let mut f = line.splitn(7, ' ');
        let sha256 = f.next()?;
        if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let e = MemoEntry {
            sha256: sha256.to_string(),
            stat: FileStat {
                dev: f.next()?.parse().ok()?,
                ino: f.next()?.parse().ok()?,
                size: f.next()?.parse().ok()?,
                mtime_ns: f.next()?.parse().ok()?,
                ctime_ns: f.next()?.parse().ok()?,
            },
        };
        entries.insert(f.next()?.to_string(), e);
    }
    Some(entries)
}

fn tempfile_in(dir: &Path) -> Result<(PathBuf, fs::File)> {
    for i in 0..100u32 {
        let name = dir.join(format!(
            ".hashmemo.{}.{}.{i}.tmp",
            std::process::id(),
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos())
        ));
        match fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&name)
        {
            Ok(f) => return Ok((name, f)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e).with_context(|| format!("creating {}", name.display())),
        }
    }
    anyhow::bail!("could not create a temp file in {}", dir.display())
}

fn field(h: &mut Sha256, bytes: &[u8]) {
    h.update((bytes.len() as u64).to_le_bytes());
    h.update(bytes);
}

/// Digest (`sha256:<hex>`) over the matches, in order, and every entry under them in walk
/// order: relative path, file type and mode bits, uid/gid, symlink target, device number and
/// file content. Mtimes are not part of it.
pub(crate) fn digest(root: &Path, matches: &[Match], memo: &mut HashMemo) -> Result<String> {
    let files: Vec<(&str, FileStat)> = matches
        .iter()
        .flat_map(|m| &m.entries)
        .filter(|e| e.kind == FileKind::File)
        .map(|e| (e.physical.as_str(), e.stat))
        .collect();
    let mut shas = memo.files_sha256(root, &files)?.into_iter();
    let mut h = Sha256::new();
    field(&mut h, b"wbuild-context-v1");
    for m in matches {
        field(&mut h, b"match");
        field(&mut h, m.path.as_bytes());
        h.update((m.entries.len() as u64).to_le_bytes());
        for e in &m.entries {
            field(&mut h, e.rel.as_bytes());
            h.update([e.kind as u8]);
            h.update(e.mode.to_le_bytes());
            h.update(e.uid.to_le_bytes());
            h.update(e.gid.to_le_bytes());
            match e.kind {
                FileKind::File => {
                    let sha = shas.next().expect("a digest for every file");
                    field(&mut h, sha.as_bytes());
                }
                FileKind::Symlink => {
                    let t = e.link_target.as_deref().unwrap_or(Path::new(""));
                    field(&mut h, os_bytes(t));
                }
                FileKind::Other => h.update(e.rdev.to_le_bytes()),
                FileKind::Dir => {}
            }
        }
    }
    Ok(format!("sha256:{}", hex::encode(h.finalize())))
}
