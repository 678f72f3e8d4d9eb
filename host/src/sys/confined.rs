//! Reading a file below a root (a build context, for a frontend's `read-context-file`) without
//! ever leaving the root, even while someone swaps symlinks in it. Unlike
//! [`resolve_in_root`](super::resolve_in_root), which resolves a path by name, this holds
//! descriptors, so a concurrent rename cannot redirect it.
//!
//! The path is resolved by the kernel with `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`
//! from a descriptor of the root: every symlink and `..` is resolved as if the root were `/`,
//! in the same system call that opens the file, so there is no window between a check and the
//! open. Where openat2 is missing (Linux before 5.6, or refused by a seccomp filter), the same
//! resolution is done in user space one component at a time, each opened with `O_NOFOLLOW`
//! relative to a descriptor of its parent that is held open, symlinks read with `readlinkat`
//! and resolved in-root. The file's type and size are checked on the opened descriptor.

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

/// Symlinks followed in one resolution before giving up (as the kernel's ELOOP).
const MAX_SYMLINKS: usize = 40;

/// Read `path` (relative to `root`; a leading `/` is the root) confined to `root`: `..`
/// components are refused, symlinks resolve inside the root, and at most `limit` bytes of a
/// regular file are returned. Errors are for the user and start with `path`.
pub(crate) fn read_in_root(root: &Path, path: &str, limit: u64) -> Result<Vec<u8>, String> {
    let rel = path.trim_start_matches('/');
    if rel.split('/').any(|c| c == "..") {
        return Err(format!(
            "{path}: only paths inside the build context can be read"
        ));
    }
    if rel.split('/').all(|c| c.is_empty() || c == ".") {
        return Err(format!(
            "{path}: names the build context itself, not a file"
        ));
    }
    let root_fd = open_plain(
        libc::AT_FDCWD,
        root.as_os_str().as_encoded_bytes(),
        DIR_FLAGS,
    )
    .map_err(|e| format!("build context {}: {e}", root.display()))?;
    let fd = open_in_root(&root_fd, rel).map_err(|e| format!("{path}: {}", describe(&e)))?;
    let file = File::from(fd);
    let meta = file.metadata().map_err(|e| format!("{path}: {e}"))?;
    if !meta.is_file() {
        return Err(format!("{path}: not a regular file"));
    }
    if meta.len() > limit {
        return Err(format!(
            "{path}: {} bytes is more than a frontend may read ({limit})",
            meta.len()
        ));
    }
    let mut out = Vec::with_capacity(meta.len() as usize);
    file.take(limit + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("{path}: {e}"))?;
    if out.len() as u64 > limit {
        return Err(format!("{path}: grew past the limit of {limit} bytes"));
    }
    Ok(out)
}

fn describe(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::ELOOP) => "too many levels of symbolic links".into(),
        Some(libc::EXDEV) => "leads outside the build context".into(),
        Some(libc::ENOENT) => {
            "no such file in the build context (symlinks resolve inside it)".into()
        }
        _ => e.to_string(),
    }
}

const DIR_FLAGS: libc::c_int = libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC;
const FILE_FLAGS: libc::c_int = libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NOCTTY;

/// Opens `rel` below the directory `root` for reading, resolving in-root.
pub(crate) fn open_in_root(root: &OwnedFd, rel: &str) -> io::Result<OwnedFd> {
    match openat2_in_root(root, rel) {
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOSYS | libc::EPERM)) => {
            walk_in_root(root, rel)
        }
        r => r,
    }
}

fn openat2_in_root(root: &OwnedFd, rel: &str) -> io::Result<OwnedFd> {
    let c = CString::new(rel).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    super::openat2_in_root(root.as_fd(), &c, FILE_FLAGS)
}

fn open_plain(dir: libc::c_int, name: &[u8], flags: libc::c_int) -> io::Result<OwnedFd> {
    let c = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: a valid directory descriptor (or AT_FDCWD) and a NUL-terminated string.
    let r = unsafe { libc::openat(dir, c.as_ptr(), flags) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: r is a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(r) })
}

/// The target of the symlink `name` in `dir`, or None when it is not a symlink.
fn read_link_at(dir: &OwnedFd, name: &[u8]) -> io::Result<Option<Vec<u8>>> {
    let c = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let mut buf = vec![0u8; libc::PATH_MAX as usize];
    // SAFETY: valid descriptor, string and buffer of the given length.
    let n = unsafe {
        libc::readlinkat(
            dir.as_raw_fd(),
            c.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n < 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::EINVAL) => Ok(None),
            _ => Err(e),
        };
    }
    buf.truncate(n as usize);
    Ok(Some(buf))
}

/// The user-space in-root resolver: a stack of open directory descriptors from the root down,
/// each component opened with `O_NOFOLLOW` from its parent's descriptor. A symlink is read and
/// its target pushed in front of the remaining components (from the root when absolute); `..`
/// pops the stack and never goes above the root. A symlink swapped in after a component was
/// opened changes nothing: the walk continues from the descriptor it holds.
fn walk_in_root(root: &OwnedFd, rel: &str) -> io::Result<OwnedFd> {
    let mut stack: Vec<OwnedFd> = Vec::new();
    let mut todo: Vec<Vec<u8>> = components(rel.as_bytes());
    todo.reverse();
    let mut links = 0;
    while let Some(name) = todo.pop() {
        let dir = stack.last().unwrap_or(root);
        if name == b".." {
            stack.pop();
            continue;
        }
        let last = todo.is_empty();
        let flags = if last { FILE_FLAGS } else { DIR_FLAGS } | libc::O_NOFOLLOW;
        match open_plain(dir.as_raw_fd(), &name, flags) {
            Ok(fd) if last => return Ok(fd),
            Ok(fd) => stack.push(fd),
            Err(e) if matches!(e.raw_os_error(), Some(libc::ELOOP | libc::ENOTDIR)) => {
                let Some(target) = read_link_at(dir, &name)? else {
                    return Err(e);
                };
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(io::Error::from_raw_os_error(libc::ELOOP));
                }
                if target.first() == Some(&b'/') {
                    stack.clear();
                }
                let mut more = components(&target);
                more.reverse();
                todo.extend(more);
            }
            Err(e) => return Err(e),
        }
    }
    // The path ended in `..` or a symlink to a directory: open the directory itself, which
    // read_in_root then refuses as not a regular file.
    let dir = stack.last().unwrap_or(root);
    open_plain(dir.as_raw_fd(), b".", FILE_FLAGS)
}

