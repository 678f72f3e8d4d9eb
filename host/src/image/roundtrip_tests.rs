//! End-to-end tests of the image module: build an image into a [`DirBlobs`], export it in every
//! format, import it back, check determinism and corruption handling, and validate the outputs
//! with skopeo and umoci when installed (always in CI).

use super::import::ImportedImage;
use super::manifest::image_manifest;
use super::manifest::{self, MEDIA_CONFIG};
use super::*;
use std::io::Write;
use std::process::Command;

/// A layer tar with the given files, compressed and stored; returns (blob digest, size, diff_id).
fn make_layer(blobs: &DirBlobs, files: &[(&str, &[u8])], c: Compression) -> (String, u64, String) {
    let mut b = tar::Builder::new(Vec::new());
    for (path, data) in files {
        let mut h = tar::Header::new_ustar();
        h.set_path(path).unwrap();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_cksum();
        b.append(&h, *data).unwrap();
    }
    let raw = b.into_inner().unwrap();
    let diff_id = sha256_digest(&raw);
    let blob = match c {
        Compression::None => raw,
        Compression::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(&raw).unwrap();
            e.finish().unwrap()
        }
        Compression::Zstd => zstd::encode_all(&raw[..], 3).unwrap(),
    };
    let d = blobs.put_bytes(&blob).unwrap();
    (d, blob.len() as u64, diff_id)
}

/// A two-layer image in `blobs`; returns the manifest digest.
fn make_image(blobs: &DirBlobs, c2: Compression) -> String {
    let (d1, s1, id1) = make_layer(blobs, &[("etc/hello", b"hello\n")], Compression::Gzip);
    let (d2, s2, id2) = make_layer(blobs, &[("app/run.sh", b"#!/bin/sh\necho hi\n")], c2);
    let mut b = ConfigBuilder::scratch("linux", "amd64");
    b.created(Some(config::rfc3339(1_700_000_000)));
    b.layer("COPY hello /etc/hello", &id1);
    b.env("APP", "1").config_only("ENV APP=1");
    b.layer("RUN /bin/sh -c make", &id2);
    b.entrypoint(Some(vec!["/app/run.sh".into()]))
        .config_only("ENTRYPOINT [\"/app/run.sh\"]");
    let (_, cbytes, cdigest) = b.build();
    assert_eq!(blobs.put_bytes(&cbytes).unwrap(), cdigest);
    let layers = vec![
        manifest::descriptor(Compression::Gzip.layer_media_type(), &d1, s1).unwrap(),
        manifest::descriptor(c2.layer_media_type(), &d2, s2).unwrap(),
    ];
    let cfg = manifest::descriptor(MEDIA_CONFIG, &cdigest, cbytes.len() as u64).unwrap();
    let (_, mbytes, mdesc) = image_manifest(cfg, layers).unwrap();
    assert_eq!(
        blobs.put_bytes(&mbytes).unwrap(),
        mdesc.digest().to_string()
    );
    mdesc.digest().to_string()
}

fn opts() -> ExportOptions {
    ExportOptions {
        names: vec!["app:1".into()],
        mtime: 0,
    }
}

fn check_same(src: &DirBlobs, dst: &DirBlobs, img: &ImportedImage) {
    let cfg = img.manifest.config().digest().to_string();
    assert_eq!(
        std::fs::read(src.path_of(&cfg).unwrap()).unwrap(),
        std::fs::read(dst.path_of(&cfg).unwrap()).unwrap()
    );
    for l in img.manifest.layers() {
        let d = l.digest().to_string();
        assert_eq!(
            std::fs::read(src.path_of(&d).unwrap()).unwrap(),
            std::fs::read(dst.path_of(&d).unwrap()).unwrap()
        );
    }
    assert!(dst.path_of(&img.manifest_digest).unwrap().is_file());
    assert_eq!(
        img.config.config.entrypoint,
        Some(vec!["/app/run.sh".to_string()])
    );
    assert_eq!(img.config.rootfs.diff_ids.len(), 2);
}

