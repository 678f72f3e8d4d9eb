//! The image config JSON as Docker/BuildKit write it, and [`ConfigBuilder`], which starts from a
//! base image's config (or scratch) and applies Dockerfile-style edits, history and diff_ids.
//!
//! Own serde types rather than `oci_spec::image::ImageConfiguration` because Docker images carry
//! fields the OCI type lacks (`Healthcheck`, `Shell`, `OnBuild`, `ArgsEscaped`) and oci-spec
//! serializes `Labels`/`ExposedPorts`/`Volumes` through a `HashMap` (random key order), which
//! would break byte-identical rebuilds. Here maps are `BTreeMap`s and fields follow Docker's
//! order, so [`ConfigBuilder::build`] is canonical.

use super::sha256_digest;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Docker's default PATH for Linux (`system.DefaultPathEnv`).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// The history comment BuildKit's Dockerfile frontend writes.
pub const HISTORY_COMMENT: &str = "buildkit.dockerfile.v0";

/// `{}` — the value type of Go's `map[string]struct{}` (ExposedPorts, Volumes).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct Empty {}

/// The image config document (`application/vnd.oci.image.config.v1+json`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct ImageConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(default)]
    pub config: RunConfig,
    #[serde(default)]
    pub rootfs: RootFs,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub history: Vec<History>,
}

/// The `config` object: defaults for running a container.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct RunConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub exposed_ports: BTreeMap<String, Empty>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub env: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub volumes: BTreeMap<String, Empty>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub args_escaped: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<Healthcheck>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub on_build: Vec<String>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub shell: Vec<String>,
}

/// Docker's `HEALTHCHECK`. Durations are nanoseconds; 0 means "inherit / default".
/// `HEALTHCHECK NONE` is `test: ["NONE"]`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct Healthcheck {
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub test: Vec<String>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub interval: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub timeout: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub start_period: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub start_interval: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub retries: i64,
}

/// Go writes empty slices and maps as `null`; read those as empty.
fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct RootFs {
    #[serde(rename = "type")]
    pub typ: String,
    #[serde(default, deserialize_with = "nullable")]
    pub diff_ids: Vec<String>,
}

