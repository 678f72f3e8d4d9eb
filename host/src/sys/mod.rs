//! Filesystem primitives shared by every part of the host, each in one place: the root-confined
//! path resolver ([`resolve_in_root`]), race-free confined reads by descriptor
//! ([`read_confined`], for `read-context-file`), C strings of paths ([`cstr`]), no-follow timestamps
//! ([`set_times`]), in-root opens ([`openat2_in_root`]), atomic file writes
//! ([`write_atomic`], [`TempFile`]), direct I/O for big sequential files ([`DirectWriter`],
//! [`DirectChunks`], [`open_sequential`]) and the stat identity of a file for digest memos
//! ([`FileStat`]).
//!
//! Nothing here knows about images, layers or the store's layout; the store, the snapshotter,
//! the sandbox and the exporters build on these.

mod atomic;
mod confined;
mod direct;
mod root;
mod stat;

use std::ffi::{CStr, CString, OsStr};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

pub(crate) use atomic::{
    TMP_SUFFIX, TempFile, flock, sync_dir, sync_filesystem, write_atomic, write_atomic_in,
};
pub(crate) use confined::read_in_root as read_confined;
pub(crate) use direct::{DirectChunks, DirectWriter, open_sequential};
pub(crate) use root::{Missing, resolve_in_root};
pub(crate) use stat::FileStat;
#[cfg(test)]
pub(crate) use stat::RACY_WINDOW;

/// A path (or file name) as a C string for libc calls; a NUL byte is an `InvalidInput` error.
pub(crate) fn cstr(p: impl AsRef<OsStr>) -> io::Result<CString> {
    CString::new(p.as_ref().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))
}

/// Sets atime and mtime (seconds + nanoseconds) of `name` without following a final symlink;
/// `name` is relative to `dir`, or to the working directory (or absolute) when `dir` is None.
pub(crate) fn set_times(
    dir: Option<BorrowedFd>,
    name: &CStr,
    secs: i64,
    nsecs: i64,
) -> io::Result<()> {
    let ts = libc::timespec {
        tv_sec: secs as libc::time_t,
        tv_nsec: nsecs as _,
    };
    let times = [ts, ts];
    let fd = dir.map_or(libc::AT_FDCWD, |d| d.as_raw_fd());
    // SAFETY: a valid fd (or AT_FDCWD), a C string and an array of two timespecs.
    let rc =
        unsafe { libc::utimensat(fd, name.as_ptr(), times.as_ptr(), libc::AT_SYMLINK_NOFOLLOW) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `struct open_how` of openat2(2).
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// openat2(2) of `path` below `dir` with `RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS`: every
/// component, symlinks and `..` included, resolves as if `dir` were `/`. Retried on EAGAIN and
/// EINTR; ENOSYS or EPERM (no openat2, or a seccomp filter refusing it) reach the caller.
pub(crate) fn openat2_in_root(
    dir: BorrowedFd,
    path: &CStr,
    flags: libc::c_int,
) -> io::Result<OwnedFd> {
    let how = OpenHow {
        flags: flags as u64,
        mode: 0,
        resolve: libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS,
    };
    loop {
        // SAFETY: a valid descriptor, a NUL-terminated string and an open_how of its size.
        let r = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dir.as_raw_fd(),
                path.as_ptr(),
                &how as *const OpenHow,
                std::mem::size_of::<OpenHow>(),
            )
        };
        if r >= 0 {
            // SAFETY: r is a fresh descriptor we own.
            return Ok(unsafe { OwnedFd::from_raw_fd(r as libc::c_int) });
        }
        let e = io::Error::last_os_error();
        if !matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EINTR)) {
            return Err(e);
        }
    }
}
