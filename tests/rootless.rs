//! End-to-end rootless builds: the harness (root) creates an unprivileged user of its own —
//! with the 65,536-ID subordinate range `useradd -m` gives, or without one — runs the real
//! binary as that user (`runuser`, store in `$XDG_DATA_HOME/wbuild`) and compares the images
//! with the same builds done as root: with SOURCE_DATE_EPOCH, the config and manifest digests
//! must be the same. Covers multi-stage, RUN as root and as a `USER`, chown, whiteouts and
//! opaque directories, `COPY --chown`, cache mounts, the default network, pull from and push
//! to a local registry, login, the build cache exported and imported, the output types, the
//! store commands, the fuse-overlayfs and copying snapshotters and runc (the same digests
//! again), a kill -9 mid-RUN followed by a sound `wbuild check`, SIGTERM, and a user without a
//! subordinate range (one warning; files owned by other IDs fail clearly). The harness is in
//! `rootless/harness.rs`.

mod common;
#[path = "rootless/harness.rs"]
mod harness;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use harness::{
    Registry, Running, TestUser, Workdir, children, digests, prerequisites, tar_listing,
};

const MULTI_STAGE: &str = r#"
FROM busybox AS base
RUN echo 'app:x:1234:1234::/home/app:/bin/sh' >> /etc/passwd \
 && echo 'app:x:1234:' >> /etc/group \
 && mkdir -p /home/app /data/keep /data/opq /data/gone \
 && echo k > /data/keep/f && echo o > /data/opq/old && echo g > /data/gone/f \
 && echo x > /data/file-gone \
 && chown -R 1234:1234 /home/app /data/keep && chown 65000:65001 /data/keep/f \
 && chmod 4755 /data/keep/f

FROM base AS changes
RUN rm -rf /data/gone /data/file-gone /data/opq && mkdir /data/opq && echo new > /data/opq/new
USER app
RUN id -u > /home/app/whoami && touch /home/app/by-app
USER root
COPY --chown=1234:1234 hello.txt /srv/hello.txt
COPY --chown=app hello.txt /srv/hello-by-name.txt
RUN --mount=type=cache,target=/cache,id=rootless sh -c 'echo ran >> /cache/log && cp /cache/log /srv/cache-seen'
RUN ip addr show tap0 | grep -c 'inet 10.0.2.100' > /srv/networked

FROM busybox AS other
RUN echo from-other > /other.txt

FROM changes
COPY --from=other /other.txt /srv/other.txt
"#;

