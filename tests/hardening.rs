//! Hardening: the store checker finds damage and leftovers, concurrent builds on one store,
//! builds killed at random points, hostile build content and hostile frontends, RUN resource
//! limits. Everything runs the real `wbuild` binary; the sandbox tests need root and runc.

mod common;

use std::path::{Path, PathBuf};

use common::Wbuild;

/// The manifest digest from a build's `built sha256:...` line.
fn built_digest(log: &str) -> String {
    log.lines()
        .find_map(|l| l.strip_prefix("built "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no `built` line in:\n{log}"))
        .to_string()
}

fn blob_path(wb: &Wbuild, digest: &str) -> PathBuf {
    let hex = digest.strip_prefix("sha256:").unwrap();
    wb.root.path().join("blobs/sha256").join(hex)
}

/// The layer digests of the manifest `digest` in `wb`'s store.
fn layers(wb: &Wbuild, digest: &str) -> Vec<String> {
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(blob_path(wb, digest)).unwrap()).unwrap();
    m["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect()
}

/// `wbuild check` (optionally `--repair`): (success, stdout + stderr).
fn check(wb: &Wbuild, repair: bool) -> (bool, String) {
    let mut args = vec!["check"];
    if repair {
        args.push("--repair");
    }
    let out = wb.run(&args);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn assert_clean(wb: &Wbuild) {
    let (ok, text) = check(wb, false);
    assert!(ok && text.contains("the store is sound"), "{text}");
}

/// A context whose Dockerfile copies two files onto scratch (no runc needed).
fn scratch_context() -> tempfile::TempDir {
    let ctx = common::context("FROM scratch\nCOPY a /a\nCOPY b /b\n");
    std::fs::write(ctx.path().join("a"), "first file\n").unwrap();
    std::fs::write(ctx.path().join("b"), "second file\n").unwrap();
    ctx
}

#[test]
fn check_reports_a_corrupt_layer_and_repair_drops_only_what_is_broken() {
    let wb = Wbuild::new();
    let ctx = scratch_context();
    let c = ctx.path().to_str().unwrap();
    let log = wb.build(&["build", "-t", "app", c]);
    assert_clean(&wb);
    let manifest = built_digest(&log);
    let layers = layers(&wb, &manifest);
    assert_eq!(layers.len(), 2);

    // Flip the content of the first layer behind the store's back.
    let victim = blob_path(&wb, &layers[0]);
    let mut bytes = std::fs::read(&victim).unwrap();
    bytes.push(b'!');
    std::fs::write(&victim, bytes).unwrap();

    let (ok, text) = check(&wb, false);
    assert!(!ok, "{text}");
    assert!(
        text.contains(&format!("problem: blob {}: corrupt", layers[0])),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "problem: image docker.io/library/app:latest: layer {} is corrupt",
            layers[0]
        )),
        "{text}"
    );
    assert!(
        text.contains("problem: cache entry sha256:") && text.contains("its layer"),
        "{text}"
    );
    assert!(!text.contains(&format!("blob {}", layers[1])), "{text}");

    // Repair removes the corrupt blob and the cache entry, keeps the intact layer, and still
    // reports the image (only a rebuild can bring its layer back).
    let (ok, text) = check(&wb, true);
    assert!(!ok, "{text}");
    assert!(
        text.contains(&format!("repair: removed corrupt blob {}", layers[0])),
        "{text}"
    );
    assert!(text.contains("repair: dropped cache entry"), "{text}");
    assert!(!victim.exists());
    assert!(blob_path(&wb, &layers[1]).exists());
    let after = text.split("after repair:").nth(1).unwrap();
    assert!(
        after.contains("problem: image docker.io/library/app:latest"),
        "{text}"
    );
    assert!(!after.contains("problem: cache entry"), "{text}");

    // The rebuild runs the step whose layer was lost, and the store is sound again.
    let log = wb.build(&["build", "-t", "app", c]);
    assert!(log.contains("(1 steps ran, 1 cached)"), "{log}");
    assert_clean(&wb);
}

#[test]
fn check_reports_a_deleted_layer_and_a_damaged_name() {
    let wb = Wbuild::new();
    let ctx = scratch_context();
    let log = wb.build(&["build", "-t", "app", ctx.path().to_str().unwrap()]);
    let layers = layers(&wb, &built_digest(&log));
    std::fs::remove_file(blob_path(&wb, &layers[1])).unwrap();
    let bad_name = wb.root.path().join("refs/garbage");
    std::fs::write(&bad_name, b"{not json").unwrap();

    let (ok, text) = check(&wb, false);
    assert!(!ok, "{text}");
    assert!(
        text.contains(&format!("layer {} is missing", layers[1])),
        "{text}"
    );
    assert!(
        text.contains(&format!("its layer {} is missing", layers[1])),
        "{text}"
    );
    assert!(
        text.contains("problem: name record") && text.contains("garbage"),
        "{text}"
    );
    assert!(text.contains("`wbuild check --repair`"), "{text}");

    let (_, text) = check(&wb, true);
    assert!(
        text.contains("repair: removed unreadable name record"),
        "{text}"
    );
    assert!(!bad_name.exists());
    assert!(
        blob_path(&wb, &layers[0]).exists(),
        "an intact layer was removed"
    );
}

#[test]
fn check_lists_leftovers_and_the_next_build_sweeps_them() {
    let wb = Wbuild::new();
    let ctx = scratch_context();
    let c = ctx.path().to_str().unwrap();
    wb.build(&["build", c]);
    let root = wb.root.path();
    std::fs::write(root.join("tmp/123-4-abc.tmp"), b"half a blob").unwrap();
    std::fs::create_dir_all(root.join("tmp/.run-XYZ/upper/etc")).unwrap();
    std::fs::create_dir_all(root.join("snapshots/.snapshot-ABC/bin")).unwrap();
    std::fs::write(root.join("cache/.hashmemo.1.2.0.tmp"), b"{").unwrap();

    // Leftovers of killed runs are not damage: listed, with what removes them, exit 0.
    let (ok, text) = check(&wb, false);
    assert!(ok, "{text}");
    assert!(
        text.contains(
            "4 leftover(s) of killed runs: the next build or `wbuild prune` removes them"
        ),
        "{text}"
    );
    for what in [
        "leftover: temp",
        "123-4-abc.tmp",
        ".run-XYZ",
        "leftover: half-made snapshot",
        ".snapshot-ABC",
        ".hashmemo.1.2.0.tmp",
    ] {
        assert!(text.contains(what), "{what} not reported:\n{text}");
    }

    // The next build finds the store idle and removes them; the result is cached as before.
    let log = wb.build(&["build", c]);
    assert!(log.contains("(0 steps ran, 2 cached)"), "{log}");
    assert_clean(&wb);
}

/// The `(N steps ran, M cached)` counts of a finished build's log.
fn step_counts(log: &str) -> (usize, usize) {
    let line = log
        .lines()
        .find(|l| l.starts_with("built "))
        .unwrap_or_else(|| panic!("no `built` line in:\n{log}"));
    let inner = line.split('(').nth(1).unwrap();
    let mut nums = inner
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>().unwrap());
    (nums.next().unwrap(), nums.next().unwrap())
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn four_concurrent_builds_on_one_store_share_steps_and_stay_correct() {
    let Some(wb) = common::with_busybox() else {
        return;
    };
    // Same base and RUN prefix, different tails and context files.
    let builds: Vec<(tempfile::TempDir, tempfile::TempDir)> = (0..4)
        .map(|n| {
            let ctx = common::context(&format!(
                "FROM busybox\n\
                 RUN echo shared > /shared && sleep 1\n\
                 RUN echo second > /shared2\n\
                 RUN echo tail-{n} > /tail && sleep 1\n\
                 COPY f /f\n\
                 RUN cat /shared /tail /f > /all\n"
            ));
            std::fs::write(ctx.path().join("f"), format!("file {n}\n")).unwrap();
            (ctx, tempfile::tempdir().unwrap())
        })
        .collect();
    let children: Vec<_> = builds
        .iter()
        .enumerate()
        .map(|(n, (ctx, out))| {
            let tag = format!("conc:{n}");
            let dest = format!("type=local,dest={}", out.path().join("fs").display());
            wb.cmd()
                .args(["build", "-t", &tag, "-o", &dest])
                .arg(ctx.path())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut ran = 0;
    for (n, child) in children.into_iter().enumerate() {
        let out = child.wait_with_output().unwrap();
        let log = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "build {n} failed:\n{log}");
        ran += step_counts(&log).0;
        let fs = builds[n].1.path().join("fs");
        assert_eq!(read(&fs.join("shared")), "shared\n");
        assert_eq!(read(&fs.join("shared2")), "second\n");
        assert_eq!(read(&fs.join("tail")), format!("tail-{n}\n"));
        assert_eq!(read(&fs.join("f")), format!("file {n}\n"));
        assert_eq!(
            read(&fs.join("all")),
            format!("shared\ntail-{n}\nfile {n}\n")
        );
    }
    // The two shared steps ran once in all (the others waited for them and took the result);
    // each build ran its own three.
    assert_eq!(ran, 2 + 4 * 3, "steps ran in all four builds");
    let images = wb.ok(&["images"]);
    for n in 0..4 {
        assert!(images.contains(&format!("conc:{n}")), "{images}");
    }
    assert_clean(&wb);
}

/// A small xorshift generator: the crash test's kill times, reproducible from a printed seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Lines of a killed build's log that say a step finished (`DONE`).
fn steps_done(log: &str) -> usize {
    log.lines().filter(|l| l.starts_with("  DONE ")).count()
}

/// kill -9 `wbuild build` at random moments (in RUN, layer diff and compression, snapshot
/// unpacking, export, cache writes); after each kill the next build succeeds, takes every step
/// the killed one finished from the cache, produces the right files, and `wbuild check` finds
/// nothing wrong. `WBUILD_CRASH_KILLS` (default 12) and `WBUILD_CRASH_SEED` choose the run.
#[test]
fn builds_killed_at_random_points_leave_a_sound_store_and_their_finished_steps() {
    let Some(wb) = common::with_busybox() else {
        return;
    };
    let kills = env_number("WBUILD_CRASH_KILLS", 12);
    let seed = env_number(
        "WBUILD_CRASH_SEED",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    ) | 1;
    eprintln!("crash test: {kills} kills, WBUILD_CRASH_SEED={seed}");
    let ctx = common::context(
        "FROM busybox\n\
         ARG ROUND\n\
         RUN echo \"$ROUND\" > /round\n\
         RUN head -c 1000000 /dev/urandom > /big && sleep 0.2\n\
         COPY ctx.txt /ctx.txt\n\
         RUN for i in 1 2 3 4 5 6 7 8; do mkdir -p /d/$i && echo $i > /d/$i/f; done\n\
         WORKDIR /w\n\
         RUN cat /round /ctx.txt > /w/both\n",
    );
    std::fs::write(ctx.path().join("ctx.txt"), "context\n").unwrap();
    let fs_steps = 6; // 5 RUN/COPY + the WORKDIR that creates /w
    let out = tempfile::tempdir().unwrap();
    let build = |round: &str, n: usize| {
        let arg = format!("ROUND={round}");
        let local = format!(
            "type=local,dest={}",
            out.path().join(format!("fs-{n}")).display()
        );
        let oci = format!(
            "type=oci,dest={}",
            out.path().join(format!("img-{n}.tar")).display()
        );
        let mut c = wb.cmd();
        c.args([
            "build",
            "--build-arg",
            &arg,
            "-t",
            "crash",
            "-o",
            &local,
            "-o",
            &oci,
        ])
        .arg(ctx.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
        c
    };
    // An uninterrupted build first: it unpacks the base and compiles the frontend.
    let warm = build("warm", 0).output().unwrap();
    let warm_log = String::from_utf8_lossy(&warm.stderr);
    assert!(warm.status.success(), "{warm_log}");

    let mut rng = Rng(seed);
    let mut survived = 0;
    let mut hit_midway = 0;
    for k in 1..=kills as usize {
        let ctx_msg = format!("kill {k} (WBUILD_CRASH_SEED={seed})");
        let round = format!("r{k}");
        // Kill after a random number of progress lines (a step starting or finishing) plus a
        // random delay: inside a RUN, a layer diff, a COPY, a cache write or the export.
        let after_lines = rng.below(2 * fs_steps as u64 + 3) as usize;
        let delay = rng.below(500);
        let mut child = build(&round, 2 * k).spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let reader = std::thread::spawn(move || {
            use std::io::BufRead as _;
            let mut log = String::new();
            for line in std::io::BufReader::new(stderr).lines() {
                let line = line.unwrap_or_default();
                if line.starts_with('[') || line.starts_with("  DONE") {
                    let _ = tx.send(());
                }
                log.push_str(&line);
                log.push('\n');
            }
            log
        });
        let mut seen = 0;
        while seen < after_lines && rx.recv().is_ok() {
            seen += 1;
        }
        std::thread::sleep(std::time::Duration::from_millis(delay));
        let _ = child.kill(); // SIGKILL
        let status = child.wait().unwrap();
        let killed_log = reader.join().unwrap();
        let done = steps_done(&killed_log);
        if !status.success() && done < fs_steps {
            hit_midway += 1;
        }
        let delay = format!("{delay} ms after {seen} progress lines");

        let again = build(&round, 2 * k + 1).output().unwrap();
        let log = String::from_utf8_lossy(&again.stderr).into_owned();
        assert!(
            again.status.success(),
            "{ctx_msg}: the build after the kill {delay} failed:\n{log}\nkilled build:\n{killed_log}"
        );
        let (ran, cached) = step_counts(&log);
        assert_eq!(ran + cached, fs_steps, "{ctx_msg}:\n{log}");
        // Every step the killed build reported done is reused; one more may have been recorded
        // just before the kill, before its DONE line was printed.
        assert!(
            cached >= done && cached <= done + 1,
            "{ctx_msg}: killed build finished {done} steps, the next one reused {cached}:\n\
             {log}\nkilled build:\n{killed_log}"
        );
        let fs = out.path().join(format!("fs-{}", 2 * k + 1));
        assert_eq!(
            read(&fs.join("w/both")),
            format!("{round}\ncontext\n"),
            "{ctx_msg}"
        );
        assert_eq!(std::fs::metadata(fs.join("big")).unwrap().len(), 1_000_000);
        let (ok, text) = check(&wb, false);
        assert!(
            ok,
            "{ctx_msg}: wbuild check after the kill {delay}:\n{text}"
        );
        survived += 1;
        // The build outputs of this round are not needed any more.
        let _ = std::fs::remove_dir_all(out.path().join(format!("fs-{}", 2 * k)));
        let _ = std::fs::remove_dir_all(&fs);
    }
    eprintln!(
        "crash test: survived {survived} kills ({hit_midway} in the middle of a build), \
         seed {seed}"
    );
    if kills >= 4 {
        assert!(
            hit_midway > 0,
            "no kill landed inside a build (seed {seed})"
        );
    }
    // A last unchanged build reuses everything.
    let last = build(&format!("r{kills}"), 9999).output().unwrap();
    let log = String::from_utf8_lossy(&last.stderr).into_owned();
    assert!(last.status.success(), "{log}");
    assert_eq!(step_counts(&log), (0, fs_steps), "{log}");
    assert_clean(&wb);
}

/// Every file under `dir` with its content (symlinks as their target), for before/after checks.
fn tree_listing(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let what = if m.is_symlink() {
                format!("-> {}", std::fs::read_link(&p).unwrap().display())
            } else if m.is_dir() {
                todo.push(p.clone());
                "dir".into()
            } else {
                format!("{:?}", std::fs::read(&p).unwrap())
            };
            out.push((p, what));
        }
    }
    out.sort();
    out
}

/// A host directory with a secret-looking marker file; the sandbox must never show or change it.
struct HostMarker {
    dir: tempfile::TempDir,
    secret: String,
}

impl HostMarker {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let secret = format!("HOST-SECRET-{}", std::process::id());
        std::fs::write(dir.path().join("marker"), &secret).unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/other"), "other host file\n").unwrap();
        HostMarker { dir, secret }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn marker(&self) -> PathBuf {
        self.dir.path().join("marker")
    }
}

/// Every regular file under `dir` whose content contains `needle`.
fn files_containing(dir: &Path, needle: &str) -> Vec<PathBuf> {
    tree_listing(dir)
        .into_iter()
        .filter(|(_, what)| what != "dir" && !what.starts_with("-> "))
        .filter(|(p, _)| {
            std::fs::read(p)
                .map(|b| String::from_utf8_lossy(&b).contains(needle))
                .unwrap_or(false)
        })
        .map(|(p, _)| p)
        .collect()
}

#[test]
fn copy_sources_that_are_symlinks_out_of_the_context_stay_inside_it() {
    let Some(wb) = common::with_busybox() else {
        return;
    };
    let host = HostMarker::new();
    let before = tree_listing(host.path());
    let ctx = tempfile::tempdir().unwrap();
    let c = ctx.path();
    let depth = "../".repeat(c.components().count() + 2);
    std::os::unix::fs::symlink(host.marker(), c.join("abs")).unwrap();
    std::os::unix::fs::symlink(
        format!(
            "{depth}{}",
            host.marker().strip_prefix("/").unwrap().display()
        ),
        c.join("rel"),
    )
    .unwrap();
    std::os::unix::fs::symlink(host.path(), c.join("dir")).unwrap();
    // Inside the context, the same absolute path exists with harmless content.
    let inside = c.join(host.marker().strip_prefix("/").unwrap());
    std::fs::create_dir_all(inside.parent().unwrap()).unwrap();
    std::fs::write(&inside, "context copy\n").unwrap();

    for (n, src) in ["abs", "rel", "dir", "dir/marker", "dir/sub"]
        .iter()
        .enumerate()
    {
        common::write_dockerfile(c, &format!("FROM busybox\nCOPY {src} /got\n"));
        let out = tempfile::tempdir().unwrap();
        let dest = format!("type=local,dest={}", out.path().display());
        let res = wb.run(&["build", "-o", &dest, c.to_str().unwrap()]);
        let log = String::from_utf8_lossy(&res.stderr);
        // Either the link resolves inside the context, or the build names the problem.
        if res.status.success() {
            let leaked = files_containing(out.path(), &host.secret);
            assert!(
                leaked.is_empty(),
                "case {n} ({src}): host file copied: {leaked:?}"
            );
            assert!(
                files_containing(out.path(), "other host file").is_empty(),
                "case {n} ({src}): host directory copied"
            );
        } else {
            assert!(
                log.contains(src.split('/').next().unwrap()) && log.contains("Dockerfile:2"),
                "case {n} ({src}): unclear error:\n{log}"
            );
        }
        if *src == "abs" || *src == "rel" {
            assert!(res.status.success(), "case {n} ({src}):\n{log}");
            assert_eq!(
                read(&out.path().join("got")),
                "context copy\n",
                "case {n} ({src})"
            );
        }
    }
    assert_eq!(tree_listing(host.path()), before);
}

#[test]
fn copy_destinations_through_symlinks_in_the_image_stay_in_the_image() {
    let Some(wb) = common::with_busybox() else {
        return;
    };
    let host = HostMarker::new();
    let before = tree_listing(host.path());
    let tag = format!("wbuild-escape-{}", std::process::id());
    let hp = host.path().display().to_string();
    let ctx = common::context(&format!(
        "FROM busybox\n\
         RUN mkdir -p /a/b && ln -s / /a/b/root && ln -s ../../../../../../.. /a/b/up \
             && ln -s {hp} /a/b/hostdir && ln -s {hp}/marker /a/b/hostfile\n\
         COPY f /a/b/root/{tag}-root\n\
         COPY f /a/b/up/tmp/{tag}-up\n\
         COPY f /a/b/hostdir/{tag}-hostdir\n\
         COPY f /a/b/hostfile\n\
         RUN ln -s /proc/self/root/etc /a/b/procroot\n\
         COPY f /a/b/procroot/{tag}-proc\n"
    ));
    std::fs::write(ctx.path().join("f"), "image file\n").unwrap();
    let out = tempfile::tempdir().unwrap();
    let dest = format!("type=local,dest={}", out.path().display());
    let res = wb.run(&["build", "-o", &dest, ctx.path().to_str().unwrap()]);
    let log = String::from_utf8_lossy(&res.stderr).into_owned();
    // Nothing reached the host, whatever the build did.
    for p in [
        PathBuf::from(format!("/{tag}-root")),
        PathBuf::from(format!("/tmp/{tag}-up")),
        host.path().join(format!("{tag}-hostdir")),
        PathBuf::from(format!("/etc/{tag}-proc")),
    ] {
        assert!(
            !p.exists(),
            "{} was written on the host:\n{log}",
            p.display()
        );
    }
    assert_eq!(tree_listing(host.path()), before, "{log}");
    assert!(res.status.success(), "{log}");
    // In the image, the links resolve against the image's root.
    let fs = out.path();
    assert_eq!(read(&fs.join(format!("{tag}-root"))), "image file\n");
    assert_eq!(read(&fs.join(format!("tmp/{tag}-up"))), "image file\n");
    assert_eq!(
        read(
            &fs.join(host.path().strip_prefix("/").unwrap())
                .join(format!("{tag}-hostdir"))
        ),
        "image file\n"
    );
    // A file over a symlink replaces the link, as Docker does.
    let over = fs.join("a/b/hostfile");
    assert!(std::fs::symlink_metadata(&over).unwrap().is_file());
    assert_eq!(read(&over), "image file\n");
}

#[test]
fn workdir_in_proc_self_fd_is_refused() {
    let Some(wb) = common::with_busybox() else {
        return;
    };
    let host = HostMarker::new();
    for (n, df) in [
        "FROM busybox\nWORKDIR /proc/self/fd/7\nRUN cat ../../../../etc/hostname; ls -a\n",
        "FROM busybox\nRUN ln -s /proc/self/fd/7 /wd\nWORKDIR /wd\nRUN ls -a ../../..\n",
        "FROM busybox\nRUN mkdir /x && ln -s ../proc /x/p\nWORKDIR /x/p/1/cwd\nRUN ls\n",
    ]
    .iter()
    .enumerate()
    {
        let ctx = common::context(df);
        let res = wb.run(&["build", ctx.path().to_str().unwrap()]);
        let log = String::from_utf8_lossy(&res.stderr).into_owned();
        assert!(!res.status.success(), "case {n}: the build ran:\n{log}");
        assert!(log.contains("/proc"), "case {n}: unclear error:\n{log}");
        assert!(!log.contains(&host.secret), "{log}");
    }
}

#[test]
fn run_sees_no_host_files_processes_network_or_descriptors() {
    let Some(wb) = common::with_busybox() else {
        return;
    };
    let host = HostMarker::new();
    let before = tree_listing(host.path());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let marker = host.marker().display().to_string();
    let ctx = common::context(&format!(
        "FROM busybox\n\
         RUN cat {marker} > /read 2>&1; echo rc=$? >> /read; \
             find / -xdev -name marker > /found 2>/dev/null; true\n\
         RUN for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline; echo; done > /procs\n\
         RUN (nc -w 2 127.0.0.1 {port} </dev/null; echo rc=$?) > /net 2>&1\n\
         RUN --network=none cat /proc/net/dev > /ifaces\n\
         RUN ls /proc/self/fd > /fds\n\
         RUN mkdir -p {hp}/new && echo x > {marker}\n",
        hp = host.path().display()
    ));
    let out = tempfile::tempdir().unwrap();
    let dest = format!("type=local,dest={}", out.path().display());
    let log = wb.build(&["build", "-o", &dest, ctx.path().to_str().unwrap()]);
    let fs = out.path();
    let read_out = read(&fs.join("read"));
    assert!(!read_out.contains(&host.secret), "{read_out}");
    assert!(read_out.contains("rc=1"), "{read_out}");
    assert_eq!(read(&fs.join("found")), "", "host files visible");
    assert!(files_containing(fs, &host.secret).is_empty());
    // Only the container's own processes: the shell loop and its children.
    let procs = read(&fs.join("procs"));
    assert!(
        !procs.contains("wbuild"),
        "host processes visible:\n{procs}"
    );
    assert!(
        !procs.contains("hardening"),
        "host processes visible:\n{procs}"
    );
    assert!(
        procs.lines().filter(|l| !l.trim().is_empty()).count() <= 3,
        "{procs}"
    );
    // The default network does not reach the host's loopback; `--network=none` has only `lo`.
    let net = read(&fs.join("net"));
    assert!(!net.contains("rc=0"), "connected to the host: {net}");
    assert!(
        matches!(listener.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the host listener got a connection"
    );
    let ifaces = read(&fs.join("ifaces"));
    let names: Vec<&str> = ifaces
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(str::trim)
        .collect();
    assert_eq!(names, ["lo"], "{ifaces}");
    // Descriptors: stdin, stdout, stderr and the one `ls` opened for the listing.
    let fds: Vec<String> = read(&fs.join("fds")).lines().map(String::from).collect();
    assert!(fds.len() <= 4 && fds[..3] == ["0", "1", "2"], "{fds:?}");
    // Writes to the same path land in the image, never on the host.
    assert_eq!(
        read(&fs.join(host.marker().strip_prefix("/").unwrap())),
        "x\n"
    );
    assert_eq!(tree_listing(host.path()), before, "{log}");
}

/// The hostile frontend of `tests/fixtures/hostile-frontend`, built once per test run.
fn hostile_frontend() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let repo = common::repo();
            let target_dir = repo.join("target/hostile-frontend");
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let out = std::process::Command::new(cargo)
                .current_dir(repo.join("tests/fixtures/hostile-frontend"))
                .args([
                    "build",
                    "--release",
                    "--locked",
                    "--target",
                    "wasm32-wasip2",
                ])
                .arg("--target-dir")
                .arg(&target_dir)
                .env_remove("CARGO_TARGET_DIR")
                .env_remove("RUSTFLAGS")
                .env_remove("CARGO_ENCODED_RUSTFLAGS")
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "building the hostile frontend failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            target_dir.join("wasm32-wasip2/release/hostile_frontend.wasm")
        })
        .clone()
}

