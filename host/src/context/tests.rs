//! Tests of source resolution, confinement to the root, and content digests with the memo.

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;
use std::time::{Duration, SystemTime};

use super::hash::MemoStats;
use super::*;
use crate::sys::RACY_WINDOW;

fn write(root: &Path, rel: &str, data: &str) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, data).unwrap();
}

fn paths(m: &Match) -> Vec<&str> {
    m.entries.iter().map(|e| e.rel.as_str()).collect()
}

fn names(ms: &[Match]) -> Vec<&str> {
    ms.iter().map(|m| m.path.as_str()).collect()
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

fn set_mtime(path: &Path, t: SystemTime) {
    let f = fs::File::options().write(true).open(path).unwrap();
    f.set_modified(t).unwrap();
}

fn sample() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let r = d.path();
    write(r, "a.txt", "a");
    write(r, "b.txt", "b");
    write(r, "c.md", "c");
    write(r, "sub/d.txt", "d");
    write(r, "sub/deep/e.txt", "e");
    d
}

#[test]
fn literal_and_glob_sources() {
    let d = sample();
    let ctx = Context::open(d.path()).unwrap();
    let m = ctx.resolve_sources(&s(&["*.txt"]), &[]).unwrap();
    assert_eq!(names(&m), ["a.txt", "b.txt"]);
    assert_eq!(m[0].kind(), FileKind::File);
    assert_eq!(m[0].source, "*.txt");
    let m = ctx.resolve_sources(&s(&["[ab].t?t", "c.md"]), &[]).unwrap();
    assert_eq!(names(&m), ["a.txt", "b.txt", "c.md"]);
    // globs match per component: `*` does not cross `/`, `**` is no globstar here
    let m = ctx.resolve_sources(&s(&["s*/*.txt"]), &[]).unwrap();
    assert_eq!(names(&m), ["sub/d.txt"]);
    let m = ctx.resolve_sources(&s(&["**.txt"]), &[]).unwrap();
    assert_eq!(names(&m), ["a.txt", "b.txt"]);
    // a directory source stands for its contents
    let m = ctx.resolve_sources(&s(&["s?b"]), &[]).unwrap();
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].kind(), FileKind::Dir);
    assert_eq!(paths(&m[0]), ["", "d.txt", "deep", "deep/e.txt"]);
    // the root itself
    for src in [".", "/", "./", "sub/.."] {
        let m = ctx.resolve_sources(&s(&[src]), &[]).unwrap();
        assert_eq!(m[0].path, "", "{src}");
        assert!(paths(&m[0]).contains(&"sub/deep/e.txt"), "{src}");
    }
}

#[test]
fn not_found_names_the_source() {
    let d = sample();
    let ctx = Context::open(d.path()).unwrap();
    for src in ["missing.txt", "*.rs", "a.txt/x", "sub/nope/*"] {
        let err = ctx
            .resolve_sources(&s(&["a.txt", src]), &[])
            .unwrap_err()
            .to_string();
        assert_eq!(err, format!("COPY source not found: {src}"));
    }
}

#[test]
fn dockerignored_files_are_invisible() {
    let d = sample();
    write(d.path(), ".dockerignore", "*.md\nsub\n!sub/deep/e.txt\n");
    let ctx = Context::open(d.path()).unwrap();
    let err = ctx.resolve_sources(&s(&["c.md"]), &[]).unwrap_err();
    assert_eq!(err.to_string(), "COPY source not found: c.md");
    assert!(ctx.resolve_sources(&s(&["*.md"]), &[]).is_err());
    assert!(ctx.resolve_sources(&s(&["sub/d.txt"]), &[]).is_err());
    // the excluded dir still appears as the parent of its re-included child
    let m = ctx.resolve_sources(&s(&["sub"]), &[]).unwrap();
    assert_eq!(paths(&m[0]), ["", "deep", "deep/e.txt"]);
    let m = ctx.resolve_sources(&s(&["."]), &[]).unwrap();
    assert_eq!(
        paths(&m[0]),
        [
            "",
            ".dockerignore",
            "a.txt",
            "b.txt",
            "sub",
            "sub/deep",
            "sub/deep/e.txt"
        ]
    );
    // skipped entirely when nothing can be re-included
    write(d.path(), ".dockerignore", "sub\n.dockerignore\n");
    let ctx = Context::open(d.path()).unwrap();
    let m = ctx.resolve_sources(&s(&["."]), &[]).unwrap();
    assert_eq!(paths(&m[0]), ["", "a.txt", "b.txt", "c.md"]);
    assert!(ctx.resolve_sources(&s(&["sub"]), &[]).is_err());
    // but still readable by the builder
    assert_eq!(
        ctx.read_unfiltered(".dockerignore").unwrap().unwrap(),
        b"sub\n.dockerignore\n"
    );
    assert_eq!(ctx.read_unfiltered("nope").unwrap(), None);
}

