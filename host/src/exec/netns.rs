//! Owns the network of RUN steps with the default network: one private network namespace per
//! build, joined by every such RUN (runc gets its path), given outbound TCP/UDP and a DNS
//! forwarder by one slirp4netns process. Also finds and removes what a killed build left of it.
//!
//! Files, under `<state>/netns/`: `<id>`, an empty file the namespace is bind-mounted on (that
//! keeps it alive between steps); `<id>.pid`, the helper's pid; `<id>.log`, the helper's output.
//! The helper dies with wbuild: it is spawned with PR_SET_PDEATHSIG by a thread that lives as
//! long as the helper, and it exits when its `--exit-fd` (a pipe only wbuild holds) closes.
//! slirp4netns runs with `--disable-host-loopback`, so the host's 127.0.0.0/8 and ::1 are not
//! reachable from a RUN; its DNS forwarder is 10.0.2.3.

use std::io::Read as _;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};

/// The user-mode networking helper and the Debian/Ubuntu package that has it.
pub const HELPER: &str = "slirp4netns";
pub const HELPER_PACKAGE: &str = "slirp4netns";
/// slirp4netns's DNS forwarder, as seen from the namespace (its `--configure` defaults).
pub const NAMESERVER: &str = "10.0.2.3";
/// How long the helper may take to set up the namespace's interface.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// The helper on PATH, if installed.
pub fn find_helper() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(HELPER))
        .find(|p| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// The helper, or an error saying what to install.
pub fn require_helper() -> Result<PathBuf> {
    find_helper().with_context(|| {
        format!(
            "RUN steps with the default network need `{HELPER}` (user-mode networking), which is \
             not on PATH; install it (Debian/Ubuntu: `apt-get install {HELPER_PACKAGE}`), or run \
             the RUN steps without network (`RUN --network=none`, or `--network none` for all)"
        )
    })
}

fn netns_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("netns")
}

/// A build's network namespace with its helper. Dropping it stops the helper and removes the
/// namespace.
pub struct UserNetwork {
    netns: PathBuf,
    pid: libc::pid_t,
    /// Closing it tells the helper to exit (`--exit-fd`).
    exit_w: Option<OwnedFd>,
    /// Receives once the helper has exited (from the thread that spawned and waits for it).
    exited: Option<mpsc::Receiver<()>>,
    mounted: bool,
}

