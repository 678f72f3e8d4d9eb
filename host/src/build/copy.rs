//! COPY/ADD staging: [`stage_copy`] writes exactly what one COPY/ADD adds into an empty
//! directory that then becomes the step's layer (diffed like an overlay upperdir), with Docker
//! BuildKit's destination, ownership, `--chmod`, `--parents` and ADD-unpack semantics.

use std::ffi::CString;
use std::fs;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};

use crate::context::{Context, Entry, FileKind, Match};
use crate::frontend::bindings::FileMode;

/// One COPY/ADD to stage.
pub struct CopyRequest<'a> {
    /// Where sources are read: the build context, or a stage's/image's flattened rootfs opened
    /// with `Context::with_rules(root, no rules)`.
    pub from: &'a Context,
    /// True for the build context: files become owned by 0:0 unless `chown` (Docker); false:
    /// keep the source uid/gid.
    pub from_context: bool,
    /// Paths/globs.
    pub sources: &'a [String],
    /// Files not read from `from` (heredocs, downloads): written as their name under a dir
    /// dest, or as dest itself when dest is not a dir.
    pub inline: &'a [LiteralFile<'a>],
    pub excludes: &'a [String],
    /// As written; relative dests are joined with `workdir`.
    pub dest: &'a str,
    pub workdir: &'a str,
    /// The stage's filesystem before this step (None = scratch).
    pub parent_rootfs: Option<&'a Path>,
    /// `user[:group]`: names resolved in parent_rootfs /etc/passwd, /etc/group, or ids.
    pub chown: Option<&'a str>,
    pub chmod: Option<&'a FileMode>,
    pub parents: bool,
    /// ADD: unpack local tar archives (any compression `decompress` sniffs) into dest.
    pub unpack: bool,
}

/// A file a COPY/ADD writes that is not read from its source root: a heredoc's text or a file
/// `ADD <url>` downloaded.
#[derive(Debug, Clone, Copy)]
pub struct LiteralFile<'a> {
    pub name: &'a str,
    pub content: LiteralContent<'a>,
    /// Its mode before `--chmod` (heredocs 0644, downloads 0600 as in BuildKit).
    pub mode: u32,
    /// Its mtime (a download's `Last-Modified`); None: the time of the build.
    pub mtime: Option<i64>,
    /// `ADD --unpack=true <url>`: an archive is unpacked into the destination instead.
    pub unpack: bool,
}

#[derive(Debug, Clone, Copy)]
pub enum LiteralContent<'a> {
    Text(&'a str),
    File(&'a Path),
}

/// What a staged COPY wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CopyStats {
    /// Non-directory objects written (files, symlinks, special files, inline files; an unpacked
    /// archive counts the objects it held).
    pub files: u64,
    /// Bytes of regular-file content written.
    pub bytes: u64,
}

