//! End-to-end registry tests: Debian's `docker-registry` (the CNCF distribution registry) is
//! started by the harness on 127.0.0.1 with a free port and a private storage directory, one
//! instance with htpasswd basic auth; the real `wbuild` pulls from it, builds on what it pulled,
//! pushes to it (checked with skopeo), round-trips the build cache between empty stores, picks
//! a platform from an index, rejects a damaged blob, and logs in.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::Wbuild;
use common::registry::{Registry, http};

/// A store with the busybox base imported as `name` (and pushed there when `push`).
fn store_with_base(name: &str) -> Option<Wbuild> {
    let wb = Wbuild::new();
    let dir = tempfile::tempdir().unwrap();
    let tar = common::busybox_oci_tar(dir.path())?;
    wb.ok(&["import", tar.to_str().unwrap(), "-t", name]);
    Some(wb)
}

/// The first line of stdout (commands print the pinned reference there).
fn line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

/// The config of the image pinned as `NAME@sha256:…`, read from `wb`'s store.
fn blob(wb: &Wbuild, digest: &str) -> Vec<u8> {
    let hex = digest.rsplit(':').next().unwrap();
    std::fs::read(wb.root.path().join("blobs/sha256").join(hex)).unwrap()
}

/// Runs `cmd` with `stdin` as its input; returns whether it succeeded and its stderr.
fn with_stdin(mut cmd: Command, stdin: &str) -> (bool, String) {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn manifest_digest(pinned: &str) -> &str {
    pinned.rsplit('@').next().unwrap()
}

#[test]
fn pull_then_build_from_the_pulled_base() {
    let Some(reg) = Registry::start() else {
        return;
    };
    let base = reg.name("test/bb:1");
    let Some(a) = store_with_base(&base) else {
        return;
    };
    a.ok(&["push", &base]);
    // The same image under another name, used only as a RUN mount source below.
    let tools = reg.name("test/tools:1");
    let dir = tempfile::tempdir().unwrap();
    let tar = common::busybox_oci_tar(dir.path()).unwrap();
    a.ok(&["import", tar.to_str().unwrap(), "-t", &tools]);
    a.ok(&["push", &tools]);

    // Errors a user can act on.
    let b = Wbuild::new();
    let err = b.fails(&["pull", &reg.name("test/bb:nope")]);
    assert!(
        err.contains("not found") && err.contains("test/bb:nope"),
        "{err}"
    );
    let err = b.fails(&["pull", "127.0.0.1:1/x/y:1"]);
    assert!(
        err.contains("cannot reach the registry 127.0.0.1:1"),
        "{err}"
    );

    let pinned = b.ok(&["pull", &base]);
    let pinned = line(&pinned).to_string();
    assert!(pinned.starts_with(&format!("{base}@sha256:")), "{pinned}");
    let out = b.run(&["pull", &base]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("0 of 1 layers downloaded"),
        "a second pull fetched again: {err}"
    );
    assert!(b.ok(&["images"]).contains(&base));
    // Where blobs came from is remembered (for cross-repository mounts) until they are pruned.
    let sources = b.root.path().join("registry-sources");
    assert_eq!(std::fs::read_dir(&sources).unwrap().count(), 2);
    b.ok(&["rm", &base]);
    b.ok(&["prune"]);
    assert_eq!(std::fs::read_dir(&sources).unwrap().count(), 0);

    // A fresh store builds FROM the registry image: pulled on demand, the base's PATH reaches
    // the frontend (ENV expansion), and the tag is pinned in the progress and the history.
    if !common::have_tool("runc") {
        return;
    }
    let c = Wbuild::new();
    let ctx = common::context(&format!(
        "FROM {base}\nENV P2=$PATH:/extra\nRUN echo \"$P2\" > /p\n\
         COPY --from={base} /etc/passwd /pw\n\
         RUN --mount=type=bind,from={tools},source=/etc,target=/t cat /t/passwd > /mounted\n"
    ));
    let plan: serde_json::Value =
        serde_json::from_str(&c.ok(&["plan", "--pull", ctx.path().to_str().unwrap()])).unwrap();
    assert_eq!(plan["images"][&base], pinned.as_str(), "{plan}");
    let out = tempfile::tempdir().unwrap();
    let dest = format!("type=local,dest={}", out.path().display());
    let log = c.build(&[
        "build",
        "-t",
        "result",
        "-o",
        &dest,
        ctx.path().to_str().unwrap(),
    ]);
    assert!(log.contains(&format!("{base} is {pinned}")), "{log}");
    assert_eq!(
        std::fs::read_to_string(out.path().join("p")).unwrap(),
        "/usr/local/bin:/bin:/extra\n"
    );
    assert!(out.path().join("pw").is_file());
    assert!(out.path().join("mounted").is_file());
    let images = c.ok(&["images"]);
    assert!(images.contains(&base), "the pulled base is named: {images}");
    assert!(
        images.contains(&tools),
        "the mount's image was pulled: {images}"
    );
    let oci = tempfile::tempdir().unwrap();
    c.ok(&[
        "build",
        "-o",
        &format!("type=oci,dest={}", oci.path().display()),
        ctx.path().to_str().unwrap(),
    ]);
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(oci.path().join("index.json")).unwrap()).unwrap();
    let md = index["manifests"][0]["digest"].as_str().unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(&blob(&c, md)).unwrap();
    let config =
        String::from_utf8(blob(&c, manifest["config"]["digest"].as_str().unwrap())).unwrap();
    assert!(
        config.contains(&format!("FROM {pinned}")),
        "history lacks the pin: {config}"
    );
}

