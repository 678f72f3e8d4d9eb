//! The helper process of the light runtime: namespaces, fork of PID 1, and in PID 1 the mounts,
//! `pivot_root`, identity and capabilities of the spec, then `execve` of the command.
//!
//! Runs single-threaded (a fresh `execve` of the wbuild binary, entered before anything else
//! in `main`), so `unshare` and `fork` are safe. A setup failure is written to the bundle's
//! `sandbox.err` and ends the process with status 125; the command never sees that file (its
//! descriptor is close-on-exec).

use std::collections::HashSet;
use std::ffi::CString;
use std::io::Write as _;
use std::os::fd::{AsFd as _, AsRawFd as _};
use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};
use std::str::FromStr as _;

use anyhow::{Context as _, Result, anyhow, bail};
use oci_spec::runtime::{LinuxNamespaceType, PosixRlimitType, Process, Spec};

use super::mounts;

/// Status of the helper when setup failed (the message is in `sandbox.err`).
const SETUP_FAILED: i32 = 125;

/// The helper's `main`: never returns.
pub(super) fn helper_main(bundle: &Path) -> ! {
    let mut err = match std::fs::File::create(super::error_file(bundle)) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("wbuild sandbox: creating its error report: {e}");
            std::process::exit(SETUP_FAILED);
        }
    };
    let fail = |err: &mut std::fs::File, e: anyhow::Error| -> ! {
        let _ = write!(err, "{e:#}");
        // SAFETY: _exit ends the process without running destructors (none are needed).
        unsafe { libc::_exit(SETUP_FAILED) }
    };
    let spec = match Spec::load(bundle.join("config.json")).context("reading config.json") {
        Ok(s) => s,
        Err(e) => fail(&mut err, e),
    };
    if let Err(e) = enter_namespaces(&spec) {
        fail(&mut err, e);
    }
    // SAFETY: single-threaded; the child only sets up and execs, or _exits.
    match unsafe { libc::fork() } {
        -1 => fail(&mut err, std::io::Error::last_os_error().into()),
        0 => match start_pid1(&spec) {
            Ok(never) => match never {},
            Err(e) => fail(&mut err, e),
        },
        pid => {
            drop(err);
            std::process::exit(wait_for(pid))
        }
    }
}

/// Waits for PID 1 and gives its status as an exit code (128+N for signal N, as runc).
fn wait_for(pid: libc::pid_t) -> i32 {
    let mut status = 0;
    loop {
        // SAFETY: waitpid writes the status of our own child.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid {
            break;
        }
        if std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return SETUP_FAILED;
        }
    }
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        SETUP_FAILED
    }
}

fn os_err(what: &str) -> anyhow::Error {
    anyhow!("{what}: {}", std::io::Error::last_os_error())
}

/// Joins or makes the network namespace, then makes the others; the next fork is PID 1.
fn enter_namespaces(spec: &Spec) -> Result<()> {
    let linux = spec
        .linux()
        .as_ref()
        .context("the spec has no linux section")?;
    let mut flags = 0;
    for ns in linux.namespaces().as_deref().unwrap_or_default() {
        let flag = match ns.typ() {
            LinuxNamespaceType::Mount => libc::CLONE_NEWNS,
            LinuxNamespaceType::Pid => libc::CLONE_NEWPID,
            LinuxNamespaceType::Ipc => libc::CLONE_NEWIPC,
            LinuxNamespaceType::Uts => libc::CLONE_NEWUTS,
            LinuxNamespaceType::Network => libc::CLONE_NEWNET,
            other => bail!("namespace {other:?} is not supported by the light runtime"),
        };
        match ns.path() {
            Some(path) => {
                let f = std::fs::File::open(path)
                    .with_context(|| format!("opening namespace {}", path.display()))?;
                // SAFETY: a valid namespace descriptor and its type.
                if unsafe { libc::setns(f.as_raw_fd(), flag) } != 0 {
                    return Err(os_err(&format!("joining namespace {}", path.display())));
                }
            }
            None => flags |= flag,
        }
    }
    if flags & libc::CLONE_NEWNS == 0 || flags & libc::CLONE_NEWPID == 0 {
        bail!("the light runtime needs new mount and PID namespaces");
    }
    // SAFETY: unshare on a single-threaded process.
    if unsafe { libc::unshare(flags) } != 0 {
        return Err(os_err("creating namespaces"));
    }
    Ok(())
}

