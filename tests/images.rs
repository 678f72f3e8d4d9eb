//! End-to-end: `wbuild import`, `images`, `rm`, `prune`, `du` on a real OCI archive made with
//! umoci, and base-image configs from the store reaching the frontend (`$PATH` expansion).

mod common;

use serde_json::Value;

#[test]
fn import_list_plan_remove_prune() {
    let wb = common::Wbuild::new();
    let dir = tempfile::tempdir().unwrap();
    let Some(archive) = common::busybox_oci_tar(dir.path()) else {
        return;
    };
    let archive = archive.to_str().unwrap();

    let out = wb.ok(&["import", archive, "-t", "busybox:test"]);
    assert!(out.contains("busybox:test sha256:"), "{out}");
    // The archive's own ref name is kept too.
    assert!(out.contains("bb:latest sha256:"), "{out}");
    let listing = wb.ok(&["images"]);
    assert!(listing.contains("busybox:test"), "{listing}");
    assert!(
        listing.contains("MiB") || listing.contains("KiB"),
        "{listing}"
    );

    // The frontend sees the base image's ENV and WORKDIR.
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM busybox:test AS app\nENV P=$PATH:/x\nWORKDIR rel\n\
         FROM not-in-store AS other\nENV Q=${PATH:-unset}\n",
    )
    .unwrap();
    let c = ctx.path().to_str().unwrap();
    let plan: Value = serde_json::from_str(&wb.ok(&["plan", "--target", "app", c])).unwrap();
    let ops = &plan["stages"][0]["ops"];
    assert_eq!(
        ops[0]["op"]["Env"][0]["value"], "/usr/local/bin:/bin:/x",
        "{plan}"
    );
    assert_eq!(ops[1]["op"]["Workdir"], "/home/rel", "{plan}");
    let plan: Value = serde_json::from_str(&wb.ok(&["plan", c])).unwrap();
    assert_eq!(
        plan["stages"][0]["ops"][0]["op"]["Env"][0]["value"],
        "unset"
    );

    // Removing one name keeps the blobs for the other; removing both lets prune free them.
    wb.ok(&["rm", "busybox:test"]);
    let freed = wb.ok(&["prune"]);
    assert!(freed.starts_with("freed 0 B"), "{freed}");
    wb.ok(&["rm", "bb"]);
    let freed = wb.ok(&["prune"]);
    assert!(!freed.starts_with("freed 0 B"), "{freed}");
    let du = wb.ok(&["du"]);
    assert!(
        du.lines()
            .any(|l| l.starts_with("blobs") && l.contains(" 0 ")),
        "{du}"
    );
    let err = wb.fails(&["rm", "busybox:test"]);
    assert!(err.contains("no image named busybox:test"), "{err}");
}

#[test]
fn import_rejects_a_corrupted_archive_and_keeps_nothing() {
    let wb = common::Wbuild::new();
    let dir = tempfile::tempdir().unwrap();
    let Some(archive) = common::busybox_oci_tar(dir.path()) else {
        return;
    };
    // Flip bytes inside the (largest) layer blob of the layout, then re-tar it.
    let layout = dir.path().join("L/blobs/sha256");
    let layer = std::fs::read_dir(&layout)
        .unwrap()
        .map(|e| e.unwrap().path())
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    let mut bytes = std::fs::read(&layer).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&layer, bytes).unwrap();
    let bad = dir.path().join("bad.tar");
    let status = std::process::Command::new("tar")
        .arg("-C")
        .arg(dir.path().join("L"))
        .arg("-cf")
        .arg(&bad)
        .arg(".")
        .status()
        .unwrap();
    assert!(status.success());
    let _ = archive;

    let err = wb.fails(&["import", bad.to_str().unwrap(), "-t", "x:1"]);
    assert!(err.contains("digest") || err.contains("mismatch"), "{err}");
    assert!(!wb.ok(&["images"]).contains("x:1"));
    let du = wb.ok(&["du"]);
    assert!(
        du.lines()
            .any(|l| l.starts_with("temp") && l.contains(" 0 ")),
        "{du}"
    );
}