/// Populate `staging` (an empty dir that will become the layer) with exactly what the COPY adds:
/// the copied files at their destination paths, plus the destination's parent directories
/// (mode/uid/gid/mtime copied from `parent_rootfs` where they exist there, else 0755 root, or
/// the `--chown` owner). Nothing is written outside `staging`.
pub fn stage_copy(req: &CopyRequest, staging: &Path) -> Result<CopyStats> {
    let owner = match req.chown {
        Some(spec) => Some(resolve_chown(req.parent_rootfs, spec)?),
        None => None,
    };
    let mut st = Stager {
        staging,
        parent: req.parent_rootfs,
        owner,
        from_context: req.from_context,
        chmod: req.chmod,
        stats: CopyStats::default(),
        dir_times: Vec::new(),
    };
    if let Some(FileMode::Symbolic(s)) = req.chmod {
        apply_symbolic(s, 0o644, false).with_context(|| format!("invalid --chmod={s}"))?;
    }

    let dest = if req.dest.is_empty() { "." } else { req.dest };
    let slash = dest.ends_with('/') || dest == "." || dest == ".." || dest.ends_with("/.");
    let abs = wbuild_parser::paths::join_workdir(req.workdir, dest);
    let comps = split(&abs);
    let full = resolve_in(req.parent_rootfs, &comps)?;
    let exists_dir = req
        .parent_rootfs
        .and_then(|p| fs::symlink_metadata(join(p, &full)).ok())
        .is_some_and(|m| m.is_dir());
    let matches = if req.sources.is_empty() {
        Vec::new()
    } else {
        req.from
            .resolve_copy_sources(req.sources, req.excludes, req.parents)?
    };
    // A glob that matches one object copies it like a plain source (to a file destination
    // when `dest` is not a directory), as BuildKit does. A glob matching several objects into a
    // file destination is an error, as the Dockerfile reference says (BuildKit silently keeps
    // the last match there: moby/buildkit#1853).
    let count = (req.sources.len() + req.inline.len()).max(matches.len() + req.inline.len());
    let dest_dir = slash || exists_dir || req.parents;
    if count > 1 && !dest_dir {
        bail!(
            "When using COPY with more than one source file, the destination must be a directory and end with a / (destination {})",
            req.dest
        );
    }
    // Where a non-directory single source goes: the resolved parent plus the last name.
    let file_target = || -> Result<Vec<String>> {
        let Some((name, parent)) = comps.split_last() else {
            bail!("destination {} is the root directory", req.dest);
        };
        let mut p = resolve_in(req.parent_rootfs, parent)?;
        p.push(name.clone());
        Ok(p)
    };

    for m in &matches {
        st.copy_match(req, m, &full, dest_dir, &file_target)
            .with_context(|| format!("copying {} to {}", m.source, req.dest))?;
    }
    for lf in req.inline {
        let name = lf.name;
        if lf.unpack
            && let LiteralContent::File(p) = lf.content
            && is_tar(p)?
        {
            st.unpack(p, &full)
                .with_context(|| format!("unpacking {name} into {}", req.dest))?;
            continue;
        }
        let target = if dest_dir {
            let mut t = full.clone();
            t.extend(split(&wbuild_parser::paths::clean_path(&format!(
                "/{name}"
            ))));
            t
        } else {
            file_target()?
        };
        st.write_inline(&target, lf)
            .with_context(|| format!("writing {name} to {}", req.dest))?;
    }
    for (path, secs, nsecs) in st.dir_times.iter().rev() {
        set_times(path, *secs, *nsecs)?;
    }
    Ok(st.stats)
}

/// Owner and permissions an object gets in the staging tree.
#[derive(Debug, Clone, Copy)]
struct Meta {
    uid: u32,
    gid: u32,
    mode: u32,
    mtime: Option<(i64, i64)>,
}

struct Stager<'a> {
    staging: &'a Path,
    parent: Option<&'a Path>,
    owner: Option<(u32, u32)>,
    from_context: bool,
    chmod: Option<&'a FileMode>,
    stats: CopyStats,
    dir_times: Vec<(PathBuf, i64, i64)>,
}

