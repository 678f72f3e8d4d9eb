//! Parity with BuildKit (dockerfile frontend 1.26) and buildx where users notice it: each test
//! builds through the real binary and checks owners, modes, contents and config against what
//! BuildKit's source (`dockerfile2llb/convert.go`) and integration tests do.

mod common;

use serde_json::Value;
use std::path::Path;

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn read_json(p: &Path) -> Value {
    serde_json::from_str(&read(p)).unwrap()
}

/// The image config of the single image in an OCI layout directory.
fn oci_config(layout: &Path) -> Value {
    let blob = |d: &Value| {
        let d = d["digest"]
            .as_str()
            .unwrap()
            .strip_prefix("sha256:")
            .unwrap();
        layout.join("blobs/sha256").join(d)
    };
    let index = read_json(&layout.join("index.json"));
    let manifest = read_json(&blob(&index["manifests"][0]));
    read_json(&blob(&manifest["config"]))
}

/// Builds `ctx` with `args`, writing the filesystem to `out/fs` and the OCI layout to `out/oci`.
fn build_both(wb: &common::Wbuild, ctx: &Path, out: &Path, args: &[&str]) -> Value {
    let local = format!("type=local,dest={}", out.join("fs").display());
    let oci = format!("type=oci,dest={}", out.join("oci").display());
    let mut all = vec!["build", "-o", &local, "-o", &oci];
    all.extend_from_slice(args);
    all.push(ctx.to_str().unwrap());
    wb.build(&all);
    oci_config(&out.join("oci"))
}

