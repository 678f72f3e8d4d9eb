//! Sandboxed RUN: runs one command in a container whose rootfs is an overlay of read-only
//! layers plus a writable upper dir, and streams its combined stdout/stderr back.
//!
//! Layout: [`spec`] builds the OCI runtime spec, the rootfs is an overlay mounted by
//! [`crate::snapshot`], [`detect`] probes the host, [`user`] resolves `USER` strings against the
//! rootfs, [`runner`] runs the bundle — with [`sandbox`], wbuild's own light runtime, or with
//! runc for what only runc does (cgroup limits, privileged) — and cleans up on every path, [`netns`] owns a build's shared
//! network namespace and its user-mode networking helper, [`privileged`] what
//! `RUN --security=insecure` adds to the spec, [`rootless`] what differs without the host's root.

pub mod binfmt;
mod cwd;
mod detect;
mod limits;
pub mod netns;
mod privileged;
mod rootless;
mod runner;
mod sandbox;
mod spec;
mod stale;
mod ulimit;
mod user;

#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::time::Duration;

pub(crate) use cwd::resolve_container_path;
pub use limits::{ResourceLimits, parse_memory};
pub use runner::run;
pub use sandbox::entry as sandbox_entry;
pub use stale::{StaleRun, find_stale, remove_stale};
pub use ulimit::{Ulimits, parse_ulimit};
pub use user::{ResolvedUser, resolve_user};

/// Network mode of a RUN step.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Network {
    /// A fresh network namespace with only `lo` (Docker's `--network=none`).
    #[default]
    None,
    /// Share the host's network namespace; the host's /etc/resolv.conf is used.
    Host,
    /// Join the build's network namespace at this path (a [`netns::UserNetwork`]): outbound
    /// network through the helper, whose DNS forwarder /etc/resolv.conf names.
    UserMode { netns: PathBuf },
}

/// An extra mount inside the container (RUN --mount).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExtraMount {
    /// Bind a host directory or file at `target`.
    Bind {
        source: PathBuf,
        target: String,
        readonly: bool,
    },
    /// A fresh tmpfs at `target`, optionally limited to `size` bytes.
    Tmpfs { target: String, size: Option<u64> },
    /// A file with the given content at `target` (read-only bind of a file in the bundle).
    File {
        target: String,
        content: Vec<u8>,
        mode: u32,
        /// Owner of the file inside the container.
        uid: u32,
        gid: u32,
    },
}

/// Everything needed to run one RUN step.
#[derive(Debug, Clone)]
pub struct RunSpec {
    /// Directory for bundles and runc state (`<state>/bundles`, `<state>/runc`).
    pub state_dir: PathBuf,
    /// Read-only layers, top first. May be empty (scratch).
    pub rootfs_lowers: Vec<PathBuf>,
    /// Overlay upper dir: receives every change.
    pub upper: PathBuf,
    /// Overlay work dir (same filesystem as `upper`, empty).
    pub work: PathBuf,
    /// argv; `args[0]` is resolved in the container's PATH by runc.
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Working directory (absolute); created if missing, like Docker's WORKDIR.
    pub cwd: String,
    /// `uid[:gid]` or `name[:group]` resolved in the rootfs /etc/passwd and /etc/group; empty = root.
    pub user: String,
    pub hostname: String,
    pub network: Network,
    pub mounts: Vec<ExtraMount>,
    /// cgroup limits (`--memory`, `--pids-limit`).
    pub limits: ResourceLimits,
    /// Lines added to /etc/hosts (`--add-host NAME:IP`), in order.
    pub extra_hosts: Vec<(String, std::net::IpAddr)>,
    /// `RUN --security=insecure` (allowed by the user): all capabilities, writable /sys, the
    /// host's devices, no masked paths, as `docker run --privileged`.
    pub privileged: bool,
}

/// Result of a finished RUN step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOutcome {
    /// Exit status of the command (128+signal if it was killed by a signal).
    pub exit_code: i32,
    pub duration: Duration,
}

impl RunOutcome {
    pub fn success(&self) -> bool {
        self.exit_code == 0
    }
}
