//! Drives one RUN: bundle dir, overlay rootfs, config.json, then the light runtime
//! ([`super::sandbox`]) or `runc run` with piped output, and on every path (a guard) `runc
//! delete` where runc may have left a container, mount-point stub removal, unmount and bundle
//! removal.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};

use super::detect::find_runc;
use super::spec::{BundleFiles, build_spec};
use super::{ExtraMount, Network, RunOutcome, RunSpec};
use crate::snapshot::{mount_overlay, mounts_under, unmount};

static COUNTER: AtomicU64 = AtomicU64::new(0);

fn unique_id() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "wbuild-{}-{}-{nanos:08x}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Owns everything a run creates on the host and removes it in [`Guard::cleanup`] or on drop.
struct Guard {
    runc: PathBuf,
    runc_root: PathBuf,
    id: String,
    bundle: PathBuf,
    rootfs: PathBuf,
    mounted: bool,
    started: bool,
    done: bool,
}

impl Guard {
    fn cleanup(&mut self) -> Result<()> {
        if self.done {
            return Ok(());
        }
        self.done = true;
        if self.started {
            // The container is normally gone already; --force also kills leftovers.
            let _ = Command::new(&self.runc)
                .arg("--root")
                .arg(&self.runc_root)
                .args(["delete", "--force", &self.id])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        if self.mounted {
            let _s = crate::progress::profile::span("run: umount");
            unmount(&self.rootfs)?;
            self.mounted = false;
        }
        // Never remove_dir_all across a mount: that would delete layer contents.
        let left = {
            let _s = crate::progress::profile::span("run: mountinfo");
            mounts_under(&self.bundle)?
        };
        let _s = crate::progress::profile::span("run: rm bundle");
        if !left.is_empty() {
            bail!(
                "mounts left under {}: {left:?}; not removing the bundle",
                self.bundle.display()
            );
        }
        std::fs::remove_dir_all(&self.bundle)
            .with_context(|| format!("removing bundle {}", self.bundle.display()))
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Err(e) = self.cleanup() {
            eprintln!("wbuild: cleanup of RUN container {} failed: {e:#}", self.id);
        }
    }
}

/// Relative, normalized form of an absolute container path; `..` is rejected.
fn rel_container_path(p: &str) -> Result<PathBuf> {
    let mut out = PathBuf::new();
    for c in Path::new(p).components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(n) => out.push(n),
            _ => bail!("container path {p:?} must be absolute without '..'"),
        }
    }
    if !p.starts_with('/') {
        bail!("container path {p:?} must be absolute");
    }
    Ok(out)
}

/// The first missing component of `rel` under `rootfs` (what runc will create as a mount point),
/// or None if it exists or its resolution would pass through a symlink/non-directory.
fn first_missing(rootfs: &Path, rel: &Path) -> Option<PathBuf> {
    let mut cur = PathBuf::new();
    for c in rel.components() {
        cur.push(c);
        match std::fs::symlink_metadata(rootfs.join(&cur)) {
            Ok(m) if m.is_dir() => continue,
            Ok(_) => return None,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Some(cur),
            Err(_) => return None,
        }
    }
    None
}

/// Remove `path` if it holds only empty dirs and empty files (a runc mount-point stub), never
/// removing `keep` or its ancestors. Returns whether it was removed.
fn remove_empty_tree(path: &Path, keep: &Path) -> bool {
    let Ok(m) = std::fs::symlink_metadata(path) else {
        return false;
    };
    if m.is_dir() {
        let mut all = true;
        if let Ok(rd) = std::fs::read_dir(path) {
            for e in rd.flatten() {
                all &= remove_empty_tree(&e.path(), keep);
            }
        } else {
            return false;
        }
        all && !keep.starts_with(path) && std::fs::remove_dir(path).is_ok()
    } else if m.is_file() && m.len() == 0 {
        std::fs::remove_file(path).is_ok()
    } else {
        false
    }
}

fn remove_stubs(rootfs: &Path, stubs: &mut [PathBuf], cwd: &Path) {
    stubs.sort_by_key(|s| std::cmp::Reverse(s.components().count()));
    let keep = rootfs.join(cwd);
    'stub: for s in stubs.iter() {
        // The container has exited, so nothing can swap a component for a symlink meanwhile.
        let mut cur = rootfs.to_path_buf();
        let comps: Vec<_> = s.components().collect();
        for c in &comps[..comps.len().saturating_sub(1)] {
            cur.push(c);
            match std::fs::symlink_metadata(&cur) {
                Ok(m) if m.is_dir() => {}
                _ => continue 'stub,
            }
        }
        remove_empty_tree(&rootfs.join(s), &keep);
    }
}

/// Whether every component of `rel` under `base` is a real directory (no symlinks).
fn real_dir_chain(base: &Path, rel: &Path) -> bool {
    let mut cur = base.to_path_buf();
    rel.components().all(|c| {
        cur.push(c);
        std::fs::symlink_metadata(&cur)
            .map(|m| m.is_dir())
            .unwrap_or(false)
    })
}

