//! Helpers for the end-to-end tests: run the real `wbuild` binary with a private root.

#![allow(dead_code)]

pub mod registry;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Runs `cmd` and requires success; a failure shows the command, its exit status and its
/// stderr. Returns the output, for the caller to read stdout.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?} did not start: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The repository's top directory.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// `shared/` (BuildKit's conformance data), beside the repository.
pub fn shared() -> PathBuf {
    repo().parent().unwrap().join("shared")
}

/// A wbuild invocation with its own store root (kept for the whole test process, so the
/// compiled frontend is reused).
pub struct Wbuild {
    pub root: tempfile::TempDir,
}

impl Wbuild {
    pub fn new() -> Self {
        Wbuild {
            root: tempfile::tempdir().unwrap(),
        }
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_wbuild"));
        c.arg("--root").arg(self.root.path());
        c
    }

    /// Run with `args`; returns the output whatever the exit status.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().unwrap()
    }

    /// Run and require success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "wbuild {args:?} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Run and require failure; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "wbuild {args:?} succeeded but should fail:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stderr).unwrap()
    }

    /// `wbuild plan` of an example directory, parsed.
    pub fn plan(&self, example: &str, extra: &[&str]) -> serde_json::Value {
        let dir = repo().join("examples").join(example);
        let dir = dir.to_str().unwrap();
        let mut args = vec!["plan"];
        args.extend_from_slice(extra);
        args.push(dir);
        serde_json::from_str(&self.ok(&args)).unwrap()
    }
}

/// Whether `tool` is on PATH. With `CI` set (the README's test command and `.ci/run`) a missing
/// tool is a failure; elsewhere the caller returns and the test is reported as skipped (see
/// [`skip`]).
pub fn have_tool(tool: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        skip(&format!("{tool} is not installed"));
    }
    found
}

/// A test that cannot run here: a failure under `CI`; else its name and reason go to stderr and
/// to the file `WBUILD_SKIP_LOG` names, which the test command's summary counts as skipped.
pub fn skip(reason: &str) {
    let name = std::thread::current()
        .name()
        .unwrap_or("<unnamed test>")
        .to_string();
    assert!(
        std::env::var_os("CI").is_none(),
        "{name}: {reason}; CI must provide it (see .ci/run)"
    );
    eprintln!("skipped {name}: {reason}");
    if let Some(log) = std::env::var_os("WBUILD_SKIP_LOG")
        && let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
    {
        use std::io::Write as _;
        let _ = writeln!(f, "{name}: {reason}");
    }
}

fn sh(script: &str, dir: &Path) {
    run_ok(Command::new("sh").args(["-ec", script]).current_dir(dir));
}

/// A small busybox base image as an OCI layout tar, made with umoci from Debian's
/// busybox-static: PATH=/usr/local/bin:/bin, WorkingDir /home, Cmd /bin/sh, ref name `bb`.
/// Returns None (after printing why) when the tools are missing outside CI.
pub fn busybox_oci_tar(dir: &Path) -> Option<PathBuf> {
    if !have_tool("umoci") || !have_tool("busybox") {
        return None;
    }
    sh(
        "umoci init --layout L
         umoci new --image L:bb
         umoci unpack --image L:bb B
         mkdir -p B/rootfs/bin B/rootfs/etc B/rootfs/tmp
         cp \"$(command -v busybox)\" B/rootfs/bin/busybox
         for a in $(B/rootfs/bin/busybox --list); do
           [ \"$a\" = busybox ] || ln -s busybox B/rootfs/bin/$a
         done
         echo 'root:x:0:0:root:/root:/bin/sh' > B/rootfs/etc/passwd
         umoci repack --image L:bb B
         umoci config --image L:bb --config.env PATH=/usr/local/bin:/bin \
           --config.workingdir /home --config.cmd /bin/sh
         tar -C L -cf bb.tar .",
        dir,
    );
    Some(dir.join("bb.tar"))
}

/// A Wbuild whose store has the busybox base imported as `busybox:latest` (and `bb:latest`),
/// ready to build the examples. None (after printing why) when tools are missing outside CI.
pub fn with_busybox() -> Option<Wbuild> {
    if !have_tool("runc") {
        return None;
    }
    let wb = Wbuild::new();
    let dir = tempfile::tempdir().unwrap();
    let tar = busybox_oci_tar(dir.path())?;
    wb.ok(&["import", tar.to_str().unwrap(), "-t", "busybox"]);
    Some(wb)
}

/// Run and require success; returns stderr (where build progress goes).
impl Wbuild {
    pub fn build(&self, args: &[&str]) -> String {
        let out = self.run(args);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "wbuild {args:?} failed:\n{err}");
        err
    }
}

/// Write `text` as `dir`'s Dockerfile; returns `dir` as a string for the command line.
pub fn write_dockerfile(dir: &Path, text: &str) -> String {
    std::fs::write(dir.join("Dockerfile"), text).unwrap();
    dir.to_str().unwrap().to_string()
}

/// A fresh build context holding `dockerfile` as its Dockerfile.
pub fn context(dockerfile: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write_dockerfile(dir.path(), dockerfile);
    dir
}
