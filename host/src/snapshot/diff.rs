//! Upperdir → OCI layer tar: walks an overlayfs upperdir and writes a reproducible layer,
//! turning overlay whiteouts (char 0/0) and opaque dirs into `.wh.` / `.wh..wh..opq` entries.
//! The upper dirs of fuse-overlayfs (the rootless fallback) hold its other forms too: `.wh.NAME`
//! files for whiteouts, a `.wh..wh..opq` file, a `.wh..opq` whiteout and the opaque xattr in
//! every directory it creates, and whiteouts of names nothing below had; given the filesystem
//! below ([`diff_upper_over`]) the layer gets only the whiteouts and opaque markers that
//! hide something, as the kernel's overlayfs writes them.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use tar::{EntryType, Header};

use super::sys;

/// Prefix of a whiteout entry's file name.
pub const WHITEOUT_PREFIX: &str = ".wh.";
/// Name of the entry that marks its directory opaque.
pub const OPAQUE_WHITEOUT: &str = ".wh..wh..opq";

/// Options for [`diff_upper`].
#[derive(Debug, Clone, Default)]
pub struct DiffOptions {
    /// SOURCE_DATE_EPOCH: mtimes newer than this are written as this value.
    pub source_date_epoch: Option<i64>,
    /// Also set every entry's atime and mtime on disk to the mtime its header says (whole
    /// seconds, clamped), as extracting the tar would: the tree then reads exactly as its own
    /// layer unpacked, so it can serve as the layer's snapshot directory.
    pub settle_times: bool,
}

/// fuse-overlayfs's opaque markers inside a directory: a `.wh..wh..opq` file and a
/// `.wh..opq` whiteout.
const FUSE_OPAQUE_NAMES: [&str; 2] = [OPAQUE_WHITEOUT, ".wh..opq"];

/// What [`diff_upper`] wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiffStats {
    /// Tar entries written (whiteouts and opaque markers included).
    pub entries: u64,
    /// Whiteouts (`.wh.name`) written.
    pub whiteouts: u64,
    /// Opaque markers written.
    pub opaque_dirs: u64,
    /// Bytes of regular-file content.
    pub content_bytes: u64,
}

fn is_overlay_xattr(name: &str) -> bool {
    name.starts_with("trusted.overlay.")
        || name.starts_with("user.overlay.")
        || name.starts_with("user.fuseoverlayfs.")
}

fn is_opaque(path: &Path) -> io::Result<bool> {
    for name in [
        "trusted.overlay.opaque",
        "user.overlay.opaque",
        "user.fuseoverlayfs.opaque",
    ] {
        if sys::get_xattr(path, name)?.as_deref() == Some(b"y") {
            return Ok(true);
        }
    }
    Ok(FUSE_OPAQUE_NAMES
        .iter()
        .any(|m| fs::symlink_metadata(path.join(m)).is_ok()))
}

/// A whiteout of fuse-overlayfs's file form: an empty regular file named `.wh.NAME`.
fn is_whiteout_file(meta: &fs::Metadata, rel: &Path) -> bool {
    meta.is_file()
        && meta.len() == 0
        && rel
            .file_name()
            .is_some_and(|n| n.as_bytes().starts_with(WHITEOUT_PREFIX.as_bytes()))
}

/// Walk the overlayfs upperdir `upper` and write it to `writer` as an (uncompressed) OCI layer tar.
///
/// Order: depth first, the entries of each directory sorted by the bytes of their names, a
/// directory before its contents, so the same tree always gives the same bytes. Entries carry
/// uid/gid/mode/mtime from the file (mtime clamped to `source_date_epoch`), no atime/ctime, empty
/// uname/gname; xattrs other than `trusted.overlay.*`/`user.overlay.*` go in PAX
/// `SCHILY.xattr.*` records. A file seen again through another hard link becomes a link entry.
pub fn diff_upper(upper: &Path, writer: impl Write, opts: &DiffOptions) -> Result<DiffStats> {
    diff_upper_over(upper, writer, opts, None)
}

/// [`diff_upper`] of an upper dir that was mounted over the merged filesystem `below`
/// (fuse-overlayfs): whiteouts and opaque markers of paths `below` does not have are left out.
pub fn diff_upper_over(
    upper: &Path,
    writer: impl Write,
    opts: &DiffOptions,
    below: Option<&Path>,
) -> Result<DiffStats> {
    let meta = fs::symlink_metadata(upper).with_context(|| format!("stat {}", upper.display()))?;
    anyhow::ensure!(meta.is_dir(), "{} is not a directory", upper.display());
    let mut w = Walker {
        builder: tar::Builder::new(writer),
        opts: opts.clone(),
        below: below.map(Path::to_path_buf),
        links: HashMap::new(),
        stats: DiffStats::default(),
    };
    w.walk_dir(upper, Path::new(""))?;
    w.builder
        .into_inner()
        .context("finishing layer tar")?
        .flush()?;
    Ok(w.stats)
}

