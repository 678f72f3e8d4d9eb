//! RUN: the step's inputs for its cache key (what its mounts read) and running it in the
//! sandbox over its parent's filesystem, its upper dir becoming the layer.

use std::collections::HashMap;

use anyhow::{Context as _, bail};

use super::mounts::MountResources;
use super::ssh::AgentProxy;
use super::{Builder, StageState};
use crate::exec::{self, ExtraMount, RunSpec};
use crate::image::config::DEFAULT_PATH;
use crate::ir::{Mount, Network, RunOp, Source};
use crate::progress::StepId;
use crate::solve::{LayerRef, StepInputs};

impl Builder<'_> {
    /// What a RUN reads besides its parent: the context files, stages and images its bind
    /// mounts (and seeded cache mounts) take files from, and the `--add-host` names (not their
    /// addresses, as BuildKit). Secrets never enter the key.
    pub(super) fn run_inputs(
        &self,
        run: &RunOp,
        deps: &HashMap<u32, StageState>,
    ) -> anyhow::Result<StepInputs> {
        let mut inputs = StepInputs {
            extra_hosts: self
                .opts
                .extra_hosts
                .iter()
                .map(|(n, _)| n.clone())
                .collect(),
            exec: self.opts.limits.describe_ulimits(),
            ..StepInputs::default()
        };
        if let Some(size) = self.opts.shm_size {
            inputs.exec.push(format!("shm-size {size}"));
        }
        let mut context_paths = Vec::new();
        for m in &run.mounts {
            let (from, path) = match m {
                Mount::Bind(b) => (&b.from, b.source_path.as_str()),
                Mount::Cache(c) => match &c.from {
                    Some(f) => (f, c.source_path.as_deref().unwrap_or("/")),
                    None => continue,
                },
                _ => continue,
            };
            if matches!(from, Source::Context) {
                context_paths.push(path.to_string());
            } else {
                self.add_source_input(from, deps, &mut inputs)?;
            }
        }
        if !context_paths.is_empty() {
            let matches = self
                .context
                .resolve_sources(&context_paths, &[])
                .context("RUN --mount source")?;
            let mut memo = self.memo.lock().unwrap();
            inputs.context = Some(self.context.digest(&matches, &mut memo)?);
        }
        Ok(inputs)
    }

    pub(super) fn run_step(
        &self,
        state: &mut StageState,
        run: &RunOp,
        deps: &HashMap<u32, StageState>,
        id: StepId,
    ) -> anyhow::Result<Option<LayerRef>> {
        let lowers_span = crate::progress::profile::span("run: lowers");
        let lowers = match self.stack_lowers(state)? {
            Some(lowers) => lowers,
            None => vec![self.rootfs(state)?],
        };
        drop(lowers_span);
        let cfg = state.config.image().config.clone();
        let mut env: Vec<(String, String)> = state
            .config
            .image()
            .env_pairs()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        if !env.iter().any(|(k, _)| k == "PATH") {
            env.push(("PATH".into(), DEFAULT_PATH.into()));
        }
        for kv in &run.extra_env {
            env.retain(|(k, _)| *k != kv.key);
            env.push((kv.key.clone(), kv.value.clone()));
        }
        // Temp dirs and locks the mounts need until the command has finished.
        let mut keep = MountResources::default();
        let mut mounts = Vec::new();
        if let Some(size) = self.opts.shm_size {
            // `--shm-size`, as BuildKit: a tmpfs of that size on /dev/shm (mounts of the RUN
            // itself come after it).
            mounts.push(ExtraMount::Tmpfs {
                target: "/dev/shm".into(),
                size: Some(size),
            });
        }
        let mut ssh_env_set = false;
        for m in &run.mounts {
            match m {
                Mount::Tmpfs(t) => mounts.push(ExtraMount::Tmpfs {
                    target: t.target.clone(),
                    size: t.size,
                }),
                Mount::Text(t) => mounts.push(ExtraMount::File {
                    target: t.target.clone(),
                    content: t.content.clone().into_bytes(),
                    mode: t.mode,
                    uid: 0,
                    gid: 0,
                }),
                Mount::Bind(b) => mounts.push(self.bind_mount(b, deps, &mut keep)?),
                Mount::Cache(c) => mounts.push(self.cache_mount(c, deps, &mut keep)?),
                Mount::Secret(s) => {
                    let Some(value) = self.secret_value(&s.id)? else {
                        if s.required {
                            bail!(
                                "RUN --mount=type=secret,id={id}: the secret {id:?} is required \
                                 but was not provided; pass it with `--secret id={id},src=PATH` \
                                 (or `--secret id={id},env=VAR`)",
                                id = s.id
                            );
                        }
                        continue;
                    };
                    if let Some(var) = &s.env {
                        let text = String::from_utf8(value.clone()).with_context(|| {
                            format!(
                                "secret {:?} is not UTF-8 text, so it cannot go in ${var}",
                                s.id
                            )
                        })?;
                        env.retain(|(k, _)| k != var);
                        env.push((var.clone(), text));
                    }
                    if s.target.is_some() || s.env.is_none() {
                        let target = s
                            .target
                            .clone()
                            .unwrap_or_else(|| format!("/run/secrets/{}", s.id));
                        mounts.push(ExtraMount::File {
                            target,
                            content: value,
                            mode: s.mode,
                            uid: s.uid,
                            gid: s.gid,
                        });
                    }
                }
                Mount::Ssh(s) => {
                    let Some(socket) = self.opts.ssh.iter().find(|(id, _)| *id == s.id) else {
                        if s.required {
                            bail!(
                                "RUN --mount=type=ssh,id={id}: no SSH agent {id:?} was given; \
                                 pass one with `--ssh {id}` (the agent of $SSH_AUTH_SOCK) or \
                                 `--ssh {id}=/path/to/agent.sock`",
                                id = s.id
                            );
                        }
                        continue;
                    };
                    // A proxy socket of the step's own is bound into the container; the first ssh mount is
                    // the one SSH_AUTH_SOCK names, as in BuildKit. Never part of the key.
                    if !ssh_env_set {
                        env.retain(|(k, _)| k != "SSH_AUTH_SOCK");
                        env.push(("SSH_AUTH_SOCK".into(), s.target.clone()));
                        ssh_env_set = true;
                    }
                    let proxy =
                        AgentProxy::start(&socket.1, &self.store.tmp_dir(), s.uid, s.gid, s.mode)?;
                    mounts.push(ExtraMount::Bind {
                        source: proxy.socket().to_path_buf(),
                        target: s.target.clone(),
                        readonly: false,
                    });
                    keep.proxies.push(proxy);
                }
            }
        }
        let work = tempfile::Builder::new()
            .prefix(".run-")
            .tempdir_in(self.store.tmp_dir())?;
        let upper = work.path().join("upper");
        let ovl_work = work.path().join("work");
        std::fs::create_dir_all(&upper)?;
        std::fs::create_dir_all(&ovl_work)?;
        let state_dir = self.store.exec_dir();
        let network = match run.network {
            Network::None => exec::Network::None,
            Network::Host => exec::Network::Host,
            Network::Default => exec::Network::UserMode {
                netns: self.network.netns(&state_dir)?,
            },
        };
        let spec = RunSpec {
            state_dir,
            rootfs_lowers: lowers,
            upper: upper.clone(),
            work: ovl_work,
            args: run.args.clone(),
            env,
            cwd: cfg
                .working_dir
                .clone()
                .filter(|w| !w.is_empty())
                .unwrap_or("/".into()),
            user: cfg.user.clone().unwrap_or_default(),
            hostname: "wbuild".into(),
            network,
            mounts,
            limits: self.opts.limits,
            extra_hosts: self.opts.extra_hosts.clone(),
            // Refused before the build unless the user allowed it (graph::entitlements).
            privileged: run.security == crate::ir::Security::Insecure,
        };
        let outcome = exec::run(&spec, &mut |chunk: &[u8]| {
            self.progress.step_output(id, chunk)
        })?;
        if !outcome.success() {
            let why = match (outcome.exit_code, self.opts.limits.memory) {
                (137, Some(m)) => format!(
                    " (killed by SIGKILL: the cgroup's out-of-memory killer stops a step that \
                     needs more than --memory {m} bytes)"
                ),
                _ => String::new(),
            };
            bail!("the command exited with code {}{why}", outcome.exit_code);
        }
        let below = self.below_for_diff(state)?;
        let layer = self.layer_from_over(&upper, below.as_deref())?;
        drop(keep);
        Ok(layer)
    }
}
