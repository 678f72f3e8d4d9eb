//! The extended-syntax frontend through the real binary: `# syntax=dockerfile-ext` and
//! `--frontend dockerfile-ext` select it, errors in blocks and conditions point at their line
//! and column, and an IF/ELSE IF/ELSE build gives exactly the image of the equivalent
//! multi-stage Dockerfile (as root with runc). `INCLUDE`: fragments are read from the context
//! relative to the including file, errors show the fragment's line and the include chain,
//! progress, errors and history name the fragment, and its steps share the cache of the same
//! steps written inline.

mod common;

use std::path::Path;

fn example(name: &str) -> String {
    common::repo()
        .join("examples")
        .join(name)
        .to_str()
        .unwrap()
        .to_string()
}

/// The RUN shell lines of every stage of a plan.
fn run_lines(plan: &serde_json::Value) -> Vec<String> {
    let mut out = Vec::new();
    for stage in plan["stages"].as_array().unwrap() {
        for op in stage["ops"].as_array().unwrap() {
            if let Some(args) = op["op"]["Run"]["args"].as_array() {
                out.push(args.last().unwrap().as_str().unwrap().to_string());
            }
        }
    }
    out
}

#[test]
fn the_syntax_directive_selects_the_extended_frontend() {
    let wb = common::Wbuild::new();
    for (args, expected) in [
        (&[][..], "touch version1"),
        (&["--build-arg", "BUILD_VERSION=2"][..], "touch version2"),
        (&["--build-arg", "BUILD_VERSION=3"][..], "touch other"),
    ] {
        let plan = wb.plan("if-else", args);
        assert!(
            plan["frontend"]
                .as_str()
                .unwrap()
                .starts_with("dockerfile-ext (sha256:"),
            "{plan}"
        );
        assert_eq!(run_lines(&plan), [expected, "ls > /files.txt"]);
        // The host gets plain IR: no trace of the blocks.
        let text = plan.to_string();
        assert!(!text.contains("IF ") && !text.contains("DONE"), "{text}");
    }
}

#[test]
fn the_frontend_flag_selects_it_by_name_and_the_default_refuses_if() {
    let wb = common::Wbuild::new();
    let ctx = common::context("FROM busybox\nIF defined(X)\nRUN echo x\nDONE\n");
    let c = ctx.path().to_str().unwrap();
    let plan: serde_json::Value = serde_json::from_str(&wb.ok(&[
        "plan",
        "--frontend",
        "dockerfile-ext",
        "--build-arg",
        "X=1",
        c,
    ]))
    .unwrap();
    // X is no ARG of the file: a condition sees ARGs and ENV only.
    assert!(run_lines(&plan).is_empty(), "{plan}");
    let err = wb.fails(&["plan", c]);
    assert!(err.contains("unknown instruction: IF"), "{err}");
}

/// `wbuild plan` of a Dockerfile that must fail; returns stderr.
fn plan_error(wb: &common::Wbuild, dockerfile: &str) -> (String, String) {
    let ctx = common::context(dockerfile);
    let err = wb.fails(&[
        "plan",
        "--frontend",
        "dockerfile-ext",
        ctx.path().to_str().unwrap(),
    ]);
    let file = ctx.path().join("Dockerfile").display().to_string();
    (err, file)
}

#[test]
fn block_and_condition_errors_point_at_line_and_column() {
    let wb = common::Wbuild::new();
    let cases = [
        (
            "FROM busybox\nIF $A == 1\nRUN true\n",
            "2:1",
            "IF without DONE",
            "IF $A == 1",
        ),
        ("FROM busybox\n  ELSE\n", "2:3", "ELSE without IF", "ELSE"),
        (
            "FROM busybox\nRUN true\nDONE\n",
            "3:1",
            "DONE without IF",
            "DONE",
        ),
        (
            "FROM busybox\nIF 1 == 1\nELSE\nELSE\nDONE\n",
            "4:1",
            "ELSE after ELSE: the ELSE at line 3",
            "ELSE",
        ),
        (
            "FROM busybox\nIF $A = 1\nDONE\n",
            "2:7",
            "bad condition in IF: `=` alone is not an operator",
            "=",
        ),
        (
            "FROM busybox\nIF 1 == 2\nELSE IF ($B == 1\nDONE\n",
            "3:9",
            "this `(` is never closed",
            "(",
        ),
        (
            "FROM busybox\nIF ${NEED:?give NEED} == 1\nDONE\n",
            "2:4",
            "give NEED",
            "${NEED:?give NEED}",
        ),
    ];
    for (src, at, message, text) in cases {
        let (err, file) = plan_error(&wb, src);
        assert!(err.contains(&format!("{file}:{at}: ")), "{src:?}: {err}");
        assert!(err.contains(message), "{src:?}: {err}");
        // The offending text is shown under its line.
        let line: usize = at.split(':').next().unwrap().parse().unwrap();
        let source_line = src.lines().nth(line - 1).unwrap();
        assert!(
            err.contains(source_line) && err.contains(text),
            "{src:?}: {err}"
        );
    }
}

