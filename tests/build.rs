//! End-to-end builds as root with runc, on a busybox base made from Debian's busybox-static:
//! the multi-stage examples build to the expected filesystem and config, unused stages never
//! run, independent stages overlap, rebuilds are cached, a changed context file re-runs exactly
//! the steps after its COPY, whiteouts delete base files, failures point at the file and line.

mod common;

use std::path::Path;

fn example(name: &str) -> String {
    common::repo()
        .join("examples")
        .join(name)
        .to_str()
        .unwrap()
        .to_string()
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn named_stages_build_and_skip_the_unused_stage() {
    let Some(wb) = common::with_busybox() else {
        return;
    };
    let out = tempfile::tempdir().unwrap();
    let fs = out.path().join("fs");
    let dest = format!("type=local,dest={}", fs.display());
    let log = wb.build(&[
        "build",
        "-t",
        "app:1",
        "-o",
        &dest,
        &example("named-stages"),
    ]);
    assert_eq!(
        read(&fs.join("app/out.txt")),
        "hello from the build stage\n"
    );
    // The build stage's files stay in the build stage.
    assert!(!fs.join("out.txt").exists());
    assert!(!log.contains("this stage is skipped"), "{log}");
    assert!(wb.ok(&["images"]).contains("app:1"));

    // Nothing changed: every step comes from the cache.
    let log = wb.build(&["build", "-t", "app:1", &example("named-stages")]);
    assert!(log.contains("(0 steps ran"), "{log}");
}

#[test]
fn branch_by_arg_builds_the_chosen_branch() {
    let Some(wb) = common::with_busybox() else {
        return;
    };
    for (v, file) in [("1", "version1"), ("2", "version2")] {
        let out = tempfile::tempdir().unwrap();
        let dest = format!("type=local,dest={}", out.path().display());
        let arg = format!("BUILD_VERSION={v}");
        wb.build(&[
            "build",
            "--build-arg",
            &arg,
            "-o",
            &dest,
            &example("branch-by-arg"),
        ]);
        // The base image's WorkingDir is /home, so that is where `touch` writes.
        assert!(out.path().join("home").join(file).exists(), "{file}");
        let other = if v == "1" { "version2" } else { "version1" };
        assert!(!out.path().join("home").join(other).exists(), "{other}");
    }
}

#[test]
fn context_change_reruns_only_the_steps_after_its_copy() {
    let Some(wb) = common::with_busybox() else {
        return;
    };
    let ctx = common::context(
        "FROM busybox\nRUN echo one > /one\nCOPY input.txt /input.txt\nRUN cat /input.txt > /copy\n",
    );
    std::fs::write(ctx.path().join("input.txt"), "first\n").unwrap();
    let c = ctx.path().to_str().unwrap();
    let log = wb.build(&["build", c]);
    assert!(log.contains("(3 steps ran, 0 cached)"), "{log}");

    // Same size, same mtime, different content: the content decides.
    let input = ctx.path().join("input.txt");
    let mtime = std::fs::metadata(&input).unwrap().modified().unwrap();
    std::fs::write(&input, "other\n").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&input)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    let out = tempfile::tempdir().unwrap();
    let dest = format!("type=local,dest={}", out.path().display());
    let log = wb.build(&["build", "-o", &dest, c]);
    assert!(log.contains("(2 steps ran, 1 cached)"), "{log}");
    assert_eq!(read(&out.path().join("copy")), "other\n");
}

