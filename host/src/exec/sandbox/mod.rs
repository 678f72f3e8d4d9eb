//! The light runtime: runs a RUN container from the same OCI bundle (`config.json`) that runc
//! would get, without a runc process per step.
//!
//! `runc run` costs 25–36 ms on this kind of machine before the command starts (a Go binary
//! that re-executes itself, a cgroup per container, a state directory, a delete). wbuild
//! instead re-executes its own binary as a small single-threaded helper, which does only what
//! the specs wbuild writes ask for: new mount, PID, IPC, UTS and network namespaces (or joins
//! the build's network namespace), the spec's mounts (each target resolved inside the rootfs),
//! `pivot_root`, masked and read-only paths, hostname, rlimits, user and groups, the
//! capability sets, and `execve` of the command as PID 1 of its namespace. The helper's own
//! child is that PID 1; the helper waits for it and exits with its status, so every process of
//! the step dies with it, and with wbuild (parent-death signals on both).
//!
//! A spec this runtime cannot honour exactly goes to runc instead ([`eligible`]): cgroup
//! limits (`--memory`, `--pids-limit`), `--security=insecure`, a rootless wbuild whose user
//! namespace maps only the user's own ID (setgroups is denied there), or
//! `WBUILD_RUNTIME=runc`. Rootless with a subordinate range, the helper runs as root of
//! wbuild's user namespace and binds the host's device nodes instead of making them. Without a cgroup there is no device
//! cgroup either, so device access is closed another way: the rootfs, `/dev` and every bind
//! mount are `nodev`, and `/dev` holds bind mounts of `null`, `zero`, `full`, `random`,
//! `urandom` and `tty` only (runc's default devices, made on a tmpfs of their own).
//!
//! The helper is entered through [`entry`], which the `wbuild` binary calls first thing in
//! `main`; a program that embeds the library without calling it keeps using runc.

mod child;
mod mounts;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context as _, Result, bail};

use super::RunSpec;

/// argv[1] of the helper process: not a word anyone types.
const HELPER_ARG: &str = "\u{1}wbuild-sandbox";

/// Set by [`entry`]: this executable can serve as the helper.
static ENTRY_INSTALLED: AtomicBool = AtomicBool::new(false);

/// Call first thing in `main`, before any thread starts. In the helper process it runs the
/// container and never returns; anywhere else it notes that this binary can be the helper.
pub fn entry() {
    let mut args = std::env::args_os();
    if args.nth(1).as_deref() == Some(std::ffi::OsStr::new(HELPER_ARG)) {
        let bundle = args.next().unwrap_or_default();
        let parent = args
            .next()
            .and_then(|p| p.to_str()?.parse::<libc::pid_t>().ok());
        // Die with wbuild. Set here rather than between fork and exec, so that wbuild can
        // start the helper with posix_spawn instead of forking its whole address space; if
        // wbuild died before this line, the parent is already someone else: give up.
        // SAFETY: prctl and getppid with plain arguments.
        unsafe {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0
                || Some(libc::getppid()) != parent
            {
                libc::_exit(125);
            }
        }
        child::helper_main(Path::new(&bundle));
    }
    ENTRY_INSTALLED.store(true, Ordering::Relaxed);
}

/// Why `spec` needs runc, or None when this runtime runs it exactly.
pub(crate) fn needs_runc(spec: &RunSpec) -> Option<&'static str> {
    if std::env::var_os("WBUILD_RUNTIME").is_some_and(|v| v == "runc") {
        return Some("WBUILD_RUNTIME=runc");
    }
    // (Any other value was refused by `eligible`.)
    if !ENTRY_INSTALLED.load(Ordering::Relaxed) {
        return Some("the program did not install the sandbox entry");
    }
    if spec.privileged {
        return Some("--security=insecure");
    }
    if spec.limits.memory.is_some() || spec.limits.pids.is_some() {
        return Some("cgroup limits");
    }
    // Rootless wbuild is root of its own user namespace: with a subordinate range the helper
    // runs the spec as it does as root (device nodes bound from the host's /dev instead of
    // made); with one mapped ID, setgroups is denied there, which runc knows to skip.
    if !initial_root() && !super::rootless::light_runtime_ok() {
        return Some("a user namespace without a subordinate ID range");
    }
    None
}

/// Whether this runtime runs `spec` (see [`needs_runc`]). `WBUILD_RUNTIME` may be unset,
/// `light` (the default) or `runc`; anything else is an error.
pub(crate) fn eligible(spec: &RunSpec) -> Result<bool> {
    match std::env::var("WBUILD_RUNTIME").as_deref() {
        Err(std::env::VarError::NotPresent) | Ok("" | "light" | "runc") => {}
        Ok(other) => bail!("WBUILD_RUNTIME={other:?}: the RUN runtime is `light` or `runc`"),
        Err(std::env::VarError::NotUnicode(v)) => {
            bail!("WBUILD_RUNTIME={v:?}: the RUN runtime is `light` or `runc`")
        }
    }
    Ok(needs_runc(spec).is_none())
}

/// Root with the identity ID mapping of the initial user namespace.
fn initial_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return false;
    }
    std::fs::read_to_string("/proc/self/uid_map")
        .map(|m| {
            let f: Vec<&str> = m.split_whitespace().collect();
            f == ["0", "0", "4294967295"]
        })
        .unwrap_or(false)
}

/// The helper process for the bundle at `bundle` (config.json written), its stdout and stderr
/// on `out`. The caller waits for it; its exit code is the command's (128+N for a signal), and
/// a setup failure is reported in `bundle/sandbox.err` (see [`setup_error`]).
pub(crate) fn command(bundle: &Path, out: &std::io::PipeWriter) -> Result<Command> {
    // No pre_exec: Rust's Command then starts the helper with posix_spawn (no copy of
    // wbuild's page tables). The helper sets its own parent-death signal (see `entry`), and
    // its PID 1 dies with it.
    let mut cmd = Command::new("/proc/self/exe");
    cmd.arg(HELPER_ARG)
        .arg(bundle)
        .arg(std::process::id().to_string())
        .env_clear()
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out.try_clone()?);
    Ok(cmd)
}

/// The file in the bundle where the helper reports a setup failure.
pub(crate) fn error_file(bundle: &Path) -> std::path::PathBuf {
    bundle.join("sandbox.err")
}

/// The setup failure the helper reported, if any.
pub(crate) fn setup_error(bundle: &Path) -> Result<()> {
    match std::fs::read_to_string(error_file(bundle)) {
        Ok(msg) if !msg.trim().is_empty() => bail!("the sandbox could not start: {}", msg.trim()),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).context("reading the sandbox's error report"),
    }
}
