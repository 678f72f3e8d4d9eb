//! Tests of the snapshot module (run as root: they make device nodes, trusted xattrs and an
//! overlay mount).

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use super::compress::{Format, sniff};
use super::pgzip::ParGzEncoder;
use super::*;

fn c(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

fn lchown(p: &Path, uid: u32, gid: u32) {
    assert_eq!(
        unsafe { libc::lchown(c(p).as_ptr(), uid, gid) },
        0,
        "lchown {}",
        p.display()
    );
}

fn mknod(p: &Path, kind: u32, major: u32, minor: u32) {
    let r = unsafe { libc::mknod(c(p).as_ptr(), kind | 0o644, libc::makedev(major, minor)) };
    assert_eq!(
        r,
        0,
        "mknod {}: {}",
        p.display(),
        std::io::Error::last_os_error()
    );
}

fn set_mtime(p: &Path, secs: i64) {
    let ts = libc::timespec {
        tv_sec: secs,
        tv_nsec: 0,
    };
    let r = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c(p).as_ptr(),
            [ts, ts].as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    assert_eq!(r, 0);
}

fn chmod(p: &Path, mode: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

/// Everything we promise to preserve about a tree, keyed by relative path.
#[derive(Debug, PartialEq, Eq)]
struct Desc {
    kind: &'static str,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: Option<i64>,
    content: Vec<u8>,
    rdev: u64,
    xattrs: Vec<(String, Vec<u8>)>,
    /// First path (in sorted order) sharing this inode, for hard links.
    link_group: Option<PathBuf>,
}

fn describe(root: &Path) -> BTreeMap<PathBuf, Desc> {
    fn walk(
        root: &Path,
        dir: &Path,
        out: &mut BTreeMap<PathBuf, Desc>,
        inodes: &mut BTreeMap<u64, PathBuf>,
    ) {
        let mut names: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        names.sort();
        for p in names {
            let m = fs::symlink_metadata(&p).unwrap();
            let ft = m.file_type();
            let rel = p.strip_prefix(root).unwrap().to_path_buf();
            let (kind, content) = if ft.is_dir() {
                ("dir", vec![])
            } else if ft.is_file() {
                ("file", fs::read(&p).unwrap())
            } else if ft.is_symlink() {
                (
                    "symlink",
                    fs::read_link(&p).unwrap().as_os_str().as_bytes().to_vec(),
                )
            } else if ft.is_char_device() {
                ("char", vec![])
            } else if ft.is_block_device() {
                ("block", vec![])
            } else if ft.is_fifo() {
                ("fifo", vec![])
            } else {
                ("other", vec![])
            };
            let link_group = (!ft.is_dir() && m.nlink() > 1)
                .then(|| inodes.entry(m.ino()).or_insert_with(|| rel.clone()).clone());
            out.insert(
                rel,
                Desc {
                    kind,
                    mode: m.mode() & 0o7777,
                    uid: m.uid(),
                    gid: m.gid(),
                    mtime: Some(m.mtime()),
                    content,
                    rdev: m.rdev(),
                    xattrs: sys::list_xattrs(&p).unwrap(),
                    link_group,
                },
            );
            if ft.is_dir() {
                walk(root, &p, out, inodes);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out, &mut BTreeMap::new());
    out
}

/// A tree with every kind of entry we handle.
fn build_tree(root: &Path) {
    fs::create_dir_all(root.join("etc/sub")).unwrap();
    fs::write(root.join("etc/hello.txt"), b"hello world\n").unwrap();
    fs::write(root.join("etc/sub/data.bin"), vec![7u8; 100_000]).unwrap();
    let bin = root.join("suid-bin");
    fs::write(&bin, b"#!/bin/sh\n").unwrap();
    lchown(&bin, 1000, 1001);
    chmod(&bin, 0o4755);
    let cap = root.join("capped");
    fs::write(&cap, b"cap").unwrap();
    // vfs_cap_data v2, CAP_NET_BIND_SERVICE permitted, effective.
    let capv: [u8; 20] = [0, 0, 0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    sys::set_xattr(&cap, "security.capability", &capv).unwrap();
    sys::set_xattr(&cap, "user.note", b"kept").unwrap();
    sys::set_xattr(&cap, "trusted.overlay.origin", b"dropped").unwrap();
    sys::set_xattr(&root.join("etc"), "trusted.something", b"dirattr").unwrap();
    std::os::unix::fs::symlink("etc/hello.txt", root.join("rel-link")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", root.join("abs-link")).unwrap();
    fs::hard_link(root.join("etc/hello.txt"), root.join("hardlink")).unwrap();
    mknod(&root.join("fifo"), libc::S_IFIFO, 0, 0);
    mknod(&root.join("null"), libc::S_IFCHR, 1, 3);
    mknod(&root.join("blk"), libc::S_IFBLK, 7, 200);
    let long_dir = root.join("d".repeat(120));
    fs::create_dir(&long_dir).unwrap();
    fs::write(long_dir.join("f".repeat(150)), b"long").unwrap();
    std::os::unix::fs::symlink("t".repeat(200), root.join("long-target")).unwrap();
    chmod(&root.join("etc/sub"), 0o750);
    lchown(&root.join("etc/sub"), 5, 6);
    lchown(&root.join("rel-link"), 7, 8);
    // Stable mtimes, children before parents.
    for (i, p) in [
        "etc/sub/data.bin",
        "etc/sub",
        "etc/hello.txt",
        "etc",
        "suid-bin",
        "capped",
        "rel-link",
        "abs-link",
        "fifo",
        "null",
        "blk",
        "long-target",
    ]
    .iter()
    .enumerate()
    {
        set_mtime(&root.join(p), 1_600_000_000 + i as i64);
    }
    set_mtime(&long_dir.join("f".repeat(150)), 1_000);
    set_mtime(&long_dir, 2_000);
}

fn diff_bytes(dir: &Path, opts: &DiffOptions) -> Vec<u8> {
    let mut out = Vec::new();
    diff_upper(dir, &mut out, opts).unwrap();
    out
}

/// (path, entry type, mtime, uname, gname) of each tar entry.
fn list_tar(bytes: &[u8]) -> Vec<(String, tar::EntryType, u64)> {
    let mut a = tar::Archive::new(bytes);
    a.entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let h = e.header();
            assert_eq!(h.username_bytes().unwrap_or_default(), b"");
            assert_eq!(h.groupname_bytes().unwrap_or_default(), b"");
            let gnu = h.as_gnu().unwrap();
            assert_eq!(gnu.atime, [0; 12]);
            assert_eq!(gnu.ctime, [0; 12]);
            (
                e.path().unwrap().to_string_lossy().into_owned(),
                h.entry_type(),
                h.mtime().unwrap(),
            )
        })
        .collect()
}

#[test]
fn round_trip_preserves_everything() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    build_tree(&src);
    let tar = diff_bytes(&src, &DiffOptions::default());
    let names: Vec<_> = list_tar(&tar).into_iter().map(|e| (e.0, e.1)).collect();
    assert!(
        names.contains(&("hardlink".into(), tar::EntryType::Link)),
        "{names:?}"
    );
    assert!(
        !tar.windows(16).any(|w| w == b"trusted.overlay."),
        "overlay xattr leaked"
    );

    let dst = t.path().join("dst");
    fs::create_dir(&dst).unwrap();
    apply_layer(&tar[..], &dst).unwrap();

    let mut want = describe(&src);
    for d in want.values_mut() {
        d.xattrs.retain(|(k, _)| !k.starts_with("trusted.overlay."));
    }
    let got = describe(&dst);
    assert_eq!(
        want.keys().collect::<Vec<_>>(),
        got.keys().collect::<Vec<_>>()
    );
    for (k, w) in &want {
        assert_eq!(w, &got[k], "{}", k.display());
    }
    assert!(
        got[Path::new("capped")]
            .xattrs
            .iter()
            .any(|(k, _)| k == "security.capability")
    );
    assert_eq!(got[Path::new("suid-bin")].mode, 0o4755);
}

#[test]
fn copy_tree_preserves_everything() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    build_tree(&src);
    let dst = t.path().join("dst");
    copy_tree(&src, &dst).unwrap();
    let (want, got) = (describe(&src), describe(&dst));
    assert_eq!(
        want.keys().collect::<Vec<_>>(),
        got.keys().collect::<Vec<_>>()
    );
    for (k, w) in &want {
        assert_eq!(w, &got[k], "{}", k.display());
    }
}

#[test]
fn diff_is_reproducible_and_clamps_mtimes() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    build_tree(&src);
    set_mtime(&src.join("etc/hello.txt"), 2_000_000_000);
    let a = diff_bytes(&src, &DiffOptions::default());
    // Touch atimes/ctimes: must not matter.
    fs::read(src.join("etc/sub/data.bin")).unwrap();
    chmod(&src.join("fifo"), 0o644);
    let b = diff_bytes(&src, &DiffOptions::default());
    assert_eq!(a, b);

    let epoch = 1_600_000_003;
    let opts = DiffOptions {
        source_date_epoch: Some(epoch),
        ..Default::default()
    };
    let clamped = diff_bytes(&src, &opts);
    assert_eq!(clamped, diff_bytes(&src, &opts));
    let entries = list_tar(&clamped);
    assert!(entries.iter().all(|e| e.2 <= epoch as u64));
    let m = |name: &str| {
        entries
            .iter()
            .find(|e| e.0.trim_end_matches('/') == name)
            .unwrap()
            .2
    };
    assert_eq!(m("etc/hello.txt"), epoch as u64);
    assert_eq!(m("etc/sub/data.bin"), 1_600_000_000); // older: kept
    assert_eq!(
        m(&format!("{}/{}", "d".repeat(120), "f".repeat(150))),
        1_000
    );
    // Sorted, depth-first, dirs before their contents.
    let paths: Vec<_> = entries.iter().map(|e| e.0.clone()).collect();
    let pos = |p: &str| {
        paths
            .iter()
            .position(|x| x.trim_end_matches('/') == p)
            .unwrap()
    };
    assert!(pos("abs-link") < pos("blk"));
    assert!(pos("etc") < pos("etc/hello.txt"));
    assert!(pos("etc/hello.txt") < pos("etc/sub"));
    assert!(pos("etc/sub") < pos("etc/sub/data.bin"));
}

struct Mount(PathBuf);
impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn overlay_upper_whiteouts_and_opaque_dirs() {
    let t = tempfile::tempdir().unwrap();
    let [lower, upper, work, merged] =
        ["lower", "upper", "work", "merged"].map(|n| t.path().join(n));
    for d in [&lower, &upper, &work, &merged] {
        fs::create_dir(d).unwrap();
    }
    fs::write(lower.join("gone"), b"x").unwrap();
    fs::write(lower.join("kept"), b"k").unwrap();
    fs::create_dir_all(lower.join("opq/deep")).unwrap();
    fs::write(lower.join("opq/old"), b"o").unwrap();
    fs::write(lower.join("opq/deep/older"), b"o").unwrap();
    fs::create_dir(lower.join("gonedir")).unwrap();
    fs::write(lower.join("gonedir/f"), b"f").unwrap();

    let opts = format!(
        "lowerdir={},upperdir={},workdir={},index=off,redirect_dir=off,metacopy=off",
        lower.display(),
        upper.display(),
        work.display()
    );
    let st = Command::new("mount")
        .args(["-t", "overlay", "overlay", "-o", &opts])
        .arg(&merged)
        .status()
        .unwrap();
    assert!(st.success(), "mounting overlayfs (tests must run as root)");
    let guard = Mount(merged.clone());
    fs::remove_file(merged.join("gone")).unwrap();
    fs::remove_dir_all(merged.join("gonedir")).unwrap();
    fs::remove_dir_all(merged.join("opq")).unwrap();
    fs::create_dir(merged.join("opq")).unwrap();
    fs::write(merged.join("opq/new"), b"n").unwrap();
    fs::write(merged.join("added"), b"a").unwrap();
    let want = describe(&merged);
    drop(guard);

    let mut tar = Vec::new();
    let stats = diff_upper(&upper, &mut tar, &DiffOptions::default()).unwrap();
    assert_eq!(stats.whiteouts, 2);
    assert_eq!(stats.opaque_dirs, 1);
    let names: Vec<_> = list_tar(&tar).into_iter().map(|e| e.0).collect();
    assert_eq!(
        names,
        [
            "added",
            ".wh.gone",
            ".wh.gonedir",
            "opq",
            "opq/.wh..wh..opq",
            "opq/new"
        ]
    );
    assert!(!tar.windows(16).any(|w| w == b"trusted.overlay."));

    // lower + layer == merged view.
    let dst = t.path().join("dst");
    copy_tree(&lower, &dst).unwrap();
    apply_layer(&tar[..], &dst).unwrap();
    let mut got = describe(&dst);
    let mut want = want;
    for m in [&mut got, &mut want] {
        for d in m.values_mut() {
            if d.kind == "dir" {
                d.mtime = None; // overlay copy-up touches parent dirs
            }
        }
    }
    assert_eq!(want, got);
}

#[test]
fn opaque_keeps_entries_of_the_same_layer() {
    let t = tempfile::tempdir().unwrap();
    let dst = t.path().join("dst");
    fs::create_dir_all(dst.join("d/sub")).unwrap();
    fs::write(dst.join("d/old"), b"o").unwrap();
    fs::write(dst.join("d/-dash"), b"lower").unwrap();
    fs::write(dst.join("f"), b"f").unwrap();
    fs::create_dir_all(dst.join("g/h")).unwrap();

    let mut b = tar::Builder::new(Vec::new());
    let mut add = |path: &str, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        b.append_data(&mut h, path, data).unwrap();
    };
    add("d/-dash", b"upper"); // sorts before the opaque marker
    add("d/.wh..wh..opq", b"");
    add("d/z", b"z");
    add(".wh.f", b"");
    add(".wh.g", b"");
    add(".wh.missing", b"");
    add("nodir/.wh.x", b"");
    let tar = b.into_inner().unwrap();
    apply_layer(&tar[..], &dst).unwrap();
    let mut names: Vec<_> = describe(&dst).into_keys().collect();
    names.sort();
    assert_eq!(
        names,
        [Path::new("d"), Path::new("d/-dash"), Path::new("d/z")]
    );
    assert_eq!(fs::read(dst.join("d/-dash")).unwrap(), b"upper");
}