impl UserNetwork {
    /// Creates the namespace under `state_dir` and starts the helper; returns once the
    /// namespace's interface, route and DNS forwarder are up.
    pub fn start(state_dir: &Path) -> Result<UserNetwork> {
        let helper = require_helper()?;
        super::rootless::check_network()?;
        let dir = netns_dir(&std::path::absolute(state_dir)?);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let id = format!("wbuild-net-{}-{nanos:08x}", std::process::id());
        let netns = dir.join(&id);
        std::fs::File::create(&netns).with_context(|| format!("creating {}", netns.display()))?;
        let mut net = UserNetwork {
            netns: netns.clone(),
            pid: 0,
            exit_w: None,
            exited: None,
            mounted: false,
        };
        bind_new_netns(&netns)?;
        net.mounted = true;

        let (mut ready_r, ready_w) = std::io::pipe().context("creating a pipe")?;
        let (exit_r, exit_w) = std::io::pipe().context("creating a pipe")?;
        let ready_w: OwnedFd = ready_w.into();
        let exit_r: OwnedFd = exit_r.into();
        net.exit_w = Some(exit_w.into());
        let log = std::fs::File::create(dir.join(format!("{id}.log")))?;
        let mut cmd = Command::new(&helper);
        cmd.args([
            "--configure",
            "--mtu=65520",
            "--disable-host-loopback",
            "--ready-fd=3",
            "--exit-fd=4",
            "--netns-type=path",
        ])
        .arg(&netns)
        .arg("tap0")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
        let (ready_fd, exit_fd) = (ready_w.as_raw_fd(), exit_r.as_raw_fd());
        // SAFETY: only async-signal-safe calls (fcntl, dup2, prctl) between fork and exec.
        unsafe {
            use std::os::unix::process::CommandExt as _;
            cmd.pre_exec(move || {
                let high_ready = libc::fcntl(ready_fd, libc::F_DUPFD_CLOEXEC, 10);
                let high_exit = libc::fcntl(exit_fd, libc::F_DUPFD_CLOEXEC, 10);
                if high_ready < 0
                    || high_exit < 0
                    || libc::dup2(high_ready, 3) < 0
                    || libc::dup2(high_exit, 4) < 0
                    || libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        // The spawning thread stays until the helper exits: PDEATHSIG follows that thread.
        let (pid_tx, pid_rx) = mpsc::channel();
        let (exit_tx, exit_rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("wbuild-netns".into())
            .spawn(move || {
                let child = cmd.spawn();
                drop(cmd);
                drop(ready_w);
                drop(exit_r);
                match child {
                    Ok(mut c) => {
                        let _ = pid_tx.send(Ok(c.id() as libc::pid_t));
                        let _ = c.wait();
                    }
                    Err(e) => {
                        let _ = pid_tx.send(Err(e));
                    }
                }
                let _ = exit_tx.send(());
            })
            .context("starting a thread")?;
        net.exited = Some(exit_rx);
        net.pid = pid_rx
            .recv()
            .context("the helper thread ended")?
            .with_context(|| format!("starting {}", helper.display()))?;
        std::fs::write(dir.join(format!("{id}.pid")), net.pid.to_string())?;

        // The helper writes "1" to the ready fd once tap0 is configured; EOF means it died.
        let mut byte = [0u8; 1];
        let ready = wait_readable(&ready_r, READY_TIMEOUT)? && ready_r.read(&mut byte)? == 1;
        if !ready {
            let text = std::fs::read_to_string(dir.join(format!("{id}.log"))).unwrap_or_default();
            bail!(
                "{HELPER} did not set up the build's network within {}s: {}",
                READY_TIMEOUT.as_secs(),
                text.trim()
            );
        }
        Ok(net)
    }

    /// The namespace file runc joins (`linux.namespaces[].path`).
    pub fn path(&self) -> &Path {
        &self.netns
    }

    fn stop(&mut self) -> Result<()> {
        drop(self.exit_w.take());
        if let Some(rx) = self.exited.take()
            && rx.recv_timeout(Duration::from_secs(3)).is_err()
            && self.pid > 0
        {
            // SAFETY: kill on our own child, which the waiting thread has not reaped yet.
            unsafe { libc::kill(self.pid, libc::SIGKILL) };
            let _ = rx.recv_timeout(Duration::from_secs(3));
        }
        if self.mounted {
            detach(&self.netns)?;
            self.mounted = false;
        }
        remove_files(&self.netns)
    }
}

impl Drop for UserNetwork {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            eprintln!(
                "wbuild: removing the build's network namespace {} failed: {e:#}",
                self.netns.display()
            );
        }
    }
}

/// A build's network, started by the first RUN that needs it and kept for the others until
/// dropped (at the end of the build).
#[derive(Default)]
pub struct SharedNetwork {
    net: std::sync::Mutex<Option<UserNetwork>>,
}

impl SharedNetwork {
    /// The namespace path for a RUN, starting the network under `state_dir` on first use.
    pub fn netns(&self, state_dir: &Path) -> Result<PathBuf> {
        let mut net = self.net.lock().unwrap_or_else(|e| e.into_inner());
        if net.is_none() {
            *net = Some(UserNetwork::start(state_dir)?);
        }
        Ok(net.as_ref().expect("just set").path().to_path_buf())
    }
}

/// Whether `fd` becomes readable (data or EOF) within `timeout`.
fn wait_readable(fd: &impl AsRawFd, timeout: Duration) -> Result<bool> {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    loop {
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, ms) };
        if n >= 0 {
            return Ok(n > 0);
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e).context("waiting for the network helper");
        }
    }
}

