//! COPY/ADD staging: [`stage_copy`] writes exactly what one COPY/ADD adds into an empty
//! directory that then becomes the step's layer (diffed like an overlay upperdir), with Docker
//! BuildKit's destination, ownership, `--chmod`, `--parents` and ADD-unpack semantics.

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};

mod perms;

pub(super) use perms::resolve_chown;
use perms::{apply_symbolic, meta};

use crate::context::{Context, Entry, FileKind, Match};
use crate::ir::FileMode;
use crate::sys::{self, Missing};

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
    if let Some((uid, gid)) = owner
        && let Some(e) = crate::userns::owner_error(
            &format!("--chown={} is the owner", req.chown.unwrap_or_default()),
            uid.into(),
            gid.into(),
        )
    {
        return Err(e);
    }
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
                let c = sys::cstr(&path)?;
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
    Ok(
        sys::resolve_in_root(root, &comps.join("/"), true, Missing::Lexical, "the image")?
            .unwrap_or_default(),
    )
}

/// Set atime and mtime of `path` (not following a final symlink).
fn set_times(path: &Path, secs: i64, nsecs: i64) -> Result<()> {
    sys::set_times(None, &sys::cstr(path)?, secs, nsecs)
        .with_context(|| format!("utimensat {}", path.display()))
}

#[cfg(test)]
mod tests;
