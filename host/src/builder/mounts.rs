//! RUN mounts that need the host: bind mounts (read-only, or a throwaway copy when `rw`; a
//! context directory shown as COPY sees it), cache mounts kept across builds under the store,
//! and secret values.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{Context as _, bail};

use super::options::SecretSource;
use super::{Builder, StageState, staging};
use crate::exec::ExtraMount;
use crate::ir::{BindMount, CacheMount, CacheSharing, Source};
use crate::snapshot;
use crate::store::Digest;

impl Builder<'_> {
    /// The host path of `path` inside a mount source, resolved so that it cannot leave it.
    pub(super) fn mount_source_path(
        &self,
        from: &Source,
        path: &str,
        deps: &HashMap<u32, StageState>,
    ) -> anyhow::Result<PathBuf> {
        let other = self.source_root(from, deps)?;
        let ctx = other.as_ref().unwrap_or(&self.context);
        let found = ctx
            .resolve_sources(&[path.to_string()], &[])
            .with_context(|| format!("RUN --mount source {path}"))?;
        match found.as_slice() {
            [m] if m.resolved.is_empty() => Ok(ctx.root().to_path_buf()),
            [m] => Ok(ctx.root().join(&m.resolved)),
            _ => bail!("RUN --mount source {path} names more than one file"),
        }
    }

    /// `RUN --mount=type=bind`: read-only, or a throwaway copy when `readwrite`.
    pub(super) fn bind_mount(
        &self,
        b: &BindMount,
        deps: &HashMap<u32, StageState>,
        keep: &mut MountResources,
    ) -> anyhow::Result<ExtraMount> {
        let src = self.mount_source_path(&b.from, &b.source_path, deps)?;
        if matches!(b.from, Source::Context)
            && !self.context.ignore_rules().is_empty()
            && src.is_dir()
        {
            // A context directory is shown as COPY sees it: without what .dockerignore leaves
            // out. Those files are not part of the step's key either.
            let tmp = tempfile::Builder::new()
                .prefix(".bind-")
                .tempdir_in(self.store.tmp_dir())?;
            staging::stage_copy(
                &staging::CopyRequest {
                    from: &self.context,
                    from_context: false,
                    sources: std::slice::from_ref(&b.source_path),
                    inline: &[],
                    excludes: &[],
                    dest: "/",
                    workdir: "/",
                    parent_rootfs: None,
                    chown: None,
                    chmod: None,
                    parents: false,
                    unpack: false,
                },
                tmp.path(),
            )
            .with_context(|| format!("RUN --mount source {}", b.source_path))?;
            let source = tmp.path().to_path_buf();
            keep.dirs.push(tmp);
            return Ok(ExtraMount::Bind {
                source,
                target: b.target.clone(),
                readonly: !b.readwrite,
            });
        }
        if !b.readwrite {
            return Ok(ExtraMount::Bind {
                source: src,
                target: b.target.clone(),
                readonly: true,
            });
        }
        let tmp = tempfile::Builder::new()
            .prefix(".bind-")
            .tempdir_in(self.store.tmp_dir())?;
        let copy = tmp.path().join("src");
        if std::fs::symlink_metadata(&src)?.is_dir() {
            snapshot::copy_tree(&src, &copy)?;
        } else {
            std::fs::copy(&src, &copy)
                .with_context(|| format!("copying {} for a bind mount", src.display()))?;
        }
        keep.dirs.push(tmp);
        Ok(ExtraMount::Bind {
            source: copy,
            target: b.target.clone(),
            readonly: false,
        })
    }

    /// `RUN --mount=type=cache`: a directory under the store root kept across builds by id.
    pub(super) fn cache_mount(
        &self,
        c: &CacheMount,
        deps: &HashMap<u32, StageState>,
        keep: &mut MountResources,
    ) -> anyhow::Result<ExtraMount> {
        let hex = Digest::of_bytes(c.id.as_bytes()).hex();
        let parent = self.store.cache_mounts_dir();
        std::fs::create_dir_all(&parent)?;
        let lock = format!("cache-mount-{hex}");
        let mut dir = parent.join(&hex);
        match c.sharing {
            CacheSharing::Shared => {}
            CacheSharing::Locked => keep.locks.push(self.store.lock(&lock)?),
            CacheSharing::Private => match self.store.try_lock(&lock)? {
                Some(g) => keep.locks.push(g),
                None => {
                    // Another step is using it: this one gets a fresh, empty cache.
                    let tmp = tempfile::Builder::new()
                        .prefix(".cache-")
                        .tempdir_in(self.store.tmp_dir())?;
                    dir = tmp.path().join("cache");
                    keep.dirs.push(tmp);
                }
            },
        }
        if !dir.exists() {
            let tmp = tempfile::Builder::new()
                .prefix(".new-")
                .tempdir_in(&parent)?;
            let new = tmp.path().join("cache");
            match &c.from {
                Some(from) => {
                    let path = c.source_path.as_deref().unwrap_or("/");
                    let src = self.mount_source_path(from, path, deps)?;
                    snapshot::copy_tree(&src, &new)?;
                }
                None => std::fs::create_dir(&new)?,
            }
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&new, std::fs::Permissions::from_mode(c.mode & 0o7777))?;
            std::os::unix::fs::chown(&new, Some(c.uid), Some(c.gid))
                .with_context(|| format!("chown of cache mount {:?}", c.id))?;
            if std::fs::rename(&new, &dir).is_err() && !dir.is_dir() {
                bail!(
                    "could not create the cache mount directory {}",
                    dir.display()
                );
            }
        }
        Ok(ExtraMount::Bind {
            source: dir,
            target: c.target.clone(),
            readonly: c.readonly,
        })
    }

    /// The value of `--secret id=...`, or None when the user did not pass it.
    pub(super) fn secret_value(&self, id: &str) -> anyhow::Result<Option<Vec<u8>>> {
        let Some((_, src)) = self.opts.secrets.iter().rev().find(|(i, _)| i == id) else {
            return Ok(None);
        };
        match src {
            SecretSource::File(p) => std::fs::read(p)
                .map(Some)
                .with_context(|| format!("reading secret {id:?} from {}", p.display())),
            SecretSource::Env(var) => Ok(std::env::var_os(var).map(|v| {
                use std::os::unix::ffi::OsStringExt as _;
                v.into_vec()
            })),
        }
    }
}

/// What a RUN's mounts hold on to until the command ends: copies and private caches (removed
/// afterwards), cache-mount locks and ssh agent proxies.
#[derive(Default)]
pub(super) struct MountResources {
    pub(super) dirs: Vec<tempfile::TempDir>,
    pub(super) locks: Vec<crate::store::LockGuard>,
    pub(super) proxies: Vec<super::ssh::AgentProxy>,
}