/// A tar entry with a raw name (the tar crate refuses `..` in `set_path`).
fn raw_entry(
    b: &mut tar::Builder<Vec<u8>>,
    ty: tar::EntryType,
    name: &str,
    link: &str,
    data: &[u8],
) {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(ty);
    h.set_size(data.len() as u64);
    h.set_mode(0o755);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
    h.set_cksum();
    b.append(&h, data).unwrap();
}

#[test]
fn hostile_tars_stay_inside_root() {
    use tar::EntryType::{Directory as D, Link as L, Regular as F, Symlink as S};
    type Case = &'static [(tar::EntryType, &'static str, &'static str)];
    let cases: &[(&str, Case, &[&str])] = &[
        (
            "dotdot",
            &[
                (F, "../evil", ""),
                (F, "../../sentinel/evil", ""),
                (F, "a/../../evil2", ""),
            ],
            &["evil", "sentinel/evil", "evil2"],
        ),
        (
            "absolute",
            &[(F, "/abs", ""), (F, "/sentinel/secret", "")],
            &["abs", "sentinel/secret"],
        ),
        (
            "symlink-to-root",
            &[(S, "a", "/"), (F, "a/etc/passwd", "")],
            &["etc/passwd"],
        ),
        // A dangling in-root target is not created through the link: an error, nothing written.
        (
            "symlink-dotdot",
            &[(S, "b", "../../sentinel"), (F, "b/secret", "")],
            &[],
        ),
        (
            "symlink-dotdot-existing",
            &[
                (D, "sentinel", ""),
                (S, "b", "../../sentinel"),
                (F, "b/secret", ""),
            ],
            &["sentinel/secret"],
        ),
        (
            "symlink-chain",
            &[
                (S, "c1", "c2"),
                (S, "c2", "c3/../.."),
                (D, "c3", ""),
                (F, "c1/pwned", ""),
            ],
            &["pwned"],
        ),
        (
            "abs-chain",
            &[
                (S, "x", "/y"),
                (S, "y", "/../../sentinel"),
                (F, "x/secret", ""),
            ],
            &[],
        ),
        (
            "abs-chain-existing",
            &[
                (D, "sentinel", ""),
                (S, "x", "/y"),
                (S, "y", "/../../sentinel"),
                (F, "x/secret", ""),
            ],
            &["sentinel/secret"],
        ),
        (
            "overwrite-symlink",
            &[(S, "p", "../sentinel/secret"), (F, "p", "")],
            &["p"],
        ),
        ("hardlink-dotdot", &[(L, "h", "../../sentinel/secret")], &[]),
        (
            "hardlink-via-symlink",
            &[(S, "s", "../sentinel"), (L, "h", "s/secret")],
            &[],
        ),
        (
            "whiteout-out",
            &[
                (F, "../sentinel/.wh.secret", ""),
                (S, "w", ".."),
                (F, "w/.wh.sentinel", ""),
            ],
            &[],
        ),
        (
            "opaque-out",
            &[(S, "o", "/.."), (F, "o/.wh..wh..opq", "")],
            &[],
        ),
        (
            "dir-over-symlink",
            &[(S, "l", "/../sentinel"), (D, "l", ""), (F, "l/f", "")],
            &["l/f"],
        ),
    ];
    for (label, entries, inside) in cases {
        let t = tempfile::tempdir().unwrap();
        let sentinel = t.path().join("sentinel");
        fs::create_dir(&sentinel).unwrap();
        fs::write(sentinel.join("secret"), b"secret").unwrap();
        let dst = t.path().join("dst");
        fs::create_dir(&dst).unwrap();
        let before = describe(t.path());

        let mut b = tar::Builder::new(Vec::new());
        for (ty, name, link) in entries.iter() {
            let data: &[u8] = if *ty == F && !name.contains(".wh.") {
                b"PWNED"
            } else {
                b""
            };
            raw_entry(&mut b, *ty, name, link, data);
        }
        let tar = b.into_inner().unwrap();
        let res = apply_layer(&tar[..], &dst);

        let mut after = describe(t.path());
        after.retain(|k, _| !k.starts_with("dst"));
        let mut before = before;
        before.retain(|k, _| !k.starts_with("dst"));
        assert_eq!(
            before, after,
            "case {label} wrote outside the root ({res:?})"
        );
        for p in inside.iter() {
            assert_eq!(
                fs::read(dst.join(p)).ok().as_deref(),
                Some(&b"PWNED"[..]),
                "{label}: {p}"
            );
        }
        if label.starts_with("hardlink") || *label == "symlink-dotdot" || *label == "abs-chain" {
            assert!(res.is_err(), "{label}: a missing in-root target must fail");
        } else {
            res.unwrap();
        }
    }
}

