//! The early move of a non-root wbuild into a user namespace where it is root: fork, the
//! child unshares (user + mount namespace) and waits on a pipe, the parent maps its IDs with
//! `newuidmap`/`newgidmap` (or writes a one-ID map itself), the child becomes root there and
//! goes on with `main` (a fork of a single-threaded process needs no new `execve`, which
//! would load the binary a second time), the parent waits for it and passes on its exit
//! status and the signals sent to the parent.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicI32, Ordering};

use super::MARKER;
use super::subid::{self, Range};

/// The child's pid, for the signal handler.
static CHILD: AtomicI32 = AtomicI32::new(0);

/// Signals passed on to the child when sent to the parent alone (a terminal's Ctrl-C reaches
/// the whole process group, the child included, and is not sent twice).
const FORWARDED: [libc::c_int; 6] = [
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
];

fn find_on_path(tool: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/sbin")])
        .map(|d| d.join(tool))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// The user's login name (for `/etc/subuid`), or the uid as text.
fn user_name(uid: u32) -> String {
    // SAFETY: getpwuid returns NULL or a pointer to a static record, read before any other
    // call; this process is single-threaded here.
    unsafe {
        let pw = libc::getpwuid(uid);
        if pw.is_null() || (*pw).pw_name.is_null() {
            return uid.to_string();
        }
        std::ffi::CStr::from_ptr((*pw).pw_name)
            .to_string_lossy()
            .into_owned()
    }
}

/// How the namespace's IDs will be mapped.
enum Plan {
    /// `newuidmap`/`newgidmap` with the user's ranges.
    Ranges {
        newuidmap: PathBuf,
        newgidmap: PathBuf,
        uids: Vec<Range>,
        gids: Vec<Range>,
    },
    /// Only the user's own uid and gid, with the reason for the one warning.
    Single { why: String },
}

fn plan(uid: u32) -> Plan {
    let name = user_name(uid);
    let uids = subid::read(Path::new("/etc/subuid"), &name, uid);
    let gids = subid::read(Path::new("/etc/subgid"), &name, uid);
    if uids.is_empty() || gids.is_empty() {
        return Plan::Single {
            why: format!(
                "the user {name} has no subordinate ID range in /etc/subuid and /etc/subgid"
            ),
        };
    }
    match (find_on_path("newuidmap"), find_on_path("newgidmap")) {
        (Some(newuidmap), Some(newgidmap)) => Plan::Ranges {
            newuidmap,
            newgidmap,
            uids,
            gids,
        },
        _ => Plan::Single {
            why: "`newuidmap`/`newgidmap` are not installed (Debian: `apt-get install uidmap`)"
                .into(),
        },
    }
}

fn pipe() -> std::io::Result<(libc::c_int, libc::c_int)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into the array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((fds[0], fds[1]))
}

/// Runs wbuild in a user namespace when it was started by a non-root user: returns the exit
/// code to end with (the namespace's wbuild's) or None to go on in this process — as root, as
/// the child in the namespace, or when the kernel refuses a user namespace (after a warning).
/// Call it first thing in `main`, before any thread starts.
pub fn enter() -> Option<ExitCode> {
    // SAFETY: getuid/geteuid/getgid have no preconditions.
    let (uid, euid, gid) = unsafe { (libc::getuid(), libc::geteuid(), libc::getgid()) };
    if euid == 0 {
        return None;
    }
    if std::env::var_os(MARKER).is_some() {
        eprintln!(
            "warning: wbuild was started from its own user namespace but is not root there; \
             going on without"
        );
        return None;
    }
    let plan = plan(uid);
    match run(uid, gid, &plan) {
        Ok(code) => code,
        Err(Refused(e)) => {
            eprintln!(
                "warning: the kernel refused wbuild a user namespace ({e}); going on as an \
                 ordinary user, so layers with files owned by anyone else cannot be unpacked \
                 and RUN steps cannot run (allow unprivileged user namespaces: \
                 `sysctl kernel.unprivileged_userns_clone=1` or `user.max_user_namespaces`)"
            );
            None
        }
    }
}

/// The child could not make its namespaces.
struct Refused(std::io::Error);

