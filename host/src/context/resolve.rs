//! Path resolution confined to the context root, COPY source lookup (literal paths and
//! per-component globs) and the filtered directory walk that lists what a source contributes.
//!
//! Every path this module hands out is *physical*: relative to the root and free of symlinks,
//! because each component is `lstat`ed and symlinks are expanded by hand with `..` clamped at
//! the root and absolute targets taken relative to the root. So joining a physical path onto
//! the root never leaves it (short of a concurrent rename, which the caller must not race).

use std::ffi::OsStr;
use std::fs::{self, File, Metadata, OpenOptions};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, anyhow};

use super::ignore::IgnoreRules;
use super::pattern::{Pattern, clamp_to_root, has_meta};
use super::{Entry, FileKind};
use crate::sys::{self, Missing};

pub(crate) fn join(a: &str, b: &str) -> String {
    if a.is_empty() {
        b.to_string()
    } else if b.is_empty() {
        a.to_string()
    } else {
        format!("{a}/{b}")
    }
}

fn abs(root: &Path, rel: &str) -> PathBuf {
    if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(rel)
    }
}

fn not_found(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENOTDIR)
}

fn lstat(root: &Path, rel: &str) -> io::Result<Option<Metadata>> {
    match fs::symlink_metadata(abs(root, rel)) {
        Ok(m) => Ok(Some(m)),
        Err(e) if not_found(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

fn utf8(name: &OsStr, parent: &Path) -> Result<String> {
    name.to_str().map(str::to_string).ok_or_else(|| {
        anyhow!(
            "non-UTF-8 file name in build context: {}",
            parent.join(name).display()
        )
    })
}

/// Resolves `rel` inside `root`, following symlinks (the final component only if
/// `follow_final`) without ever leaving the root. Returns the physical relative path (`""` for
/// the root), or `None` if a component does not exist or a non-final one is not a directory.
pub(crate) fn resolve_in_root(
    root: &Path,
    rel: &str,
    follow_final: bool,
) -> Result<Option<String>> {
    Ok(
        sys::resolve_in_root(root, rel, follow_final, Missing::Stop, "the build context")?
            .map(|c| c.join("/")),
    )
}

/// Opens a regular file at physical path `rel` without following a final symlink.
pub(crate) fn open_regular(root: &Path, rel: &str) -> Result<(File, Metadata)> {
    let path = abs(root, rel);
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NOCTTY | libc::O_NONBLOCK)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    let md = f.metadata()?;
    if !md.is_file() {
        return Err(anyhow!("{} is not a regular file", path.display()));
    }
    Ok((f, md))
}

/// Reads a file of the context by name, following symlinks only within the root; `None` when
/// it does not exist. Ignore rules do not apply (used for `.dockerignore` and the Dockerfile).
pub(crate) fn read_in_root(root: &Path, rel: &str) -> Result<Option<Vec<u8>>> {
    let Some(phys) = resolve_in_root(root, &clamp_to_root(rel), true)? else {
        return Ok(None);
    };
    let (mut f, _) = open_regular(root, &phys)?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf)?;
    Ok(Some(buf))
}

/// Describes the object at physical path `phys` as an [`Entry`] named `rel`.
pub(crate) fn entry_for(root: &Path, phys: &str, rel: &str, md: &Metadata) -> Result<Entry> {
    let ft = md.file_type();
    let kind = if ft.is_dir() {
        FileKind::Dir
    } else if ft.is_file() {
        FileKind::File
    } else if ft.is_symlink() {
        FileKind::Symlink
    } else {
        FileKind::Other
    };
    let link_target = if kind == FileKind::Symlink {
        Some(fs::read_link(abs(root, phys))?)
    } else {
        None
    };
    Ok(Entry {
        rel: rel.to_string(),
        physical: phys.to_string(),
        kind,
        mode: md.mode(),
        uid: md.uid(),
        gid: md.gid(),
        size: if kind == FileKind::File { md.size() } else { 0 },
        rdev: md.rdev(),
        mtime_ns: md.mtime() as i128 * 1_000_000_000 + md.mtime_nsec() as i128,
        stat: crate::sys::FileStat::of(md),
        link_target,
    })
}

/// Filters applied while walking: the context's ignore rules (on physical paths relative to
/// the root) and a COPY's `--exclude` rules (on paths relative to the source).
pub(crate) struct Filters<'a> {
    pub ignore: &'a IgnoreRules,
    pub excludes: &'a IgnoreRules,
    /// Prepended to the relative path the excludes see (`COPY --parents` matches them from
    /// the `/./` pivot, or the root, as BuildKit's copier does).
    pub exclude_prefix: &'a str,
}