fn sha(b: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(b)))
}

#[test]
fn layer_writer_digests_match() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    build_tree(&src);
    let tar = diff_bytes(&src, &DiffOptions::default());
    for comp in [
        Compression::Gzip { level: 6 },
        Compression::Zstd { level: 3 },
        Compression::None,
    ] {
        let mut w = LayerWriter::new(Vec::new(), comp).unwrap();
        // Stream it through the diff directly, the way callers will.
        diff_upper(&src, &mut w, &DiffOptions::default()).unwrap();
        let (d, blob) = w.finish().unwrap();
        assert_eq!(d.diff_id, sha(&tar), "{comp:?}");
        assert_eq!(d.digest, sha(&blob), "{comp:?}");
        assert_eq!(d.size, blob.len() as u64);
        assert_eq!(d.uncompressed_size, tar.len() as u64);
        let tool = match comp {
            Compression::Gzip { .. } => Some("gzip"),
            Compression::Zstd { .. } => Some("zstd"),
            Compression::None => None,
        };
        if let Some(tool) = tool {
            let path = t.path().join("blob");
            fs::write(&path, &blob).unwrap();
            let out = Command::new(tool)
                .args(["-d", "-c"])
                .arg(&path)
                .output()
                .unwrap();
            assert!(out.status.success(), "{tool} -d failed");
            assert_eq!(out.stdout, tar, "{tool} -d output");
            assert!(blob.len() < tar.len());
        } else {
            assert_eq!(blob, tar);
        }
        let mut back = Vec::new();
        decompress(&blob[..])
            .unwrap()
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, tar);
    }
    // Gzip output itself is reproducible.
    let gz = |data: &[u8]| {
        let mut w = LayerWriter::new(Vec::new(), Compression::Gzip { level: 6 }).unwrap();
        w.write_all(data).unwrap();
        w.finish().unwrap()
    };
    assert_eq!(gz(&tar), gz(&tar));
}