#[test]
fn push_is_valid_for_skopeo_and_skips_what_the_registry_has() {
    let Some(reg) = Registry::start() else {
        return;
    };
    if !common::have_tool("skopeo") {
        return;
    }
    let base = reg.name("test/bb:1");
    let Some(wb) = store_with_base(&base) else {
        return;
    };
    wb.ok(&["push", &base]);
    // A build without RUN: COPY onto the base, pushed with --push and with -o type=registry.
    let ctx = common::context(&format!("FROM {base}\nCOPY Dockerfile /df\nLABEL x=y\n"));
    let app = reg.name("test/app:1");
    // --provenance=false: a plain image manifest, not an index with an attestation (the
    // default of --push, as buildx; tests/multiplatform.rs covers that).
    let log = wb.build(&[
        "build",
        "-t",
        &app,
        "--push",
        "--provenance=false",
        ctx.path().to_str().unwrap(),
    ]);
    assert!(
        log.contains("1 blobs uploaded") || log.contains("2 blobs uploaded"),
        "{log}"
    );
    let built = log
        .lines()
        .find_map(|l| l.strip_prefix("built "))
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    let out = common::run_ok(Command::new("skopeo").args([
        "inspect",
        "--tls-verify=false",
        &format!("docker://{app}"),
    ]));
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        info["Digest"],
        built.as_str(),
        "the manifest was not pushed byte-exact"
    );
    assert_eq!(info["Labels"]["x"], "y");
    let copy = tempfile::tempdir().unwrap();
    common::run_ok(Command::new("skopeo").args([
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{app}"),
        &format!("oci:{}:app", copy.path().display()),
    ]));

    // Pushing again uploads nothing; another repository of the same registry mounts the blobs.
    let again = wb.run(&["push", &app]);
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(err.contains("0 blobs uploaded, 0 mounted"), "{err}");
    let other = reg.name("other/app:2");
    let dest = format!("type=registry,name={other}");
    let log = wb.build(&[
        "build",
        "-o",
        &dest,
        "--provenance=false",
        ctx.path().to_str().unwrap(),
    ]);
    // The base layer and the COPY layer come from the other repository; only the config may be
    // new (its build time changes unless the rebuild falls in the same second).
    let counts = log
        .lines()
        .find_map(|l| {
            l.split_once(" blobs uploaded, ")
                .map(|(a, b)| (a.to_string(), b.to_string()))
        })
        .unwrap_or_else(|| panic!("no push line: {log}"));
    let uploaded: usize = counts.0.rsplit('(').next().unwrap().parse().unwrap();
    let mounted: usize = counts.1.split(' ').next().unwrap().parse().unwrap();
    assert!(
        mounted >= 2 && uploaded + mounted == 3,
        "no cross-repository mount: {log}"
    );
    common::run_ok(Command::new("skopeo").args([
        "inspect",
        "--tls-verify=false",
        &format!("docker://{other}"),
    ]));
}