#[test]
fn whiteouts_delete_base_files_and_config_is_kept() {
    let Some(wb) = common::with_busybox() else {
        return;
    };
    let ctx = common::context(
        "FROM busybox\nENV GREETING=hi\nRUN rm /bin/vi && echo \"$GREETING\" > /g\n\
     WORKDIR /srv/app\nCMD [\"cat\", \"/g\"]\n",
    );
    let out = tempfile::tempdir().unwrap();
    let fs = out.path().join("fs");
    let oci = out.path().join("img.tar");
    let local = format!("type=local,dest={}", fs.display());
    let oci_out = format!("type=oci,dest={}", oci.display());
    let tar = out.path().join("fs.tar");
    let tar_out = format!("type=tar,dest={}", tar.display());
    wb.build(&[
        "build",
        "-o",
        &local,
        "-o",
        &oci_out,
        "-o",
        &tar_out,
        ctx.path().to_str().unwrap(),
    ]);
    assert!(!fs.join("bin/vi").exists() && fs.join("bin/sh").exists());
    // The tar output holds the same final filesystem.
    let listing = std::process::Command::new("tar")
        .arg("-tf")
        .arg(&tar)
        .output()
        .unwrap();
    assert!(listing.status.success());
    let listing = String::from_utf8(listing.stdout).unwrap();
    assert!(listing.lines().any(|l| l == "g"), "{listing}");
    assert!(listing.lines().any(|l| l == "bin/sh"), "{listing}");
    assert!(!listing.lines().any(|l| l == "bin/vi"), "{listing}");
    assert_eq!(read(&fs.join("g")), "hi\n");
    assert!(fs.join("srv/app").is_dir(), "WORKDIR creates its directory");
    if common::have_tool("skopeo") {
        let out = common::run_ok(
            std::process::Command::new("skopeo")
                .args(["inspect", "--config"])
                .arg(format!("oci-archive:{}", oci.display())),
        );
        let config: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(config["config"]["Cmd"], serde_json::json!(["cat", "/g"]));
        assert_eq!(config["config"]["WorkingDir"], "/srv/app");
        assert!(
            config["config"]["Env"]
                .as_array()
                .unwrap()
                .contains(&serde_json::json!("GREETING=hi"))
        );
    }
}

#[test]
fn independent_stages_run_at_the_same_time() {
    let Some(wb) = common::with_busybox() else {
        return;
    };
    let ctx = common::context(
        "FROM busybox AS a\nRUN sleep 2 && echo a > /a\n\
     FROM busybox AS b\nRUN sleep 2 && echo b > /b\n\
     FROM busybox\nCOPY --from=a /a /a\nCOPY --from=b /b /b\n",
    );
    let log = wb.build(&["build", "--jobs", "2", ctx.path().to_str().unwrap()]);
    // Both sleeps start before either finishes.
    let lines: Vec<&str> = log.lines().collect();
    let start = |s: &str| {
        lines
            .iter()
            .position(|l| l.starts_with(&format!("[{s} 1/1]")))
            .unwrap()
    };
    let first_done = lines.iter().position(|l| l.contains("DONE")).unwrap();
    assert!(start("a") < first_done && start("b") < first_done, "{log}");
}

#[test]
fn a_failing_run_shows_its_output_and_location() {
    let Some(wb) = common::with_busybox() else {
        return;
    };
    let ctx = common::context("FROM busybox\nRUN echo about to fail && exit 7\n");
    let err = wb.fails(&["build", ctx.path().to_str().unwrap()]);
    assert!(err.contains("about to fail"), "{err}");
    assert!(err.contains("Dockerfile:2"), "{err}");
    assert!(err.contains("exit 7") && err.contains("code 7"), "{err}");
}

#[test]
fn source_date_epoch_gives_the_same_image_cached_or_not() {
    let Some(wb) = common::with_busybox() else {
        return;
    };
    let ctx = common::context(
        "FROM busybox AS build\nRUN echo x > /x\n\
     FROM busybox\nCOPY --from=build /x /y\nCOPY Dockerfile /df\nWORKDIR /w\n",
    );
    let c = ctx.path().to_str().unwrap();
    let iid = |extra: &[&str]| {
        let file = ctx.path().join("iid");
        let f = file.to_str().unwrap();
        let mut args = vec!["build", "--iidfile", f];
        args.extend_from_slice(extra);
        args.push(c);
        common::run_ok(wb.cmd().args(&args).env("SOURCE_DATE_EPOCH", "1700000000"));
        read(&file)
    };
    let first = iid(&[]);
    assert!(first.starts_with("sha256:"), "{first}");
    assert_eq!(iid(&[]), first, "a cached rebuild gives the same image");
    assert_eq!(
        iid(&["--no-cache"]),
        first,
        "a rebuild from scratch gives the same image"
    );
}

