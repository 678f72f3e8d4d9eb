//! `--load`: the built image into the local Docker engine through its API (the `bollard`
//! client; `DOCKER_HOST`, default `unix:///var/run/docker.sock`), as buildx does. The archive is
//! the one `-o type=docker` writes (OCI layout plus `manifest.json`), streamed into
//! `POST /images/load` while it is made: the layers go as they are in the store, so nothing is
//! compressed again (the engine unpacks them once). When the engine already holds the image
//! (its ID is the config digest) nothing is sent and the names are only tagged.

use std::error::Error as _;
use std::io::{self, Write};
use std::time::Duration;

use anyhow::{Context as _, bail};
use bollard::Docker;
use bollard::query_parameters::{ImportImageOptions, TagImageOptions};
use bytes::Bytes;
use futures_util::StreamExt as _;

use super::{BlobSource, ExportOptions, export_tar_to};

/// What `--load` did.
#[derive(Debug, PartialEq, Eq)]
pub enum Loaded {
    /// The archive was sent.
    Sent,
    /// The engine had the image already; only its names were set.
    Tagged,
}

/// Where the engine is, for messages.
fn engine_address() -> String {
    std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into())
}

/// A connection error as the user should read it: no engine, or no permission on its socket.
fn explain(e: bollard::errors::Error) -> anyhow::Error {
    let addr = engine_address();
    if let bollard::errors::Error::SocketNotFoundError(path) = &e {
        return anyhow::anyhow!(
            "--load: no Docker engine: {path} does not exist (start dockerd, or set DOCKER_HOST \
             to the engine's address)"
        );
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = e.source();
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<io::Error>() {
            match io.kind() {
                io::ErrorKind::PermissionDenied => {
                    return anyhow::anyhow!(
                        "--load: no permission on the Docker socket {addr}: run as root or as a \
                         member of the docker group"
                    );
                }
                io::ErrorKind::ConnectionRefused | io::ErrorKind::NotFound => {
                    return anyhow::anyhow!(
                        "--load: no Docker engine answers at {addr} (start dockerd, or set \
                         DOCKER_HOST)"
                    );
                }
                _ => {}
            }
        }
        source = s.source();
    }
    anyhow::anyhow!("--load: the Docker engine at {addr}: {e}")
}

/// `name[:tag]` split for the tag API (a `:` after the last `/` starts the tag).
fn repo_tag(name: &str) -> (String, String) {
    match name.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo.to_string(), tag.to_string()),
        _ => (name.to_string(), "latest".to_string()),
    }
}

/// A `Write` that hands chunks to the request body.
struct ChannelWriter(tokio::sync::mpsc::Sender<Result<Bytes, io::Error>>);

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .blocking_send(Ok(Bytes::copy_from_slice(buf)))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the engine stopped reading"))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Loads the image `manifest_digest` (config `config_digest`) of `src` into the engine, named
/// `opts.names`.
pub fn load(
    src: &(dyn BlobSource + Sync),
    manifest_digest: &str,
    config_digest: &str,
    opts: &ExportOptions,
) -> anyhow::Result<Loaded> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let docker = Docker::connect_with_defaults()
        .map_err(explain)?
        .with_timeout(Duration::from_secs(3600));
    rt.block_on(docker.ping()).map_err(explain)?;

    if rt.block_on(docker.inspect_image(config_digest)).is_ok() {
        for name in &opts.names {
            let (repo, tag) = repo_tag(name);
            let o = TagImageOptions {
                repo: Some(repo),
                tag: Some(tag),
            };
            rt.block_on(docker.tag_image(config_digest, Some(o)))
                .with_context(|| format!("--load: tagging {name}"))?;
        }
        return Ok(Loaded::Tagged);
    }

    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Bytes, io::Error>>(16);
    let body = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    std::thread::scope(|s| -> anyhow::Result<Loaded> {
        let _request = crate::progress::profile::span("load: request");
        let writer = s.spawn(move || {
            let _send = crate::progress::profile::span("load: send archive");
            let mut w = ChannelWriter(tx.clone());
            let r = export_tar_to(src, manifest_digest, opts, true, &mut w);
            if let Err(e) = &r {
                let _ = tx.blocking_send(Err(io::Error::new(e.kind(), e.to_string())));
            }
            r
        });
        let result = rt.block_on(async {
            let mut events = docker.import_image_stream(
                ImportImageOptions {
                    quiet: true,
                    platform: None,
                },
                body,
                None,
            );
            while let Some(ev) = events.next().await {
                let ev = ev.map_err(explain)?;
                if let Some(err) = ev.error_detail.and_then(|d| d.message) {
                    bail!("--load: the Docker engine refused the image: {err}");
                }
            }
            Ok(())
        });
        let written = writer.join().expect("the archive writer does not panic");
        result?;
        written.context("--load: writing the archive")?;
        Ok(Loaded::Sent)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_split_into_repo_and_tag() {
        assert_eq!(
            repo_tag("docker.io/library/app:1"),
            ("docker.io/library/app".into(), "1".into())
        );
        assert_eq!(
            repo_tag("localhost:5000/app"),
            ("localhost:5000/app".into(), "latest".into())
        );
    }
}