/// Parent dirs of `stubs` that the upper does not have yet: creating a stub copies them up, so
/// they are removed from the upper again afterwards if they are still empty.
fn upper_parents_to_prune(upper: &Path, stubs: &[PathBuf]) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    for s in stubs {
        for a in s.ancestors().skip(1) {
            if a.as_os_str().is_empty() || out.iter().any(|o| o == a) {
                continue;
            }
            if std::fs::symlink_metadata(upper.join(a)).is_err() {
                out.push(a.to_path_buf());
            }
        }
    }
    out.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    out
}

fn prune_upper_parents(upper: &Path, parents: &[PathBuf]) {
    for p in parents {
        if real_dir_chain(upper, p) {
            let full = upper.join(p);
            if std::fs::read_dir(&full)
                .map(|mut d| d.next().is_none())
                .unwrap_or(false)
            {
                let _ = std::fs::remove_dir(&full);
            }
        }
    }
}

/// /etc/hosts of a RUN: localhost, the hostname, then the `--add-host` entries.
fn hosts_file(hostname: &str, extra: &[(String, std::net::IpAddr)]) -> String {
    let mut out =
        format!("127.0.0.1\tlocalhost {hostname}\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    for (name, ip) in extra {
        out += &format!("{ip}\t{name}\n");
    }
    out
}

/// Error lines (`"level":"error"`) from runc's JSON log.
fn runc_errors(log: &Path) -> Vec<String> {
    let Ok(text) = std::fs::read_to_string(log) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v.get("level").and_then(|l| l.as_str()) == Some("error"))
        .filter_map(|v| v.get("msg").and_then(|m| m.as_str()).map(str::to_string))
        .collect()
}

/// `runc run` of the bundle, output to `out`, dying with wbuild.
fn runc_command(
    runc: &Path,
    runc_root: &Path,
    log: &Path,
    bundle: &Path,
    id: &str,
    out: &std::io::PipeWriter,
) -> Result<Command> {
    let mut cmd = Command::new(runc);
    cmd.arg("--root")
        .arg(runc_root)
        .arg("--log")
        .arg(log)
        .args(["--log-format", "json", "run", "--bundle"])
        .arg(bundle)
        .arg(id)
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out.try_clone()?);
    // If wbuild dies (kill -9), runc dies with it instead of going on setting up a container
    // for nobody; the next build's sweep then finds a container that is complete or absent.
    // SAFETY: prctl is async-signal-safe and touches only the child being started.
    unsafe {
        use std::os::unix::process::CommandExt as _;
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Ok(cmd)
}

