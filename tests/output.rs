//! End-to-end tests of what a build reports and writes besides the image: `--progress`
//! (plain, tty, json), `--metadata-file` and `--iidfile`, `--compression=zstd` layers, and
//! `-o type=docker` archives that a private dockerd loads and runs, outputs to standard output
//! and `--load` through the engine's API.
//! As root with runc, on the busybox base of the test harness.

mod common;

use std::path::Path;

use serde_json::Value;

const DOCKERFILE: &str = "FROM busybox\nRUN echo hello from run\nCOPY f /f\n";

fn ctx() -> tempfile::TempDir {
    let dir = common::context(DOCKERFILE);
    std::fs::write(dir.path().join("f"), "file\n").unwrap();
    dir
}

/// The JSON progress events in a build's stderr.
fn events(stderr: &str) -> Vec<Value> {
    stderr
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

fn with_event<'a>(events: &'a [Value], kind: &str, step_part: &str) -> Option<&'a Value> {
    events
        .iter()
        .find(|e| e["event"] == kind && e["step"].as_str().is_some_and(|s| s.contains(step_part)))
}

#[test]
fn json_progress_reports_steps_output_and_cache_hits() {
    let Some(wb) = common::with_busybox() else {
        return;
    };
    let dir = ctx();
    let path = dir.path().to_str().unwrap();
    let log = wb.build(&["build", "--progress=json", path]);
    let ev = events(&log);
    let run = with_event(&ev, "started", "RUN echo hello").expect("RUN started");
    let output: String = ev
        .iter()
        .filter(|e| e["event"] == "output" && e["id"] == run["id"])
        .map(|e| e["data"].as_str().unwrap())
        .collect();
    assert_eq!(output, "hello from run\n");
    let done = with_event(&ev, "done", "RUN echo hello").expect("RUN done");
    assert!(done["duration_ms"].is_u64());
    assert!(with_event(&ev, "done", "COPY f /f").is_some(), "{log}");
    assert!(ev.iter().any(|e| e["event"] == "message"
        && e["data"].as_str().unwrap().contains("2 steps ran")));
    // Every line of stderr is an event: nothing else is mixed in.
    assert_eq!(ev.len(), log.lines().count(), "{log}");

    let log = wb.build(&["build", "--progress=json", path]);
    let ev = events(&log);
    assert!(
        with_event(&ev, "cached", "RUN echo hello").is_some(),
        "{log}"
    );
    assert!(with_event(&ev, "cached", "COPY f /f").is_some(), "{log}");
    assert!(!ev.iter().any(|e| e["event"] == "started"), "{log}");
}

#[test]
fn tty_progress_draws_a_live_view_and_shows_a_failed_step_in_full() {
    let Some(wb) = common::with_busybox() else {
        return;
    };
    let dir = ctx();
    let path = dir.path().to_str().unwrap();
    let log = wb.build(&["build", "--progress=tty", path]);
    assert!(log.contains("\x1b["), "no cursor control: {log:?}");
    assert!(
        log.contains("=> [stage-0 1/2] RUN echo hello from run"),
        "{log:?}"
    );
    assert!(log.contains("FINISHED"), "{log:?}");

    // Many lines of output, then failure: the view only showed the last lines, so the whole
    // output is printed with the failed step.
    let failing =
        common::context("FROM busybox\nRUN for i in $(seq 1 20); do echo line-$i; done; exit 3\n");
    let err = wb.fails(&["build", "--progress=tty", failing.path().to_str().unwrap()]);
    assert!(err.contains("=> ERROR [stage-0 1/1] RUN for i"), "{err:?}");
    for i in 1..=20 {
        assert!(
            err.contains(&format!("  | line-{i}\n")),
            "line-{i} missing: {err:?}"
        );
    }
    assert!(err.contains("Dockerfile:2"), "{err:?}");
    assert!(err.contains("exited with code 3"), "{err:?}");
}