#[test]
fn hostile_frontends_fail_fast_with_a_clear_error() {
    let wasm = hostile_frontend();
    let wasm = wasm.to_str().unwrap();
    let wb = Wbuild::new();
    let ctx = tempfile::tempdir().unwrap();
    let c = ctx.path();
    std::fs::write(c.join("ok"), "inside\n").unwrap();
    std::os::unix::fs::symlink("/etc/passwd", c.join("link")).unwrap();
    std::os::unix::fs::symlink("../..", c.join("up")).unwrap();
    let cases: &[(&str, &[&str])] = &[
        ("loop", &["time limit of 10s"]),
        ("alloc", &["memory limit of 512 MiB"]),
        (
            "cycle",
            &["stage 0", "refers to stage 1", "not an earlier stage"],
        ),
        (
            "forward",
            &["stage 0", "refers to stage 1", "not an earlier stage"],
        ),
        ("dangling", &["refers to stage 7", "not an earlier stage"]),
        ("target", &["target stage 3 does not exist"]),
        ("stages", &["too much data is being copied"]),
        ("string", &["has a name of 67108864 bytes; at most 1024"]),
        ("strings", &["too much data is being copied"]),
        ("panic", &["the hostile frontend panics on purpose"]),
        (
            "read ../../etc/passwd",
            &["only paths inside the build context"],
        ),
        (
            "read /etc/passwd",
            &["read-context-file refused: /etc/passwd"],
        ),
        // Symlinks resolve inside the context: /etc/passwd there does not exist.
        (
            "read link",
            &["read-context-file refused: link: no such file"],
        ),
        (
            "read up/etc/passwd",
            &["read-context-file refused: up/etc/passwd: no such file"],
        ),
    ];
    for (text, expected) in cases {
        common::write_dockerfile(c, text);
        for cmd in ["plan", "build"] {
            let started = std::time::Instant::now();
            let out = wb.run(&[cmd, "--frontend", wasm, c.to_str().unwrap()]);
            let elapsed = started.elapsed();
            let err = String::from_utf8_lossy(&out.stderr);
            // A clean failure: an exit code (not a signal), a message, no host file content.
            assert_eq!(out.status.code(), Some(1), "{cmd} {text}:\n{err}");
            for e in *expected {
                assert!(err.contains(e), "{cmd} {text}: expected {e:?} in:\n{err}");
            }
            assert!(!err.contains("root:x:0:0"), "{cmd} {text}: host file read");
            assert!(out.stdout.is_empty(), "{cmd} {text}: printed a plan");
            // Bounded by the limits, not by how hostile the frontend is.
            assert!(elapsed.as_secs() < 60, "{cmd} {text} took {elapsed:?}");
        }
    }
    // The allowed read works, and the host is still fine for an ordinary build file.
    common::write_dockerfile(c, "read ok");
    let plan = wb.ok(&["plan", "--frontend", wasm, c.to_str().unwrap()]);
    assert!(plan.contains("READ:inside"), "{plan}");
    common::write_dockerfile(c, "FROM scratch\nCOPY ok /ok\n");
    let log = wb.build(&["build", c.to_str().unwrap()]);
    assert!(log.contains("(1 steps ran"), "{log}");
}

