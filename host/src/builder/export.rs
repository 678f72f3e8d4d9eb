//! The end of a build: the target stage's config and manifest stored and named ([`commit`]),
//! then written where `-o` and `--push` say ([`export`]): an OCI layout, a docker archive, a
//! registry, the filesystem as a directory or a tar.
//!
//! [`commit`]: Builder::commit_image
//! [`export`]: Builder::export

use std::io::Write;
use std::path::Path;

use anyhow::{Context as _, bail};

use super::options::{BuildResult, Output};
use super::{Builder, StageState};
use crate::image::{BlobSource, manifest};
use crate::registry::ImageName;
use crate::snapshot::{self, DiffOptions};
use crate::store::Digest;

impl Builder<'_> {
    /// Store the config and manifest of the target stage and name it `names`. When one of
    /// `outputs` takes the image out of the store compressed, the result (named, reported,
    /// pushed) is the compressed image, so every digest the build prints is the one that
    /// leaves; else its new layers stay plain tars.
    pub(super) fn commit_image(
        &self,
        target: &StageState,
        names: &[String],
        outputs: &[Output],
    ) -> anyhow::Result<BuildResult> {
        let mut config = target.config.clone();
        for (k, v) in &self.opts.labels {
            config.label(k, v);
        }
        let (_, config_bytes, config_digest) = config.build();
        let (cd, csize) = self
            .store
            .put_blob_from_reader(&mut config_bytes.as_slice(), None)?;
        let config_desc = manifest::descriptor(manifest::MEDIA_CONFIG, &cd.to_string(), csize)?;
        let layers = target
            .layers
            .iter()
            .map(|l| manifest::descriptor(&l.media_type, &l.digest, l.size))
            .collect::<Result<Vec<_>, _>>()?;
        let (_, manifest_bytes, _) =
            manifest::annotated_manifest(config_desc, layers, &self.opts.annotations)?;
        let (mut md, mut manifest_size) = self
            .store
            .put_blob_from_reader(&mut manifest_bytes.as_slice(), None)?;
        if outputs.iter().any(Output::compresses) {
            let e = self.compressed(&md)?;
            (md, manifest_size) = (e.digest, e.size);
        }
        for tag in names {
            let name = crate::image::normalize(tag).map_err(anyhow::Error::msg)?;
            self.store.set_ref(&name, &md)?;
        }
        let (ran, cached) = *self.counts.lock().unwrap();
        Ok(BuildResult {
            manifest_digest: md,
            config_digest,
            manifest_size,
            media_type: manifest::MEDIA_MANIFEST,
            platforms: vec![],
            ran,
            cached,
        })
    }

    /// The image `digest` with its uncompressed layers compressed in `--compression`.
    pub(super) fn compressed(
        &self,
        digest: &Digest,
    ) -> anyhow::Result<crate::image::compressed::Exported> {
        crate::image::compressed::for_export(self.store, digest, self.opts.compression)
    }

    pub(super) fn export(
        &self,
        out: &Output,
        target: &StageState,
        result: &BuildResult,
    ) -> anyhow::Result<()> {
        let opts = crate::image::ExportOptions {
            names: self.opts.tags.clone(),
            mtime: self.opts.source_date_epoch.unwrap_or(0).max(0) as u64,
        };
        // What leaves compressed is the compressed image (`commit_image` made it already, so
        // this finds nothing left to do; it makes sure of it).
        let exported = if out.compresses() {
            self.compressed(&result.manifest_digest)?.digest
        } else {
            result.manifest_digest
        };
        let digest = exported.to_string();
        let src: &dyn BlobSource = self.store;
        match out {
            // `dest=-`: the tar goes to standard output (the CLI refused a terminal).
            Output::Oci(p) | Output::Docker(p) if p == Path::new("-") => {
                let docker = matches!(out, Output::Docker(_));
                crate::image::export_tar_to(src, &digest, &opts, docker, &mut std::io::stdout())?
            }
            Output::Tar(p) if p == Path::new("-") => {
                let root = self.rootfs(&mut target.clone())?;
                let opts = DiffOptions {
                    source_date_epoch: self.opts.source_date_epoch,
                    ..Default::default()
                };
                let mut w = std::io::BufWriter::new(std::io::stdout().lock());
                snapshot::diff_upper(&root, &mut w, &opts)?;
                w.flush()?;
            }
            Output::Load => {
                let how =
                    crate::image::load::load(self.store, &digest, &result.config_digest, &opts)?;
                self.progress.message(match how {
                    crate::image::load::Loaded::Sent => "loaded into the Docker engine",
                    crate::image::load::Loaded::Tagged => {
                        "the Docker engine had the image already; named it there"
                    }
                });
            }
            Output::Oci(p) if p.extension().is_some_and(|e| e == "tar") => {
                crate::image::export_oci_tar(src, &digest, &opts, p)?
            }
            Output::Oci(p) => crate::image::export_oci_dir(src, &digest, &opts, p)?,
            Output::Docker(p) => crate::image::export_docker_tar(src, &digest, &opts, p)?,
            Output::Registry(name) => {
                let Some(reg) = &self.registry else {
                    bail!("pushing {name}: no registry access in this build");
                };
                let image = ImageName::parse(name)?;
                let stats = reg.push(self.store, &exported, &image)?;
                self.progress.message(&format!(
                    "pushed {image}@{exported} ({} blobs uploaded, {} mounted, {} already there)",
                    stats.uploaded, stats.mounted, stats.existing
                ));
            }
            Output::Local(p) => {
                let mut st = target.clone();
                let root = self.rootfs(&mut st)?;
                std::fs::create_dir_all(p)?;
                snapshot::copy_tree(&root, p)
                    .with_context(|| format!("writing the filesystem to {}", p.display()))?;
            }
            Output::Tar(p) => {
                let mut st = target.clone();
                let root = self.rootfs(&mut st)?;
                let opts = DiffOptions {
                    source_date_epoch: self.opts.source_date_epoch,
                    ..Default::default()
                };
                crate::sys::write_atomic(p, |f| {
                    let mut w = crate::sys::DirectWriter::new(f);
                    snapshot::diff_upper(&root, &mut w, &opts).map_err(std::io::Error::other)?;
                    w.flush()
                })
                .with_context(|| format!("writing {}", p.display()))?;
            }
        }
        Ok(())
    }
}
