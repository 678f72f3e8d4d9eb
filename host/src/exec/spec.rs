//! The OCI runtime spec (config.json) of a RUN container, with Docker's defaults: capabilities,
//! namespaces (the network one per [`Network`]), /proc, /dev, /sys, masked and read-only paths,
//! NOFILE rlimit; a privileged RUN gets what [`super::privileged`] adds.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use oci_spec::runtime::{
    Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxDeviceCgroupBuilder,
    LinuxMemoryBuilder, LinuxNamespaceBuilder, LinuxNamespaceType, LinuxPidsBuilder,
    LinuxResourcesBuilder, Mount, MountBuilder, ProcessBuilder, RootBuilder, Spec, SpecBuilder,
    UserBuilder,
};

use super::{ExtraMount, Network, ResolvedUser, RunSpec};

/// Docker's default capability set.
pub(crate) const DEFAULT_CAPS: [Capability; 14] = [
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::Mknod,
    Capability::NetRaw,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
    Capability::AuditWrite,
];

const MASKED_PATHS: [&str; 11] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

const READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Docker's NOFILE limit (dockerd/containerd run with LimitNOFILE=1048576), capped at our own hard
/// limit and fs.nr_open: runc sets rlimits after dropping CAP_SYS_RESOURCE, so it cannot raise them.
fn nofile_limit() -> u64 {
    let mut cur = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass.
    let own_hard = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut cur) } == 0 {
        cur.rlim_max
    } else {
        1024
    };
    let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(1_048_576);
    nr_open.min(1_048_576).min(own_hard)
}

fn mount(dest: &str, typ: &str, source: &str, options: &[&str]) -> Result<Mount> {
    Ok(MountBuilder::default()
        .destination(dest)
        .typ(typ)
        .source(source)
        .options(options.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .build()?)
}

/// Files in the bundle that the spec bind-mounts.
pub(crate) struct BundleFiles {
    pub hosts: PathBuf,
    pub resolv_conf: PathBuf,
    /// One per `ExtraMount::File`, in order.
    pub extra_files: Vec<PathBuf>,
}

/// Build config.json for `run` with rootfs at `rootfs`.
pub(crate) fn build_spec(
    run: &RunSpec,
    user: &ResolvedUser,
    rootfs: &Path,
    files: &BundleFiles,
) -> Result<Spec> {
    let caps: oci_spec::runtime::Capabilities = if run.privileged {
        super::privileged::all_capabilities()?.into_iter().collect()
    } else {
        DEFAULT_CAPS.iter().copied().collect()
    };
    // No ambient set (the builder's default has three): a non-root USER then holds no
    // capabilities, as in Docker and BuildKit.
    let capabilities = LinuxCapabilitiesBuilder::default()
        .ambient(oci_spec::runtime::Capabilities::new())
        .bounding(caps.clone())
        .effective(caps.clone())
        .inheritable(caps.clone())
        .permitted(caps)
        .build()?;
    let env: Vec<String> = run.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let cwd = if run.cwd.is_empty() {
        "/".to_string()
    } else {
        run.cwd.clone()
    };
    let limit = nofile_limit();
    let process = ProcessBuilder::default()
        .terminal(false)
        .args(run.args.clone())
        .env(env)
        .cwd(cwd)
        .user(
            UserBuilder::default()
                .uid(user.uid)
                .gid(user.gid)
                .additional_gids(user.additional_gids.clone())
                .build()?,
        )
        .capabilities(capabilities)
        .no_new_privileges(false)
        .rlimits(super::ulimit::rlimits(&run.limits.ulimits, limit)?)
        .build()?;

    let mut mounts = vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"])?,
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        )?,
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        )?,
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        )?,
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        )?,
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &[
                "nosuid",
                "noexec",
                "nodev",
                if run.privileged { "rw" } else { "ro" },
            ],
        )?,
        bind("/etc/hosts", &files.hosts, true)?,
        bind("/etc/resolv.conf", &files.resolv_conf, true)?,
    ];
    let mut file_iter = files.extra_files.iter();
    for m in &run.mounts {
        mounts.push(match m {
            ExtraMount::Bind {
                source,
                target,
                readonly,
            } => bind(target, source, *readonly)?,
            ExtraMount::Tmpfs { target, size } => {
                let mut opts = vec![
                    "nosuid".to_string(),
                    "nodev".to_string(),
                    "mode=1777".to_string(),
                ];
                if let Some(size) = size {
                    opts.push(format!("size={size}"));
                }
                MountBuilder::default()
                    .destination(target)
                    .typ("tmpfs")
                    .source("tmpfs")
                    .options(opts)
                    .build()?
            }
            ExtraMount::File { target, .. } => {
                let src = file_iter
                    .next()
                    .context("bundle file missing for a file mount")?;
                bind(target, src, true)?
            }
        });
    }

    let namespaces = vec![
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Mount,
    ];
    let mut namespaces = namespaces
        .into_iter()
        .map(|t| LinuxNamespaceBuilder::default().typ(t).build())
        .collect::<std::result::Result<Vec<_>, _>>()?;
    match &run.network {
        Network::None => namespaces.push(
            LinuxNamespaceBuilder::default()
                .typ(LinuxNamespaceType::Network)
                .build()?,
        ),
        Network::Host => {}
        // runc joins the build's namespace (setns) instead of making one.
        Network::UserMode { netns } => namespaces.push(
            LinuxNamespaceBuilder::default()
                .typ(LinuxNamespaceType::Network)
                .path(netns)
                .build()?,
        ),
    }
    let mut resources = LinuxResourcesBuilder::default();
    resources = resources.devices(vec![
        LinuxDeviceCgroupBuilder::default()
            .allow(run.privileged)
            .access("rwm")
            .build()?,
    ]);
    if let Some(bytes) = run.limits.memory {
        let bytes = i64::try_from(bytes).context("--memory is too large")?;
        // swap is memory + swap in the OCI spec: equal to the limit means no swap on top, as
        // Docker's default --memory-swap; a step over the limit is killed, swap or not.
        resources = resources.memory(
            LinuxMemoryBuilder::default()
                .limit(bytes)
                .swap(bytes)
                .build()?,
        );
    }
    if let Some(n) = run.limits.pids {
        let n = i64::try_from(n).context("--pids-limit is too large")?;
        resources = resources.pids(LinuxPidsBuilder::default().limit(n).build()?);
    }
    let resources = resources.build()?;
    let (masked, readonly): (&[&str], &[&str]) = if run.privileged {
        (&[], &[])
    } else {
        (&MASKED_PATHS, &READONLY_PATHS)
    };
    let mut linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .masked_paths(masked.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .readonly_paths(readonly.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .resources(resources);
    if run.privileged {
        linux = linux.devices(super::privileged::host_devices(Path::new("/dev"))?);
    }
    let linux = linux.build()?;

    Ok(SpecBuilder::default()
        .version("1.0.2")
        .root(
            RootBuilder::default()
                .path(rootfs)
                .readonly(false)
                .build()?,
        )
        .process(process)
        .hostname(run.hostname.clone())
        .mounts(mounts)
        .linux(linux)
        .build()?)
}

fn bind(dest: &str, source: &Path, readonly: bool) -> Result<Mount> {
    let opts = vec![
        "rbind".to_string(),
        "rprivate".to_string(),
        if readonly { "ro" } else { "rw" }.to_string(),
    ];
    Ok(MountBuilder::default()
        .destination(dest)
        .typ("bind")
        .source(source)
        .options(opts)
        .build()?)
}
