//! `ADD <git URL>`: a repository fetched by the host with the `git` command, as BuildKit's git
//! source does. The URL names the remote and, after `#`, `REF[:SUBDIR]` (or the query form
//! `?ref=…&subdir=…&checksum=…&keep-git-dir=…`). The ref is resolved to a commit with
//! `git ls-remote` before anything is fetched: the commit (with the subdirectory and whether
//! `.git` is kept) is what the step's cache key sees, so an unchanged ref keeps the cache without
//! a clone, and a moved ref re-runs the step. `--checksum=<hex>` must be a prefix of the commit.
//! On a cache miss the commit is fetched (shallow where the remote allows), checked out with its
//! submodules, and `.git` removed unless `--keep-git-dir`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context as _, bail};

use crate::sys::{Missing, resolve_in_root};

/// A parsed git source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct GitRef {
    /// What `git` fetches from.
    pub remote: String,
    /// Branch, tag or commit; None for the remote's HEAD.
    pub reference: Option<String>,
    /// The directory of the repository that is copied (None: the whole tree).
    pub subdir: Option<String>,
    /// A commit prefix the URL itself requires (`?checksum=` / `?commit=`).
    pub checksum: Option<String>,
    /// `?keep-git-dir=`.
    pub keep_git_dir: Option<bool>,
}

/// The commit a git source resolved to, with what decides its content.
#[derive(Debug, Clone)]
pub(super) struct Resolved {
    pub git: GitRef,
    /// The full commit hash.
    pub commit: String,
    /// Keep `.git` in the copied tree.
    pub keep_git_dir: bool,
}

impl Resolved {
    /// What the step's cache key records for this source.
    pub(super) fn key(&self) -> String {
        format!(
            "git {} {} subdir={} keep-git-dir={}",
            self.git.remote,
            self.commit,
            self.git.subdir.as_deref().unwrap_or(""),
            self.keep_git_dir
        )
    }
}

/// A checked-out commit, removed when dropped.
pub(super) struct Checkout {
    _dir: tempfile::TempDir,
    /// The tree to copy: the checkout or its subdirectory.
    pub root: PathBuf,
}

/// Parses `REMOTE[#REF[:SUBDIR]]` with BuildKit's query keys.
pub(super) fn parse(url: &str) -> anyhow::Result<GitRef> {
    let (rest, fragment) = match url.split_once('#') {
        Some((r, f)) => (r, Some(f)),
        None => (url, None),
    };
    let (remote, query) = match rest.split_once('?') {
        // `git@host:repo?x` has no scheme but may still carry a query.
        Some((r, q)) => (r, Some(q)),
        None => (rest, None),
    };
    if remote.is_empty() {
        bail!("ADD {url}: the git URL names no repository");
    }
    if remote.starts_with('-') {
        bail!("ADD {url}: a git remote cannot start with '-'");
    }
    let mut git = GitRef {
        remote: remote.to_string(),
        reference: None,
        subdir: None,
        checksum: None,
        keep_git_dir: None,
    };
    if let Some(f) = fragment {
        let (r, s) = match f.split_once(':') {
            Some((r, s)) => (r, Some(s)),
            None => (f, None),
        };
        git.reference = Some(r.to_string()).filter(|r| !r.is_empty());
        git.subdir = s.map(str::to_string).filter(|s| !s.is_empty());
    }
    for pair in query.into_iter().flat_map(|q| q.split('&')) {
        if pair.is_empty() {
            continue;
        }
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let conflict = |what: &str, old: &Option<String>| -> anyhow::Result<()> {
            match old {
                Some(o) if o != v => bail!("ADD {url}: {what} conflicts: {o:?} vs {v:?}"),
                _ => Ok(()),
            }
        };
        match k {
            "ref" | "tag" | "branch" => {
                conflict("ref", &git.reference)?;
                git.reference = Some(v.to_string());
            }
            "subdir" => {
                conflict("subdir", &git.subdir)?;
                git.subdir = Some(v.to_string());
            }
            "checksum" | "commit" => git.checksum = Some(v.to_string()),
            "keep-git-dir" => {
                git.keep_git_dir = Some(match v {
                    "" | "1" | "true" => true,
                    "0" | "false" => false,
                    _ => bail!("ADD {url}: invalid keep-git-dir value {v:?}"),
                })
            }
            "submodules" => {}
            _ => bail!("ADD {url}: unknown git URL query key {k:?}"),
        }
    }
    Ok(git)
}