/// Every file under `dir` whose content contains `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                todo.push(e.path());
            } else if ft.is_file() {
                let data = std::fs::read(e.path()).unwrap();
                if data.windows(needle.len()).any(|w| w == needle) {
                    found.push(e.path());
                }
            }
        }
    }
    found
}

#[test]
fn cache_mount_persists_across_builds_and_stays_out_of_the_image() {
    let Some(wb) = common::with_busybox() else {
        return;
    };
    let ctx1 = tempfile::tempdir().unwrap();
    let c1 = common::write_dockerfile(
        ctx1.path(),
        "FROM busybox\nRUN --mount=type=cache,id=shared-cache,target=/cache \
         echo from-first > /cache/f && echo done > /first\n",
    );
    let out1 = tempfile::tempdir().unwrap();
    let dest1 = format!("type=local,dest={}", out1.path().display());
    wb.build(&["build", "-o", &dest1, &c1]);
    assert_eq!(read(&out1.path().join("first")), "done\n");
    assert!(
        !out1.path().join("cache").exists(),
        "the mount point stays out"
    );

    // A different Dockerfile with the same id sees what the first build left there.
    let ctx2 = tempfile::tempdir().unwrap();
    let c2 = common::write_dockerfile(
        ctx2.path(),
        "FROM busybox\nRUN --mount=type=cache,id=shared-cache,target=/var/cache/x,sharing=locked \
         cat /var/cache/x/f > /seen && echo more > /var/cache/x/g\n",
    );
    let out2 = tempfile::tempdir().unwrap();
    let dest2 = format!("type=local,dest={}", out2.path().display());
    wb.build(&["build", "-o", &dest2, &c2]);
    assert_eq!(read(&out2.path().join("seen")), "from-first\n");
    assert!(!out2.path().join("var/cache/x").exists());
    assert!(files_containing(out2.path(), b"from-first\n").len() == 1);
    assert!(files_containing(out2.path(), b"more\n").is_empty());
}

#[test]
fn bind_mount_from_the_context_is_read_not_copied_and_keys_the_step() {
    let Some(wb) = common::with_busybox() else {
        return;
    };
    let ctx = tempfile::tempdir().unwrap();
    let c = common::write_dockerfile(
        ctx.path(),
        "FROM busybox\n\
         RUN --mount=type=bind,source=data.txt,target=/mnt/in/data.txt cat /mnt/in/data.txt > /out\n\
         RUN --mount=type=bind,target=/src,rw echo scratch > /src/new && cat /src/data.txt > /rw\n",
    );
    std::fs::write(ctx.path().join("data.txt"), "version one\n").unwrap();
    let out = tempfile::tempdir().unwrap();
    let dest = format!("type=local,dest={}", out.path().display());
    let log = wb.build(&["build", "-o", &dest, &c]);
    assert!(log.contains("(2 steps ran, 0 cached)"), "{log}");
    assert_eq!(read(&out.path().join("out")), "version one\n");
    assert_eq!(read(&out.path().join("rw")), "version one\n");
    assert!(
        !out.path().join("mnt/in").exists(),
        "bound file copied into the image"
    );
    assert!(!out.path().join("src").exists());
    // Writes to a readwrite bind are thrown away, not written into the context.
    assert!(!ctx.path().join("new").exists());

    let log = wb.build(&["build", &c]);
    assert!(log.contains("(0 steps ran, 2 cached)"), "{log}");

    std::fs::write(ctx.path().join("data.txt"), "version two\n").unwrap();
    let out = tempfile::tempdir().unwrap();
    let dest = format!("type=local,dest={}", out.path().display());
    let log = wb.build(&["build", "-o", &dest, &c]);
    assert!(log.contains("(2 steps ran, 0 cached)"), "{log}");
    assert_eq!(read(&out.path().join("out")), "version two\n");

    // A source outside the context is clamped to it, so it names nothing here.
    let ctx2 = tempfile::tempdir().unwrap();
    let c2 = common::write_dockerfile(
        ctx2.path(),
        "FROM busybox\nRUN --mount=type=bind,source=../../../etc/passwd,target=/p cat /p\n",
    );
    wb.fails(&["build", &c2]);
}

