//! `RUN --mount=...`: the CSV field list of one mount, validated and turned into an IR mount as
//! BuildKit's `runmount` does (types bind, cache, tmpfs, secret, ssh).

use crate::bindings::wbuild::frontend::types::{
    BindMount, CacheMount, CacheSharing, Mount, SecretMount, Source, SshMount, TmpfsMount,
};
use crate::values;

/// What a mount needs from the stage it is used in.
pub struct MountContext<'a> {
    /// Expands variables in an option value.
    pub expand: &'a dyn Fn(&str) -> Result<String, String>,
    /// Resolves `from=` (a stage name or index, else an image).
    pub resolve_from: &'a dyn Fn(&str) -> Result<Source, String>,
    /// The stage's working directory: relative targets are relative to it.
    pub workdir: &'a str,
    /// How many ssh mounts this RUN already has (for the default socket path).
    pub ssh_index: usize,
}

/// Splits `a=b,"c=d,e",f` into fields as a CSV reader does.
fn split_fields(value: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            ',' if !quoted => fields.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    fields.push(cur);
    fields
}

fn parse_bool(key: &str, v: &str) -> Result<bool, String> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "t" | "true" => Ok(true),
        "0" | "f" | "false" => Ok(false),
        _ => Err(format!("invalid value for {key}: {v}")),
    }
}

fn parse_octal(key: &str, v: &str) -> Result<u32, String> {
    u32::from_str_radix(v, 8)
        .ok()
        .filter(|m| *m <= 0o7777)
        .ok_or_else(|| format!("invalid value for {key}: {v} (expected an octal file mode)"))
}

fn parse_id(key: &str, v: &str) -> Result<u32, String> {
    v.parse::<u32>()
        .map_err(|_| format!("invalid value for {key}: {v}"))
}