/// Run one RUN step, streaming the container's combined stdout/stderr to `output`.
///
/// Returns the command's exit status; an `Err` means the sandbox could not be set up or torn down
/// (runc missing, mount failure, runc refusing the spec, unknown user, ...). Everything created on
/// the host (bundle, overlay mount, runc state) is removed before returning, on every path.
pub fn run(spec: &RunSpec, output: &mut dyn FnMut(&[u8])) -> Result<RunOutcome> {
    let setup = crate::progress::profile::span("run: setup");
    // runc runs what the light runtime cannot (cgroup limits, privileged, not root).
    let light = super::sandbox::eligible(spec)?;
    let runc = if light {
        PathBuf::from("runc")
    } else {
        find_runc().context(
            "RUN steps need the `runc` container runtime, which is not on PATH; \
             install it (Debian/Ubuntu: `apt-get install runc`)",
        )?
    };
    if spec.args.is_empty() {
        bail!("RUN needs a command");
    }
    let cwd_rel = rel_container_path(if spec.cwd.is_empty() { "/" } else { &spec.cwd })?;
    let state = std::path::absolute(&spec.state_dir)?;
    let id = unique_id();
    let bundle = state.join("bundles").join(&id);
    let runc_root = state.join("runc");
    std::fs::create_dir_all(&runc_root)
        .with_context(|| format!("creating {}", runc_root.display()))?;
    std::fs::create_dir_all(&bundle)
        .with_context(|| format!("creating bundle {}", bundle.display()))?;
    let rootfs = bundle.join("rootfs");
    let mut guard = Guard {
        runc: runc.clone(),
        runc_root: runc_root.clone(),
        id: id.clone(),
        bundle: bundle.clone(),
        rootfs: rootfs.clone(),
        mounted: false,
        started: false,
        done: false,
    };
    std::fs::create_dir(&rootfs)?;

    let mut lowers = spec
        .rootfs_lowers
        .iter()
        .map(std::path::absolute)
        .collect::<std::io::Result<Vec<_>>>()?;
    if lowers.is_empty() {
        let empty = bundle.join("empty");
        std::fs::create_dir(&empty)?;
        lowers.push(empty);
    }
    mount_overlay(
        &lowers,
        &std::path::absolute(&spec.upper)?,
        &std::path::absolute(&spec.work)?,
        &rootfs,
    )?;
    guard.mounted = true;

    super::cwd::check_cwd(&rootfs, if spec.cwd.is_empty() { "/" } else { &spec.cwd })?;
    let user = super::resolve_user(&rootfs, &spec.user)?;
    super::rootless::check_user(&user)?;

    // Files the spec binds from the bundle.
    let hostname = if spec.hostname.is_empty() {
        "wbuild"
    } else {
        &spec.hostname
    };
    let files_dir = bundle.join("files");
    std::fs::create_dir(&files_dir)?;
    let hosts = files_dir.join("hosts");
    std::fs::write(&hosts, hosts_file(hostname, &spec.extra_hosts))?;
    let resolv_conf = files_dir.join("resolv.conf");
    let resolv = match spec.network {
        Network::Host => std::fs::read("/etc/resolv.conf").unwrap_or_default(),
        Network::None => Vec::new(),
        Network::UserMode { .. } => {
            format!("nameserver {}\n", super::netns::NAMESERVER).into_bytes()
        }
    };
    std::fs::write(&resolv_conf, resolv)?;
    for p in [&hosts, &resolv_conf] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o644))?;
    }
    let mut extra_files = Vec::new();
    for (i, m) in spec.mounts.iter().enumerate() {
        if let ExtraMount::File {
            content,
            mode,
            uid,
            gid,
            ..
        } = m
        {
            let p = files_dir.join(format!("mount-{i}"));
            std::fs::write(&p, content)?;
            std::os::unix::fs::chown(&p, Some(*uid), Some(*gid))
                .with_context(|| format!("setting the owner of the file mounted at {i}"))?;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(*mode))?;
            extra_files.push(p);
        }
    }

    // Mount points runc will have to create in the rootfs: removed again afterwards.
    let mut destinations: Vec<&str> = vec![
        "/proc",
        "/dev",
        "/dev/pts",
        "/dev/shm",
        "/dev/mqueue",
        "/sys",
        "/etc/hosts",
        "/etc/resolv.conf",
    ];
    for m in &spec.mounts {
        destinations.push(match m {
            ExtraMount::Bind { target, .. }
            | ExtraMount::Tmpfs { target, .. }
            | ExtraMount::File { target, .. } => target,
        });
    }
    let upper = std::path::absolute(&spec.upper)?;
    let mut stubs = Vec::new();
    for d in destinations {
        if let Some(s) = first_missing(&rootfs, &rel_container_path(d)?)
            && !stubs.contains(&s)
        {
            stubs.push(s);
        }
    }

    let prune = upper_parents_to_prune(&upper, &stubs);

    let config = build_spec(
        spec,
        &user,
        &rootfs,
        &BundleFiles {
            hosts,
            resolv_conf,
            extra_files,
        },
    )?;
    config
        .save(bundle.join("config.json"))
        .context("writing config.json")?;

    let (mut reader, writer) = std::io::pipe().context("creating output pipe")?;
    let log = bundle.join("runc.log");
    drop(setup);
    let command = crate::progress::profile::span(if light {
        "run: command"
    } else {
        "run: runc run"
    });
    let start = Instant::now();
    let mut cmd = if light {
        super::sandbox::command(&bundle, &writer)?
    } else {
        runc_command(&runc, &runc_root, &log, &bundle, &id, &writer)?
    };
    drop(writer);
    guard.started = !light;
    let child = cmd.spawn().with_context(|| {
        if light {
            "starting the sandbox helper".to_string()
        } else {
            format!("starting {}", runc.display())
        }
    });
    drop(cmd); // closes our copies of the pipe's write end, so the read below sees EOF
    let mut child = child?;
    let mut buf = vec![0u8; 64 * 1024];
    let read_result = loop {
        match reader.read(&mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => output(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => break Err(e),
        }
    };
    let status = child.wait().context("waiting for the container")?;
    read_result.context("reading container output")?;
    let duration = start.elapsed();
    drop(command);
    let _teardown = crate::progress::profile::span("run: teardown");

    if light {
        super::sandbox::setup_error(&bundle)?;
    } else {
        let errors = runc_errors(&log);
        if !errors.is_empty() {
            bail!("runc could not run the container: {}", errors.join("; "));
        }
    }
    let exit_code = match status.code() {
        Some(c) => c,
        None => {
            use std::os::unix::process::ExitStatusExt;
            bail!(
                "the container's runtime was killed by signal {}",
                status.signal().unwrap_or(0)
            );
        }
    };
    // `runc run` removed the container when it exited by itself: no `runc delete` to run.
    guard.started = false;
    {
        let _s = crate::progress::profile::span("run: stubs");
        remove_stubs(&rootfs, &mut stubs, &cwd_rel);
    }
    guard.cleanup()?;
    prune_upper_parents(&upper, &prune);
    Ok(RunOutcome {
        exit_code,
        duration,
    })
}
