//! Registry credentials, kept where Docker keeps them: `$DOCKER_CONFIG/config.json` (default
//! `~/.docker/config.json`). Reads `auths` (base64 `user:password`), `credHelpers` (per host)
//! and `credsStore` (default helper), asking a helper with `docker-credential-NAME get`.
//! `wbuild login` writes the same file (or the configured helper's `store`), `logout` erases.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{Context, bail};
use base64::Engine as _;
use serde_json::{Map, Value};

/// A user name and password (or token) for a registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub secret: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, ***)", self.username)
    }
}

/// The Docker config file wbuild reads and writes.
pub fn config_path() -> PathBuf {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("config.json");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    PathBuf::from(home).join(".docker/config.json")
}

/// The key Docker uses for `host` in `auths` and for helpers: Docker Hub is the legacy URL.
fn server_key(host: &str) -> String {
    if is_docker_hub(host) {
        "https://index.docker.io/v1/".into()
    } else {
        host.to_string()
    }
}

fn is_docker_hub(host: &str) -> bool {
    matches!(
        host,
        "docker.io" | "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com"
    )
}

/// The host an `auths` key names (`https://host/v1/` → `host`).
fn key_host(key: &str) -> &str {
    let k = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    k.split('/').next().unwrap_or(k)
}

fn same_host(a: &str, b: &str) -> bool {
    a == b || (is_docker_hub(a) && is_docker_hub(b))
}

fn read_config() -> anyhow::Result<Map<String, Value>> {
    let path = config_path();
    match std::fs::read(&path) {
        Ok(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => Ok(Map::new()),
        Ok(bytes) => match serde_json::from_slice(&bytes) {
            Ok(Value::Object(m)) => Ok(m),
            _ => bail!(
                "{}: not a JSON object; fix or remove the file (it holds registry logins)",
                path.display()
            ),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Map::new()),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

fn write_config(config: &Map<String, Value>) -> anyhow::Result<PathBuf> {
    let path = config_path();
    let dir = path.parent().expect("config path has a directory");
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    crate::sys::write_atomic(&path, |f| {
        use std::os::unix::fs::PermissionsExt as _;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        serde_json::to_writer_pretty(&mut *f, config)?;
        f.write_all(b"\n")
    })
    .with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// The helper configured for `host`: `credHelpers[host]`, else `credsStore`.
fn helper_for(config: &Map<String, Value>, host: &str) -> Option<String> {
    if let Some(Value::Object(helpers)) = config.get("credHelpers") {
        for (k, v) in helpers {
            if same_host(key_host(k), host)
                && let Some(h) = v.as_str()
            {
                return Some(h.to_string());
            }
        }
    }
    config
        .get("credsStore")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// Runs `docker-credential-NAME ACTION` with `input` on stdin; returns stdout, or None when
/// the helper says it has no credentials.
fn run_helper(helper: &str, action: &str, input: &[u8]) -> anyhow::Result<Option<Vec<u8>>> {
    let program = format!("docker-credential-{helper}");
    let mut child = Command::new(&program)
        .arg(action)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| {
            format!(
                "running the credential helper {program} (named in {}); install it or remove it \
                 from the file",
                config_path().display()
            )
        })?;
    child.stdin.take().unwrap().write_all(input)?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        let msg = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        if msg.contains("credentials not found") {
            return Ok(None);
        }
        bail!("{program} {action} failed: {}", msg.trim());
    }
    Ok(Some(out.stdout))
}

/// The credentials for `host`, if any are configured.
pub fn lookup(host: &str) -> anyhow::Result<Option<Credentials>> {
    let config = read_config()?;
    if let Some(helper) = helper_for(&config, host) {
        let Some(out) = run_helper(&helper, "get", server_key(host).as_bytes())? else {
            return Ok(None);
        };
        let v: Value = serde_json::from_slice(&out)
            .with_context(|| format!("docker-credential-{helper} get: output is not JSON"))?;
        let field = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        return Ok(Some(Credentials {
            username: field("Username"),
            secret: field("Secret"),
        }));
    }
    let Some(Value::Object(auths)) = config.get("auths") else {
        return Ok(None);
    };
    for (k, v) in auths {
        if !same_host(key_host(k), host) {
            continue;
        }
        if let Some(auth) = v
            .get("auth")
            .and_then(Value::as_str)
            .filter(|a| !a.is_empty())
        {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .ok()
                .and_then(|b| String::from_utf8(b).ok());
            let Some((user, pass)) = decoded.as_deref().and_then(|d| d.split_once(':')) else {
                bail!(
                    "{}: auths[{k:?}].auth is not base64 of user:password; run `wbuild login {host}` again",
                    config_path().display()
                );
            };
            return Ok(Some(Credentials {
                username: user.into(),
                secret: pass.into(),
            }));
        }
        if let (Some(u), Some(p)) = (
            v.get("username").and_then(Value::as_str),
            v.get("password").and_then(Value::as_str),
        ) {
            return Ok(Some(Credentials {
                username: u.into(),
                secret: p.into(),
            }));
        }
    }
    Ok(None)
}

/// Saves credentials for `host` (in the configured helper, else in `auths`); returns where.
pub fn save(host: &str, creds: &Credentials) -> anyhow::Result<String> {
    let mut config = read_config()?;
    if let Some(helper) = helper_for(&config, host) {
        let input = serde_json::json!({
            "ServerURL": server_key(host),
            "Username": creds.username,
            "Secret": creds.secret,
        });
        run_helper(&helper, "store", input.to_string().as_bytes())?;
        return Ok(format!("docker-credential-{helper}"));
    }
    let auths = config
        .entry("auths")
        .or_insert_with(|| Value::Object(Map::new()));
    let Value::Object(auths) = auths else {
        bail!("{}: `auths` is not an object", config_path().display());
    };
    auths.retain(|k, _| !same_host(key_host(k), host));
    let token = base64::engine::general_purpose::STANDARD
        .encode(format!("{}:{}", creds.username, creds.secret));
    auths.insert(server_key(host), serde_json::json!({ "auth": token }));
    Ok(write_config(&config)?.display().to_string())
}

/// Forgets the credentials for `host`; returns whether there were any.
pub fn erase(host: &str) -> anyhow::Result<bool> {
    let mut config = read_config()?;
    if let Some(helper) = helper_for(&config, host) {
        return Ok(run_helper(&helper, "erase", server_key(host).as_bytes())?.is_some());
    }
    let Some(Value::Object(auths)) = config.get_mut("auths") else {
        return Ok(false);
    };
    let before = auths.len();
    auths.retain(|k, _| !same_host(key_host(k), host));
    if auths.len() == before {
        return Ok(false);
    }
    write_config(&config)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_match_docker_keys() {
        assert_eq!(key_host("https://index.docker.io/v1/"), "index.docker.io");
        assert!(same_host(
            key_host("https://index.docker.io/v1/"),
            "docker.io"
        ));
        assert_eq!(key_host("127.0.0.1:5000"), "127.0.0.1:5000");
        assert_eq!(key_host("http://reg.lan:80/"), "reg.lan:80");
        assert_eq!(server_key("docker.io"), "https://index.docker.io/v1/");
        assert_eq!(server_key("ghcr.io"), "ghcr.io");
    }
}
