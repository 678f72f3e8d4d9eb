//! The registry commands: `pull`, `push`, `login`, `logout`.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};

use crate::catalog;
use crate::ir::Platform;
use crate::registry::auth::{self, Credentials};
use crate::registry::{ImageName, Registry};
use crate::store::Store;

pub fn pull(
    root: &Path,
    reg: &Arc<Registry>,
    name: &str,
    platform: &Platform,
) -> anyhow::Result<()> {
    let store = Store::open(root)?;
    let _gc = store.lock_shared(Store::GC_LOCK)?;
    let image = ImageName::parse(name)?;
    let (r, fetched) = reg.pull(&store, &image, platform)?;
    eprintln!(
        "pulled {} ({} of {} layers downloaded)",
        r.pinned(),
        fetched,
        r.manifest.layers().len()
    );
    println!("{}", r.pinned());
    Ok(())
}

pub fn push(root: &Path, reg: &Arc<Registry>, name: &str) -> anyhow::Result<()> {
    let store = Store::open(root)?;
    let _gc = store.lock_shared(Store::GC_LOCK)?;
    let image = ImageName::parse(name)?;
    let local = catalog::lookup(&store, name)?.with_context(|| {
        format!("no image named {name} in the store; build it with -t {name} or `wbuild images` lists them")
    })?;
    // The name's own target: an image index goes with every platform's image. Layers the
    // store keeps uncompressed go gzip-compressed (as a build's --push does by default).
    let pushed = crate::image::compressed::for_export(
        &store,
        &local.digest,
        crate::snapshot::Compression::Gzip { level: 6 },
    )?
    .digest;
    let stats = reg.push(&store, &pushed, &image)?;
    eprintln!(
        "pushed {image}@{pushed} ({} blobs uploaded, {} mounted, {} already there)",
        stats.uploaded, stats.mounted, stats.existing
    );
    println!("{}", image.pinned(&pushed.to_string()));
    Ok(())
}

fn server_host(server: Option<String>) -> anyhow::Result<String> {
    let s = server.unwrap_or_else(|| "docker.io".into());
    let s = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .unwrap_or(&s);
    let host = s.split('/').next().unwrap_or_default();
    if host.is_empty() || host.chars().any(char::is_whitespace) {
        bail!("{s:?} is not a registry host; give e.g. ghcr.io or 127.0.0.1:5000");
    }
    Ok(host.to_string())
}

pub fn login(
    reg: &Arc<Registry>,
    server: Option<String>,
    username: Option<String>,
    password: Option<String>,
    password_stdin: bool,
) -> anyhow::Result<()> {
    let host = server_host(server)?;
    let Some(username) = username else {
        bail!(
            "wbuild login {host}: give the user name with -u USER (and the password on stdin with --password-stdin)"
        );
    };
    let secret = match (password, password_stdin) {
        (Some(_), true) => bail!("give either --password or --password-stdin, not both"),
        (Some(p), false) => p,
        (None, true) => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .context("reading the password from stdin")?;
            s.trim_end_matches(['\n', '\r']).to_string()
        }
        (None, false) => {
            bail!("wbuild login {host}: give the password with --password-stdin (or -p)")
        }
    };
    if secret.is_empty() {
        bail!("wbuild login {host}: the password is empty");
    }
    let creds = Credentials { username, secret };
    reg.check_login(&host, &creds)?;
    let place = auth::save(&host, &creds)?;
    eprintln!("login succeeded; credentials for {host} saved in {place}");
    Ok(())
}

pub fn logout(server: Option<String>) -> anyhow::Result<()> {
    let host = server_host(server)?;
    if auth::erase(&host)? {
        eprintln!("removed the credentials for {host}");
    } else {
        eprintln!("no credentials were saved for {host}");
    }
    Ok(())
}