impl Default for RootFs {
    fn default() -> Self {
        Self {
            typ: "layers".into(),
            diff_ids: Vec::new(),
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct History {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub empty_layer: bool,
}

impl ImageConfig {
    pub fn from_json(bytes: &[u8]) -> serde_json::Result<Self> {
        serde_json::from_slice(bytes)
    }
    /// Canonical bytes (struct field order, sorted maps, compact) and their digest.
    pub fn to_json(&self) -> (Vec<u8>, String) {
        let bytes = serde_json::to_vec(self).expect("image config serializes");
        let digest = sha256_digest(&bytes);
        (bytes, digest)
    }
    /// Value of an environment variable in `config.Env`.
    pub fn env(&self, key: &str) -> Option<&str> {
        self.config
            .env
            .iter()
            .find_map(|e| e.strip_prefix(key)?.strip_prefix('='))
    }

    /// `config.Env` as (name, value) pairs, in order; an entry without `=` has an empty value.
    pub fn env_pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.config
            .env
            .iter()
            .map(|e| e.split_once('=').unwrap_or((e.as_str(), "")))
    }
}

/// RFC 3339 UTC timestamp (`1970-01-01T00:00:00Z`) for Unix seconds, as from `SOURCE_DATE_EPOCH`.
pub fn rfc3339(unix_secs: i64) -> String {
    let days = unix_secs.div_euclid(86_400);
    let secs = unix_secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// Applies Dockerfile instructions to an image config the way BuildKit's Dockerfile frontend does.
///
/// Start with [`ConfigBuilder::scratch`] or [`ConfigBuilder::from_base`], set the timestamp with
/// [`ConfigBuilder::created`] (from `SOURCE_DATE_EPOCH` or the clock; without one, `created` fields
/// are omitted), apply edits, record history with [`ConfigBuilder::layer`] /
/// [`ConfigBuilder::config_only`], then [`ConfigBuilder::build`].
#[derive(Debug, Clone)]
pub struct ConfigBuilder {
    img: ImageConfig,
    created: Option<String>,
    cmd_set: bool,
    /// `file:line` of the fragment the next steps come from (`INCLUDE`), for their history.
    origin: Option<String>,
}

impl ConfigBuilder {
    /// `FROM scratch`: like BuildKit's `emptyImage`, `Env` holds the default PATH and
    /// `WorkingDir` is `/`.
    pub fn scratch(os: &str, architecture: &str) -> Self {
        let mut img = ImageConfig {
            os: os.into(),
            architecture: architecture.into(),
            ..Default::default()
        };
        img.config.env = vec![format!("PATH={DEFAULT_PATH}")];
        img.config.working_dir = Some("/".into());
        Self {
            img,
            created: None,
            cmd_set: false,
            origin: None,
        }
    }

    /// `FROM image`: inherit the base config, history and diff_ids; `created` is reset.
    pub fn from_base(mut base: ImageConfig) -> Self {
        base.created = None;
        if base.rootfs.typ.is_empty() {
            base.rootfs.typ = "layers".into();
        }
        Self {
            img: base,
            created: None,
            cmd_set: false,
            origin: None,
        }
    }

    #[cfg(test)]
    pub fn from_base_json(bytes: &[u8]) -> serde_json::Result<Self> {
        Ok(Self::from_base(ImageConfig::from_json(bytes)?))
    }

    /// Add `PATH=<default>` if the env has no PATH (BuildKit does this for the run environment;
    /// call it when the config should carry it too).
    #[cfg(test)]
    pub fn ensure_default_path(&mut self) -> &mut Self {
        if self.img.env("PATH").is_none() {
            self.img
                .config
                .env
                .insert(0, format!("PATH={DEFAULT_PATH}"));
        }
        self
    }

    /// Timestamp for the image and for history entries added from now on, e.g.
    /// `Some(rfc3339(source_date_epoch))`.
    pub fn created(&mut self, ts: Option<String>) -> &mut Self {
        self.created = ts;
        self
    }

    /// `ENV key=value`: replaces an existing key in place, otherwise appends.
    pub fn env(&mut self, key: &str, value: &str) -> &mut Self {
        let entry = format!("{key}={value}");
        let env = &mut self.img.config.env;
        match env
            .iter_mut()
            .find(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) == key)
        {
            Some(e) => *e = entry,
            None => env.push(entry),
        }
        self
    }

    /// `WORKDIR`: relative paths are joined to the current one; the result is cleaned.
    pub fn workdir(&mut self, dir: &str) -> &mut Self {
        let current = self.img.config.working_dir.as_deref().unwrap_or("/");
        self.img.config.working_dir = Some(wbuild_parser::paths::join_workdir(current, dir));
        self
    }

    pub fn user(&mut self, user: &str) -> &mut Self {
        self.img.config.user = Some(user.into());
        self
    }

    pub fn label(&mut self, key: &str, value: &str) -> &mut Self {
        self.img.config.labels.insert(key.into(), value.into());
        self
    }

    /// `EXPOSE 80` (means `80/tcp`), `EXPOSE 53/udp`.
    pub fn expose(&mut self, port: &str) -> &mut Self {
        let p = if port.contains('/') {
            port.to_ascii_lowercase()
        } else {
            format!("{port}/tcp")
        };
        self.img.config.exposed_ports.insert(p, Empty {});
        self
    }

    pub fn volume(&mut self, path: &str) -> &mut Self {
        self.img.config.volumes.insert(path.into(), Empty {});
        self
    }

    /// `ENTRYPOINT`: also clears `Cmd` unless a `CMD` came earlier in this stage (Docker's rule).
    /// `None` clears the entrypoint (`ENTRYPOINT []`).
    pub fn entrypoint(&mut self, argv: Option<Vec<String>>) -> &mut Self {
        self.img.config.entrypoint = argv;
        if !self.cmd_set {
            self.img.config.cmd = None;
        }
        self
    }

    /// `CMD`; `None` resets it.
    pub fn cmd(&mut self, argv: Option<Vec<String>>) -> &mut Self {
        self.img.config.cmd = argv;
        self.cmd_set = true;
        self
    }

    pub fn shell(&mut self, argv: Vec<String>) -> &mut Self {
        self.img.config.shell = argv;
        self
    }

    /// `HEALTHCHECK ...`; `HEALTHCHECK NONE` is a test of `["NONE"]`.
    pub fn healthcheck(&mut self, hc: Option<Healthcheck>) -> &mut Self {
        self.img.config.healthcheck = hc;
        self
    }

    pub fn stop_signal(&mut self, sig: &str) -> &mut Self {
        self.img.config.stop_signal = Some(sig.into());
        self
    }

    pub fn onbuild(&mut self, trigger: &str) -> &mut Self {
        self.img.config.on_build.push(trigger.into());
        self
    }

    /// Consume the base image's ONBUILD triggers (a child image does not inherit them).
    pub fn take_onbuild(&mut self) -> Vec<String> {
        std::mem::take(&mut self.img.config.on_build)
    }

    /// `MAINTAINER`.
    pub fn author(&mut self, author: &str) -> &mut Self {
        self.img.author = Some(author.into());
        self
    }

    /// Record a step that produced a layer: history `created_by` is `<msg> # buildkit` (e.g.
    /// `RUN /bin/sh -c make`, `COPY x /y`) and the diff_id is appended to `rootfs`.
    pub fn layer(&mut self, msg: &str, diff_id: &str) -> &mut Self {
        self.push_history(format!("{msg} # buildkit"), false);
        self.img.rootfs.diff_ids.push(diff_id.into());
        self
    }

    /// Record a config-only step (`ENV A=b`, `CMD ["x"]`, ...): an `empty_layer` history entry.
    pub fn config_only(&mut self, msg: &str) -> &mut Self {
        self.push_history(msg.into(), true);
        self
    }

    /// The fragment (`file:line`) the following history entries come from; none for the build
    /// file. Its history comment names it: `buildkit.dockerfile.v0 ci/steps.Dockerfile:2`.
    pub fn origin(&mut self, origin: Option<String>) -> &mut Self {
        self.origin = origin;
        self
    }

    fn push_history(&mut self, created_by: String, empty_layer: bool) {
        let comment = match &self.origin {
            Some(at) => format!("{HISTORY_COMMENT} {at}"),
            None => HISTORY_COMMENT.into(),
        };
        self.img.history.push(History {
            created: self.created.clone(),
            created_by: Some(created_by),
            author: None,
            comment: Some(comment),
            empty_layer,
        });
    }

    pub fn image(&self) -> &ImageConfig {
        &self.img
    }

    /// The final config, canonical bytes and digest.
    pub fn build(&self) -> (ImageConfig, Vec<u8>, String) {
        let mut img = self.img.clone();
        img.created = self.created.clone();
        let (bytes, digest) = img.to_json();
        (img, bytes, digest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Option<Vec<String>> {
        Some(s.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn timestamps() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(951_825_600), "2000-02-29T12:00:00Z");
    }

    #[test]
    fn scratch_defaults_and_serialization() {
        let mut b = ConfigBuilder::scratch("linux", "amd64");
        b.created(Some(rfc3339(0)));
        b.layer("COPY hello /hello", "sha256:aa");
        b.cmd(v(&["/hello"]));
        b.config_only("CMD [\"/hello\"]");
        let (_, bytes, digest) = b.build();
        let s = String::from_utf8(bytes.clone()).unwrap();
        assert_eq!(
            s,
            r#"{"created":"1970-01-01T00:00:00Z","architecture":"amd64","os":"linux","config":{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":["/hello"],"WorkingDir":"/"},"rootfs":{"type":"layers","diff_ids":["sha256:aa"]},"history":[{"created":"1970-01-01T00:00:00Z","created_by":"COPY hello /hello # buildkit","comment":"buildkit.dockerfile.v0"},{"created":"1970-01-01T00:00:00Z","created_by":"CMD [\"/hello\"]","comment":"buildkit.dockerfile.v0","empty_layer":true}]}"#
        );
        assert_eq!(digest, sha256_digest(&bytes));
        // Same edits, same bytes.
        assert_eq!(b.build().1, bytes);
    }

    #[test]
    fn env_order_and_replace() {
        let mut b = ConfigBuilder::scratch("linux", "amd64");
        b.env("A", "1")
            .env("B", "2")
            .env("PATH", "/bin")
            .env("A", "3=x");
        assert_eq!(b.image().config.env, vec!["PATH=/bin", "A=3=x", "B=2"]);
        assert_eq!(b.image().env("A"), Some("3=x"));
    }

    #[test]
    fn entrypoint_cmd_rules() {
        // Base has a CMD; ENTRYPOINT in the child clears it.
        let mut base = ImageConfig::default();
        base.config.cmd = v(&["bash"]);
        let mut b = ConfigBuilder::from_base(base.clone());
        b.entrypoint(v(&["/app"]));
        assert_eq!(b.image().config.cmd, None);
        assert_eq!(b.image().config.entrypoint, v(&["/app"]));

        // CMD then ENTRYPOINT in the same stage: CMD kept.
        let mut b = ConfigBuilder::from_base(base.clone());
        b.cmd(v(&["--help"])).entrypoint(v(&["/app"]));
        assert_eq!(b.image().config.cmd, v(&["--help"]));

        // ENTRYPOINT then CMD.
        let mut b = ConfigBuilder::from_base(base);
        b.entrypoint(v(&["/app"])).cmd(v(&["x"]));
        assert_eq!(b.image().config.cmd, v(&["x"]));
        b.cmd(None);
        assert_eq!(b.image().config.cmd, None);
    }

    #[test]
    fn other_edits() {
        let mut base = ConfigBuilder::scratch("linux", "arm64");
        base.onbuild("RUN echo hi")
            .layer("RUN /bin/sh -c make", "sha256:11");
        let (base_img, base_bytes, _) = base.build();
        let mut b = ConfigBuilder::from_base_json(&base_bytes).unwrap();
        assert_eq!(b.take_onbuild(), vec!["RUN echo hi"]);
        b.workdir("app").workdir("../srv/./x/").workdir("/abs");
        assert_eq!(b.image().config.working_dir.as_deref(), Some("/abs"));
        b.workdir("rel");
        assert_eq!(b.image().config.working_dir.as_deref(), Some("/abs/rel"));
        b.user("1000:1000")
            .label("b", "2")
            .label("a", "1")
            .expose("80")
            .expose("53/UDP")
            .volume("/data")
            .shell(vec!["/bin/bash".into(), "-c".into()])
            .stop_signal("SIGTERM")
            .author("me")
            .healthcheck(Some(Healthcheck {
                test: vec!["CMD-SHELL".into(), "true".into()],
                interval: 30_000_000_000,
                retries: 3,
                ..Default::default()
            }));
        let (img, bytes, _) = b.build();
        assert_eq!(img.rootfs.diff_ids, base_img.rootfs.diff_ids);
        assert_eq!(img.history.len(), 1);
        let s = String::from_utf8(bytes).unwrap();
        for want in [
            r#""author":"me""#,
            r#""User":"1000:1000""#,
            r#""ExposedPorts":{"53/udp":{},"80/tcp":{}}"#,
            r#""Volumes":{"/data":{}}"#,
            r#""Labels":{"a":"1","b":"2"}"#,
            r#""StopSignal":"SIGTERM""#,
            r#""Healthcheck":{"Test":["CMD-SHELL","true"],"Interval":30000000000,"Retries":3}"#,
            r#""Shell":["/bin/bash","-c"]"#,
        ] {
            assert!(s.contains(want), "{want} not in {s}");
        }
        assert!(!s.contains("OnBuild"));
        // Round trip through serde keeps everything.
        assert_eq!(ImageConfig::from_json(s.as_bytes()).unwrap(), img);
    }

    #[test]
    fn parses_docker_config_with_unknown_fields() {
        let j = r#"{"architecture":"amd64","os":"linux","container":"abc","docker_version":"20.10",
            "config":{"Hostname":"","Env":["PATH=/bin"],"Cmd":null,"Image":"sha256:x","OnBuild":null},
            "rootfs":{"type":"layers","diff_ids":["sha256:1"]}}"#;
        let c = ImageConfig::from_json(j.as_bytes()).unwrap();
        assert_eq!(c.config.env, vec!["PATH=/bin"]);
        assert_eq!(c.config.cmd, None);
        let mut b = ConfigBuilder::from_base(c);
        b.ensure_default_path();
        assert_eq!(b.image().config.env, vec!["PATH=/bin"]);
    }
}
