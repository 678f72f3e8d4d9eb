//! Owns the resource limits of RUN containers (`--memory`, `--pids-limit`): parsing them, checking
//! that this machine's cgroups can enforce them, and what the runtime spec gets.

use std::path::Path;

use anyhow::{Result, bail};

/// Smallest memory limit accepted (Docker's minimum too): less cannot start a container.
pub const MIN_MEMORY: u64 = 6 << 20;

/// Limits for every RUN of a build. None: no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResourceLimits {
    /// Memory of the container's processes, in bytes (cgroup memory limit; no extra swap).
    pub memory: Option<u64>,
    /// Number of processes and threads the container may have at once.
    pub pids: Option<u64>,
    /// `--ulimit`: rlimits of the container's processes (no cgroup needed).
    pub ulimits: super::Ulimits,
}

impl ResourceLimits {
    /// No cgroup limit is set (`ulimits` need none).
    pub fn is_empty(&self) -> bool {
        self.memory.is_none() && self.pids.is_none()
    }

    /// The limits set, for a RUN's cache key (empty when none).
    pub fn describe_ulimits(&self) -> Vec<String> {
        super::ulimit::describe(&self.ulimits)
    }

    /// Fails with the reason when this machine cannot enforce the limits: rootless (see
    /// [`super::rootless::check_limits`]), or no cgroup controller for them.
    pub fn check_available(&self) -> Result<()> {
        if self.is_empty() {
            return Ok(());
        }
        if crate::userns::rootless() {
            return super::rootless::check_limits(self.memory.is_some(), self.pids.is_some());
        }
        for (wanted, controller, flag) in [
            (self.memory.is_some(), "memory", "--memory"),
            (self.pids.is_some(), "pids", "--pids-limit"),
        ] {
            if wanted && !controller_available(Path::new("/sys/fs/cgroup"), controller) {
                bail!(
                    "{flag} needs the cgroup `{controller}` controller, which this machine does \
                     not offer (neither /sys/fs/cgroup/{controller} of cgroup v1 nor `{controller}` \
                     in /sys/fs/cgroup/cgroup.controllers of cgroup v2)"
                );
            }
        }
        Ok(())
    }
}

/// Whether `controller` is usable under the cgroup mount `root`: a v2 unified hierarchy that
/// lists it in `cgroup.controllers`, or a v1 hierarchy mounted at `root/<controller>`.
pub fn controller_available(root: &Path, controller: &str) -> bool {
    if let Ok(list) = std::fs::read_to_string(root.join("cgroup.controllers")) {
        return list.split_whitespace().any(|c| c == controller);
    }
    root.join(controller).join("cgroup.procs").is_file()
}

/// `--memory`: bytes, or a number with a `k`, `m`, `g` suffix (powers of 1024, `b` allowed after
/// it, any case), as Docker accepts.
pub fn parse_memory(text: &str) -> Result<u64> {
    let t = text.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (digits, shift) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 10),
        Some('m') => (&t[..t.len() - 1], 20),
        Some('g') => (&t[..t.len() - 1], 30),
        _ => (t, 0),
    };
    let n: u64 = digits.parse().map_err(|_| {
        anyhow::anyhow!("--memory {text:?}: expected bytes, e.g. 268435456, 256m or 1g")
    })?;
    let bytes = n
        .checked_mul(1 << shift)
        .filter(|b| *b <= i64::MAX as u64)
        .ok_or_else(|| anyhow::anyhow!("--memory {text:?} is too large"))?;
    if bytes < MIN_MEMORY {
        bail!("--memory {text:?}: the minimum is 6 MiB (6m)");
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_sizes_parse_like_docker() {
        assert_eq!(parse_memory("268435456").unwrap(), 256 << 20);
        assert_eq!(parse_memory("256m").unwrap(), 256 << 20);
        assert_eq!(parse_memory("256MB").unwrap(), 256 << 20);
        assert_eq!(parse_memory("1g").unwrap(), 1 << 30);
        assert_eq!(parse_memory("8192k").unwrap(), 8 << 20);
        for bad in ["", "m", "12x", "-5m", "1m", "99999999999g"] {
            assert!(parse_memory(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn controllers_are_found_in_v1_and_v2_layouts() {
        let v2 = tempfile::tempdir().unwrap();
        std::fs::write(v2.path().join("cgroup.controllers"), "cpu io memory pids\n").unwrap();
        assert!(controller_available(v2.path(), "pids"));
        assert!(!controller_available(v2.path(), "hugetlb"));
        let v1 = tempfile::tempdir().unwrap();
        std::fs::create_dir(v1.path().join("memory")).unwrap();
        std::fs::write(v1.path().join("memory/cgroup.procs"), "").unwrap();
        assert!(controller_available(v1.path(), "memory"));
        assert!(!controller_available(v1.path(), "pids"));
    }
}