#[test]
fn copy_excludes_apply() {
    let d = sample();
    let ctx = Context::open(d.path()).unwrap();
    let m = ctx
        .resolve_sources(&s(&["*"]), &s(&["*.md", "deep"]))
        .unwrap();
    assert_eq!(names(&m), ["a.txt", "b.txt", "sub"]);
    assert_eq!(paths(&m[2]), ["", "d.txt"]);
    let m = ctx
        .resolve_sources(&s(&["."]), &s(&["**/*.txt", "!sub/deep/e.txt"]))
        .unwrap();
    assert_eq!(
        paths(&m[0]),
        ["", "c.md", "sub", "sub/deep", "sub/deep/e.txt"]
    );
}

#[test]
fn dotdot_is_clamped_to_the_root() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), "ctx/etc/passwd", "in-context");
    let ctx = Context::open(&d.path().join("ctx")).unwrap();
    for src in [
        "../../etc/passwd",
        "/etc/passwd",
        "etc/../../etc/passwd",
        "../ctx/../etc/passwd",
    ] {
        let m = ctx.resolve_sources(&s(&[src]), &[]).unwrap();
        assert_eq!(m[0].path, "etc/passwd", "{src}");
        assert_eq!(m[0].resolved, "etc/passwd");
        assert_eq!(
            ctx.host_path(&m[0].entries[0]),
            ctx.root().join("etc/passwd")
        );
    }
    // a sibling of the root is never reachable
    write(d.path(), "secret", "outside");
    let err = ctx.resolve_sources(&s(&["../secret"]), &[]).unwrap_err();
    assert_eq!(err.to_string(), "COPY source not found: ../secret");
}

#[test]
fn symlinks_never_lead_out_of_the_root() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("ctx");
    fs::create_dir(&root).unwrap();
    write(d.path(), "outside.txt", "outside");
    symlink("/etc/passwd", root.join("abs")).unwrap();
    symlink("/etc", root.join("etcdir")).unwrap();
    symlink("../../../../../../etc/passwd", root.join("rel")).unwrap();
    symlink("../outside.txt", root.join("up")).unwrap();
    symlink(d.path(), root.join("parent")).unwrap();
    let ctx = Context::open(&root).unwrap();
    // the link itself is the source: it is copied as a symlink, its target never read
    for src in ["abs", "rel", "up"] {
        let m = ctx.resolve_sources(&s(&[src]), &[]).unwrap();
        assert_eq!(m[0].kind(), FileKind::Symlink, "{src}");
        assert_eq!(m[0].resolved, src);
    }
    // through a symlinked directory: resolved within the root, where nothing exists
    for src in [
        "etcdir/passwd",
        "parent/outside.txt",
        "parent/ctx/../outside.txt",
    ] {
        let err = ctx.resolve_sources(&s(&[src]), &[]).unwrap_err();
        assert_eq!(err.to_string(), format!("COPY source not found: {src}"));
    }
    // `.` copies the links as links; digesting reads no file outside the root
    let m = ctx.resolve_sources(&s(&["."]), &[]).unwrap();
    assert!(
        m[0].entries[1..]
            .iter()
            .all(|e| e.kind == FileKind::Symlink)
    );
    let mut memo = HashMemo::in_memory();
    ctx.digest(&m, &mut memo).unwrap();
    assert_eq!(memo.stats().bytes_hashed, 0);
    // once the target exists inside the root, the source link is followed there
    write(&root, "etc/passwd", "in-root");
    let m = ctx
        .resolve_sources(&s(&["abs", "rel", "etcdir/passwd"]), &[])
        .unwrap();
    for x in &m {
        assert_eq!(x.kind(), FileKind::File);
        assert_eq!(x.resolved, "etc/passwd");
        assert_eq!(
            fs::read_to_string(ctx.host_path(&x.entries[0])).unwrap(),
            "in-root"
        );
    }
    assert_eq!(names(&m), ["abs", "rel", "etcdir/passwd"]);
    // a link into an ignored file is not followed into it
    write(&root, ".dockerignore", "etc\n");
    let ctx = Context::open(&root).unwrap();
    let m = ctx.resolve_sources(&s(&["abs"]), &[]).unwrap();
    assert_eq!(m[0].kind(), FileKind::Symlink);
    assert!(ctx.resolve_sources(&s(&["etcdir/passwd"]), &[]).is_err());
}

