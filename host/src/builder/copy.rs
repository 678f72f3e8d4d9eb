//! COPY and ADD: the step's inputs for its cache key (context file digests, source stages and
//! images, fetched URLs, resolved git commits) and the step itself, which stages the copied files
//! ([`super::staging`]) and writes them as a layer.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::bail;

use super::{Builder, StageState, git, link, remote, staging};
use crate::context::{Context, IgnoreRules};
use crate::ir::{CopyOp, CopySource, Source};
use crate::solve::{LayerRef, StepInputs};

impl Builder<'_> {
    pub(super) fn copy_inputs(
        &self,
        copy: &CopyOp,
        deps: &HashMap<u32, StageState>,
    ) -> anyhow::Result<StepInputs> {
        let mut inputs = StepInputs::default();
        for s in &copy.sources {
            match s {
                CopySource::Url(url) => {
                    let d = self.download(url, copy)?;
                    inputs.remote.push(format!("{url} {} {}", d.name, d.digest));
                }
                CopySource::Git(url) => inputs.remote.push(self.git_commit(url, copy)?.key()),
                _ => {}
            }
        }
        if matches!(copy.from, Source::Context) {
            let paths = path_sources(copy)?;
            if !paths.is_empty() {
                let walk = crate::progress::profile::span("copy: context walk");
                let matches =
                    self.context
                        .resolve_copy_sources(&paths, &copy.excludes, copy.parents)?;
                drop(walk);
                let _hash = crate::progress::profile::span("copy: context hash");
                let mut memo = self.memo.lock().unwrap();
                inputs.context = Some(self.context.digest(&matches, &mut memo)?);
            }
        } else {
            self.add_source_input(&copy.from, deps, &mut inputs)?;
        }
        Ok(inputs)
    }

    /// The file `ADD <url>` names, fetched once per build (its digest keys the step).
    pub(super) fn download(
        &self,
        url: &str,
        copy: &CopyOp,
    ) -> anyhow::Result<Arc<remote::Download>> {
        if let Some(d) = self.downloads.lock().unwrap().get(url) {
            return Ok(d.clone());
        }
        let checksum = copy.add.as_ref().and_then(|a| a.checksum.as_deref());
        let d = self.fetch_step(&format!("fetching {url}"), || {
            remote::download(url, checksum, &self.store.tmp_dir())
        })?;
        let d = Arc::new(d);
        self.downloads
            .lock()
            .unwrap()
            .insert(url.to_string(), d.clone());
        Ok(d)
    }

    /// The commit `ADD <git URL>` resolves to, asked of the remote once per build.
    pub(super) fn git_commit(&self, url: &str, copy: &CopyOp) -> anyhow::Result<git::Resolved> {
        if let Some(r) = self.git_commits.lock().unwrap().get(url) {
            return Ok(r.clone());
        }
        if copy.sources.len() != 1 {
            bail!("ADD {url}: a git repository must be the only source of its ADD");
        }
        let add = copy.add.as_ref();
        let checksum = add.and_then(|a| a.checksum.as_deref());
        let keep = add.is_some_and(|a| a.keep_git_dir);
        let r = self.fetch_step(&format!("resolving {url}"), || {
            git::resolve(url, checksum, keep)
        })?;
        self.git_commits
            .lock()
            .unwrap()
            .insert(url.to_string(), r.clone());
        Ok(r)
    }

    /// Runs `work` (a fetch on the host) as a progress step of its own named `label`.
    fn fetch_step<T>(
        &self,
        label: &str,
        work: impl FnOnce() -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        let id = self.progress.step_started(label);
        match work() {
            Ok(v) => {
                self.progress.step_done(id);
                Ok(v)
            }
            Err(e) => {
                self.progress.step_failed(id, &format!("{e:#}"));
                Err(e)
            }
        }
    }

    pub(super) fn copy_step(
        &self,
        state: &mut StageState,
        copy: &CopyOp,
        deps: &HashMap<u32, StageState>,
    ) -> anyhow::Result<Option<LayerRef>> {
        let linked = link::is_linked(copy);
        if linked {
            link::check_chown(copy)?;
        }
        let parent = if linked {
            None
        } else {
            Some(self.rootfs(state)?)
        };
        let mut source_ctx = self.source_root(&copy.from, deps)?;
        // A git source is copied like a directory of the build context: its tree's contents.
        let mut git_sources = Vec::new();
        let mut _checkout = None;
        if let Some(CopySource::Git(url)) = copy.sources.first() {
            let resolved = self.git_commit(url, copy)?;
            let co = git::checkout(&resolved, url, &self.store.tmp_dir())?;
            source_ctx = Some(Context::with_rules(&co.root, IgnoreRules::default())?);
            git_sources.push("/".to_string());
            _checkout = Some(co);
        }
        let from = source_ctx.as_ref().unwrap_or(&self.context);
        let from_context = matches!(copy.from, Source::Context) && git_sources.is_empty();
        let unpack_urls = copy.add.as_ref().and_then(|a| a.unpack) == Some(true);
        let mut downloads = Vec::new();
        for s in &copy.sources {
            if let CopySource::Url(url) = s {
                downloads.push(self.download(url, copy)?);
            }
        }
        let mut downloads = downloads.iter();
        let inline: Vec<staging::LiteralFile> = copy
            .sources
            .iter()
            .filter_map(|s| match s {
                CopySource::Inline(f) => Some(staging::LiteralFile {
                    name: &f.name,
                    content: staging::LiteralContent::Text(&f.content),
                    mode: 0o644,
                    mtime: None,
                    unpack: false,
                }),
                CopySource::Url(_) => downloads.next().map(|d| staging::LiteralFile {
                    name: &d.name,
                    content: staging::LiteralContent::File(d.path()),
                    mode: 0o600,
                    mtime: d.mtime,
                    unpack: unpack_urls,
                }),
                _ => None,
            })
            .collect();
        let mut sources = path_sources(copy)?;
        sources.extend(git_sources);
        let workdir = state
            .config
            .image()
            .config
            .working_dir
            .clone()
            .unwrap_or_else(|| "/".into());
        let staging = tempfile::Builder::new()
            .prefix(".copy-")
            .tempdir_in(self.store.tmp_dir())?;
        let stage_span = crate::progress::profile::span("copy: stage");
        staging::stage_copy(
            &staging::CopyRequest {
                from,
                from_context,
                sources: &sources,
                inline: &inline,
                excludes: &copy.excludes,
                dest: &copy.dest,
                workdir: &workdir,
                parent_rootfs: parent.as_deref(),
                chown: copy.chown.as_deref(),
                chmod: copy.chmod.as_ref(),
                parents: copy.parents,
                unpack: copy.add.as_ref().is_some_and(|a| a.unpack.unwrap_or(true)),
            },
            staging.path(),
        )?;
        drop(stage_span);
        self.layer_from_staged(staging)
    }
}

/// The path sources of a COPY or ADD (URLs, git repositories and heredocs are handled apart).
pub(super) fn path_sources(copy: &CopyOp) -> anyhow::Result<Vec<String>> {
    Ok(copy
        .sources
        .iter()
        .filter_map(|s| match s {
            CopySource::Path(p) => Some(p.clone()),
            _ => None,
        })
        .collect())
}