#[test]
fn rootless_builds_give_the_images_root_builds_give() {
    if !prerequisites() {
        return;
    }
    let mut user = TestUser::create(true);
    user.allow("/dev/net/tun");
    let Some(wd) = Workdir::new(&user) else {
        return;
    };
    let ctx = wd.context("multi", MULTI_STAGE, &[("hello.txt", "hello\n")]);
    let bb = wd.busybox.to_str().unwrap();

    let root_store = tempfile::tempdir().unwrap();
    let rs = root_store.path();
    wd.root_ok(rs, &["import", bb, "-t", "busybox"]);
    let root_meta = wd.path().join("root-meta.json");
    wd.root_ok(
        rs,
        &[
            "build",
            "--progress=plain",
            "--metadata-file",
            root_meta.to_str().unwrap(),
            &ctx,
        ],
    );

    let log = wd.user_ok(&user, &["import", bb, "-t", "busybox"]);
    assert!(!log.contains("warning"), "{log}");
    let user_meta = wd.path().join("out/user-meta.json");
    let user_tar = wd.path().join("out/image.tar");
    let log = wd.user_ok(
        &user,
        &[
            "build",
            "--progress=plain",
            "--metadata-file",
            user_meta.to_str().unwrap(),
            "-o",
            &format!("type=tar,dest={}", user_tar.display()),
            &ctx,
        ],
    );
    assert_eq!(digests(&user_meta), digests(&root_meta), "{log}");

    // The store is the user's, where XDG_DATA_HOME says.
    let store = user.home.join("data/wbuild");
    assert!(
        store.join("layout").is_file(),
        "no store at {}",
        store.display()
    );

    let listing = tar_listing(&user_tar);
    for want in [
        "-rwsr-xr-x 65000/65001",
        "1234/1234",
        "srv/hello-by-name.txt",
        "srv/other.txt",
    ] {
        assert!(listing.contains(want), "{want} missing:\n{listing}");
    }
    let files = wd.path().join("out/files");
    wd.user_ok(
        &user,
        &[
            "build",
            "-o",
            &format!("type=local,dest={}", files.display()),
            &ctx,
        ],
    );
    let read = |p: &str| std::fs::read_to_string(files.join(p)).unwrap();
    assert_eq!(read("home/app/whoami"), "1234\n");
    assert_eq!(read("srv/cache-seen"), "ran\n");
    assert_eq!(read("srv/networked"), "1\n");
    assert!(!files.join("data/gone").exists() && !files.join("data/file-gone").exists());
    assert!(!files.join("data/opq/old").exists() && files.join("data/opq/new").exists());

    // The whiteouts and the opaque directory are in the image's layers as OCI entries (the
    // image is the root build's too: same digests).
    let oci = wd.path().join("out/image.oci.tar");
    wd.user_ok(
        &user,
        &[
            "build",
            "-o",
            &format!("type=oci,dest={}", oci.display()),
            &ctx,
        ],
    );
    let blobs = wd.path().join("out/blobs");
    std::fs::create_dir(&blobs).unwrap();
    let status = Command::new("tar")
        .arg("-xf")
        .arg(&oci)
        .arg("-C")
        .arg(&blobs)
        .status()
        .unwrap();
    assert!(status.success());
    let mut all = String::new();
    for e in std::fs::read_dir(blobs.join("blobs/sha256")).unwrap() {
        let out = Command::new("tar")
            .arg("-tzf")
            .arg(e.unwrap().path())
            .stderr(Stdio::null())
            .output()
            .unwrap();
        all += &String::from_utf8_lossy(&out.stdout);
    }
    for want in [
        "data/.wh.gone",
        "data/.wh.file-gone",
        "data/opq/.wh..wh..opq",
    ] {
        assert!(all.contains(want), "{want} missing from the layers:\n{all}");
    }

    // The build cache outside the store: exported rootless, imported into an empty store of
    // the user's, where every step comes from it; and the docker output.
    let cache = wd.path().join("out/cache");
    wd.user_ok(
        &user,
        &[
            "build",
            "--cache-to",
            &format!("type=local,dest={},mode=max", cache.display()),
            &ctx,
        ],
    );
    let other_store = format!("{}/other-store", user.home.display());
    let docker_tar = wd.path().join("out/docker.tar");
    let cached_meta = wd.path().join("out/cached-meta.json");
    wd.user_ok(
        &user,
        &["--root", &other_store, "import", bb, "-t", "busybox"],
    );
    let log = wd.user_ok(
        &user,
        &[
            "--root",
            &other_store,
            "build",
            "--progress=plain",
            "--cache-from",
            &format!("type=local,src={}", cache.display()),
            "--metadata-file",
            cached_meta.to_str().unwrap(),
            "-o",
            &format!("type=docker,dest={}", docker_tar.display()),
            &ctx,
        ],
    );
    assert!(log.contains("(0 steps ran"), "{log}");
    // The same image (config digest); its manifest here is the one that left the store
    // compressed (`-o type=docker`), root's the one the store kept with plain-tar layers.
    assert_eq!(digests(&cached_meta).1, digests(&root_meta).1, "{log}");
    assert!(tar_listing(&docker_tar).contains("manifest.json"));

    // cgroup limits cannot be honoured rootless: refused before anything runs.
    let out = wd.as_user(
        &user,
        &["build", "--memory", "64m", "--pids-limit", "50", &ctx],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("--memory and --pids-limit cannot be honoured rootless"),
        "{err}"
    );

    // The other commands, rootless: du, check, frontends, prune.
    assert!(wd.user_ok(&user, &["du"]).contains("snapshots"));
    assert!(wd.user_ok(&user, &["check"]).contains("the store is sound"));
    assert!(wd.user_ok(&user, &["frontends"]).contains("dockerfile"));
    wd.user_ok(&user, &["prune"]);
    assert!(wd.user_ok(&user, &["check"]).contains("the store is sound"));
}