#[test]
fn plain_progress_is_the_default_off_a_terminal() {
    let Some(wb) = common::with_busybox() else {
        return;
    };
    let dir = ctx();
    let log = wb.build(&["build", dir.path().to_str().unwrap()]);
    assert!(!log.contains("\x1b["), "{log:?}");
    assert!(log.contains("  | hello from run\n"), "{log}");
    assert!(log.contains("  DONE "), "{log}");
}

fn read_json(p: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

#[test]
fn metadata_file_and_iidfile_name_what_was_built() {
    let Some(wb) = common::with_busybox() else {
        return;
    };
    let dir = ctx();
    let out = tempfile::tempdir().unwrap();
    let meta = out.path().join("meta.json");
    let iid = out.path().join("iid");
    let oci = out.path().join("oci");
    wb.build(&[
        "build",
        "-t",
        "app:1",
        "--metadata-file",
        meta.to_str().unwrap(),
        "--iidfile",
        iid.to_str().unwrap(),
        "-o",
        &format!("type=oci,dest={}", oci.display()),
        dir.path().to_str().unwrap(),
    ]);
    let m = read_json(&meta);
    let index = read_json(&oci.join("index.json"));
    let desc = &index["manifests"][0];
    assert_eq!(m["containerimage.digest"], desc["digest"]);
    assert_eq!(m["containerimage.descriptor"]["digest"], desc["digest"]);
    assert_eq!(m["containerimage.descriptor"]["size"], desc["size"]);
    assert_eq!(
        m["containerimage.config.digest"].as_str().unwrap(),
        std::fs::read_to_string(&iid).unwrap()
    );
    assert_eq!(m["image.name"], "docker.io/library/app:1");
    // The config digest names the config blob the manifest points at.
    let digest = desc["digest"].as_str().unwrap().replace(':', "/");
    let manifest = read_json(&oci.join("blobs").join(digest));
    assert_eq!(
        manifest["config"]["digest"],
        m["containerimage.config.digest"]
    );
}

/// A field of each layer of the single image in an OCI layout directory.
fn layer_field(oci: &Path, field: &str) -> Vec<String> {
    let index = read_json(&oci.join("index.json"));
    let digest = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .replace(':', "/");
    let manifest = read_json(&oci.join("blobs").join(digest));
    manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l[field].as_str().unwrap().to_string())
        .collect()
}

/// Media types of the layers of the single image in an OCI layout directory.
fn layer_media_types(oci: &Path) -> Vec<String> {
    layer_field(oci, "mediaType")
}

/// Digests of the layers of the single image in an OCI layout directory.
fn layer_digests(oci: &Path) -> Vec<String> {
    layer_field(oci, "digest")
}