#[test]
fn symlinks_inside_directories_are_kept() {
    let d = sample();
    symlink("../a.txt", d.path().join("sub/link")).unwrap();
    symlink("deep", d.path().join("sub/dlink")).unwrap();
    symlink("nowhere", d.path().join("dangling")).unwrap();
    symlink("/does/not/exist", d.path().join("loop1")).unwrap();
    let ctx = Context::open(d.path()).unwrap();
    let m = ctx.resolve_sources(&s(&["sub"]), &[]).unwrap();
    let link = m[0].entries.iter().find(|e| e.rel == "link").unwrap();
    assert_eq!(link.kind, FileKind::Symlink);
    assert_eq!(link.link_target.as_deref(), Some(Path::new("../a.txt")));
    assert!(!paths(&m[0]).contains(&"dlink/e.txt"));
    // a named source symlink to an existing in-root target is followed
    let m = ctx
        .resolve_sources(&s(&["sub/dlink", "sub/link"]), &[])
        .unwrap();
    assert_eq!(m[0].kind(), FileKind::Dir);
    assert_eq!(m[0].resolved, "sub/deep");
    assert_eq!(paths(&m[0]), ["", "e.txt"]);
    assert_eq!(m[1].kind(), FileKind::File);
    assert_eq!(m[1].path, "sub/link");
    assert_eq!(m[1].resolved, "a.txt");
    // dangling: kept as a symlink
    let m = ctx.resolve_sources(&s(&["dangling"]), &[]).unwrap();
    assert_eq!(m[0].kind(), FileKind::Symlink);
    // loops are errors, not hangs
    fs::remove_file(d.path().join("loop1")).unwrap();
    symlink("loop2", d.path().join("loop1")).unwrap();
    symlink("loop1", d.path().join("loop2")).unwrap();
    assert!(ctx.resolve_sources(&s(&["loop1/x"]), &[]).is_err());
}

#[test]
fn digest_covers_content_mode_and_names_not_mtime() {
    let d = sample();
    let ctx = Context::open(d.path()).unwrap();
    let src = s(&["."]);
    let mut memo = HashMemo::in_memory();
    let dg = |memo: &mut HashMemo| {
        let m = ctx.resolve_sources(&src, &[]).unwrap();
        ctx.digest(&m, memo).unwrap()
    };
    let d0 = dg(&mut memo);
    assert!(d0.starts_with("sha256:") && d0.len() == 7 + 64);
    assert_eq!(dg(&mut memo), d0);
    set_mtime(
        &d.path().join("a.txt"),
        SystemTime::UNIX_EPOCH + Duration::from_secs(1000),
    );
    assert_eq!(dg(&mut memo), d0, "mtime is not content");
    fs::set_permissions(d.path().join("a.txt"), fs::Permissions::from_mode(0o755)).unwrap();
    let d1 = dg(&mut memo);
    assert_ne!(d1, d0, "mode");
    fs::rename(d.path().join("b.txt"), d.path().join("b2.txt")).unwrap();
    let d2 = dg(&mut memo);
    assert_ne!(d2, d1, "names");
    fs::write(d.path().join("sub/deep/e.txt"), "E").unwrap();
    assert_ne!(dg(&mut memo), d2, "content");
    // the source names matter (they name the destination of a file source)
    let m1 = ctx.resolve_sources(&s(&["a.txt"]), &[]).unwrap();
    fs::copy(d.path().join("a.txt"), d.path().join("z.txt")).unwrap();
    fs::set_permissions(d.path().join("z.txt"), fs::Permissions::from_mode(0o755)).unwrap();
    let m2 = ctx.resolve_sources(&s(&["z.txt"]), &[]).unwrap();
    assert_ne!(
        ctx.digest(&m1, &mut memo).unwrap(),
        ctx.digest(&m2, &mut memo).unwrap()
    );
}

