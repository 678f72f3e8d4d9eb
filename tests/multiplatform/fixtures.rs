//! Fixtures of tests/multiplatform.rs: the busybox image index made from
//! Debian's busybox-static of both architectures, the arm64 emulator's registration in
//! binfmt_misc, and readers of what skopeo, OCI layouts and `--progress json` show.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::common::{self, Wbuild};
use serde_json::Value;

pub use super::common::registry::{Registry, http};

pub fn sh(script: &str, dir: &Path) -> std::process::Output {
    Command::new("sh")
        .args(["-ec", script])
        .current_dir(dir)
        .output()
        .unwrap()
}

pub fn sh_ok(script: &str, dir: &Path) -> String {
    let out = sh(script, dir);
    assert!(
        out.status.success(),
        "{script}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub const BINFMT: &str = "/proc/sys/fs/binfmt_misc";

/// Registers Debian's qemu-aarch64 in binfmt_misc (mounting it when needed), so arm64 RUN
/// steps run here. False (after printing why) outside CI when the tools are missing.
pub fn arm64_emulator() -> bool {
    if std::env::consts::ARCH != "x86_64" {
        common::skip("these tests emulate arm64 on an amd64 machine");
        return false;
    }
    if !common::have_tool("update-binfmts") || !Path::new("/usr/libexec/qemu-binfmt").exists() {
        common::skip("qemu-user-static and binfmt-support are not installed");
        return false;
    }
    let tmp = tempfile::tempdir().unwrap();
    if !Path::new(BINFMT).join("status").exists() {
        sh_ok(
            &format!("mount -t binfmt_misc binfmt_misc {BINFMT}"),
            tmp.path(),
        );
    }
    // Exits 0 (with a warning) when it is already enabled.
    sh_ok("update-binfmts --enable qemu-aarch64", tmp.path());
    let entry = std::fs::read_to_string(Path::new(BINFMT).join("qemu-aarch64")).unwrap();
    assert!(entry.starts_with("enabled"), "qemu-aarch64: {entry}");
    true
}

/// Debian's busybox-static for `arch`, unpacked: its `bin/busybox`. None outside CI when
/// apt-get cannot download it (the architecture not added with dpkg --add-architecture).
pub fn busybox_binary(dir: &Path, arch: &str) -> Option<PathBuf> {
    let out = sh(
        &format!(
            "apt-get download busybox-static:{arch} && dpkg-deb -x busybox-static_*_{arch}.deb x-{arch}"
        ),
        dir,
    );
    if !out.status.success() {
        common::skip(&format!(
            "apt-get download busybox-static:{arch} failed (dpkg --add-architecture {arch} && \
             apt-get update): {}",
            String::from_utf8_lossy(&out.stderr)
        ));
        return None;
    }
    Some(dir.join(format!("x-{arch}/bin/busybox")))
}

/// `REG/busybox:multi`, an image index of busybox for linux/amd64 and linux/arm64 (one image
/// per architecture made with umoci, pushed by tag, and the index PUT by hand); returns its
/// name and digest.
pub fn busybox_index(reg: &Registry) -> Option<(String, String)> {
    if !common::have_tool("umoci") || !common::have_tool("busybox") {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let wb = Wbuild::new();
    let mut entries = Vec::new();
    for arch in ["amd64", "arm64"] {
        let bin = busybox_binary(dir.path(), arch)?;
        let l = format!("L-{arch}");
        sh_ok(
            &format!(
                "umoci init --layout {l}
                 umoci new --image {l}:bb
                 umoci unpack --image {l}:bb B-{arch}
                 mkdir -p B-{arch}/rootfs/bin B-{arch}/rootfs/etc B-{arch}/rootfs/tmp
                 cp {bin} B-{arch}/rootfs/bin/busybox
                 for a in $(busybox --list); do
                   [ \"$a\" = busybox ] || ln -s busybox B-{arch}/rootfs/bin/$a
                 done
                 echo 'root:x:0:0:root:/root:/bin/sh' > B-{arch}/rootfs/etc/passwd
                 umoci repack --image {l}:bb B-{arch}
                 umoci config --image {l}:bb --architecture {arch} --os linux \
                   --config.env PATH=/bin --config.cmd /bin/sh
                 tar -C {l} -cf bb-{arch}.tar .",
                bin = bin.display()
            ),
            dir.path(),
        );
        let name = reg.name(&format!("busybox:{arch}"));
        let tar = dir.path().join(format!("bb-{arch}.tar"));
        wb.ok(&["import", tar.to_str().unwrap(), "-t", &name]);
        let pinned = wb.ok(&["push", &name]);
        let digest = pinned.trim().rsplit('@').next().unwrap().to_string();
        let size = store_blob(&wb, &digest).len();
        entries.push(format!(
            r#"{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{digest}","size":{size},"platform":{{"os":"linux","architecture":"{arch}"}}}}"#
        ));
    }
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{}]}}"#,
        entries.join(",")
    );
    let status = http(
        &reg.addr,
        "PUT",
        "/v2/busybox/manifests/multi",
        "application/vnd.oci.image.index.v1+json",
        index.as_bytes(),
    );
    assert_eq!(status, Some(201), "pushing the busybox index");
    let digest = format!("sha256:{}", sha256_hex(index.as_bytes()));
    Some((reg.name("busybox:multi"), digest))
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("b");
    std::fs::write(&f, bytes).unwrap();
    let out = sh_ok(&format!("sha256sum {}", f.display()), dir.path());
    out.split_whitespace().next().unwrap().to_string()
}

pub fn store_blob(wb: &Wbuild, digest: &str) -> Vec<u8> {
    let hex = digest.rsplit(':').next().unwrap();
    std::fs::read(wb.root.path().join("blobs/sha256").join(hex)).unwrap()
}

/// Everything a test of this file needs: the emulator, skopeo, runc, a registry with the
/// busybox index. None outside CI when a tool is missing.
pub fn setup() -> Option<(Registry, String, String)> {
    if !common::have_tool("runc") || !common::have_tool("skopeo") || !arm64_emulator() {
        return None;
    }
    let reg = Registry::start()?;
    let (base, digest) = busybox_index(&reg)?;
    Some((reg, base, digest))
}

pub fn skopeo_raw(reference: &str) -> Value {
    let out = sh_ok(
        &format!("skopeo inspect --tls-verify=false --raw docker://{reference}"),
        Path::new("/"),
    );
    serde_json::from_str(&out).unwrap()
}

/// The JSON file at `path` in an OCI layout directory's blobs.
pub fn layout_blob(layout: &Path, digest: &str) -> Vec<u8> {
    let hex = digest.strip_prefix("sha256:").unwrap();
    std::fs::read(layout.join("blobs/sha256").join(hex)).unwrap()
}

/// The events of `--progress json` output whose step contains `text`, by kind.
pub fn events(progress: &str, kind: &str, text: &str) -> usize {
    progress
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["event"] == kind && v["step"].as_str().is_some_and(|s| s.contains(text)))
        .count()
}