#[test]
fn bind_mount_of_the_context_hides_what_dockerignore_leaves_out() {
    let Some(wb) = common::with_busybox() else {
        return;
    };
    let ctx = tempfile::tempdir().unwrap();
    let c = common::write_dockerfile(
        ctx.path(),
        "FROM busybox\n\
         RUN --mount=type=bind,target=/src ls -A /src > /listing && cat /src/keep/k > /k\n",
    );
    std::fs::create_dir(ctx.path().join("keep")).unwrap();
    std::fs::write(ctx.path().join("keep/k"), "kept\n").unwrap();
    std::fs::write(ctx.path().join("secret.env"), "TOKEN=1\n").unwrap();
    std::fs::write(ctx.path().join(".dockerignore"), "*.env\n").unwrap();
    let out = tempfile::tempdir().unwrap();
    let dest = format!("type=local,dest={}", out.path().display());
    let log = wb.build(&["build", "-o", &dest, &c]);
    let listing = read(&out.path().join("listing"));
    assert!(!listing.contains("secret.env"), "{listing}\n{log}");
    assert!(listing.contains("keep"), "{listing}");
    assert_eq!(read(&out.path().join("k")), "kept\n");
    // An ignored file is not an input of the step either.
    std::fs::write(ctx.path().join("secret.env"), "TOKEN=2\n").unwrap();
    let log = wb.build(&["build", &c]);
    assert!(log.contains("(0 steps ran, 1 cached)"), "{log}");
}

