//! The connection side: one tokio runtime for all registry work (created on first use, so builds
//! that never touch a registry pay nothing), one oci-client `Client` per registry host (plain
//! HTTP for loopback hosts and `--insecure-registry`, rustls otherwise), credentials from
//! [`super::auth`], bounded retries of rate-limited requests, and the translation of protocol
//! errors into messages that say what to do.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use oci_client::Client;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;

use super::auth::{self, Credentials};
use super::reference::{ImageName, is_insecure};

/// How often a rate-limited (429) or unavailable (503) request is tried in all.
const ATTEMPTS: u32 = 4;

/// Talks to registries; cheap to share between threads (every method blocks its caller).
pub struct Registry {
    insecure: Vec<String>,
    rt: OnceLock<tokio::runtime::Runtime>,
    conns: Mutex<HashMap<String, Arc<Conn>>>,
    /// First delay of the retry backoff (doubles each attempt).
    backoff: Duration,
}

/// How a registry host is spoken to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    Https,
    /// An insecure registry that speaks TLS: its certificate is not checked.
    HttpsAnyCert,
    Http,
}

/// A client for one registry host and the credentials it uses.
pub(crate) struct Conn {
    pub client: Client,
    pub auth: RegistryAuth,
    pub host: String,
    /// Whether the host is an insecure registry (plain HTTP or unchecked TLS).
    pub plain_http: bool,
}

impl Registry {
    /// `insecure`: hosts (`host` or `host:port`) to speak plain HTTP to, besides loopback.
    pub fn new(insecure: Vec<String>) -> Registry {
        Registry {
            insecure,
            rt: OnceLock::new(),
            conns: Mutex::new(HashMap::new()),
            backoff: Duration::from_secs(1),
        }
    }

    /// Runs `fut` to completion on the registry runtime.
    pub(crate) fn block_on<F: Future>(&self, fut: F) -> F::Output {
        let rt = self.rt.get_or_init(|| {
            // rustls needs a process-wide crypto provider; another caller may have set one.
            let _ = rustls::crypto::ring::default_provider().install_default();
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("wbuild-registry")
                .enable_all()
                .build()
                .expect("the registry runtime starts")
        });
        rt.block_on(fut)
    }

    pub(crate) fn plain_http(&self, host: &str) -> bool {
        is_insecure(host, &self.insecure)
    }

    /// The connection for `host`, with the credentials configured for it.
    pub(crate) fn conn(&self, host: &str) -> anyhow::Result<Arc<Conn>> {
        if let Some(c) = self.conns.lock().unwrap().get(host) {
            return Ok(c.clone());
        }
        let auth = match auth::lookup(host)? {
            Some(c) => RegistryAuth::Basic(c.username, c.secret),
            None => RegistryAuth::Anonymous,
        };
        let conn = Arc::new(self.connect(host, auth));
        self.conns
            .lock()
            .unwrap()
            .insert(host.to_string(), conn.clone());
        Ok(conn)
    }

