//! Frontend benchmark: cold and warm load of the embedded Dockerfile frontend and translation of
//! a 1,000-instruction Dockerfile, and the same for the Python frontend of
//! `examples/python-frontend` (built by its build.sh) with a 1,000-statement Buildfile. Prints
//! tables of medians. Run with `bench/frontend`.

use std::time::{Duration, Instant};

use wbuild::ir::host_platform;
use wbuild::{CallContext, Input, Limits, LoadKind, Runtime, embedded};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn time<T>(runs: usize, mut f: impl FnMut() -> T) -> Duration {
    median(
        (0..runs)
            .map(|_| {
                let t = Instant::now();
                std::hint::black_box(f());
                t.elapsed()
            })
            .collect(),
    )
}

/// A multi-stage Dockerfile with `n` instructions in all.
fn dockerfile(n: usize) -> String {
    let mut s = String::from("ARG BASE=busybox\n");
    let mut count = 1;
    let mut stage = 0;
    while count < n {
        s += &format!("FROM ${{BASE}} AS s{stage}\nARG V{stage}=x\nENV P{stage}=/opt/$V{stage}\n");
        count += 3;
        for i in 0..46 {
            if count >= n {
                break;
            }
            s += &match i % 4 {
                0 => format!("RUN echo step {i} && mkdir -p $P{stage}/d{i}\n"),
                1 => format!("COPY --chmod=644 src/f{i} ${{P{stage}}}/f{i}\n"),
                2 => format!("WORKDIR ${{P{stage}}}/w{i}\n"),
                _ => format!("LABEL k{i}=\"v {i}\"\n"),
            };
            count += 1;
        }
        if stage > 0 && count < n {
            s += &format!("COPY --from=s{} /a /b{stage}\n", stage - 1);
            count += 1;
        }
        stage += 1;
    }
    s
}

/// A Buildfile with `n` statements in all, in stages of 50.
fn buildfile(n: usize) -> String {
    let mut s = String::from("param BASE = \"busybox\"\n");
    let mut count = 1;
    let mut stage = 0;
    while count < n {
        s += &format!("stage s{stage} from \"{{BASE}}\":\n    env P{stage} = \"/opt/{stage}\"\n");
        count += 2;
        for i in 0..48 {
            if count >= n {
                break;
            }
            s += &match i % 4 {
                0 => format!("    run \"echo step {i} && mkdir -p /opt/{stage}/d{i}\"\n"),
                1 => format!("    copy \"src/f{i}\" to \"/opt/{stage}/f{i}\"\n"),
                2 => format!("    workdir \"/opt/{stage}/w{i}\"\n"),
                _ => format!("    label k{i} = \"v {i}\"\n"),
            };
            count += 1;
        }
        stage += 1;
    }
    s
}

/// The medians for one frontend.
struct Row {
    size: usize,
    cold: Duration,
    warm: Duration,
    info: Duration,
    translate: Duration,
    load_translate: Duration,
    stages: usize,
}

/// Cold load (`cold_runs` times; none when 0), warm load, `info` and translation of `input`.
fn measure(label: &str, bytes: &[u8], input: &Input, cold_runs: usize) -> anyhow::Result<Row> {
    let cx = CallContext::default();
    let cold = if cold_runs == 0 {
        Duration::ZERO
    } else {
        let dir = tempfile::tempdir().unwrap();
        let rt = Runtime::new(Some(dir.path().into()), Limits::default())?;
        median(
            (0..cold_runs)
                .map(|_| {
                    let _ = std::fs::remove_dir_all(dir.path());
                    let t = Instant::now();
                    let fe = rt.load_bytes(label, bytes).unwrap();
                    assert_eq!(fe.load_kind, LoadKind::Compiled);
                    t.elapsed()
                })
                .collect(),
        )
    };
    // Warm loads go through a file, as `--frontend FILE` does: an unchanged file whose artifact
    // is cached is neither read nor hashed again. The file is made older than the racy window
    // first, as a frontend on disk is.
    let dir = tempfile::tempdir()?;
    let file = dir.path().join(format!("{label}.wasm"));
    std::fs::write(&file, bytes)?;
    std::thread::sleep(Duration::from_millis(200));
    let rt = Runtime::new(Some(dir.path().join("cache")), Limits::default())?;
    rt.load_file(&file)?;
    let warm = time(20, || {
        let fe = rt.load_file(&file).unwrap();
        assert_eq!(fe.load_kind, LoadKind::Cached);
        fe
    });
    let fe = rt.load_file(&file)?;
    let info = time(20, || rt.info(&fe).unwrap());
    let translate = time(20, || {
        let t = rt.translate(&fe, input, &cx).unwrap();
        t.expect("the benchmark build file translates")
    });
    // What a build pays: a fresh load (its memory images set up anew) and one translation.
    let load_translate = time(20, || {
        let fe = rt.load_file(&file).unwrap();
        rt.translate(&fe, input, &cx).unwrap().unwrap()
    });
    let stages = rt.translate(&fe, input, &cx)?.unwrap().graph.stages.len();
    Ok(Row {
        size: bytes.len(),
        cold,
        warm,
        info,
        translate,
        load_translate,
        stages,
    })
}

fn main() -> anyhow::Result<()> {
    let ms = |d: Duration| format!("{:.3} ms", d.as_secs_f64() * 1e3);
    let runtime_new = time(5, || Runtime::new(None, Limits::default()).unwrap());
    println!("| measurement | median |");
    println!("|---|---|");
    println!("| engine + linker setup | {} |", ms(runtime_new));

    let input = |source: String| Input {
        file_name: "Dockerfile".into(),
        context_path: None,
        source,
        build_args: vec![],
        target: None,
        target_platform: host_platform(),
        build_platform: host_platform(),
    };
    let docker = input(dockerfile(1000));
    let py_path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/python-frontend/frontend.wasm");
    let py_bytes = std::fs::read(&py_path).map_err(|e| {
        anyhow::anyhow!(
            "{}: {e}; run examples/python-frontend/build.sh first (bench/frontend does)",
            py_path.display()
        )
    })?;
    let py_input = input(buildfile(1000));
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/python-frontend/example/Buildfile");
    let py_example = input(std::fs::read_to_string(example)?);
    let rows = [
        (
            "Rust: embedded `dockerfile`",
            &docker,
            measure("dockerfile", embedded::DOCKERFILE.bytes, &docker, 5)?,
        ),
        (
            "Python: examples/python-frontend",
            &py_input,
            measure("buildfile-py", &py_bytes, &py_input, 1)?,
        ),
        (
            "Python: the example Buildfile",
            &py_example,
            measure("buildfile-py", &py_bytes, &py_example, 0)?,
        ),
    ];
    println!();
    println!(
        "| frontend | component | cold load (Cranelift) | warm load | instantiate + `info` | translate (incl. instantiate) | warm load + translate |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (name, inp, r) in &rows {
        let cold = if r.cold.is_zero() {
            "(as above)".to_string()
        } else {
            ms(r.cold)
        };
        println!(
            "| {name} | {} KiB | {cold} | {} | {} | {} ({} lines, {} stages) | {} |",
            r.size / 1024,
            ms(r.warm),
            ms(r.info),
            ms(r.translate),
            inp.source.lines().count(),
            r.stages,
            ms(r.load_translate),
        );
    }
    Ok(())
}
