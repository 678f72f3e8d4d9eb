//! `ADD <url>`: remote files fetched by the host over HTTP(S), as BuildKit's http source does.
//! The body streams to a temp file in the store while it is hashed; its sha256 is what the step's
//! cache key sees (an unchanged file keeps the cache, a changed one re-runs the step), and
//! `--checksum=sha256:…` is checked against it. The file is named as BuildKit names it: the
//! `Content-Disposition` filename, else the last segment of the URL's path, else `index`; its
//! mtime is the `Last-Modified` header, its mode 0600 unless `--chmod` says otherwise.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use sha2::{Digest as _, Sha256};

/// A fetched remote file, kept until the build ends.
pub struct Download {
    /// The name it gets under a directory destination.
    pub name: String,
    pub path: tempfile::TempPath,
    /// `sha256:<hex>` of the body.
    pub digest: String,
    /// `Last-Modified`, in seconds since 1970.
    pub mtime: Option<i64>,
}

impl Download {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The file name BuildKit gives a download.
fn file_name(url: &reqwest::Url, disposition: Option<&str>) -> String {
    if let Some(d) = disposition {
        for part in d.split(';') {
            if let Some(v) = part.trim().strip_prefix("filename=") {
                let v = v.trim_matches('"');
                let base = v.rsplit('/').next().unwrap_or("");
                if !base.is_empty() && base != "." && base != ".." {
                    return base.to_string();
                }
            }
        }
    }
    let last = url
        .path_segments()
        .and_then(|mut s| s.next_back())
        .unwrap_or("");
    let last = percent_decode(last);
    if last.is_empty() || last == "." || last == ".." {
        "index".to_string()
    } else {
        last
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(hex) = std::str::from_utf8(&bytes[i + 1..i + 3])
            && let Ok(v) = u8::from_str_radix(hex, 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).replace('/', "_")
}

/// Fetch `url` into a temp file under `dir`; `checksum` (`sha256:<hex>`) must match if given.
pub fn download(url: &str, checksum: Option<&str>, dir: &Path) -> anyhow::Result<Download> {
    let parsed = reqwest::Url::parse(url).with_context(|| format!("ADD {url}: not a URL"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        bail!("ADD {url}: only http and https URLs can be fetched");
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(30))
        .build()
        .context("setting up the HTTP client")?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the HTTP runtime")?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".add-")
        .tempfile_in(dir)
        .context("creating a temp file for ADD")?;
    let (name, mtime, digest) = rt.block_on(async {
        let mut resp = client
            .get(parsed.clone())
            .send()
            .await
            .with_context(|| format!("ADD {url}: the request failed"))?;
        let status = resp.status();
        if !status.is_success() {
            bail!("ADD {url}: the server answered {status}");
        }
        let header = |h: reqwest::header::HeaderName| {
            resp.headers()
                .get(h)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let name = file_name(
            resp.url(),
            header(reqwest::header::CONTENT_DISPOSITION).as_deref(),
        );
        let mtime = header(reqwest::header::LAST_MODIFIED)
            .and_then(|v| httpdate::parse_http_date(&v).ok())
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_secs() as i64);
        let mut hash = Sha256::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .with_context(|| format!("ADD {url}: reading the body"))?
        {
            hash.update(&chunk);
            tmp.write_all(&chunk)?;
        }
        anyhow::Ok((
            name,
            mtime,
            format!("sha256:{}", hex::encode(hash.finalize())),
        ))
    })?;
    tmp.flush()?;
    if let Some(want) = checksum
        && want != digest
    {
        bail!("ADD {url}: the content's digest is {digest}, not the --checksum {want}");
    }
    Ok(Download {
        name,
        path: tmp.into_temp_path(),
        digest,
        mtime,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_buildkit() {
        let u = |s: &str| reqwest::Url::parse(s).unwrap();
        assert_eq!(
            file_name(&u("http://h/a/b/tool.tar.gz?x=1"), None),
            "tool.tar.gz"
        );
        assert_eq!(file_name(&u("http://h/"), None), "index");
        assert_eq!(file_name(&u("http://h/dir/my%20file"), None), "my file");
        assert_eq!(
            file_name(
                &u("http://h/dl?id=3"),
                Some("attachment; filename=\"real.bin\"")
            ),
            "real.bin"
        );
        assert_eq!(
            file_name(
                &u("http://h/x"),
                Some("attachment; filename=\"../../etc/passwd\"")
            ),
            "passwd"
        );
    }
}
