//! The rootless tests' harness: a test user of their own (with or without a subordinate
//! range, device ACLs it needs), a directory it can read with the binary and the busybox base,
//! wbuild as that user and as root, a registry on loopback, and the small helpers.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::common;

pub const EPOCH: &str = "1700000000";

/// Whether this test can make users and run wbuild as one (root, the tools).
pub fn prerequisites() -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        common::skip("creating a test user needs root");
        return false;
    }
    [
        "useradd",
        "userdel",
        "runuser",
        "newuidmap",
        "newgidmap",
        "setfacl",
        "runc",
    ]
    .iter()
    .all(|t| common::have_tool(t))
}

pub static COUNTER: AtomicU32 = AtomicU32::new(0);

/// The tests of this process that add and remove ACL entries on devices take turns.
pub static ACL_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// An unprivileged user made for one test, removed (with its home) on drop.
pub struct TestUser {
    pub name: String,
    pub home: PathBuf,
    /// Devices the test gave it access to (an ACL entry each, removed on drop).
    pub acls: Vec<&'static str>,
    /// More `NAME=VALUE` for its wbuild's environment.
    pub env: Vec<String>,
}

impl TestUser {
    /// `useradd -m`, with the default subordinate range or (`range` false) none at all.
    pub fn create(range: bool) -> TestUser {
        let name = format!(
            "wbrl{}x{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let mut cmd = Command::new("useradd");
        cmd.args(["-m", "-s", "/bin/sh"]);
        if !range {
            cmd.args(["-K", "SUB_UID_COUNT=0", "-K", "SUB_GID_COUNT=0"]);
        }
        let out = cmd.arg(&name).output().unwrap();
        assert!(
            out.status.success(),
            "useradd: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let home = PathBuf::from(
            String::from_utf8(
                Command::new("sh")
                    .args(["-c", &format!("getent passwd {name} | cut -d: -f6")])
                    .output()
                    .unwrap()
                    .stdout,
            )
            .unwrap()
            .trim(),
        );
        let subuid = std::fs::read_to_string("/etc/subuid").unwrap_or_default();
        assert_eq!(
            subuid.lines().any(|l| l.starts_with(&format!("{name}:"))),
            range,
            "/etc/subuid after useradd: {subuid}"
        );
        TestUser {
            name,
            home,
            acls: Vec::new(),
            env: Vec::new(),
        }
    }

    /// Lets the user open `device` (slirp4netns needs /dev/net/tun, fuse-overlayfs
    /// /dev/fuse) where it cannot yet.
    pub fn allow(&mut self, device: &'static str) {
        if self.run_sh(&format!("test -r {device} -a -w {device}")) {
            return;
        }
        let _turn = ACL_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let out = Command::new("setfacl")
            .args(["-m", &format!("u:{}:rw", self.name), device])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "setfacl: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.acls.push(device);
    }

    pub fn run_sh(&self, script: &str) -> bool {
        Command::new("runuser")
            .args(["-u", &self.name, "--", "sh", "-c", script])
            .status()
            .unwrap()
            .success()
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        let _turn = ACL_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        for device in &self.acls {
            let _ = Command::new("setfacl")
                .args(["-x", &format!("u:{}", self.name), device])
                .status();
            // The last named entry gone: no ACL at all, as before (the mask entry stays
            // otherwise).
            let named = Command::new("getfacl")
                .args(["-c", "-p", device])
                .output()
                .map(|o| {
                    String::from_utf8_lossy(&o.stdout).lines().any(|l| {
                        (l.starts_with("user:") || l.starts_with("group:"))
                            && l.split(':').nth(1).is_some_and(|n| !n.is_empty())
                    })
                })
                .unwrap_or(true);
            if !named {
                let _ = Command::new("setfacl").args(["-b", device]).status();
            }
        }
        // userdel refuses while a process of the user still runs (a killed build's
        // container ending): bounded retries.
        for _ in 0..50 {
            let ok = Command::new("userdel")
                .args(["-r", &self.name])
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        eprintln!("warning: could not remove the test user {}", self.name);
    }
}

/// A directory the test user can read (0755, in /tmp: the checkout may sit under a 0700
/// directory) with the wbuild binary, the busybox base and the build contexts; `out/` is the
/// user's.
pub struct Workdir {
    pub dir: tempfile::TempDir,
    pub exe: PathBuf,
    pub busybox: PathBuf,
}

impl Workdir {
    pub fn new(user: &TestUser) -> Option<Workdir> {
        let dir = tempfile::Builder::new()
            .prefix("wbuild-rootless-")
            .tempdir_in("/tmp")
            .unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let exe = dir.path().join("wbuild");
        let built = Path::new(env!("CARGO_BIN_EXE_wbuild"));
        if std::fs::hard_link(built, &exe).is_err() {
            std::fs::copy(built, &exe).unwrap();
        }
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        let busybox = common::busybox_oci_tar(dir.path())?;
        std::fs::set_permissions(&busybox, std::fs::Permissions::from_mode(0o644)).unwrap();
        let out = dir.path().join("out");
        std::fs::create_dir(&out).unwrap();
        let status = Command::new("chown")
            .arg(format!("{0}:{0}", user.name))
            .arg(&out)
            .status()
            .unwrap();
        assert!(status.success());
        Some(Workdir { dir, exe, busybox })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A build context `name` with `dockerfile` and `files` (world-readable).
    pub fn context(&self, name: &str, dockerfile: &str, files: &[(&str, &str)]) -> String {
        let ctx = self.path().join(name);
        std::fs::create_dir(&ctx).unwrap();
        std::fs::write(ctx.join("Dockerfile"), dockerfile).unwrap();
        for (f, text) in files {
            std::fs::write(ctx.join(f), text).unwrap();
        }
        Command::new("chmod")
            .args(["-R", "a+rX"])
            .arg(&ctx)
            .status()
            .unwrap();
        ctx.to_str().unwrap().to_string()
    }

    /// wbuild as `user`: a clean environment, the store in `$XDG_DATA_HOME/wbuild`.
    pub fn user_cmd(&self, user: &TestUser, args: &[&str]) -> Command {
        let mut c = Command::new("runuser");
        c.args(["-u", &user.name, "--", "env", "-i"])
            .args(&user.env)
            .arg(format!("HOME={}", user.home.display()))
            .arg(format!("XDG_DATA_HOME={}/data", user.home.display()))
            .arg("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
            .arg(format!("SOURCE_DATE_EPOCH={EPOCH}"))
            .arg(&self.exe)
            .args(args)
            .current_dir(self.path())
            .stdin(Stdio::null());
        c
    }

    pub fn as_user(&self, user: &TestUser, args: &[&str]) -> Output {
        self.user_cmd(user, args).output().unwrap()
    }

    pub fn user_ok(&self, user: &TestUser, args: &[&str]) -> String {
        let out = self.as_user(user, args);
        assert!(
            out.status.success(),
            "wbuild {args:?} as {} failed:\n{}",
            user.name,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    }

    /// wbuild as root with the store `root`.
    pub fn root_ok(&self, root: &Path, args: &[&str]) -> String {
        let out = Command::new(&self.exe)
            .arg("--root")
            .arg(root)
            .args(args)
            .env("SOURCE_DATE_EPOCH", EPOCH)
            .current_dir(self.path())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "wbuild {args:?} as root failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    }
}

/// (manifest digest, config digest) from a `--metadata-file`.
pub fn digests(file: &Path) -> (String, String) {
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    (
        v["containerimage.digest"].as_str().unwrap().to_string(),
        v["containerimage.config.digest"]
            .as_str()
            .unwrap()
            .to_string(),
    )
}

/// `tar tv --numeric-owner` lines of a tar file.
pub fn tar_listing(tar: &Path) -> String {
    let out = Command::new("tar")
        .args(["-tv", "--numeric-owner", "-f"])
        .arg(tar)
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

pub use super::common::registry::Registry;

/// Kills the child (and waits for it) on drop.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The pids of `pid`'s children.
pub fn children(pid: u32) -> Vec<i32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}
