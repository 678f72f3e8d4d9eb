//! Cache keys. A step's key is a sha256 over the key of the state it starts from, the step's op
//! (its canonical JSON encoding, spans and source text left out so that moving an instruction
//! to another line keeps its cache), and the content digests of its inputs (context files,
//! other stages' results). Equal keys mean equal results; mtimes never enter a key. A RUN's
//! network and security modes are fields of its op and so of its key, as they are of the exec
//! op digest in BuildKit (`llbsolver/ops/exec.go` `CacheMap`); the default network is resolved
//! against the command line's `--network` before keying.

use serde::Serialize;
use sha2::{Digest as _, Sha256};

use crate::ir::{Base, Op, Platform};
use crate::store::Digest;

/// Version of the key scheme: bump it when the meaning of a key changes.
const KEY_VERSION: &str = "wbuild-cache-key-v1";

/// Content the step reads besides its parent state, already reduced to digests.
#[derive(Debug, Default, Clone, Serialize)]
pub struct StepInputs {
    /// Digest over the matched build-context files (paths, metadata, content).
    pub context: Option<String>,
    /// Final keys of the stages the step reads from (`COPY --from`, mounts).
    pub stages: Vec<String>,
    /// Manifest digests of images the step reads from.
    pub images: Vec<String>,
    /// Remote files (`ADD <url>`): URL, file name and content digest.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub remote: Vec<String>,
    /// The names of a RUN's `--add-host` entries; their addresses are left out, as BuildKit
    /// leaves `ExtraHosts[].IP` out of an exec op's cache key.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub extra_hosts: Vec<String>,
    /// How a RUN runs beyond its op (`--ulimit`, `--shm-size`), as BuildKit keys its exec meta.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub exec: Vec<String>,
}

fn digest_of(parts: &[&[u8]]) -> Digest {
    let mut h = Sha256::new();
    for p in parts {
        // Length-prefix every part so that no two sequences of parts collide.
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    Digest::from_sha256(h.finalize().into())
}

/// The key of a stage's starting state: scratch, an image by its resolved manifest digest, or
/// another stage by its final key; the platform is part of it.
pub fn stage_base_key(base: &Base, resolved: Option<&str>, platform: &Platform) -> Digest {
    let base = serde_json::to_vec(base).expect("IR serializes");
    let platform = serde_json::to_vec(platform).expect("IR serializes");
    digest_of(&[
        KEY_VERSION.as_bytes(),
        b"base",
        &base,
        resolved.unwrap_or("").as_bytes(),
        &platform,
    ])
}

/// The key of the state `parent` with an independent (`COPY --link`) layer whose own key is
/// `layer` put on top: the layer's key does not depend on `parent`, the chain's does.
pub fn linked_key(parent: &Digest, layer: &Digest) -> Digest {
    digest_of(&[
        KEY_VERSION.as_bytes(),
        b"link",
        parent.to_string().as_bytes(),
        layer.to_string().as_bytes(),
    ])
}

/// The key of `op` applied to the state whose key is `parent`.
pub fn op_cache_key(parent: &Digest, op: &Op, inputs: &StepInputs) -> Digest {
    let op = serde_json::to_vec(op).expect("IR serializes");
    let inputs = serde_json::to_vec(inputs).expect("inputs serialize");
    digest_of(&[
        KEY_VERSION.as_bytes(),
        b"op",
        parent.to_string().as_bytes(),
        &op,
        &inputs,
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::{KeyValue, Network, RunOp, Security};

    fn run(cmd: &str) -> Op {
        Op::Run(RunOp {
            args: vec!["/bin/sh".into(), "-c".into(), cmd.into()],
            extra_env: vec![],
            network: Network::None,
            security: Security::Sandbox,
            mounts: vec![],
        })
    }

    fn platform() -> Platform {
        Platform {
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: None,
        }
    }

    #[test]
    fn keys_change_with_op_parent_and_inputs_only() {
        let base = stage_base_key(&Base::Scratch, None, &platform());
        let k = op_cache_key(&base, &run("make"), &StepInputs::default());
        assert_eq!(k, op_cache_key(&base, &run("make"), &StepInputs::default()));
        assert_ne!(
            k,
            op_cache_key(&base, &run("make "), &StepInputs::default())
        );
        let other_parent = op_cache_key(&base, &run("true"), &StepInputs::default());
        assert_ne!(
            k,
            op_cache_key(&other_parent, &run("make"), &StepInputs::default())
        );
        let with_ctx = StepInputs {
            context: Some("sha256:aa".into()),
            ..Default::default()
        };
        assert_ne!(k, op_cache_key(&base, &run("make"), &with_ctx));
        // Build args reach RUN through extra-env and so change the key.
        let mut with_arg = run("make");
        if let Op::Run(r) = &mut with_arg {
            r.extra_env.push(KeyValue {
                key: "V".into(),
                value: "1".into(),
            });
        }
        assert_ne!(k, op_cache_key(&base, &with_arg, &StepInputs::default()));
    }

    #[test]
    fn base_keys_depend_on_resolved_digest_and_platform() {
        let img = Base::Image(crate::ir::ImageRef {
            reference: "busybox".into(),
            platform: None,
        });
        let a = stage_base_key(&img, Some("sha256:1"), &platform());
        assert_ne!(a, stage_base_key(&img, Some("sha256:2"), &platform()));
        let mut arm = platform();
        arm.architecture = "arm64".into();
        assert_ne!(a, stage_base_key(&img, Some("sha256:1"), &arm));
    }
}