impl Stager<'_> {
    fn copy_match(
        &mut self,
        req: &CopyRequest,
        m: &Match,
        full: &[String],
        dest_dir: bool,
        file_target: &dyn Fn() -> Result<Vec<String>>,
    ) -> Result<()> {
        let top = &m.entries[0];
        if req.unpack && top.kind == FileKind::File && is_tar(&req.from.host_path(top))? {
            return self.unpack(&req.from.host_path(top), full);
        }
        let mut base: Vec<String> = full.to_vec();
        if req.parents {
            // `--parents` keeps the source's path below `dest`, from the `/./` pivot on when
            // the source has one (`x/./y/*.txt` keeps `y/…`).
            let skip = parents_pivot(&m.source);
            base.extend(split(&m.path).into_iter().skip(skip));
        } else if top.kind != FileKind::Dir && dest_dir {
            match split(&m.path).pop() {
                Some(n) => base.push(n),
                None => bail!("source {} has no name", m.source),
            }
        } else if top.kind != FileKind::Dir {
            base = file_target()?;
        }
        if base.is_empty() && top.kind != FileKind::Dir {
            bail!("cannot copy {} over the root directory", m.source);
        }
        if let Some((_, parent)) = base.split_last() {
            self.ensure_dirs(parent)?;
        }
        let lower_dir = self
            .parent
            .and_then(|p| fs::symlink_metadata(join(p, &base)).ok())
            .is_some_and(|md| md.is_dir());
        if top.kind == FileKind::Dir && lower_dir {
            // An existing destination directory keeps its metadata (Docker).
            self.ensure_dirs(&base)?;
        }
        for e in &m.entries {
            let mut target = base.clone();
            target.extend(split(&e.rel));
            self.write_entry(req.from, e, &target)
                .with_context(|| format!("{}/{}", m.source, e.rel))?;
        }
        Ok(())
    }

    fn owner_of(&self, e: &Entry) -> (u32, u32) {
        match self.owner {
            Some(o) => o,
            None if self.from_context => (0, 0),
            None => (e.uid, e.gid),
        }
    }

    fn mode_of(&self, mode: u32, is_dir: bool) -> u32 {
        match self.chmod {
            None => mode & 0o7777,
            Some(FileMode::Octal(m)) => m & 0o7777,
            Some(FileMode::Symbolic(s)) => apply_symbolic(s, mode & 0o7777, is_dir).unwrap_or(mode),
        }
    }

    /// Create every missing directory of `comps` (parents first): metadata from the parent
    /// rootfs where the directory exists there, else 0755 owned by the `--chown` owner or root.
    fn ensure_dirs(&mut self, comps: &[String]) -> Result<()> {
        for i in 1..=comps.len() {
            let path = join(self.staging, &comps[..i]);
            if let Ok(md) = fs::symlink_metadata(&path) {
                if md.is_dir() {
                    continue;
                }
                fs::remove_file(&path)?;
            }
            let lower = self
                .parent
                .and_then(|p| fs::symlink_metadata(join(p, &comps[..i])).ok())
                .filter(|m| m.is_dir());
            let meta = match lower {
                Some(md) => Meta {
                    uid: md.uid(),
                    gid: md.gid(),
                    mode: md.mode() & 0o7777,
                    mtime: Some((md.mtime(), md.mtime_nsec())),
                },
                None => {
                    let (uid, gid) = self.owner.unwrap_or((0, 0));
                    Meta {
                        uid,
                        gid,
                        mode: 0o755,
                        mtime: None,
                    }
                }
            };
            self.make_dir(&path, meta)?;
        }
        Ok(())
    }

    fn make_dir(&mut self, path: &Path, meta: Meta) -> Result<()> {
        fs::create_dir(path).with_context(|| format!("creating {}", path.display()))?;
        std::os::unix::fs::lchown(path, Some(meta.uid), Some(meta.gid))?;
        fs::set_permissions(path, fs::Permissions::from_mode(meta.mode))?;
        if let Some((s, ns)) = meta.mtime {
            self.dir_times.push((path.to_path_buf(), s, ns));
        }
        Ok(())
    }

    /// Remove a non-directory at `path` (a later source replaces an earlier one).
    fn clear(path: &Path) -> Result<()> {
        match fs::symlink_metadata(path) {
            Ok(md) if md.is_dir() => {
                bail!("cannot replace directory {} with a file", path.display())
            }
            Ok(_) => fs::remove_file(path)?,
            Err(_) => {}
        }
        Ok(())
    }

    fn write_entry(&mut self, from: &Context, e: &Entry, target: &[String]) -> Result<()> {
        if let Some((_, parent)) = target.split_last() {
            self.ensure_dirs(parent)?;
        }
        let path = join(self.staging, target);
        let (uid, gid) = self.owner_of(e);
        let secs = (e.mtime_ns.div_euclid(1_000_000_000)) as i64;
        let nsecs = (e.mtime_ns.rem_euclid(1_000_000_000)) as i64;
        let src = from.host_path(e);
        match e.kind {
            FileKind::Dir => {
                let mode = self.mode_of(e.mode, true);
                match fs::symlink_metadata(&path) {
                    Ok(md) if md.is_dir() => {}
                    Ok(_) => {
                        fs::remove_file(&path)?;
                        self.make_dir(&path, meta(uid, gid, mode, secs, nsecs))?;
                    }
                    Err(_) => self.make_dir(&path, meta(uid, gid, mode, secs, nsecs))?,
                }
            }
            FileKind::File => {
                Self::clear(&path)?;
                let mut input = fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&src)
                    .with_context(|| format!("opening {}", src.display()))?;
                let mut out = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .custom_flags(libc::O_NOFOLLOW)
                    .mode(0o600)
                    .open(&path)
                    .with_context(|| format!("creating {}", path.display()))?;
                self.stats.bytes += io::copy(&mut input, &mut out)?;
                std::os::unix::fs::fchown(&out, Some(uid), Some(gid))?;
                out.set_permissions(fs::Permissions::from_mode(self.mode_of(e.mode, false)))?;
                drop(out);
                set_times(&path, secs, nsecs)?;
                self.stats.files += 1;
            }
            FileKind::Symlink => {
                Self::clear(&path)?;
                let link = match &e.link_target {
                    Some(t) => t.clone(),
                    None => fs::read_link(&src)?,
                };
                std::os::unix::fs::symlink(&link, &path)?;
                std::os::unix::fs::lchown(&path, Some(uid), Some(gid))?;
                set_times(&path, secs, nsecs)?;
                self.stats.files += 1;
            }
            FileKind::Other => {
                Self::clear(&path)?;
                if e.mode & libc::S_IFMT == libc::S_IFSOCK {
                    return Ok(()); // sockets are not copied
                }
                let c = cstr(&path)?;
                // SAFETY: c is a valid NUL-terminated path.
                let rc = unsafe {
                    libc::mknod(c.as_ptr(), (e.mode & libc::S_IFMT) | 0o600, e.rdev as _)
                };
                if rc != 0 {
                    return Err(io::Error::last_os_error())
                        .with_context(|| format!("mknod {}", path.display()));
                }
                std::os::unix::fs::lchown(&path, Some(uid), Some(gid))?;
                fs::set_permissions(
                    &path,
                    fs::Permissions::from_mode(self.mode_of(e.mode, false)),
                )?;
                set_times(&path, secs, nsecs)?;
                self.stats.files += 1;
            }
        }
        Ok(())
    }

    fn write_inline(&mut self, target: &[String], file: &LiteralFile) -> Result<()> {
        let Some((_, parent)) = target.split_last() else {
            bail!("an inline file cannot be the root directory");
        };
        self.ensure_dirs(parent)?;
        let path = join(self.staging, target);
        Self::clear(&path)?;
        let (uid, gid) = self.owner.unwrap_or((0, 0));
        let out = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_NOFOLLOW)
            .mode(0o600)
            .open(&path)?;
        let written = match file.content {
            LiteralContent::Text(t) => {
                io::Write::write_all(&mut &out, t.as_bytes())?;
                t.len() as u64
            }
            LiteralContent::File(p) => io::copy(&mut fs::File::open(p)?, &mut &out)?,
        };
        std::os::unix::fs::fchown(&out, Some(uid), Some(gid))?;
        out.set_permissions(fs::Permissions::from_mode(self.mode_of(file.mode, false)))?;
        if let Some(secs) = file.mtime {
            set_times(&path, secs, 0)?;
        }
        self.stats.files += 1;
        self.stats.bytes += written;
        Ok(())
    }

    /// ADD: extract the archive at `src` into the directory `dest` (ownership from the archive
    /// unless `--chown`).
    fn unpack(&mut self, src: &Path, dest: &[String]) -> Result<()> {
        self.ensure_dirs(dest)?;
        let tmp = tempfile::Builder::new()
            .prefix(".wbuild-unpack")
            .tempdir_in(self.staging)?;
        let file = fs::File::open(src).with_context(|| format!("opening {}", src.display()))?;
        let reader = crate::snapshot::decompress(io::BufReader::new(file))?;
        crate::snapshot::apply_layer(reader, tmp.path())
            .with_context(|| format!("unpacking {}", src.display()))?;
        let dest_path = join(self.staging, dest);
        self.merge(tmp.path(), &dest_path)?;
        Ok(())
    }

    /// Move the tree under `src` into `dst` (both directories), chowning on the way when
    /// `--chown` was given and counting what moves.
    fn merge(&mut self, src: &Path, dst: &Path) -> Result<()> {
        let mut names: Vec<_> = fs::read_dir(src)?.collect::<io::Result<_>>()?;
        names.sort_by_key(|e| e.file_name());
        for e in names {
            let s = e.path();
            let d = dst.join(e.file_name());
            let md = fs::symlink_metadata(&s)?;
            if let Some((uid, gid)) = self.owner {
                std::os::unix::fs::lchown(&s, Some(uid), Some(gid))?;
                if !md.is_symlink() {
                    // chown clears set-id bits: restore the mode.
                    fs::set_permissions(&s, fs::Permissions::from_mode(md.mode() & 0o7777))?;
                }
            }
            let existing = fs::symlink_metadata(&d).ok();
            if md.is_dir() && existing.as_ref().is_some_and(|m| m.is_dir()) {
                self.merge(&s, &d)?;
                continue;
            }
            if let Some(x) = existing {
                if x.is_dir() {
                    fs::remove_dir_all(&d)?;
                } else {
                    fs::remove_file(&d)?;
                }
            }
            if md.is_dir() {
                self.count_tree(&s)?;
            } else {
                self.stats.files += 1;
                if md.is_file() {
                    self.stats.bytes += md.len();
                }
            }
            fs::rename(&s, &d)?;
            if md.is_dir() {
                set_times(&d, md.mtime(), md.mtime_nsec())?;
            }
        }
        Ok(())
    }

    fn count_tree(&mut self, dir: &Path) -> Result<()> {
        for e in fs::read_dir(dir)? {
            let e = e?;
            let md = fs::symlink_metadata(e.path())?;
            if let Some((uid, gid)) = self.owner {
                std::os::unix::fs::lchown(e.path(), Some(uid), Some(gid))?;
                if !md.is_symlink() {
                    fs::set_permissions(e.path(), fs::Permissions::from_mode(md.mode() & 0o7777))?;
                }
            }
            if md.is_dir() {
                self.count_tree(&e.path())?;
                set_times(&e.path(), md.mtime(), md.mtime_nsec())?;
            } else {
                self.stats.files += 1;
                if md.is_file() {
                    self.stats.bytes += md.len();
                }
            }
        }
        Ok(())
    }
}