/// A name no earlier call of this process returned.
fn rand_suffix() -> u64 {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

#[test]
fn build_cache_round_trip_between_empty_stores() {
    let Some(reg) = Registry::start() else {
        return;
    };
    if !common::have_tool("runc") {
        return;
    }
    let base = reg.name("test/bb:1");
    let Some(a) = store_with_base(&base) else {
        return;
    };
    a.ok(&["push", &base]);
    let ctx = common::context(&format!(
        "FROM {base} AS gen\nRUN echo generated > /g\n\
         FROM {base}\nRUN echo one > /one\nCOPY --from=gen /g /g\n"
    ));
    let ctx = ctx.path().to_str().unwrap();
    let cache = reg.name("cache/app:buildcache");
    let local = tempfile::tempdir().unwrap();
    // Each build also writes an OCI layout, so its `built` digest is the image as it leaves
    // the store (compressed): the store keeps a built layer as a plain tar, a cache-imported
    // one as the cache has it (compressed), and the two agree once compressed.
    let out = tempfile::tempdir().unwrap();
    let build = |wb: &Wbuild, args: &[&str]| {
        let mut cmd = wb.cmd();
        let dest = out.path().join(format!("oci-{}", rand_suffix()));
        cmd.arg("build")
            .args(args)
            .arg("-o")
            .arg(format!("type=oci,dest={}", dest.display()))
            .arg(ctx)
            .env("SOURCE_DATE_EPOCH", "1700000000");
        let out = cmd.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{err}");
        err
    };
    let first = build(
        &a,
        &[
            "--cache-to",
            &format!("type=registry,ref={cache},mode=max"),
            "--cache-to",
            &format!("type=local,dest={},mode=max", local.path().display()),
        ],
    );
    assert!(first.contains("(3 steps ran, 0 cached)"), "{first}");
    let digest = |log: &str| {
        log.lines()
            .find_map(|l| l.strip_prefix("built "))
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .to_string()
    };
    // A second machine: empty store, the base comes from the registry, every step from the cache.
    let b = Wbuild::new();
    let second = build(&b, &["--cache-from", &format!("type=registry,ref={cache}")]);
    assert!(second.contains("(0 steps ran, 3 cached)"), "{second}");
    assert_eq!(digest(&first), digest(&second));
    // The same from the directory cache.
    let c = Wbuild::new();
    let third = build(
        &c,
        &[
            "--cache-from",
            &format!("type=local,src={}", local.path().display()),
        ],
    );
    assert!(third.contains("(0 steps ran, 3 cached)"), "{third}");
    assert_eq!(digest(&first), digest(&third));
    // A cache that does not exist yet is a warning, not an error.
    let d = Wbuild::new();
    let none = build(
        &d,
        &[
            "--cache-from",
            &format!("type=registry,ref={}", reg.name("cache/none:x")),
        ],
    );
    assert!(none.contains("no build cache at"), "{none}");
    assert!(none.contains("(3 steps ran, 0 cached)"), "{none}");
}

#[test]
fn multi_platform_index_picks_the_platform() {
    let Some(reg) = Registry::start() else {
        return;
    };
    // Two single-platform images (no RUN, so no sandbox needed), pushed by tag.
    let wb = Wbuild::new();
    let mut entries = Vec::new();
    for arch in ["amd64", "arm64"] {
        let ctx = common::context("FROM scratch\nCOPY arch.txt /arch.txt\n");
        std::fs::write(ctx.path().join("arch.txt"), arch).unwrap();
        let name = reg.name(&format!("multi/img:{arch}"));
        let log = wb.build(&[
            "build",
            "--platform",
            &format!("linux/{arch}"),
            "-t",
            &name,
            "--push",
            "--provenance=false",
            ctx.path().to_str().unwrap(),
        ]);
        let digest = log
            .lines()
            .find_map(|l| l.strip_prefix("built "))
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .to_string();
        let size = blob(&wb, &digest).len();
        let variant = if arch == "arm64" {
            r#","variant":"v8""#
        } else {
            ""
        };
        entries.push(format!(
            r#"{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{digest}","size":{size},"platform":{{"os":"linux","architecture":"{arch}"{variant}}}}}"#
        ));
    }
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{}]}}"#,
        entries.join(",")
    );
    let status = http(
        &reg.addr,
        "PUT",
        "/v2/multi/img/manifests/both",
        "application/vnd.oci.image.index.v1+json",
        index.as_bytes(),
    );
    assert_eq!(status, Some(201), "pushing the index");
    let both = reg.name("multi/img:both");
    let ctx = common::context(&format!("FROM {both}\nLABEL l=1\n"));
    for (platform, want) in [
        ("linux/arm64", "arm64"),
        ("linux/amd64", "amd64"),
        ("linux/arm64/v8", "arm64"),
    ] {
        let fresh = Wbuild::new();
        let out = tempfile::tempdir().unwrap();
        fresh.build(&[
            "build",
            "--platform",
            platform,
            "-o",
            &format!("type=local,dest={}", out.path().display()),
            ctx.path().to_str().unwrap(),
        ]);
        assert_eq!(
            std::fs::read_to_string(out.path().join("arch.txt")).unwrap(),
            want,
            "{platform}"
        );
    }
    let fresh = Wbuild::new();
    let pinned = fresh.ok(&["pull", "--platform", "linux/arm64", &both]);
    let index_digest = format!("sha256:{}", sha256_hex(index.as_bytes()));
    assert_eq!(
        line(&pinned),
        format!("{both}@{index_digest}"),
        "pinned by the index digest"
    );
    let err = fresh.fails(&["pull", "--platform", "linux/s390x", &both]);
    assert!(
        err.contains("linux/s390x") && err.contains("linux/arm64/v8"),
        "{err}"
    );
    // A single-platform image for another platform is refused, not used silently.
    let amd64 = reg.name("multi/img:amd64");
    let err = fresh.fails(&["pull", "--platform", "linux/arm64", &amd64]);
    assert!(
        err.contains("is an image for linux/amd64, not linux/arm64"),
        "{err}"
    );
}