/// The stage name a hostile frontend answered with for `text`, through `wbuild plan`.
fn hostile_answer(wb: &Wbuild, wasm: &str, text: &str) -> String {
    let ctx = tempfile::tempdir().unwrap();
    common::write_dockerfile(ctx.path(), text);
    let plan = wb.ok(&["plan", "--frontend", wasm, ctx.path().to_str().unwrap()]);
    let plan: serde_json::Value = serde_json::from_str(&plan).unwrap();
    plan["stages"][0]["name"].as_str().unwrap().to_string()
}

#[test]
fn a_frontend_gets_no_files_network_environment_or_real_clock_through_wasi() {
    let wasm = hostile_frontend();
    let wasm = wasm.to_str().unwrap();
    let wb = Wbuild::new();
    // The clocks stand still: the same wall time (the Unix epoch) and no monotonic time
    // passes, though the frontend spun for a while between the two readings.
    assert_eq!(hostile_answer(&wb, wasm, "clock"), "CLOCK:0:0:0");
    // A server the host itself can reach is not reachable from the frontend.
    let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = server.local_addr().unwrap();
    let net = hostile_answer(&wb, wasm, &format!("net {addr}"));
    assert!(net.starts_with("NET:refused:"), "{net}");
    server.set_nonblocking(true).unwrap();
    assert!(server.accept().is_err(), "the frontend connected");
    // No preopened directory: no host file, not even a relative one.
    for path in ["/etc/passwd", "Dockerfile", "."] {
        let file = hostile_answer(&wb, wasm, &format!("file {path}"));
        assert!(file.starts_with("FILE:refused:"), "{path}: {file}");
    }
    // No environment of the host.
    assert_eq!(hostile_answer(&wb, wasm, "env"), "ENV:[]");
    // Waiting on the clock is refused at once instead of holding the host.
    let ctx = tempfile::tempdir().unwrap();
    common::write_dockerfile(ctx.path(), "sleep");
    let started = std::time::Instant::now();
    let err = wb.fails(&["plan", "--frontend", wasm, ctx.path().to_str().unwrap()]);
    assert!(err.contains("may not wait on the clock"), "{err}");
    assert!(started.elapsed().as_secs() < 30, "{:?}", started.elapsed());
}

