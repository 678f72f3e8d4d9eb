//! SLSA provenance attestations, laid out as BuildKit attaches them: an in-toto statement
//! (`https://in-toto.io/Statement/v0.1`) whose predicate is SLSA provenance v1
//! (`https://slsa.dev/provenance/v1`), stored as the one layer (`application/vnd.in-toto+json`)
//! of an attestation manifest; the index lists that manifest as `unknown/unknown`, pointing at
//! the image it describes ([`super::index`]).
//!
//! The statement names the build file's digest, the frontend component (name and digest), the
//! target, the build args (`mode=max` only, as BuildKit's min mode leaves them out), every base
//! image resolved to its digest, the build platform and wbuild's version. Its only times are
//! the build's start and end — both `SOURCE_DATE_EPOCH` when that is set — and every list is
//! sorted, so a reproducible build gives byte-identical attestations.

use serde_json::{Value, json};

use super::index::Blob;
use super::manifest::{MEDIA_CONFIG, MEDIA_MANIFEST, canonical_json};
use crate::ir::{KeyValue, Platform, platform_text};

/// The in-toto statement type BuildKit writes.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v0.1";
/// The SLSA provenance v1 predicate type.
pub const PREDICATE_TYPE: &str = "https://slsa.dev/provenance/v1";
/// Media type of an in-toto statement layer.
pub const MEDIA_IN_TOTO: &str = "application/vnd.in-toto+json";
/// Layer annotation naming the statement's predicate type.
pub const ANNOTATION_PREDICATE_TYPE: &str = "in-toto.io/predicate-type";
/// The build type of wbuild's provenance (the predicate's `buildDefinition.buildType`).
pub const BUILD_TYPE: &str = "urn:wbuild:buildtype:v1";

/// `--provenance`'s mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The build file, frontend, target and base images.
    Min,
    /// Also the build args.
    Max,
}

/// `--provenance VALUE`: `false`/`0` (none), `true`/`1`/`min`/`mode=min`, `max`/`mode=max`.
pub fn parse(value: &str) -> anyhow::Result<Option<Mode>> {
    let v = value.trim();
    let v = v.strip_prefix("mode=").unwrap_or(v);
    Ok(match v {
        "false" | "0" => None,
        "true" | "1" | "min" => Some(Mode::Min),
        "max" => Some(Mode::Max),
        _ => anyhow::bail!("--provenance {value:?}: expected mode=min, mode=max, true or false"),
    })
}

/// A base image the build resolved: the reference as written, for which platform, and the
/// digest it resolved to.
#[derive(Debug, Clone)]
pub struct Material {
    /// `host/repository[:tag]` (or the reference as written when it has no registry form).
    pub reference: String,
    /// `os/arch[/variant]`.
    pub platform: String,
    /// `sha256:…`.
    pub digest: String,
}

/// What one platform's statement says.
#[derive(Debug, Clone)]
pub struct Inputs<'a> {
    /// Min or max.
    pub mode: Mode,
    /// The image manifest the statement is about, and its platform.
    pub manifest_digest: &'a str,
    /// Platform of the image.
    pub platform: &'a Platform,
    /// The result's names (`-t`), each a subject.
    pub names: &'a [String],
    /// The build file as given (`Dockerfile`, `sub/build.toml`).
    pub file_name: &'a str,
    /// Digest of its text.
    pub file_digest: &'a str,
    /// The frontend component's label and digest.
    pub frontend: (&'a str, &'a str),
    /// `--target`.
    pub target: Option<&'a str>,
    /// `--build-arg`s (recorded with [`Mode::Max`]).
    pub build_args: &'a [KeyValue],
    /// Base images, any order.
    pub materials: &'a [Material],
    /// The platform the build ran on.
    pub build_platform: &'a Platform,
    /// Start and end of the build, seconds since 1970 (both SOURCE_DATE_EPOCH when set).
    pub times: (i64, i64),
}

/// `pkg:docker/NAME@TAG?platform=OS%2FARCH`, the package URL BuildKit gives images.
fn purl(reference: &str, platform: &str) -> String {
    let (name, version) = match reference.rsplit_once('@') {
        Some((n, d)) => (n, d.to_string()),
        None => match reference.rsplit_once(':') {
            Some((n, t)) if !t.contains('/') => (n, t.to_string()),
            _ => (reference, "latest".to_string()),
        },
    };
    format!(
        "pkg:docker/{name}@{version}?platform={}",
        platform.replace('/', "%2F")
    )
}

fn sha256_map(digest: &str) -> Value {
    match digest.split_once(':') {
        Some((alg, hex)) => json!({ alg: hex }),
        None => json!({ "sha256": digest }),
    }
}

