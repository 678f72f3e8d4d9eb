//! Owns the check of a RUN's working directory against the container's `/proc`: a WORKDIR of
//! `/proc/self/fd/N` (or a symlink to it) is how CVE-2024-21626 reached the host through a
//! descriptor runc leaked, so the host refuses any working directory that resolves into `/proc`,
//! whatever runc version runs the step.

use std::path::Path;

use anyhow::{Result, bail};

use crate::sys::{Missing, resolve_in_root};

/// Resolves `path` as the container will see it: against `rootfs`, following the image's
/// symlinks (absolute ones from the container's root, never out of it) and continuing lexically
/// through components the image does not have. Returns the absolute container path.
pub(crate) fn resolve_container_path(rootfs: &Path, path: &str) -> Result<String> {
    let comps =
        resolve_in_root(rootfs, path, true, Missing::Lexical, "the image")?.unwrap_or_default();
    Ok(format!("/{}", comps.join("/")))
}

/// Fails when `cwd` resolves into the container's `/proc`.
pub(crate) fn check_cwd(rootfs: &Path, cwd: &str) -> Result<()> {
    let resolved = resolve_container_path(rootfs, cwd)?;
    if resolved == "/proc" || resolved.starts_with("/proc/") {
        let via = if resolved == cwd {
            String::new()
        } else {
            format!(" (it resolves to {resolved})")
        };
        bail!(
            "the working directory {cwd}{via} is inside /proc, where the sandbox mounts the \
             container's process information; a RUN may not start there"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_links_inside_the_root_and_refuses_proc() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::create_dir_all(r.join("proc")).unwrap();
        std::fs::create_dir_all(r.join("srv/app")).unwrap();
        std::os::unix::fs::symlink("/proc/self/fd/7", r.join("wd")).unwrap();
        std::os::unix::fs::symlink("../../../../proc", r.join("srv/up")).unwrap();
        std::os::unix::fs::symlink("/srv/app", r.join("app")).unwrap();
        assert_eq!(resolve_container_path(r, "/app/x").unwrap(), "/srv/app/x");
        assert_eq!(resolve_container_path(r, "/srv/up/1").unwrap(), "/proc/1");
        assert_eq!(resolve_container_path(r, "/a/../../b").unwrap(), "/b");
        check_cwd(r, "/app").unwrap();
        check_cwd(r, "/").unwrap();
        check_cwd(r, "/processes").unwrap();
        for bad in [
            "/proc",
            "/proc/self/fd/7",
            "/wd",
            "/wd/sub",
            "/srv/up/self/cwd",
        ] {
            let e = check_cwd(r, bad).unwrap_err().to_string();
            assert!(e.contains("inside /proc"), "{bad}: {e}");
        }
        std::os::unix::fs::symlink("/loop", r.join("loop")).unwrap();
        assert!(check_cwd(r, "/loop").is_err());
    }
}