    /// How to speak to `host`. For loopback and `--insecure-registry` hosts this is Docker's
    /// rule: HTTPS without certificate checks when the host speaks TLS, else plain HTTP.
    fn transport(&self, host: &str) -> Transport {
        if !self.plain_http(host) {
            return Transport::Https;
        }
        let _ = rustls::crypto::ring::default_provider().install_default();
        let probe = reqwest::Client::builder()
            .tls_danger_accept_invalid_certs(true)
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10))
            .build();
        let url = format!("https://{host}/v2/");
        let tls = match probe {
            Ok(c) => self.block_on(async { c.get(&url).send().await.is_ok() }),
            Err(_) => false,
        };
        if tls {
            Transport::HttpsAnyCert
        } else {
            Transport::Http
        }
    }

    fn connect(&self, host: &str, auth: RegistryAuth) -> Conn {
        let transport = self.transport(host);
        // rustls needs a process-wide crypto provider before any client is built.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let config = ClientConfig {
            protocol: match transport {
                Transport::Http => ClientProtocol::Http,
                Transport::Https | Transport::HttpsAnyCert => ClientProtocol::Https,
            },
            accept_invalid_certificates: transport == Transport::HttpsAnyCert,
            max_concurrent_download: 4,
            max_concurrent_upload: 4,
            connect_timeout: Some(Duration::from_secs(15)),
            read_timeout: Some(Duration::from_secs(120)),
            user_agent: concat!("wbuild/", env!("CARGO_PKG_VERSION")),
            ..Default::default()
        };
        Conn {
            client: Client::new(config),
            auth,
            host: host.to_string(),
            plain_http: transport != Transport::Https,
        }
    }

    /// Runs `op` until it succeeds, fails for a reason other than rate limiting, or has been
    /// tried [`ATTEMPTS`] times, waiting 1 s, 2 s, 4 s … in between.
    pub(crate) async fn retry<T, F, Fut>(&self, mut op: F) -> Result<T, OciDistributionError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, OciDistributionError>>,
    {
        let mut delay = self.backoff;
        let mut attempt = 1;
        loop {
            match op().await {
                Err(e) if attempt < ATTEMPTS && is_retryable(&e) => {
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// Checks credentials against `host` the way `docker login` does: `GET /v2/` with them
    /// (through the token service when the registry answers with a bearer challenge).
    pub fn check_login(&self, host: &str, creds: &Credentials) -> anyhow::Result<()> {
        let transport = self.transport(host);
        let scheme = if transport == Transport::Http {
            "http"
        } else {
            "https"
        };
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .tls_danger_accept_invalid_certs(transport == Transport::HttpsAnyCert)
            .connect_timeout(Duration::from_secs(15))
            .build()?;
        // Docker Hub's API lives on another name than the one in image names.
        let api_host = if host == "docker.io" {
            "index.docker.io"
        } else {
            host
        };
        let url = format!("{scheme}://{api_host}/v2/");
        self.block_on(async {
            let res = http
                .get(&url)
                .basic_auth(&creds.username, Some(&creds.secret))
                .send()
                .await
                .map_err(|e| connect_error(host, &e.to_string(), self.plain_http(host)))?;
            let status = res.status();
            if status.is_success() {
                return Ok(());
            }
            let challenge = res
                .headers()
                .get(reqwest::header::WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            if status == reqwest::StatusCode::UNAUTHORIZED
                && let Some(realm) = bearer_param(&challenge, "realm")
            {
                let mut req = http
                    .get(&realm)
                    .basic_auth(&creds.username, Some(&creds.secret));
                if let Some(service) = bearer_param(&challenge, "service") {
                    req = req.query(&[("service", service)]);
                }
                let res = req
                    .send()
                    .await
                    .map_err(|e| connect_error(host, &e.to_string(), false))?;
                if res.status().is_success() {
                    return Ok(());
                }
            }
            if status == reqwest::StatusCode::UNAUTHORIZED
                || status == reqwest::StatusCode::FORBIDDEN
            {
                anyhow::bail!(
                    "login to {host} failed: the registry refused user {:?} ({status}); check \
                     the user name and password",
                    creds.username
                );
            }
            anyhow::bail!("login to {host} failed: {url} answered {status}")
        })
    }
}

/// A parameter of a `WWW-Authenticate: Bearer realm="…",service="…"` challenge.
fn bearer_param(challenge: &str, key: &str) -> Option<String> {
    let rest = challenge.strip_prefix("Bearer ")?;
    for part in rest.split(',') {
        if let Some((k, v)) = part.trim().split_once('=')
            && k.eq_ignore_ascii_case(key)
        {
            return Some(v.trim_matches('"').to_string());
        }
    }
    None
}

fn status_code(e: &OciDistributionError) -> Option<u16> {
    match e {
        OciDistributionError::ServerError { code, .. } => Some(*code),
        OciDistributionError::RequestError(r) => r.status().map(|s| s.as_u16()),
        OciDistributionError::UnauthorizedError { .. } => Some(401),
        OciDistributionError::RegistryError { envelope, .. } => {
            envelope.errors.iter().find_map(|e| match e.code {
                OciErrorCode::Toomanyrequests => Some(429),
                OciErrorCode::Unauthorized => Some(401),
                OciErrorCode::Denied => Some(403),
                OciErrorCode::ManifestUnknown
                | OciErrorCode::NameUnknown
                | OciErrorCode::NotFound
                | OciErrorCode::BlobUnknown => Some(404),
                _ => None,
            })
        }
        OciDistributionError::ImageManifestNotFoundError(_) => Some(404),
        OciDistributionError::AuthenticationFailure(_) => Some(401),
        _ => None,
    }
}

fn is_retryable(e: &OciDistributionError) -> bool {
    matches!(status_code(e), Some(429 | 503))
}

/// Whether the error is "no such manifest/blob".
pub(crate) fn is_not_found(e: &OciDistributionError) -> bool {
    status_code(e) == Some(404)
}

fn connect_error(host: &str, detail: &str, plain_http: bool) -> anyhow::Error {
    let hint = if plain_http {
        String::new()
    } else {
        format!("; if {host} speaks plain HTTP, pass --insecure-registry {host}")
    };
    anyhow::anyhow!(
        "cannot reach the registry {host}: {detail}. Check that it is running and the name and \
         port are right{hint}"
    )
}

/// The whole chain of an error's sources, for messages.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

/// A message for `e`, which happened while doing `what` (e.g. "pulling") with `name`.
pub(crate) fn explain(
    conn: &Conn,
    e: OciDistributionError,
    what: &str,
    name: &ImageName,
) -> anyhow::Error {
    let host = &conn.host;
    if let OciDistributionError::RequestError(r) = &e
        && (r.is_connect() || r.is_timeout())
    {
        return connect_error(host, &chain(r), conn.plain_http);
    }
    let login_hint = if matches!(conn.auth, RegistryAuth::Anonymous) {
        format!("log in with `wbuild login {host}`")
    } else {
        format!(
            "the saved login for {host} was refused or lacks access; log in again with \
             `wbuild login {host}`"
        )
    };
    match (status_code(&e), &e) {
        (Some(401), _) => anyhow::anyhow!(
            "{what} {name}: the registry requires authentication (401); {login_hint}"
        ),
        (Some(403), _) => anyhow::anyhow!(
            "{what} {name}: access denied (403); check the repository name and that your \
             account may access it; {login_hint}"
        ),
        (Some(404), _) => anyhow::anyhow!(
            "{what} {name}: not found in {host}: check the repository name and the tag or digest"
        ),
        (Some(429), _) => anyhow::anyhow!(
            "{what} {name}: the registry {host} keeps refusing with 429 Too Many Requests \
             (tried {ATTEMPTS} times); wait a while, or log in (`wbuild login {host}`) for a \
             higher limit"
        ),
        (_, OciDistributionError::DigestError(d)) => anyhow::anyhow!(
            "{what} {name}: content from {host} does not match its digest ({d}); the registry's \
             copy is damaged or was replaced: nothing was stored, ask the registry's owner to \
             push the image again"
        ),
        _ => anyhow::anyhow!("{what} {name}: {}", chain(&e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_challenges() {
        let c = r#"Bearer realm="https://auth.example/token",service="registry.example",scope="x""#;
        assert_eq!(
            bearer_param(c, "realm").as_deref(),
            Some("https://auth.example/token")
        );
        assert_eq!(
            bearer_param(c, "service").as_deref(),
            Some("registry.example")
        );
        assert_eq!(bearer_param(r#"Basic realm="x""#, "realm"), None);
    }

    #[test]
    fn rate_limits_are_retried_a_bounded_number_of_times() {
        let mut reg = Registry::new(vec![]);
        reg.backoff = Duration::from_millis(1);
        let calls = std::sync::atomic::AtomicU32::new(0);
        let r: Result<(), _> = reg.block_on(reg.retry(|| {
            calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async {
                Err(OciDistributionError::ServerError {
                    code: 429,
                    url: "u".into(),
                    message: "slow down".into(),
                })
            }
        }));
        assert!(r.is_err());
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), ATTEMPTS);
        calls.store(0, std::sync::atomic::Ordering::SeqCst);
        let r: Result<(), _> = reg.block_on(reg.retry(|| {
            calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async {
                Err(OciDistributionError::ServerError {
                    code: 404,
                    url: "u".into(),
                    message: "no".into(),
                })
            }
        }));
        assert!(r.is_err());
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
    }
}
