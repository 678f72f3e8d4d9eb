//! The one root-confined path resolver: a path looked up inside a directory tree (a build
//! context, an image's root filesystem) the way the kernel would if that tree were `/`.
//!
//! Each component is `lstat`ed and symlinks are expanded by hand: `..` is clamped at the root and
//! an absolute target restarts from the root, so the result, joined onto the root, never leaves
//! it (short of a concurrent rename, which callers must not race). At most 40 symlinks are
//! followed, as Linux's MAXSYMLINKS.

use std::ffi::OsStr;
use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

use anyhow::{Result, anyhow};

/// Symlink expansions allowed while resolving one path (Linux's MAXSYMLINKS).
const MAX_SYMLINKS: usize = 40;

/// What [`resolve_in_root`] does at a component the tree does not have (or under a file).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Missing {
    /// Stop: the path does not resolve (`Ok(None)`).
    Stop,
    /// Go on lexically with the rest of the path, as a path to be created would.
    Lexical,
}

/// Resolves `path` inside `root`, following symlinks (the final component only if
/// `follow_final`) without ever leaving the root. Returns the physical components relative to
/// the root (empty for the root itself), or None when `missing` is [`Missing::Stop`] and a
/// component does not exist or a non-final one is not a directory. `what` names the tree in
/// errors ("the build context", "the image").
pub(crate) fn resolve_in_root(
    root: &Path,
    path: &str,
    follow_final: bool,
    missing: Missing,
    what: &str,
) -> Result<Option<Vec<String>>> {
    let mut stack: Vec<String> = Vec::new();
    let mut queue: Vec<String> = Vec::new(); // reversed: pop() yields the next component
    push_components(&mut queue, Path::new(path), what)?;
    let mut hops = 0;
    let mut gone = false; // a component was missing: the rest is lexical
    while let Some(c) = queue.pop() {
        if c == ".." {
            stack.pop();
            continue;
        }
        stack.push(c);
        if gone {
            continue;
        }
        let host = join(root, &stack);
        let md = match fs::symlink_metadata(&host) {
            Ok(md) => md,
            Err(e) => match missing {
                Missing::Stop if is_not_found(&e) => return Ok(None),
                Missing::Stop => return Err(e.into()),
                Missing::Lexical => {
                    gone = true;
                    continue;
                }
            },
        };
        let last = queue.is_empty();
        if md.file_type().is_symlink() && (!last || follow_final) {
            hops += 1;
            if hops > MAX_SYMLINKS {
                return Err(anyhow!(
                    "too many levels of symbolic links resolving {path:?} in {what}"
                ));
            }
            let target = fs::read_link(&host)?;
            stack.pop();
            if target.is_absolute() {
                stack.clear();
            }
            push_components(&mut queue, &target, what)?;
        } else if !last && !md.is_dir() {
            match missing {
                Missing::Stop => return Ok(None),
                Missing::Lexical => gone = true,
            }
        }
    }
    Ok(Some(stack))
}

fn is_not_found(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENOTDIR)
}

fn join(root: &Path, comps: &[String]) -> PathBuf {
    let mut p = root.to_path_buf();
    for c in comps {
        p.push(c);
    }
    p
}

/// Pushes the components of `p` onto a reversed work queue (so they pop in order).
fn push_components(queue: &mut Vec<String>, p: &Path, what: &str) -> Result<()> {
    let mut comps = Vec::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => comps.push(utf8(n, what)?),
            Component::ParentDir => comps.push("..".to_string()),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    queue.extend(comps.into_iter().rev());
    Ok(())
}

fn utf8(name: &OsStr, what: &str) -> Result<String> {
    name.to_str()
        .map(str::to_string)
        .ok_or_else(|| anyhow!("non-UTF-8 file name {name:?} in {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlinks_stay_inside_the_root() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        fs::create_dir_all(r.join("srv/app")).unwrap();
        std::os::unix::fs::symlink("/srv/app", r.join("app")).unwrap();
        std::os::unix::fs::symlink("../../../../srv", r.join("srv/up")).unwrap();
        let lex = |p| {
            resolve_in_root(r, p, true, Missing::Lexical, "t")
                .unwrap()
                .unwrap()
        };
        assert_eq!(lex("/app/x"), ["srv", "app", "x"]);
        assert_eq!(lex("srv/up/app"), ["srv", "app"]);
        assert_eq!(lex("/a/../../b"), ["b"]);
        let stop = |p| resolve_in_root(r, p, true, Missing::Stop, "t").unwrap();
        assert_eq!(stop("app"), Some(vec!["srv".into(), "app".into()]));
        assert_eq!(stop("app/missing"), None);
        let nofollow = resolve_in_root(r, "app", false, Missing::Stop, "t").unwrap();
        assert_eq!(nofollow, Some(vec!["app".into()]));
    }

    #[test]
    fn symlink_loops_are_an_error() {
        let d = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/loop", d.path().join("loop")).unwrap();
        let e = resolve_in_root(d.path(), "/loop/x", true, Missing::Lexical, "the image");
        assert!(format!("{:#}", e.unwrap_err()).contains("too many levels"));
    }
}
