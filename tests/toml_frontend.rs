//! The third-party frontend of `examples/toml-frontend`, built outside the workspace from the
//! WIT files alone (its own Cargo.lock, `cargo build --locked`), then used through the real
//! binary with `--frontend FILE.wasm`: it plans, lists in `wbuild frontends`, reports errors
//! at their place in the spec, and builds the example spec's filesystem (as root with runc).

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// Builds the example frontend once per test process; returns the component's path.
fn toml_frontend() -> &'static PathBuf {
    static WASM: OnceLock<PathBuf> = OnceLock::new();
    WASM.get_or_init(|| {
        let repo = common::repo();
        let target_dir = repo.join("target/toml-frontend");
        let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
        cmd.current_dir(repo.join("examples/toml-frontend"))
            .args([
                "build",
                "--release",
                "--locked",
                "--target",
                "wasm32-wasip2",
            ])
            .arg("--target-dir")
            .arg(&target_dir);
        // Settings of the outer build (wrappers, flags, its target dir) stay out of this one.
        for var in [
            "RUSTC_WORKSPACE_WRAPPER",
            "RUSTC_WRAPPER",
            "CARGO_ENCODED_RUSTFLAGS",
            "RUSTFLAGS",
            "CARGO_BUILD_TARGET",
            "CARGO_TARGET_DIR",
            "CARGO_MAKEFLAGS",
        ] {
            cmd.env_remove(var);
        }
        let out = cmd.output().expect("running cargo");
        assert!(
            out.status.success(),
            "building examples/toml-frontend failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let wasm = target_dir.join("wasm32-wasip2/release/wbuild_toml_frontend.wasm");
        assert!(wasm.exists(), "{} is missing", wasm.display());
        wasm
    })
}

fn example_dir() -> String {
    common::repo()
        .join("examples/toml-frontend/example")
        .display()
        .to_string()
}

fn spec() -> String {
    format!("{}/build.toml", example_dir())
}

#[test]
fn the_toml_frontend_plans_the_example_spec() {
    let wasm = toml_frontend().to_str().unwrap();
    let wb = common::Wbuild::new();
    let out = wb.ok(&["plan", "--frontend", wasm, "-f", &spec(), &example_dir()]);
    let plan: serde_json::Value = serde_json::from_str(&out).unwrap();
    // target = "app" in the spec; the unused stage is skipped, the build stage is needed.
    let stages = plan["stages"].as_array().unwrap();
    let names: Vec<&str> = stages.iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["build", "app"]);
    assert_eq!(plan["skipped"].as_array().unwrap().len(), 1, "{plan}");
    assert_eq!(stages[1]["depends_on"], serde_json::json!([0]));
    assert_eq!(stages[1]["ops"][0]["op"]["Workdir"], "/app");
    assert_eq!(
        stages[1]["ops"][3]["op"]["Cmd"],
        serde_json::json!(["cat", "/app/greeting.txt"])
    );
    // --target wins over the spec's target.
    let out = wb.ok(&[
        "plan",
        "--frontend",
        wasm,
        "--target",
        "unused",
        "-f",
        &spec(),
        &example_dir(),
    ]);
    let plan: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(plan["stages"].as_array().unwrap().len(), 1);

    // A spec can name its frontend itself: `# syntax=` is a TOML comment.
    let ctx = tempfile::tempdir().unwrap();
    let file = ctx.path().join("build.toml");
    std::fs::write(
        &file,
        format!("# syntax={wasm}\n[[stage]]\nbase = \"busybox\"\nrun = [\"true\"]\n"),
    )
    .unwrap();
    let out = wb.ok(&[
        "plan",
        "-f",
        file.to_str().unwrap(),
        ctx.path().to_str().unwrap(),
    ]);
    let plan: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(
        plan["frontend"]
            .as_str()
            .unwrap()
            .contains("wbuild_toml_frontend.wasm"),
        "{plan}"
    );

    // The compiled frontend is now in the cache, and listed with its own name.
    let list = wb.ok(&["frontends"]);
    let row = list
        .lines()
        .find(|l| l.starts_with("toml-spec "))
        .unwrap_or_else(|| panic!("toml-spec is not listed:\n{list}"));
    assert!(row.contains(wasm), "{row}");
    assert!(row.contains("0.1.0") && row.contains("sha256:"), "{row}");
}

#[test]
fn spec_errors_point_at_their_place() {
    let wasm = toml_frontend().to_str().unwrap();
    let wb = common::Wbuild::new();
    let ctx = tempfile::tempdir().unwrap();
    for (spec, at, message) in [
        (
            "[[stage]]\nbase = \"busybox\"\nbogus = 1\n",
            "3:1",
            "unknown field `bogus`",
        ),
        (
            "[[stage]]\nbase = \"busybox\"\nworkdir = \"app\"\n",
            "3:11",
            "workdir must be an absolute path",
        ),
        (
            "target = \"nope\"\n[[stage]]\nbase = \"busybox\"\n",
            "1:10",
            "target stage \"nope\" is not in the spec",
        ),
        (
            "[[stage]]\nbase = \n",
            "2:8",
            "string values must be quoted",
        ),
    ] {
        let file = ctx.path().join("bad.toml");
        std::fs::write(&file, spec).unwrap();
        let f = file.to_str().unwrap();
        let err = wb.fails(&[
            "plan",
            "--frontend",
            wasm,
            "-f",
            f,
            ctx.path().to_str().unwrap(),
        ]);
        assert!(err.contains(&format!("{f}:{at}: ")), "{spec:?}: {err}");
        assert!(err.contains(message), "{spec:?}: {err}");
    }
}

#[test]
fn the_toml_frontend_builds_the_example_spec() {
    let wasm = toml_frontend().to_str().unwrap().to_string();
    let Some(wb) = common::with_busybox() else {
        return;
    };
    let out = tempfile::tempdir().unwrap();
    let dest = format!("type=local,dest={}", out.path().display());
    let log = wb.build(&[
        "build",
        "--frontend",
        &wasm,
        "-t",
        "toml-app",
        "-o",
        &dest,
        "-f",
        &spec(),
        &example_dir(),
    ]);
    let read = |p: &str| std::fs::read_to_string(out.path().join(p)).unwrap();
    assert_eq!(
        read("app/greeting.txt"),
        "hello from toml\nthe message file from the build context\n"
    );
    assert_eq!(read("app/lines.txt").trim(), "2");
    // The build stage's files stay there; the unused stage never ran.
    assert!(!out.path().join("src").exists(), "{log}");
    assert!(!out.path().join("never").exists(), "{log}");
    assert!(wb.ok(&["images"]).contains("toml-app"));
}
