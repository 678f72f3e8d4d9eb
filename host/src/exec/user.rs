//! Resolution of a `USER` string (`uid[:gid]`, `name[:group]`) against the rootfs's /etc/passwd
//! and /etc/group, with Docker's (runc's `GetExecUser`) rules.

use std::path::Path;

use anyhow::{Context, Result, bail};

/// A user as the container process will run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups (from /etc/group membership; only when no group was given).
    pub additional_gids: Vec<u32>,
}

struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
}

struct GroupEntry {
    name: String,
    gid: u32,
    members: Vec<String>,
}

/// Read `etc/<name>` of the rootfs without following symlinks out of it: a symlinked /etc or
/// /etc/passwd is treated as absent rather than resolved against the host.
fn read_etc(rootfs: &Path, name: &str) -> Result<Option<String>> {
    let etc = rootfs.join("etc");
    match std::fs::symlink_metadata(&etc) {
        Ok(m) if m.is_dir() => {}
        _ => return Ok(None),
    }
    let file = etc.join(name);
    match std::fs::symlink_metadata(&file) {
        Ok(m) if m.is_file() => {}
        _ => return Ok(None),
    }
    let bytes =
        std::fs::read(&file).with_context(|| format!("reading /etc/{name} of the rootfs"))?;
    Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
}

fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some(PasswdEntry {
                name: f.first()?.to_string(),
                uid: f.get(2)?.trim().parse().ok()?,
                gid: f.get(3)?.trim().parse().ok()?,
            })
        })
        .collect()
}

fn parse_group(text: &str) -> Vec<GroupEntry> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some(GroupEntry {
                name: f.first()?.to_string(),
                gid: f.get(2)?.trim().parse().ok()?,
                members: f
                    .get(3)
                    .map(|m| {
                        m.split(',')
                            .map(|s| s.trim().to_string())
                            .filter(|s| !s.is_empty())
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// Resolve `user` (`""` = root) in the rootfs mounted at `rootfs`.
pub fn resolve_user(rootfs: &Path, user: &str) -> Result<ResolvedUser> {
    let (user_part, group_part) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let user_part = if user_part.is_empty() { "0" } else { user_part };
    let passwd = parse_passwd(&read_etc(rootfs, "passwd")?.unwrap_or_default());
    let (uid, mut gid, name) = match user_part.parse::<u32>() {
        Ok(uid) => match passwd.iter().find(|e| e.uid == uid) {
            Some(e) => (uid, e.gid, Some(e.name.clone())),
            None => (uid, 0, None),
        },
        Err(_) => match passwd.iter().find(|e| e.name == user_part) {
            Some(e) => (e.uid, e.gid, Some(e.name.clone())),
            None => bail!("unable to find user {user_part}: no matching entries in passwd file"),
        },
    };
    let mut additional_gids = Vec::new();
    let groups = || -> Result<Vec<GroupEntry>> {
        Ok(parse_group(&read_etc(rootfs, "group")?.unwrap_or_default()))
    };
    match group_part {
        Some(g) if !g.is_empty() => {
            gid = match g.parse::<u32>() {
                Ok(n) => n,
                Err(_) => match groups()?.iter().find(|e| e.name == g) {
                    Some(e) => e.gid,
                    None => bail!("unable to find group {g}: no matching entries in group file"),
                },
            };
        }
        _ => {
            if let Some(name) = name {
                for g in groups()? {
                    if g.members.contains(&name)
                        && g.gid != gid
                        && !additional_gids.contains(&g.gid)
                    {
                        additional_gids.push(g.gid);
                    }
                }
            }
        }
    }
    Ok(ResolvedUser {
        uid,
        gid,
        additional_gids,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rootfs() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("etc")).unwrap();
        std::fs::write(
            d.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\napp:x:1000:1000::/home/app:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(
            d.path().join("etc/group"),
            "root:x:0:\nwheel:x:10:app,root\nnogroup:x:65534:\napp:x:1000:\ndocker:x:999:app\n",
        )
        .unwrap();
        d
    }

    fn r(uid: u32, gid: u32, extra: &[u32]) -> ResolvedUser {
        ResolvedUser {
            uid,
            gid,
            additional_gids: extra.to_vec(),
        }
    }

    #[test]
    fn resolves_names_numbers_and_groups() {
        let d = rootfs();
        let p = d.path();
        assert_eq!(resolve_user(p, "").unwrap(), r(0, 0, &[10]));
        assert_eq!(resolve_user(p, "nobody").unwrap(), r(65534, 65534, &[]));
        assert_eq!(resolve_user(p, "app").unwrap(), r(1000, 1000, &[10, 999]));
        assert_eq!(resolve_user(p, "1000").unwrap(), r(1000, 1000, &[10, 999]));
        assert_eq!(resolve_user(p, "app:wheel").unwrap(), r(1000, 10, &[]));
        assert_eq!(resolve_user(p, "1234").unwrap(), r(1234, 0, &[]));
        assert_eq!(resolve_user(p, "1234:55").unwrap(), r(1234, 55, &[]));
        assert!(
            resolve_user(p, "ghost")
                .unwrap_err()
                .to_string()
                .contains("ghost")
        );
        assert!(resolve_user(p, "app:ghosts").is_err());
    }

    #[test]
    fn symlinked_passwd_is_not_followed() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("etc")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", d.path().join("etc/passwd")).unwrap();
        assert!(resolve_user(d.path(), "root").is_err());
        assert_eq!(resolve_user(d.path(), "0").unwrap(), r(0, 0, &[]));
    }
}
