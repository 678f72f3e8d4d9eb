//! The directory a WORKDIR creates, as BuildKit's `dispatchWorkdir` makes it: `Mkdir(wd, 0755,
//! WithParents, WithUser(USER))`, that is fsutil's `MkdirAll`, which gives every directory it
//! creates mode 0755 and the current USER as owner (resolved in the stage's /etc/passwd and
//! /etc/group like `COPY --chown`), and leaves directories that exist as they are.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use anyhow::{Context as _, Result};

/// Stages in `staging` the directories of `rel` (a path inside `parent`, symlinks already
/// resolved): those `parent` has with their own owner, mode and times (so the layer does not
/// change them), the missing ones 0755 and owned by `user` (`""` is root).
pub(super) fn stage(parent: &Path, rel: &str, user: &str, staging: &Path) -> Result<()> {
    // BuildKit's `readUser` takes a name it cannot find (or a missing /etc/passwd) as root.
    let owner = if user.is_empty() {
        (0, 0)
    } else {
        super::copy::resolve_chown(Some(parent), user).unwrap_or((0, 0))
    };
    let mut lower = parent.to_path_buf();
    let mut path = staging.to_path_buf();
    // Times last, deepest first: creating a child changes its parent's mtime.
    let mut times_of = Vec::new();
    for part in rel.split('/').filter(|p| !p.is_empty()) {
        lower.push(part);
        path.push(part);
        fs::create_dir(&path).with_context(|| format!("mkdir {}", path.display()))?;
        let (uid, gid, mode, times) = match fs::symlink_metadata(&lower) {
            Ok(md) if md.is_dir() => (
                md.uid(),
                md.gid(),
                md.mode() & 0o7777,
                Some((md.mtime(), md.mtime_nsec())),
            ),
            _ => (owner.0, owner.1, 0o755, None),
        };
        std::os::unix::fs::chown(&path, Some(uid), Some(gid))
            .with_context(|| format!("chown {}", path.display()))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(mode))?;
        if let Some(t) = times {
            times_of.push((path.clone(), t));
        }
    }
    for (p, (secs, nsecs)) in times_of.iter().rev() {
        super::copy::set_times(p, *secs, *nsecs)?;
    }
    Ok(())
}
