//! The frontend of `examples/python-frontend`, written in Python and made into a component by
//! componentize-py from the WIT files alone (`build.sh`: a virtualenv, componentize-py 0.25
//! from PyPI), then used through the real binary with `--frontend frontend.wasm`: it plans,
//! lists in `wbuild frontends`, reports errors at their place in the Buildfile, and builds the
//! example's image (as root with runc). In CI a missing python3 or a failing build.sh fails.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// Runs build.sh once per test process; returns the component's path, or None (the test is
/// reported as skipped; a failure under CI) when python3 is missing.
fn python_frontend() -> Option<&'static PathBuf> {
    static WASM: OnceLock<Option<PathBuf>> = OnceLock::new();
    let wasm = WASM.get_or_init(|| {
        let found = Command::new("python3")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            return None;
        }
        let dir = common::repo().join("examples/python-frontend");
        let out = Command::new(dir.join("build.sh"))
            .output()
            .expect("running examples/python-frontend/build.sh");
        assert!(
            out.status.success(),
            "examples/python-frontend/build.sh failed (Debian needs the python3-venv package):\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let wasm = dir.join("frontend.wasm");
        assert!(wasm.exists(), "{} is missing", wasm.display());
        Some(wasm)
    });
    if wasm.is_none() {
        common::skip("python3 is not installed");
    }
    wasm.as_ref()
}

/// One store for every test of this file, with the 18 MB component already compiled into its
/// cache (once, not by each test at the same time).
fn store() -> &'static common::Wbuild {
    static WB: OnceLock<common::Wbuild> = OnceLock::new();
    WB.get_or_init(|| {
        let wb = common::Wbuild::new();
        let wasm = python_frontend().expect("callers check python_frontend() first");
        let wasm = wasm.to_str().unwrap();
        wb.ok(&[
            "plan",
            "--frontend",
            wasm,
            "-f",
            &buildfile(),
            &example_dir(),
        ]);
        wb
    })
}

fn example_dir() -> String {
    common::repo()
        .join("examples/python-frontend/example")
        .display()
        .to_string()
}

fn buildfile() -> String {
    format!("{}/Buildfile", example_dir())
}

#[test]
fn the_python_frontend_plans_the_example() {
    let Some(wasm) = python_frontend() else {
        return;
    };
    let wasm = wasm.to_str().unwrap();
    let wb = store();
    let out = wb.ok(&[
        "plan",
        "--frontend",
        wasm,
        "-f",
        &buildfile(),
        &example_dir(),
    ]);
    let plan: serde_json::Value = serde_json::from_str(&out).unwrap();
    // `build app` in the Buildfile: the unused stage is skipped, the build stage is needed.
    let stages = plan["stages"].as_array().unwrap();
    let names: Vec<&str> = stages.iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["build", "app"], "{plan}");
    assert_eq!(plan["skipped"][0]["name"], "unused", "{plan}");
    assert_eq!(stages[1]["depends_on"], serde_json::json!([0]));
    let ops = &stages[0]["ops"];
    assert_eq!(ops[0]["op"]["Env"][0]["key"], "MODE");
    assert_eq!(
        ops[3]["op"]["Run"]["args"],
        serde_json::json!(["/bin/sh", "-c", "echo 'hello from python!' > greeting.txt"])
    );
    // A build arg overrides a param; --target overrides `build`.
    let out = wb.ok(&[
        "plan",
        "--frontend",
        wasm,
        "--build-arg",
        "GREETING=hi",
        "--target",
        "build",
        "-f",
        &buildfile(),
        &example_dir(),
    ]);
    let plan: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(plan["stages"].as_array().unwrap().len(), 1, "{plan}");
    assert_eq!(
        plan["stages"][0]["ops"][3]["op"]["Run"]["args"][2],
        "echo 'hi!' > greeting.txt"
    );
    // Listed under its own name once used.
    let list = wb.ok(&["frontends"]);
    let row = list
        .lines()
        .find(|l| l.starts_with("buildfile-py "))
        .unwrap_or_else(|| panic!("buildfile-py is not listed:\n{list}"));
    assert!(row.contains("0.1.0") && row.contains("sha256:"), "{row}");
}

