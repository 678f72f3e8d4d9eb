//! Helpers for the end-to-end tests: run the real `wbuild` binary with a private root.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

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
