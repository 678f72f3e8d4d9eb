//! The light runtime against runc: the same Dockerfile gives the same image and the same view
//! from inside the container (identity, capabilities, devices, limits, environment, mounts but
//! for the `nodev` the light runtime adds), device nodes made in a RUN do not open, and a
//! command that is not there is a clear error under both.

mod common;

use std::path::Path;
use std::process::Output;

use common::Wbuild;

/// `wbuild ARGS` with the runtime chosen (`None`: the default, the light one).
fn run_with(wb: &Wbuild, runtime: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = wb.cmd();
    cmd.args(args).env("SOURCE_DATE_EPOCH", "1700000000");
    match runtime {
        Some(r) => cmd.env("WBUILD_RUNTIME", r),
        None => cmd.env_remove("WBUILD_RUNTIME"),
    };
    cmd.output().unwrap()
}

fn built(out: &Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    err.lines()
        .find_map(|l| l.strip_prefix("built "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no digest in:\n{err}"))
        .to_string()
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The observations a RUN makes of its container, as root and as a USER.
const PROBE: &str = "FROM busybox\n\
RUN mkdir -m 777 /o && cd /o && \
    grep -E '^(Cap|NoNewPrivs|Seccomp)' /proc/self/status > status; \
    awk '{print $5, $6}' /proc/self/mountinfo | sed 's/,nodev//' \
      | grep -v -E '^/dev/(null|zero|full|random|urandom|tty) ' | sort > mounts; \
    ls -l /dev | awk '{print $1, $3, $4, $5, $6, $NF}' > dev; \
    ulimit -a > ulimit; id > id; hostname > host; ls /proc/self/fd > fds; env | sort > env; \
    pwd > pwd; echo $$ > pid\n\
USER 1000:1000\n\
WORKDIR /o\n\
RUN grep -E '^Cap' /proc/self/status > user-status; id > user-id; env | sort > user-env\n";

#[test]
fn the_light_runtime_and_runc_see_the_same_container_and_make_the_same_image() {
    let Some(wb) = common::with_busybox() else {
        return;
    };
    let ctx = common::context(PROBE);
    let mut seen = Vec::new();
    for runtime in [None, Some("runc")] {
        let out = tempfile::tempdir().unwrap();
        let dest = format!("type=local,dest={}", out.path().display());
        let o = run_with(
            &wb,
            runtime,
            &[
                "build",
                "--no-cache",
                "-o",
                &dest,
                ctx.path().to_str().unwrap(),
            ],
        );
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(o.status.success(), "{runtime:?}: {err}");
        seen.push(out);
    }
    let (light, runc) = (seen[0].path().join("o"), seen[1].path().join("o"));
    for f in [
        "status",
        "mounts",
        "dev",
        "ulimit",
        "id",
        "host",
        "fds",
        "env",
        "pwd",
        "pid",
        "user-status",
        "user-id",
        "user-env",
    ] {
        assert_eq!(
            read(&light.join(f)),
            read(&runc.join(f)),
            "{f} differs between the light runtime and runc"
        );
    }
    // What both must show: PID 1, Docker's capabilities for root, none for a USER.
    assert_eq!(read(&light.join("pid")), "1\n");
    assert!(read(&light.join("status")).contains("CapEff:\t00000000a80425fb"));
    assert!(read(&light.join("user-status")).contains("CapEff:\t0000000000000000"));
    assert_eq!(read(&light.join("fds")), "0\n1\n2\n3\n");
    assert!(read(&light.join("env")).contains("HOME=/root"));

    // The same image digest from either runtime (a Dockerfile whose RUN output is the same).
    let ctx = common::context(
        "FROM busybox\nRUN echo one > /a && mkdir -p /d/e && rm -rf /home\nUSER 1000\nRUN true\n",
    );
    let digests: Vec<String> = [None, Some("runc")]
        .iter()
        .map(|r| {
            built(&run_with(
                &wb,
                *r,
                &["build", "--no-cache", ctx.path().to_str().unwrap()],
            ))
        })
        .collect();
    assert_eq!(digests[0], digests[1]);
}

#[test]
fn device_nodes_made_in_a_run_do_not_open() {
    let Some(wb) = common::with_busybox() else {
        return;
    };
    // A block device of the host's loop driver and a copy of /dev/null's numbers: made fine,
    // never opened (runc: the device cgroup; the light runtime: nodev mounts).
    let ctx = common::context(
        "FROM busybox\n\
         RUN mknod /loop b 7 0 && mknod /dev/loop b 7 0 && \
             (head -c1 /loop > /dev/null 2>&1; echo disk=$?; \
              head -c1 /dev/loop > /dev/null 2>&1; echo dev=$?) > /r && \
             echo ok > /dev/null && head -c4 /dev/zero | wc -c >> /r\n",
    );
    for runtime in [None, Some("runc")] {
        let out = tempfile::tempdir().unwrap();
        let dest = format!("type=local,dest={}", out.path().display());
        let o = run_with(
            &wb,
            runtime,
            &[
                "build",
                "--no-cache",
                "-o",
                &dest,
                ctx.path().to_str().unwrap(),
            ],
        );
        assert!(
            o.status.success(),
            "{runtime:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let r = read(&out.path().join("r"));
        assert!(r.contains("disk=1"), "{runtime:?} opened a made disk: {r}");
        assert!(
            r.contains("dev=1"),
            "{runtime:?} opened a made /dev node: {r}"
        );
        assert!(r.trim_end().ends_with('4'), "{runtime:?}: /dev/zero: {r}");
    }
}

#[test]
fn a_command_that_is_not_there_is_a_clear_error() {
    let Some(wb) = common::with_busybox() else {
        return;
    };
    let ctx = common::context("FROM busybox\nRUN [\"no-such-program\", \"x\"]\n");
    for runtime in [None, Some("runc")] {
        let o = run_with(&wb, runtime, &["build", ctx.path().to_str().unwrap()]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{runtime:?}: {err}");
        assert!(
            err.contains("Dockerfile:2") && err.contains("no-such-program"),
            "{runtime:?}: {err}"
        );
        assert!(
            err.contains("executable file not found"),
            "{runtime:?}: {err}"
        );
    }
}

#[test]
fn a_local_output_may_be_a_relative_directory() {
    let Some(wb) = common::with_busybox() else {
        return;
    };
    let ctx = common::context("FROM busybox\nRUN echo hi > /greeting\n");
    let cwd = tempfile::tempdir().unwrap();
    let out = wb
        .cmd()
        .current_dir(cwd.path())
        .args([
            "build",
            "-o",
            "type=local,dest=out",
            ctx.path().to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(read(&cwd.path().join("out/greeting")), "hi\n");
}

#[test]
fn an_unknown_runtime_name_is_refused() {
    let Some(wb) = common::with_busybox() else {
        return;
    };
    let ctx = common::context("FROM busybox\nRUN true\n");
    let o = run_with(&wb, Some("crun"), &["build", ctx.path().to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(
        err.contains("WBUILD_RUNTIME=\"crun\"") && err.contains("`light` or `runc`"),
        "{err}"
    );
    // The default's own name is accepted.
    let o = run_with(&wb, Some("light"), &["build", ctx.path().to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}