fn meta(uid: u32, gid: u32, mode: u32, secs: i64, nsecs: i64) -> Meta {
    Meta {
        uid,
        gid,
        mode,
        mtime: Some((secs, nsecs)),
    }
}

/// `--chown` as BuildKit resolves it: a numeric user alone means uid = gid = that id; a name is
/// looked up in the parent rootfs's /etc/passwd (its primary group); a group by id or
/// /etc/group name.
pub(super) fn resolve_chown(rootfs: Option<&Path>, spec: &str) -> Result<(u32, u32)> {
    let empty;
    let root = match rootfs {
        Some(r) => r,
        None => {
            empty = tempfile::tempdir()?;
            empty.path()
        }
    };
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let (uid, mut gid) = match user.parse::<u32>() {
        Ok(n) => (n, n),
        Err(_) if user.is_empty() => (0, 0),
        Err(_) => {
            let r =
                crate::exec::resolve_user(root, user).with_context(|| format!("--chown={spec}"))?;
            (r.uid, r.gid)
        }
    };
    if let Some(g) = group.filter(|g| !g.is_empty()) {
        gid = match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => {
                crate::exec::resolve_user(root, &format!("0:{g}"))
                    .with_context(|| format!("--chown={spec}"))?
                    .gid
            }
        };
    }
    Ok((uid, gid))
}

