//! Overlayfs: mounting a writable overlay (a RUN's rootfs) or a read-only one (a stack's merged
//! view), unmounting, the mount table below a path, and the probe that tells whether this
//! process can mount kernel overlays (with `userxattr` inside a user namespace); mounts go
//! through fuse-overlayfs instead when [`super::probe`] chose it.

use std::ffi::CString;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// Options every wbuild overlay mount uses (see DESIGN.md, Snapshots).
const OVERLAY_OPTS: &str = "index=off,redirect_dir=off,metacopy=off";
/// The same inside a user namespace: `user.overlay.*` xattrs, and `redirect_dir=nofollow`
/// (`off` means `follow` on kernels built to always follow, which `userxattr` refuses).
const USERNS_OVERLAY_OPTS: &str = "index=off,redirect_dir=nofollow,metacopy=off,userxattr";

fn overlay_opts() -> &'static str {
    if crate::userns::rootless() {
        USERNS_OVERLAY_OPTS
    } else {
        OVERLAY_OPTS
    }
}

fn cstr(p: &Path) -> Result<CString> {
    crate::sys::cstr(p).with_context(|| format!("path {} contains NUL", p.display()))
}

pub(super) fn check_overlay_path(p: &Path) -> Result<String> {
    let s = p
        .to_str()
        .with_context(|| format!("overlay path {} is not UTF-8", p.display()))?;
    if s.contains([':', ',', '\\']) || !p.is_absolute() {
        bail!("overlay path {s} must be absolute and must not contain ':', ',' or '\\'");
    }
    Ok(s.to_string())
}

/// The `lowerdir=` option of `lowers` (top first).
pub(super) fn lowerdir(lowers: &[PathBuf]) -> Result<String> {
    Ok(lowers
        .iter()
        .map(|l| check_overlay_path(l))
        .collect::<Result<Vec<_>>>()?
        .join(":"))
}

/// mount(2) an overlay with option string `data` and `flags` at `target`.
fn mount(data: &str, flags: libc::c_ulong, target: &Path) -> Result<()> {
    let data_c = CString::new(data)?;
    let target_c = cstr(target)?;
    let fstype = c"overlay";
    // SAFETY: all pointers are valid NUL-terminated strings for the duration of the call.
    let rc = unsafe {
        libc::mount(
            fstype.as_ptr(),
            target_c.as_ptr(),
            fstype.as_ptr(),
            flags,
            data_c.as_ptr().cast(),
        )
    };
    if rc != 0 {
        let err = std::io::Error::last_os_error();
        bail!("mounting overlay at {} ({data}): {err}", target.display());
    }
    Ok(())
}

/// Mount an overlay of `lowers` (top first) + `upper`/`work` at `target`.
pub fn mount_overlay(lowers: &[PathBuf], upper: &Path, work: &Path, target: &Path) -> Result<()> {
    if lowers.is_empty() {
        bail!("overlay needs at least one lower dir");
    }
    match super::probe::current() {
        super::probe::Kind::FuseOverlayfs(fuse) => {
            return super::probe::mount_fuse(&fuse, lowers, Some((upper, work)), target);
        }
        // The copying snapshotter has one lower: the flattened snapshot.
        super::probe::Kind::Copy if lowers.len() == 1 => {
            return super::treediff::mount_copy(&lowers[0], upper, target);
        }
        _ => {}
    }
    let data = format!(
        "lowerdir={},upperdir={},workdir={},{}",
        lowerdir(lowers)?,
        check_overlay_path(upper)?,
        check_overlay_path(work)?,
        overlay_opts()
    );
    mount(&data, 0, target)
}

/// Mount a read-only overlay of `lowers` (top first; overlayfs needs at least two without an
/// upper dir) at `target`: the merged filesystem of a layer stack, for reading.
pub fn mount_overlay_readonly(lowers: &[PathBuf], target: &Path) -> Result<()> {
    if lowers.len() < 2 {
        bail!("a read-only overlay needs at least two lower dirs");
    }
    if let super::probe::Kind::FuseOverlayfs(fuse) = super::probe::current() {
        return super::probe::mount_fuse(&fuse, lowers, None, target);
    }
    let data = format!("lowerdir={},{}", lowerdir(lowers)?, overlay_opts());
    mount(&data, libc::MS_RDONLY, target)
}

/// Unmount `target`; lazily if a plain unmount reports it busy.
pub fn unmount(target: &Path) -> Result<()> {
    if let Some(done) = super::treediff::finish(target) {
        return done;
    }
    let c = cstr(target)?;
    // SAFETY: valid C string.
    if unsafe { libc::umount2(c.as_ptr(), 0) } == 0 {
        return Ok(());
    }
    let err = std::io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::EBUSY) {
        // SAFETY: valid C string.
        if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } == 0 {
            return Ok(());
        }
    }
    bail!(
        "unmounting {}: {}",
        target.display(),
        std::io::Error::last_os_error()
    )
}

/// Mount points (field 5 of /proc/self/mountinfo, octal escapes decoded) at or below `prefix`.
pub fn mounts_under(prefix: &Path) -> Result<Vec<PathBuf>> {
    let info =
        std::fs::read_to_string("/proc/self/mountinfo").context("reading /proc/self/mountinfo")?;
    let mut out = Vec::new();
    for line in info.lines() {
        let Some(mp) = line.split(' ').nth(4) else {
            continue;
        };
        let p = PathBuf::from(unescape_mountinfo(mp));
        if p.starts_with(prefix) {
            out.push(p);
        }
    }
    Ok(out)
}

fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether this process can mount a kernel overlay (a test mount in the temp dir).
#[cfg(test)]
pub(crate) fn probe_overlay() -> Result<()> {
    probe_overlay_in(&std::env::temp_dir())
}

/// A test overlay mount under `dir`: a lower file visible, a write lands in the upper.
pub(crate) fn probe_overlay_in(dir: &Path) -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("not root (of the host or of a user namespace)");
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let dir = tempfile::Builder::new()
        .prefix("wbuild-overlay-probe")
        .tempdir_in(dir)
        .context("creating probe dir")?;
    let d = dir.path();
    for sub in ["lower", "upper", "work", "merged"] {
        std::fs::create_dir(d.join(sub))?;
    }
    std::fs::write(d.join("lower/f"), b"x")?;
    mount_overlay(
        &[d.join("lower")],
        &d.join("upper"),
        &d.join("work"),
        &d.join("merged"),
    )?;
    let check = (|| -> Result<()> {
        if std::fs::read(d.join("merged/f"))? != b"x" {
            bail!("lower file not visible through the overlay");
        }
        std::fs::write(d.join("merged/g"), b"y")?;
        std::fs::remove_file(d.join("merged/f"))?;
        Ok(())
    })();
    unmount(&d.join("merged"))?;
    check?;
    if !d.join("upper/g").exists() {
        bail!("write did not land in the upper dir");
    }
    Ok(())
}
