//! Rootless wbuild: who this process is to the kernel, and the early fork that makes an
//! ordinary user root of a user namespace.
//!
//! Run by a non-root user, `main` calls [`enter`] before anything else (a multi-threaded
//! process cannot create a user namespace): the process forks a child that unshares a user
//! and a mount namespace, maps the user's subordinate ID ranges into it with `newuidmap` /
//! `newgidmap` ([`subid`]: ID 0 inside is the user, IDs 1.. their `/etc/subuid` range), and
//! goes on there as root ([`reexec`]); the first process only waits and passes on
//! the exit status and the signals sent to it. Without a subordinate range only the user's own
//! ID is mapped, and [`enter`] says once that files owned by other IDs cannot be kept; every
//! place that would have to change an owner then fails with [`owner_error`] instead.
//!
//! [`privilege`] tells the rest of wbuild which case it runs in: the snapshotter picks its
//! overlay options by it, the sandbox its cgroup and device handling, the store its default
//! root.

mod reexec;
mod subid;

pub use reexec::enter;

/// The environment variable that marks the child in the namespace: `UID:GID:IDS`, the user's IDs
/// outside and how many IDs the namespace maps.
pub const MARKER: &str = "_WBUILD_USERNS";

/// How this process relates to the host's root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Privilege {
    /// Root of the host (the initial user namespace).
    Root,
    /// Inside a user namespace (wbuild's own or one it was started in) that maps `ids` IDs.
    Rootless { ids: u64 },
    /// An ordinary user with no user namespace (the kernel refused one): layers whose files
    /// are not all the user's cannot be unpacked.
    Unprivileged,
}

/// Parses `/proc/self/uid_map`: the number of IDs it maps, and whether it is the initial
/// namespace's identity map of every ID.
fn parse_uid_map(text: &str) -> (u64, bool) {
    let mut total = 0u64;
    let mut identity_all = false;
    for line in text.lines() {
        let f: Vec<u64> = line
            .split_whitespace()
            .filter_map(|n| n.parse().ok())
            .collect();
        if let [inside, outside, count] = f[..] {
            total += count;
            identity_all |= inside == 0 && outside == 0 && count == u64::from(u32::MAX);
        }
    }
    (total, identity_all)
}

/// This process's [`Privilege`], read once.
pub fn privilege() -> Privilege {
    static P: std::sync::OnceLock<Privilege> = std::sync::OnceLock::new();
    *P.get_or_init(|| {
        let map = std::fs::read_to_string("/proc/self/uid_map").unwrap_or_default();
        let (ids, initial) = parse_uid_map(&map);
        // SAFETY: geteuid has no preconditions and cannot fail.
        let euid = unsafe { libc::geteuid() };
        match (initial, euid) {
            (true, 0) => Privilege::Root,
            (true, _) => Privilege::Unprivileged,
            (false, _) => Privilege::Rootless { ids },
        }
    })
}

/// Whether wbuild runs without the host's root (in a user namespace or not at all).
pub fn rootless() -> bool {
    privilege() != Privilege::Root
}

/// Whether the user namespace maps only the user's own ID (no subordinate range).
pub fn single_id() -> bool {
    privilege() == Privilege::Rootless { ids: 1 }
}

/// The error for an owner `uid:gid` that cannot be kept, `what` saying who wants it (e.g.
/// "the entry is owned by"): Some only when wbuild runs with a single mapped ID and the owner is
/// not root.
pub fn owner_error(what: &str, uid: u64, gid: u64) -> Option<anyhow::Error> {
    if !single_id() || (uid == 0 && gid == 0) {
        return None;
    }
    Some(anyhow::anyhow!(
        "{what} {uid}:{gid}, but this user has no subordinate ID range (/etc/subuid, \
         /etc/subgid), so rootless wbuild has no ID but root's; give the user a range (as root: \
         `usermod --add-subuids 100000-165535 --add-subgids 100000-165535 USER`) and install \
         `newuidmap` (Debian: `uidmap`)"
    ))
}

#[cfg(test)]
mod tests {
    use super::parse_uid_map;

    #[test]
    fn uid_maps_tell_the_initial_namespace_from_a_mapped_one() {
        assert_eq!(
            parse_uid_map("         0          0 4294967295\n"),
            (4294967295, true)
        );
        assert_eq!(parse_uid_map("0 1000 1\n1 100000 65536\n"), (65537, false));
        assert_eq!(parse_uid_map("0 1000 1\n"), (1, false));
    }
}
