//! Integration tests of the sandbox: they run real containers through runc on a busybox rootfs
//! and need root. Skipped (with a printed reason) only when runc is missing and `CI` is unset.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::detect::{Capabilities, detect};
use super::*;
use crate::snapshot::mounts_under;

fn should_skip() -> bool {
    if super::detect::find_runc().is_none() {
        crate::test_skip::skip("runc is not installed (apt-get install runc)");
        return true;
    }
    false
}

fn busybox() -> PathBuf {
    ["/bin/busybox", "/usr/bin/busybox"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect("busybox-static is needed: apt-get install busybox-static")
}

/// A busybox rootfs: /bin/busybox with every applet symlinked, /etc/passwd and /etc/group, and
/// /data/old.txt to delete.
fn make_rootfs(dir: &Path) {
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    std::fs::copy(busybox(), dir.join("bin/busybox")).unwrap();
    let list = std::process::Command::new(busybox())
        .arg("--list")
        .output()
        .unwrap();
    for applet in String::from_utf8(list.stdout).unwrap().lines() {
        if applet != "busybox" {
            std::os::unix::fs::symlink("busybox", dir.join("bin").join(applet)).unwrap();
        }
    }
    std::fs::create_dir_all(dir.join("etc")).unwrap();
    std::fs::write(
        dir.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    )
    .unwrap();
    std::fs::write(dir.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n").unwrap();
    std::fs::create_dir_all(dir.join("data")).unwrap();
    std::fs::write(dir.join("data/old.txt"), "old\n").unwrap();
    for d in ["proc", "sys", "dev", "tmp"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
}

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        make_rootfs(&dir.path().join("lower"));
        for d in ["upper", "work", "state"] {
            std::fs::create_dir(dir.path().join(d)).unwrap();
        }
        Env { dir }
    }
    fn p(&self, s: &str) -> PathBuf {
        self.dir.path().join(s)
    }
    fn spec(&self, script: &str) -> RunSpec {
        RunSpec {
            state_dir: self.p("state"),
            rootfs_lowers: vec![self.p("lower")],
            upper: self.p("upper"),
            work: self.p("work"),
            args: vec!["sh".into(), "-c".into(), script.into()],
            env: vec![("PATH".into(), "/bin".into())],
            cwd: "/".into(),
            user: String::new(),
            hostname: "testhost".into(),
            network: Network::None,
            mounts: vec![],
            limits: Default::default(),
        }
    }
    /// Run and check that nothing is left behind on the host.
    fn run(&self, spec: &RunSpec) -> (RunOutcome, String) {
        let mut out = Vec::new();
        let outcome = run(spec, &mut |b| out.extend_from_slice(b)).expect("run failed");
        self.assert_clean();
        (outcome, String::from_utf8_lossy(&out).into_owned())
    }
    fn assert_clean(&self) {
        assert_eq!(
            mounts_under(self.dir.path()).unwrap(),
            Vec::<PathBuf>::new(),
            "leftover mounts"
        );
        let bundles: Vec<_> = std::fs::read_dir(self.p("state/bundles"))
            .unwrap()
            .collect();
        assert!(bundles.is_empty(), "leftover bundles: {bundles:?}");
    }
}

#[test]
fn detect_reports_this_host() {
    if should_skip() {
        return;
    }
    let caps = detect().unwrap();
    assert!(caps.runc.is_some() && caps.require_runc().is_ok());
    assert!(
        caps.runc_version.as_deref().unwrap_or("").contains("runc"),
        "{caps:?}"
    );
    assert!(caps.is_root, "the sandbox tests need root");
    assert!(caps.overlay, "overlay unusable: {:?}", caps.overlay_error);
    assert!(caps.can_run());
}

#[test]
fn missing_runc_error_says_how_to_install() {
    let caps = Capabilities {
        runc: None,
        runc_version: None,
        is_root: true,
        overlay: true,
        overlay_error: None,
    };
    assert!(
        caps.require_runc()
            .unwrap_err()
            .to_string()
            .contains("apt-get install runc")
    );
}

#[test]
fn output_is_streamed_and_exit_code_propagates() {
    if should_skip() {
        return;
    }
    let env = Env::new();
    let (outcome, out) = env.run(&env.spec("echo hello; echo oops >&2; exit 3"));
    assert_eq!(outcome.exit_code, 3);
    assert!(!outcome.success());
    assert!(out.contains("hello\n") && out.contains("oops\n"), "{out:?}");
    let (outcome, out) = env.run(&env.spec("echo fine"));
    assert!(outcome.success());
    assert_eq!(out, "fine\n");
}

#[test]
fn writes_land_in_upper_and_deletes_leave_whiteouts() {
    if should_skip() {
        return;
    }
    let env = Env::new();
    let (outcome, out) = env.run(&env.spec("echo new > /new.txt && rm /data/old.txt && ls /data"));
    assert!(outcome.success(), "{out}");
    assert_eq!(
        std::fs::read_to_string(env.p("upper/new.txt")).unwrap(),
        "new\n"
    );
    assert!(!env.p("lower/new.txt").exists());
    assert!(env.p("lower/data/old.txt").exists());
    let wh = std::fs::symlink_metadata(env.p("upper/data/old.txt")).unwrap();
    assert!(
        wh.file_type().is_char_device() && wh.rdev() == 0,
        "not a whiteout: {wh:?}"
    );
    // Mount points that already existed are not copied up; nothing else leaks into the upper.
    let mut top: Vec<String> = std::fs::read_dir(env.p("upper"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    top.sort();
    assert_eq!(top, ["data", "new.txt"]);
}

#[test]
fn env_cwd_and_user_are_applied() {
    if should_skip() {
        return;
    }
    let env = Env::new();
    let mut spec = env.spec("echo $FOO; pwd; id -u; id -g");
    spec.env.push(("FOO".into(), "bar baz".into()));
    spec.cwd = "/work/dir".into();
    spec.user = "nobody".into();
    let (outcome, out) = env.run(&spec);
    assert!(outcome.success(), "{out}");
    assert_eq!(out, "bar baz\n/work/dir\n65534\n65534\n");
    assert!(
        env.p("upper/work/dir").is_dir(),
        "WORKDIR not created in the upper"
    );

    let mut spec = env.spec("id -u; id -g");
    spec.user = "1234:55".into();
    assert_eq!(env.run(&spec).1, "1234\n55\n");

    let mut spec = env.spec("true");
    spec.user = "ghost".into();
    let err = run(&spec, &mut |_| {}).unwrap_err();
    assert!(format!("{err:#}").contains("ghost"), "{err:#}");
    env.assert_clean();
}

#[test]
fn proc_network_hostname_and_host_paths_are_isolated() {
    if should_skip() {
        return;
    }
    let env = Env::new();
    let marker = std::env::temp_dir().join(format!("wbuild-host-marker-{}", std::process::id()));
    std::fs::write(&marker, "host").unwrap();
    let script = format!(
        "cat /proc/1/comm; ls /proc | grep -c '^[0-9]'; echo links=$(ip -o link | wc -l); \
         ip -o link | grep -o ': lo:'; hostname; \
         test -e {m} && echo visible || echo hidden; cat /etc/hosts; echo resolv=$(cat /etc/resolv.conf | wc -c); \
         cat /proc/self/status | grep CapEff; touch /proc/sys/x 2>/dev/null || echo rosys",
        m = marker.display()
    );
    let (outcome, out) = env.run(&env.spec(&script));
    std::fs::remove_file(&marker).unwrap();
    assert!(outcome.success(), "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "sh", "pid 1 is not the command: {out}");
    let pids: u32 = lines[1].parse().unwrap();
    assert!(pids <= 5, "host processes visible: {out}");
    assert_eq!(lines[2], "links=1", "{out}");
    assert_eq!(lines[3], ": lo:");
    assert_eq!(lines[4], "testhost");
    assert_eq!(lines[5], "hidden", "host /tmp visible");
    assert!(out.contains("127.0.0.1\tlocalhost testhost\n"), "{out}");
    assert!(out.contains("resolv=0\n"), "{out}");
    // Docker's 14 default capabilities: 0x00000000a80425fb.
    assert!(out.contains("CapEff:\t00000000a80425fb"), "{out}");
    assert!(out.contains("rosys"), "{out}");
}

#[test]
fn host_network_shares_resolv_conf() {
    if should_skip() {
        return;
    }
    let env = Env::new();
    let mut spec = env.spec("cat /etc/resolv.conf; echo links=$(ip -o link | wc -l)");
    spec.network = Network::Host;
    let (outcome, out) = env.run(&spec);
    assert!(outcome.success(), "{out}");
    let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    assert!(out.starts_with(&host_resolv), "{out}");
    let host_links = std::fs::read_dir("/sys/class/net").unwrap().count();
    assert!(out.contains(&format!("links={host_links}\n")), "{out}");
}

#[test]
fn tmpfs_bind_and_file_mounts_work() {
    if should_skip() {
        return;
    }
    let env = Env::new();
    let shared = env.p("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::write(shared.join("in.txt"), "from host\n").unwrap();
    let ro = env.p("ro");
    std::fs::create_dir(&ro).unwrap();
    let mut spec = env.spec(
        "grep -c ' /scratch tmpfs ' /proc/mounts; echo t > /scratch/t; cat /mnt/shared/in.txt; \
         echo out > /mnt/shared/out.txt; touch /mnt/ro/x 2>/dev/null || echo ro-ok; cat /run/secrets/s; \
         stat -c '%a %u:%g' /run/secrets/s",
    );
    spec.mounts = vec![
        ExtraMount::Tmpfs {
            target: "/scratch".into(),
            size: Some(1 << 20),
        },
        ExtraMount::Bind {
            source: shared.clone(),
            target: "/mnt/shared".into(),
            readonly: false,
        },
        ExtraMount::Bind {
            source: ro.clone(),
            target: "/mnt/ro".into(),
            readonly: true,
        },
        ExtraMount::File {
            target: "/run/secrets/s".into(),
            content: b"s3cret\n".to_vec(),
            mode: 0o400,
            uid: 1000,
            gid: 1001,
        },
    ];
    let (outcome, out) = env.run(&spec);
    assert!(outcome.success(), "{out}");
    assert_eq!(out, "1\nfrom host\nro-ok\ns3cret\n400 1000:1001\n");
    assert_eq!(
        std::fs::read_to_string(shared.join("out.txt")).unwrap(),
        "out\n"
    );
    assert!(!ro.join("x").exists());
    // Mount-point stubs runc created are removed: no trace of the mounts in the layer.
    for stub in ["scratch", "mnt", "run"] {
        assert!(
            !env.p("upper").join(stub).exists(),
            "stub /{stub} left in the upper"
        );
    }
}

#[test]
fn scratch_rootfs_without_lowers() {
    if should_skip() {
        return;
    }
    let env = Env::new();
    let mut spec = env.spec("echo made > /made; echo ok");
    spec.rootfs_lowers.clear();
    spec.args[0] = "/bin/sh".into();
    spec.mounts = vec![ExtraMount::Bind {
        source: busybox(),
        target: "/bin/sh".into(),
        readonly: true,
    }];
    let (outcome, out) = env.run(&spec);
    assert!(outcome.success(), "{out}");
    assert_eq!(out, "ok\n");
    assert_eq!(
        std::fs::read_to_string(env.p("upper/made")).unwrap(),
        "made\n"
    );
    assert!(
        !env.p("upper/bin").exists(),
        "bind-mount stub left in the upper"
    );
}

#[test]
fn failures_to_start_clean_up() {
    if should_skip() {
        return;
    }
    let env = Env::new();
    let mut spec = env.spec("");
    spec.args = vec!["/no/such/binary".into()];
    let mut out = Vec::new();
    let res = run(&spec, &mut |b| out.extend_from_slice(b));
    match res {
        Err(e) => assert!(format!("{e:#}").contains("no such"), "{e:#}"),
        Ok(o) => assert_ne!(o.exit_code, 0),
    }
    env.assert_clean();
    // A bad lower fails the mount; still nothing is left behind.
    let mut spec = env.spec("true");
    spec.rootfs_lowers = vec![env.p("missing-lower")];
    assert!(run(&spec, &mut |_| {}).is_err());
    env.assert_clean();
}
