//! Layer tar → directory: safe extraction of an (uncompressed) OCI layer onto a root
//! directory, with whiteouts, opaque dirs, device nodes, ownership, modes, mtimes and xattrs.
//!
//! Safety: every path is cleaned lexically (`..` clamped at the root, leading `/` dropped) and
//! its parent directory is opened with `openat2(RESOLVE_IN_ROOT)`, so symlinks already in the
//! tree — absolute or relative — resolve as if `dest_root` were `/`. The final component is
//! only ever touched with no-follow `*at` calls.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, Result, bail};
use tar::EntryType;

use super::diff::{OPAQUE_WHITEOUT, WHITEOUT_PREFIX};

use super::sys;

/// The xattr by which overlayfs marks a directory that hides the lower layers' contents:
/// `trusted.overlay.opaque` as root, `user.overlay.opaque` in a user namespace (where overlayfs
/// is mounted with `userxattr` and fuse-overlayfs reads it too).
fn overlay_opaque() -> &'static str {
    if crate::userns::rootless() {
        "user.overlay.opaque"
    } else {
        "trusted.overlay.opaque"
    }
}

/// Clean a tar entry path into components relative to the root (`..` clamped, `/`, `.` dropped).
pub(crate) fn clean_path(p: &Path) -> Vec<OsString> {
    let mut out: Vec<OsString> = Vec::new();
    for c in p.components() {
        match c {
            Component::Normal(s) => out.push(s.to_os_string()),
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
        }
    }
    out
}

fn join(comps: &[OsString]) -> PathBuf {
    comps.iter().collect()
}

fn errno(e: &io::Error) -> Option<i32> {
    e.raw_os_error()
}

/// Open (creating with mode 0755 where missing) the directory `comps` inside the root.
fn ensure_dir(root: BorrowedFd, comps: &[OsString]) -> io::Result<OwnedFd> {
    match sys::open_dir_in_root(root, &join(comps)) {
        Err(e) if errno(&e) == Some(libc::ENOENT) && !comps.is_empty() => {
            let (last, parent) = comps.split_last().expect("non-empty");
            let pfd = ensure_dir(root, parent)?;
            match sys::mkdir_at(pfd.as_fd(), &sys::cstr(last)?, 0o755) {
                Err(e) if errno(&e) != Some(libc::EEXIST) => return Err(e),
                _ => {}
            }
            sys::open_dir_in_root(root, &join(comps))
        }
        r => r,
    }
}

/// Remove `name` in `dir` (recursively for a directory); absent is fine.
fn remove_all_at(dir: BorrowedFd, name: &OsStr) -> io::Result<()> {
    let c = sys::cstr(name)?;
    match sys::lstat_at(dir, &c)? {
        None => Ok(()),
        Some(st) if st.st_mode & libc::S_IFMT == libc::S_IFDIR => {
            // std's remove_dir_all opens the final component with O_NOFOLLOW and walks by fd.
            fs::remove_dir_all(sys::fd_path(dir, name))
        }
        Some(_) => {
            // SAFETY: valid fd and C string.
            let r = unsafe { libc::unlinkat(std::os::fd::AsRawFd::as_raw_fd(&dir), c.as_ptr(), 0) };
            if r < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(())
            }
        }
    }
}

/// Metadata of one entry, with PAX overrides applied.
struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: i64,
    mtime_nsec: i64,
    xattrs: Vec<(String, Vec<u8>)>,
}