/// Several trees in one tar, each under its own top directory (`-o type=tar` of several
/// platforms: `linux_amd64/…`, `linux_arm64/…`, as buildx); entries as [`diff_upper`] writes
/// them.
pub fn diff_trees(
    trees: &[(&Path, &str)],
    writer: impl Write,
    opts: &DiffOptions,
) -> Result<DiffStats> {
    let mut w = Walker {
        builder: tar::Builder::new(writer),
        opts: opts.clone(),
        below: None,
        links: HashMap::new(),
        stats: DiffStats::default(),
    };
    for (root, top) in trees {
        let meta =
            fs::symlink_metadata(root).with_context(|| format!("stat {}", root.display()))?;
        anyhow::ensure!(meta.is_dir(), "{} is not a directory", root.display());
        // Hard links stay within their own tree.
        w.links.clear();
        w.entry(root, Path::new(top))
            .with_context(|| format!("adding {} to the tar", root.display()))?;
    }
    w.builder
        .into_inner()
        .context("finishing the tar")?
        .flush()?;
    Ok(w.stats)
}

struct Walker<W: Write> {
    builder: tar::Builder<W>,
    opts: DiffOptions,
    below: Option<PathBuf>,
    links: HashMap<(u64, u64), PathBuf>,
    stats: DiffStats,
}

/// The path a whiteout at `rel` removes: itself (a 0/0 device), or the name after `.wh.`.
fn whiteout_target(rel: &Path, meta: &fs::Metadata) -> PathBuf {
    if meta.is_file() {
        let name = rel.file_name().expect("non-root entry").as_bytes();
        rel.with_file_name(std::ffi::OsStr::from_bytes(&name[WHITEOUT_PREFIX.len()..]))
    } else {
        rel.to_path_buf()
    }
}

impl<W: Write> Walker<W> {
    /// Whether a whiteout or opaque marker at `target` hides anything: always, unless the
    /// filesystem below is known and has nothing there.
    fn hides_something(&self, target: PathBuf) -> bool {
        match &self.below {
            Some(below) => fs::symlink_metadata(below.join(target)).is_ok(),
            None => true,
        }
    }

    fn clamp(&self, mtime: i64) -> u64 {
        let t = match self.opts.source_date_epoch {
            Some(e) if mtime > e => e,
            _ => mtime,
        };
        t.max(0) as u64
    }