/// Apply a chmod(1) symbolic mode (`u+x,g-w,a=rX,o+t,u+s`; no `who` means `a`, no umask) to
/// `mode`.
fn apply_symbolic(spec: &str, mode: u32, is_dir: bool) -> Result<u32> {
    let mut mode = mode & 0o7777;
    for clause in spec.split(',') {
        let mut chars = clause.chars().peekable();
        let mut who = 0u32; // bits: u=4, g=2, o=1
        while let Some(&c) = chars.peek() {
            match c {
                'u' => who |= 4,
                'g' => who |= 2,
                'o' => who |= 1,
                'a' => who |= 7,
                _ => break,
            }
            chars.next();
        }
        if who == 0 {
            who = 7;
        }
        let mut any_op = false;
        while let Some(op) = chars.next() {
            if !matches!(op, '+' | '-' | '=') {
                bail!("unexpected {op:?} in clause {clause:?}");
            }
            any_op = true;
            let mut bits = 0u32;
            while let Some(&p) = chars.peek() {
                if matches!(p, '+' | '-' | '=') {
                    break;
                }
                let rwx = match p {
                    'r' => 4,
                    'w' => 2,
                    'x' => 1,
                    'X' if is_dir || mode & 0o111 != 0 => 1,
                    'X' => 0,
                    's' | 't' => 0,
                    _ => bail!("unknown permission {p:?} in clause {clause:?}"),
                };
                bits |= spread(who, rwx);
                if p == 's' {
                    bits |= if who & 4 != 0 { 0o4000 } else { 0 }
                        | if who & 2 != 0 { 0o2000 } else { 0 };
                }
                if p == 't' && who & 1 != 0 {
                    bits |= 0o1000;
                }
                chars.next();
            }
            match op {
                '+' => mode |= bits,
                '-' => mode &= !bits,
                _ => {
                    let mut clear = spread(who, 7);
                    if who & 4 != 0 {
                        clear |= 0o4000;
                    }
                    if who & 2 != 0 {
                        clear |= 0o2000;
                    }
                    if who & 1 != 0 {
                        clear |= 0o1000;
                    }
                    mode = (mode & !clear) | bits;
                }
            }
        }
        if !any_op {
            bail!("missing operator in clause {clause:?}");
        }
    }
    Ok(mode)
}

