//! WORKDIR's filesystem part: the directory is created when the image lacks it, as BuildKit's
//! `dispatchWorkdir` makes it (the config part is in [`super::config`]): `Mkdir(wd, 0755,
//! WithParents, WithUser(USER))`, that is fsutil's `MkdirAll`, which gives every directory it
//! creates mode 0755 and the current USER as owner (resolved in the stage's /etc/passwd and
//! /etc/group like `COPY --chown`), and leaves directories that exist as they are.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use anyhow::Context as _;

use super::{Builder, StageState};
use crate::exec;
use crate::solve::LayerRef;

impl Builder<'_> {
    /// WORKDIR creates its directory when the filesystem lacks it, as Docker does.
    pub(super) fn mkdir_step(
        &self,
        state: &mut StageState,
        dir: &str,
    ) -> anyhow::Result<Option<LayerRef>> {
        let parent = self.rootfs(state)?;
        // Follow the image's symlinks inside the image, never the host's.
        let resolved = exec::resolve_container_path(&parent, dir)?;
        let rel = resolved.trim_start_matches('/');
        if rel.is_empty() || std::fs::symlink_metadata(parent.join(rel)).is_ok_and(|m| m.is_dir()) {
            return Ok(None);
        }
        let staging = tempfile::Builder::new()
            .prefix(".mkdir-")
            .tempdir_in(self.store.tmp_dir())?;
        let user = state.config.image().config.user.clone().unwrap_or_default();
        stage(&parent, rel, &user, staging.path())?;
        self.layer_from(staging.path())
    }
}

/// Stages in `staging` the directories of `rel` (a path inside `parent`, symlinks already
/// resolved): those `parent` has with their own owner, mode and times (so the layer does not
/// change them), the missing ones 0755 and owned by `user` (`""` is root).
fn stage(parent: &Path, rel: &str, user: &str, staging: &Path) -> anyhow::Result<()> {
    // BuildKit's `readUser` takes a name it cannot find (or a missing /etc/passwd) as root.
    let owner = if user.is_empty() {
        (0, 0)
    } else {
        super::staging::resolve_chown(Some(parent), user).unwrap_or((0, 0))
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
        crate::sys::set_times(None, &crate::sys::cstr(p)?, *secs, *nsecs)
            .with_context(|| format!("utimensat {}", p.display()))?;
    }
    Ok(())
}