#[test]
fn ssh_agent_socket_is_forwarded_and_left_out_of_the_image() {
    let Some(wb) = common::with_busybox() else {
        return;
    };
    let agent_dir = tempfile::tempdir().unwrap();
    let sock = agent_dir.path().join("agent.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let ctx = tempfile::tempdir().unwrap();
    let c = common::write_dockerfile(
        ctx.path(),
        "FROM busybox\n\
         RUN --mount=type=ssh test -S \"$SSH_AUTH_SOCK\" && echo \"$SSH_AUTH_SOCK\" > /agent\n\
         RUN --mount=type=ssh,id=deploy,target=/tmp/deploy.sock,required=true test -S /tmp/deploy.sock && echo ok > /deploy\n\
         RUN --mount=type=ssh,id=deploy,target=/tmp/o.sock,uid=1000,gid=1001,mode=0640 stat -c %u:%g:%a /tmp/o.sock > /owner\n",
    );
    let out = tempfile::tempdir().unwrap();
    let dest = format!("type=local,dest={}", out.path().display());
    let default = format!("default={}", sock.display());
    let deploy = format!("deploy={}", sock.display());
    wb.build(&[
        "build", "--ssh", &default, "--ssh", &deploy, "-o", &dest, &c,
    ]);
    assert_eq!(
        read(&out.path().join("agent")),
        "/run/buildkit/ssh_agent.0\n"
    );
    assert_eq!(read(&out.path().join("deploy")), "ok\n");
    // The step's own socket carries the mount's owner and mode; the agent's is untouched.
    assert_eq!(read(&out.path().join("owner")), "1000:1001:640\n");
    use std::os::unix::fs::MetadataExt as _;
    let agent = std::fs::metadata(&sock).unwrap();
    assert_eq!((agent.uid(), agent.gid()), (0, 0));
    assert!(!out.path().join("run/buildkit").exists());
    assert!(!out.path().join("tmp/deploy.sock").exists());

    // A required agent that was not given names the flag to pass.
    let err = wb.fails(&["build", "--no-cache", "--ssh", &default, &c]);
    assert!(err.contains("--ssh deploy"), "{err}");
    // A key file is not an agent.
    std::fs::write(agent_dir.path().join("id_ed25519"), "key").unwrap();
    let key = format!("default={}", agent_dir.path().join("id_ed25519").display());
    let err = wb.fails(&["build", "--ssh", &key, &c]);
    assert!(err.contains("is not an agent socket"), "{err}");
}

#[test]
fn bind_mount_from_a_stage() {
    let Some(wb) = common::with_busybox() else {
        return;
    };
    let ctx = tempfile::tempdir().unwrap();
    let c = common::write_dockerfile(
        ctx.path(),
        "FROM busybox AS gen\nRUN mkdir /gen && echo made > /gen/made\n\
         FROM busybox\nRUN --mount=type=bind,from=gen,source=/gen,target=/m cat /m/made > /got\n",
    );
    let out = tempfile::tempdir().unwrap();
    let dest = format!("type=local,dest={}", out.path().display());
    wb.build(&["build", "-o", &dest, &c]);
    assert_eq!(read(&out.path().join("got")), "made\n");
    assert!(!out.path().join("gen").exists() && !out.path().join("m").exists());
}

#[test]
fn secrets_are_readable_during_run_but_never_stored() {
    let Some(wb) = common::with_busybox() else {
        return;
    };
    let secret_dir = tempfile::tempdir().unwrap();
    let secret = secret_dir.path().join("token");
    std::fs::write(&secret, "s3cr3t-Val-9137").unwrap();
    let ctx = tempfile::tempdir().unwrap();
    let c = common::write_dockerfile(
        ctx.path(),
        // The expected values are split by shell quoting so the Dockerfile (which goes into the
        // image history) never holds them.
        "FROM busybox\n\
         RUN --mount=type=secret,id=tok test \"$(cat /run/secrets/tok)\" = \"s3cr3t\"\"-Val-9137\" \
         && echo ok > /ok\n\
         RUN --mount=type=secret,id=envtok,env=MYSEC test \"$MYSEC\" = \"env\"\"-Val-5521\" \
         && echo ok > /ok2\n\
         RUN --mount=type=secret,id=absent true\n",
    );
    let out = tempfile::tempdir().unwrap();
    let fs = out.path().join("fs");
    let oci = out.path().join("oci");
    let local = format!("type=local,dest={}", fs.display());
    let oci_out = format!("type=oci,dest={}", oci.display());
    let src = format!("id=tok,src={}", secret.display());
    let run = wb
        .cmd()
        .args([
            "build",
            "--secret",
            &src,
            "--secret",
            "id=envtok,env=WBUILD_TEST_SECRET",
            "-o",
            &local,
            "-o",
            &oci_out,
            &c,
        ])
        .env("WBUILD_TEST_SECRET", "env-Val-5521")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&run.stderr).into_owned();
    assert!(run.status.success(), "{log}");
    assert_eq!(read(&fs.join("ok")), "ok\n");
    assert_eq!(read(&fs.join("ok2")), "ok\n");
    assert!(
        !fs.join("run/secrets").exists(),
        "secret mount point left in the image"
    );
    for needle in ["s3cr3t-Val-9137", "env-Val-5521"] {
        assert!(!log.contains(needle), "{log}");
        let hits = files_containing(&fs, needle.as_bytes());
        assert!(hits.is_empty(), "{hits:?}");
        let hits = files_containing(wb.root.path(), needle.as_bytes());
        assert!(hits.is_empty(), "secret stored in the store: {hits:?}");
    }
    // The layers themselves, uncompressed.
    if common::have_tool("gzip") {
        for blob in std::fs::read_dir(oci.join("blobs/sha256")).unwrap() {
            let out = std::process::Command::new("gzip")
                .arg("-dc")
                .arg(blob.unwrap().path())
                .output()
                .unwrap();
            if out.status.success() {
                let data = out.stdout;
                assert!(!data.windows(15).any(|w| w == b"s3cr3t-Val-9137"));
                assert!(!data.windows(12).any(|w| w == b"env-Val-5521"));
            }
        }
    }

    // A required secret that was not passed fails and says how to pass it.
    let ctx = tempfile::tempdir().unwrap();
    let c = common::write_dockerfile(
        ctx.path(),
        "FROM busybox\nRUN --mount=type=secret,id=needed,required=true true\n",
    );
    let err = wb.fails(&["build", &c]);
    assert!(err.contains("--secret id=needed,src=PATH"), "{err}");
}

