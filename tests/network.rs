//! RUN networking through the real binary, as root: the default network (one slirp4netns per
//! build) reaches a server the test runs in a network namespace of its own (a veth pair with
//! 198.18.0.0/15 addresses, routed through the host) and resolves `--add-host` names, but not
//! the host's loopback; `--network=none` reaches nothing; `--network=host` and
//! `--security=insecure` need `--allow`; a killed build leaves nothing of its network behind
//! once the next build has swept. Every test tears down what it made (Drop guards).

mod common;

use std::io::{BufRead as _, BufReader};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

fn sh(cmd: &[&str]) {
    let out = Command::new(cmd[0]).args(&cmd[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Root, runc, busybox, umoci, `ip` and slirp4netns; None (after saying why) outside CI.
fn setup() -> Option<common::Wbuild> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        common::skip("needs root");
        return None;
    }
    if !common::have_tool("ip") || !common::have_tool("slirp4netns") {
        return None;
    }
    common::with_busybox()
}

/// A network namespace with an HTTP server (busybox httpd) on a veth pair: the server is
/// `ip:port` (198.19.N.2), the host side of the pair is 198.19.N.1, so the host (and slirp4netns,
/// which connects from the host's namespace) reaches it by a connected route.
struct Server {
    ns: String,
    veth: String,
    ip: Ipv4Addr,
    port: u16,
    httpd: Option<Child>,
    _www: tempfile::TempDir,
}

impl Server {
    fn start(file: &str, body: &str) -> Server {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        // A /30 per server: third octet from the pid, fourth from the counter.
        let (o3, o4) = ((pid % 250) as u8, ((n % 60) * 4) as u8);
        let ns = format!("wbt-{pid}-{n}");
        let veth = format!("wbv{}", (pid * 64 + n) % 10_000_000);
        let www = tempfile::tempdir().unwrap();
        std::fs::write(www.path().join(file), body).unwrap();
        let mut s = Server {
            ns: ns.clone(),
            veth: veth.clone(),
            ip: Ipv4Addr::new(198, 19, o3, o4 + 2),
            port: 8080,
            httpd: None,
            _www: www,
        };
        let host_ip = format!("198.19.{o3}.{}/30", o4 + 1);
        let srv_ip = format!("{}/30", s.ip);
        sh(&["ip", "netns", "add", &ns]);
        sh(&[
            "ip", "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
        ]);
        sh(&["ip", "addr", "add", &host_ip, "dev", &veth]);
        sh(&["ip", "link", "set", &veth, "up"]);
        sh(&["ip", "-n", &ns, "addr", "add", &srv_ip, "dev", "eth0"]);
        sh(&["ip", "-n", &ns, "link", "set", "eth0", "up"]);
        sh(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
        let dir = s._www.path().to_str().unwrap().to_string();
        s.httpd = Some(
            Command::new("ip")
                .args(["netns", "exec", &ns, "busybox", "httpd", "-f", "-p"])
                .arg(s.port.to_string())
                .args(["-h", &dir])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        // The server answers before the first request from a build (bounded wait).
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect_timeout(&(s.ip, s.port).into(), Duration::from_millis(200))
            .is_err()
        {
            assert!(Instant::now() < deadline, "httpd in {ns} did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        s
    }

    fn url(&self, host: &str, file: &str) -> String {
        format!("http://{host}:{}/{file}", self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.httpd.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.veth])
            .status();
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}

/// A listener on the host's 127.0.0.1 that counts connections: a thread accepts and closes
/// them at once (so a client's `nc` ends), until the listener is dropped.
struct Loopback {
    port: u16,
    count: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Loopback {
    fn new() -> Loopback {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        let port = l.local_addr().unwrap().port();
        let count = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (c, s) = (count.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((conn, _)) => {
                        c.fetch_add(1, Ordering::Relaxed);
                        drop(conn);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Loopback {
            port,
            count,
            stop,
            thread: Some(thread),
        }
    }

    fn port(&self) -> u16 {
        self.port
    }

    /// Whether anyone connected (accepted within 10 ms of arriving; the build has ended).
    fn connected(&self) -> bool {
        std::thread::sleep(Duration::from_millis(50));
        self.count.load(Ordering::Relaxed) > 0
    }
}

impl Drop for Loopback {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn local_build(wb: &common::Wbuild, ctx: &Path, extra: &[&str]) -> (tempfile::TempDir, String) {
    let out = tempfile::tempdir().unwrap();
    let dest = format!("type=local,dest={}", out.path().display());
    let mut args = vec!["build", "--progress=plain", "-o", &dest];
    args.extend_from_slice(extra);
    args.push(ctx.to_str().unwrap());
    let log = wb.build(&args);
    (out, log)
}

/// Nothing of a build's network is left: no helper serving a namespace of this store, no
/// mount under the store, no namespace file.
fn assert_no_network_left(root: &Path) {
    let root_s = root.to_str().unwrap();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        assert!(
            !(text.contains("slirp4netns") && text.contains(root_s)),
            "a helper is left: {text}"
        );
    }
    let mounts = read(Path::new("/proc/self/mountinfo"));
    assert!(
        !mounts.lines().any(|l| l.contains(root_s)),
        "mounts left under the store:\n{mounts}"
    );
    let netns = root.join("exec/netns");
    let left: Vec<_> = std::fs::read_dir(&netns)
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "left in {}: {left:?}", netns.display());
}

#[test]
fn default_network_reaches_servers_and_add_host_names_but_not_host_loopback() {
    let Some(wb) = setup() else { return };
    let srv = Server::start("hello.txt", "hello over the network\n");
    let lo = Loopback::new();
    let ctx = common::context(&format!(
        "FROM busybox\n\
         RUN timeout 20 wget -q -O /got {url} && cat /etc/resolv.conf > /resolv && \
             cat /etc/hosts > /hosts\n\
         RUN timeout 20 wget -q -O /got2 {url_ip}\n\
         RUN --network=none (timeout 10 wget -q -O /none {url_ip}; echo rc=$?) > /none.txt 2>&1\n\
         RUN (timeout 10 nc 127.0.0.1 {port} </dev/null; echo rc=$?) > /lo.txt 2>&1; \
             (timeout 10 nc 10.0.2.2 {port} </dev/null; echo rc=$?) >> /lo.txt 2>&1\n",
        url = srv.url("files.test", "hello.txt"),
        url_ip = srv.url(&srv.ip.to_string(), "hello.txt"),
        port = lo.port(),
    ));
    let add_host = format!("files.test:{}", srv.ip);
    let (out, log) = local_build(&wb, ctx.path(), &["--add-host", &add_host]);
    let fs = out.path();
    assert_eq!(read(&fs.join("got")), "hello over the network\n", "{log}");
    assert_eq!(read(&fs.join("got2")), "hello over the network\n");
    assert!(
        read(&fs.join("resolv")).contains("nameserver 10.0.2.3"),
        "{}",
        read(&fs.join("resolv"))
    );
    let hosts = read(&fs.join("hosts"));
    assert!(
        hosts.contains(&format!("{}\tfiles.test", srv.ip)),
        "{hosts}"
    );
    assert!(hosts.contains("localhost"), "{hosts}");
    let none = read(&fs.join("none.txt"));
    assert!(!none.contains("rc=0"), "--network=none fetched: {none}");
    assert!(!fs.join("none").exists() || read(&fs.join("none")).is_empty());
    let lo_out = read(&fs.join("lo.txt"));
    assert_eq!(
        lo_out.matches("rc=0").count(),
        0,
        "host loopback reached: {lo_out}"
    );
    assert!(
        !lo.connected(),
        "the host's loopback listener got a connection"
    );
    assert_no_network_left(wb.root.path());

    // The address of an --add-host entry is not part of the cache key (as in BuildKit); its
    // name is, so another name runs the steps again.
    let log = wb.build(&[
        "build",
        "--progress=plain",
        "--add-host",
        "files.test:198.18.0.1",
        ctx.path().to_str().unwrap(),
    ]);
    assert!(log.contains("(0 steps ran"), "{log}");
    let log = wb.build(&[
        "build",
        "--progress=plain",
        "--add-host",
        &format!("other.test:{}", srv.ip),
        "--add-host",
        &add_host,
        ctx.path().to_str().unwrap(),
    ]);
    assert!(!log.contains("(0 steps ran"), "{log}");
}

#[test]
fn host_network_needs_allow_network_host() {
    let Some(wb) = setup() else { return };
    let lo = Loopback::new();
    let ctx = common::context(&format!(
        "FROM busybox\n\
         RUN echo first > /first\n\
         RUN --network=host (timeout 10 nc 127.0.0.1 {port} </dev/null; echo rc=$?) > /lo.txt 2>&1\n",
        port = lo.port(),
    ));
    let dir = ctx.path().to_str().unwrap();
    let err = wb.fails(&["build", "--progress=plain", dir]);
    assert!(err.contains("Dockerfile:3:1"), "{err}");
    assert!(err.contains("--allow network.host"), "{err}");
    assert!(err.contains("RUN --network=host (timeout 10 nc"), "{err}");
    assert!(
        !err.contains("echo first"),
        "a step ran before the refusal:\n{err}"
    );
    assert!(!lo.connected());
    // The command line's --network host needs it too, for the RUN without a flag of its own.
    let plain = common::context("FROM busybox\nRUN echo hi\n");
    let err = wb.fails(&["build", "--network", "host", plain.path().to_str().unwrap()]);
    assert!(
        err.contains("`--network host` on the command line"),
        "{err}"
    );
    assert!(err.contains("Dockerfile:2:1"), "{err}");

    let (out, log) = local_build(&wb, ctx.path(), &["--allow", "network.host"]);
    let lo_out = read(&out.path().join("lo.txt"));
    assert!(lo_out.contains("rc=0"), "{lo_out}\n{log}");
    assert!(
        lo.connected(),
        "the host's loopback listener got no connection"
    );
}

#[test]
fn insecure_needs_allow_security_insecure() {
    let Some(wb) = setup() else { return };
    let ctx = common::context(
        "FROM busybox\n\
         RUN (mkdir -p /m0 && mount -t tmpfs none /m0; echo rc=$?) > /sandboxed 2>&1\n\
         RUN --security=insecure mkdir -p /m && mount -t tmpfs none /m && echo ok > /m/x && \
             cat /m/x > /mounted && umount /m && grep -c CapEff /proc/self/status > /caps && \
             grep CapEff /proc/self/status >> /caps\n",
    );
    let dir = ctx.path().to_str().unwrap();
    let err = wb.fails(&["build", "--progress=plain", dir]);
    assert!(err.contains("Dockerfile:3:1"), "{err}");
    assert!(err.contains("--allow security.insecure"), "{err}");
    assert!(err.contains("RUN --security=insecure mkdir"), "{err}");

    let (out, log) = local_build(&wb, ctx.path(), &["--allow", "security.insecure"]);
    let fs = out.path();
    let sandboxed = read(&fs.join("sandboxed"));
    assert!(
        !sandboxed.contains("rc=0"),
        "a sandboxed RUN mounted: {sandboxed}"
    );
    assert_eq!(read(&fs.join("mounted")), "ok\n", "{log}");
    // Every capability wbuild itself has (its bounding set, which is this test's).
    let caps = read(&fs.join("caps"));
    let eff = caps
        .lines()
        .nth(1)
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap();
    let own = read(Path::new("/proc/self/status"));
    let own = own.lines().find_map(|l| l.strip_prefix("CapBnd:")).unwrap();
    assert_eq!(
        u64::from_str_radix(eff, 16).unwrap(),
        u64::from_str_radix(own.trim(), 16).unwrap(),
        "{caps}"
    );
}

#[test]
fn a_missing_helper_fails_before_the_first_run() {
    let Some(wb) = setup() else { return };
    // A PATH with runc but without slirp4netns.
    let bin = tempfile::tempdir().unwrap();
    let runc = String::from_utf8(
        Command::new("sh")
            .args(["-c", "command -v runc"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    std::os::unix::fs::symlink(runc.trim(), bin.path().join("runc")).unwrap();
    let ctx = common::context("FROM busybox\nRUN --network=none echo first\nRUN echo second\n");
    let out = wb
        .cmd()
        .env("PATH", bin.path())
        .args(["build", "--progress=plain", ctx.path().to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("apt-get install slirp4netns"), "{err}");
    assert!(!err.contains("echo first"), "a step ran:\n{err}");
    // Without a default-network RUN the helper is not needed.
    let none = common::context("FROM busybox\nRUN echo only\n");
    common::run_ok(wb.cmd().env("PATH", bin.path()).args([
        "build",
        "--network",
        "none",
        none.path().to_str().unwrap(),
    ]));
}

/// Kills the child on drop (a failed assertion must not leave a build running).
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_killed_build_leaves_no_network_behind() {
    let Some(wb) = setup() else { return };
    let ctx = common::context("FROM busybox\nRUN echo networked-step-started; sleep 60\n");
    let mut child = Running(
        wb.cmd()
            .args(["build", "--progress=plain", ctx.path().to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    // Wait (bounded) until the RUN is running in the build's network.
    let stderr = child.0.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("networked-step-started") && !line.contains("RUN") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(60))
        .expect("the RUN did not start");
    let root = wb.root.path();
    let netns = root.join("exec/netns");
    assert!(
        std::fs::read_dir(&netns).unwrap().count() > 0,
        "no network namespace while the RUN runs"
    );
    // SAFETY: kill on our own child's pid.
    unsafe { libc::kill(child.0.id() as i32, libc::SIGKILL) };
    let _ = child.0.wait();

    // The check lists the namespace as a leftover of a killed run (not damage: exit 0); the next
    // build sweeps it (and the container).
    let out = wb.run(&["check"]);
    let report =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{report}");
    assert!(report.contains("RUN network namespace"), "{report}");
    assert!(
        report.contains("the next build or `wbuild prune` removes them"),
        "{report}"
    );
    let next = common::context("FROM busybox\nRUN --network=none true\n");
    wb.build(&["build", next.path().to_str().unwrap()]);
    assert_no_network_left(root);
    let out = wb.run(&["check"]);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
