//! End-to-end: `wbuild plan` through the real binary on the multi-stage patterns of `examples/`,
//! checking the pruned stage graph it prints.

mod common;

use serde_json::{Value, json};

/// The printed stages' (index, name) pairs.
fn stages(plan: &Value) -> Vec<(u64, Option<String>)> {
    plan["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["index"].as_u64().unwrap(),
                s["name"].as_str().map(String::from),
            )
        })
        .collect()
}

fn stage(plan: &Value, index: u64) -> &Value {
    plan["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["index"] == index)
        .unwrap_or_else(|| panic!("stage {index} not in plan: {plan:#}"))
}

fn ops(stage: &Value) -> Vec<&Value> {
    stage["ops"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| &o["op"])
        .collect()
}

#[test]
fn named_stages_skip_the_unused_one() {
    let wb = common::Wbuild::new();
    let plan = wb.plan("named-stages", &[]);
    assert_eq!(plan["target"], 2);
    assert_eq!(stages(&plan), vec![(0, Some("build".into())), (2, None)]);
    assert_eq!(plan["skipped"], json!([{"index": 1, "name": "lint"}]));
    let last = stage(&plan, 2);
    assert_eq!(last["depends_on"], json!([0]));
    assert_eq!(
        last["base"],
        json!({"Image": {"reference": "busybox", "platform": null}})
    );
    let ops = ops(last);
    assert_eq!(ops[0]["Copy"]["from"], json!({"Stage": 0}));
    assert_eq!(ops[0]["Copy"]["sources"], json!([{"Path": "/out.txt"}]));
    assert_eq!(ops[1], &json!({"Cmd": ["cat", "/app/out.txt"]}));
    // Shell form RUN resolves to the default shell; WORKDIR is absolute.
    let build = ops_of(&plan, 0);
    assert_eq!(build[0], json!({"Workdir": "/src"}));
    assert_eq!(
        build[2]["Run"]["args"],
        json!([
            "/bin/sh",
            "-c",
            "chmod +x hello.sh && ./hello.sh > /out.txt"
        ])
    );
    assert_eq!(build[2]["Run"]["network"], "Default");
    assert_eq!(build[2]["Run"]["security"], "Sandbox");
}

#[test]
fn the_command_line_network_shows_in_the_plan() {
    let wb = common::Wbuild::new();
    let plan = wb.plan(
        "named-stages",
        &[
            "--network",
            "none",
            "--add-host",
            "db:10.0.0.5",
            "--allow",
            "network.host",
        ],
    );
    assert_eq!(ops_of(&plan, 0)[2]["Run"]["network"], "None");
    assert_eq!(
        plan["run"],
        json!({"network": "none", "allow": ["network.host"], "add_hosts": ["db:10.0.0.5"]})
    );
    let dir = common::repo().join("examples/named-stages");
    let err = wb.fails(&["plan", "--network", "bridge", dir.to_str().unwrap()]);
    assert!(err.contains("--network \"bridge\""), "{err}");
}

fn ops_of(plan: &Value, index: u64) -> Vec<Value> {
    ops(stage(plan, index)).into_iter().cloned().collect()
}

#[test]
fn copy_from_stage_index() {
    let wb = common::Wbuild::new();
    let plan = wb.plan("stage-index", &[]);
    assert_eq!(stages(&plan), vec![(0, None), (1, None)]);
    assert_eq!(ops_of(&plan, 1)[0]["Copy"]["from"], json!({"Stage": 0}));
}

#[test]
fn from_an_earlier_stage_and_target() {
    let wb = common::Wbuild::new();
    let plan = wb.plan("from-stage", &[]);
    // Default target: the last stage; `test` is not needed.
    assert_eq!(
        stages(&plan),
        vec![(0, Some("base".into())), (2, Some("release".into()))]
    );
    assert_eq!(stage(&plan, 2)["base"], json!({"Stage": 0}));
    // ENV from the parent stage is expanded in WORKDIR.
    assert_eq!(ops_of(&plan, 0)[1], json!({"Workdir": "/app"}));

    let plan = wb.plan("from-stage", &["--target", "test"]);
    assert_eq!(plan["target"], 1);
    assert_eq!(
        stages(&plan),
        vec![(0, Some("base".into())), (1, Some("test".into()))]
    );
    // Target names are case-insensitive, as in Docker.
    let plan = wb.plan("from-stage", &["--target", "TEST"]);
    assert_eq!(plan["target"], 1);

    let dir = common::repo().join("examples/from-stage");
    let err = wb.fails(&["plan", "--target", "nope", dir.to_str().unwrap()]);
    assert!(err.contains("nope"), "{err}");
    assert!(err.contains("base") && err.contains("release"), "{err}");
}

#[test]
fn alias_stage() {
    let wb = common::Wbuild::new();
    let plan = wb.plan("alias-stage", &[]);
    assert_eq!(
        stages(&plan),
        vec![
            (0, Some("tools".into())),
            (1, Some("build".into())),
            (2, None)
        ]
    );
    assert_eq!(
        stage(&plan, 0)["base"]["Image"]["reference"],
        "busybox:latest"
    );
    assert_eq!(stage(&plan, 1)["base"], json!({"Stage": 0}));
    assert_eq!(stage(&plan, 2)["base"], json!({"Stage": 0}));
    assert_eq!(stage(&plan, 2)["depends_on"], json!([0, 1]));
}

#[test]
fn arg_in_from_with_and_without_build_arg() {
    let wb = common::Wbuild::new();
    let plan = wb.plan("arg-in-from", &[]);
    assert_eq!(
        stage(&plan, 0)["base"]["Image"]["reference"],
        "busybox:latest"
    );
    let ops = ops_of(&plan, 0);
    // The redeclared ARG picks up the global default and reaches RUN through extra-env.
    assert_eq!(
        ops[0],
        json!({"Arg": {"key": "VERSION", "value": "latest"}})
    );
    assert_eq!(
        ops[1]["Run"]["extra_env"],
        json!([{"key": "VERSION", "value": "latest"}])
    );

    let plan = wb.plan(
        "arg-in-from",
        &[
            "--build-arg",
            "VERSION=1.36",
            "--build-arg",
            "BASE=example.com/bb",
        ],
    );
    assert_eq!(
        stage(&plan, 0)["base"]["Image"]["reference"],
        "example.com/bb:1.36"
    );
    assert_eq!(
        ops_of(&plan, 0)[1]["Run"]["extra_env"],
        json!([{"key": "VERSION", "value": "1.36"}])
    );
}

#[test]
fn branch_by_arg() {
    let wb = common::Wbuild::new();
    let plan = wb.plan("branch-by-arg", &[]);
    assert_eq!(
        stages(&plan),
        vec![
            (0, Some("branch-version-1".into())),
            (2, Some("final".into()))
        ]
    );
    assert_eq!(stage(&plan, 2)["base"], json!({"Stage": 0}));
    assert_eq!(
        plan["skipped"],
        json!([{"index": 1, "name": "branch-version-2"}])
    );

    let plan = wb.plan("branch-by-arg", &["--build-arg", "BUILD_VERSION=2"]);
    assert_eq!(
        stages(&plan),
        vec![
            (1, Some("branch-version-2".into())),
            (2, Some("final".into()))
        ]
    );
    assert_eq!(stage(&plan, 2)["base"], json!({"Stage": 1}));

    // A value with no such stage falls through to an image reference, as in Docker.
    let plan = wb.plan("branch-by-arg", &["--build-arg", "BUILD_VERSION=3"]);
    assert_eq!(stages(&plan), vec![(2, Some("final".into()))]);
    assert_eq!(
        stage(&plan, 2)["base"]["Image"]["reference"],
        "branch-version-3"
    );
}

#[test]
fn copy_from_with_a_variable_is_rejected_with_its_location() {
    let wb = common::Wbuild::new();
    let file = common::repo().join("tests/fixtures/invalid-from-arg.Dockerfile");
    let f = file.to_str().unwrap();
    let err = wb.fails(&["plan", "-f", f, "."]);
    assert!(err.contains(&format!("{f}:6:6")), "{err}");
    assert!(err.contains("--from=build-${src}"), "{err}");
    assert!(err.contains("variables are not allowed"), "{err}");
}

#[test]
fn dot_output_shows_only_needed_stages() {
    let wb = common::Wbuild::new();
    let dir = common::repo().join("examples/named-stages");
    let dot = wb.ok(&["plan", "--format", "dot", dir.to_str().unwrap()]);
    assert!(dot.starts_with("digraph build {"), "{dot}");
    assert!(dot.contains("s0 -> s2 [label=\"COPY\"]"), "{dot}");
    assert!(!dot.contains("lint"), "{dot}");
}

#[test]
fn errors_name_file_line_and_text() {
    let wb = common::Wbuild::new();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("Dockerfile");
    std::fs::write(&file, "FROM busybox\nRUN --bogus=1 true\n").unwrap();
    let err = wb.fails(&["plan", dir.path().to_str().unwrap()]);
    assert!(err.contains(&format!("{}:2:", file.display())), "{err}");
    assert!(err.contains("--bogus"), "{err}");

    std::fs::write(&file, "FROM busybox\nFORM x\n").unwrap();
    let err = wb.fails(&["plan", dir.path().to_str().unwrap()]);
    assert!(err.contains(&format!("{}:2:1", file.display())), "{err}");
    assert!(err.contains("FORM"), "{err}");

    let err = wb.fails(&["plan", "/nonexistent-context"]);
    assert!(err.contains("/nonexistent-context/Dockerfile"), "{err}");
}

#[test]
fn build_names_a_base_image_it_cannot_get() {
    // Not in the store, so it is pulled; nothing listens on port 1 of this machine.
    let wb = common::Wbuild::new();
    let dir = common::context("ARG X=1\nFROM 127.0.0.1:1/nothing/busybox AS build\n");
    let err = wb.fails(&[dir.path().to_str().unwrap()]);
    assert!(err.contains("Dockerfile:2"), "{err}");
    assert!(err.contains("127.0.0.1:1/nothing/busybox"), "{err}");
    assert!(
        err.contains("cannot reach the registry 127.0.0.1:1"),
        "{err}"
    );
}

#[test]
fn warm_start_uses_the_compiled_frontend_cache() {
    let wb = common::Wbuild::new();
    wb.plan("stage-index", &[]);
    let cache = wb.root.path().join("cache/frontends");
    let artifacts = || {
        std::fs::read_dir(&cache)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "cwasm")
            })
            .count()
    };
    assert_eq!(
        artifacts(),
        1,
        "one compiled artifact in {}",
        cache.display()
    );
    wb.plan("stage-index", &[]);
    assert_eq!(artifacts(), 1);
}