#[test]
fn run_limits_stop_fork_bombs_and_memory_hogs() {
    let Some(wb) = common::with_busybox() else {
        return;
    };
    let forks = common::context(
        "FROM busybox\nRUN for i in $(seq 1 40); do sleep 2 & done; wait; echo all-started\n",
    );
    let f = forks.path().to_str().unwrap();
    let err = wb.fails(&["build", "--pids-limit", "10", f]);
    assert!(err.contains("can't fork"), "{err}");
    assert!(err.contains("Dockerfile:2"), "{err}");
    // Without the limit the same step runs.
    let log = wb.build(&["build", f]);
    assert!(log.contains("all-started"), "{log}");

    let hog = common::context(
        "FROM busybox\nRUN x=$(head -c 64000000 /dev/zero | tr '\\0' a); echo ${#x}\n",
    );
    let h = hog.path().to_str().unwrap();
    let err = wb.fails(&["build", "--memory", "16m", h]);
    assert!(
        err.contains("code 137") && err.contains("--memory 16777216"),
        "{err}"
    );
    let log = wb.build(&["build", "--memory", "1g", h]);
    assert!(log.contains("64000000"), "{log}");

    let err = wb.fails(&["build", "--memory", "1m", h]);
    assert!(err.contains("the minimum is 6 MiB"), "{err}");
    let err = wb.fails(&["build", "--pids-limit", "0", h]);
    assert!(err.contains("--pids-limit"), "{err}");
    assert_clean(&wb);
}

#[test]
fn step_locks_do_not_pile_up() {
    let wb = Wbuild::new();
    let ctx = scratch_context();
    let c = ctx.path().to_str().unwrap();
    let step_locks = || {
        std::fs::read_dir(wb.root.path().join("locks"))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with("step-")
            })
            .count()
    };
    wb.build(&["build", c]);
    assert_eq!(step_locks(), 2, "one lock per step that ran");
    std::fs::write(ctx.path().join("b"), "changed\n").unwrap();
    wb.build(&["build", c]);
    // The idle store was swept first: only the lock of the step that ran this time is left.
    assert_eq!(step_locks(), 1);
    wb.ok(&["prune"]);
    assert_eq!(step_locks(), 0);
}