fn read_meta<R: Read>(entry: &mut tar::Entry<R>) -> Result<Meta> {
    let h = entry.header();
    let mut m = Meta {
        mode: h.mode()? & 0o7777,
        uid: h.uid()? as u32,
        gid: h.gid()? as u32,
        mtime: h.mtime()? as i64,
        mtime_nsec: 0,
        xattrs: Vec::new(),
    };
    if let Some(exts) = entry.pax_extensions()? {
        for ext in exts {
            let ext = ext?;
            let key = ext
                .key()
                .map_err(|_| anyhow::anyhow!("non-UTF-8 PAX key"))?;
            let val = ext.value_bytes();
            let num = || std::str::from_utf8(val).ok().map(str::trim);
            if let Some(name) = key.strip_prefix("SCHILY.xattr.") {
                m.xattrs.push((name.to_string(), val.to_vec()));
            } else if key == "uid" {
                if let Some(v) = num().and_then(|s| s.parse().ok()) {
                    m.uid = v;
                }
            } else if key == "gid" {
                if let Some(v) = num().and_then(|s| s.parse().ok()) {
                    m.gid = v;
                }
            } else if key == "mtime"
                && let Some(s) = num()
            {
                let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
                if let Ok(secs) = secs.parse() {
                    m.mtime = secs;
                    let mut digits: String = frac.chars().take(9).collect();
                    while digits.len() < 9 {
                        digits.push('0');
                    }
                    m.mtime_nsec = digits.parse().unwrap_or(0);
                }
            }
        }
    }
    Ok(m)
}

/// How a layer's whiteouts are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Whiteouts {
    /// Applied: `.wh.NAME` deletes NAME, an opaque marker empties its directory.
    Apply,
    /// Kept in overlayfs form for a layer directory of its own: `.wh.NAME` becomes a 0/0
    /// character device NAME, an opaque marker the `trusted.overlay.opaque=y` xattr.
    Overlay,
}

/// Extract the uncompressed layer tar `reader` onto `dest_root` (which must exist).
///
/// `.wh.NAME` deletes NAME; `.wh..wh..opq` removes everything in its directory that did not
/// come from this same layer. Hard links may only name paths inside `dest_root`. Device nodes
/// are made with mknod (needs root). Ownership, mode, mtime and `SCHILY.xattr.*` are restored
/// (overlayfs' own `trusted.overlay.*`/`user.overlay.*` never: a layer cannot steer the
/// overlay); directory mtimes are set at the end so later entries do not disturb them.
pub fn apply_layer(reader: impl Read, dest_root: &Path) -> Result<()> {
    extract(reader, dest_root, Whiteouts::Apply)
}

/// Extract the uncompressed layer tar `reader` into the empty directory `dest_root` as one
/// lower directory of an overlayfs stack: like [`apply_layer`], but whiteouts are written the
/// way overlayfs reads them (see [`Whiteouts::Overlay`]) instead of being applied.
pub fn extract_overlay_layer(reader: impl Read, dest_root: &Path) -> Result<()> {
    extract(reader, dest_root, Whiteouts::Overlay)
}

fn extract(reader: impl Read, dest_root: &Path, whiteouts: Whiteouts) -> Result<()> {
    let root_file = fs::File::open(dest_root)
        .with_context(|| format!("opening layer destination {}", dest_root.display()))?;
    anyhow::ensure!(
        root_file.metadata()?.is_dir(),
        "{} is not a directory",
        dest_root.display()
    );
    let root: OwnedFd = root_file.into();
    let root = root.as_fd();

    let mut archive = tar::Archive::new(reader);
    let mut this_layer: HashSet<PathBuf> = HashSet::new();
    let mut dir_times: Vec<(Vec<OsString>, i64, i64)> = Vec::new();

    for entry in archive.entries().context("reading layer tar")? {
        let mut entry = entry.context("reading layer tar entry")?;
        let raw_path = entry.path()?.into_owned();
        apply_entry(
            root,
            &mut entry,
            &raw_path,
            whiteouts,
            &mut this_layer,
            &mut dir_times,
        )
        .with_context(|| format!("extracting {}", raw_path.display()))?;
    }

    for (comps, secs, nsecs) in dir_times.iter().rev() {
        let (name, parent) = comps.split_last().expect("non-root");
        let pfd = match sys::open_dir_in_root(root, &join(parent)) {
            Ok(fd) => fd,
            Err(_) => continue, // removed by a later entry
        };
        let c = sys::cstr(name)?;
        if let Some(st) = sys::lstat_at(pfd.as_fd(), &c)?
            && st.st_mode & libc::S_IFMT == libc::S_IFDIR
        {
            sys::set_times_at(pfd.as_fd(), &c, *secs, *nsecs)?;
        }
    }
    Ok(())
}

