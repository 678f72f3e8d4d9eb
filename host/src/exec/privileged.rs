//! What `RUN --security=insecure` (with `--allow security.insecure`) changes in the runtime spec,
//! as `docker run --privileged` does: every capability wbuild has, the host's devices (created in the
//! container's /dev, all allowed by the device cgroup), /sys writable, nothing masked or
//! read-only under /proc. wbuild's sandbox sets no seccomp or AppArmor profile in any mode.

use std::path::Path;

use anyhow::{Context, Result};
use oci_spec::runtime::{Capability, LinuxDevice, LinuxDeviceBuilder, LinuxDeviceType};

/// Every capability Linux has, by number (as runc and oci-spec name them).
const ALL_CAPS: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// wbuild's own capability bounding set (`CapBnd` of /proc/self/status): a container cannot
/// get more. All ones if it cannot be read.
fn own_bounding_set() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapBnd:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(u64::MAX)
}

/// The capabilities of a privileged RUN: every one in `bounding` (as Docker's `--privileged`
/// takes every capability the daemon has).
pub(crate) fn all_capabilities() -> Result<Vec<Capability>> {
    capabilities_in(own_bounding_set())
}

fn capabilities_in(bounding: u64) -> Result<Vec<Capability>> {
    ALL_CAPS
        .iter()
        .enumerate()
        .filter(|(bit, _)| bounding & (1 << bit) != 0)
        .map(|(_, c)| {
            serde_json::from_value::<Capability>(serde_json::Value::String(c.to_string()))
                .with_context(|| format!("capability {c}"))
        })
        .collect()
}

/// /dev entries that the spec sets up itself (or that belong to the host's terminal).
const SKIP: [&str; 6] = ["pts", "shm", "mqueue", "console", "ptmx", "fd"];

fn major(dev: u64) -> i64 {
    (((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff)) as i64
}

fn minor(dev: u64) -> i64 {
    ((dev & 0xff) | ((dev >> 12) & !0xff)) as i64
}

/// The host's character and block devices under `dev` (recursively, without the entries the
/// spec mounts itself), for the container's /dev.
pub(crate) fn host_devices(dev: &Path) -> Result<Vec<LinuxDevice>> {
    let mut out = Vec::new();
    walk(dev, dev, &mut out)?;
    out.sort_by(|a, b| a.path().cmp(b.path()));
    Ok(out)
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<LinuxDevice>) -> Result<()> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(_) if dir != root => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("listing {}", dir.display())),
    };
    for e in rd.flatten() {
        let path = e.path();
        if dir == root && SKIP.iter().any(|s| e.file_name() == *s) {
            continue;
        }
        let Ok(md) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        let ft = md.file_type();
        let typ = if ft.is_char_device() {
            LinuxDeviceType::C
        } else if ft.is_block_device() {
            LinuxDeviceType::B
        } else {
            if ft.is_dir() {
                walk(root, &path, out)?;
            }
            continue;
        };
        let rel = path.strip_prefix(root).unwrap_or(&path);
        out.push(
            LinuxDeviceBuilder::default()
                .path(Path::new("/dev").join(rel))
                .typ(typ)
                .major(major(md.rdev()))
                .minor(minor(md.rdev()))
                .file_mode(md.mode() & 0o7777)
                .uid(md.uid())
                .gid(md.gid())
                .build()?,
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_capability_is_known() {
        let caps = capabilities_in(u64::MAX).unwrap();
        assert_eq!(caps.len(), 41);
        assert_eq!(caps[21], Capability::SysAdmin);
        assert_eq!(caps[40], Capability::CheckpointRestore);
        let some = capabilities_in((1 << 21) | (1 << 24)).unwrap();
        assert_eq!(some, [Capability::SysAdmin, Capability::SysResource]);
    }

    #[test]
    fn device_numbers_decode_like_glibc() {
        let dev = libc::makedev(259, 65539);
        assert_eq!((major(dev), minor(dev)), (259, 65539));
        assert_eq!((major(0x0103), minor(0x0103)), (1, 3));
    }

    #[test]
    fn host_devices_include_null() {
        let devs = host_devices(Path::new("/dev")).unwrap();
        let null = devs
            .iter()
            .find(|d| d.path() == Path::new("/dev/null"))
            .expect("/dev/null");
        assert_eq!((null.major(), null.minor()), (1, 3));
        assert!(!devs.iter().any(|d| d.path().starts_with("/dev/pts")));
    }
}
