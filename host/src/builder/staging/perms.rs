//! Owners and modes of staged files: `--chown` resolved against the destination image's
//! `/etc/passwd` and `/etc/group`, `--chmod` in octal or symbolic form, and the [`Meta`] each
//! staged object gets.

use std::path::Path;

use anyhow::{Context as _, Result, bail};

use super::Meta;

pub(super) fn meta(uid: u32, gid: u32, mode: u32, secs: i64, nsecs: i64) -> Meta {
    Meta {
        uid,
        gid,
        mode,
        mtime: Some((secs, nsecs)),
    }
}

/// `--chown` as BuildKit resolves it: a numeric user alone means uid = gid = that id; a name is
/// looked up in the parent rootfs's /etc/passwd (its primary group); a group by id or
/// /etc/group name.
pub(in crate::builder) fn resolve_chown(rootfs: Option<&Path>, spec: &str) -> Result<(u32, u32)> {
    let empty;
    let root = match rootfs {
        Some(r) => r,
        None => {
            empty = tempfile::tempdir()?;
            empty.path()
        }
    };
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let (uid, mut gid) = match user.parse::<u32>() {
        Ok(n) => (n, n),
        Err(_) if user.is_empty() => (0, 0),
        Err(_) => {
            let r =
                crate::exec::resolve_user(root, user).with_context(|| format!("--chown={spec}"))?;
            (r.uid, r.gid)
        }
    };
    if let Some(g) = group.filter(|g| !g.is_empty()) {
        gid = match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => {
                crate::exec::resolve_user(root, &format!("0:{g}"))
                    .with_context(|| format!("--chown={spec}"))?
                    .gid
            }
        };
    }
    Ok((uid, gid))
}

/// Apply a chmod(1) symbolic mode (`u+x,g-w,a=rX,o+t,u+s`; no `who` means `a`, no umask) to
/// `mode`.
pub(super) fn apply_symbolic(spec: &str, mode: u32, is_dir: bool) -> Result<u32> {
    let mut mode = mode & 0o7777;
    for clause in spec.split(',') {
        let mut chars = clause.chars().peekable();
        let mut who = 0u32; // bits: u=4, g=2, o=1
        while let Some(&c) = chars.peek() {
            match c {
                'u' => who |= 4,
                'g' => who |= 2,
                'o' => who |= 1,
                'a' => who |= 7,
                _ => break,
            }
            chars.next();
        }
        if who == 0 {
            who = 7;
        }
        let mut any_op = false;
        while let Some(op) = chars.next() {
            if !matches!(op, '+' | '-' | '=') {
                bail!("unexpected {op:?} in clause {clause:?}");
            }
            any_op = true;
            let mut bits = 0u32;
            while let Some(&p) = chars.peek() {
                if matches!(p, '+' | '-' | '=') {
                    break;
                }
                let rwx = match p {
                    'r' => 4,
                    'w' => 2,
                    'x' => 1,
                    'X' if is_dir || mode & 0o111 != 0 => 1,
                    'X' => 0,
                    's' | 't' => 0,
                    _ => bail!("unknown permission {p:?} in clause {clause:?}"),
                };
                bits |= spread(who, rwx);
                if p == 's' {
                    bits |= if who & 4 != 0 { 0o4000 } else { 0 }
                        | if who & 2 != 0 { 0o2000 } else { 0 };
                }
                if p == 't' && who & 1 != 0 {
                    bits |= 0o1000;
                }
                chars.next();
            }
            match op {
                '+' => mode |= bits,
                '-' => mode &= !bits,
                _ => {
                    let mut clear = spread(who, 7);
                    if who & 4 != 0 {
                        clear |= 0o4000;
                    }
                    if who & 2 != 0 {
                        clear |= 0o2000;
                    }
                    if who & 1 != 0 {
                        clear |= 0o1000;
                    }
                    mode = (mode & !clear) | bits;
                }
            }
        }
        if !any_op {
            bail!("missing operator in clause {clause:?}");
        }
    }
    Ok(mode)
}

/// `rwx` (3 bits) placed for each of u/g/o selected in `who`.
pub(super) fn spread(who: u32, rwx: u32) -> u32 {
    let mut b = 0;
    if who & 4 != 0 {
        b |= rwx << 6;
    }
    if who & 2 != 0 {
        b |= rwx << 3;
    }
    if who & 1 != 0 {
        b |= rwx;
    }
    b
}
