//! `ADD <git URL>` end to end: a repository served by `git daemon` on 127.0.0.1, fetched by the
//! host, keyed on the resolved commit (a moved branch re-runs the step, an unchanged one does
//! not), `#ref:subdir`, `--keep-git-dir` and `--checksum`.

mod common;

use std::net::TcpListener;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.invalid")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.invalid")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// `git daemon` serving `base` on a free loopback port; killed on drop.
struct Daemon {
    child: Child,
    port: u16,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // The daemon forks a server per connection: end its whole process group.
        // SAFETY: kill(2) of the daemon's own process group (it was started with pgid = pid).
        unsafe { libc::kill(-(self.child.id() as libc::pid_t), libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

fn daemon(base: &Path) -> Daemon {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("git")
        .args([
            "daemon",
            "--reuseaddr",
            "--export-all",
            "--listen=127.0.0.1",
        ])
        .arg(format!("--port={port}"))
        .arg(format!("--base-path={}", base.display()))
        .arg(base)
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let d = Daemon { child, port };
    // Bounded wait for the listener.
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "git daemon did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    d
}

#[test]
fn add_git_fetches_on_the_host_and_keys_on_the_commit() {
    let Some(wb) = common::with_busybox() else {
        return;
    };
    if !common::have_tool("git") {
        return;
    }
    let served = tempfile::tempdir().unwrap();
    let repo = served.path().join("repo.git");
    std::fs::create_dir(&repo).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    std::fs::create_dir(repo.join("sub")).unwrap();
    std::fs::write(repo.join("README"), "v1\n").unwrap();
    std::fs::write(repo.join("sub/inner.txt"), "inner\n").unwrap();
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "one"]);
    git(&repo, &["tag", "-a", "v1", "-m", "tag one"]);
    let first = git(&repo, &["rev-parse", "HEAD"]);
    let d = daemon(served.path());
    let url = format!("git://127.0.0.1:{}/repo.git", d.port);

    let ctx = common::context(&format!(
        "FROM busybox\n\
         ADD {url}#v1 /tagged\n\
         ADD --checksum={short} {url}#{first} /pinned\n\
         ADD {url}#main:sub /sub\n\
         ADD --keep-git-dir {url}#main /kept\n\
         ADD {url}#main /moving\n",
        short = &first[..12],
    ));
    let out = tempfile::tempdir().unwrap();
    let dest = format!("type=local,dest={}", out.path().display());
    let c = ctx.path().to_str().unwrap();
    wb.build(&["build", "-o", &dest, c]);
    let read = |p: &str| std::fs::read_to_string(out.path().join(p)).unwrap();
    assert_eq!(read("tagged/README"), "v1\n");
    assert_eq!(read("tagged/sub/inner.txt"), "inner\n");
    assert!(
        !out.path().join("tagged/.git").exists(),
        "no .git by default"
    );
    assert_eq!(read("sub/inner.txt"), "inner\n");
    assert!(!out.path().join("sub/README").exists(), "only the subdir");
    assert!(
        out.path().join("kept/.git").is_dir(),
        "--keep-git-dir keeps .git"
    );
    assert_eq!(read("pinned/README"), "v1\n");
    assert_eq!(read("moving/README"), "v1\n");

    // Unchanged refs: every step cached, nothing fetched again.
    let meta = tempfile::tempdir().unwrap();
    let meta_file = meta.path().join("m.json");
    let m = meta_file.to_str().unwrap();
    wb.build(&["build", "--metadata-file", m, c]);
    let steps = |f: &Path| -> (u64, u64) {
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(f).unwrap()).unwrap();
        (
            v["wbuild.steps"]["ran"].as_u64().unwrap(),
            v["wbuild.steps"]["cached"].as_u64().unwrap(),
        )
    };
    assert_eq!(steps(&meta_file), (0, 5));

    // The branch moves: the steps that follow it re-run, the tag and the pinned commit do not.
    std::fs::write(repo.join("README"), "v2\n").unwrap();
    git(&repo, &["commit", "-q", "-am", "two"]);
    let out2 = tempfile::tempdir().unwrap();
    let dest2 = format!("type=local,dest={}", out2.path().display());
    wb.build(&["build", "--metadata-file", m, "-o", &dest2, c]);
    let (ran, cached) = steps(&meta_file);
    assert_eq!((ran, cached), (3, 2), "sub, kept and moving re-run");
    let read2 = |p: &str| std::fs::read_to_string(out2.path().join(p)).unwrap();
    assert_eq!(read2("moving/README"), "v2\n");
    assert_eq!(read2("tagged/README"), "v1\n");
    assert_eq!(read2("pinned/README"), "v1\n");

    // A checksum that is not the commit's is refused, naming both.
    let bad = common::context(&format!(
        "FROM busybox\nADD --checksum=0123abcd {url}#main /x\n"
    ));
    let err = wb.fails(&["build", bad.path().to_str().unwrap()]);
    assert!(err.contains("expected checksum to match 0123abcd"), "{err}");
    // A ref the remote does not have.
    let missing = common::context(&format!("FROM busybox\nADD {url}#nope /x\n"));
    let err = wb.fails(&["build", missing.path().to_str().unwrap()]);
    assert!(
        err.contains("no branch, tag or ref named \"nope\""),
        "{err}"
    );
    drop(d);
}