/// PID 1: everything from the mounts to `execve`.
fn start_pid1(spec: &Spec) -> Result<std::convert::Infallible> {
    die_with_parent()?;
    let process = spec.process().as_ref().context("the spec has no process")?;
    let linux = spec
        .linux()
        .as_ref()
        .context("the spec has no linux section")?;
    let root = spec.root().as_ref().context("the spec has no root")?;
    let rootfs = root.path().clone();
    mounts::make_rslave()?;
    mounts::prepare_rootfs(&rootfs)?;
    let root_dir = std::fs::File::open(&rootfs)
        .with_context(|| format!("opening the rootfs {}", rootfs.display()))?;
    for m in spec.mounts().as_deref().unwrap_or_default() {
        mounts::mount_one(root_dir.as_fd(), &rootfs, m)
            .with_context(|| format!("mount at {}", m.destination().display()))?;
    }
    drop(root_dir);
    mounts::pivot_into(&rootfs)?;
    for p in linux.masked_paths().as_deref().unwrap_or_default() {
        mounts::mask(p)?;
    }
    for p in linux.readonly_paths().as_deref().unwrap_or_default() {
        mounts::read_only(p)?;
    }
    if let Some(name) = spec.hostname().as_deref().filter(|h| !h.is_empty()) {
        // SAFETY: a pointer and length of a live buffer.
        if unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) } != 0 {
            return Err(os_err("setting the hostname"));
        }
    }
    set_rlimits(process)?;
    let cwd = process.cwd();
    // A working directory the image lacks is made (0755, root's), as runc does.
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(cwd)
        .with_context(|| format!("creating the working directory {}", cwd.display()))?;
    std::env::set_current_dir(cwd)
        .with_context(|| format!("changing to the working directory {}", cwd.display()))?;
    let argv = process
        .args()
        .as_deref()
        .filter(|a| !a.is_empty())
        .context("the spec has no command")?;
    let mut env = process.env().clone().unwrap_or_default();
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", home_of(process.user().uid())));
    }
    let program = find_program(&argv[0], &env)?;
    close_inherited_fds()?;
    set_identity(process)?;
    if process.no_new_privileges() == Some(true) {
        // SAFETY: prctl with plain integer arguments.
        if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
            return Err(os_err("setting no_new_privs"));
        }
    }
    // Changing the user cleared the parent-death signal: set it again.
    die_with_parent()?;
    exec(&program, argv, &env)
}

/// The home directory of `uid` in the container's /etc/passwd, `/` without one (runc's HOME
/// when the spec's environment has none).
fn home_of(uid: u32) -> String {
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|text| {
            text.lines().find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.len() >= 6 && f[2].parse::<u32>() == Ok(uid) && !f[5].is_empty())
                    .then(|| f[5].to_string())
            })
        })
        .unwrap_or_else(|| "/".to_string())
}

/// Every descriptor above stderr closes at `execve`: the command gets stdin, stdout and stderr
/// only, whatever wbuild's own caller left open.
fn close_inherited_fds() -> Result<()> {
    // SAFETY: close_range with plain integers; CLOSE_RANGE_CLOEXEC only marks descriptors.
    let r = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if r == 0 {
        return Ok(());
    }
    // Kernels before 5.11 have no CLOSE_RANGE_CLOEXEC: mark each open descriptor instead.
    let fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .context("listing open descriptors")?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|fd| *fd > 2)
        .collect();
    for fd in fds {
        // SAFETY: fcntl on a descriptor number; one that closed meanwhile gives EBADF.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
        if flags >= 0 && unsafe { libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) } != 0 {
            return Err(os_err("marking inherited descriptors close-on-exec"));
        }
    }
    Ok(())
}