/// Mixed content: runs of text and of pseudo-random bytes, `n` bytes in all.
fn mixed_bytes(n: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..n)
        .map(|i| {
            if (i / 50_000) % 2 == 0 {
                b"layer text, compressible; "[i % 26]
            } else {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            }
        })
        .collect()
}

#[test]
fn parallel_gzip_is_one_member_and_independent_of_threads() {
    use super::pgzip::CHUNK;
    let t = tempfile::tempdir().unwrap();
    for len in [0, 1000, CHUNK, 2 * CHUNK, 3 * CHUNK + CHUNK / 2 + 7] {
        let data = mixed_bytes(len);
        let gz = |threads: usize, piece: usize| {
            let mut w = ParGzEncoder::with_threads(Vec::new(), 6, threads).unwrap();
            for p in data.chunks(piece.max(1)) {
                w.write_all(p).unwrap();
            }
            w.finish().unwrap()
        };
        let one = gz(1, data.len());
        // The same bytes whatever the threads and however the caller writes.
        for (threads, piece) in [(2, 4096), (3, 7777), (8, CHUNK + 1)] {
            assert_eq!(gz(threads, piece), one, "len {len}, {threads} threads");
        }
        // A single gzip member: a reader that stops after the first member reads it all.
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&one[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, data, "len {len}");
        let path = t.path().join("blob.gz");
        fs::write(&path, &one).unwrap();
        let out = Command::new("gzip")
            .args(["-d", "-c"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "gzip -d: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.stdout, data, "gzip -d output, len {len}");
        if len > CHUNK {
            assert!(
                one.len() < data.len() * 3 / 4,
                "compresses: {} of {len}",
                one.len()
            );
        }
    }
}

#[test]
fn parallel_gzip_stores_random_chunks_and_deflates_the_rest() {
    use super::pgzip::CHUNK;
    // The pseudo-random runs of mixed_bytes (every other 50,000 bytes).
    let random: Vec<u8> = mixed_bytes(8 * CHUNK)
        .chunks(50_000)
        .skip(1)
        .step_by(2)
        .flatten()
        .copied()
        .take(2 * CHUNK)
        .collect();
    assert_eq!(random.len(), 2 * CHUNK);
    let text: Vec<u8> = b"compressible text "
        .iter()
        .cycle()
        .take(2 * CHUNK)
        .copied()
        .collect();
    let gz = |data: &[u8], threads: usize| {
        let mut w = ParGzEncoder::with_threads(Vec::new(), 6, threads).unwrap();
        w.write_all(data).unwrap();
        w.finish().unwrap()
    };
    // Random chunks are stored: a few bytes of framing per 64 KiB, never a deflate's output.
    let both = [random.clone(), text.clone()].concat();
    let out = gz(&both, 2);
    assert_eq!(out, gz(&both, 1));
    // The probe sends random chunks to stored blocks (a copy) and the rest to deflate.
    assert!(super::pgzip::incompressible(&random[..CHUNK]));
    assert!(!super::pgzip::incompressible(&text[..CHUNK]));
    assert!(!super::pgzip::incompressible(&mixed_bytes(CHUNK)));
    assert!(
        !super::pgzip::incompressible(&random[..1000]),
        "too short to judge"
    );
    // The deflate stream opens with a stored block (BTYPE 00, LEN, NLEN) holding the input.
    assert_eq!(out[10] & 0b111, 0, "first block is stored, not final");
    let len = u16::from_le_bytes([out[11], out[12]]) as usize;
    let nlen = u16::from_le_bytes([out[13], out[14]]) as usize;
    assert_eq!(len ^ nlen, 0xffff);
    assert!(len > 0);
    assert_eq!(
        &out[15..15 + len],
        &random[..len],
        "random bytes stored verbatim"
    );
    assert!(
        out.len() < random.len() + random.len() / 100 + 4096,
        "text part deflated: {}",
        out.len()
    );
    let mut back = Vec::new();
    flate2::read::GzDecoder::new(&out[..])
        .read_to_end(&mut back)
        .unwrap();
    assert_eq!(back, both);
    assert!(gz(&text, 2).len() < text.len() / 50);
}

#[test]
fn decompress_sniffs_formats() {
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&data).unwrap();
    let gz = gz.finish().unwrap();
    let zst = zstd::encode_all(&data[..], 3).unwrap();
    let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::default());
    bz.write_all(&data).unwrap();
    let bz = bz.finish().unwrap();
    let mut xz = liblzma::write::XzEncoder::new(Vec::new(), 6);
    xz.write_all(&data).unwrap();
    let xz = xz.finish().unwrap();
    for (blob, fmt) in [
        (&gz, Format::Gzip),
        (&zst, Format::Zstd),
        (&bz, Format::Bzip2),
        (&xz, Format::Xz),
        (&data, Format::Plain),
    ] {
        assert_eq!(sniff(blob), fmt);
        let mut out = Vec::new();
        decompress(&blob[..])
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, data, "{fmt:?}");
    }
    // Short inputs and empty input.
    let mut out = Vec::new();
    decompress(&b"ab"[..])
        .unwrap()
        .read_to_end(&mut out)
        .unwrap();
    assert_eq!(out, b"ab");
    out.clear();
    decompress(&b""[..]).unwrap().read_to_end(&mut out).unwrap();
    assert!(out.is_empty());
}