#[test]
fn pull_flag_re_resolves_a_moved_tag() {
    let Some(reg) = Registry::start() else {
        return;
    };
    let tag = reg.name("moving/base:1");
    let Some(a) = store_with_base(&tag) else {
        return;
    };
    let first = a.ok(&["push", &tag]);
    let first = line(&first).to_string();
    let b = Wbuild::new();
    let ctx = common::context(&format!("FROM {tag}\nLABEL from=base\n"));
    let ctx = ctx.path().to_str().unwrap();
    let log = b.build(&["build", ctx]);
    assert!(log.contains(&format!("is {first}")), "{log}");
    // The tag moves to a new image.
    let next = common::context(&format!("FROM {tag}\nLABEL version=2\n"));
    a.build(&[
        "build",
        "-t",
        &tag,
        "--push",
        "--provenance=false",
        next.path().to_str().unwrap(),
    ]);
    let moved = a.ok(&["pull", &tag]);
    let moved = line(&moved).to_string();
    assert_ne!(first, moved);
    // Without --pull the store's copy is used; with it, the registry's.
    let log = b.build(&["build", ctx]);
    assert!(log.contains(&format!("is {first}")), "{log}");
    let log = b.build(&["build", "--pull", ctx]);
    assert!(log.contains(&format!("is {moved}")), "{log}");
    let log = b.build(&["build", ctx]);
    assert!(
        log.contains(&format!("is {moved}")),
        "the pulled tag is named in the store: {log}"
    );
}

fn sha256_hex(bytes: &[u8]) -> String {
    let out = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().unwrap().write_all(bytes)?;
            c.wait_with_output()
        })
        .unwrap();
    String::from_utf8(out.stdout).unwrap()[..64].to_string()
}