fn die_with_parent() -> Result<()> {
    // SAFETY: prctl with plain integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) } != 0 {
        return Err(os_err("setting the parent-death signal"));
    }
    Ok(())
}

/// The resource number of a spec rlimit type.
fn rlimit_resource(t: PosixRlimitType) -> libc::__rlimit_resource_t {
    use PosixRlimitType as T;
    match t {
        T::RlimitAs => libc::RLIMIT_AS,
        T::RlimitCore => libc::RLIMIT_CORE,
        T::RlimitCpu => libc::RLIMIT_CPU,
        T::RlimitData => libc::RLIMIT_DATA,
        T::RlimitFsize => libc::RLIMIT_FSIZE,
        T::RlimitLocks => libc::RLIMIT_LOCKS,
        T::RlimitMemlock => libc::RLIMIT_MEMLOCK,
        T::RlimitMsgqueue => libc::RLIMIT_MSGQUEUE,
        T::RlimitNice => libc::RLIMIT_NICE,
        T::RlimitNofile => libc::RLIMIT_NOFILE,
        T::RlimitNproc => libc::RLIMIT_NPROC,
        T::RlimitRss => libc::RLIMIT_RSS,
        T::RlimitRtprio => libc::RLIMIT_RTPRIO,
        T::RlimitRttime => libc::RLIMIT_RTTIME,
        T::RlimitSigpending => libc::RLIMIT_SIGPENDING,
        T::RlimitStack => libc::RLIMIT_STACK,
    }
}

/// The spec's name of a value that serializes to a string ("CAP_CHOWN").
fn spec_name(v: &impl serde::Serialize) -> Result<String> {
    match serde_json::to_value(v)? {
        serde_json::Value::String(s) => Ok(s),
        other => bail!("unexpected spec value {other}"),
    }
}

fn set_rlimits(process: &Process) -> Result<()> {
    for r in process.rlimits().as_deref().unwrap_or_default() {
        let resource = rlimit_resource(r.typ());
        let lim = libc::rlimit {
            rlim_cur: r.soft(),
            rlim_max: r.hard(),
        };
        // SAFETY: a valid resource number and a live struct.
        if unsafe { libc::setrlimit(resource, &lim) } != 0 {
            return Err(os_err(&format!("setting {:?}", r.typ())));
        }
    }
    Ok(())
}

/// The capability set named by the spec (`None` is the empty set).
fn cap_set(set: &Option<oci_spec::runtime::Capabilities>) -> Result<HashSet<caps::Capability>> {
    let mut out = HashSet::new();
    for c in set.iter().flatten() {
        let name = spec_name(c)?;
        // Capabilities this kernel's headers do not know cannot be in any of its sets.
        if let Ok(cap) = caps::Capability::from_str(&name) {
            out.insert(cap);
        }
    }
    Ok(out)
}