/// A layer tar of `(path, content)` regular files and `(path, None)` directories.
fn layer_tar(entries: &[(&str, Option<&[u8]>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_600_000_000);
        match data {
            Some(d) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o644);
                h.set_size(d.len() as u64);
                b.append_data(&mut h, path, *d).unwrap();
            }
            None => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_size(0);
                b.append_data(&mut h, path, &[][..]).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

/// A stack of overlay layer directories reads exactly like the same layers applied one over
/// the other: whiteouts, opaque directories, a full base tree.
#[test]
fn overlay_stack_reads_like_applied_layers() {
    if unsafe { libc::geteuid() } != 0 {
        crate::test_skip::skip("needs root for mknod and overlay mounts");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let base = t.path().join("base-src");
    fs::create_dir(&base).unwrap();
    build_tree(&base);
    let base_tar = diff_bytes(&base, &DiffOptions::default());
    let second = layer_tar(&[
        ("etc", None),
        ("etc/.wh..wh..opq", Some(b"")),
        ("etc/new.txt", Some(b"new")),
        (".wh.suid-bin", Some(b"")),
        (".wh.fifo", Some(b"")),
        ("opt", None),
        ("opt/tool", Some(b"tool")),
    ]);
    let third = layer_tar(&[("opt/.wh.tool", Some(b"")), ("etc/third", Some(b"3"))]);

    let flat = t.path().join("flat");
    fs::create_dir(&flat).unwrap();
    for l in [&base_tar, &second, &third] {
        apply_layer(&l[..], &flat).unwrap();
    }

    let snapshots = t.path().join("snapshots");
    let tmp = t.path().join("tmp");
    fs::create_dir_all(&tmp).unwrap();
    let stacks = Stacks::new(&snapshots, &tmp).unwrap();
    let mut lowers = Vec::new();
    for l in [&base_tar, &second, &third] {
        let bytes = l.clone();
        let dir = stacks
            .layer(&sha(l), move || Ok(Box::new(std::io::Cursor::new(bytes))))
            .unwrap();
        lowers.insert(0, dir);
    }
    // The whiteout of the second layer is an overlay whiteout in its own directory.
    let second_dir = fs::canonicalize(&lowers[1]).unwrap();
    assert!(
        fs::symlink_metadata(second_dir.join("suid-bin"))
            .unwrap()
            .file_type()
            .is_char_device()
    );
    let key = crate::store::Digest::of_bytes(b"stack");
    let view = stacks.view(&key, &lowers).unwrap();
    // Two things legitimately differ, as with BuildKit's overlayfs snapshotter: a directory an
    // upper layer declares again has only that layer's xattrs (`etc`), and a file whose other
    // hard link a whiteout hid still counts both links.
    let normalize = |mut d: BTreeMap<PathBuf, Desc>| {
        let mut members: BTreeMap<PathBuf, usize> = BTreeMap::new();
        for desc in d.values() {
            if let Some(g) = &desc.link_group {
                *members.entry(g.clone()).or_default() += 1;
            }
        }
        for desc in d.values_mut() {
            if desc.link_group.as_ref().is_some_and(|g| members[g] == 1) {
                desc.link_group = None;
            }
        }
        d.get_mut(Path::new("etc")).unwrap().xattrs.clear();
        d
    };
    assert_eq!(normalize(describe(&view)), normalize(describe(&flat)));
    assert_eq!(fs::read(view.join("etc/new.txt")).unwrap(), b"new");
    assert!(!view.join("etc/hello.txt").exists());
    // The same key is the same mount; dropping the stacks unmounts it.
    assert_eq!(stacks.view(&key, &lowers).unwrap(), view);
    drop(stacks);
    assert!(!view.exists(), "view left behind");
}

#[test]
fn a_layer_whose_content_does_not_match_its_diff_id_is_not_kept() {
    let t = tempfile::tempdir().unwrap();
    let snapshots = t.path().join("snapshots");
    let tmp = t.path().join("tmp");
    fs::create_dir_all(&tmp).unwrap();
    let stacks = Stacks::new(&snapshots, &tmp).unwrap();
    let tar = layer_tar(&[("f", Some(b"content"))]);
    let wrong = sha(b"something else");
    let err = stacks
        .layer(&wrong, move || Ok(Box::new(std::io::Cursor::new(tar))))
        .unwrap_err();
    assert!(format!("{err:#}").contains("not to its diff_id"), "{err:#}");
    let left: Vec<_> = fs::read_dir(snapshots.join("layers")).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
}
