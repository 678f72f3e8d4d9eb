//! `COPY --link` as BuildKit makes it (`dispatchCopy`: the copy is done onto `llb.Scratch()` and
//! merged onto the stage, unless `--chmod` is given): the layer is made without the files
//! beneath it, so the parent directories it creates belong to it (mode 0755, owned by the
//! `--chown` user), the destination's symlinks and directories in the stage are not looked at,
//! and its cache key leaves the parent state out: when the base changes the cached layer is
//! put on the new base (rebased) without running the copy again.

use anyhow::{Result, bail};

use crate::image::ConfigBuilder;
use crate::ir::{Base, CopyOp, Op, Platform};
use crate::solve::{self, StepInputs};
use crate::store::Digest;

/// Whether `op` is a linked copy (BuildKit falls back to a plain copy with `--chmod`).
pub(super) fn linked(op: &Op) -> bool {
    matches!(op, Op::Copy(c) if is_linked(c))
}

/// Whether this copy makes an independent layer.
pub(super) fn is_linked(copy: &CopyOp) -> bool {
    copy.link && copy.chmod.is_none()
}

/// The state a linked copy's layer is keyed from instead of its parent: scratch on the
/// stage's platform with the working directory a relative destination is resolved against.
pub(super) fn layer_base(config: &ConfigBuilder) -> Digest {
    let img = config.image();
    let platform = Platform {
        os: img.os.clone(),
        architecture: img.architecture.clone(),
        variant: img.variant.clone(),
    };
    let scratch = solve::stage_base_key(&Base::Scratch, None, &platform);
    let workdir = img.config.working_dir.clone().unwrap_or_else(|| "/".into());
    solve::op_cache_key(&scratch, &Op::Workdir(workdir), &StepInputs::default())
}

/// `--chown` of a linked copy: numeric ids only. The layer is made without the stage's
/// /etc/passwd and /etc/group (BuildKit fails there with "invalid user index -1").
pub(super) fn check_chown(copy: &CopyOp) -> Result<()> {
    if let Some(spec) = &copy.chown {
        let numeric = |s: &str| s.is_empty() || s.parse::<u32>().is_ok();
        let (u, g) = spec.split_once(':').unwrap_or((spec, ""));
        if !numeric(u) || !numeric(g) {
            bail!(
                "COPY --link --chown={spec}: a linked layer is made without the stage's \
                 /etc/passwd and /etc/group, so give numeric ids (--chown=UID:GID) or drop --link"
            );
        }
    }
    Ok(())
}