#[test]
fn zstd_compression_writes_zstd_layers_that_tools_read() {
    let Some(wb) = common::with_busybox() else {
        return;
    };
    let dir = ctx();
    let path = dir.path().to_str().unwrap();
    let out = tempfile::tempdir().unwrap();

    // A build that exports nothing keeps its layers as plain tars: the image it names lists
    // them uncompressed, each blob a tar whose digest is its diff_id.
    let log = wb.build(&["build", path]);
    assert!(log.contains("(2 steps ran"), "{log}");
    let built = log
        .lines()
        .find_map(|l| l.strip_prefix("built "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("{log}"));
    let blob_path = |d: &str| {
        wb.root
            .path()
            .join("blobs/sha256")
            .join(d.trim_start_matches("sha256:"))
    };
    let stored = read_json(&blob_path(built));
    let config = read_json(&blob_path(stored["config"]["digest"].as_str().unwrap()));
    let layers = stored["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 3, "{stored}");
    for (i, l) in layers.iter().enumerate().skip(1) {
        assert_eq!(
            l["mediaType"], "application/vnd.oci.image.layer.v1.tar",
            "{stored}"
        );
        assert_eq!(l["digest"], config["rootfs"]["diff_ids"][i], "{stored}");
        let bytes = std::fs::read(blob_path(l["digest"].as_str().unwrap())).unwrap();
        assert_eq!(bytes.len() as u64, l["size"].as_u64().unwrap());
        assert!(bytes.len() >= 1024 && bytes.len() % 512 == 0, "not a tar");
    }

    // The same steps, cached, leave compressed as the export asks: zstd, then gzip (the
    // default), with nothing run again; a second export compresses nothing again (the same
    // blobs, from the memo of compressed layers).
    let oci_z = out.path().join("oci-z");
    let log = wb.build(&[
        "build",
        "--compression=zstd",
        "-o",
        &format!("type=oci,dest={}", oci_z.display()),
        path,
    ]);
    assert!(log.contains("(0 steps ran"), "{log}");
    let types = layer_media_types(&oci_z);
    assert!(
        types[1..].iter().all(|t| t.ends_with("tar+zstd")),
        "{types:?}"
    );
    let oci_gz = out.path().join("oci-gz");
    let gz_export = |dest: &Path| {
        let log = wb.build(&[
            "build",
            "-o",
            &format!("type=oci,dest={}", dest.display()),
            path,
        ]);
        assert!(log.contains("(0 steps ran"), "{log}");
    };
    gz_export(&oci_gz);
    let types = layer_media_types(&oci_gz);
    assert!(
        types[1..].iter().all(|t| t.ends_with("tar+gzip")),
        "{types:?}"
    );
    let oci_gz2 = out.path().join("oci-gz2");
    gz_export(&oci_gz2);
    assert_eq!(layer_digests(&oci_gz), layer_digests(&oci_gz2));
    // The memo of compressed layers is part of a sound store.
    let report = wb.ok(&["check"]);
    assert!(report.contains("the store is sound"), "{report}");

    // Steps that run in a build exporting zstd write their layers as zstd at once.
    let oci = out.path().join("oci");
    let fs = out.path().join("fs");
    let log = wb.build(&[
        "build",
        "--no-cache",
        "--compression=zstd",
        "-o",
        &format!("type=oci,dest={}", oci.display()),
        "-o",
        &format!("type=local,dest={}", fs.display()),
        path,
    ]);
    assert!(log.contains("(2 steps ran"), "{log}");
    let types = layer_media_types(&oci);
    // The base layer stays as it was; the two new layers are zstd.
    assert_eq!(types.len(), 3, "{types:?}");
    assert!(
        types[1..].iter().all(|t| t.ends_with("tar+zstd")),
        "{types:?}"
    );
    assert_eq!(std::fs::read_to_string(fs.join("f")).unwrap(), "file\n");

    // skopeo reads the zstd image and its layers.
    if common::have_tool("skopeo") {
        let o = std::process::Command::new("skopeo")
            .args(["inspect", &format!("oci:{}", oci.display())])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let copy = out.path().join("copy");
        let o = std::process::Command::new("skopeo")
            .args([
                "copy",
                &format!("oci:{}", oci.display()),
                &format!("dir:{}", copy.display()),
            ])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }

    let err = wb.fails(&[
        "build",
        "--compression=zstd",
        "--compression-level=30",
        path,
    ]);
    assert!(err.contains("zstd levels are 1 to 22"), "{err}");
}

/// A private dockerd (own data root, exec root and socket), stopped on drop.
struct Dockerd {
    dir: tempfile::TempDir,
    child: std::process::Child,
}

impl Dockerd {
    fn start() -> Dockerd {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let log = std::fs::File::create(d.join("log")).unwrap();
        let child = std::process::Command::new("dockerd")
            .arg("--data-root")
            .arg(d.join("data"))
            .arg("--exec-root")
            .arg(d.join("exec"))
            .arg("--pidfile")
            .arg(d.join("pid"))
            .arg("-H")
            .arg(format!("unix://{}", d.join("sock").display()))
            .args(["--iptables=false", "--ip6tables=false", "--bridge=none"])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let docker = Dockerd { dir, child };
        for _ in 0..120 {
            if docker.docker(&["info"]).status.success() {
                return docker;
            }
            std::thread::sleep(std::time::Duration::from_millis(250));
        }
        panic!(
            "dockerd did not start:\n{}",
            std::fs::read_to_string(docker.dir.path().join("log")).unwrap_or_default()
        );
    }

    fn docker(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new("/usr/bin/docker")
            .arg("-H")
            .arg(format!("unix://{}", self.dir.path().join("sock").display()))
            .args(args)
            .output()
            .unwrap()
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        // SIGTERM lets dockerd stop its containerd and unmount what it mounted.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

#[test]
fn docker_archive_loads_into_docker_and_runs() {
    let Some(wb) = common::with_busybox() else {
        return;
    };
    if !common::have_tool("dockerd") {
        return;
    }
    let dir = common::context(
        "FROM busybox\nRUN echo built-by-wbuild > /made\nCOPY f /f\nENV GREETING=hi\nCMD [\"cat\", \"/made\"]\n",
    );
    std::fs::write(dir.path().join("f"), "file\n").unwrap();
    let out = tempfile::tempdir().unwrap();
    let tar = out.path().join("img.tar");
    wb.build(&[
        "build",
        "-t",
        "wbuild-test/loaded:1",
        "-o",
        &format!("type=docker,dest={}", tar.display()),
        dir.path().to_str().unwrap(),
    ]);
    let docker = Dockerd::start();
    let o = docker.docker(&["load", "-i", tar.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("wbuild-test/loaded:1"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let o = docker.docker(&[
        "image",
        "inspect",
        "-f",
        "{{json .Config.Env}} {{json .Config.Cmd}} {{len .RootFS.Layers}}",
        "wbuild-test/loaded:1",
    ]);
    let inspect = String::from_utf8_lossy(&o.stdout);
    assert!(inspect.contains("GREETING=hi"), "{inspect}");
    assert!(inspect.contains(r#"["cat","/made"]"#), "{inspect}");
    assert!(inspect.trim_end().ends_with(" 3"), "{inspect}");
    // Docker runs it: the layers unpack and the config is what the Dockerfile said.
    let o = docker.docker(&["run", "--rm", "--network=none", "wbuild-test/loaded:1"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "built-by-wbuild\n");
}

impl Dockerd {
    fn host(&self) -> String {
        format!("unix://{}", self.dir.path().join("sock").display())
    }
}

/// Standard output as a pseudo-terminal: (the terminal side for the child, the other side).
fn pty() -> (std::fs::File, std::fs::File) {
    use std::os::fd::FromRawFd;
    let (mut master, mut slave) = (0, 0);
    // SAFETY: openpty writes two new descriptors; no name, termios or size is passed.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "openpty");
    // SAFETY: both descriptors are new and owned here.
    unsafe {
        (
            std::fs::File::from_raw_fd(slave),
            std::fs::File::from_raw_fd(master),
        )
    }
}

/// buildx: `-o -` is a tar of the filesystem on standard output, `dest=-` of the docker, oci and
/// tar types the same archive a file would get, `-o DIR` is `type=local,dest=DIR`; standard
/// output must not be a terminal and only one output may use it.
/// The entry names of a tar archive.
fn tar_names(tar: &[u8]) -> Vec<String> {
    tar::Archive::new(tar)
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_str().unwrap().to_string())
        .collect()
}

#[test]
fn outputs_to_standard_output_and_the_dir_shorthand() {
    let Some(wb) = common::with_busybox() else {
        return;
    };
    let dir = ctx();
    let path = dir.path().to_str().unwrap();
    let out = wb.cmd().args(["build", "-o", "-", path]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let names = tar_names(&out.stdout);
    assert!(names.iter().any(|n| n == "f"), "{names:?}");
    assert!(names.iter().any(|n| n == "bin/sh"), "{names:?}");

    let out = common::run_ok(wb.cmd().args(["build", "-o", "type=oci,dest=-", path]));
    let names = tar_names(&out.stdout);
    assert!(names.iter().any(|n| n == "index.json"), "{names:?}");
    assert!(names.iter().any(|n| n == "oci-layout"), "{names:?}");
    assert!(!Path::new("-").exists(), "no file named -");

    let local = tempfile::tempdir().unwrap();
    let dest = local.path().join("fs");
    wb.build(&["build", "-o", dest.to_str().unwrap(), path]);
    assert_eq!(std::fs::read_to_string(dest.join("f")).unwrap(), "file\n");

    let (tty, _keep) = pty();
    let out = wb
        .cmd()
        .args(["build", "-o", "type=docker,dest=-", path])
        .stdout(tty)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("refusing to write a tar to a terminal"),
        "{err}"
    );

    let err = wb.fails(&["build", "-o", "-", "-o", "type=oci,dest=-", path]);
    assert!(
        err.contains("only one -o can write to standard output"),
        "{err}"
    );
    let err = wb.fails(&["build", "-o", "type=local,dest=-", path]);
    assert!(err.contains("type=local writes a directory"), "{err}");
}

/// `-o type=docker,dest=- | docker load` and `--load` (the engine's API, streamed) both give
/// Docker an image it runs; a second `--load` of the same image only names it; no engine and
/// several platforms are clear errors.
#[test]
fn load_into_docker_through_its_api_and_through_a_pipe() {
    let Some(wb) = common::with_busybox() else {
        return;
    };
    if !common::have_tool("dockerd") {
        return;
    }
    let dir = common::context(
        "FROM busybox\nRUN echo loaded-by-wbuild > /made\nCMD [\"cat\", \"/made\"]\n",
    );
    let path = dir.path().to_str().unwrap();
    let docker = Dockerd::start();

    // A fixed SOURCE_DATE_EPOCH makes the two builds of one Dockerfile the same image.
    let piped = common::run_ok(wb.cmd().env("SOURCE_DATE_EPOCH", "1700000000").args([
        "build",
        "-t",
        "wbuild-test/piped:1",
        "-o",
        "type=docker,dest=-",
        path,
    ]));
    let mut load = std::process::Command::new("/usr/bin/docker")
        .args(["-H", &docker.host(), "load"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(load.stdin.as_mut().unwrap(), &piped.stdout).unwrap();
    drop(load.stdin.take());
    let o = load.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = docker.docker(&["run", "--rm", "--network=none", "wbuild-test/piped:1"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "loaded-by-wbuild\n");

    let build_load = |tag: &str| {
        let out = wb
            .cmd()
            .env("DOCKER_HOST", docker.host())
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .args(["build", "--load", "-t", tag, path])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{err}");
        err
    };
    // The piped image is the same image: the engine has it, so --load only names it.
    let log = build_load("wbuild-test/api:1");
    assert!(log.contains("had the image already"), "{log}");
    let o = docker.docker(&["run", "--rm", "--network=none", "wbuild-test/api:1"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "loaded-by-wbuild\n");

    std::fs::write(
        dir.path().join("Dockerfile"),
        "FROM busybox\nRUN echo sent-by-api > /made\nCMD [\"cat\", \"/made\"]\n",
    )
    .unwrap();
    let log = build_load("wbuild-test/api:2");
    assert!(log.contains("loaded into the Docker engine"), "{log}");
    let o = docker.docker(&["run", "--rm", "--network=none", "wbuild-test/api:2"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "sent-by-api\n");

    let gone = tempfile::tempdir().unwrap();
    let out = wb
        .cmd()
        .env(
            "DOCKER_HOST",
            format!("unix://{}", gone.path().join("no.sock").display()),
        )
        .args(["build", "--load", path])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no Docker engine"), "{err}");

    let err = wb.fails(&[
        "build",
        "--load",
        "--platform",
        "linux/amd64,linux/arm64",
        path,
    ]);
    assert!(err.contains("one platform per image name"), "{err}");
}