    fn walk_dir(&mut self, dir: &Path, rel: &Path) -> Result<()> {
        let mut names: Vec<OsString> = fs::read_dir(dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<io::Result<_>>()?;
        // fuse-overlayfs's opaque marker files: written as the directory's marker instead.
        names.retain(|n| {
            !FUSE_OPAQUE_NAMES
                .iter()
                .any(|m| n.as_bytes() == m.as_bytes())
        });
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        for name in names {
            let full = dir.join(&name);
            let rel = rel.join(&name);
            self.entry(&full, &rel)
                .with_context(|| format!("adding {} to layer", full.display()))?;
        }
        Ok(())
    }

    fn base_header(&self, meta: &fs::Metadata, ty: EntryType) -> Header {
        let mut h = Header::new_gnu();
        h.set_entry_type(ty);
        h.set_mode(meta.mode() & 0o7777);
        h.set_uid(meta.uid() as u64);
        h.set_gid(meta.gid() as u64);
        h.set_mtime(self.clamp(meta.mtime()));
        h.set_size(0);
        h
    }

    fn pax_xattrs(&mut self, path: &Path) -> Result<()> {
        let xattrs: Vec<_> = sys::list_xattrs(path)?
            .into_iter()
            .filter(|(n, _)| !is_overlay_xattr(n))
            .collect();
        if xattrs.is_empty() {
            return Ok(());
        }
        let mut data = Vec::new();
        for (name, value) in &xattrs {
            let key = format!("SCHILY.xattr.{name}");
            pax_record(&mut data, key.as_bytes(), value);
        }
        let mut h = Header::new_ustar();
        h.set_entry_type(EntryType::XHeader);
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        let fname = path.file_name().map(|n| n.as_bytes()).unwrap_or(b"x");
        let fname = &fname[..fname.len().min(80)];
        let mut name = b"PaxHeaders/".to_vec();
        name.extend_from_slice(fname);
        h.as_old_mut().name[..name.len()].copy_from_slice(&name);
        h.set_cksum();
        self.builder.append(&h, &data[..])?;
        Ok(())
    }

    fn entry(&mut self, full: &Path, rel: &Path) -> Result<()> {
        let meta = fs::symlink_metadata(full)?;
        self.entry_of(full, rel, &meta)?;
        if self.opts.settle_times {
            // After the entry is read (a read or readdir may move atime), as extraction sets
            // times after writing.
            let secs = self.clamp(meta.mtime()) as i64;
            if (meta.mtime(), meta.mtime_nsec()) != (secs, 0)
                || (meta.atime(), meta.atime_nsec()) != (secs, 0)
            {
                crate::sys::set_times(None, &crate::sys::cstr(full)?, secs, 0)
                    .with_context(|| format!("setting the times of {}", full.display()))?;
            }
        }
        Ok(())
    }

    fn entry_of(&mut self, full: &Path, rel: &Path, meta: &fs::Metadata) -> Result<()> {
        let meta = meta.clone();
        let ft = meta.file_type();
        self.stats.entries += 1;

        let whiteout = (ft.is_char_device() && meta.rdev() == 0) || is_whiteout_file(&meta, rel);
        if whiteout && !self.hides_something(whiteout_target(rel, &meta)) {
            self.stats.entries -= 1;
            return Ok(());
        }
        if ft.is_char_device() && meta.rdev() == 0 {
            let name = rel.file_name().expect("non-root entry");
            let mut wh = OsString::from(WHITEOUT_PREFIX);
            wh.push(name);
            let mut h = self.base_header(&meta, EntryType::Regular);
            h.set_mode(0);
            self.builder
                .append_data(&mut h, rel.with_file_name(wh), io::empty())?;
            self.stats.whiteouts += 1;
            return Ok(());
        }
        if is_whiteout_file(&meta, rel) {
            let mut h = self.base_header(&meta, EntryType::Regular);
            h.set_mode(0);
            self.builder.append_data(&mut h, rel, io::empty())?;
            self.stats.whiteouts += 1;
            return Ok(());
        }

        if !ft.is_dir() && meta.nlink() > 1 {
            let key = (meta.dev(), meta.ino());
            if let Some(target) = self.links.get(&key).cloned() {
                let mut h = self.base_header(&meta, EntryType::Link);
                self.builder.append_link(&mut h, rel, target)?;
                return Ok(());
            }
            self.links.insert(key, rel.to_path_buf());
        }

        self.pax_xattrs(full)?;
        if ft.is_dir() {
            let mut h = self.base_header(&meta, EntryType::Directory);
            self.builder.append_data(&mut h, rel, io::empty())?;
            if is_opaque(full)? && self.hides_something(rel.to_path_buf()) {
                let mut h = self.base_header(&meta, EntryType::Regular);
                h.set_mode(0);
                self.builder
                    .append_data(&mut h, rel.join(OPAQUE_WHITEOUT), io::empty())?;
                self.stats.entries += 1;
                self.stats.opaque_dirs += 1;
            }
            self.walk_dir(full, rel)?;
        } else if ft.is_file() {
            let mut h = self.base_header(&meta, EntryType::Regular);
            h.set_size(meta.len());
            let f = fs::File::open(full)?;
            // Guard against the file changing size under us: the header promised meta.len().
            let mut data = io::Read::take(f, meta.len());
            self.builder
                .append_data(&mut h, rel, ExactReader::new(&mut data, meta.len()))?;
            self.stats.content_bytes += meta.len();
        } else if ft.is_symlink() {
            let target = fs::read_link(full)?;
            let mut h = self.base_header(&meta, EntryType::Symlink);
            self.builder.append_link(&mut h, rel, target)?;
        } else if ft.is_char_device() || ft.is_block_device() {
            let ty = if ft.is_char_device() {
                EntryType::Char
            } else {
                EntryType::Block
            };
            let mut h = self.base_header(&meta, ty);
            let rdev = meta.rdev();
            h.set_device_major(libc::major(rdev))?;
            h.set_device_minor(libc::minor(rdev))?;
            self.builder.append_data(&mut h, rel, io::empty())?;
        } else if ft.is_fifo() {
            let mut h = self.base_header(&meta, EntryType::Fifo);
            self.builder.append_data(&mut h, rel, io::empty())?;
        } else {
            // Sockets have no tar representation; Docker skips them too.
            self.stats.entries -= 1;
        }
        Ok(())
    }
}

/// Reads exactly `len` bytes: pads with zeros if the source came up short.
struct ExactReader<R> {
    inner: R,
    left: u64,
}

impl<R> ExactReader<R> {
    fn new(inner: R, left: u64) -> Self {
        ExactReader { inner, left }
    }
}

impl<R: io::Read> io::Read for ExactReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let max = buf.len().min(self.left as usize);
        let mut n = self.inner.read(&mut buf[..max])?;
        if n == 0 {
            buf[..max].fill(0);
            n = max;
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// Append one PAX record `"<len> <key>=<value>\n"` where len counts the whole record.
fn pax_record(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    let rest = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = rest + 1;
    while len.to_string().len() + rest != len {
        len = len.to_string().len() + rest;
    }
    out.extend_from_slice(len.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::pax_record;

    #[test]
    fn pax_record_lengths() {
        for n in [0usize, 1, 5, 6, 7, 90, 95, 96, 97, 990, 995, 1000] {
            let mut v = Vec::new();
            pax_record(&mut v, b"k", &vec![b'a'; n]);
            let sp = v.iter().position(|b| *b == b' ').unwrap();
            let len: usize = std::str::from_utf8(&v[..sp]).unwrap().parse().unwrap();
            assert_eq!(len, v.len(), "value len {n}");
        }
    }
}