fn apply_entry<R: Read>(
    root: BorrowedFd,
    entry: &mut tar::Entry<R>,
    raw_path: &Path,
    whiteouts: Whiteouts,
    this_layer: &mut HashSet<PathBuf>,
    dir_times: &mut Vec<(Vec<OsString>, i64, i64)>,
) -> Result<()> {
    let comps = clean_path(raw_path);
    let Some((name, parent)) = comps.split_last() else {
        return Ok(()); // the root itself: leave dest_root's own metadata alone
    };
    let name_bytes = name.as_bytes();

    if whiteouts == Whiteouts::Overlay {
        if name_bytes == OPAQUE_WHITEOUT.as_bytes() {
            // Directory fds here are O_PATH, which take no xattrs: set it through the
            // directory's parent (or on the root, opened for reading).
            match parent.split_last() {
                None => sys::fset_xattr(root, overlay_opaque(), b"y"),
                Some((dir, up)) => {
                    ensure_dir(root, parent).context("creating the opaque directory")?;
                    let upfd = ensure_dir(root, up).context("creating parent directory")?;
                    sys::set_xattr(&sys::fd_path(upfd.as_fd(), dir), overlay_opaque(), b"y")
                }
            }
            .context("marking an opaque directory")?;
            return Ok(());
        }
        if let Some(target) = name_bytes.strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
            let target = OsStr::from_bytes(target);
            if target.is_empty() || target == "." || target == ".." {
                return Ok(());
            }
            let pfd = ensure_dir(root, parent).context("creating parent directory")?;
            remove_all_at(pfd.as_fd(), target)?;
            sys::mknod_at(pfd.as_fd(), &sys::cstr(target)?, libc::S_IFCHR, 0, 0)
                .context("writing a whiteout")?;
            return Ok(());
        }
    }

    // Whiteouts.
    if name_bytes == OPAQUE_WHITEOUT.as_bytes() {
        let pfd = match sys::open_dir_in_root(root, &join(parent)) {
            Ok(fd) => fd,
            Err(e) if matches!(errno(&e), Some(libc::ENOENT) | Some(libc::ENOTDIR)) => {
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
        let ppath = join(parent);
        for child in fs::read_dir(sys::fd_path(pfd.as_fd(), OsStr::new("")))? {
            let child = child?.file_name();
            if !this_layer.contains(&ppath.join(&child)) {
                remove_all_at(pfd.as_fd(), &child)?;
            }
        }
        return Ok(());
    }
    if let Some(target) = name_bytes.strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
        let target = OsStr::from_bytes(target);
        if target.is_empty() || target == "." || target == ".." {
            return Ok(());
        }
        match sys::open_dir_in_root(root, &join(parent)) {
            Ok(pfd) => remove_all_at(pfd.as_fd(), target)?,
            Err(e) if matches!(errno(&e), Some(libc::ENOENT) | Some(libc::ENOTDIR)) => {}
            Err(e) => return Err(e.into()),
        }
        return Ok(());
    }

    let ty = entry.header().entry_type();
    let meta = read_meta(entry)?;
    let pfd = ensure_dir(root, parent).context("creating parent directory")?;
    let pfd = pfd.as_fd();
    let cname = sys::cstr(name)?;
    this_layer.insert(join(&comps));

    let existing = sys::lstat_at(pfd, &cname)?;
    let existing_is_dir = existing.is_some_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR);

    match ty {
        EntryType::Directory => {
            if existing.is_some() && !existing_is_dir {
                remove_all_at(pfd, name)?;
            }
            if !existing_is_dir {
                sys::mkdir_at(pfd, &cname, 0o700)?;
            }
        }
        EntryType::Regular | EntryType::Continuous => {
            remove_all_at(pfd, name)?;
            let fd = sys::open_at(
                pfd,
                &cname,
                libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW,
                0o600,
            )?;
            let mut f = fs::File::from(fd);
            io::copy(entry, &mut f)?;
        }
        EntryType::Symlink => {
            let target = entry
                .link_name_bytes()
                .context("symlink without target")?
                .into_owned();
            remove_all_at(pfd, name)?;
            sys::symlink_at(&sys::cstr(OsStr::from_bytes(&target))?, pfd, &cname)?;
        }
        EntryType::Link => {
            let target = entry
                .link_name()?
                .context("hard link without target")?
                .into_owned();
            let tcomps = clean_path(&target);
            let Some((tname, tparent)) = tcomps.split_last() else {
                bail!("hard link to the root directory");
            };
            if tcomps == comps {
                return Ok(());
            }
            let tpfd = sys::open_dir_in_root(root, &join(tparent))
                .with_context(|| format!("hard link target {}", target.display()))?;
            remove_all_at(pfd, name)?;
            sys::link_at(tpfd.as_fd(), &sys::cstr(tname)?, pfd, &cname)
                .with_context(|| format!("hard link to {}", target.display()))?;
            return Ok(()); // shares the target's inode and metadata
        }
        EntryType::Char | EntryType::Block | EntryType::Fifo => {
            remove_all_at(pfd, name)?;
            let h = entry.header();
            let (kind, major, minor) = match ty {
                EntryType::Fifo => (libc::S_IFIFO, 0, 0),
                EntryType::Char => (
                    libc::S_IFCHR,
                    h.device_major()?.unwrap_or(0),
                    h.device_minor()?.unwrap_or(0),
                ),
                _ => (
                    libc::S_IFBLK,
                    h.device_major()?.unwrap_or(0),
                    h.device_minor()?.unwrap_or(0),
                ),
            };
            if let Err(e) = sys::mknod_at(pfd, &cname, kind | 0o600, major, minor) {
                if errno(&e) == Some(libc::EPERM) && crate::userns::rootless() {
                    bail!(
                        "the layer has a device node ({major}:{minor}); rootless wbuild cannot \
                         create device nodes (the kernel allows them only to the host's root), \
                         so this layer can only be unpacked by wbuild run as root"
                    );
                }
                return Err(e.into());
            }
        }
        other => bail!("unsupported tar entry type {other:?}"),
    }

    let is_symlink = ty == EntryType::Symlink;
    if let Err(e) = sys::chown_at(pfd, &cname, meta.uid, meta.gid) {
        return Err(crate::userns::owner_error(
            "the entry is owned by",
            meta.uid.into(),
            meta.gid.into(),
        )
        .unwrap_or_else(|| e.into()));
    }
    if !is_symlink {
        sys::chmod_at(pfd, &cname, meta.mode)?;
    }
    if !meta.xattrs.is_empty() {
        let p = sys::fd_path(pfd, name);
        for (k, v) in &meta.xattrs {
            if k.starts_with("trusted.overlay.") || k.starts_with("user.overlay.") {
                continue;
            }
            match sys::set_xattr(&p, k, v) {
                // user.* xattrs are not allowed on symlinks.
                Err(e) if is_symlink && errno(&e) == Some(libc::EPERM) => {}
                Err(e) if errno(&e) == Some(libc::EPERM) && crate::userns::rootless() => bail!(
                    "setting xattr {k}: rootless wbuild cannot keep it ({e}; the kernel \
                     allows trusted.* xattrs only to the host's root)"
                ),
                r => r.with_context(|| format!("setting xattr {k}"))?,
            }
        }
    }
    if ty == EntryType::Directory {
        dir_times.push((comps.clone(), meta.mtime, meta.mtime_nsec));
    } else {
        sys::set_times_at(pfd, &cname, meta.mtime, meta.mtime_nsec)?;
    }
    Ok(())
}