#[test]
fn buildfile_errors_point_at_their_place() {
    let Some(wasm) = python_frontend() else {
        return;
    };
    let wasm = wasm.to_str().unwrap();
    let wb = store();
    let ctx = tempfile::tempdir().unwrap();
    for (text, at, message) in [
        (
            "stage a from \"busybox\":\n    run \"echo {NOPE}\"\n",
            "2:15",
            "unknown parameter `NOPE`",
        ),
        (
            "stage a from \"busybox\":\n    workdir \"app\"\n",
            "2:13",
            "workdir must be an absolute path",
        ),
        ("stage a from b:\n", "1:14", "no earlier stage is named `b`"),
        (
            "stage a from \"busybox\":\n    copy \"x\" \"/y\"\n",
            "2:14",
            "expected `to DEST`",
        ),
        ("    run \"x\"\n", "1:5", "belongs to a stage"),
        (
            "stage a from \"busybox\":\nbuild nope\n",
            "2:7",
            "there is no stage named `nope`",
        ),
        ("param X = \"unterminated\n", "1:11", "unterminated string"),
    ] {
        let file = ctx.path().join("Buildfile");
        std::fs::write(&file, text).unwrap();
        let f = file.to_str().unwrap();
        let err = wb.fails(&[
            "plan",
            "--frontend",
            wasm,
            "-f",
            f,
            ctx.path().to_str().unwrap(),
        ]);
        assert!(err.contains(&format!("{f}:{at}: ")), "{text:?}: {err}");
        assert!(err.contains(message), "{text:?}: {err}");
    }
}

#[test]
fn the_python_frontend_builds_the_example() {
    let Some(wasm) = python_frontend() else {
        return;
    };
    let wasm = wasm.to_str().unwrap().to_string();
    if !common::have_tool("runc") {
        return;
    }
    let wb = store();
    let dir = tempfile::tempdir().unwrap();
    let Some(tar) = common::busybox_oci_tar(dir.path()) else {
        return;
    };
    wb.ok(&["import", tar.to_str().unwrap(), "-t", "busybox"]);
    let out = dir.path().join("fs");
    let iid = dir.path().join("iid");
    let log = wb.build(&[
        "build",
        "--frontend",
        &wasm,
        "-t",
        "python-app",
        "--iidfile",
        iid.to_str().unwrap(),
        "-o",
        &format!("type=local,dest={}", out.display()),
        "-f",
        &buildfile(),
        &example_dir(),
    ]);
    let read = |p: &str| std::fs::read_to_string(out.join(p)).unwrap();
    assert_eq!(
        read("app/greeting.txt"),
        "hello from python!\nthe message file from the build context\n"
    );
    assert_eq!(read("app/lines.txt").trim(), "2");
    assert!(!out.join("src").exists(), "{log}");
    assert!(!out.join("never").exists(), "{log}");
    // The config ops reached the image.
    let id = std::fs::read_to_string(&iid).unwrap();
    let hex = id.trim().strip_prefix("sha256:").unwrap();
    let config = std::fs::read_to_string(wb.root.path().join("blobs/sha256").join(hex)).unwrap();
    let config: serde_json::Value = serde_json::from_str(&config).unwrap();
    assert_eq!(
        config["config"]["Labels"]["org.example.frontend"],
        "buildfile-py"
    );
    assert!(
        config["config"]["ExposedPorts"]["8080/tcp"].is_object(),
        "{config}"
    );
    assert_eq!(
        config["config"]["Cmd"],
        serde_json::json!(["cat", "/app/greeting.txt"])
    );
    assert_eq!(config["config"]["WorkingDir"], "/app");
    assert!(wb.ok(&["images"]).contains("python-app"));
}