#[test]
fn the_slower_snapshotters_and_runc_give_the_same_images() {
    if !prerequisites() || !common::have_tool("fuse-overlayfs") {
        return;
    }
    let mut user = TestUser::create(true);
    user.allow("/dev/net/tun");
    user.allow("/dev/fuse");
    let Some(wd) = Workdir::new(&user) else {
        return;
    };
    let ctx = wd.context("multi", MULTI_STAGE, &[("hello.txt", "hello\n")]);
    let bb = wd.busybox.to_str().unwrap();
    let root_store = tempfile::tempdir().unwrap();
    wd.root_ok(root_store.path(), &["import", bb, "-t", "busybox"]);
    let root_meta = wd.path().join("root-meta.json");
    wd.root_ok(
        root_store.path(),
        &[
            "build",
            "--metadata-file",
            root_meta.to_str().unwrap(),
            &ctx,
        ],
    );
    // Where the kernel's overlayfs works in a user namespace, the probe starts further down
    // only when asked to; and RUN through runc instead of the light runtime.
    for (env, note) in [
        (
            "WBUILD_SNAPSHOTTER=fuse-overlayfs",
            Some("snapshots: fuse-overlayfs, slower than native overlayfs"),
        ),
        (
            "WBUILD_SNAPSHOTTER=copy",
            Some("snapshots: copying, slower than overlays"),
        ),
        ("WBUILD_RUNTIME=runc", None),
    ] {
        user.env = vec![env.to_string()];
        std::fs::remove_dir_all(user.home.join("data")).ok();
        wd.user_ok(&user, &["import", bb, "-t", "busybox"]);
        let user_meta = wd
            .path()
            .join(format!("out/{}.json", env.replace('=', "-")));
        let log = wd.user_ok(
            &user,
            &[
                "build",
                "--progress=plain",
                "--metadata-file",
                user_meta.to_str().unwrap(),
                &ctx,
            ],
        );
        if let Some(note) = note {
            assert_eq!(log.matches(note).count(), 1, "{log}");
        }
        assert_eq!(digests(&user_meta), digests(&root_meta), "{env}: {log}");
        assert!(wd.user_ok(&user, &["check"]).contains("the store is sound"));
    }
}

#[test]
fn rootless_pulls_from_and_pushes_to_a_registry() {
    if !prerequisites() {
        return;
    }
    let user = TestUser::create(true);
    let Some(wd) = Workdir::new(&user) else {
        return;
    };
    let Some(reg) = Registry::start() else {
        return;
    };
    let base = format!("{}/rootless/busybox:1", reg.addr);
    let root_store = tempfile::tempdir().unwrap();
    let rs = root_store.path();
    wd.root_ok(rs, &["import", wd.busybox.to_str().unwrap(), "-t", &base]);
    wd.root_ok(rs, &["push", &base]);

    let ctx = wd.context(
        "pushed",
        &format!(
            "FROM {base}\nRUN --network=none mkdir /owned && chown 321:654 /owned && echo hi > /owned/f\n"
        ),
        &[],
    );
    let root_meta = wd.path().join("root-meta.json");
    wd.root_ok(
        rs,
        &[
            "build",
            "--metadata-file",
            root_meta.to_str().unwrap(),
            &ctx,
        ],
    );

    // login and logout rootless write and remove the user's own credentials.
    wd.user_ok(
        &user,
        &["login", &reg.addr, "-u", "someone", "-p", "secret"],
    );
    let config = user.home.join(".docker/config.json");
    assert!(
        std::fs::read_to_string(&config)
            .unwrap()
            .contains(&reg.addr)
    );
    let owner = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(&config).unwrap());
    let home_owner = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(&user.home).unwrap());
    assert_eq!(owner, home_owner, "the credentials are not the user's");
    wd.user_ok(&user, &["logout", &reg.addr]);
    let pulled = wd.user_ok(&user, &["pull", &base]);
    assert!(pulled.contains("sha256:"), "{pulled}");
    let user_meta = wd.path().join("out/meta.json");
    let name = format!("{}/rootless/out:user", reg.addr);
    wd.user_ok(
        &user,
        &[
            "build",
            "-t",
            &name,
            "--metadata-file",
            user_meta.to_str().unwrap(),
            &ctx,
        ],
    );
    assert_eq!(digests(&user_meta), digests(&root_meta));
    // `push` prints the pinned name of what it pushed (the image compressed on the way out).
    let pushed = wd.user_ok(&user, &["push", &name]);
    let manifest = pushed
        .lines()
        .next()
        .unwrap_or_default()
        .rsplit_once('@')
        .unwrap_or_else(|| panic!("{pushed}"))
        .1
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string();

    // What the user pushed is what root pulls: the same manifest.
    let fresh = tempfile::tempdir().unwrap();
    wd.root_ok(fresh.path(), &["pull", &name]);
    let images = wd.root_ok(fresh.path(), &["images"]);
    assert!(
        images.contains(&manifest[..19]),
        "{manifest} not in\n{images}"
    );
}

