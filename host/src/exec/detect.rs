//! Finding `runc`, and (for the sandbox's tests) `detect`: what this host can do for RUN steps
//! (runc present, root, overlayfs usable).

#[cfg(test)]
use std::path::Path;
use std::path::PathBuf;

#[cfg(test)]
use anyhow::{Result, bail};

#[cfg(test)]
use crate::snapshot::probe_overlay;

/// What this host offers for RUN steps and snapshots.
#[cfg(test)]
#[derive(Debug, Clone)]
pub struct Capabilities {
    /// Path of the `runc` binary, if found on PATH.
    pub runc: Option<PathBuf>,
    /// First line of `runc --version`.
    pub runc_version: Option<String>,
    /// Effective uid is 0.
    pub is_root: bool,
    /// A test overlay mount with wbuild's options succeeded.
    pub overlay: bool,
    /// Why overlayfs is not usable, when it is not.
    pub overlay_error: Option<String>,
}

#[cfg(test)]
impl Capabilities {
    /// The runc binary, or an error that tells the user how to get one.
    pub fn require_runc(&self) -> Result<&Path> {
        match &self.runc {
            Some(p) => Ok(p),
            None => bail!(
                "RUN steps need the `runc` container runtime, which is not on PATH; \
                 install it (Debian/Ubuntu: `apt-get install runc`)"
            ),
        }
    }
    /// Whether RUN steps can run at all (runc + root).
    pub fn can_run(&self) -> bool {
        self.runc.is_some() && self.is_root
    }
}

/// Find `runc` on PATH.
pub(crate) fn find_runc() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("runc"))
        .find(|p| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(p)
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}

/// Probe the host: runc, root, overlayfs (by a test mount in a temp dir).
#[cfg(test)]
pub fn detect() -> Result<Capabilities> {
    let runc = find_runc();
    let runc_version = runc.as_ref().and_then(|r| {
        let out = std::process::Command::new(r)
            .arg("--version")
            .output()
            .ok()?;
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .map(str::to_string)
    });
    // SAFETY: geteuid has no preconditions.
    let is_root = unsafe { libc::geteuid() } == 0;
    let (overlay, overlay_error) = match probe_overlay() {
        Ok(()) => (true, None),
        Err(e) => (false, Some(format!("{e:#}"))),
    };
    Ok(Capabilities {
        runc,
        runc_version,
        is_root,
        overlay,
        overlay_error,
    })
}
