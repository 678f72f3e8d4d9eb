//! The build context: a directory on the host that COPY/ADD read from, filtered by
//! `.dockerignore`, never read outside of, and hashed by content for cache keys.
//!
//! This file owns [`Context`] (open a root, resolve COPY sources, digest them) and the types it
//! hands out ([`Match`], [`Entry`], [`FileKind`]). Pattern matching lives in `pattern`, ignore
//! rules in `ignore`, in-root resolution and the walk in `resolve`, hashing and the stat-keyed
//! memo in `hash`.

mod globstar;
mod hash;
mod ignore;
mod parallel;
mod pattern;
mod resolve;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};

pub use hash::HashMemo;
pub use ignore::IgnoreRules;

/// Type of a context entry (as `lstat` sees it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FileKind {
    Dir = b'd',
    File = b'f',
    Symlink = b'l',
    /// fifo, socket or device node (see [`Entry::mode`] and [`Entry::rdev`]).
    Other = b'o',
}

/// One object a COPY source contributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Path relative to the match (`""` is the match itself), `/`-separated.
    pub rel: String,
    /// Physical path relative to the context root, free of symlinks: open it as
    /// `ctx.root().join(physical)` (without following a final symlink).
    pub physical: String,
    pub kind: FileKind,
    /// Full `st_mode` (type and permission bits).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Size of regular files, 0 otherwise.
    pub size: u64,
    pub rdev: u64,
    pub mtime_ns: i128,
    /// What the walk's `lstat` saw, for the hash memo.
    pub stat: crate::sys::FileStat,
    /// Target of a symlink, as stored in the link (copied verbatim, never followed).
    pub link_target: Option<PathBuf>,
}

/// One object named by a COPY source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Match {
    /// The COPY source as written.
    pub source: String,
    /// Path relative to the root as named (after clamping, with glob components expanded):
    /// its last component is the name a file source gets at the destination.
    pub path: String,
    /// Physical path relative to the root (differs from `path` when symlinks were followed).
    pub resolved: String,
    /// The match itself (`rel == ""`) followed, for a directory, by everything under it that is
    /// neither ignored nor excluded, in walk order (names sorted within each directory).
    pub entries: Vec<Entry>,
}

impl Match {
    /// Type of the matched object (a directory source means its contents).
    #[cfg(test)]
    pub fn kind(&self) -> FileKind {
        self.entries[0].kind
    }
}

/// An opened build context: canonical root plus its `.dockerignore` rules.
#[derive(Debug, Clone)]
pub struct Context {
    root: PathBuf,
    ignore: IgnoreRules,
}

impl Context {
    /// Opens the context at `root` (canonicalized; must be a directory) and loads
    /// `.dockerignore` from it.
    pub fn open(root: &Path) -> Result<Context> {
        let root = root
            .canonicalize()
            .with_context(|| format!("build context {}", root.display()))?;
        if !root.is_dir() {
            bail!("build context {} is not a directory", root.display());
        }
        let ignore = IgnoreRules::load(&root)?;
        Ok(Context { root, ignore })
    }

    /// Opens the context with explicit ignore rules (e.g. a Dockerfile-specific ignore file).
    pub fn with_rules(root: &Path, ignore: IgnoreRules) -> Result<Context> {
        let mut ctx = Context::open(root)?;
        ctx.ignore = ignore;
        Ok(ctx)
    }

    /// The canonical root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The `.dockerignore` rules in force.
    pub fn ignore_rules(&self) -> &IgnoreRules {
        &self.ignore
    }

    /// Host path of an entry (the physical path joined onto the root).
    pub fn host_path(&self, entry: &Entry) -> PathBuf {
        if entry.physical.is_empty() {
            self.root.clone()
        } else {
            self.root.join(&entry.physical)
        }
    }

    /// Reads a file by context-relative name ignoring `.dockerignore` (Docker still sends an
    /// ignored Dockerfile or `.dockerignore` to the builder), following symlinks only within the
    /// root. `None` if it does not exist.
    #[cfg(test)]
    pub fn read_unfiltered(&self, rel: &str) -> Result<Option<Vec<u8>>> {
        resolve::read_in_root(&self.root, rel)
    }

    /// Resolves COPY sources as Docker does: each is a path or a per-component glob relative
    /// to the root (`..` and a leading `/` clamped at the root); ignored files are invisible;
    /// a source that names nothing is an error "COPY source not found: <source>"; a directory
    /// source stands for its contents; a source naming a symlink whose target exists within
    /// the root is followed, every other symlink is kept as a symlink. `excludes`
    /// (`COPY --exclude`) are Docker patterns matched against each match's name and against
    /// the paths below a directory match relative to it.
    pub fn resolve_sources(&self, patterns: &[String], excludes: &[String]) -> Result<Vec<Match>> {
        self.resolve_copy_sources(patterns, excludes, false)
    }

    /// [`Context::resolve_sources`] for a COPY with or without `--parents`. With it, as
    /// BuildKit's include patterns: a `**` component after the `/./` pivot (or anywhere
    /// without one) matches zero or more directories, and `excludes` are matched against paths
    /// relative to the pivot (or the root).
    pub fn resolve_copy_sources(
        &self,
        patterns: &[String],
        excludes: &[String],
        parents: bool,
    ) -> Result<Vec<Match>> {
        let excl = IgnoreRules::from_patterns(excludes).context("COPY --exclude")?;
        let mut out = Vec::new();
        for source in patterns {
            let pivot = parents.then(|| globstar::pivot_components(source));
            let found = resolve::find_source(&self.root, &self.ignore, source, pivot)?;
            if found.is_empty() {
                bail!("COPY source not found: {source}");
            }
            for f in found {
                let prefix = match pivot {
                    Some(p) => f.logical.split('/').skip(p).collect::<Vec<_>>().join("/"),
                    None => f.path_base().to_string(),
                };
                if !prefix.is_empty() && excl.is_excluded(&prefix, false) {
                    continue;
                }
                let md = std::fs::symlink_metadata(self.root.join(&f.physical))
                    .with_context(|| format!("COPY source {source}"))?;
                let mut entries = vec![resolve::entry_for(&self.root, &f.physical, "", &md)?];
                if md.is_dir() {
                    let filters = resolve::Filters {
                        ignore: &self.ignore,
                        excludes: &excl,
                        exclude_prefix: if pivot.is_some() { &prefix } else { "" },
                    };
                    resolve::walk(&self.root, &filters, &f.physical, "", &mut entries)?;
                }
                out.push(Match {
                    source: source.clone(),
                    path: f.logical,
                    resolved: f.physical,
                    entries,
                });
            }
        }
        Ok(out)
    }

    /// Content digest (`sha256:<hex>`) of the matches for cache keys: over each match's path and
    /// every entry's relative path, type, mode, uid/gid, symlink target and file content.
    /// File contents come from `memo` when all stat fields are unchanged.
    pub fn digest(&self, matches: &[Match], memo: &mut HashMemo) -> Result<String> {
        hash::digest(&self.root, matches, memo)
    }
}

impl resolve::Found {
    fn path_base(&self) -> &str {
        self.logical.rsplit('/').next().unwrap_or("")
    }
}