/// The parent's exit code, or None in the child, which goes on as root of the namespace.
fn run(uid: u32, gid: u32, plan: &Plan) -> Result<Option<ExitCode>, Refused> {
    let ids = match plan {
        Plan::Ranges { uids, .. } => 1 + uids.iter().map(|r| u64::from(r.count)).sum::<u64>(),
        Plan::Single { .. } => 1,
    };
    // SAFETY: single-threaded (main has started nothing yet), so set_var races with nobody.
    unsafe { std::env::set_var(MARKER, format!("{uid}:{gid}:{ids}")) };
    let (ready_r, ready_w) = pipe().map_err(Refused)?;
    let (go_r, go_w) = pipe().map_err(Refused)?;
    let single = matches!(plan, Plan::Single { .. });
    // SAFETY: getpid has no preconditions.
    let parent = unsafe { libc::getpid() };
    // SAFETY: the process is single-threaded, so the child may run any code after fork.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(Refused(std::io::Error::last_os_error()));
    }
    if pid == 0 {
        // SAFETY: the child only makes system calls on descriptors it owns, then goes on
        // with main (or exits).
        unsafe {
            libc::close(ready_r);
            libc::close(go_w);
            child(ready_w, go_r, single, parent);
        }
        return Ok(None);
    }
    // SAFETY: closing the child's ends of the pipes in the parent.
    unsafe {
        libc::close(ready_w);
        libc::close(go_r);
    }
    let mut buf = [0u8; 5];
    let n = read_full(ready_r, &mut buf);
    if n != 1 || buf[0] != b'R' {
        let err = if n == 5 && buf[0] == b'E' {
            std::io::Error::from_raw_os_error(i32::from_ne_bytes(buf[1..5].try_into().unwrap()))
        } else {
            std::io::Error::other("the child process ended before making its namespaces")
        };
        reap(pid);
        return Err(Refused(err));
    }
    if let Err(e) = map_ids(pid, uid, gid, plan) {
        eprintln!("error: mapping IDs into wbuild's user namespace: {e}");
        // SAFETY: kill on our own child.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        reap(pid);
        return Ok(Some(ExitCode::FAILURE));
    }
    if let Plan::Single { why } = plan {
        eprintln!(
            "warning: rootless wbuild maps only your own user and group ID, because {why}: \
             files owned by any other ID cannot be kept, and a build that needs them fails \
             instead of changing the image"
        );
    }
    // SAFETY: writing one byte to the pipe we own.
    unsafe {
        libc::write(go_w, b"G".as_ptr().cast(), 1);
        libc::close(go_w);
    }
    forward_signals(pid);
    Ok(Some(wait(pid)))
}

/// Reads until `buf` is full or EOF; the number of bytes read.
fn read_full(fd: libc::c_int, buf: &mut [u8]) -> usize {
    let mut n = 0;
    while n < buf.len() {
        // SAFETY: reading into the unfilled rest of buf.
        let r = unsafe { libc::read(fd, buf[n..].as_mut_ptr().cast(), buf.len() - n) };
        if r < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        if r <= 0 {
            break;
        }
        n += r as usize;
    }
    // SAFETY: closing our descriptor.
    unsafe { libc::close(fd) };
    n
}

/// The child: unshare, report, wait for the maps, become root; returns to go on with main.
///
/// # Safety
/// Called once in the forked child of a single-threaded process.
unsafe fn child(ready_w: libc::c_int, go_r: libc::c_int, single: bool, parent: libc::pid_t) {
    unsafe {
        if libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNS) != 0 {
            let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
            let mut msg = [b'E', 0, 0, 0, 0];
            msg[1..].copy_from_slice(&errno.to_ne_bytes());
            libc::write(ready_w, msg.as_ptr().cast(), msg.len());
            libc::_exit(1);
        }
        libc::write(ready_w, b"R".as_ptr().cast(), 1);
        libc::close(ready_w);
        let mut go = [0u8; 1];
        if libc::read(go_r, go.as_mut_ptr().cast(), 1) != 1 || go[0] != b'G' {
            libc::_exit(1);
        }
        libc::close(go_r);
        // With a one-ID map setgroups is denied; with ranges the supplementary groups of the
        // user outside (unmapped inside) are dropped.
        if libc::setresgid(0, 0, 0) != 0
            || (!single && libc::setgroups(0, std::ptr::null()) != 0)
            || libc::setresuid(0, 0, 0) != 0
        {
            let msg = b"error: cannot become root in wbuild's user namespace\n";
            libc::write(2, msg.as_ptr().cast(), msg.len());
            libc::_exit(125);
        }
        // Mounts wbuild makes stay in its namespace.
        libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        );
        // The child dies with the waiting parent (kill -9 of the wbuild the user started).
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        if libc::getppid() != parent {
            libc::_exit(1);
        }
    }
}

