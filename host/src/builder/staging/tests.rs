//! Tests of COPY/ADD staging.

use super::*;
use std::os::unix::fs::symlink;

struct Fx {
    ctx_dir: tempfile::TempDir,
    parent: tempfile::TempDir,
    staging: tempfile::TempDir,
}

fn fx() -> Fx {
    let ctx_dir = tempfile::tempdir().unwrap();
    let c = ctx_dir.path();
    fs::write(c.join("a.txt"), "aaa").unwrap();
    fs::write(c.join("b.txt"), "bb").unwrap();
    fs::create_dir_all(c.join("dir/sub")).unwrap();
    fs::write(c.join("dir/one"), "1").unwrap();
    fs::write(c.join("dir/sub/two"), "22").unwrap();
    fs::set_permissions(c.join("dir/sub/two"), fs::Permissions::from_mode(0o750)).unwrap();
    symlink("one", c.join("dir/link")).unwrap();
    std::os::unix::fs::lchown(c.join("a.txt"), Some(1234), Some(4321)).unwrap();
    let parent = tempfile::tempdir().unwrap();
    let p = parent.path();
    fs::create_dir_all(p.join("etc")).unwrap();
    fs::write(
        p.join("etc/passwd"),
        "root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n",
    )
    .unwrap();
    fs::write(p.join("etc/group"), "root:x:0:\nstaff:x:50:\n").unwrap();
    fs::create_dir_all(p.join("opt/existing")).unwrap();
    fs::set_permissions(p.join("opt"), fs::Permissions::from_mode(0o711)).unwrap();
    std::os::unix::fs::lchown(p.join("opt"), Some(7), Some(8)).unwrap();
    symlink("/opt/existing", p.join("lnk")).unwrap();
    Fx {
        ctx_dir,
        parent,
        staging: tempfile::tempdir().unwrap(),
    }
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

fn copy<'a>(
    fx: &'a Fx,
    sources: &[&str],
    dest: &'a str,
    f: impl FnOnce(&mut CopyRequest<'a>),
) -> Result<CopyStats> {
    // Leaked so the request can borrow them for the caller's lifetime (tests only).
    let ctx: &'static Context = Box::leak(Box::new(Context::open(fx.ctx_dir.path()).unwrap()));
    let sources: &'static [String] = Box::leak(s(sources).into_boxed_slice());
    let mut req = CopyRequest {
        from: ctx,
        from_context: true,
        sources,
        inline: &[],
        excludes: &[],
        dest,
        workdir: "/",
        parent_rootfs: Some(fx.parent.path()),
        chown: None,
        chmod: None,
        parents: false,
        unpack: false,
    };
    f(&mut req);
    stage_copy(&req, fx.staging.path())
}

fn md(fx: &Fx, p: &str) -> fs::Metadata {
    fs::symlink_metadata(fx.staging.path().join(p)).unwrap_or_else(|e| panic!("{p}: {e}"))
}

fn read(fx: &Fx, p: &str) -> String {
    fs::read_to_string(fx.staging.path().join(p)).unwrap()
}

/// All paths in staging, sorted, `/`-separated.
fn tree(fx: &Fx) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            out.push(p.strip_prefix(base).unwrap().to_string_lossy().into_owned());
            if fs::symlink_metadata(&p).unwrap().is_dir() {
                walk(base, &p, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(fx.staging.path(), fx.staging.path(), &mut out);
    out.sort();
    out
}

#[test]
fn file_to_file_owned_by_root_keeps_mtime() {
    let fx = fx();
    let st = copy(&fx, &["a.txt"], "/x/y.txt", |_| {}).unwrap();
    assert_eq!(st, CopyStats { files: 1, bytes: 3 });
    assert_eq!(tree(&fx), s(&["x", "x/y.txt"]));
    assert_eq!(read(&fx, "x/y.txt"), "aaa");
    let m = md(&fx, "x/y.txt");
    assert_eq!((m.uid(), m.gid()), (0, 0));
    let src = fs::metadata(fx.ctx_dir.path().join("a.txt")).unwrap();
    assert_eq!((m.mtime(), m.mtime_nsec()), (src.mtime(), src.mtime_nsec()));
    assert_eq!(md(&fx, "x").mode() & 0o7777, 0o755);
}

#[test]
fn file_to_slash_dir() {
    let fx = fx();
    copy(&fx, &["a.txt"], "/x/", |_| {}).unwrap();
    assert_eq!(tree(&fx), s(&["x", "x/a.txt"]));
}

#[test]
fn dir_contents_to_dir() {
    let fx = fx();
    let st = copy(&fx, &["dir"], "/d", |_| {}).unwrap();
    assert_eq!(
        tree(&fx),
        s(&["d", "d/link", "d/one", "d/sub", "d/sub/two"])
    );
    assert_eq!(st.files, 3);
    assert_eq!(
        fs::read_link(fx.staging.path().join("d/link")).unwrap(),
        Path::new("one")
    );
    assert_eq!(md(&fx, "d/sub/two").mode() & 0o7777, 0o750);
    assert_eq!(read(&fx, "d/sub/two"), "22");
}

#[test]
fn glob_matching_several_needs_a_dir() {
    let fx = fx();
    let e = copy(&fx, &["*.txt"], "/g", |_| {}).unwrap_err();
    assert!(format!("{e:#}").contains("must be a directory"), "{e:#}");
    copy(&fx, &["*.txt"], "/g/", |_| {}).unwrap();
    assert_eq!(tree(&fx), s(&["g", "g/a.txt", "g/b.txt"]));
}

#[test]
fn glob_matching_one_file_copies_to_a_file_dest() {
    let fx = fx();
    copy(&fx, &["a.*"], "/g", |_| {}).unwrap();
    assert_eq!(tree(&fx), s(&["g"]));
    assert_eq!(read(&fx, "g"), "aaa");
}

#[test]
fn glob_matching_one_dir_copies_its_contents() {
    let fx = fx();
    copy(&fx, &["di?"], "/g", |_| {}).unwrap();
    assert!(tree(&fx).contains(&"g/one".to_string()), "{:?}", tree(&fx));
}

#[test]
fn several_sources_need_a_dir() {
    let fx = fx();
    let e = copy(&fx, &["a.txt", "b.txt"], "/nope", |_| {}).unwrap_err();
    assert!(
        format!("{e:#}").contains("When using COPY with more than one source file, the destination must be a directory and end with a /"),
        "{e:#}"
    );
    // An existing directory in the parent rootfs is fine, and its metadata is kept.
    copy(&fx, &["a.txt", "b.txt", "dir"], "/opt", |_| {}).unwrap();
    assert_eq!(
        tree(&fx),
        s(&[
            "opt",
            "opt/a.txt",
            "opt/b.txt",
            "opt/link",
            "opt/one",
            "opt/sub",
            "opt/sub/two"
        ])
    );
    let m = md(&fx, "opt");
    assert_eq!((m.mode() & 0o7777, m.uid(), m.gid()), (0o711, 7, 8));
}

#[test]
fn existing_dir_dest_and_symlinked_dest() {
    let fx = fx();
    copy(&fx, &["a.txt"], "/opt/existing", |_| {}).unwrap();
    assert_eq!(tree(&fx), s(&["opt", "opt/existing", "opt/existing/a.txt"]));
    let fx = fx_fresh_staging(fx);
    copy(&fx, &["b.txt"], "/lnk/", |_| {}).unwrap();
    assert_eq!(tree(&fx), s(&["opt", "opt/existing", "opt/existing/b.txt"]));
}

fn fx_fresh_staging(fx: Fx) -> Fx {
    Fx {
        staging: tempfile::tempdir().unwrap(),
        ..fx
    }
}

#[test]
fn relative_dest_uses_workdir() {
    let fx = fx();
    copy(&fx, &["a.txt"], "sub/", |r| r.workdir = "/app").unwrap();
    assert_eq!(tree(&fx), s(&["app", "app/sub", "app/sub/a.txt"]));
    let fx = fx_fresh_staging(fx);
    copy(&fx, &["a.txt"], ".", |r| r.workdir = "/w").unwrap();
    assert_eq!(tree(&fx), s(&["w", "w/a.txt"]));
}

#[test]
fn chown_by_name_and_ids() {
    let fx = fx();
    copy(&fx, &["dir"], "/c/d", |r| r.chown = Some("app")).unwrap();
    for p in ["c", "c/d", "c/d/one", "c/d/sub/two", "c/d/link"] {
        let m = md(&fx, p);
        assert_eq!((m.uid(), m.gid()), (1000, 1001), "{p}");
    }
    let fx = fx_fresh_staging(fx);
    copy(&fx, &["a.txt"], "/f", |r| r.chown = Some("app:staff")).unwrap();
    assert_eq!((md(&fx, "f").uid(), md(&fx, "f").gid()), (1000, 50));
    let fx = fx_fresh_staging(fx);
    copy(&fx, &["a.txt"], "/f", |r| r.chown = Some("42")).unwrap();
    assert_eq!((md(&fx, "f").uid(), md(&fx, "f").gid()), (42, 42));
    let fx = fx_fresh_staging(fx);
    copy(&fx, &["a.txt"], "/f", |r| r.chown = Some("42:7")).unwrap();
    assert_eq!((md(&fx, "f").uid(), md(&fx, "f").gid()), (42, 7));
    let e = copy(&fx, &["a.txt"], "/f", |r| r.chown = Some("ghost")).unwrap_err();
    assert!(
        format!("{e:#}").contains("unable to find user ghost"),
        "{e:#}"
    );
}

#[test]
fn non_context_sources_keep_owner() {
    let fx = fx();
    copy(&fx, &["a.txt"], "/f", |r| r.from_context = false).unwrap();
    assert_eq!((md(&fx, "f").uid(), md(&fx, "f").gid()), (1234, 4321));
}

#[test]
fn chmod_octal_and_symbolic() {
    let fx = fx();
    let m = FileMode::Octal(0o640);
    copy(&fx, &["dir"], "/d", |r| r.chmod = Some(&m)).unwrap();
    assert_eq!(md(&fx, "d/one").mode() & 0o7777, 0o640);
    assert_eq!(md(&fx, "d/sub").mode() & 0o7777, 0o640);
    let fx = fx_fresh_staging(fx);
    let m = FileMode::Symbolic("a=rX,u+w".into());
    copy(&fx, &["dir"], "/d", |r| r.chmod = Some(&m)).unwrap();
    assert_eq!(md(&fx, "d/one").mode() & 0o7777, 0o644); // 0644 source: no x anywhere
    assert_eq!(md(&fx, "d/sub/two").mode() & 0o7777, 0o755); // 0750: had x
    assert_eq!(md(&fx, "d/sub").mode() & 0o7777, 0o755); // dir
    assert_eq!(apply_symbolic("u+s,g-r,o=t", 0o754, false).unwrap(), 0o5710);
    assert_eq!(apply_symbolic("+x", 0o600, false).unwrap(), 0o711);
    assert!(apply_symbolic("u+q", 0, false).is_err());
    let bad = FileMode::Symbolic("z".into());
    assert!(copy(&fx, &["a.txt"], "/f", |r| r.chmod = Some(&bad)).is_err());
}

#[test]
fn parents_keeps_relative_paths() {
    let fx = fx();
    copy(&fx, &["dir/sub/two", "a.txt"], "/p", |r| r.parents = true).unwrap();
    assert_eq!(
        tree(&fx),
        s(&["p", "p/a.txt", "p/dir", "p/dir/sub", "p/dir/sub/two"])
    );
}

#[test]
fn parents_with_a_pivot_keeps_the_path_after_it() {
    let fx = fx();
    copy(&fx, &["dir/./sub/two", "./dir/one"], "/p/", |r| {
        r.parents = true
    })
    .unwrap();
    assert_eq!(
        tree(&fx),
        s(&["p", "p/dir", "p/dir/one", "p/sub", "p/sub/two"])
    );
}

#[test]
fn inline_files() {
    let fx = fx();
    let inline = vec![LiteralFile {
        name: "hello.sh",
        content: LiteralContent::Text("echo hi\n"),
        mode: 0o644,
        mtime: None,
        unpack: false,
    }];
    let st = copy(&fx, &[], "/bin/", |r| r.inline = &inline).unwrap();
    assert_eq!(st, CopyStats { files: 1, bytes: 8 });
    assert_eq!(read(&fx, "bin/hello.sh"), "echo hi\n");
    assert_eq!(md(&fx, "bin/hello.sh").mode() & 0o7777, 0o644);
    let fx = fx_fresh_staging(fx);
    copy(&fx, &[], "/etc/conf", |r| r.inline = &inline).unwrap();
    assert_eq!(read(&fx, "etc/conf"), "echo hi\n");
    // The existing /etc keeps its parent-rootfs metadata.
    assert_eq!(tree(&fx), s(&["etc", "etc/conf"]));
}

#[test]
fn add_unpacks_tar_gz() {
    let fx = fx();
    let mut b = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    let mut h = tar::Header::new_gnu();
    h.set_size(5);
    h.set_mode(0o600);
    h.set_uid(33);
    h.set_gid(33);
    h.set_mtime(1000);
    h.set_entry_type(tar::EntryType::Regular);
    b.append_data(&mut h, "top/file", &b"hello"[..]).unwrap();
    let gz = b.into_inner().unwrap().finish().unwrap();
    fs::write(fx.ctx_dir.path().join("arch.tar.gz"), gz).unwrap();
    let st = copy(&fx, &["arch.tar.gz", "a.txt"], "/u/", |r| r.unpack = true).unwrap();
    assert_eq!(tree(&fx), s(&["u", "u/a.txt", "u/top", "u/top/file"]));
    assert_eq!(read(&fx, "u/top/file"), "hello");
    let m = md(&fx, "u/top/file");
    assert_eq!((m.uid(), m.mode() & 0o7777, m.mtime()), (33, 0o600, 1000));
    assert_eq!(st.files, 2);
    // Without unpack the archive is copied as is; with --chown the contents are chowned.
    let fx = fx_fresh_staging(fx);
    copy(&fx, &["arch.tar.gz"], "/u/", |_| {}).unwrap();
    assert_eq!(tree(&fx), s(&["u", "u/arch.tar.gz"]));
    let fx = fx_fresh_staging(fx);
    copy(&fx, &["arch.tar.gz"], "/u", |r| {
        r.unpack = true;
        r.chown = Some("5:6");
    })
    .unwrap();
    let m = md(&fx, "u/top/file");
    assert_eq!((m.uid(), m.gid()), (5, 6));
    assert_eq!(md(&fx, "u/top").uid(), 5);
}

#[test]
fn dotdot_dest_stays_inside() {
    let fx = fx();
    copy(&fx, &["a.txt"], "../../../x", |r| r.workdir = "/w").unwrap();
    assert_eq!(tree(&fx), s(&["x"]));
    let fx = fx_fresh_staging(fx);
    // A symlink staged by one source cannot redirect a later source's writes out of staging.
    let c = fx.ctx_dir.path();
    let name = format!("wbuild-escape-{}", std::process::id());
    fs::create_dir_all(c.join("d1")).unwrap();
    symlink("/tmp", c.join("d1/sub")).unwrap();
    fs::create_dir_all(c.join("d2/sub")).unwrap();
    fs::write(c.join("d2/sub").join(&name), "x").unwrap();
    copy(&fx, &["d1", "d2"], "/z/", |_| {}).unwrap();
    assert!(!Path::new("/tmp").join(&name).exists());
    assert!(md(&fx, "z/sub").is_dir());
    assert_eq!(read(&fx, &format!("z/sub/{name}")), "x");
}

#[test]
fn missing_source_names_it() {
    let fx = fx();
    let e = copy(&fx, &["nothere"], "/x", |_| {}).unwrap_err();
    assert!(format!("{e:#}").contains("nothere"), "{e:#}");
}