#[test]
fn roundtrip_oci_tar_and_dir() {
    let t = tempfile::tempdir().unwrap();
    let src = DirBlobs::new(t.path().join("src"));
    let m = make_image(&src, Compression::Zstd);
    let tarf = t.path().join("img.tar");
    export_oci_tar(&src, &m, &opts(), &tarf).unwrap();
    let dst = DirBlobs::new(t.path().join("dst"));
    let imgs = import_path(&tarf, &dst).unwrap();
    assert_eq!(imgs.len(), 1);
    assert_eq!(imgs[0].manifest_digest, m);
    assert_eq!(imgs[0].names, vec!["docker.io/library/app:1"]);
    check_same(&src, &dst, &imgs[0]);

    let dir = t.path().join("layout");
    export_oci_dir(&src, &m, &opts(), &dir).unwrap();
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    assert_eq!(
        index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"],
        "1"
    );
    // Re-exporting over an existing layout replaces it.
    export_oci_dir(&src, &m, &opts(), &dir).unwrap();
    let dst2 = DirBlobs::new(t.path().join("dst2"));
    let imgs = import_path(&dir, &dst2).unwrap();
    assert_eq!(imgs[0].manifest_digest, m);
    check_same(&src, &dst2, &imgs[0]);
    // A non-layout directory is never replaced.
    let other = t.path().join("other");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("precious"), b"x").unwrap();
    assert!(export_oci_dir(&src, &m, &opts(), &other).is_err());
    assert!(other.join("precious").exists());
}

#[test]
fn roundtrip_docker_tar() {
    let t = tempfile::tempdir().unwrap();
    let src = DirBlobs::new(t.path().join("src"));
    let m = make_image(&src, Compression::Zstd);
    let tarf = t.path().join("img.tar");
    export_docker_tar(&src, &m, &opts(), &tarf).unwrap();

    // manifest.json has the shape docker load expects.
    let mut a = tar::Archive::new(std::fs::File::open(&tarf).unwrap());
    let mut names = Vec::new();
    let mut mj = None;
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let p = e.path().unwrap().to_string_lossy().into_owned();
        assert_eq!(e.header().mtime().unwrap(), 0);
        assert_eq!(e.header().uid().unwrap(), 0);
        if p == "manifest.json" {
            let mut s = String::new();
            e.read_to_string(&mut s).unwrap();
            mj = Some(s);
        }
        names.push(p);
    }
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "tar entries are sorted");
    let mj: serde_json::Value = serde_json::from_str(&mj.unwrap()).unwrap();
    assert_eq!(mj[0]["RepoTags"][0], "app:1");
    assert!(
        mj[0]["Config"]
            .as_str()
            .unwrap()
            .starts_with("blobs/sha256/")
    );
    assert_eq!(mj[0]["Layers"].as_array().unwrap().len(), 2);

    let dst = DirBlobs::new(t.path().join("dst"));
    let imgs = import_path(&tarf, &dst).unwrap();
    assert_eq!(imgs.len(), 1);
    assert_eq!(imgs[0].names, vec!["app:1"]);
    // The regenerated OCI manifest is identical: same config, layer bytes and media types.
    assert_eq!(imgs[0].manifest_digest, m);
    check_same(&src, &dst, &imgs[0]);
}