#[test]
fn steps_run_on_overlay_stacks_of_layers_unpacked_once() {
    let Some(wb) = common::with_busybox() else {
        return;
    };
    let ctx = common::context(
        "FROM busybox\n\
         RUN echo one > /one && rm /bin/true\n\
         RUN test ! -e /bin/true && cat /one > /two\n\
         COPY Dockerfile /copied\n\
         WORKDIR /made/here\n\
         RUN ls / > /listing\n",
    );
    let out = tempfile::tempdir().unwrap();
    let dest = format!("type=local,dest={}", out.path().display());
    let log = wb.build(&["build", "-o", &dest, ctx.path().to_str().unwrap()]);
    assert!(log.contains("(5 steps ran"), "{log}");
    assert_eq!(read(&out.path().join("two")), "one\n");
    assert!(!out.path().join("bin/true").exists());
    assert!(out.path().join("made/here").is_dir());
    assert!(read(&out.path().join("listing")).contains("copied"));

    // Every layer is one directory, and no step copied a whole filesystem.
    let snapshots = wb.root.path().join("snapshots");
    let layers = std::fs::read_dir(snapshots.join("layers"))
        .unwrap()
        .filter(|e| {
            !e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with('.')
        })
        .count();
    assert_eq!(
        layers, 6,
        "the base and the five steps' layers (-o local reads the last)"
    );
    let flattened: Vec<_> = std::fs::read_dir(&snapshots)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.len() == 64)
        .collect();
    assert!(flattened.is_empty(), "flattened snapshots: {flattened:?}");
    // The merged views the build mounted are gone with it.
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let root = wb.root.path().to_str().unwrap();
    assert!(!mountinfo.contains(root), "mounts left under {root}");

    // `du` counts the unpacked layers; `check` finds the layout sound; prune frees them.
    let du = wb.ok(&["du"]);
    assert!(
        du.lines()
            .any(|l| l.starts_with("snapshots") && l.contains(" 6 ")),
        "{du}"
    );
    wb.ok(&["check"]);
    wb.ok(&["rm", "busybox"]);
    wb.ok(&["rm", "bb"]);
    wb.ok(&["prune"]);
    let du = wb.ok(&["du"]);
    assert!(
        du.lines()
            .any(|l| l.starts_with("snapshots") && l.contains(" 0 ")),
        "{du}"
    );
}

/// Files an [`http_server`] serves: (path, body), changeable while it runs.
type Served = std::sync::Arc<std::sync::Mutex<Vec<(String, Vec<u8>)>>>;

/// A one-thread HTTP server on 127.0.0.1 serving `files` (path → body) with a fixed
/// Last-Modified; anything else is a 404. Returns its base URL; it stops with the test process.
fn http_server(files: Served) -> String {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut request = String::new();
            if reader.read_line(&mut request).is_err() {
                continue;
            }
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
            }
            let path = request.split_whitespace().nth(1).unwrap_or("").to_string();
            let found = files
                .lock()
                .unwrap()
                .iter()
                .find(|(p, _)| *p == path)
                .map(|(_, b)| b.clone());
            let _ = match found {
                Some(body) => conn
                    .write_all(
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nLast-Modified: Wed, 21 Oct 2015 07:28:00 GMT\r\nConnection: close\r\n\r\n",
                            body.len()
                        )
                        .as_bytes(),
                    )
                    .and_then(|_| conn.write_all(&body)),
                None => conn.write_all(
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                ),
            };
        }
    });
    format!("http://{addr}")
}