#[test]
fn memo_skips_reads_but_not_changes() {
    let d = tempfile::tempdir().unwrap();
    let big = "x".repeat(1 << 20);
    write(d.path(), "big", &big);
    write(d.path(), "small", "hello");
    let old = SystemTime::UNIX_EPOCH + Duration::from_secs(1_600_000_000);
    set_mtime(&d.path().join("big"), old);
    // let ctime leave the racy window so the results may be memoized
    std::thread::sleep(RACY_WINDOW * 2);
    let ctx = Context::open(d.path()).unwrap();
    let m = ctx.resolve_sources(&s(&["big", "small"]), &[]).unwrap();
    let memo_file = d.path().join("state/memo.json");
    let mut memo = HashMemo::load(&memo_file).unwrap();
    assert!(memo.is_empty());
    let d0 = ctx.digest(&m, &mut memo).unwrap();
    assert_eq!(memo.stats().bytes_hashed, (1 << 20) + 5);
    assert_eq!(memo.len(), 2);
    // warm: no byte read
    assert_eq!(ctx.digest(&m, &mut memo).unwrap(), d0);
    assert_eq!(memo.stats().bytes_hashed, (1 << 20) + 5);
    assert_eq!(memo.stats().hits, 2);
    // persisted: a new process reads nothing either
    memo.save().unwrap();
    let mut memo = HashMemo::load(&memo_file).unwrap();
    assert_eq!(ctx.digest(&m, &mut memo).unwrap(), d0);
    assert_eq!(
        memo.stats(),
        MemoStats {
            hits: 2,
            misses: 0,
            bytes_hashed: 0
        }
    );
    // same size, different content, mtime restored: ctime moved, so it is re-read
    let mut changed = big.clone();
    changed.replace_range(0..1, "y");
    fs::write(d.path().join("big"), &changed).unwrap();
    set_mtime(&d.path().join("big"), old);
    let m = ctx.resolve_sources(&s(&["big", "small"]), &[]).unwrap();
    let d1 = ctx.digest(&m, &mut memo).unwrap();
    assert_ne!(d1, d0);
    assert_eq!(memo.stats().bytes_hashed, 1 << 20);
    assert_eq!(memo.stats().hits, 3);
    // a corrupt memo file is just an empty memo
    fs::write(&memo_file, "not json").unwrap();
    let mut memo = HashMemo::load(&memo_file).unwrap();
    assert!(memo.is_empty());
    assert_eq!(ctx.digest(&m, &mut memo).unwrap(), d1);
}

#[test]
fn memo_file_keeps_names_with_spaces_and_leaves_out_newlines() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), "a b  c", "spaces");
    write(d.path(), "new\nline", "newline");
    std::thread::sleep(RACY_WINDOW * 2);
    let ctx = Context::open(d.path()).unwrap();
    let m = ctx.resolve_sources(&s(&["."]), &[]).unwrap();
    let memo_file = d.path().join("state/memo");
    let mut memo = HashMemo::load(&memo_file).unwrap();
    let d0 = ctx.digest(&m, &mut memo).unwrap();
    assert_eq!(memo.len(), 2);
    memo.save().unwrap();
    // Reloaded: the spaced name is a hit, the newline one (never written) is read again.
    let mut memo = HashMemo::load(&memo_file).unwrap();
    assert_eq!(memo.len(), 1);
    assert_eq!(ctx.digest(&m, &mut memo).unwrap(), d0);
    assert_eq!(memo.stats().hits, 1);
    assert_eq!(memo.stats().bytes_hashed, "newline".len() as u64);
    // A line that does not parse makes the whole file an empty memo, not an error.
    let text = fs::read_to_string(&memo_file).unwrap();
    fs::write(&memo_file, text.replacen(' ', "x", 1) + "\n").unwrap();
    assert!(HashMemo::load(&memo_file).unwrap().is_empty());
}

#[test]
fn open_canonicalizes_and_loads_rules() {
    let d = sample();
    write(d.path(), ".dockerignore", "*.md\n");
    symlink(d.path(), d.path().join("self")).unwrap();
    let ctx = Context::open(&d.path().join("self/./sub/..")).unwrap();
    assert_eq!(ctx.root(), d.path().canonicalize().unwrap());
    assert!(ctx.ignore_rules().is_excluded("c.md", false));
    assert!(Context::open(&d.path().join("a.txt")).is_err());
    assert!(Context::open(&d.path().join("nope")).is_err());
}

#[test]
fn freshly_changed_files_are_not_memoized() {
    let d = tempfile::tempdir().unwrap();
    let ctx = Context::open(d.path()).unwrap();
    let written = std::time::Instant::now();
    write(d.path(), "f", "fresh");
    let m = ctx.resolve_sources(&s(&["f"]), &[]).unwrap();
    let mut memo = HashMemo::in_memory();
    let d0 = ctx.digest(&m, &mut memo).unwrap();
    // Only meaningful if this ran inside the racy window (a loaded machine may be slower).
    if written.elapsed() < RACY_WINDOW / 2 {
        assert!(
            memo.is_empty(),
            "a file changed within the clock tick must not be memoized"
        );
        assert_eq!(ctx.digest(&m, &mut memo).unwrap(), d0);
        assert_eq!(memo.stats().bytes_hashed, 10);
    }
}
