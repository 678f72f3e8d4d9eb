//! Hardening: the store checker finds damage and leftovers, concurrent builds on one store,
//! builds killed at random points, hostile build content and hostile frontends, RUN resource
//! limits. Everything runs the real `wbuild` binary; the sandbox tests need root and runc.

mod common;

use std::path::PathBuf;

use common::Wbuild;

/// The manifest digest from a build's `built sha256:...` line.
fn built_digest(log: &str) -> String {
    log.lines()
        .find_map(|l| l.strip_prefix("built "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no `built` line in:\n{log}"))
        .to_string()
}

fn blob_path(wb: &Wbuild, digest: &str) -> PathBuf {
    let hex = digest.strip_prefix("sha256:").unwrap();
    wb.root.path().join("blobs/sha256").join(hex)
}

/// The layer digests of the manifest `digest` in `wb`'s store.
fn layers(wb: &Wbuild, digest: &str) -> Vec<String> {
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(blob_path(wb, digest)).unwrap()).unwrap();
    m["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect()
}

/// `wbuild check` (optionally `--repair`): (success, stdout + stderr).
fn check(wb: &Wbuild, repair: bool) -> (bool, String) {
    let mut args = vec!["check"];
    if repair {
        args.push("--repair");
    }
    let out = wb.run(&args);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn assert_clean(wb: &Wbuild) {
    let (ok, text) = check(wb, false);
    assert!(ok && text.contains("the store is sound"), "{text}");
}

/// A context whose Dockerfile copies two files onto scratch (no runc needed).
fn scratch_context() -> tempfile::TempDir {
    let ctx = common::context("FROM scratch\nCOPY a /a\nCOPY b /b\n");
    std::fs::write(ctx.path().join("a"), "first file\n").unwrap();
    std::fs::write(ctx.path().join("b"), "second file\n").unwrap();
    ctx
}

#[test]
fn check_reports_a_corrupt_layer_and_repair_drops_only_what_is_broken() {
    let wb = Wbuild::new();
    let ctx = scratch_context();
    let c = ctx.path().to_str().unwrap();
    let log = wb.build(&["build", "-t", "app", c]);
    assert_clean(&wb);
    let manifest = built_digest(&log);
    let layers = layers(&wb, &manifest);
    assert_eq!(layers.len(), 2);

    // Flip the content of the first layer behind the store's back.
    let victim = blob_path(&wb, &layers[0]);
    let mut bytes = std::fs::read(&victim).unwrap();
    bytes.push(b'!');
    std::fs::write(&victim, bytes).unwrap();

    let (ok, text) = check(&wb, false);
    assert!(!ok, "{text}");
    assert!(
        text.contains(&format!("problem: blob {}: corrupt", layers[0])),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "problem: image docker.io/library/app:latest: layer {} is corrupt",
            layers[0]
        )),
        "{text}"
    );
    assert!(
        text.contains("problem: cache entry sha256:") && text.contains("its layer"),
        "{text}"
    );
    assert!(!text.contains(&format!("blob {}", layers[1])), "{text}");

    // Repair removes the corrupt blob and the cache entry, keeps the intact layer, and still
    // reports the image (only a rebuild can bring its layer back).
    let (ok, text) = check(&wb, true);
    assert!(!ok, "{text}");
    assert!(
        text.contains(&format!("repair: removed corrupt blob {}", layers[0])),
        "{text}"
    );
    assert!(text.contains("repair: dropped cache entry"), "{text}");
    assert!(!victim.exists());
    assert!(blob_path(&wb, &layers[1]).exists());
    let after = text.split("after repair:").nth(1).unwrap();
    assert!(
        after.contains("problem: image docker.io/library/app:latest"),
        "{text}"
    );
    assert!(!after.contains("problem: cache entry"), "{text}");

    // The rebuild runs the step whose layer was lost, and the store is sound again.
    let log = wb.build(&["build", "-t", "app", c]);
    assert!(log.contains("(1 steps ran, 1 cached)"), "{log}");
    assert_clean(&wb);
}

#[test]
fn check_reports_a_deleted_layer_and_a_damaged_name() {
    let wb = Wbuild::new();
    let ctx = scratch_context();
    let log = wb.build(&["build", "-t", "app", ctx.path().to_str().unwrap()]);
    let layers = layers(&wb, &built_digest(&log));
    std::fs::remove_file(blob_path(&wb, &layers[1])).unwrap();
    let bad_name = wb.root.path().join("refs/garbage");
    std::fs::write(&bad_name, b"{not json").unwrap();

    let (ok, text) = check(&wb, false);
    assert!(!ok, "{text}");
    assert!(
        text.contains(&format!("layer {} is missing", layers[1])),
        "{text}"
    );
    assert!(
        text.contains(&format!("its layer {} is missing", layers[1])),
        "{text}"
    );
    assert!(
        text.contains("problem: name record") && text.contains("garbage"),
        "{text}"
    );
    assert!(text.contains("`wbuild check --repair`"), "{text}");

    let (_, text) = check(&wb, true);
    assert!(
        text.contains("repair: removed unreadable name record"),
        "{text}"
    );
    assert!(!bad_name.exists());
    assert!(
        blob_path(&wb, &layers[0]).exists(),
        "an intact layer was removed"
    );
}

#[test]
fn check_lists_leftovers_and_the_next_build_sweeps_them() {
    let wb = Wbuild::new();
    let ctx = scratch_context();
    let c = ctx.path().to_str().unwrap();
    wb.build(&["build", c]);
    let root = wb.root.path();
    std::fs::write(root.join("tmp/123-4-abc.tmp"), b"half a blob").unwrap();
    std::fs::create_dir_all(root.join("tmp/.run-XYZ/upper/etc")).unwrap();
    std::fs::create_dir_all(root.join("snapshots/.snapshot-ABC/bin")).unwrap();
    std::fs::write(root.join("cache/.hashmemo.1.2.0.tmp"), b"{").unwrap();

    let (ok, text) = check(&wb, false);
    assert!(!ok, "{text}");
    for what in [
        "leftover: temp",
        "123-4-abc.tmp",
        ".run-XYZ",
        "leftover: half-made snapshot",
        ".snapshot-ABC",
        ".hashmemo.1.2.0.tmp",
    ] {
        assert!(text.contains(what), "{what} not reported:\n{text}");
    }

    // The next build finds the store idle and removes them; the result is cached as before.
    let log = wb.build(&["build", c]);
    assert!(log.contains("(0 steps ran, 2 cached)"), "{log}");
    assert_clean(&wb);
}
