//! End-to-end builds as root with runc, on a busybox base made from Debian's busybox-static:
//! the multi-stage examples build to the expected filesystem and config, unused stages never
//! run, independent stages overlap, rebuilds are cached, a changed context file re-runs exactly
//! the steps after its COPY, whiteouts delete base files, failures point at the file and line.

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

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn named_stages_build_and_skip_the_unused_stage() {
    let Some(wb) = common::with_busybox() else {
        return;
    };
    let out = tempfile::tempdir().unwrap();
    let fs = out.path().join("fs");
    let dest = format!("type=local,dest={}", fs.display());
    let log = wb.build(&[
        "build",
        "-t",
        "app:1",
        "-o",
        &dest,
        &example("named-stages"),
    ]);
    assert_eq!(
        read(&fs.join("app/out.txt")),
        "hello from the build stage\n"
    );
    // The build stage's files stay in the build stage.
    assert!(!fs.join("out.txt").exists());
    assert!(!log.contains("this stage is skipped"), "{log}");
    assert!(wb.ok(&["images"]).contains("app:1"));

    // Nothing changed: every step comes from the cache.
    let log = wb.build(&["build", "-t", "app:1", &example("named-stages")]);
    assert!(log.contains("(0 steps ran"), "{log}");
}

#[test]
fn branch_by_arg_builds_the_chosen_branch() {
    let Some(wb) = common::with_busybox() else {
        return;
    };
    for (v, file) in [("1", "version1"), ("2", "version2")] {
        let out = tempfile::tempdir().unwrap();
        let dest = format!("type=local,dest={}", out.path().display());
        let arg = format!("BUILD_VERSION={v}");
        wb.build(&[
            "build",
            "--build-arg",
            &arg,
            "-o",
            &dest,
            &example("branch-by-arg"),
        ]);
        // The base image's WorkingDir is /home, so that is where `touch` writes.
        assert!(out.path().join("home").join(file).exists(), "{file}");
        let other = if v == "1" { "version2" } else { "version1" };
        assert!(!out.path().join("home").join(other).exists(), "{other}");
    }
}

#[test]
fn context_change_reruns_only_the_steps_after_its_copy() {
    let Some(wb) = common::with_busybox() else {
        return;
    };
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM busybox\nRUN echo one > /one\nCOPY input.txt /input.txt\nRUN cat /input.txt > /copy\n",
    )
    .unwrap();
    std::fs::write(ctx.path().join("input.txt"), "first\n").unwrap();
    let c = ctx.path().to_str().unwrap();
    let log = wb.build(&["build", c]);
    assert!(log.contains("(3 steps ran, 0 cached)"), "{log}");

    // Same size, same mtime, different content: the content decides.
    let input = ctx.path().join("input.txt");
    let mtime = std::fs::metadata(&input).unwrap().modified().unwrap();
    std::fs::write(&input, "other\n").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&input)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    let out = tempfile::tempdir().unwrap();
    let dest = format!("type=local,dest={}", out.path().display());
    let log = wb.build(&["build", "-o", &dest, c]);
    assert!(log.contains("(2 steps ran, 1 cached)"), "{log}");
    assert_eq!(read(&out.path().join("copy")), "other\n");
}

#[test]
fn whiteouts_delete_base_files_and_config_is_kept() {
    let Some(wb) = common::with_busybox() else {
        return;
    };
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM busybox\nENV GREETING=hi\nRUN rm /bin/vi && echo \"$GREETING\" > /g\n\
         WORKDIR /srv/app\nCMD [\"cat\", \"/g\"]\n",
    )
    .unwrap();
    let out = tempfile::tempdir().unwrap();
    let fs = out.path().join("fs");
    let oci = out.path().join("img.tar");
    let local = format!("type=local,dest={}", fs.display());
    let oci_out = format!("type=oci,dest={}", oci.display());
    wb.build(&[
        "build",
        "-o",
        &local,
        "-o",
        &oci_out,
        ctx.path().to_str().unwrap(),
    ]);
    assert!(!fs.join("bin/vi").exists() && fs.join("bin/sh").exists());
    assert_eq!(read(&fs.join("g")), "hi\n");
    assert!(fs.join("srv/app").is_dir(), "WORKDIR creates its directory");
    if common::have_tool("skopeo") {
        let out = std::process::Command::new("skopeo")
            .args(["inspect", "--config"])
            .arg(format!("oci-archive:{}", oci.display()))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let config: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(config["config"]["Cmd"], serde_json::json!(["cat", "/g"]));
        assert_eq!(config["config"]["WorkingDir"], "/srv/app");
        assert!(
            config["config"]["Env"]
                .as_array()
                .unwrap()
                .contains(&serde_json::json!("GREETING=hi"))
        );
    }
}

#[test]
fn independent_stages_run_at_the_same_time() {
    let Some(wb) = common::with_busybox() else {
        return;
    };
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM busybox AS a\nRUN sleep 2 && echo a > /a\n\
         FROM busybox AS b\nRUN sleep 2 && echo b > /b\n\
         FROM busybox\nCOPY --from=a /a /a\nCOPY --from=b /b /b\n",
    )
    .unwrap();
    let log = wb.build(&["build", "--jobs", "2", ctx.path().to_str().unwrap()]);
    // Both sleeps start before either finishes.
    let lines: Vec<&str> = log.lines().collect();
    let start = |s: &str| {
        lines
            .iter()
            .position(|l| l.starts_with(&format!("[{s} 1/1]")))
            .unwrap()
    };
    let first_done = lines.iter().position(|l| l.contains("DONE")).unwrap();
    assert!(start("a") < first_done && start("b") < first_done, "{log}");
}

#[test]
fn a_failing_run_shows_its_output_and_location() {
    let Some(wb) = common::with_busybox() else {
        return;
    };
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM busybox\nRUN echo about to fail && exit 7\n",
    )
    .unwrap();
    let err = wb.fails(&["build", ctx.path().to_str().unwrap()]);
    assert!(err.contains("about to fail"), "{err}");
    assert!(err.contains("Dockerfile:2"), "{err}");
    assert!(err.contains("exit 7") && err.contains("code 7"), "{err}");
}

#[test]
fn source_date_epoch_gives_the_same_image_cached_or_not() {
    let Some(wb) = common::with_busybox() else {
        return;
    };
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM busybox AS build\nRUN echo x > /x\n\
         FROM busybox\nCOPY --from=build /x /y\nCOPY Dockerfile /df\nWORKDIR /w\n",
    )
    .unwrap();
    let c = ctx.path().to_str().unwrap();
    let iid = |extra: &[&str]| {
        let file = ctx.path().join("iid");
        let f = file.to_str().unwrap();
        let mut args = vec!["build", "--iidfile", f];
        args.extend_from_slice(extra);
        args.push(c);
        let out = wb
            .cmd()
            .args(&args)
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        read(&file)
    };
    let first = iid(&[]);
    assert!(first.starts_with("sha256:"), "{first}");
    assert_eq!(iid(&[]), first, "a cached rebuild gives the same image");
    assert_eq!(
        iid(&["--no-cache"]),
        first,
        "a rebuild from scratch gives the same image"
    );
}