fn cstr(p: &Path) -> Result<std::ffi::CString> {
    use std::os::unix::ffi::OsStrExt;
    Ok(std::ffi::CString::new(p.as_os_str().as_bytes())?)
}

/// Makes a new network namespace and bind-mounts it on `target`: in a thread of its own, which
/// leaves the namespace when it ends (namespaces are per thread).
fn bind_new_netns(target: &Path) -> Result<()> {
    let target = cstr(target)?;
    std::thread::spawn(move || -> std::io::Result<()> {
        // SAFETY: unshare and mount with valid C strings; only this thread changes namespace.
        unsafe {
            if libc::unshare(libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            let src = c"/proc/thread-self/ns/net";
            if libc::mount(
                src.as_ptr(),
                target.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND,
                std::ptr::null(),
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(())
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the namespace thread panicked"))?
    .context("creating the build's network namespace")
}

fn detach(path: &Path) -> Result<()> {
    let c = cstr(path)?;
    // SAFETY: umount2 with a valid C string.
    if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } != 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINVAL) && e.raw_os_error() != Some(libc::ENOENT) {
            return Err(e).with_context(|| format!("unmounting {}", path.display()));
        }
    }
    Ok(())
}

fn remove_files(netns: &Path) -> Result<()> {
    let mut paths = vec![netns.to_path_buf()];
    for ext in ["pid", "log"] {
        let mut p = netns.as_os_str().to_owned();
        p.push(format!(".{ext}"));
        paths.push(PathBuf::from(p));
    }
    for p in paths {
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("removing {}", p.display())),
        }
    }
    Ok(())
}

/// What a dead build left of its network under `<state>/netns/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaleNetwork {
    /// `<state>/netns/<id>`.
    pub path: PathBuf,
    /// The namespace is still bind-mounted there.
    pub mounted: bool,
    /// The helper of that namespace, still running.
    pub helper: Option<i32>,
}

/// The live slirp4netns process whose pid `pid_file` holds and that serves `netns`.
fn live_helper(pid_file: &Path, netns: &Path) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(pid_file)
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    use std::os::unix::ffi::OsStrExt;
    let is_helper = args.first().is_some_and(|a| a.ends_with(HELPER.as_bytes()));
    let serves = args.iter().any(|a| *a == netns.as_os_str().as_bytes());
    (is_helper && serves).then_some(pid)
}

/// Every leftover network under `state_dir`.
pub fn find_stale(state_dir: &Path) -> Result<Vec<StaleNetwork>> {
    let dir = netns_dir(&std::path::absolute(state_dir)?);
    let rd = match std::fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("listing {}", dir.display())),
    };
    let mut ids = std::collections::BTreeSet::new();
    for e in rd {
        let name = e?.file_name().to_string_lossy().into_owned();
        let id = name
            .strip_suffix(".pid")
            .or_else(|| name.strip_suffix(".log"))
            .unwrap_or(&name)
            .to_string();
        ids.insert(id);
    }
    let mounts = crate::snapshot::mounts_under(&dir)?;
    Ok(ids
        .into_iter()
        .map(|id| {
            let path = dir.join(&id);
            StaleNetwork {
                mounted: mounts.contains(&path),
                helper: live_helper(&dir.join(format!("{id}.pid")), &path),
                path,
            }
        })
        .collect())
}

/// Stops the helper, unmounts the namespace and removes the files of one leftover.
pub fn remove_stale(stale: &StaleNetwork) -> Result<()> {
    if let Some(pid) = stale.helper {
        // SAFETY: kill has no memory-safety preconditions; the pid was checked to be the helper.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    // A namespace may have been mounted there more than once (stacked mounts).
    for _ in 0..8 {
        if !crate::snapshot::mounts_under(&stale.path)?.contains(&stale.path) {
            return remove_files(&stale.path);
        }
        detach(&stale.path)?;
    }
    bail!("{} stays mounted; not removing it", stale.path.display())
}
