//! The mounts of the light runtime, in the container's new mount namespace: the spec's mounts
//! on targets resolved inside the rootfs (created when missing, then opened with
//! `RESOLVE_IN_ROOT` and mounted through `/proc/self/fd`, so no symlink in the image can aim a
//! mount outside it), the default devices, `pivot_root`, and the masked and read-only paths.

use std::ffi::CString;
use std::os::fd::{AsRawFd as _, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, anyhow, bail};
use oci_spec::runtime::Mount;

use crate::sys::{Missing, resolve_in_root};

/// runc's default devices: name, major, minor (character devices, mode 0666, owned by root).
const DEVICES: [(&str, u32, u32); 6] = [
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

/// The symlinks runc makes in `/dev`.
const DEV_LINKS: [(&str, &str); 5] = [
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
    ("ptmx", "pts/ptmx"),
];

fn c(p: impl AsRef<std::ffi::OsStr>) -> Result<CString> {
    Ok(crate::sys::cstr(p)?)
}

/// mount(2) with optional source, type and data.
fn sys_mount(
    source: Option<&Path>,
    target: &Path,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> Result<()> {
    let source_c = source.map(c).transpose()?;
    let target_c = c(target)?;
    let fstype_c = fstype.map(c).transpose()?;
    let data_c = data.map(c).transpose()?;
    let ptr = |o: &Option<CString>| o.as_ref().map_or(std::ptr::null(), |s| s.as_ptr());
    // SAFETY: NUL-terminated strings (or NULL) that outlive the call.
    let r = unsafe {
        libc::mount(
            ptr(&source_c),
            target_c.as_ptr(),
            ptr(&fstype_c),
            flags,
            ptr(&data_c).cast(),
        )
    };
    if r != 0 {
        return Err(anyhow!(
            "mounting {} on {}: {}",
            source.map(|s| s.display().to_string()).unwrap_or_default(),
            target.display(),
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// Mount events of the host stop at the container, and the container's never reach the host.
pub(super) fn make_rslave() -> Result<()> {
    sys_mount(
        None,
        Path::new("/"),
        None,
        libc::MS_REC | libc::MS_SLAVE,
        None,
    )
    .map_err(|e| {
        let root_is_a_mount = std::fs::read_to_string("/proc/self/mountinfo")
            .map(|m| m.lines().any(|l| l.split(' ').nth(4) == Some("/")))
            .unwrap_or(true);
        if !root_is_a_mount {
            anyhow!(
                "the root directory is not a mount point (is wbuild running in a chroot?): RUN \
                 needs pivot_root, which needs one; bind-mount the chroot's root onto itself \
                 first (`mount --bind DIR DIR`) ({e})"
            )
        } else {
            e
        }
    })
}

/// The rootfs becomes a mount of its own, `nodev` (no device cgroup guards a node made with
/// mknod, so no node on it opens).
pub(super) fn prepare_rootfs(rootfs: &Path) -> Result<()> {
    sys_mount(
        Some(rootfs),
        rootfs,
        None,
        libc::MS_BIND | libc::MS_REC,
        None,
    )?;
    sys_mount(
        None,
        rootfs,
        None,
        libc::MS_REMOUNT | libc::MS_BIND | libc::MS_NODEV,
        None,
    )
}

/// Mount flags and the rest as data, from the spec's option words.
fn parse_options(options: &[String]) -> (libc::c_ulong, Vec<String>, bool, bool) {
    let mut flags = 0;
    let mut data = Vec::new();
    let (mut bind, mut private) = (false, false);
    for o in options {
        match o.as_str() {
            "ro" => flags |= libc::MS_RDONLY,
            "rw" => {}
            "nosuid" => flags |= libc::MS_NOSUID,
            "nodev" => flags |= libc::MS_NODEV,
            "noexec" => flags |= libc::MS_NOEXEC,
            "strictatime" => flags |= libc::MS_STRICTATIME,
            "relatime" => flags |= libc::MS_RELATIME,
            "noatime" => flags |= libc::MS_NOATIME,
            "bind" | "rbind" => bind = true,
            "rprivate" | "private" => private = true,
            other => data.push(other.to_string()),
        }
    }
    (flags, data, bind, private)
}

/// Creates what is missing of the physical path `rel` under `rootfs` (directories, and the last
/// component as a directory or, when `file`, an empty file), then opens it inside the root.
fn target_in_root(root: BorrowedFd, rootfs: &Path, dest: &Path, file: bool) -> Result<OwnedFd> {
    let dest_s = dest.to_str().context("mount destination is not UTF-8")?;
    let rel = resolve_in_root(rootfs, dest_s, true, Missing::Lexical, "the image")?
        .context("mount destination does not resolve")?;
    let mut host = rootfs.to_path_buf();
    for (i, part) in rel.iter().enumerate() {
        host.push(part);
        let last = i + 1 == rel.len();
        match std::fs::symlink_metadata(&host) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if last && file {
                    std::fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .open(&host)
                        .with_context(|| format!("creating the mount point {dest_s}"))?;
                } else {
                    std::fs::create_dir(&host)
                        .with_context(|| format!("creating the mount point {dest_s}"))?;
                }
            }
            Err(e) => return Err(e).with_context(|| format!("mount point {dest_s}")),
        }
    }
    let rel_path = c(rel.join("/"))?;
    crate::sys::openat2_in_root(root, &rel_path, libc::O_PATH | libc::O_CLOEXEC)
        .with_context(|| format!("opening the mount point {dest_s} inside the rootfs"))
}

fn fd_path(fd: &OwnedFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// One mount of the spec, on its destination inside `rootfs`.
pub(super) fn mount_one(root: BorrowedFd, rootfs: &Path, m: &Mount) -> Result<()> {
    let dest = m.destination();
    let typ = m.typ().as_deref().unwrap_or("bind");
    let (flags, data, bind, private) = parse_options(m.options().as_deref().unwrap_or_default());
    if bind || typ == "bind" {
        let source = m
            .source()
            .as_ref()
            .context("a bind mount without a source")?;
        let is_file = !std::fs::metadata(source)
            .with_context(|| format!("bind source {}", source.display()))?
            .is_dir();
        let target = target_in_root(root, rootfs, dest, is_file)?;
        let t = fd_path(&target);
        sys_mount(Some(source), &t, None, libc::MS_BIND | libc::MS_REC, None)?;
        // The bind itself, for the calls below (`target` still names what it covers).
        let top = target_in_root(root, rootfs, dest, is_file)?;
        let top = fd_path(&top);
        if private {
            sys_mount(None, &top, None, libc::MS_REC | libc::MS_PRIVATE, None)?;
        }
        sys_mount(
            None,
            &top,
            None,
            libc::MS_REMOUNT | libc::MS_BIND | libc::MS_NODEV | flags,
            None,
        )?;
        return Ok(());
    }
    let source = m
        .source()
        .as_ref()
        .map(|s| s.to_path_buf())
        .unwrap_or_else(|| PathBuf::from(typ));
    let target = target_in_root(root, rootfs, dest, false)?;
    let is_dev = dest == Path::new("/dev");
    let extra = if is_dev { libc::MS_NODEV } else { 0 };
    let data = data.join(",");
    sys_mount(
        Some(&source),
        &fd_path(&target),
        Some(typ),
        flags | extra,
        (!data.is_empty()).then_some(data.as_str()),
    )?;
    if is_dev {
        populate_dev(root, rootfs)?;
    }
    Ok(())
}

/// The default devices and symlinks in a fresh `/dev`. `/dev` itself is `nodev`, so the nodes
/// are made on a tmpfs of their own outside the rootfs (in the bundle, seen only in this mount
/// namespace) and bound in one by one: each bind keeps that tmpfs's flags and opens, while a
/// node made by the command in `/dev` does not.
fn populate_dev(root: BorrowedFd, rootfs: &Path) -> Result<()> {
    let stash = rootfs
        .parent()
        .context("the rootfs has no parent directory")?
        .join("devices");
    std::fs::create_dir(&stash).with_context(|| format!("creating {}", stash.display()))?;
    sys_mount(
        Some(Path::new("tmpfs")),
        &stash,
        Some("tmpfs"),
        libc::MS_NOSUID | libc::MS_STRICTATIME,
        Some("mode=755,size=64k"),
    )?;
    for (name, major, minor) in DEVICES {
        // Rootless, no mknod: the host's own nodes are bound in (as runc does there).
        if super::super::rootless::active() {
            let host = Path::new("/dev").join(name);
            let target = target_in_root(root, rootfs, &Path::new("/dev").join(name), true)?;
            sys_mount(Some(&host), &fd_path(&target), None, libc::MS_BIND, None)?;
            continue;
        }
        let node = stash.join(name);
        let node_c = c(&node)?;
        // SAFETY: a NUL-terminated path; plain integers.
        if unsafe {
            libc::mknod(
                node_c.as_ptr(),
                libc::S_IFCHR | 0o666,
                libc::makedev(major, minor),
            )
        } != 0
        {
            return Err(anyhow!(
                "creating /dev/{name}: {}",
                std::io::Error::last_os_error()
            ));
        }
        // The umask took bits off the mode; the owner is ours (root) already.
        std::fs::set_permissions(&node, std::os::unix::fs::PermissionsExt::from_mode(0o666))
            .with_context(|| format!("setting the mode of /dev/{name}"))?;
        let target = target_in_root(root, rootfs, &Path::new("/dev").join(name), true)?;
        sys_mount(Some(&node), &fd_path(&target), None, libc::MS_BIND, None)?;
    }
    let dev = target_in_root(root, rootfs, Path::new("/dev"), false)?;
    let dev_path = fd_path(&dev);
    for (name, to) in DEV_LINKS {
        std::os::unix::fs::symlink(to, dev_path.join(name))
            .with_context(|| format!("creating /dev/{name}"))?;
    }
    if Path::new("/proc/kcore").exists() {
        std::os::unix::fs::symlink("/proc/kcore", dev_path.join("core"))
            .context("creating /dev/core")?;
    }
    Ok(())
}

/// `pivot_root` into `rootfs`, the old root detached.
pub(super) fn pivot_into(rootfs: &Path) -> Result<()> {
    std::env::set_current_dir(rootfs)
        .with_context(|| format!("entering the rootfs {}", rootfs.display()))?;
    let dot = c(".")?;
    // SAFETY: pivot_root with two NUL-terminated paths.
    if unsafe { libc::syscall(libc::SYS_pivot_root, dot.as_ptr(), dot.as_ptr()) } != 0 {
        bail!("pivot_root: {}", std::io::Error::last_os_error());
    }
    sys_mount(
        None,
        Path::new("."),
        None,
        libc::MS_REC | libc::MS_SLAVE,
        None,
    )?;
    // SAFETY: umount2 of the old root stacked on ".".
    if unsafe { libc::umount2(dot.as_ptr(), libc::MNT_DETACH) } != 0 {
        bail!(
            "detaching the old root: {}",
            std::io::Error::last_os_error()
        );
    }
    std::env::set_current_dir("/").context("entering /")
}

/// A masked path (after `pivot_root`): a directory gets an empty read-only tmpfs, anything
/// else `/dev/null`; a path the kernel does not have is skipped, as runc.
pub(super) fn mask(p: &str) -> Result<()> {
    let path = Path::new(p);
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("masking {p}")),
        Ok(md) if md.is_dir() => sys_mount(
            Some(Path::new("tmpfs")),
            path,
            Some("tmpfs"),
            libc::MS_RDONLY,
            None,
        ),
        Ok(_) => sys_mount(
            Some(Path::new("/dev/null")),
            path,
            None,
            libc::MS_BIND,
            None,
        ),
    }
}

/// A read-only path (after `pivot_root`): bound onto itself and remounted read-only.
pub(super) fn read_only(p: &str) -> Result<()> {
    let path = Path::new(p);
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("making {p} read-only")),
        Ok(_) => {
            sys_mount(Some(path), path, None, libc::MS_BIND | libc::MS_REC, None)?;
            sys_mount(
                None,
                path,
                None,
                libc::MS_REMOUNT
                    | libc::MS_BIND
                    | libc::MS_RDONLY
                    | libc::MS_NOSUID
                    | libc::MS_NODEV
                    | libc::MS_NOEXEC,
                None,
            )
        }
    }
}
