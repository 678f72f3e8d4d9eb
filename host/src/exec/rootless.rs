//! What RUN steps can and cannot do when wbuild is rootless (root of its own user namespace,
//! see [`crate::userns`]): runc runs the container inside that namespace, so the container's
//! root is the namespace's root and its IDs are the user's subordinate range; runc binds the
//! device nodes instead of creating them. What needs the host's root is refused here with the
//! reason, before the first step: cgroup limits (this machine's cgroups are not delegated to the
//! user), user-mode networking without access to `/dev/net/tun`, and sysfs in the host's
//! network namespace (a bind of `/sys` instead).

use std::path::Path;

use anyhow::{Result, bail};

use crate::userns::{Privilege, privilege};

/// Whether RUN containers start from a user namespace that is not the host's.
pub fn active() -> bool {
    matches!(privilege(), Privilege::Rootless { .. })
}

/// Whether the light runtime ([`super::sandbox`]) can run RUN steps here rootless: root of
/// wbuild's user namespace over a subordinate range (a one-ID map denies setgroups).
pub fn light_runtime_ok() -> bool {
    // SAFETY: geteuid has no preconditions.
    active() && !crate::userns::single_id() && unsafe { libc::geteuid() } == 0
}

/// `--memory` / `--pids-limit` rootless: refused, since wbuild gives rootless RUN steps no
/// cgroup (it would need a cgroup v2 subtree delegated to the user, e.g. by systemd).
pub fn check_limits(memory: bool, pids: bool) -> Result<()> {
    if !memory && !pids {
        return Ok(());
    }
    let flags = match (memory, pids) {
        (true, true) => "--memory and --pids-limit",
        (true, false) => "--memory",
        _ => "--pids-limit",
    };
    let why = if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        "rootless wbuild does not create cgroups, even in a cgroup v2 subtree delegated to the \
         user"
    } else {
        "this machine has cgroup v1, which cannot be delegated to an ordinary user"
    };
    bail!(
        "{flags} cannot be honoured rootless: the limits need a cgroup, and {why}; run the \
         build as root or drop the limits"
    )
}

/// The user a RUN runs as, when only the user's own ID is mapped: root, or a clear error.
pub fn check_user(user: &super::ResolvedUser) -> Result<()> {
    match crate::userns::owner_error("the RUN's user is", user.uid.into(), user.gid.into()) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// The default network rootless: slirp4netns opens `/dev/net/tun` as the user, so the user
/// must be able to.
pub fn check_network() -> Result<()> {
    match privilege() {
        Privilege::Root => Ok(()),
        Privilege::Unprivileged => bail!(
            "the default RUN network needs a network namespace, which an ordinary user gets \
             only inside a user namespace, and the kernel refused wbuild one; build with \
             `--network none`"
        ),
        Privilege::Rootless { .. } => {
            let tun = c"/dev/net/tun";
            // SAFETY: access with a valid C string.
            if unsafe { libc::access(tun.as_ptr(), libc::R_OK | libc::W_OK) } != 0 {
                let err = std::io::Error::last_os_error();
                bail!(
                    "the default RUN network needs /dev/net/tun (user-mode networking), which \
                     this user cannot open ({err}); as root, make it usable for users \
                     (`chmod 0666 /dev/net/tun`, Debian's default), or build with \
                     `--network none`"
                );
            }
            Ok(())
        }
    }
}
