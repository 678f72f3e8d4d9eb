//! WORKDIR's filesystem part: the directory is created when the image lacks it, as Docker does
//! (the config part is in [`super::config`]).

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
        let mut path = staging.path().to_path_buf();
        for part in rel.split('/').filter(|p| !p.is_empty()) {
            path.push(part);
            std::fs::create_dir(&path)?;
        }
        self.layer_from(staging.path())
    }
}
