//! Owns the clean-up of RUN containers whose wbuild process died (kill -9, power loss): their
//! runc state, the overlay mounts of their bundles and the bundle directories. Only call this
//! when no live wbuild can be using the state directory (the store's GC lock held exclusively).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use super::detect::find_runc;
use crate::snapshot::{mounts_under, unmount};

/// What a dead run left behind under a state directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StaleRun {
    /// A bundle directory (`bundles/<id>`), with the mount points still mounted under it.
    Bundle { path: PathBuf, mounts: Vec<PathBuf> },
    /// runc's state for a container (`runc/<id>`): the container may still be running.
    RuncState { id: String, path: PathBuf },
}

fn dir_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    match std::fs::read_dir(dir) {
        Ok(rd) => {
            let mut out = Vec::new();
            for e in rd {
                out.push(
                    e.with_context(|| format!("listing {}", dir.display()))?
                        .path(),
                );
            }
            out.sort();
            Ok(out)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e).with_context(|| format!("listing {}", dir.display())),
    }
}

/// Every leftover of a run under `state_dir` (the `RunSpec::state_dir` of the builds).
pub fn find_stale(state_dir: &Path) -> Result<Vec<StaleRun>> {
    let state_dir = std::path::absolute(state_dir)?;
    let mut out = Vec::new();
    for path in dir_entries(&state_dir.join("runc"))? {
        if path.is_dir() {
            let id = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            out.push(StaleRun::RuncState { id, path });
        }
    }
    for path in dir_entries(&state_dir.join("bundles"))? {
        let mounts = mounts_under(&path)?;
        out.push(StaleRun::Bundle { path, mounts });
    }
    Ok(out)
}

/// Removes one leftover: kills and deletes the container, unmounts (deepest first) and removes
/// the bundle. Never removes a directory that still has something mounted under it.
pub fn remove_stale(state_dir: &Path, stale: &StaleRun) -> Result<()> {
    let state_dir = std::path::absolute(state_dir)?;
    match stale {
        StaleRun::RuncState { id, path } => {
            if let Some(runc) = find_runc() {
                let _ = Command::new(runc)
                    .arg("--root")
                    .arg(state_dir.join("runc"))
                    .args(["delete", "--force", id])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
            if path.exists() {
                // runc could not delete it (missing runc, or state from another runc version):
                // nothing runs there any more once its bundle is gone, so drop the state.
                std::fs::remove_dir_all(path)
                    .with_context(|| format!("removing runc state {}", path.display()))?;
            }
        }
        StaleRun::Bundle { path, .. } => {
            let mut mounts = mounts_under(path)?;
            mounts.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
            for m in &mounts {
                unmount(m)?;
            }
            let left = mounts_under(path)?;
            if !left.is_empty() {
                bail!(
                    "mounts left under {}: {left:?}; not removing it",
                    path.display()
                );
            }
            if path.exists() {
                std::fs::remove_dir_all(path)
                    .with_context(|| format!("removing bundle {}", path.display()))?;
            }
        }
    }
    Ok(())
}
