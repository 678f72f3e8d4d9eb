//! A throwaway image registry for the end-to-end tests: Debian's `docker-registry` on a free
//! port of 127.0.0.1, its storage in a temp dir, optionally with basic auth and TLS, killed
//! when dropped; and a minimal HTTP client for what the tests ask of it directly.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running registry, killed when dropped.
pub struct Registry {
    child: Child,
    /// `127.0.0.1:PORT`
    pub addr: String,
    dir: tempfile::TempDir,
}

impl Registry {
    /// None (after printing why) when docker-registry is missing outside CI.
    pub fn start() -> Option<Registry> {
        Registry::start_with(None, false)
    }

    /// Like [`Registry::start`]; with `user`, only that user (and password) may use it
    /// (htpasswd basic auth); with `tls`, it serves HTTPS with a fresh self-signed certificate
    /// (made with openssl).
    pub fn start_with(user: Option<(&str, &str)>, tls: bool) -> Option<Registry> {
        if !super::have_tool("docker-registry") {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let mut config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
             http:\n  addr: {addr}\n  secret: wbuild-test\n",
            dir.path().join("data").display()
        );
        if tls {
            if !super::have_tool("openssl") {
                return None;
            }
            let (key, cert) = (dir.path().join("key.pem"), dir.path().join("cert.pem"));
            super::run_ok(
                Command::new("openssl")
                    .args([
                        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    ])
                    .args(["-subj", "/CN=localhost", "-keyout"])
                    .arg(&key)
                    .arg("-out")
                    .arg(&cert),
            );
            config += &format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                cert.display(),
                key.display()
            );
        }
        if let Some((u, p)) = user {
            if !super::have_tool("htpasswd") {
                return None;
            }
            let out = Command::new("htpasswd")
                .args(["-Bbn", u, p])
                .output()
                .unwrap();
            assert!(out.status.success(), "htpasswd failed");
            let file = dir.path().join("htpasswd");
            std::fs::write(&file, &out.stdout).unwrap();
            config += &format!(
                "auth:\n  htpasswd:\n    realm: wbuild-test\n    path: {}\n",
                file.display()
            );
        }
        let cfg = dir.path().join("config.yml");
        std::fs::write(&cfg, config).unwrap();
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&cfg)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let reg = Registry { child, addr, dir };
        let deadline = Instant::now() + Duration::from_secs(20);
        while http(&reg.addr, "GET", "/v2/", "", &[]).is_none() {
            assert!(
                Instant::now() < deadline,
                "the registry did not start: {}",
                std::fs::read_to_string(reg.dir.path().join("registry.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(reg)
    }

    /// The file the registry keeps blob `digest` in.
    pub fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap();
        self.dir
            .path()
            .join("data/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// `ADDR/repo`
    pub fn name(&self, repo: &str) -> String {
        format!("{}/{repo}", self.addr)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A minimal HTTP/1.1 request; returns the status code, None if nothing answers.
pub fn http(addr: &str, method: &str, path: &str, content_type: &str, body: &[u8]) -> Option<u16> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !content_type.is_empty() {
        req += &format!("Content-Type: {content_type}\r\n");
    }
    req += "\r\n";
    s.write_all(req.as_bytes()).ok()?;
    s.write_all(body).ok()?;
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp);
    resp.split_whitespace().nth(1)?.parse().ok()
}
