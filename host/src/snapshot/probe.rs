//! Which snapshotter this process uses, probed once: native overlayfs (as root, or inside a
//! user namespace with `userxattr` on kernels ≥ 5.11), else fuse-overlayfs (rootless, when
//! the kernel refuses the native one and `/dev/fuse` is usable), else the copying fallback.
//! `WBUILD_SNAPSHOTTER=fuse-overlayfs` or `=copy` starts the probe further down that list.
//! Also mounts through fuse-overlayfs when that is the choice.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{Context, Result, bail};

/// The environment variable that picks a slower snapshotter.
pub const ENV: &str = "WBUILD_SNAPSHOTTER";

/// The snapshotter chosen by the probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// Kernel overlayfs.
    Overlay,
    /// The `fuse-overlayfs` program at this path.
    FuseOverlayfs(PathBuf),
    /// Flattened copies; RUN still mounts an overlay over the copy.
    Copy,
}

/// The probe's result: the kind, and the line the progress output shows when a slower path
/// than native overlayfs is taken.
#[derive(Debug, Clone)]
pub struct Choice {
    pub kind: Kind,
    pub note: Option<String>,
}

static CHOICE: OnceLock<Choice> = OnceLock::new();

/// The snapshotter mounts use: the probe's choice, or native overlayfs before any probe.
pub(crate) fn current() -> Kind {
    CHOICE
        .get()
        .map(|c| c.kind.clone())
        .unwrap_or(Kind::Overlay)
}

/// Probes once (test mounts under `dir`, on the store's filesystem) and returns the choice.
pub fn snapshotter(dir: &Path) -> &'static Choice {
    CHOICE.get_or_init(|| choose(dir))
}

fn find_fuse_overlayfs() -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("fuse-overlayfs"))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

fn choose(dir: &Path) -> Choice {
    let start = std::env::var(ENV).unwrap_or_default();
    let privilege = crate::userns::privilege();
    if privilege == crate::userns::Privilege::Unprivileged {
        return Choice {
            kind: Kind::Copy,
            note: Some("snapshots: copying (no user namespace, so no overlay mounts)".into()),
        };
    }
    let mut why = Vec::new();
    if !matches!(start.as_str(), "fuse-overlayfs" | "copy") {
        match super::overlay::probe_overlay_in(dir) {
            Ok(()) => {
                return Choice {
                    kind: Kind::Overlay,
                    note: None,
                };
            }
            Err(e) => why.push(format!("overlayfs: {e:#}")),
        }
    } else {
        why.push(format!("{ENV}={start}"));
    }
    // As root, fuse-overlayfs would only be slower than the copy of the old fallback.
    if start != "copy" && crate::userns::rootless() {
        match find_fuse_overlayfs() {
            Some(fuse) => {
                let fuse_kind = Kind::FuseOverlayfs(fuse);
                match probe_with(dir, &fuse_kind) {
                    Ok(()) => {
                        return Choice {
                            note: Some(format!(
                                "snapshots: fuse-overlayfs, slower than native overlayfs ({})",
                                why.join("; ")
                            )),
                            kind: fuse_kind,
                        };
                    }
                    Err(e) => why.push(format!("fuse-overlayfs: {e:#}")),
                }
            }
            None => why.push(
                "fuse-overlayfs: not installed (Debian: `apt-get install fuse-overlayfs`)".into(),
            ),
        }
    }
    Choice {
        kind: Kind::Copy,
        note: Some(format!(
            "snapshots: copying, slower than overlays ({})",
            why.join("; ")
        )),
    }
}

/// A test mount of `kind` under `dir`: a lower file visible, a write lands in the upper.
fn probe_with(dir: &Path, kind: &Kind) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = tempfile::Builder::new()
        .prefix("wbuild-overlay-probe")
        .tempdir_in(dir)
        .context("creating probe dir")?;
    let d = tmp.path();
    for sub in ["lower", "upper", "work", "merged"] {
        std::fs::create_dir(d.join(sub))?;
    }
    std::fs::write(d.join("lower/f"), b"x")?;
    let lowers = [d.join("lower")];
    match kind {
        Kind::FuseOverlayfs(fuse) => mount_fuse(
            fuse,
            &lowers,
            Some((&d.join("upper"), &d.join("work"))),
            &d.join("merged"),
        )?,
        _ => super::overlay::mount_overlay(
            &lowers,
            &d.join("upper"),
            &d.join("work"),
            &d.join("merged"),
        )?,
    }
    let check = (|| -> Result<()> {
        if std::fs::read(d.join("merged/f"))? != b"x" {
            bail!("lower file not visible through the overlay");
        }
        std::fs::write(d.join("merged/g"), b"y")?;
        std::fs::remove_file(d.join("merged/f"))?;
        Ok(())
    })();
    super::overlay::unmount(&d.join("merged"))?;
    check?;
    if !d.join("upper/g").exists() {
        bail!("write did not land in the upper dir");
    }
    Ok(())
}

/// Mounts `lowers` (top first) with fuse-overlayfs at `target`, writable with `upper_work`,
/// read-only without. fuse-overlayfs returns once the mount is up and serves it from a
/// daemon of its own, which exits when the mount is unmounted.
pub(crate) fn mount_fuse(
    fuse: &Path,
    lowers: &[PathBuf],
    upper_work: Option<(&Path, &Path)>,
    target: &Path,
) -> Result<()> {
    let mut opts = format!("lowerdir={}", super::overlay::lowerdir(lowers)?);
    if let Some((upper, work)) = upper_work {
        opts += &format!(
            ",upperdir={},workdir={}",
            super::overlay::check_overlay_path(upper)?,
            super::overlay::check_overlay_path(work)?
        );
    }
    let out = std::process::Command::new(fuse)
        .arg("-o")
        .arg(&opts)
        .arg(target)
        .stdin(std::process::Stdio::null())
        .output()
        .with_context(|| format!("running {}", fuse.display()))?;
    if !out.status.success() {
        bail!(
            "fuse-overlayfs could not mount {} ({opts}): {}",
            target.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}