#[test]
fn export_is_deterministic_and_atomic() {
    let t = tempfile::tempdir().unwrap();
    let src = DirBlobs::new(t.path().join("src"));
    let m = make_image(&src, Compression::None);
    for (i, docker) in [false, true].into_iter().enumerate() {
        let o = ExportOptions {
            names: vec!["app:1".into(), "app:latest".into()],
            mtime: 1_700_000_000,
        };
        let (a, b) = (
            t.path().join(format!("a{i}.tar")),
            t.path().join(format!("b{i}.tar")),
        );
        for p in [&a, &b] {
            if docker {
                export_docker_tar(&src, &m, &o, p)
            } else {
                export_oci_tar(&src, &m, &o, p)
            }
            .unwrap();
        }
        assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
        let imgs = import_path(&a, &DirBlobs::new(t.path().join(format!("imp{i}")))).unwrap();
        assert_eq!(imgs.len(), 1);
        let want: Vec<&str> = if docker {
            vec!["app:1", "app:latest"]
        } else {
            vec!["docker.io/library/app:1", "docker.io/library/app:latest"]
        };
        assert_eq!(imgs[0].names, want);
    }
    // Corrupt a layer in the source store: export fails and leaves nothing behind.
    let mf: oci_spec::image::ImageManifest =
        serde_json::from_slice(&std::fs::read(src.path_of(&m).unwrap()).unwrap()).unwrap();
    let layer = src.path_of(mf.layers()[1].digest().as_ref()).unwrap();
    let mut bytes = std::fs::read(&layer).unwrap();
    bytes[600] ^= 1;
    std::fs::write(&layer, bytes).unwrap();
    let out = t.path().join("out").join("bad.tar");
    std::fs::create_dir(out.parent().unwrap()).unwrap();
    let err = export_docker_tar(&src, &m, &opts(), &out).unwrap_err();
    assert!(err.to_string().contains("corrupt"), "{err}");
    assert_eq!(
        std::fs::read_dir(out.parent().unwrap()).unwrap().count(),
        0,
        "no partial output"
    );
}

/// Flip a byte inside the data of tar entry `path` in `file`.
fn corrupt_entry(file: &std::path::Path, path: &str) {
    let mut a = tar::Archive::new(std::fs::File::open(file).unwrap());
    let pos = a
        .entries()
        .unwrap()
        .map(|e| e.unwrap())
        .find(|e| e.path().unwrap().to_string_lossy() == path)
        .map(|e| e.raw_file_position() + e.size() / 2)
        .unwrap();
    let mut bytes = std::fs::read(file).unwrap();
    bytes[pos as usize] ^= 0xff;
    std::fs::write(file, bytes).unwrap();
}

#[test]
fn corrupted_archive_blobs_are_rejected() {
    let t = tempfile::tempdir().unwrap();
    let src = DirBlobs::new(t.path().join("src"));
    let m = make_image(&src, Compression::None);
    let mf: oci_spec::image::ImageManifest =
        serde_json::from_slice(&std::fs::read(src.path_of(&m).unwrap()).unwrap()).unwrap();
    for l in 0..2 {
        let hex = mf.layers()[l].digest().digest().to_string();
        for docker in [false, true] {
            let f = t.path().join(format!("img{l}{docker}.tar"));
            if docker {
                export_docker_tar(&src, &m, &opts(), &f)
            } else {
                export_oci_tar(&src, &m, &opts(), &f)
            }
            .unwrap();
            corrupt_entry(&f, &format!("blobs/sha256/{hex}"));
            let dst = DirBlobs::new(t.path().join(format!("dst{l}{docker}")));
            let err = import_path(&f, &dst).unwrap_err().to_string();
            assert!(err.contains("mismatch") || err.contains("corrupt"), "{err}");
        }
    }
    // A corrupted config is caught too.
    let f = t.path().join("cfg.tar");
    export_oci_tar(&src, &m, &opts(), &f).unwrap();
    corrupt_entry(
        &f,
        &format!("blobs/sha256/{}", mf.config().digest().digest()),
    );
    let err = import_path(&f, &DirBlobs::new(t.path().join("d")))
        .unwrap_err()
        .to_string();
    assert!(err.contains("corrupt"), "{err}");
}