fn env_of(config: &Value) -> Vec<String> {
    config["config"]["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

/// BuildKit `dispatchArg`: an ARG with a value (default, `--build-arg` or global) sets the
/// variable RUN and expansion see even over an ENV of the same name declared before it; an ARG
/// without one changes nothing; the image config keeps the ENV; a later ENV wins again.
#[test]
fn arg_after_env_wins_in_run_but_not_in_the_config() {
    let Some(wb) = common::with_busybox() else {
        return;
    };
    let ctx = common::context(
        "FROM busybox\n\
         ENV A=env-a B=env-b C=env-c\n\
         ARG A=arg-a\n\
         ARG B\n\
         ARG C\n\
         RUN echo \"$A $B $C\" > /ab && env > /env\n\
         WORKDIR /w-$A\n\
         ENV A=env-a2\n\
         RUN echo \"$A\" > /a2\n",
    );
    let out = tempfile::tempdir().unwrap();
    let config = build_both(&wb, ctx.path(), out.path(), &["--build-arg", "C=cli"]);
    let fs = out.path().join("fs");
    assert_eq!(read(&fs.join("ab")), "arg-a env-b cli\n");
    let env = read(&fs.join("env"));
    assert!(env.lines().any(|l| l == "A=arg-a"), "{env}");
    assert!(env.lines().any(|l| l == "C=cli"), "{env}");
    assert!(env.lines().any(|l| l == "B=env-b"), "{env}");
    assert!(fs.join("w-arg-a").is_dir(), "expansion sees the ARG too");
    assert_eq!(read(&fs.join("a2")), "env-a2\n");
    let env = env_of(&config);
    for want in ["A=env-a2", "B=env-b", "C=env-c"] {
        assert!(env.iter().any(|e| e == want), "{want} in {env:?}");
    }
}

/// BuildKit `defaultArgs`: TARGETSTAGE is `--target`, else the last stage's name, else
/// `default`; like the platform ARGs it needs an `ARG TARGETSTAGE` in the stage
/// (`testTargetStageNameArg`).
#[test]
fn targetstage_names_the_target() {
    let Some(wb) = common::with_busybox() else {
        return;
    };
    let text = |last: &str| {
        format!(
            "FROM busybox AS base\n\
             RUN echo \"value:$TARGETSTAGE\" > /first\n\
             ARG TARGETSTAGE\n\
             RUN echo \"value:$TARGETSTAGE\" > /second\n\
             FROM base AS foo\n\
             FROM base{last}\n"
        )
    };
    for (last, target, want) in [
        ("", Some("foo"), "foo"),
        ("", None, "default"),
        (" AS Final", None, "final"),
    ] {
        let ctx = common::context(&text(last));
        let out = tempfile::tempdir().unwrap();
        let dest = format!("type=local,dest={}", out.path().display());
        let mut args = vec!["build", "-o", &dest];
        if let Some(t) = target {
            args.extend(["--target", t]);
        }
        args.push(ctx.path().to_str().unwrap());
        wb.build(&args);
        assert_eq!(read(&out.path().join("first")), "value:\n");
        assert_eq!(read(&out.path().join("second")), format!("value:{want}\n"));
    }
}

/// BuildKit clears `OnBuild` in the image of a stage that ran the triggers (`init` and
/// `resolveStages`): they fire once, for the direct child, whether the parent is a stage or an
/// image.
#[test]
fn onbuild_triggers_fire_once_and_leave_the_config() {
    let Some(wb) = common::with_busybox() else {
        return;
    };
    let ctx = common::context(
        "FROM busybox AS parent\n\
         ONBUILD RUN echo fired >> /trig\n\
         FROM parent AS child\n\
         RUN cat /trig > /child-saw\n\
         FROM child\n\
         RUN cat /trig > /grandchild-saw\n",
    );
    let out = tempfile::tempdir().unwrap();
    let config = build_both(&wb, ctx.path(), out.path(), &[]);
    let fs = out.path().join("fs");
    assert_eq!(read(&fs.join("child-saw")), "fired\n");
    assert_eq!(read(&fs.join("grandchild-saw")), "fired\n");
    let onbuild = &config["config"]["OnBuild"];
    assert!(
        onbuild.is_null() || onbuild.as_array().is_some_and(|a| a.is_empty()),
        "{onbuild}"
    );

    // The same through an image: the parent image keeps its trigger, the child does not.
    let parent = common::context("FROM busybox\nONBUILD RUN echo fired >> /trig\n");
    wb.build(&[
        "build",
        "-t",
        "parity-onbuild:1",
        parent.path().to_str().unwrap(),
    ]);
    let child = common::context("FROM parity-onbuild:1\nRUN cat /trig > /saw\n");
    let out = tempfile::tempdir().unwrap();
    let config = build_both(
        &wb,
        child.path(),
        out.path(),
        &["-t", "parity-onbuild-child:1"],
    );
    assert_eq!(read(&out.path().join("fs/saw")), "fired\n");
    let onbuild = &config["config"]["OnBuild"];
    assert!(
        onbuild.is_null() || onbuild.as_array().is_some_and(|a| a.is_empty()),
        "{onbuild}"
    );
    let grand = common::context("FROM parity-onbuild-child:1\nRUN cat /trig > /saw\n");
    let out = tempfile::tempdir().unwrap();
    build_both(&wb, grand.path(), out.path(), &[]);
    assert_eq!(read(&out.path().join("fs/saw")), "fired\n");
}

fn write(dir: &Path, files: &[&str]) {
    for f in files {
        let p = dir.join(f);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, f.as_bytes()).unwrap();
    }
}

/// Every file below `dir`, relative, sorted (directories end in `/`).
fn tree(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, d: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(base).unwrap().to_str().unwrap().to_string();
            if p.is_dir() {
                out.push(format!("{rel}/"));
                walk(base, &p, out);
            } else {
                out.push(rel);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// `**` as BuildKit: with `--parents` the part after the `/./` pivot is an include pattern
/// where `**` matches zero or more directories (BuildKit's `testCopyParents`, targets
/// `doublewildcard` and `doubleinputs`); without `--parents` a source is resolved with
/// `filepath.Match` per component, where `**` is `*` (fsutil `ResolveWildcards`); `--exclude`
/// patterns match at any depth with `**`, from the source (or the pivot, with `--parents`).
#[test]
fn globstar_in_sources_and_excludes() {
    let wb = common::Wbuild::new();
    let ctx = tempfile::tempdir().unwrap();
    write(
        ctx.path(),
        &[
            "test/a/b/c/d/foo",
            "test/a/b/c/d/e/bay",
            "test/a/b2/c/d/e/bar",
            "test/a/b/c2/d/e/baz",
            "test/a/b/c2/d/e2/baz",
            "src/main.go",
            "src/x/a.go",
            "src/x/y/b.go",
            "src/c/in-c",
            "src/x/c",
            "src/x/keep",
        ],
    );
    let cases: &[(&str, &[&str])] = &[
        (
            "COPY --parents /test/a/b*/./c/**/e /out/",
            &[
                "out/",
                "out/c/",
                "out/c/d/",
                "out/c/d/e/",
                "out/c/d/e/bar",
                "out/c/d/e/bay",
            ],
        ),
        (
            "COPY --parents /test/a/b/c*/./d/**/baz /test/a/b*/./c/**/bar /out/",
            &[
                "out/",
                "out/c/",
                "out/c/d/",
                "out/c/d/e/",
                "out/c/d/e/bar",
                "out/d/",
                "out/d/e/",
                "out/d/e/baz",
                "out/d/e2/",
                "out/d/e2/baz",
            ],
        ),
        (
            "COPY --parents test/**/baz /",
            &[
                "test/",
                "test/a/",
                "test/a/b/",
                "test/a/b/c2/",
                "test/a/b/c2/d/",
                "test/a/b/c2/d/e/",
                "test/a/b/c2/d/e/baz",
                "test/a/b/c2/d/e2/",
                "test/a/b/c2/d/e2/baz",
            ],
        ),
        ("COPY src/**/*.go /out/", &["out/", "out/a.go"]),
        (
            "COPY --exclude=**/c src/ /out/",
            &[
                "out/",
                "out/main.go",
                "out/x/",
                "out/x/a.go",
                "out/x/keep",
                "out/x/y/",
                "out/x/y/b.go",
            ],
        ),
        (
            "COPY --parents --exclude=**/c --exclude=src/x/y src/ /p/",
            &[
                "p/",
                "p/src/",
                "p/src/main.go",
                "p/src/x/",
                "p/src/x/a.go",
                "p/src/x/keep",
            ],
        ),
    ];
    for (copy, want) in cases {
        common::write_dockerfile(ctx.path(), &format!("FROM scratch\n{copy}\n"));
        let out = tempfile::tempdir().unwrap();
        let dest = format!("type=local,dest={}", out.path().display());
        wb.build(&["build", "-o", &dest, ctx.path().to_str().unwrap()]);
        assert_eq!(tree(out.path()), *want, "{copy}");
    }
}

fn stat(fs: &Path, p: &str) -> (u32, u32, u32) {
    use std::os::unix::fs::MetadataExt;
    let md = std::fs::symlink_metadata(fs.join(p)).unwrap();
    (md.uid(), md.gid(), md.mode() & 0o7777)
}

/// BuildKit `dispatchWorkdir`: `Mkdir(wd, 0755, WithParents, WithUser(USER))`, so every
/// directory the WORKDIR creates is 0755 and owned by the current USER (a name through the
/// stage's /etc/passwd and its primary group, a bare id as uid and gid), directories that
/// exist keep their owner and mode, and a non-root RUN can write there.
#[test]
fn workdir_after_user_is_owned_by_the_user() {
    let Some(wb) = common::with_busybox() else {
        return;
    };
    let ctx = common::context(
        "FROM busybox\n\
         RUN echo 'app:x:1234:2345::/home/app:/bin/sh' >> /etc/passwd && \
             echo 'app:x:2345:' >> /etc/group && mkdir -m 0750 /srv && chown 7:8 /srv\n\
         USER app\n\
         WORKDIR /home/app/work\n\
         RUN touch x && id -u > uid\n\
         USER 4321\n\
         WORKDIR /srv/data/deep\n\
         USER root\n\
         WORKDIR /root-made\n",
    );
    let out = tempfile::tempdir().unwrap();
    let config = build_both(&wb, ctx.path(), out.path(), &[]);
    let fs = out.path().join("fs");
    // /home is the base's working directory: the first RUN's runtime made it, as root.
    assert_eq!(stat(&fs, "home").0, 0);
    for d in ["home/app", "home/app/work"] {
        assert_eq!(stat(&fs, d), (1234, 2345, 0o755), "{d}");
    }
    assert_eq!(read(&fs.join("home/app/work/uid")), "1234\n");
    assert_eq!(stat(&fs, "home/app/work/x").0, 1234);
    assert_eq!(
        stat(&fs, "srv"),
        (7, 8, 0o750),
        "an existing dir keeps owner and mode"
    );
    for d in ["srv/data", "srv/data/deep"] {
        assert_eq!(stat(&fs, d), (4321, 4321, 0o755), "{d}");
    }
    assert_eq!(stat(&fs, "root-made"), (0, 0, 0o755));
    assert_eq!(config["config"]["WorkingDir"], "/root-made");
}

/// The layer digests of the single image in an OCI layout directory.
fn oci_layers(layout: &Path) -> Vec<String> {
    let blob = |d: &Value| {
        let d = d["digest"]
            .as_str()
            .unwrap()
            .strip_prefix("sha256:")
            .unwrap();
        layout.join("blobs/sha256").join(d)
    };
    let index = read_json(&layout.join("index.json"));
    let manifest = read_json(&blob(&index["manifests"][0]));
    manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect()
}

/// BuildKit `dispatchCopy` with `--link`: the copy is made on scratch and merged onto the stage,
/// so the parent directories it creates are its own (0755, the `--chown` owner) and replace the
/// base's, and the layer's cache does not depend on the base: after the base changes the same
/// layer is put on the new base without running the copy. With `--chmod` BuildKit makes a plain
/// copy (`cfg.link && cfg.chmod == ""`), so the parents keep the base's metadata.
#[test]
fn copy_link_is_an_independent_layer_rebased_on_a_new_base() {
    let Some(wb) = common::with_busybox() else {
        return;
    };
    let base = |v: &str| {
        let ctx = common::context(&format!(
            "FROM busybox\nRUN mkdir -m 0700 /opt /srv && echo {v} > /base\n"
        ));
        wb.build(&[
            "build",
            "-t",
            "parity-link-base:1",
            ctx.path().to_str().unwrap(),
        ]);
    };
    base("v1");
    let ctx = common::context(
        "FROM parity-link-base:1\n\
         COPY --link --chown=1234:2345 f /opt/app/f\n\
         COPY --link --chmod=0600 f /srv/app/g\n",
    );
    std::fs::write(ctx.path().join("f"), "linked\n").unwrap();
    let out1 = tempfile::tempdir().unwrap();
    build_both(&wb, ctx.path(), out1.path(), &[]);
    let fs = out1.path().join("fs");
    assert_eq!(read(&fs.join("base")), "v1\n");
    assert_eq!(read(&fs.join("opt/app/f")), "linked\n");
    for d in ["opt", "opt/app"] {
        assert_eq!(stat(&fs, d), (1234, 2345, 0o755), "{d}");
    }
    assert_eq!(stat(&fs, "opt/app/f"), (1234, 2345, 0o644));
    assert_eq!(
        stat(&fs, "srv"),
        (0, 0, 0o700),
        "--chmod copies are not linked"
    );
    assert_eq!(stat(&fs, "srv/app/g").2, 0o600);

    base("v2");
    let out2 = tempfile::tempdir().unwrap();
    let local = format!("type=local,dest={}", out2.path().join("fs").display());
    let oci = format!("type=oci,dest={}", out2.path().join("oci").display());
    let log = wb.build(&[
        "build",
        "-o",
        &local,
        "-o",
        &oci,
        ctx.path().to_str().unwrap(),
    ]);
    // The linked copy comes from the cache; the --chmod one (a plain copy) runs again.
    assert!(log.contains("(1 steps ran, 1 cached)"), "{log}");
    let fs = out2.path().join("fs");
    assert_eq!(read(&fs.join("base")), "v2\n");
    assert_eq!(read(&fs.join("opt/app/f")), "linked\n");
    let (l1, l2) = (
        oci_layers(&out1.path().join("oci")),
        oci_layers(&out2.path().join("oci")),
    );
    let n = l1.len();
    assert_eq!(l1[n - 2], l2[n - 2], "the same linked layer on both bases");
    assert_ne!(l1[n - 3], l2[n - 3], "the bases differ");

    // Names need the stage's /etc/passwd, which a linked layer does not see.
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM parity-link-base:1\nCOPY --link --chown=app f /f\n",
    )
    .unwrap();
    let err = wb.fails(&["build", ctx.path().to_str().unwrap()]);
    assert!(err.contains("give numeric ids"), "{err}");
}

/// The buildx options of every day: `--label` and `--annotation` land in the config and the
/// manifest, `-q` prints only the image ID, `--no-cache-filter` re-runs one stage's steps,
/// `--shm-size` and `--ulimit` reach RUN (and key it), `--call=check`/`--check` build nothing
/// and exit 1 on findings.
#[test]
fn daily_build_flags() {
    let Some(wb) = common::with_busybox() else {
        return;
    };
    let ctx = common::context(
        "FROM busybox AS first\n\
         RUN echo one > /one\n\
         FROM first AS second\n\
         RUN df -k /dev/shm | tail -1 > /shm && ulimit -n > /nofile && ulimit -Hn >> /nofile\n",
    );
    let path = ctx.path().to_str().unwrap();
    let out = tempfile::tempdir().unwrap();
    let config = build_both(
        &wb,
        ctx.path(),
        out.path(),
        &[
            "--label",
            "org.example.team=builders",
            "--annotation",
            "org.opencontainers.image.title=parity",
            "--shm-size",
            "32m",
            "--ulimit",
            "nofile=1000:2000",
        ],
    );
    assert_eq!(config["config"]["Labels"]["org.example.team"], "builders");
    let layout = out.path().join("oci");
    let index = read_json(&layout.join("index.json"));
    let d = index["manifests"][0]["digest"].as_str().unwrap();
    let manifest = read_json(
        &layout
            .join("blobs/sha256")
            .join(d.strip_prefix("sha256:").unwrap()),
    );
    assert_eq!(
        manifest["annotations"]["org.opencontainers.image.title"],
        "parity"
    );
    let fs = out.path().join("fs");
    let shm = read(&fs.join("shm"));
    assert_eq!(shm.split_whitespace().nth(1), Some("32768"), "{shm}");
    assert_eq!(read(&fs.join("nofile")), "1000\n2000\n");

    // -q: the image ID alone on stdout; the same flags keep the cache.
    let o = wb
        .cmd()
        .args([
            "build",
            "-q",
            "--shm-size",
            "32m",
            "--ulimit",
            "nofile=1000:2000",
            path,
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let id = String::from_utf8(o.stdout).unwrap();
    assert!(
        id.starts_with("sha256:") && id.trim_end().len() == 71,
        "{id:?}"
    );
    assert!(
        o.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );

    // --no-cache-filter: only the stage named runs again.
    let log = wb.build(&[
        "build",
        "--shm-size",
        "32m",
        "--ulimit",
        "nofile=1000:2000",
        "--no-cache-filter",
        "SECOND",
        path,
    ]);
    assert!(log.contains("(1 steps ran, 1 cached)"), "{log}");
    let err = wb.fails(&["build", "--no-cache-filter", "third", path]);
    assert!(err.contains("no such stage"), "{err}");
    // Another --ulimit makes every RUN another step.
    let log = wb.build(&["build", "--ulimit", "nofile=900:2000", path]);
    assert!(log.contains("(2 steps ran, 0 cached)"), "{log}");

    // --check: the findings, nothing built, exit 1; a clean file exits 0.
    let lint =
        common::context("# check=skip=JSONArgsRecommended\nFROM busybox as base\nRUN false\n");
    let o = wb.run(&["build", "--check", lint.path().to_str().unwrap()]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(o.status.code(), Some(1), "{text}");
    assert!(text.contains("FromAsCasing"), "{text}");
    assert!(text.contains("1 warning(s) have been found"), "{text}");
    assert!(!text.contains("RUN false"), "nothing runs: {text}");
    let clean = common::context("FROM busybox AS base\nRUN false\n");
    let o = wb.run(&["build", "--call=check", clean.path().to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("no warnings found"));
    let err = wb.fails(&["build", "--call=outline", clean.path().to_str().unwrap()]);
    assert!(err.contains("wbuild plan"), "{err}");
}

/// `--build-context NAME=…` (buildx): `FROM NAME` and `COPY --from=NAME` take a directory
/// (its files owned by root), an image (`docker-image://REF`) or an OCI layout's image
/// (`oci-layout://PATH@TAG`) instead of the image NAME.
#[test]
fn named_build_contexts_of_each_kind() {
    let Some(wb) = common::with_busybox() else {
        return;
    };
    let layout_dir = tempfile::tempdir().unwrap();
    let tar = common::busybox_oci_tar(layout_dir.path()).unwrap();
    let layout = layout_dir.path().join("layout");
    std::fs::create_dir(&layout).unwrap();
    let st = std::process::Command::new("tar")
        .arg("-xf")
        .arg(&tar)
        .arg("-C")
        .arg(&layout)
        .status()
        .unwrap();
    assert!(st.success());
    let files = tempfile::tempdir().unwrap();
    std::fs::create_dir(files.path().join("sub")).unwrap();
    std::fs::write(files.path().join("sub/f"), "from a named dir\n").unwrap();

    let ctx = common::context(
        "FROM base\n\
         RUN echo ran on base > /ran\n\
         COPY --from=files /sub/f /f\n\
         COPY --from=oci /bin/busybox /bb\n",
    );
    let out = tempfile::tempdir().unwrap();
    let files_ctx = format!("files={}", files.path().display());
    let oci_ctx = format!("oci=oci-layout://{}@bb", layout.display());
    build_both(
        &wb,
        ctx.path(),
        out.path(),
        &[
            "--build-context",
            "base=docker-image://busybox:latest",
            "--build-context",
            &files_ctx,
            "--build-context",
            &oci_ctx,
        ],
    );
    let fs = out.path().join("fs");
    assert_eq!(read(&fs.join("ran")), "ran on base\n");
    assert_eq!(read(&fs.join("f")), "from a named dir\n");
    assert_eq!(stat(&fs, "f").0, 0);
    assert!(fs.join("bb").is_file());

    // FROM an OCI layout's image, and FROM a directory (a base with just its files).
    let ctx = common::context("FROM oci\nRUN echo on the layout > /ran\n");
    let out = tempfile::tempdir().unwrap();
    build_both(&wb, ctx.path(), out.path(), &["--build-context", &oci_ctx]);
    assert_eq!(read(&out.path().join("fs/ran")), "on the layout\n");
    let ctx = common::context("FROM files\n");
    let out = tempfile::tempdir().unwrap();
    build_both(
        &wb,
        ctx.path(),
        out.path(),
        &["--build-context", &files_ctx],
    );
    assert_eq!(tree(&out.path().join("fs")), ["sub/", "sub/f"]);

    let err = wb.fails(&[
        "build",
        "--build-context",
        "x=git://h/r",
        ctx.path().to_str().unwrap(),
    ]);
    assert!(err.contains("unknown source"), "{err}");
    let bad = format!("oci=oci-layout://{}@nosuchtag", layout.display());
    let err = wb.fails(&[
        "build",
        "--build-context",
        &bad,
        ctx.path().to_str().unwrap(),
    ]);
    assert!(err.contains("has no image nosuchtag"), "{err}");
}