/// The in-toto statement for one platform's image, as canonical JSON.
pub fn statement(i: &Inputs) -> Vec<u8> {
    let platform = platform_text(i.platform);
    let mut subjects: Vec<Value> = i
        .names
        .iter()
        .map(|n| json!({ "name": purl(n, &platform), "digest": sha256_map(i.manifest_digest) }))
        .collect();
    if subjects.is_empty() {
        subjects.push(json!({ "name": "_", "digest": sha256_map(i.manifest_digest) }));
    }
    let mut materials: Vec<(String, String)> = i
        .materials
        .iter()
        .map(|m| (purl(&m.reference, &m.platform), m.digest.clone()))
        .collect();
    materials.sort();
    materials.dedup();
    let mut request = json!({ "frontend": i.frontend.0 });
    if let Some(t) = i.target {
        request["args"] = json!({ "target": t });
    }
    if i.mode == Mode::Max {
        let mut args = request.get("args").cloned().unwrap_or_else(|| json!({}));
        // A later --build-arg of the same name wins, as in the build.
        for kv in i.build_args {
            args[format!("build-arg:{}", kv.key)] = json!(kv.value);
        }
        request["args"] = args;
    }
    let time = |t: i64| crate::image::config::rfc3339(t);
    let predicate = json!({
        "buildDefinition": {
            "buildType": BUILD_TYPE,
            "externalParameters": {
                "configSource": {
                    "path": i.file_name,
                    "digest": sha256_map(i.file_digest),
                },
                "frontend": {
                    "name": i.frontend.0,
                    "digest": sha256_map(i.frontend.1),
                },
                "request": request,
            },
            "internalParameters": {
                "builderPlatform": platform_text(i.build_platform),
            },
            "resolvedDependencies": materials
                .iter()
                .map(|(uri, d)| json!({ "uri": uri, "digest": sha256_map(d) }))
                .collect::<Vec<_>>(),
        },
        "runDetails": {
            "builder": {
                "id": "",
                "version": { "wbuild": env!("CARGO_PKG_VERSION") },
            },
            "metadata": {
                "startedOn": time(i.times.0),
                "finishedOn": time(i.times.1),
                "wbuild_mode": match i.mode { Mode::Min => "min", Mode::Max => "max" },
            },
        },
    });
    canonical_json(&json!({
        "_type": STATEMENT_TYPE,
        "predicateType": PREDICATE_TYPE,
        "subject": subjects,
        "predicate": predicate,
    }))
}

/// An attestation manifest's blobs: the statement layer, the config, the manifest.
pub struct Attestation {
    /// The in-toto statement (the one layer).
    pub statement: Vec<u8>,
    /// The config (`unknown/unknown`, the layer as its diff_id: it is not compressed).
    pub config: Vec<u8>,
    /// The manifest.
    pub manifest: Vec<u8>,
}

/// The attestation manifest holding `statement`.
pub fn attestation(statement: Vec<u8>) -> Attestation {
    let layer = Blob::of(&statement);
    let config = canonical_json(&json!({
        "architecture": "unknown",
        "os": "unknown",
        "config": {},
        "rootfs": { "type": "layers", "diff_ids": [layer.digest] },
    }));
    let c = Blob::of(&config);
    let manifest = canonical_json(&json!({
        "schemaVersion": 2,
        "mediaType": MEDIA_MANIFEST,
        "config": { "mediaType": MEDIA_CONFIG, "digest": c.digest, "size": c.size },
        "layers": [{
            "mediaType": MEDIA_IN_TOTO,
            "digest": layer.digest,
            "size": layer.size,
            "annotations": { ANNOTATION_PREDICATE_TYPE: PREDICATE_TYPE },
        }],
    }));
    Attestation {
        statement,
        config,
        manifest,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse() {
        assert_eq!(parse("mode=min").unwrap(), Some(Mode::Min));
        assert_eq!(parse("mode=max").unwrap(), Some(Mode::Max));
        assert_eq!(parse("false").unwrap(), None);
        assert_eq!(parse("true").unwrap(), Some(Mode::Min));
        assert!(
            parse("mode=full")
                .unwrap_err()
                .to_string()
                .contains("mode=min")
        );
    }

    #[test]
    fn statement_names_digests_and_args_only_in_max() {
        let p = Platform {
            os: "linux".into(),
            architecture: "arm64".into(),
            variant: None,
        };
        let args = [KeyValue {
            key: "V".into(),
            value: "1".into(),
        }];
        let mats = [Material {
            reference: "127.0.0.1:5000/bb:1".into(),
            platform: "linux/amd64".into(),
            digest: "sha256:aa".into(),
        }];
        let inputs = |mode| Inputs {
            mode,
            manifest_digest: "sha256:11",
            platform: &p,
            names: &[],
            file_name: "Dockerfile",
            file_digest: "sha256:22",
            frontend: ("dockerfile", "sha256:33"),
            target: None,
            build_args: &args,
            materials: &mats,
            build_platform: &p,
            times: (5, 5),
        };
        let min: Value = serde_json::from_slice(&statement(&inputs(Mode::Min))).unwrap();
        assert_eq!(min["subject"][0]["digest"]["sha256"], "11");
        let def = &min["predicate"]["buildDefinition"];
        assert_eq!(
            def["externalParameters"]["configSource"]["digest"]["sha256"],
            "22"
        );
        assert_eq!(
            def["externalParameters"]["frontend"]["digest"]["sha256"],
            "33"
        );
        assert_eq!(
            def["resolvedDependencies"][0]["uri"],
            "pkg:docker/127.0.0.1:5000/bb@1?platform=linux%2Famd64"
        );
        assert!(def["externalParameters"]["request"].get("args").is_none());
        let max: Value = serde_json::from_slice(&statement(&inputs(Mode::Max))).unwrap();
        assert_eq!(
            max["predicate"]["buildDefinition"]["externalParameters"]["request"]["args"]["build-arg:V"],
            "1"
        );
        assert_eq!(statement(&inputs(Mode::Min)), statement(&inputs(Mode::Min)));
    }
}