#[test]
fn add_fetches_urls_keys_on_their_content_and_checks_checksums() {
    let Some(wb) = common::with_busybox() else {
        return;
    };
    use std::os::unix::fs::MetadataExt;
    let files = std::sync::Arc::new(std::sync::Mutex::new(vec![(
        "/dl/tool.sh".to_string(),
        b"echo tool v1\n".to_vec(),
    )]));
    // A gzip'd tar with one file, for --unpack.
    let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::default(),
    ));
    let mut h = tar::Header::new_gnu();
    h.set_size(3);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_cksum();
    tar.append_data(&mut h, "inside.txt", &b"in\n"[..]).unwrap();
    let tgz = tar.into_inner().unwrap().finish().unwrap();
    files.lock().unwrap().push(("/dl/pack.tar.gz".into(), tgz));
    let base = http_server(files.clone());
    let ctx = common::context(&format!(
        "FROM busybox\n\
         ADD --unpack=true {base}/dl/pack.tar.gz /unpacked/\n\
         ADD {base}/dl/pack.tar.gz /packed/\n\
         ADD {base}/dl/tool.sh /opt/\n\
         ADD --chmod=755 {base}/dl/tool.sh /usr/local/bin/tool\n"
    ));
    let c = ctx.path().to_str().unwrap();
    let out = tempfile::tempdir().unwrap();
    let dest = format!("type=local,dest={}", out.path().display());
    let log = wb.build(&["build", "-o", &dest, c]);
    assert!(log.contains("(4 steps ran"), "{log}");
    let opt = out.path().join("opt/tool.sh");
    assert_eq!(read(&opt), "echo tool v1\n");
    let md = std::fs::metadata(&opt).unwrap();
    assert_eq!(md.mode() & 0o7777, 0o600, "ADD <url> files are 0600");
    assert_eq!(md.mtime(), 1445412480, "mtime from Last-Modified");
    let tool = std::fs::metadata(out.path().join("usr/local/bin/tool")).unwrap();
    assert_eq!(tool.mode() & 0o7777, 0o755);
    assert_eq!(read(&out.path().join("unpacked/inside.txt")), "in\n");
    assert!(
        out.path().join("packed/pack.tar.gz").is_file(),
        "not unpacked by default"
    );

    // The same content keeps the cache; new content re-runs the steps that fetch it.
    let log = wb.build(&["build", c]);
    assert!(log.contains("(0 steps ran"), "{log}");
    files.lock().unwrap()[0].1 = b"echo tool v2\n".to_vec();
    let log = wb.build(&["build", "-o", &dest, c]);
    assert!(log.contains("(2 steps ran, 2 cached)"), "{log}");
    assert_eq!(read(&out.path().join("opt/tool.sh")), "echo tool v2\n");

    // --checksum is checked; a missing file names the URL and the status.
    let v2 = format!(
        "sha256:{}",
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b"echo tool v2\n"))
    );
    let good = common::context(&format!(
        "FROM busybox\nADD --checksum={v2} {base}/dl/tool.sh /t\n"
    ));
    wb.build(&["build", good.path().to_str().unwrap()]);
    let bad = common::context(&format!(
        "FROM busybox\nADD --checksum=sha256:{} {base}/dl/tool.sh /t\n",
        "0".repeat(64)
    ));
    let err = wb.fails(&["build", bad.path().to_str().unwrap()]);
    assert!(err.contains("not the --checksum"), "{err}");
    let missing = common::context(&format!("FROM busybox\nADD {base}/nope /t\n"));
    let err = wb.fails(&["build", missing.path().to_str().unwrap()]);
    assert!(err.contains("/nope: the server answered 404"), "{err}");
    assert!(err.contains("Dockerfile:2"), "{err}");
}

/// Two steps that make the same diff give the same layer twice; overlayfs refuses a directory
/// twice in one stack, so the same layer in a row is stacked once and the same layer apart from
/// itself is read through the copying fallback. Either way the filesystem is right.
#[test]
fn the_same_layer_twice_in_a_stack() {
    let Some(wb) = common::with_busybox() else {
        return;
    };
    let ctx = common::context(
        "FROM busybox\n\
         RUN echo x > /f\n\
         RUN echo x > /f\n\
         RUN cat /f > /seen-after-twice\n\
         RUN echo y > /g\n\
         RUN rm /g && echo x > /f\n\
         RUN echo y > /g\n\
         RUN cat /f /g > /seen-after-apart\n",
    );
    let out = tempfile::tempdir().unwrap();
    let dest = format!("type=local,dest={}", out.path().display());
    // Fixed file times make the identical diffs identical layers.
    common::run_ok(wb.cmd().env("SOURCE_DATE_EPOCH", "1700000000").args([
        "build",
        "-o",
        &dest,
        ctx.path().to_str().unwrap(),
    ]));
    assert_eq!(read(&out.path().join("seen-after-twice")), "x\n");
    assert_eq!(read(&out.path().join("seen-after-apart")), "x\ny\n");
}