/// A hand-made legacy `docker save` archive (`<id>/layer.tar`, `<hex>.json`, symlinked layer).
fn legacy_archive(path: &std::path::Path, manifest_layers: &[&str], diff_ids: Option<Vec<String>>) {
    let mut raw = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_path("hello").unwrap();
    h.set_size(3);
    h.set_mode(0o644);
    h.set_cksum();
    raw.append(&h, &b"hi\n"[..]).unwrap();
    let layer = raw.into_inner().unwrap();
    let diff_id = sha256_digest(&layer);
    let diff_ids = diff_ids.unwrap_or_else(|| vec![diff_id.clone(), diff_id.clone()]);
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Env": ["PATH=/bin"], "Cmd": ["sh"], "Labels": null, "OnBuild": null},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .unwrap();
    let config_name = format!("{}.json", &sha256_digest(&config)[7..]);
    let mj = serde_json::to_vec(&serde_json::json!([{
        "Config": config_name, "RepoTags": ["busybox:test"], "Layers": manifest_layers,
    }]))
    .unwrap();
    let mut b = tar::Builder::new(std::fs::File::create(path).unwrap());
    let mut add = |p: &str, data: &[u8]| {
        let mut h = tar::Header::new_ustar();
        h.set_path(p).unwrap();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append(&h, data).unwrap();
    };
    add("aaa/layer.tar", &layer);
    add(&config_name, &config);
    add("manifest.json", &mj);
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_path("bbb/layer.tar").unwrap();
    h.set_link_name("../aaa/layer.tar").unwrap();
    h.set_size(0);
    h.set_cksum();
    b.append(&h, io::empty()).unwrap();
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_path("evil/layer.tar").unwrap();
    h.set_link_name("../../etc/passwd").unwrap();
    h.set_size(0);
    h.set_cksum();
    b.append(&h, io::empty()).unwrap();
    b.finish().unwrap();
}

#[test]
fn legacy_docker_archive() {
    let t = tempfile::tempdir().unwrap();
    let f = t.path().join("legacy.tar");
    // The archive contains a symlink leading outside: indexing refuses it.
    legacy_archive(&f, &["aaa/layer.tar", "bbb/layer.tar"], None);
    let err = import_path(&f, &DirBlobs::new(t.path().join("d0")))
        .unwrap_err()
        .to_string();
    assert!(err.contains("outside the archive"), "{err}");
}

#[test]
fn legacy_docker_archive_imports_and_rejects_tricks() {
    let t = tempfile::tempdir().unwrap();
    let mk = |name: &str, layers: &[&str], diff_ids: Option<Vec<String>>| {
        let f = t.path().join(name);
        legacy_archive_no_evil(&f, layers, diff_ids);
        f
    };
    let f = mk("ok.tar", &["aaa/layer.tar", "bbb/layer.tar"], None);
    let dst = DirBlobs::new(t.path().join("d1"));
    let imgs = import_path(&f, &dst).unwrap();
    assert_eq!(imgs[0].names, vec!["busybox:test"]);
    assert_eq!(imgs[0].config.config.cmd, Some(vec!["sh".to_string()]));
    let l = &imgs[0].manifest.layers()[0];
    assert_eq!(l.media_type().to_string(), manifest::MEDIA_LAYER_TAR);
    assert_eq!(l.digest().to_string(), imgs[0].config.rootfs.diff_ids[0]);

    let f = mk("escape.tar", &["../../etc/passwd", "aaa/layer.tar"], None);
    let err = import_path(&f, &DirBlobs::new(t.path().join("d2")))
        .unwrap_err()
        .to_string();
    assert!(err.contains("outside the archive"), "{err}");

    let f = mk("abs.tar", &["/etc/passwd", "aaa/layer.tar"], None);
    let err = import_path(&f, &DirBlobs::new(t.path().join("d3")))
        .unwrap_err()
        .to_string();
    assert!(err.contains("absolute path"), "{err}");

    let f = mk("missing.tar", &["zzz/layer.tar", "aaa/layer.tar"], None);
    let err = import_path(&f, &DirBlobs::new(t.path().join("d4")))
        .unwrap_err()
        .to_string();
    assert!(err.contains("missing"), "{err}");

    let wrong = vec![sha256_digest(b"x"), sha256_digest(b"y")];
    let f = mk(
        "diffid.tar",
        &["aaa/layer.tar", "bbb/layer.tar"],
        Some(wrong),
    );
    let err = import_path(&f, &DirBlobs::new(t.path().join("d5")))
        .unwrap_err()
        .to_string();
    assert!(err.contains("diff_id"), "{err}");
}