#[test]
fn a_damaged_blob_in_the_registry_is_rejected_and_nothing_is_kept() {
    let Some(reg) = Registry::start() else {
        return;
    };
    let base = reg.name("test/bb:1");
    let Some(a) = store_with_base(&base) else {
        return;
    };
    let pinned = a.ok(&["push", &base]);
    let manifest: serde_json::Value =
        serde_json::from_slice(&blob(&a, manifest_digest(line(&pinned)))).unwrap();
    let layer = manifest["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    // Same size, different bytes.
    let file = reg.blob_file(&layer);
    let mut bytes = std::fs::read(&file).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&file, &bytes).unwrap();

    let b = Wbuild::new();
    let err = b.fails(&["pull", &base]);
    assert!(err.contains("damaged") && err.contains(&layer), "{err}");
    let hex = layer.strip_prefix("sha256:").unwrap();
    assert!(
        !b.root.path().join("blobs/sha256").join(hex).exists(),
        "the damaged blob was kept"
    );
    let tmp: Vec<_> = std::fs::read_dir(b.root.path().join("tmp"))
        .unwrap()
        .collect();
    assert!(tmp.is_empty(), "a partial download was left: {tmp:?}");
    assert!(
        !b.ok(&["images"]).contains(&base),
        "a broken image was named"
    );
}

#[test]
fn login_is_needed_for_a_registry_with_basic_auth() {
    let Some(reg) = Registry::start_with(Some(("alice", "s3cret")), false) else {
        return;
    };
    let docker_config = tempfile::tempdir().unwrap();
    let base = reg.name("private/bb:1");
    let Some(a) = store_with_base(&base) else {
        return;
    };
    let run = |wb: &Wbuild, args: &[&str], stdin: &str| {
        let mut cmd = wb.cmd();
        cmd.args(args).env("DOCKER_CONFIG", docker_config.path());
        with_stdin(cmd, stdin)
    };
    let (ok, err) = run(&a, &["push", &base], "");
    assert!(
        !ok && err.contains("401") && err.contains(&format!("wbuild login {}", reg.addr)),
        "{err}"
    );
    let (ok, err) = run(
        &a,
        &["login", &reg.addr, "-u", "alice", "--password-stdin"],
        "wrong\n",
    );
    assert!(!ok && err.contains("refused"), "{err}");
    let (ok, err) = run(
        &a,
        &["login", &reg.addr, "-u", "alice", "--password-stdin"],
        "s3cret\n",
    );
    assert!(ok, "{err}");
    let saved = std::fs::read_to_string(docker_config.path().join("config.json")).unwrap();
    assert!(saved.contains(&reg.addr), "{saved}");
    let (ok, err) = run(&a, &["push", &base], "");
    assert!(ok, "{err}");
    let b = Wbuild::new();
    let (ok, err) = run(&b, &["pull", &base], "");
    assert!(ok, "{err}");
    let (ok, err) = run(&b, &["logout", &reg.addr], "");
    assert!(ok, "{err}");
    let c = Wbuild::new();
    let (ok, err) = run(&c, &["pull", &base], "");
    assert!(!ok && err.contains("401"), "{err}");

    // With `credsStore`, login and pulls go through `docker-credential-NAME` (here a small
    // helper that keeps one credential in a file, found on PATH).
    let bin = tempfile::tempdir().unwrap();
    let helper = bin.path().join("docker-credential-wbtest");
    let kept = bin.path().join("kept.json");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\nf={}\ncase \"$1\" in\n\
             store) cat > \"$f\" ;;\n\
             get) read -r server; if [ -f \"$f\" ]; then cat \"$f\"; else echo 'credentials not found in native keychain'; exit 1; fi ;;\n\
             erase) rm -f \"$f\" ;;\n\
             esac\n",
            kept.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(
        docker_config.path().join("config.json"),
        r#"{"credsStore": "wbtest"}"#,
    )
    .unwrap();
    let path = format!(
        "{}:{}",
        bin.path().display(),
        std::env::var("PATH").unwrap()
    );
    let run_with_helper = |wb: &Wbuild, args: &[&str], stdin: &str| {
        let mut cmd = wb.cmd();
        cmd.args(args)
            .env("DOCKER_CONFIG", docker_config.path())
            .env("PATH", &path);
        with_stdin(cmd, stdin)
    };
    let (ok, err) = run_with_helper(&c, &["pull", &base], "");
    assert!(!ok && err.contains("401"), "{err}");
    let (ok, err) = run_with_helper(
        &c,
        &["login", &reg.addr, "-u", "alice", "--password-stdin"],
        "s3cret\n",
    );
    assert!(ok && err.contains("docker-credential-wbtest"), "{err}");
    assert!(std::fs::read_to_string(&kept).unwrap().contains("alice"));
    let (ok, err) = run_with_helper(&c, &["pull", &base], "");
    assert!(ok, "{err}");
}

