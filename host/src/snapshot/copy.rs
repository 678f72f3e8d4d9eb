//! Copying snapshotter helper: [`copy_tree`] duplicates a directory tree with its metadata
//! (owner, mode, mtime, xattrs, hard links, symlinks, devices, fifos), for hosts without overlayfs.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::sys;

/// Copy the tree at `src` to `dst` (created if missing; an existing `dst` directory is merged
/// into), preserving ownership, mode, mtime (ns), xattrs and hard links within the tree.
/// Symlinks are copied as links, never followed.
pub fn copy_tree(src: &Path, dst: &Path) -> Result<()> {
    let meta = fs::symlink_metadata(src).with_context(|| format!("stat {}", src.display()))?;
    anyhow::ensure!(meta.is_dir(), "{} is not a directory", src.display());
    if !dst.exists() {
        fs::create_dir(dst).with_context(|| format!("creating {}", dst.display()))?;
    }
    let mut links = HashMap::new();
    copy_dir(src, dst, &mut links)?;
    copy_meta(src, dst, &meta)?;
    Ok(())
}

fn copy_dir(src: &Path, dst: &Path, links: &mut HashMap<(u64, u64), PathBuf>) -> Result<()> {
    let mut entries: Vec<_> = fs::read_dir(src)?.collect::<io::Result<_>>()?;
    entries.sort_by(|a, b| a.file_name().as_bytes().cmp(b.file_name().as_bytes()));
    for e in entries {
        let s = e.path();
        let d = dst.join(e.file_name());
        copy_one(&s, &d, links).with_context(|| format!("copying {}", s.display()))?;
    }
    Ok(())
}

fn copy_one(s: &Path, d: &Path, links: &mut HashMap<(u64, u64), PathBuf>) -> Result<()> {
    let meta = fs::symlink_metadata(s)?;
    let ft = meta.file_type();
    if let Ok(old) = fs::symlink_metadata(d)
        && !(old.is_dir() && ft.is_dir())
    {
        if old.is_dir() {
            fs::remove_dir_all(d)?;
        } else {
            fs::remove_file(d)?;
        }
    }
    if !ft.is_dir() && meta.nlink() > 1 {
        let key = (meta.dev(), meta.ino());
        if let Some(first) = links.get(&key) {
            fs::hard_link(first, d)?;
            return Ok(());
        }
        links.insert(key, d.to_path_buf());
    }
    if ft.is_dir() {
        if !d.is_dir() {
            fs::create_dir(d)?;
        }
        copy_dir(s, d, links)?;
    } else if ft.is_file() {
        let mut from = fs::File::open(s)?;
        let mut to = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(d)?;
        io::copy(&mut from, &mut to)?;
    } else if ft.is_symlink() {
        std::os::unix::fs::symlink(fs::read_link(s)?, d)?;
    } else if ft.is_char_device() || ft.is_block_device() || ft.is_fifo() || ft.is_socket() {
        let parent = fs::File::open(d.parent().expect("child path"))?;
        let name = sys::cstr(d.file_name().expect("child path"))?;
        let rdev = meta.rdev();
        let kind = meta.mode() & libc::S_IFMT;
        sys::mknod_at(
            parent.as_fd(),
            &name,
            kind | 0o600,
            libc::major(rdev),
            libc::minor(rdev),
        )?;
    }
    copy_meta(s, d, &meta)?;
    Ok(())
}

fn copy_meta(s: &Path, d: &Path, meta: &fs::Metadata) -> Result<()> {
    // A relative `d` of one component ("out") has the empty path as its parent: that is ".".
    let parent = match d.parent() {
        Some(p) if p.as_os_str().is_empty() => fs::File::open(".")?,
        Some(p) => fs::File::open(p)?,
        None => fs::File::open(d)?,
    };
    let name = sys::cstr(d.file_name().unwrap_or(d.as_os_str()))?;
    let is_symlink = meta.file_type().is_symlink();
    sys::chown_at(parent.as_fd(), &name, meta.uid(), meta.gid())?;
    if !is_symlink {
        sys::chmod_at(parent.as_fd(), &name, meta.mode() & 0o7777)?;
    }
    for (k, v) in sys::list_xattrs(s)? {
        match sys::set_xattr(d, &k, &v) {
            Err(e) if is_symlink && e.raw_os_error() == Some(libc::EPERM) => {}
            r => r.with_context(|| format!("setting xattr {k} on {}", d.display()))?,
        }
    }
    sys::set_times_at(parent.as_fd(), &name, meta.mtime(), meta.mtime_nsec())?;
    Ok(())
}