/// `legacy_archive` without the escaping symlink entry.
fn legacy_archive_no_evil(path: &std::path::Path, layers: &[&str], diff_ids: Option<Vec<String>>) {
    legacy_archive(path, layers, diff_ids);
    let mut out = tar::Builder::new(Vec::new());
    let mut a = tar::Archive::new(std::fs::File::open(path).unwrap());
    for e in a.entries().unwrap() {
        let e = e.unwrap();
        if e.path().unwrap().starts_with("evil") {
            continue;
        }
        let h = e.header().clone();
        out.append(&h, e).unwrap();
    }
    std::fs::write(path, out.into_inner().unwrap()).unwrap();
}

/// Runs `tool args`, or returns false (tool missing outside CI). In CI a missing tool fails.
fn run_tool(tool: &str, args: &[&str]) -> bool {
    match Command::new(tool).args(args).output() {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            crate::test_skip::skip(&format!("{tool} is not installed (apt-get install {tool})"));
            false
        }
        Err(e) => panic!("running {tool}: {e}"),
        Ok(o) => {
            assert!(
                o.status.success(),
                "{tool} {args:?} failed: {}\n{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
            true
        }
    }
}

#[test]
fn skopeo_accepts_exports() {
    let t = tempfile::tempdir().unwrap();
    let src = DirBlobs::new(t.path().join("src"));
    let m = make_image(&src, Compression::None);
    let oci = t.path().join("oci.tar");
    let docker = t.path().join("docker.tar");
    export_oci_tar(&src, &m, &opts(), &oci).unwrap();
    export_docker_tar(&src, &m, &opts(), &docker).unwrap();
    let oci_ref = format!("oci-archive:{}", oci.display());
    let docker_ref = format!("docker-archive:{}", docker.display());
    if !run_tool("skopeo", &["inspect", &oci_ref]) {
        return;
    }
    run_tool("skopeo", &["inspect", &docker_ref]);
    run_tool(
        "skopeo",
        &["inspect", "--config", &format!("{docker_ref}:app:1")],
    );
    // Copying reads and verifies every blob.
    let d1 = format!("dir:{}", t.path().join("c1").display());
    let d2 = format!("oci:{}:x", t.path().join("c2").display());
    run_tool("skopeo", &["copy", "--quiet", &oci_ref, &d1]);
    run_tool("skopeo", &["copy", "--quiet", &docker_ref, &d2]);
}

#[test]
fn umoci_accepts_oci_layout() {
    let t = tempfile::tempdir().unwrap();
    let src = DirBlobs::new(t.path().join("src"));
    let m = make_image(&src, Compression::None);
    let dir = t.path().join("layout");
    export_oci_dir(&src, &m, &opts(), &dir).unwrap();
    let image = format!("{}:1", dir.display());
    if !run_tool("umoci", &["stat", "--image", &image]) {
        return;
    }
    let bundle = t.path().join("bundle");
    run_tool(
        "umoci",
        &[
            "unpack",
            "--rootless",
            "--image",
            &image,
            bundle.to_str().unwrap(),
        ],
    );
    assert_eq!(
        std::fs::read(bundle.join("rootfs/etc/hello")).unwrap(),
        b"hello\n"
    );
    assert!(bundle.join("rootfs/app/run.sh").is_file());
}
