//! `RUN --mount=type=ssh`: the agent reaches the step through a socket of its own, as in
//! BuildKit, so the mount's `uid`, `gid` and `mode` apply to that socket and never to the user's
//! agent socket. [`AgentProxy`] listens on a fresh Unix socket in a private directory, owned and
//! moded as the mount says, and forwards every connection to the agent; it stops when dropped,
//! after the step.

use std::io;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use anyhow::Context as _;

/// A forwarding socket for one step's ssh mount.
pub(super) struct AgentProxy {
    _dir: tempfile::TempDir,
    socket: PathBuf,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl AgentProxy {
    /// Listens in a new directory under `tmp_dir` and forwards to `agent`; the socket gets
    /// `uid`, `gid` and `mode`.
    pub(super) fn start(
        agent: &Path,
        tmp_dir: &Path,
        uid: u32,
        gid: u32,
        mode: u32,
    ) -> anyhow::Result<AgentProxy> {
        let dir = tempfile::Builder::new()
            .prefix(".ssh-")
            .tempdir_in(tmp_dir)
            .context("creating the ssh agent proxy's directory")?;
        let socket = dir.path().join("agent.sock");
        let listener = UnixListener::bind(&socket)
            .with_context(|| format!("listening on {}", socket.display()))?;
        std::os::unix::fs::chown(&socket, Some(uid), Some(gid))
            .with_context(|| format!("chown of the ssh socket to {uid}:{gid}"))?;
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(mode & 0o7777))?;
        let stop = Arc::new(AtomicBool::new(false));
        let agent = agent.to_path_buf();
        let flag = stop.clone();
        let accept = std::thread::Builder::new()
            .name("ssh-agent-proxy".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    if flag.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(client) = conn else { continue };
                    let agent = agent.clone();
                    let _ = std::thread::Builder::new()
                        .name("ssh-agent-conn".into())
                        .spawn(move || {
                            let _ = forward(client, &agent);
                        });
                }
            })
            .context("starting the ssh agent proxy")?;
        Ok(AgentProxy {
            _dir: dir,
            socket,
            stop,
            accept: Some(accept),
        })
    }

    /// The socket to bind into the step.
    pub(super) fn socket(&self) -> &Path {
        &self.socket
    }
}

impl Drop for AgentProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = UnixStream::connect(&self.socket);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

/// Copies bytes both ways between a client of the proxy and a new connection to the agent.
fn forward(client: UnixStream, agent: &Path) -> io::Result<()> {
    let upstream = UnixStream::connect(agent)?;
    let (mut c_read, mut u_write) = (client.try_clone()?, upstream.try_clone()?);
    let up = std::thread::spawn(move || {
        let _ = io::copy(&mut c_read, &mut u_write);
        let _ = u_write.shutdown(std::net::Shutdown::Write);
    });
    let (mut u_read, mut c_write) = (upstream, client);
    let _ = io::copy(&mut u_read, &mut c_write);
    let _ = c_write.shutdown(std::net::Shutdown::Write);
    let _ = up.join();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn forwards_both_ways_with_the_mounts_owner_and_mode() {
        let d = tempfile::tempdir().unwrap();
        let agent_path = d.path().join("agent");
        let agent = UnixListener::bind(&agent_path).unwrap();
        let echo = std::thread::spawn(move || {
            let (mut s, _) = agent.accept().unwrap();
            let mut buf = [0u8; 5];
            s.read_exact(&mut buf).unwrap();
            s.write_all(&buf.map(|b| b.to_ascii_uppercase())).unwrap();
        });
        let proxy = AgentProxy::start(&agent_path, d.path(), 0, 0, 0o640).unwrap();
        let md = std::fs::metadata(proxy.socket()).unwrap();
        assert_eq!(md.mode() & 0o7777, 0o640);
        let mut c = UnixStream::connect(proxy.socket()).unwrap();
        c.write_all(b"hello").unwrap();
        let mut got = [0u8; 5];
        c.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"HELLO");
        echo.join().unwrap();
        drop(proxy);
    }
}