/// The Dockerfile frontend as a standalone .wasm file, as host/build.rs builds it.
fn dockerfile_wasm() -> std::path::PathBuf {
    common::repo().join("target/frontends/wasm32-wasip2/release/wbuild_frontend_dockerfile.wasm")
}

#[test]
fn frontend_from_a_file_and_from_a_syntax_line() {
    let wb = common::Wbuild::new();
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(dockerfile_wasm(), dir.path().join("my-frontend.wasm")).unwrap();
    let ctx = dir.path().to_str().unwrap();

    std::fs::write(dir.path().join("Dockerfile"), "FROM busybox AS only\n").unwrap();
    let fe = dir.path().join("my-frontend.wasm");
    let plan: Value =
        serde_json::from_str(&wb.ok(&["plan", "--frontend", fe.to_str().unwrap(), ctx])).unwrap();
    assert!(
        plan["frontend"]
            .as_str()
            .unwrap()
            .contains("my-frontend.wasm"),
        "{plan}"
    );
    assert_eq!(stages(&plan), vec![(0, Some("only".into()))]);

    // `# syntax=` with a path relative to the build file.
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    let file = dir.path().join("sub/Build");
    std::fs::write(&file, "# syntax=../my-frontend.wasm\nFROM busybox AS x\n").unwrap();
    let plan: Value =
        serde_json::from_str(&wb.ok(&["plan", "-f", file.to_str().unwrap(), ctx])).unwrap();
    assert!(
        plan["frontend"]
            .as_str()
            .unwrap()
            .contains("my-frontend.wasm"),
        "{plan}"
    );

    // Docker's own frontend image names select the embedded Dockerfile frontend.
    std::fs::write(&file, "# syntax=docker/dockerfile:1.7\nFROM busybox AS x\n").unwrap();
    let plan: Value =
        serde_json::from_str(&wb.ok(&["plan", "-f", file.to_str().unwrap(), ctx])).unwrap();
    assert!(
        plan["frontend"]
            .as_str()
            .unwrap()
            .starts_with("dockerfile ("),
        "{plan}"
    );

    std::fs::write(
        &file,
        "# syntax=127.0.0.1:1/some/frontend:1\nFROM busybox\n",
    )
    .unwrap();
    let err = wb.fails(&["plan", "-f", file.to_str().unwrap(), ctx]);
    assert!(
        err.contains(":1: `# syntax=127.0.0.1:1/some/frontend:1`: getting the frontend"),
        "{err}"
    );
    std::fs::write(&file, "# syntax=some-frontend\nFROM busybox\n").unwrap();
    let err = wb.fails(&["plan", "-f", file.to_str().unwrap(), ctx]);
    assert!(
        err.contains(":1: `# syntax=some-frontend` names neither"),
        "{err}"
    );

    std::fs::write(dir.path().join("bad.wasm"), "not a component").unwrap();
    let bad = dir.path().join("bad.wasm");
    let err = wb.fails(&["plan", "--frontend", bad.to_str().unwrap(), ctx]);
    assert!(err.contains("not a WebAssembly component"), "{err}");
}

#[test]
fn frontends_lists_the_embedded_dockerfile_frontend() {
    let wb = common::Wbuild::new();
    let out = wb.ok(&["frontends"]);
    let line = out
        .lines()
        .find(|l| l.starts_with("dockerfile "))
        .expect(&out);
    assert!(
        line.contains("sha256:") && line.split_whitespace().any(|w| w == "embedded"),
        "{out}"
    );
}