#[test]
fn a_loopback_registry_speaking_tls_is_used_over_https() {
    // Docker's rule for insecure (here: loopback) registries: HTTPS without certificate checks
    // when the host speaks TLS. This also runs the rustls stack and login over HTTPS.
    let Some(reg) = Registry::start_with(Some(("bob", "pw")), true) else {
        return;
    };
    let docker_config = tempfile::tempdir().unwrap();
    let base = reg.name("tls/bb:1");
    let Some(a) = store_with_base(&base) else {
        return;
    };
    let run = |wb: &Wbuild, args: &[&str], stdin: &str| {
        let mut cmd = wb.cmd();
        cmd.args(args).env("DOCKER_CONFIG", docker_config.path());
        with_stdin(cmd, stdin)
    };
    let (ok, err) = run(&a, &["push", &base], "");
    assert!(!ok && err.contains("401"), "{err}");
    let (ok, err) = run(
        &a,
        &["login", &reg.addr, "-u", "bob", "--password-stdin"],
        "pw\n",
    );
    assert!(ok, "{err}");
    let (ok, err) = run(&a, &["push", &base], "");
    assert!(ok, "{err}");
    let b = Wbuild::new();
    // Plain HTTP would have got "400 Client sent an HTTP request to an HTTPS server".
    let (ok, err) = run(&b, &["pull", &base], "");
    assert!(ok && err.contains("1 of 1 layers downloaded"), "{err}");
}

#[test]
fn a_store_image_for_another_platform_is_looked_up_and_the_error_says_so() {
    // Nothing listens on port 1: the lookup fails, and the message names the store's platform.
    let name = "127.0.0.1:1/x/bb:1";
    let Some(wb) = store_with_base(name) else {
        return;
    };
    let ctx = common::context(&format!("FROM {name}\nLABEL a=b\n"));
    let ctx = ctx.path().to_str().unwrap();
    let err = wb.fails(&["build", "--platform", "linux/s390x", ctx]);
    assert!(err.contains("Dockerfile:1:1"), "{err}");
    assert!(
        err.contains("cannot reach the registry 127.0.0.1:1"),
        "{err}"
    );
    assert!(
        err.contains(&format!("the store's {name} is for linux/")),
        "{err}"
    );
    // For its own platform the store's image is used without asking the registry.
    wb.build(&["build", ctx]);
}

