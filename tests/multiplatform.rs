//! End-to-end multi-platform builds: the harness makes a busybox image index for linux/amd64
//! and linux/arm64 from Debian's `busybox-static` packages of both architectures (`apt-get
//! download busybox-static:arm64`, after `dpkg --add-architecture arm64`), pushes it to a
//! private `docker-registry` on 127.0.0.1, and registers Debian's qemu-aarch64 emulator in
//! binfmt_misc (mounting binfmt_misc first if needed). The real `wbuild` then builds two
//! platforms at once: a `FROM --platform=$BUILDPLATFORM` stage shared by both (it runs once),
//! a RUN per platform (arm64's under qemu), pushed as one index that skopeo reads, with SLSA
//! provenance; a platform with no registered emulator fails before anything runs; and
//! `SOURCE_DATE_EPOCH` gives the same index twice.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::Wbuild;
use serde_json::Value;

/// A running registry, killed when dropped.
struct Registry {
    child: Child,
    /// `127.0.0.1:PORT`
    addr: String,
    dir: tempfile::TempDir,
}

impl Registry {
    /// None (after printing why) when docker-registry is missing outside CI.
    fn start() -> Option<Registry> {
        if !common::have_tool("docker-registry") {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
             http:\n  addr: {addr}\n  secret: wbuild-test\n",
            dir.path().join("data").display()
        );
        let cfg = dir.path().join("config.yml");
        std::fs::write(&cfg, config).unwrap();
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&cfg)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let reg = Registry { child, addr, dir };
        let deadline = Instant::now() + Duration::from_secs(20);
        while http(&reg.addr, "GET", "/v2/", "", &[]).is_none() {
            assert!(
                Instant::now() < deadline,
                "the registry did not start: {}",
                std::fs::read_to_string(reg.dir.path().join("registry.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(reg)
    }

    fn name(&self, repo: &str) -> String {
        format!("{}/{repo}", self.addr)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A minimal HTTP/1.1 request; returns the status code, None if nothing answers.
fn http(addr: &str, method: &str, path: &str, content_type: &str, body: &[u8]) -> Option<u16> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !content_type.is_empty() {
        req += &format!("Content-Type: {content_type}\r\n");
    }
    req += "\r\n";
    s.write_all(req.as_bytes()).ok()?;
    s.write_all(body).ok()?;
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp);
    resp.split_whitespace().nth(1)?.parse().ok()
}

fn sh(script: &str, dir: &Path) -> std::process::Output {
    Command::new("sh")
        .args(["-ec", script])
        .current_dir(dir)
        .output()
        .unwrap()
}

fn sh_ok(script: &str, dir: &Path) -> String {
    let out = sh(script, dir);
    assert!(
        out.status.success(),
        "{script}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

const BINFMT: &str = "/proc/sys/fs/binfmt_misc";

/// Registers Debian's qemu-aarch64 in binfmt_misc (mounting it when needed), so arm64 RUN
/// steps run here. False (after printing why) outside CI when the tools are missing.
fn arm64_emulator() -> bool {
    if std::env::consts::ARCH != "x86_64" {
        common::skip("these tests emulate arm64 on an amd64 machine");
        return false;
    }
    if !common::have_tool("update-binfmts") || !Path::new("/usr/libexec/qemu-binfmt").exists() {
        common::skip("qemu-user-static and binfmt-support are not installed");
        return false;
    }
    let tmp = tempfile::tempdir().unwrap();
    if !Path::new(BINFMT).join("status").exists() {
        sh_ok(
            &format!("mount -t binfmt_misc binfmt_misc {BINFMT}"),
            tmp.path(),
        );
    }
    // Exits 0 (with a warning) when it is already enabled.
    sh_ok("update-binfmts --enable qemu-aarch64", tmp.path());
    let entry = std::fs::read_to_string(Path::new(BINFMT).join("qemu-aarch64")).unwrap();
    assert!(entry.starts_with("enabled"), "qemu-aarch64: {entry}");
    true
}

/// Debian's busybox-static for `arch`, unpacked: its `bin/busybox`. None outside CI when
/// apt-get cannot download it (the architecture not added with dpkg --add-architecture).
fn busybox_binary(dir: &Path, arch: &str) -> Option<PathBuf> {
    let out = sh(
        &format!(
            "apt-get download busybox-static:{arch} && dpkg-deb -x busybox-static_*_{arch}.deb x-{arch}"
        ),
        dir,
    );
    if !out.status.success() {
        common::skip(&format!(
            "apt-get download busybox-static:{arch} failed (dpkg --add-architecture {arch} && \
             apt-get update): {}",
            String::from_utf8_lossy(&out.stderr)
        ));
        return None;
    }
    Some(dir.join(format!("x-{arch}/bin/busybox")))
}

/// `REG/busybox:multi`, an image index of busybox for linux/amd64 and linux/arm64 (one image
/// per architecture made with umoci, pushed by tag, and the index PUT by hand); returns its
/// name and digest.
fn busybox_index(reg: &Registry) -> Option<(String, String)> {
    if !common::have_tool("umoci") || !common::have_tool("busybox") {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let wb = Wbuild::new();
    let mut entries = Vec::new();
    for arch in ["amd64", "arm64"] {
        let bin = busybox_binary(dir.path(), arch)?;
        let l = format!("L-{arch}");
        sh_ok(
            &format!(
                "umoci init --layout {l}
                 umoci new --image {l}:bb
                 umoci unpack --image {l}:bb B-{arch}
                 mkdir -p B-{arch}/rootfs/bin B-{arch}/rootfs/etc B-{arch}/rootfs/tmp
                 cp {bin} B-{arch}/rootfs/bin/busybox
                 for a in $(busybox --list); do
                   [ \"$a\" = busybox ] || ln -s busybox B-{arch}/rootfs/bin/$a
                 done
                 echo 'root:x:0:0:root:/root:/bin/sh' > B-{arch}/rootfs/etc/passwd
                 umoci repack --image {l}:bb B-{arch}
                 umoci config --image {l}:bb --architecture {arch} --os linux \
                   --config.env PATH=/bin --config.cmd /bin/sh
                 tar -C {l} -cf bb-{arch}.tar .",
                bin = bin.display()
            ),
            dir.path(),
        );
        let name = reg.name(&format!("busybox:{arch}"));
        let tar = dir.path().join(format!("bb-{arch}.tar"));
        wb.ok(&["import", tar.to_str().unwrap(), "-t", &name]);
        let pinned = wb.ok(&["push", &name]);
        let digest = pinned.trim().rsplit('@').next().unwrap().to_string();
        let size = store_blob(&wb, &digest).len();
        entries.push(format!(
            r#"{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{digest}","size":{size},"platform":{{"os":"linux","architecture":"{arch}"}}}}"#
        ));
    }
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{}]}}"#,
        entries.join(",")
    );
    let status = http(
        &reg.addr,
        "PUT",
        "/v2/busybox/manifests/multi",
        "application/vnd.oci.image.index.v1+json",
        index.as_bytes(),
    );
    assert_eq!(status, Some(201), "pushing the busybox index");
    let digest = format!("sha256:{}", sha256_hex(index.as_bytes()));
    Some((reg.name("busybox:multi"), digest))
}

fn sha256_hex(bytes: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("b");
    std::fs::write(&f, bytes).unwrap();
    let out = sh_ok(&format!("sha256sum {}", f.display()), dir.path());
    out.split_whitespace().next().unwrap().to_string()
}

fn store_blob(wb: &Wbuild, digest: &str) -> Vec<u8> {
    let hex = digest.rsplit(':').next().unwrap();
    std::fs::read(wb.root.path().join("blobs/sha256").join(hex)).unwrap()
}

/// Everything a test of this file needs: the emulator, skopeo, runc, a registry with the
/// busybox index. None outside CI when a tool is missing.
fn setup() -> Option<(Registry, String, String)> {
    if !common::have_tool("runc") || !common::have_tool("skopeo") || !arm64_emulator() {
        return None;
    }
    let reg = Registry::start()?;
    let (base, digest) = busybox_index(&reg)?;
    Some((reg, base, digest))
}

fn skopeo_raw(reference: &str) -> Value {
    let out = sh_ok(
        &format!("skopeo inspect --tls-verify=false --raw docker://{reference}"),
        Path::new("/"),
    );
    serde_json::from_str(&out).unwrap()
}

/// The JSON file at `path` in an OCI layout directory's blobs.
fn layout_blob(layout: &Path, digest: &str) -> Vec<u8> {
    let hex = digest.strip_prefix("sha256:").unwrap();
    std::fs::read(layout.join("blobs/sha256").join(hex)).unwrap()
}

/// The events of `--progress json` output whose step contains `text`, by kind.
fn events(progress: &str, kind: &str, text: &str) -> usize {
    progress
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["event"] == kind && v["step"].as_str().is_some_and(|s| s.contains(text)))
        .count()
}

#[test]
fn two_platforms_push_one_index_with_provenance() {
    let Some((reg, base, base_digest)) = setup() else {
        return;
    };
    let wb = Wbuild::new();
    let dockerfile = format!(
        "FROM --platform=$BUILDPLATFORM {base} AS cross\n\
         RUN cat /proc/sys/kernel/random/uuid > /cross.txt\n\
         FROM {base}\n\
         ARG TARGETPLATFORM TARGETARCH BUILDPLATFORM\n\
         COPY --from=cross /cross.txt /cross.txt\n\
         RUN uname -m > /arch.txt && echo \"$TARGETPLATFORM $TARGETARCH $BUILDPLATFORM\" > /target.txt\n"
    );
    let ctx = common::context(&dockerfile);
    let name = reg.name("app:1");
    let out = tempfile::tempdir().unwrap();
    let meta = out.path().join("meta.json");
    let local = out.path().join("local");
    let progress = wb.build(&[
        "build",
        "--platform",
        "linux/amd64,linux/arm64",
        "--progress",
        "json",
        "-t",
        &name,
        "--push",
        "-o",
        &format!("type=local,dest={}", local.display()),
        "--metadata-file",
        meta.to_str().unwrap(),
        ctx.path().to_str().unwrap(),
    ]);

    // The shared stage ran once; the other platform took it from the cache.
    let cross = "RUN cat /proc/sys/kernel/random/uuid";
    assert_eq!(events(&progress, "started", cross), 1, "{progress}");
    assert_eq!(events(&progress, "cached", cross), 1, "{progress}");
    // Progress names the platform of each step.
    assert!(
        events(&progress, "started", "[linux/arm64 stage-1 ") >= 1,
        "{progress}"
    );
    assert!(
        events(&progress, "started", "[linux/amd64 stage-1 ") >= 1,
        "{progress}"
    );

    // One directory per platform, each with its own machine's `uname -m`.
    for (dir, machine, arch) in [
        ("linux_amd64", "x86_64", "amd64"),
        ("linux_arm64", "aarch64", "arm64"),
    ] {
        let d = local.join(dir);
        assert_eq!(
            std::fs::read_to_string(d.join("arch.txt")).unwrap(),
            format!("{machine}\n")
        );
        assert_eq!(
            std::fs::read_to_string(d.join("target.txt")).unwrap(),
            format!("linux/{arch} {arch} linux/amd64\n")
        );
    }
    assert_eq!(
        std::fs::read(local.join("linux_amd64/cross.txt")).unwrap(),
        std::fs::read(local.join("linux_arm64/cross.txt")).unwrap(),
        "both platforms have the one run of the cross stage"
    );

    // The pushed index, as skopeo sees it: two images, each with an attestation manifest.
    let index = skopeo_raw(&name);
    assert_eq!(
        index["mediaType"], "application/vnd.oci.image.index.v1+json",
        "{index}"
    );
    let entries = index["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 4, "{index}");
    let m: Value = serde_json::from_slice(&std::fs::read(&meta).unwrap()).unwrap();
    let index_digest = m["containerimage.digest"].as_str().unwrap().to_string();
    assert_eq!(
        m["containerimage.descriptor"]["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    let mut image_digests = Vec::new();
    for (i, arch) in ["amd64", "arm64"].iter().enumerate() {
        assert_eq!(entries[i]["platform"]["os"], "linux");
        assert_eq!(entries[i]["platform"]["architecture"], *arch);
        let att = &entries[2 + i];
        assert_eq!(att["platform"]["architecture"], "unknown");
        assert_eq!(
            att["annotations"]["vnd.docker.reference.type"],
            "attestation-manifest"
        );
        assert_eq!(
            att["annotations"]["vnd.docker.reference.digest"],
            entries[i]["digest"]
        );
        assert_eq!(
            m["wbuild.platforms"][i]["containerimage.digest"],
            entries[i]["digest"]
        );
        image_digests.push(entries[i]["digest"].as_str().unwrap().to_string());
        // Each image's config is for its platform.
        let cfg = sh_ok(
            &format!(
                "skopeo inspect --tls-verify=false --config docker://{}@{}",
                name.rsplit_once(':').unwrap().0,
                entries[i]["digest"].as_str().unwrap()
            ),
            Path::new("/"),
        );
        let cfg: Value = serde_json::from_str(&cfg).unwrap();
        assert_eq!(cfg["architecture"], *arch);
    }

    // Everything reached the registry: skopeo copies the whole index, attestations included.
    let copy = tempfile::tempdir().unwrap();
    let layout = copy.path().join("oci");
    sh_ok(
        &format!(
            "skopeo copy --all --preserve-digests --src-tls-verify=false docker://{name} oci:{}:app",
            layout.display()
        ),
        Path::new("/"),
    );
    for (i, arch) in ["amd64", "arm64"].iter().enumerate() {
        let att: Value = serde_json::from_slice(&layout_blob(
            &layout,
            entries[2 + i]["digest"].as_str().unwrap(),
        ))
        .unwrap();
        let layer = &att["layers"][0];
        assert_eq!(layer["mediaType"], "application/vnd.in-toto+json");
        assert_eq!(
            layer["annotations"]["in-toto.io/predicate-type"],
            "https://slsa.dev/provenance/v1"
        );
        let st: Value =
            serde_json::from_slice(&layout_blob(&layout, layer["digest"].as_str().unwrap()))
                .unwrap();
        assert_eq!(st["_type"], "https://in-toto.io/Statement/v0.1");
        assert_eq!(st["predicateType"], "https://slsa.dev/provenance/v1");
        assert_eq!(
            st["subject"][0]["name"],
            format!("pkg:docker/{}@1?platform=linux%2F{arch}", reg.name("app"))
        );
        assert_eq!(
            format!(
                "sha256:{}",
                st["subject"][0]["digest"]["sha256"].as_str().unwrap()
            ),
            image_digests[i]
        );
        let def = &st["predicate"]["buildDefinition"];
        let params = &def["externalParameters"];
        assert_eq!(
            params["configSource"]["path"],
            ctx.path().join("Dockerfile").display().to_string()
        );
        assert_eq!(
            params["configSource"]["digest"]["sha256"].as_str().unwrap(),
            sha256_hex(dockerfile.as_bytes())
        );
        assert!(
            params["frontend"]["name"]
                .as_str()
                .unwrap()
                .contains("dockerfile"),
            "{st}"
        );
        assert_eq!(
            params["frontend"]["digest"]["sha256"]
                .as_str()
                .unwrap()
                .len(),
            64
        );
        // mode=min (the default of --push): no build args.
        assert!(params["request"].get("args").is_none(), "{st}");
        // Both bases (the build platform's and the target's) resolved to the index's digest.
        let deps = def["resolvedDependencies"].as_array().unwrap();
        let base_repo = base.rsplit_once(':').unwrap().0;
        let want = |p: &str| format!("pkg:docker/{base_repo}@multi?platform=linux%2F{p}");
        for p in ["amd64", arch] {
            let d = deps
                .iter()
                .find(|d| d["uri"] == want(p))
                .unwrap_or_else(|| panic!("{p}: {st}"));
            assert_eq!(
                format!("sha256:{}", d["digest"]["sha256"].as_str().unwrap()),
                base_digest
            );
        }
        assert_eq!(
            st["predicate"]["runDetails"]["builder"]["version"]["wbuild"],
            env!("CARGO_PKG_VERSION")
        );
    }

    // The store names the index; `images` lists its platforms; `check` follows every entry.
    let images = wb.ok(&["images"]);
    let row = images.lines().find(|l| l.contains("app")).unwrap();
    assert!(
        row.contains(&index_digest[..19]) && row.ends_with("linux/amd64,linux/arm64"),
        "{images}"
    );
    assert!(wb.ok(&["check"]).contains("the store is sound"));
    // `push` of the name pushes the whole index again, elsewhere.
    let again = reg.name("copy:1");
    let pinned = wb.ok(&["push", &name]);
    assert!(pinned.trim().ends_with(&index_digest), "{pinned}");
    let moved = Command::new("sh")
        .args(["-c", &format!("skopeo copy --all --src-tls-verify=false --dest-tls-verify=false docker://{name} docker://{again}")])
        .output()
        .unwrap();
    assert!(moved.status.success());
    assert_eq!(skopeo_raw(&again)["manifests"].as_array().unwrap().len(), 4);

    // A fresh store pulls each platform's image out of the index (attestations skipped).
    for (platform, machine) in [("linux/arm64", "aarch64\n"), ("linux/amd64", "x86_64\n")] {
        let fresh = Wbuild::new();
        let pulled = fresh.ok(&["pull", "--platform", platform, &name]);
        assert!(pulled.trim().ends_with(&index_digest), "{pulled}");
        let ctx = common::context(&format!("FROM {name}\nLABEL x=1\n"));
        let o = tempfile::tempdir().unwrap();
        fresh.build(&[
            "build",
            "--platform",
            platform,
            "-o",
            &format!("type=local,dest={}", o.path().display()),
            ctx.path().to_str().unwrap(),
        ]);
        assert_eq!(
            std::fs::read_to_string(o.path().join("arch.txt")).unwrap(),
            machine
        );
    }
}

#[test]
fn the_cache_carries_every_platform_and_oci_writes_the_index() {
    let Some((_reg, base, _)) = setup() else {
        return;
    };
    let ctx = common::context(&format!(
        "FROM {base}\nARG TARGETARCH\nRUN echo $TARGETARCH > /a.txt && uname -m >> /a.txt\n"
    ));
    let c = ctx.path().to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let oci = dir.path().join("oci");
    let wb = Wbuild::new();
    wb.build(&[
        "build",
        "--platform",
        "linux/amd64,linux/arm64",
        "--cache-to",
        &format!("type=local,dest={},mode=max", cache.display()),
        "-o",
        &format!("type=oci,dest={}", oci.display()),
        "--provenance",
        "mode=max",
        "--build-arg",
        "V=7",
        c,
    ]);
    // -o type=oci: index.json names the index; the index lists both images and their
    // attestations, whose statements carry the build args (mode=max).
    let top: Value =
        serde_json::from_slice(&std::fs::read(oci.join("index.json")).unwrap()).unwrap();
    let desc = &top["manifests"][0];
    assert_eq!(
        desc["mediaType"], "application/vnd.oci.image.index.v1+json",
        "{top}"
    );
    let index: Value =
        serde_json::from_slice(&layout_blob(&oci, desc["digest"].as_str().unwrap())).unwrap();
    let entries = index["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 4, "{index}");
    let att: Value =
        serde_json::from_slice(&layout_blob(&oci, entries[3]["digest"].as_str().unwrap())).unwrap();
    let st: Value = serde_json::from_slice(&layout_blob(
        &oci,
        att["layers"][0]["digest"].as_str().unwrap(),
    ))
    .unwrap();
    assert_eq!(
        st["predicate"]["buildDefinition"]["externalParameters"]["request"]["args"]["build-arg:V"],
        "7",
        "{st}"
    );
    // skopeo reads the layout's arm64 image.
    let cfg = sh_ok(
        &format!(
            "skopeo inspect --override-arch arm64 --config oci:{}",
            oci.display()
        ),
        Path::new("/"),
    );
    assert!(
        cfg.contains("\"architecture\": \"arm64\"") || cfg.contains("\"architecture\":\"arm64\""),
        "{cfg}"
    );

    // A fresh store with the exported cache runs neither platform's RUN.
    let fresh = Wbuild::new();
    let progress = fresh.build(&[
        "build",
        "--platform",
        "linux/amd64,linux/arm64",
        "--progress",
        "json",
        "--cache-from",
        &format!("type=local,src={}", cache.display()),
        c,
    ]);
    assert_eq!(events(&progress, "started", "RUN echo"), 0, "{progress}");
    assert_eq!(events(&progress, "cached", "RUN echo"), 2, "{progress}");
}

#[test]
fn a_platform_without_an_emulator_fails_before_anything_runs() {
    if !common::have_tool("runc") || !arm64_emulator() {
        return;
    }
    // Debian's qemu-user-static has an s390x emulator; it is not registered here (the test
    // takes it out of binfmt_misc if an earlier run put it there), so nothing can run s390x.
    let tmp = tempfile::tempdir().unwrap();
    if Path::new(BINFMT).join("qemu-s390x").exists() {
        sh_ok("update-binfmts --disable qemu-s390x", tmp.path());
    }
    let wb = common::with_busybox().unwrap();
    let ctx = common::context(
        "FROM --platform=$BUILDPLATFORM busybox AS native\nRUN echo native-ran\nFROM scratch\nCOPY --from=native /etc/passwd /p\nRUN true\n",
    );
    let err = wb.fails(&[
        "build",
        "--platform",
        "linux/amd64,linux/s390x",
        "--progress",
        "json",
        ctx.path().to_str().unwrap(),
    ]);
    assert!(err.contains("linux/s390x"), "{err}");
    assert!(
        err.contains("qemu-user-static") && err.contains("binfmt-support"),
        "{err}"
    );
    assert!(err.contains("Dockerfile:5: RUN true"), "{err}");
    assert_eq!(
        events(&err, "started", "RUN echo native-ran"),
        0,
        "nothing ran: {err}"
    );
    // Without a RUN, s390x needs no emulator.
    let ctx = common::context("FROM scratch\nCOPY Dockerfile /D\n");
    wb.build(&[
        "build",
        "--platform",
        "linux/s390x",
        ctx.path().to_str().unwrap(),
    ]);
}

#[test]
fn source_date_epoch_gives_the_same_index_twice() {
    let Some((_reg, base, _)) = setup() else {
        return;
    };
    let ctx = common::context(&format!(
        "FROM --platform=$BUILDPLATFORM {base} AS gen\nRUN echo generated > /g\n\
         FROM {base}\nCOPY --from=gen /g /g\nRUN uname -m > /m\n"
    ));
    let dir = tempfile::tempdir().unwrap();
    let mut digests = Vec::new();
    let mut tars = Vec::new();
    for i in 0..2 {
        let wb = Wbuild::new();
        let meta = dir.path().join(format!("m{i}.json"));
        let tar = dir.path().join(format!("o{i}.tar"));
        let out = wb
            .cmd()
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .args([
                "build",
                "--platform",
                "linux/amd64,linux/arm64",
                "--provenance",
                "mode=max",
                "--metadata-file",
                meta.to_str().unwrap(),
                "-o",
                &format!("type=oci,dest={}", tar.display()),
                ctx.path().to_str().unwrap(),
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let m: Value = serde_json::from_slice(&std::fs::read(&meta).unwrap()).unwrap();
        digests.push(m["containerimage.digest"].as_str().unwrap().to_string());
        tars.push(std::fs::read(&tar).unwrap());
    }
    assert_eq!(digests[0], digests[1]);
    assert!(tars[0] == tars[1], "the OCI tars differ");
}

#[test]
fn platform_lists_and_single_image_outputs_are_checked() {
    let wb = Wbuild::new();
    let ctx = common::context("FROM scratch\nCOPY Dockerfile /D\n");
    let c = ctx.path().to_str().unwrap();
    for (list, says) in [
        ("linux/amd64,", "an empty entry"),
        ("linux/amd64,linux/x86", "unknown architecture \"x86\""),
        ("linux/amd64,linux", "\"linux\" is not OS/ARCH"),
    ] {
        let err = wb.fails(&["build", "--platform", list, c]);
        assert!(err.contains(says), "{list}: {err}");
    }
    let dir = tempfile::tempdir().unwrap();
    let tar = dir.path().join("d.tar");
    let err = wb.fails(&[
        "build",
        "--platform",
        "linux/amd64,linux/arm64",
        "-o",
        &format!("type=docker,dest={}", tar.display()),
        c,
    ]);
    assert!(
        err.contains("type=docker") && err.contains("one platform"),
        "{err}"
    );
    let err = wb.fails(&[
        "build",
        "--platform",
        "linux/amd64,linux/arm64",
        "--load",
        c,
    ]);
    assert!(err.contains("--load"), "{err}");
    let err = wb.fails(&["build", "--provenance", "mode=all", c]);
    assert!(err.contains("mode=min"), "{err}");
    // Without RUN, both platforms build anywhere; -o type=local gets a directory each.
    let out = dir.path().join("local");
    let log = wb.build(&[
        "build",
        "--platform",
        "linux/amd64,linux/arm64",
        "-t",
        "two:1",
        "-o",
        &format!("type=local,dest={}", out.display()),
        c,
    ]);
    assert!(
        out.join("linux_amd64/D").is_file() && out.join("linux_arm64/D").is_file(),
        "{log}"
    );
    assert!(wb.ok(&["images"]).contains("linux/amd64,linux/arm64"));
    assert!(wb.ok(&["check"]).contains("the store is sound"));
    // prune keeps every platform's blobs of a named index.
    wb.ok(&["prune"]);
    assert!(wb.ok(&["check"]).contains("the store is sound"));
}

#[test]
fn one_platform_pushed_gets_provenance_by_default_and_false_turns_it_off() {
    if !common::have_tool("skopeo") {
        return;
    }
    let Some(reg) = Registry::start() else {
        return;
    };
    let wb = Wbuild::new();
    let ctx = common::context("FROM scratch\nCOPY Dockerfile /D\n");
    let c = ctx.path().to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let iid = dir.path().join("iid");
    let name = reg.name("one:1");
    wb.build(&[
        "build",
        "--platform",
        "linux/arm64",
        "-t",
        &name,
        "--push",
        "--iidfile",
        iid.to_str().unwrap(),
        c,
    ]);
    // As buildx: an index of the one image and its attestation; the image ID stays the
    // image's config.
    let index = skopeo_raw(&name);
    let entries = index["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "{index}");
    assert_eq!(entries[0]["platform"]["architecture"], "arm64");
    assert_eq!(
        entries[1]["annotations"]["vnd.docker.reference.type"],
        "attestation-manifest"
    );
    let manifest: Value =
        serde_json::from_slice(&store_blob(&wb, entries[0]["digest"].as_str().unwrap())).unwrap();
    assert_eq!(
        std::fs::read_to_string(&iid).unwrap(),
        manifest["config"]["digest"].as_str().unwrap()
    );
    // A fresh store pulls the image out of it for arm64, and nothing for another platform.
    let fresh = Wbuild::new();
    fresh.ok(&["pull", "--platform", "linux/arm64", &name]);
    let err = fresh.fails(&["pull", "--platform", "linux/s390x", &name]);
    assert!(
        err.contains("it has linux/arm64") && !err.contains("unknown"),
        "{err}"
    );
    // --provenance=false: the plain manifest.
    let plain = reg.name("one:2");
    wb.build(&[
        "build",
        "--platform",
        "linux/arm64",
        "-t",
        &plain,
        "--push",
        "--provenance=false",
        c,
    ]);
    assert_eq!(
        skopeo_raw(&plain)["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
}
