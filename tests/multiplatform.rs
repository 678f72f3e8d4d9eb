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
#[path = "multiplatform/fixtures.rs"]
mod fixtures;

use std::path::Path;
use std::process::Command;

use common::Wbuild;
use fixtures::*;
use serde_json::Value;

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
        "--annotation",
        "index:org.opencontainers.image.title=both",
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
    assert_eq!(
        index["annotations"]["org.opencontainers.image.title"], "both",
        "{index}"
    );
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

    // The layout imports as the index (attestations and all), named.
    let imported = Wbuild::new();
    imported.ok(&["import", oci.to_str().unwrap(), "-t", "imported:1"]);
    let images = imported.ok(&["images"]);
    assert!(
        images
            .lines()
            .any(|l| l.starts_with("imported:1") && l.ends_with("linux/amd64,linux/arm64")),
        "{images}"
    );
    assert!(imported.ok(&["check"]).contains("the store is sound"));

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
    let Some(wb) = common::with_busybox() else {
        return;
    };
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
        common::run_ok(wb.cmd().env("SOURCE_DATE_EPOCH", "1700000000").args([
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
        ]));
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
    let err = wb.fails(&["build", "--annotation", "index:a=1", c]);
    assert!(err.contains("no index"), "{err}");
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
    // -o type=tar: one tar, a directory per platform.
    let tar = dir.path().join("fs.tar");
    wb.build(&[
        "build",
        "--platform",
        "linux/amd64,linux/arm64",
        "-o",
        &format!("type=tar,dest={}", tar.display()),
        c,
    ]);
    let list = sh_ok(&format!("tar -tf {}", tar.display()), dir.path());
    let names: Vec<&str> = list.lines().collect();
    assert_eq!(
        names,
        [
            "linux_amd64",
            "linux_amd64/D",
            "linux_arm64",
            "linux_arm64/D"
        ],
        "{list}"
    );
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