#[test]
fn a_rootless_build_killed_mid_run_leaves_a_sound_store() {
    if !prerequisites() {
        return;
    }
    let user = TestUser::create(true);
    let Some(wd) = Workdir::new(&user) else {
        return;
    };
    wd.user_ok(
        &user,
        &["import", wd.busybox.to_str().unwrap(), "-t", "busybox"],
    );
    let ctx = wd.context(
        "killed",
        "FROM busybox\nRUN --network=none echo rootless-step-started; sleep 5\n",
        &[],
    );
    let mut child = Running(
        wd.user_cmd(&user, &["build", "--progress=plain", &ctx])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stderr = child.0.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("rootless-step-started") && !line.contains("RUN") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(60))
        .expect("the RUN did not start");
    // runuser's child is the wbuild the user started (which waits for the one in the
    // namespace): kill -9 that one.
    let wbuild = children(child.0.id());
    assert_eq!(wbuild.len(), 1, "runuser's children: {wbuild:?}");
    let inner = children(wbuild[0] as u32);
    // SAFETY: kill on a process this test started.
    unsafe { libc::kill(wbuild[0], libc::SIGKILL) };
    let _ = child.0.wait();
    // The wbuild in the namespace dies with it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while inner
        .iter()
        .any(|p| Path::new(&format!("/proc/{p}/exe")).exists())
    {
        assert!(
            Instant::now() < deadline,
            "the namespace's wbuild outlived its parent"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let out = wd.as_user(&user, &["check"]);
    let report =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{report}");
    assert!(report.contains("the store is sound"), "{report}");
    // The next build sweeps what the killed one left, and the store stays sound.
    let next = wd.context("next", "FROM busybox\nRUN --network=none true\n", &[]);
    wd.user_ok(&user, &["build", &next]);
    let out = wd.user_ok(&user, &["check"]);
    assert!(
        out.contains("the store is sound") && !out.contains("leftover"),
        "{out}"
    );
}

#[test]
fn without_a_subordinate_range_only_root_owned_files_can_be_kept() {
    if !prerequisites() {
        return;
    }
    let user = TestUser::create(false);
    let Some(wd) = Workdir::new(&user) else {
        return;
    };
    let out = wd.as_user(
        &user,
        &["import", wd.busybox.to_str().unwrap(), "-t", "busybox"],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_eq!(
        err.matches("warning: rootless wbuild maps only your own user and group ID")
            .count(),
        1,
        "{err}"
    );
    assert_eq!(
        err.lines().filter(|l| l.starts_with("warning")).count(),
        1,
        "{err}"
    );

    // An image whose files are all root's builds, RUN included.
    let ok = wd.context(
        "root-owned",
        "FROM busybox\nRUN --network=none echo fine > /fine\n",
        &[],
    );
    let meta = wd.path().join("out/meta.json");
    wd.user_ok(
        &user,
        &["build", "--metadata-file", meta.to_str().unwrap(), &ok],
    );
    let root_store = tempfile::tempdir().unwrap();
    wd.root_ok(
        root_store.path(),
        &["import", wd.busybox.to_str().unwrap(), "-t", "busybox"],
    );
    let root_meta = wd.path().join("root-meta.json");
    wd.root_ok(
        root_store.path(),
        &["build", "--metadata-file", root_meta.to_str().unwrap(), &ok],
    );
    assert_eq!(digests(&meta), digests(&root_meta));

    // Anything that needs another owner fails and says why, never changing the image: a
    // layer with such a file, COPY --chown, a RUN as another user.
    let owned = wd.context(
        "owned",
        "FROM busybox\nCOPY --chown=5:5 f /f\n",
        &[("f", "x")],
    );
    let out = wd.as_user(&user, &["build", &owned]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("--chown=5:5 is the owner 5:5") && err.contains("no subordinate ID range"),
        "{err}"
    );
    let user_run = wd.context(
        "user-run",
        "FROM busybox\nUSER 1000:1000\nRUN --network=none true\n",
        &[],
    );
    let out = wd.as_user(&user, &["build", &user_run]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("the RUN's user is 1000:1000"), "{err}");
    // A base image with a file of another owner (a layer made as root) cannot be unpacked.
    let layered = wd.context(
        "layered",
        "FROM busybox\nRUN --network=none mkdir /o && chown 1000:42 /o\n",
        &[],
    );
    let tar = wd.path().join("owned.tar");
    wd.root_ok(
        root_store.path(),
        &[
            "build",
            "-o",
            &format!("type=oci,dest={}", tar.display()),
            &layered,
        ],
    );
    std::fs::set_permissions(&tar, std::fs::Permissions::from_mode(0o644)).unwrap();
    wd.user_ok(&user, &["import", tar.to_str().unwrap(), "-t", "owned"]);
    let on_owned = wd.context("on-owned", "FROM owned\nRUN --network=none true\n", &[]);
    let out = wd.as_user(&user, &["build", &on_owned]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("extracting o:") && err.contains("is owned by 1000:42"),
        "{err}"
    );
}

#[test]
fn sigterm_to_the_wbuild_the_user_started_ends_the_build_in_the_namespace() {
    if !prerequisites() {
        return;
    }
    let user = TestUser::create(true);
    let Some(wd) = Workdir::new(&user) else {
        return;
    };
    wd.user_ok(
        &user,
        &["import", wd.busybox.to_str().unwrap(), "-t", "busybox"],
    );
    let ctx = wd.context(
        "signalled",
        "FROM busybox\nRUN --network=none echo signalled-step-started; sleep 5\n",
        &[],
    );
    let mut child = Running(
        wd.user_cmd(&user, &["build", "--progress=plain", &ctx])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stderr = child.0.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("signalled-step-started") && !line.contains("RUN") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(60))
        .expect("the RUN did not start");
    let outer = children(child.0.id());
    assert_eq!(outer.len(), 1, "runuser's children: {outer:?}");
    let inner = children(outer[0] as u32);
    assert_eq!(inner.len(), 1, "the waiting wbuild's children: {inner:?}");
    // SAFETY: kill on a process this test started.
    unsafe { libc::kill(outer[0], libc::SIGTERM) };
    // Both end: the one in the namespace gets the SIGTERM passed on (or, were the waiting one
    // gone first, its parent-death signal).
    let deadline = Instant::now() + Duration::from_secs(10);
    while [outer[0], inner[0]]
        .iter()
        .any(|p| Path::new(&format!("/proc/{p}/exe")).exists())
    {
        assert!(
            Instant::now() < deadline,
            "SIGTERM did not end the build (pids {outer:?} {inner:?})"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = child.0.wait().unwrap();
    assert!(!status.success(), "{status:?}");
}