#[test]
fn docker_v2_images_are_pulled_and_built_on() {
    let Some(reg) = Registry::start() else {
        return;
    };
    if !common::have_tool("skopeo") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let Some(tar) = common::busybox_oci_tar(dir.path()) else {
        return;
    };
    // skopeo converts the OCI image to Docker's schema 2 media types on the way in.
    let base = reg.name("docker/bb:1");
    common::run_ok(
        Command::new("skopeo")
            .args(["copy", "--format", "v2s2", "--dest-tls-verify=false"])
            .arg(format!("oci-archive:{}:bb", tar.display()))
            .arg(format!("docker://{base}")),
    );
    let wb = Wbuild::new();
    let pinned = wb.ok(&["pull", &base]);
    let manifest: serde_json::Value =
        serde_json::from_slice(&blob(&wb, manifest_digest(line(&pinned)))).unwrap();
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    // Built on, the layers get OCI media types in the OCI manifest; the result pushes and
    // skopeo reads it back.
    let ctx = common::context(&format!("FROM {base}\nCOPY Dockerfile /df\n"));
    let app = reg.name("docker/app:1");
    // --provenance=false: a plain image manifest, not an index with an attestation (the
    // default of --push, as buildx; tests/multiplatform.rs covers that).
    let log = wb.build(&[
        "build",
        "-t",
        &app,
        "--push",
        "--provenance=false",
        ctx.path().to_str().unwrap(),
    ]);
    let built = log
        .lines()
        .find_map(|l| l.strip_prefix("built "))
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    let manifest: serde_json::Value = serde_json::from_slice(&blob(&wb, &built)).unwrap();
    for l in manifest["layers"].as_array().unwrap() {
        assert_eq!(
            l["mediaType"], "application/vnd.oci.image.layer.v1.tar+gzip",
            "{manifest}"
        );
    }
    let out = common::run_ok(Command::new("skopeo").args([
        "inspect",
        "--tls-verify=false",
        &format!("docker://{app}"),
    ]));
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["Digest"], built.as_str());
}

#[test]
fn a_frontend_pushed_to_a_registry_is_selected_by_syntax_and_pinned() {
    let Some(reg) = Registry::start() else {
        return;
    };
    // The extended-syntax frontend as built for embedding, published as a wasm artifact.
    let wasm = common::repo()
        .join("target/frontends/wasm32-wasip2/release/wbuild_frontend_dockerfile_ext.wasm");
    assert!(wasm.is_file(), "{} is built with the host", wasm.display());
    let name = reg.name("frontends/ext:1");
    let publisher = Wbuild::new();
    let out = publisher.ok(&["frontends", "push", wasm.to_str().unwrap(), &name]);
    assert!(out.contains(&format!("as {name}@sha256:")), "{out}");
    let manifest = out.split('@').nth(1).unwrap()[..71].to_string();

    // A store that never saw it builds with it through `# syntax=`.
    let Some(wb) = store_with_base("busybox") else {
        return;
    };
    let ctx = common::context(&format!(
        "# syntax={name}\nFROM busybox\nARG V=2\nIF $V == 2\nRUN echo two > /v\nELSE\nRUN echo other > /v\nDONE\n"
    ));
    let out = tempfile::tempdir().unwrap();
    let dest = format!("type=local,dest={}", out.path().display());
    wb.build(&["build", "-o", &dest, ctx.path().to_str().unwrap()]);
    assert_eq!(
        std::fs::read_to_string(out.path().join("v")).unwrap(),
        "two\n"
    );
    // The plan names the frontend pinned by digest; by digest it works without the tag.
    let plan = wb.ok(&["plan", ctx.path().to_str().unwrap()]);
    assert!(plan.contains(&manifest), "{plan}");
    let by_digest = common::context(&format!(
        "# syntax={}@{manifest}\nFROM busybox\nIF defined(NOPE)\nRUN false\nDONE\n",
        name.split(':').take(2).collect::<Vec<_>>().join(":")
    ));
    wb.ok(&["plan", by_digest.path().to_str().unwrap()]);

    // A container image is not a frontend, and an unreachable registry says where it was named.
    let image = reg.name("test/bb:1");
    let Some(a) = store_with_base(&image) else {
        return;
    };
    a.ok(&["push", &image]);
    let not_fe = common::context(&format!("# syntax={image}\nFROM busybox\n"));
    let err = wb.fails(&["plan", not_fe.path().to_str().unwrap()]);
    assert!(err.contains("is not a frontend"), "{err}");
    let gone = common::context("# syntax=127.0.0.1:1/frontends/x:1\nFROM busybox\n");
    let err = wb.fails(&["plan", gone.path().to_str().unwrap()]);
    assert!(
        err.contains("Dockerfile:1: `# syntax=127.0.0.1:1/frontends/x:1`"),
        "{err}"
    );
}