fn components(path: &[u8]) -> Vec<Vec<u8>> {
    path.split(|b| *b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
        .map(<[u8]>::to_vec)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn root() -> (tempfile::TempDir, tempfile::TempDir) {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "outside").unwrap();
        let ctx = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(ctx.path().join("a/b")).unwrap();
        std::fs::write(ctx.path().join("a/b/f"), "inside").unwrap();
        std::fs::write(ctx.path().join("secret"), "root secret").unwrap();
        (ctx, outside)
    }

    /// Both resolvers give the same answers.
    fn both(root: &Path, rel: &str) -> Vec<Result<Vec<u8>, String>> {
        let fd = open_plain(
            libc::AT_FDCWD,
            root.as_os_str().as_encoded_bytes(),
            DIR_FLAGS,
        )
        .unwrap();
        let read = |r: io::Result<OwnedFd>| {
            r.map_err(|e| describe(&e)).and_then(|fd| {
                let mut v = Vec::new();
                File::from(fd)
                    .read_to_end(&mut v)
                    .map_err(|e| e.to_string())?;
                Ok(v)
            })
        };
        vec![
            read(openat2_in_root(&fd, rel)),
            read(walk_in_root(&fd, rel)),
        ]
    }

    #[test]
    fn symlinks_resolve_inside_the_root_in_both_resolvers() {
        let (ctx, outside) = root();
        let c = ctx.path();
        symlink(outside.path().join("secret"), c.join("abs")).unwrap();
        symlink("../../../../../../secret", c.join("a/b/up")).unwrap();
        symlink("b", c.join("a/lb")).unwrap();
        symlink("loop2", c.join("loop1")).unwrap();
        symlink("loop1", c.join("loop2")).unwrap();
        for r in both(c, "a/lb/f") {
            assert_eq!(r.unwrap(), b"inside");
        }
        // `..` in a symlink stops at the root: the root's own file, not the one outside.
        for r in both(c, "a/b/up") {
            assert_eq!(r.unwrap(), b"root secret");
        }
        // An absolute symlink is taken from the root: <root>/tmp/... does not exist.
        for r in both(c, "abs") {
            assert!(r.is_err(), "{r:?}");
        }
        for r in both(c, "loop1") {
            assert!(r.unwrap_err().contains("symbolic links"));
        }
        assert_eq!(read_in_root(c, "/a/b/f", 100).unwrap(), b"inside");
        assert!(
            read_in_root(c, "a/../secret", 100)
                .unwrap_err()
                .contains("inside the build")
        );
        assert!(
            read_in_root(c, "a", 100)
                .unwrap_err()
                .contains("not a regular file")
        );
        assert!(
            read_in_root(c, "a/b/f", 3)
                .unwrap_err()
                .contains("more than")
        );
        assert!(
            read_in_root(c, ".", 3)
                .unwrap_err()
                .contains("context itself")
        );
    }

    /// A symlink swapped between a directory and one leading out while the host reads through
    /// it, in a bounded race: no read ever returns the file outside the root.
    #[test]
    fn a_symlink_swapped_during_reads_never_leads_outside() {
        let (ctx, outside) = root();
        let c = ctx.path().to_path_buf();
        std::fs::create_dir(c.join("real")).unwrap();
        std::fs::write(c.join("real/secret"), "inside").unwrap();
        symlink("real", c.join("link")).unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let swapper = {
            let (c, out, stop) = (c.clone(), outside.path().to_path_buf(), stop.clone());
            std::thread::spawn(move || {
                let mut i = 0u32;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) && i < 200_000 {
                    let tmp = c.join(format!("tmp{}", i % 2));
                    let target = if i.is_multiple_of(2) {
                        out.clone()
                    } else {
                        "real".into()
                    };
                    let _ = std::fs::remove_file(&tmp);
                    symlink(&target, &tmp).unwrap();
                    std::fs::rename(&tmp, c.join("link")).unwrap();
                    i += 1;
                }
            })
        };
        let root_fd =
            open_plain(libc::AT_FDCWD, c.as_os_str().as_encoded_bytes(), DIR_FLAGS).unwrap();
        let (mut inside, mut refused) = (0, 0);
        for _ in 0..3_000 {
            for fd in [
                openat2_in_root(&root_fd, "link/secret"),
                walk_in_root(&root_fd, "link/secret"),
            ] {
                match fd {
                    Ok(fd) => {
                        let mut s = String::new();
                        File::from(fd).read_to_string(&mut s).unwrap();
                        assert_eq!(s, "inside", "read a file outside the root");
                        inside += 1;
                    }
                    Err(_) => refused += 1,
                }
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        swapper.join().unwrap();
        // Both outcomes happened: the race was real.
        assert!(
            inside > 0 && refused > 0,
            "inside {inside}, refused {refused}"
        );
    }
}