/// Appends the entries below physical directory `phys_dir` (named `rel_dir` relative to the
/// source) in name order. Excluded directories are skipped when no re-include could reach
/// inside them, otherwise they appear only if something inside them is included. From the
/// first directory with two subdirectories or more on, the subtrees are walked on several
/// threads (the walk is mostly `statx`; the result is in the same order either way).
pub(crate) fn walk(
    root: &Path,
    f: &Filters<'_>,
    phys_dir: &str,
    rel_dir: &str,
    out: &mut Vec<Entry>,
) -> Result<()> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(WALK_THREADS);
    walk_in(root, f, phys_dir, rel_dir, out, threads)
}

/// At most this many threads walk one source.
const WALK_THREADS: usize = 4;

/// What one directory entry contributes to a walk.
enum Item {
    /// A file, symlink or other non-directory that is not excluded.
    Leaf(Entry),
    /// A directory to descend into; `hidden`: excluded itself, so it appears only if something
    /// inside it is included.
    Dir {
        entry: Entry,
        phys: String,
        rel: String,
        hidden: bool,
    },
}

fn walk_in(
    root: &Path,
    f: &Filters<'_>,
    phys_dir: &str,
    rel_dir: &str,
    out: &mut Vec<Entry>,
    threads: usize,
) -> Result<()> {
    let dir_path = abs(root, phys_dir);
    let mut names = Vec::new();
    for e in fs::read_dir(&dir_path).with_context(|| format!("reading {}", dir_path.display()))? {
        let e = e?;
        // fstatat on the open directory: no lookup of the whole path per entry.
        let md = match e.metadata() {
            Ok(md) => md,
            Err(err) if not_found(&err) => continue, // vanished during the walk
            Err(err) => {
                return Err(err).with_context(|| format!("stat {}", e.path().display()));
            }
        };
        names.push((utf8(&e.file_name(), &dir_path)?, md));
    }
    names.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    let mut items = Vec::with_capacity(names.len());
    for (name, md) in names {
        let phys = join(phys_dir, &name);
        let rel = join(rel_dir, &name);
        let is_dir = md.is_dir();
        let ig = f.ignore.is_excluded(&phys, is_dir);
        let ex_rel = join(f.exclude_prefix, &rel);
        let ex = f.excludes.is_excluded(&ex_rel, is_dir);
        if is_dir {
            if (ig && f.ignore.can_skip_dir(&phys)) || (ex && f.excludes.can_skip_dir(&ex_rel)) {
                continue;
            }
            let entry = entry_for(root, &phys, &rel, &md)?;
            items.push(Item::Dir {
                entry,
                phys,
                rel,
                hidden: ig || ex,
            });
        } else if !(ig || ex) {
            items.push(Item::Leaf(entry_for(root, &phys, &rel, &md)?));
        }
    }
    let dirs: Vec<(&str, &str)> = items
        .iter()
        .filter_map(|i| match i {
            Item::Dir { phys, rel, .. } => Some((phys.as_str(), rel.as_str())),
            Item::Leaf(_) => None,
        })
        .collect();
    let mut inside: Vec<Vec<Entry>> = if threads > 1 && dirs.len() >= 2 {
        walk_subtrees(root, f, &dirs, threads)?
    } else {
        dirs.iter()
            .map(|(phys, rel)| {
                let mut v = Vec::new();
                walk_in(root, f, phys, rel, &mut v, threads).map(|()| v)
            })
            .collect::<Result<_>>()?
    };
    let mut inside = inside.drain(..);
    for item in items {
        match item {
            Item::Leaf(e) => out.push(e),
            Item::Dir { entry, hidden, .. } => {
                let below = inside.next().expect("one walk per directory");
                if hidden && below.is_empty() {
                    continue;
                }
                out.push(entry);
                out.extend(below);
            }
        }
    }
    Ok(())
}

/// The walks of `dirs` (physical, relative), each on its own, on up to `threads` threads
/// taking the next directory as they finish one; results in the order of `dirs`.
fn walk_subtrees(
    root: &Path,
    f: &Filters<'_>,
    dirs: &[(&str, &str)],
    threads: usize,
) -> Result<Vec<Vec<Entry>>> {
    super::parallel::map(dirs, threads, |(phys, rel)| {
        let mut v = Vec::new();
        walk_in(root, f, phys, rel, &mut v, 1).map(|()| v)
    })
    // The first error in order is the one reported.
    .into_iter()
    .collect()
}