#[test]
fn frontends_lists_both_embedded_frontends() {
    let wb = common::Wbuild::new();
    let out = wb.ok(&["frontends"]);
    let names: Vec<&str> = out
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(
        names.starts_with(&["dockerfile", "dockerfile-ext"]),
        "{out}"
    );
    assert!(out.contains("IF / ELSE IF / ELSE / DONE"), "{out}");
}

/// Builds `args` with a fixed SOURCE_DATE_EPOCH; returns (image ID, manifest digest).
fn build_ids(wb: &common::Wbuild, dir: &Path, args: &[&str]) -> (String, String) {
    let iid = dir.join("iid");
    let mut all = vec!["build", "--iidfile", iid.to_str().unwrap()];
    all.extend_from_slice(args);
    let out = wb
        .cmd()
        .args(&all)
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "wbuild {all:?} failed:\n{log}");
    let manifest = log
        .lines()
        .find_map(|l| l.strip_prefix("built "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no `built` line in:\n{log}"))
        .to_string();
    (std::fs::read_to_string(&iid).unwrap(), manifest)
}

#[test]
fn if_else_builds_exactly_the_image_of_the_multi_stage_pattern() {
    let Some(wb) = common::with_busybox() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let ext = example("if-else");
    let multi = format!("{ext}/multi-stage.Dockerfile");
    let mut seen = Vec::new();
    for (v, file) in [("1", "version1"), ("2", "version2"), ("3", "other")] {
        let arg = format!("BUILD_VERSION={v}");
        let fs = dir.path().join(format!("fs-{v}"));
        let dest = format!("type=local,dest={}", fs.display());
        let with_if = build_ids(&wb, dir.path(), &["--build-arg", &arg, "-o", &dest, &ext]);
        let with_stages = build_ids(&wb, dir.path(), &["--build-arg", &arg, "-f", &multi, &ext]);
        // Same config (so the same layer diff_ids, history and settings) and the same manifest
        // (so the same layer blobs).
        assert_eq!(with_if, with_stages, "BUILD_VERSION={v}");
        // The image holds the branch's file and no other.
        let listing = std::fs::read_to_string(fs.join("files.txt")).unwrap();
        assert_eq!(listing.trim(), file, "BUILD_VERSION={v}");
        assert!(fs.join("home").join(file).exists());
        seen.push(with_if.0);
    }
    seen.dedup();
    assert_eq!(seen.len(), 3, "each value gives its own image: {seen:?}");
}

/// A context with a Dockerfile and the fragments `files` (path, text).
fn include_context(dockerfile: &str, files: &[(&str, &str)]) -> tempfile::TempDir {
    let ctx = common::context(dockerfile);
    for (path, text) in files {
        let p = ctx.path().join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    ctx
}

const INCLUDING: &str = "# syntax=dockerfile-ext\nARG FLAVOUR=a\nFROM busybox\nINCLUDE ci/${FLAVOUR}.Dockerfile\nRUN echo last\n";

fn include_fragments() -> Vec<(&'static str, &'static str)> {
    vec![
        ("ci/a.Dockerfile", "RUN echo a\nINCLUDE common.Dockerfile\n"),
        ("ci/common.Dockerfile", "RUN echo common\n"),
        ("ci/b.Dockerfile", "RUN echo b\n  RUN --bogus x\n"),
    ]
}

#[test]
fn include_splices_fragments_and_errors_point_into_them() {
    let wb = common::Wbuild::new();
    let ctx = include_context(INCLUDING, &include_fragments());
    let c = ctx.path().to_str().unwrap();
    let plan: serde_json::Value = serde_json::from_str(&wb.ok(&["plan", c])).unwrap();
    assert_eq!(run_lines(&plan), ["echo a", "echo common", "echo last"]);

    // An error in a fragment: its file:line:col, its line, then where it was included.
    let main = ctx.path().join("Dockerfile").display().to_string();
    let err = wb.fails(&["plan", "--build-arg", "FLAVOUR=b", c]);
    assert!(err.contains("ci/b.Dockerfile:2:7: "), "{err}");
    assert!(err.contains("--bogus"), "{err}");
    assert!(
        err.contains("  RUN --bogus x"),
        "the fragment's line is shown: {err}"
    );
    assert!(err.contains(&format!("included from {main}:4")), "{err}");
    assert!(
        !err.contains("echo last"),
        "the build file's line 2 is not shown: {err}"
    );

    // A missing fragment: the path it looked for, at the INCLUDE line.
    let err = wb.fails(&["plan", "--build-arg", "FLAVOUR=zzz", c]);
    assert!(err.contains(&format!("{main}:4:9: ")), "{err}");
    assert!(
        err.contains("cannot read the fragment ci/zzz.Dockerfile"),
        "{err}"
    );
    assert!(err.contains("INCLUDE ci/${FLAVOUR}.Dockerfile"), "{err}");
}

#[test]
fn include_cycles_untaken_branches_and_paths_outside_the_context() {
    let wb = common::Wbuild::new();
    // An INCLUDE in a branch that is not taken is not read: the fragment need not exist.
    let ctx = include_context(
        "# syntax=dockerfile-ext\nARG X=0\nFROM busybox\nIF $X == 1\nINCLUDE missing.Dockerfile\nDONE\nRUN echo ok\n",
        &[],
    );
    let c = ctx.path().to_str().unwrap();
    let plan: serde_json::Value = serde_json::from_str(&wb.ok(&["plan", c])).unwrap();
    assert_eq!(run_lines(&plan), ["echo ok"]);
    let err = wb.fails(&["plan", "--build-arg", "X=1", c]);
    assert!(
        err.contains("cannot read the fragment missing.Dockerfile"),
        "{err}"
    );

    // A cycle names the chain.
    let ctx = include_context(
        "# syntax=dockerfile-ext\nFROM busybox\nINCLUDE a\n",
        &[("a", "INCLUDE sub/b\n"), ("sub/b", "INCLUDE ../a\n")],
    );
    let err = wb.fails(&["plan", ctx.path().to_str().unwrap()]);
    assert!(err.contains("sub/b:1:9: INCLUDE cycle: "), "{err}");
    assert!(err.contains(" -> a -> sub/b -> a"), "{err}");
    assert!(err.contains("included from a:1"), "{err}");

    // A fragment that is a symlink out of the context reads inside it, never the host file.
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret"), "RUN echo SECRET\n").unwrap();
    let ctx = include_context("# syntax=dockerfile-ext\nFROM busybox\nINCLUDE evil\n", &[]);
    std::os::unix::fs::symlink(outside.path().join("secret"), ctx.path().join("evil")).unwrap();
    let err = wb.fails(&["plan", ctx.path().to_str().unwrap()]);
    assert!(err.contains("no such file in the build context"), "{err}");
    assert!(!err.contains("SECRET"), "{err}");
    let ctx = include_context("# syntax=dockerfile-ext\nFROM busybox\nINCLUDE ../x\n", &[]);
    let err = wb.fails(&["plan", ctx.path().to_str().unwrap()]);
    assert!(err.contains("leads outside the build context"), "{err}");

    // With -f, paths start at the build file's directory inside the context.
    let ctx = include_context(
        "",
        &[
            (
                "docker/app.Dockerfile",
                "# syntax=dockerfile-ext\nFROM busybox\nINCLUDE steps\n",
            ),
            ("docker/steps", "RUN echo from docker/steps\n"),
        ],
    );
    let file = ctx.path().join("docker/app.Dockerfile");
    let plan = wb.ok(&[
        "plan",
        "-f",
        file.to_str().unwrap(),
        ctx.path().to_str().unwrap(),
    ]);
    let plan: serde_json::Value = serde_json::from_str(&plan).unwrap();
    assert_eq!(run_lines(&plan), ["echo from docker/steps"]);
}

#[test]
fn included_steps_name_their_fragment_and_share_the_cache_of_inline_steps() {
    let Some(wb) = common::with_busybox() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // The same steps inline first: the build with INCLUDE then runs nothing.
    let inline = include_context(
        "FROM busybox\nRUN echo a > /a\nRUN echo common > /common\nRUN echo last > /last\n",
        &[],
    );
    let log = wb.build(&["build", inline.path().to_str().unwrap()]);
    assert!(log.contains("(3 steps ran, 0 cached)"), "{log}");
    let ctx = include_context(
        "# syntax=dockerfile-ext\nFROM busybox\n\nINCLUDE ci/a.Dockerfile\nRUN echo last > /last\n",
        &[
            (
                "ci/a.Dockerfile",
                "RUN echo a > /a\nINCLUDE common.Dockerfile\n",
            ),
            ("ci/common.Dockerfile", "\nRUN echo common > /common\n"),
        ],
    );
    let c = ctx.path().to_str().unwrap();
    let fs = dir.path().join("fs");
    let dest = format!("type=local,dest={}", fs.display());
    let (iid, _) = build_ids(&wb, dir.path(), &["-o", &dest, c]);
    for (f, text) in [("a", "a"), ("common", "common"), ("last", "last")] {
        assert_eq!(std::fs::read_to_string(fs.join(f)).unwrap().trim(), text);
    }
    // Progress names the fragment of each included step.
    let out = wb
        .cmd()
        .args(["build", "--progress", "plain", c])
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("(0 steps ran, 3 cached)"), "{log}");
    assert!(log.contains("RUN echo a > /a (ci/a.Dockerfile:1)"), "{log}");
    assert!(
        log.contains("RUN echo common > /common (ci/common.Dockerfile:2)"),
        "{log}"
    );
    assert!(
        log.contains("RUN echo last > /last\n") || log.contains("RUN echo last > /last"),
        "{log}"
    );
    assert!(!log.contains("/last (ci/"), "{log}");

    // The image history names it too.
    let hex = iid.trim().strip_prefix("sha256:").unwrap();
    let config = std::fs::read_to_string(wb.root.path().join("blobs/sha256").join(hex)).unwrap();
    let config: serde_json::Value = serde_json::from_str(&config).unwrap();
    let comments: Vec<&str> = config["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|h| h["comment"].as_str())
        .collect();
    assert!(
        comments.contains(&"buildkit.dockerfile.v0 ci/a.Dockerfile:1"),
        "{comments:?}"
    );
    assert!(
        comments.contains(&"buildkit.dockerfile.v0 ci/common.Dockerfile:2"),
        "{comments:?}"
    );

    // A failing RUN in a fragment says where it is and where it was included from.
    std::fs::write(ctx.path().join("ci/common.Dockerfile"), "\nRUN exit 3\n").unwrap();
    let err = wb.fails(&["build", c]);
    let main = ctx.path().join("Dockerfile").display().to_string();
    assert!(
        err.contains(&format!(
            "ci/common.Dockerfile:2 (included from ci/a.Dockerfile:2, {main}:4): RUN exit 3"
        )),
        "{err}"
    );
}

#[test]
fn a_missing_base_image_in_a_fragment_is_reported_at_the_fragment() {
    // The registry is a closed port on loopback: the lookup fails at once, off no network.
    let wb = common::Wbuild::new();
    let ctx = include_context(
        "# syntax=dockerfile-ext\nFROM scratch AS a\nINCLUDE ci/f.Dockerfile\n",
        &[("ci/f.Dockerfile", "FROM 127.0.0.1:1/nosuch:1\nRUN true\n")],
    );
    let main = ctx.path().join("Dockerfile").display().to_string();
    let err = wb.fails(&["build", ctx.path().to_str().unwrap()]);
    assert!(err.contains("ci/f.Dockerfile:1:1: "), "{err}");
    assert!(err.contains("127.0.0.1:1/nosuch:1"), "{err}");
    assert!(err.contains(&format!("included from {main}:3")), "{err}");
}