/// A COPY's staged tree becomes its layer's snapshot directory (nothing is deleted, nothing
/// unpacked again): what a later RUN sees through it is exactly what it sees through the same
/// layer unpacked from its blob, to the nanosecond of every mtime, and no staged tree is left
/// in the store's temp dir.
#[test]
fn a_staged_copy_reads_exactly_as_its_layer_unpacked() {
    use std::time::{Duration, UNIX_EPOCH};
    let Some(wb) = common::with_busybox() else {
        return;
    };
    let ctx = tempfile::tempdir().unwrap();
    let src = ctx.path().join("src");
    std::fs::create_dir_all(src.join("sub/deep")).unwrap();
    std::fs::write(src.join("a.txt"), "alpha\n").unwrap();
    std::fs::write(src.join("sub/b.sh"), "#!/bin/sh\necho b\n").unwrap();
    std::fs::write(src.join("sub/deep/empty"), "").unwrap();
    std::os::unix::fs::symlink("a.txt", src.join("link")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(src.join("sub/b.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    // Times with nanoseconds, which a tar header cannot hold.
    for (i, p) in ["a.txt", "sub/b.sh", "sub/deep/empty", "sub/deep", "sub"]
        .iter()
        .enumerate()
    {
        let t = UNIX_EPOCH + Duration::new(1_600_000_000 + i as u64, 123_456_789);
        std::fs::File::open(src.join(p))
            .unwrap()
            .set_modified(t)
            .unwrap();
    }
    let stat = "find /data /other | sort | while read f; do stat -c '%n %A %u %g %s %y %F' \"$f\"; done > /stat && find /data /other -type f | sort | xargs md5sum >> /stat";
    let dockerfile = |extra: &str| {
        format!(
            "FROM busybox\nCOPY --chown=7:8 src /data\nCOPY --chmod=600 src/a.txt /other/a\nRUN {stat}{extra}\n"
        )
    };
    common::write_dockerfile(ctx.path(), &dockerfile(""));
    let c = ctx.path().to_str().unwrap();
    let out1 = tempfile::tempdir().unwrap();
    let log = wb.build(&[
        "build",
        "-o",
        &format!("type=local,dest={}", out1.path().display()),
        c,
    ]);
    assert!(log.contains("(3 steps ran, 0 cached)"), "{log}");
    let tmp = wb.root.path().join("tmp");
    let left: Vec<_> = std::fs::read_dir(&tmp)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        !left
            .iter()
            .any(|n| n.to_string_lossy().starts_with(".copy-")),
        "staged trees left in {}: {left:?}",
        tmp.display()
    );

    // The two COPY layers' directories are the staged trees: remove them, so that the next
    // build, whose COPY steps are cached, unpacks them from their blobs.
    let layers = wb.root.path().join("snapshots/layers");
    let mut removed = 0;
    for e in std::fs::read_dir(&layers).unwrap().flatten() {
        if e.path().join("data").is_dir() || e.path().join("other").is_dir() {
            std::fs::remove_dir_all(e.path()).unwrap();
            removed += 1;
        }
    }
    assert_eq!(
        removed,
        2,
        "the COPY layers' directories in {}",
        layers.display()
    );
    common::write_dockerfile(ctx.path(), &dockerfile(" && echo again > /again"));
    let out2 = tempfile::tempdir().unwrap();
    let log = wb.build(&[
        "build",
        "-o",
        &format!("type=local,dest={}", out2.path().display()),
        c,
    ]);
    assert!(log.contains("(1 steps ran, 2 cached)"), "{log}");
    let (a, b) = (
        read(&out1.path().join("stat")),
        read(&out2.path().join("stat")),
    );
    assert_eq!(a, b, "the staged tree and the unpacked layer differ");
    assert!(
        a.contains("/data/sub/b.sh -rwxr-xr-x 7 8 17 2020-09-13 12:26:41.000000000"),
        "{a}"
    );
    assert!(a.contains("/other/a -rw------- 0 0 6"), "{a}");
    assert!(a.contains("/data/link lrwxrwxrwx 7 8 5"), "{a}");
}