/// Whether physical path `phys` is visible through the ignore rules: not excluded, or an
/// excluded directory that still holds re-included entries (sent as their parent).
fn visible(root: &Path, ignore: &IgnoreRules, phys: &str, md: &Metadata) -> Result<bool> {
    if !ignore.is_excluded(phys, md.is_dir()) {
        return Ok(true);
    }
    if !md.is_dir() || ignore.can_skip_dir(phys) {
        return Ok(false);
    }
    let none = IgnoreRules::default();
    let mut inside = Vec::new();
    walk(
        root,
        &Filters {
            ignore,
            excludes: &none,
            exclude_prefix: "",
        },
        phys,
        "",
        &mut inside,
    )?;
    Ok(!inside.is_empty())
}

/// One source path found for a COPY source: its logical name (as the user would see it) and
/// its physical location, both relative to the root.
pub(crate) struct Found {
    pub logical: String,
    pub physical: String,
}

/// Resolves one COPY source (literal path or per-component glob) to the visible objects it
/// names, in name order. `..` and a leading `/` are clamped at the root. From component
/// `globstar_from` on (`COPY --parents`), a `**` component matches zero or more directories.
pub(crate) fn find_source(
    root: &Path,
    ignore: &IgnoreRules,
    source: &str,
    globstar_from: Option<usize>,
) -> Result<Vec<Found>> {
    let cleaned = clamp_to_root(source);
    let comps: Vec<&str> = if cleaned.is_empty() {
        Vec::new()
    } else {
        cleaned.split('/').collect()
    };
    // (logical, physical of the directory reached so far)
    let mut states = vec![(String::new(), String::new())];
    let mut globbed = false;
    for (i, comp) in comps.iter().enumerate() {
        let last = i + 1 == comps.len();
        if *comp == "**" && globstar_from.is_some_and(|from| i >= from) {
            globbed = true;
            if !last {
                states = super::globstar::with_descendant_dirs(root, ignore, states)?;
            }
            // A trailing `**` names everything below: the directories reached so far.
            continue;
        }
        let mut next = Vec::new();
        for (logical, phys) in states {
            let names: Vec<String> = if has_meta(comp) {
                let pat = Pattern::component(comp)
                    .with_context(|| format!("bad COPY source pattern {source:?}"))?;
                let dir_path = abs(root, &phys);
                let mut names = Vec::new();
                for e in fs::read_dir(&dir_path)
                    .with_context(|| format!("reading {}", dir_path.display()))?
                {
                    let name = utf8(&e?.file_name(), &dir_path)?;
                    if pat.matches(&name) {
                        names.push(name);
                    }
                }
                names.sort_unstable();
                names
            } else {
                vec![comp.to_string()]
            };
            for name in names {
                let child_logical = join(&logical, &name);
                let child = join(&phys, &name);
                if last {
                    if let Some(p) = resolve_final(root, ignore, &child)? {
                        next.push((child_logical, p));
                    }
                } else if let Some(p) = resolve_in_root(root, &child, true)?
                    && lstat(root, &p)?.is_some_and(|m| m.is_dir())
                {
                    next.push((child_logical, p));
                }
            }
        }
        states = next;
    }
    let mut found = Vec::new();
    for (logical, physical) in states {
        if comps.is_empty() {
            // the root itself
            found.push(Found { logical, physical });
            continue;
        }
        if logical != physical && ignore.is_excluded(&logical, false) {
            continue;
        }
        found.push(Found { logical, physical });
    }
    if globbed {
        found = super::globstar::outermost(found);
    }
    Ok(found)
}

/// The final component of a source: a symlink is followed when its target, resolved within
/// the root, exists and is visible; otherwise the symlink itself is the source.
fn resolve_final(root: &Path, ignore: &IgnoreRules, phys: &str) -> Result<Option<String>> {
    let Some(md) = lstat(root, phys)? else {
        return Ok(None);
    };
    if md.file_type().is_symlink()
        && let Some(target) = resolve_in_root(root, phys, true)?
        && let Some(tmd) = lstat(root, &target)?
        && visible(root, ignore, &target, &tmd)?
    {
        return Ok(Some(target));
    }
    Ok(visible(root, ignore, phys, &md)?.then(|| phys.to_string()))
}

/// Bytes of a symlink target, for hashing.
pub(crate) fn os_bytes(p: &Path) -> &[u8] {
    p.as_os_str().as_bytes()
}