/// Parses one `--mount` value.
pub fn parse_mount(value: &str, ctx: &MountContext<'_>) -> Result<Mount, String> {
    let mut kind = "bind".to_string();
    let mut target: Option<String> = None;
    let mut source: Option<String> = None;
    let mut from: Option<String> = None;
    let mut readonly: Option<bool> = None;
    let mut id: Option<String> = None;
    let mut sharing: Option<CacheSharing> = None;
    let mut mode: Option<u32> = None;
    let mut uid: Option<u32> = None;
    let mut gid: Option<u32> = None;
    let mut size: Option<u64> = None;
    let mut required: Option<bool> = None;
    let mut env: Option<String> = None;

    for field in split_fields(value) {
        if field.is_empty() {
            continue;
        }
        let (key, val) = match field.split_once('=') {
            Some((k, v)) => (k.trim().to_ascii_lowercase(), Some(v.to_string())),
            None => (field.trim().to_ascii_lowercase(), None),
        };
        let Some(raw) = val else {
            match key.as_str() {
                "readonly" | "ro" => readonly = Some(true),
                "readwrite" | "rw" => readonly = Some(false),
                "required" => required = Some(true),
                _ => {
                    return Err(format!("invalid field '{field}' must be a key=value pair"));
                }
            }
            continue;
        };
        if key == "from" {
            if raw.contains('$') {
                return Err(format!(
                    "invalid mount option from={raw}: variables are not allowed in 'from' \
                     (name the stage directly)"
                ));
            }
            from = Some(raw);
            continue;
        }
        let v = (ctx.expand)(&raw)?;
        match key.as_str() {
            "type" => kind = v.to_ascii_lowercase(),
            "target" | "dst" | "destination" => target = Some(v),
            "source" | "src" => source = Some(v),
            "readonly" | "ro" => readonly = Some(parse_bool(&key, &v)?),
            "readwrite" | "rw" => readonly = Some(!parse_bool(&key, &v)?),
            "required" => required = Some(parse_bool(&key, &v)?),
            "id" => id = Some(v),
            "sharing" => {
                sharing = Some(match v.to_ascii_lowercase().as_str() {
                    "shared" => CacheSharing::Shared,
                    "private" => CacheSharing::Private,
                    "locked" => CacheSharing::Locked,
                    _ => return Err(format!("unsupported sharing value \"{v}\"")),
                })
            }
            "mode" => mode = Some(parse_octal(&key, &v)?),
            "uid" => uid = Some(parse_id(&key, &v)?),
            "gid" => gid = Some(parse_id(&key, &v)?),
            "size" => size = Some(values::parse_size(&v)?),
            "env" => env = Some(v),
            _ => return Err(format!("unexpected key '{key}' in '{field}'")),
        }
    }

    let absolute = |t: &str| -> String {
        if t.starts_with('/') {
            values::clean_path(t)
        } else {
            values::join_workdir(ctx.workdir, t)
        }
    };
    let need_target = |target: &Option<String>| -> Result<String, String> {
        match target {
            Some(t) if !t.is_empty() => Ok(absolute(t)),
            _ => Err(format!("mount type={kind} requires a target")),
        }
    };
    let no = |what: &str, set: bool| -> Result<(), String> {
        if set {
            Err(format!(
                "option '{what}' is not supported for mount type={kind}"
            ))
        } else {
            Ok(())
        }
    };
    let resolve = |f: &Option<String>| -> Result<Option<Source>, String> {
        f.as_deref().map(|f| (ctx.resolve_from)(f)).transpose()
    };

    match kind.as_str() {
        "bind" => {
            no("id", id.is_some())?;
            no("sharing", sharing.is_some())?;
            no("size", size.is_some())?;
            no("env", env.is_some())?;
            no("mode", mode.is_some())?;
            Ok(Mount::Bind(BindMount {
                target: need_target(&target)?,
                from: resolve(&from)?.unwrap_or(Source::Context),
                source_path: source
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(|| "/".into()),
                readwrite: readonly == Some(false),
            }))
        }
        "cache" => {
            no("size", size.is_some())?;
            no("env", env.is_some())?;
            let target = need_target(&target)?;
            let from = resolve(&from)?;
            let source_path = match (&from, source) {
                (Some(_), s) => Some(s.filter(|s| !s.is_empty()).unwrap_or_else(|| "/".into())),
                (None, s) => s,
            };
            Ok(Mount::Cache(CacheMount {
                id: id
                    .filter(|i| !i.is_empty())
                    .unwrap_or_else(|| target.clone()),
                target,
                sharing: sharing.unwrap_or(CacheSharing::Shared),
                readonly: readonly.unwrap_or(false),
                from,
                source_path,
                mode: mode.unwrap_or(0o755),
                uid: uid.unwrap_or(0),
                gid: gid.unwrap_or(0),
            }))
        }
        "tmpfs" => {
            no("from", from.is_some())?;
            no("source", source.is_some())?;
            no("id", id.is_some())?;
            no("env", env.is_some())?;
            Ok(Mount::Tmpfs(TmpfsMount {
                target: need_target(&target)?,
                size,
            }))
        }
        "secret" => {
            no("from", from.is_some())?;
            no("size", size.is_some())?;
            no("sharing", sharing.is_some())?;
            let target = target.filter(|t| !t.is_empty()).map(|t| absolute(&t));
            let id = match (id.filter(|i| !i.is_empty()), &source, &target) {
                (Some(i), _, _) => i,
                (None, Some(s), _) if !s.is_empty() => s.clone(),
                (None, _, Some(t)) => t.rsplit('/').next().unwrap_or_default().to_string(),
                _ => {
                    return Err(
                        "secret mount requires an id (or a target to derive it from)".into(),
                    );
                }
            };
            let target = match (target, &env) {
                (Some(t), _) => Some(t),
                (None, Some(_)) => None,
                (None, None) => Some(format!("/run/secrets/{id}")),
            };
            Ok(Mount::Secret(SecretMount {
                id,
                target,
                env,
                required: required.unwrap_or(false),
                mode: mode.unwrap_or(0o400),
                uid: uid.unwrap_or(0),
                gid: gid.unwrap_or(0),
            }))
        }
        "ssh" => {
            no("from", from.is_some())?;
            no("size", size.is_some())?;
            no("sharing", sharing.is_some())?;
            no("env", env.is_some())?;
            let target = match target.filter(|t| !t.is_empty()) {
                Some(t) => absolute(&t),
                None => format!("/run/buildkit/ssh_agent.{}", ctx.ssh_index),
            };
            Ok(Mount::Ssh(SshMount {
                id: id
                    .filter(|i| !i.is_empty())
                    .unwrap_or_else(|| "default".into()),
                target,
                required: required.unwrap_or(false),
                mode: mode.unwrap_or(0o600),
                uid: uid.unwrap_or(0),
                gid: gid.unwrap_or(0),
            }))
        }
        other => Err(format!("unsupported mount type \"{other}\"")),
    }
}