/// Groups, gid and uid of the spec, then its capability sets, as runc applies them: the bounding
/// set first (while CAP_SETPCAP is held), the permitted set kept across the uid change, then
/// effective, permitted and inheritable set exactly, then the ambient ones.
fn set_identity(process: &Process) -> Result<()> {
    let user = process.user();
    let caps_spec = process.capabilities().as_ref();
    let bounding = cap_set(&caps_spec.and_then(|c| c.bounding().clone()))?;
    for cap in caps::all() {
        if !bounding.contains(&cap) && caps::has_cap(None, caps::CapSet::Bounding, cap)? {
            caps::drop(None, caps::CapSet::Bounding, cap)
                .with_context(|| format!("dropping {cap} from the bounding set"))?;
        }
    }
    let groups: Vec<libc::gid_t> = user.additional_gids().clone().unwrap_or_default();
    // SAFETY: a pointer and length of a live vector.
    if unsafe { libc::setgroups(groups.len(), groups.as_ptr()) } != 0 {
        return Err(os_err("setting the supplementary groups"));
    }
    // SAFETY: prctl and the set*id calls take plain integers.
    unsafe {
        if libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0 {
            return Err(os_err("keeping capabilities across the user change"));
        }
        if libc::setresgid(user.gid(), user.gid(), user.gid()) != 0 {
            return Err(os_err(&format!("setting gid {}", user.gid())));
        }
        if libc::setresuid(user.uid(), user.uid(), user.uid()) != 0 {
            return Err(os_err(&format!("setting uid {}", user.uid())));
        }
        if libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0) != 0 {
            return Err(os_err("clearing keep-capabilities"));
        }
    }
    let permitted = cap_set(&caps_spec.and_then(|c| c.permitted().clone()))?;
    let effective = cap_set(&caps_spec.and_then(|c| c.effective().clone()))?;
    let inheritable = cap_set(&caps_spec.and_then(|c| c.inheritable().clone()))?;
    let ambient = cap_set(&caps_spec.and_then(|c| c.ambient().clone()))?;
    caps::clear(None, caps::CapSet::Ambient).context("clearing the ambient capabilities")?;
    caps::set(None, caps::CapSet::Effective, &effective)
        .and_then(|_| caps::set(None, caps::CapSet::Inheritable, &inheritable))
        .and_then(|_| caps::set(None, caps::CapSet::Permitted, &permitted))
        .and_then(|_| caps::set(None, caps::CapSet::Effective, &effective))
        .context("setting the capabilities")?;
    for cap in ambient {
        caps::raise(None, caps::CapSet::Ambient, cap)
            .with_context(|| format!("raising the ambient {cap}"))?;
    }
    Ok(())
}

/// `argv[0]` looked up in the container's `PATH` (from the spec's environment) when it has no
/// slash, as runc does; the first regular, executable file wins.
fn find_program(arg0: &str, env: &[String]) -> Result<PathBuf> {
    if arg0.contains('/') {
        return Ok(PathBuf::from(arg0));
    }
    let path = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(crate::image::config::DEFAULT_PATH);
    for dir in path.split(':').filter(|d| !d.is_empty()) {
        let candidate = Path::new(dir).join(arg0);
        let Ok(c) = sys_cstr(&candidate) else {
            continue;
        };
        // SAFETY: a NUL-terminated path.
        if std::fs::metadata(&candidate).is_ok_and(|m| m.is_file())
            && unsafe { libc::access(c.as_ptr(), libc::X_OK) } == 0
        {
            return Ok(candidate);
        }
    }
    bail!("exec: {arg0:?}: executable file not found in $PATH")
}

fn sys_cstr(p: &Path) -> Result<CString> {
    Ok(crate::sys::cstr(p)?)
}

fn exec(program: &Path, argv: &[String], env: &[String]) -> Result<std::convert::Infallible> {
    let prog = sys_cstr(program)?;
    let to_c = |v: &[String]| -> Result<Vec<CString>> {
        v.iter()
            .map(|s| CString::new(s.as_bytes()).map_err(|_| anyhow!("{s:?} holds a NUL byte")))
            .collect()
    };
    let argv_c = to_c(argv)?;
    let env_c = to_c(env)?;
    let mut argv_p: Vec<*const libc::c_char> = argv_c.iter().map(|c| c.as_ptr()).collect();
    argv_p.push(std::ptr::null());
    let mut env_p: Vec<*const libc::c_char> = env_c.iter().map(|c| c.as_ptr()).collect();
    env_p.push(std::ptr::null());
    // SAFETY: NUL-terminated strings and NULL-terminated arrays that outlive the call.
    unsafe { libc::execve(prog.as_ptr(), argv_p.as_ptr(), env_p.as_ptr()) };
    Err(os_err(&format!("exec {}", program.display())))
}