/// Writes the child's uid and gid maps.
fn map_ids(pid: libc::pid_t, uid: u32, gid: u32, plan: &Plan) -> Result<(), String> {
    match plan {
        Plan::Ranges {
            newuidmap,
            newgidmap,
            uids,
            gids,
        } => {
            // Both at once: each is a set-uid program's start-up.
            let mut running = Vec::new();
            for (tool, id, ranges) in [(newuidmap, uid, uids), (newgidmap, gid, gids)] {
                let child = std::process::Command::new(tool)
                    .arg(pid.to_string())
                    .args(subid::map_args(id, ranges))
                    .stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .map_err(|e| format!("running {}: {e}", tool.display()));
                running.push((tool, child));
            }
            let mut result = Ok(());
            for (tool, child) in running {
                let out = child.and_then(|c| {
                    c.wait_with_output()
                        .map_err(|e| format!("waiting for {}: {e}", tool.display()))
                });
                let failed = match out {
                    Ok(out) if out.status.success() => continue,
                    Ok(out) => format!(
                        "{} failed: {}",
                        tool.display(),
                        String::from_utf8_lossy(&out.stderr).trim()
                    ),
                    Err(e) => e,
                };
                if result.is_ok() {
                    result = Err(failed);
                }
            }
            result
        }
        Plan::Single { .. } => {
            let proc = PathBuf::from(format!("/proc/{pid}"));
            let write = |file: &str, text: String| {
                std::fs::write(proc.join(file), text)
                    .map_err(|e| format!("writing /proc/{pid}/{file}: {e}"))
            };
            write("uid_map", format!("0 {uid} 1\n"))?;
            write("setgroups", "deny".into())?;
            write("gid_map", format!("0 {gid} 1\n"))
        }
    }
}

extern "C" fn forward(sig: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo; kill is async-signal-safe.
    unsafe {
        // si_code > 0: from the kernel (a terminal's keys reach the child as well).
        if !info.is_null() && (*info).si_code > 0 {
            return;
        }
        let child = CHILD.load(Ordering::Relaxed);
        if child > 0 {
            libc::kill(child, sig);
        }
    }
}

fn forward_signals(pid: libc::pid_t) {
    CHILD.store(pid, Ordering::Relaxed);
    for sig in FORWARDED {
        // SAFETY: installing a handler that only calls async-signal-safe functions.
        unsafe {
            let mut act: libc::sigaction = std::mem::zeroed();
            act.sa_sigaction = forward as *const () as usize;
            act.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
            libc::sigemptyset(&mut act.sa_mask);
            libc::sigaction(sig, &act, std::ptr::null_mut());
        }
    }
}

fn reap(pid: libc::pid_t) {
    let mut status = 0;
    // SAFETY: waiting for our own child.
    while unsafe { libc::waitpid(pid, &mut status, 0) } < 0
        && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted
    {}
}

/// Waits for the child and ends the way it did: its exit code, or the same signal.
fn wait(pid: libc::pid_t) -> ExitCode {
    let mut status = 0;
    loop {
        // SAFETY: waiting for our own child.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid {
            break;
        }
        if r < 0 && std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            return ExitCode::FAILURE;
        }
    }
    if libc::WIFEXITED(status) {
        return ExitCode::from(libc::WEXITSTATUS(status) as u8);
    }
    let sig = libc::WTERMSIG(status);
    // SAFETY: restoring the default action and raising the child's signal on ourselves.
    unsafe {
        libc::signal(sig, libc::SIG_DFL);
        libc::raise(sig);
    }
    ExitCode::from(128u8.wrapping_add(sig as u8))
}