fn is_commit(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn git_cmd() -> Command {
    let mut c = Command::new("git");
    // Never ask the terminal for credentials in the middle of a build.
    c.env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_ASKPASS", "/bin/false")
        .stdin(Stdio::null());
    c
}

/// Runs `git args` and returns its stdout, or an error with its stderr.
fn run(cmd: &mut Command, what: &str) -> anyhow::Result<String> {
    let out = cmd.output().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            anyhow::anyhow!(
                "{what}: the `git` command is not installed (Debian: `apt-get install git`)"
            )
        } else {
            anyhow::Error::new(e).context(what.to_string())
        }
    })?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        bail!("{what}: {}", err.trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Resolves the source's ref to a commit (asking the remote unless it is already a commit)
/// and checks `checksum` (the ADD's `--checksum`) against it.
pub(super) fn resolve(
    url: &str,
    checksum: Option<&str>,
    keep_git_dir: bool,
) -> anyhow::Result<Resolved> {
    let git = parse(url)?;
    let checksum = match (checksum, git.checksum.as_deref()) {
        (Some(a), Some(b)) if a != b => bail!("ADD {url}: checksum mismatch {a:?} != {b:?}"),
        (a, b) => a.or(b).map(str::to_string),
    };
    if let Some(c) = &checksum
        && (c.is_empty() || !c.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        bail!("ADD {url}: invalid checksum {c:?} for a git URL; give a hex commit hash");
    }
    let commit = match git.reference.as_deref() {
        Some(r) if is_commit(r) => r.to_ascii_lowercase(),
        r => {
            let wanted = r.unwrap_or("HEAD");
            let out = run(
                git_cmd().args(["ls-remote", "--", &git.remote, wanted]),
                &format!("ADD {url}: asking the remote for {wanted}"),
            )?;
            pick_ref(&out, wanted).with_context(|| {
                format!("ADD {url}: the remote has no branch, tag or ref named {wanted:?}")
            })?
        }
    };
    if let Some(c) = &checksum
        && !commit.starts_with(&c.to_ascii_lowercase())
    {
        bail!("ADD {url}: expected checksum to match {c}, got commit {commit}");
    }
    Ok(Resolved {
        keep_git_dir: git.keep_git_dir.unwrap_or(keep_git_dir),
        git,
        commit,
    })
}

/// The commit `ls-remote` output names for `wanted`: a peeled tag first, then a tag, a branch,
/// or the exact ref.
fn pick_ref(ls_remote: &str, wanted: &str) -> Option<String> {
    let refs: Vec<(&str, &str)> = ls_remote
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .collect();
    let find = |name: &str| {
        refs.iter()
            .find(|(_, r)| *r == name)
            .map(|(sha, _)| sha.to_string())
    };
    find(&format!("refs/tags/{wanted}^{{}}"))
        .or_else(|| find(&format!("refs/tags/{wanted}")))
        .or_else(|| find(&format!("refs/heads/{wanted}")))
        .or_else(|| find(wanted))
}

/// Fetches and checks out the resolved commit in a temp dir under `tmp_dir`.
pub(super) fn checkout(r: &Resolved, url: &str, tmp_dir: &Path) -> anyhow::Result<Checkout> {
    let dir = tempfile::Builder::new()
        .prefix(".git-")
        .tempdir_in(tmp_dir)
        .context("creating a directory for the git checkout")?;
    let repo = dir.path().join("repo");
    let what = format!("ADD {url}: fetching {}", r.commit);
    run(git_cmd().args(["init", "-q"]).arg(&repo), &what)?;
    let in_repo = |args: &[&str]| {
        let mut c = git_cmd();
        c.arg("-C").arg(&repo).args(args);
        c
    };
    run(
        &mut in_repo(&["remote", "add", "origin", &r.git.remote]),
        &what,
    )?;
    // A shallow fetch of the commit itself, else of the ref, else everything.
    let mut fetched = false;
    let mut tries: Vec<&str> = vec![&r.commit];
    if let Some(name) = r.git.reference.as_deref().filter(|n| !is_commit(n)) {
        tries.push(name);
    }
    for want in tries {
        if run(
            &mut in_repo(&["fetch", "-q", "--depth=1", "origin", want]),
            &what,
        )
        .is_ok()
        {
            fetched = run(
                &mut in_repo(&["cat-file", "-e", &format!("{}^{{commit}}", r.commit)]),
                &what,
            )
            .is_ok();
            if fetched {
                break;
            }
        }
    }
    if !fetched {
        run(
            &mut in_repo(&[
                "fetch",
                "-q",
                "--tags",
                "origin",
                "+refs/heads/*:refs/remotes/origin/*",
            ]),
            &what,
        )?;
    }
    run(
        &mut in_repo(&["checkout", "-q", "--detach", &r.commit]),
        &format!("ADD {url}: checking out {}", r.commit),
    )?;
    if repo.join(".gitmodules").is_file() {
        run(
            &mut in_repo(&[
                "submodule",
                "update",
                "-q",
                "--init",
                "--recursive",
                "--depth=1",
            ]),
            &format!("ADD {url}: fetching submodules"),
        )?;
    }
    if !r.keep_git_dir {
        std::fs::remove_dir_all(repo.join(".git")).context("removing .git from the checkout")?;
    }
    let root = match r.git.subdir.as_deref() {
        None => repo,
        Some(sub) => {
            let comps = resolve_in_root(&repo, sub, true, Missing::Stop, "the repository")?
                .with_context(|| {
                    format!(
                        "ADD {url}: the commit {} has no directory {sub:?}",
                        r.commit
                    )
                })?;
            let path = comps.iter().fold(repo.clone(), |p, c| p.join(c));
            if !path.is_dir() {
                bail!(
                    "ADD {url}: {sub:?} is not a directory in commit {}",
                    r.commit
                );
            }
            path
        }
    };
    Ok(Checkout { _dir: dir, root })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fragments_and_queries() {
        let g = parse("https://h/r.git#v1:sub/dir").unwrap();
        assert_eq!(g.remote, "https://h/r.git");
        assert_eq!(g.reference.as_deref(), Some("v1"));
        assert_eq!(g.subdir.as_deref(), Some("sub/dir"));
        let g = parse("git@github.com:moby/buildkit.git#v0.10").unwrap();
        assert_eq!(g.remote, "git@github.com:moby/buildkit.git");
        assert_eq!(g.reference.as_deref(), Some("v0.10"));
        let g = parse("https://h/r.git?ref=main&subdir=x&keep-git-dir=true").unwrap();
        assert_eq!(
            (g.reference.as_deref(), g.subdir.as_deref(), g.keep_git_dir),
            (Some("main"), Some("x"), Some(true))
        );
        assert!(parse("https://h/r.git#a?ref=b").is_ok());
        assert!(parse("https://h/r.git?ref=a#b").is_err());
        assert!(parse("https://h/r.git?color=red").is_err());
    }

    #[test]
    fn ls_remote_prefers_peeled_tags_then_branches() {
        let out = "1111\trefs/heads/v1\n2222\trefs/tags/v1\n3333\trefs/tags/v1^{}\n4444\tHEAD\n";
        assert_eq!(pick_ref(out, "v1").as_deref(), Some("3333"));
        assert_eq!(pick_ref(out, "HEAD").as_deref(), Some("4444"));
        assert_eq!(
            pick_ref("1111\trefs/heads/main\n", "main").as_deref(),
            Some("1111")
        );
        assert_eq!(pick_ref(out, "nope"), None);
    }
}