/// `rwx` (3 bits) placed for each of u/g/o selected in `who`.
fn spread(who: u32, rwx: u32) -> u32 {
    let mut b = 0;
    if who & 4 != 0 {
        b |= rwx << 6;
    }
    if who & 2 != 0 {
        b |= rwx << 3;
    }
    if who & 1 != 0 {
        b |= rwx;
    }
    b
}

/// Whether the (possibly compressed) file is a tar archive: its first 512 decompressed bytes
/// are a header with a valid checksum.
fn is_tar(path: &Path) -> Result<bool> {
    let file = fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut r = match crate::snapshot::decompress(io::BufReader::new(file)) {
        Ok(r) => r,
        Err(_) => return Ok(false),
    };
    let mut h = [0u8; 512];
    let mut got = 0;
    while got < h.len() {
        match r.read(&mut h[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Ok(false),
        }
    }
    if got < 512 || h.iter().all(|&b| b == 0) {
        return Ok(false);
    }
    let field: String = h[148..156]
        .iter()
        .take_while(|&&b| b != 0 && b != b' ')
        .map(|&b| b as char)
        .collect();
    let Ok(want) = u32::from_str_radix(field.trim_start_matches(' '), 8) else {
        return Ok(false);
    };
    let sum: u32 = h
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                32
            } else {
                b as u32
            }
        })
        .sum();
    Ok(sum == want)
}

/// Components of a clean absolute path (`/` → none).
/// How many leading path components `COPY --parents` drops for `source`: those before a
/// `/./` pivot, none without one.
fn parents_pivot(source: &str) -> usize {
    match source.find("/./") {
        Some(i) => split(&wbuild_parser::paths::clean_path(&format!(
            "/{}",
            &source[..i]
        )))
        .len(),
        None => 0,
    }
}

fn split(p: &str) -> Vec<String> {
    p.split('/')
        .filter(|c| !c.is_empty() && *c != "." && *c != "..")
        .map(str::to_string)
        .collect()
}

fn join(root: &Path, comps: &[String]) -> PathBuf {
    let mut p = root.to_path_buf();
    for c in comps {
        p.push(c);
    }
    p
}

/// Resolve `comps` in `rootfs` following symlinks as the container would, never leaving it: the
/// result names real directories of the rootfs (or paths that do not exist there yet).
fn resolve_in(rootfs: Option<&Path>, comps: &[String]) -> Result<Vec<String>> {
    let Some(root) = rootfs else {
        return Ok(comps.to_vec());
    };
    let mut out: Vec<String> = Vec::new();
    let mut todo: Vec<String> = comps.iter().rev().cloned().collect();
    let mut hops = 0;
    while let Some(c) = todo.pop() {
        if c == ".." {
            out.pop();
            continue;
        }
        if c.is_empty() || c == "." {
            continue;
        }
        out.push(c);
        let path = join(root, &out);
        match fs::symlink_metadata(&path) {
            Ok(md) if md.is_symlink() => {
                hops += 1;
                if hops > 40 {
                    bail!("too many levels of symbolic links at /{}", out.join("/"));
                }
                let target = fs::read_link(&path)?;
                out.pop();
                let t = target.as_os_str().as_bytes();
                if t.starts_with(b"/") {
                    out.clear();
                }
                let t = String::from_utf8_lossy(t).into_owned();
                for part in t.split('/').rev() {
                    todo.push(part.to_string());
                }
            }
            Ok(_) => {}
            Err(_) => {
                out.extend(
                    todo.drain(..)
                        .rev()
                        .filter(|c| !c.is_empty() && c != "." && c != ".."),
                );
                break;
            }
        }
    }
    Ok(out)
}

fn cstr(p: &Path) -> Result<CString> {
    Ok(CString::new(p.as_os_str().as_bytes())?)
}

/// Set atime and mtime of `path` (not following a final symlink).
pub(super) fn set_times(path: &Path, secs: i64, nsecs: i64) -> Result<()> {
    let c = cstr(path)?;
    let ts = libc::timespec {
        tv_sec: secs as _,
        tv_nsec: nsecs as _,
    };
    let times = [ts, ts];
    // SAFETY: valid path and a two-element timespec array.
    let rc = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error())
            .with_context(|| format!("utimensat {}", path.display()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
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
}
