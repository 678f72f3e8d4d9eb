//! Frontend benchmark: cold and warm load of the embedded Dockerfile frontend and translation of
//! a 1,000-instruction Dockerfile. Prints a table of medians. Run with `bench/frontend`.

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

fn main() -> anyhow::Result<()> {
    let bytes = embedded::DOCKERFILE.bytes;
    let source = dockerfile(1000);
    let instructions = source.lines().count();
    let input = Input {
        file_name: "Dockerfile".into(),
        source,
        build_args: vec![],
        target: None,
        target_platform: host_platform(),
        build_platform: host_platform(),
    };
    let cx = CallContext::default();

    let runtime_new = time(5, || Runtime::new(None, Limits::default()).unwrap());

    let cold_load = {
        let dir = tempfile::tempdir().unwrap();
        let rt = Runtime::new(Some(dir.path().into()), Limits::default())?;
        median(
            (0..5)
                .map(|_| {
                    let _ = std::fs::remove_dir_all(dir.path());
                    let t = Instant::now();
                    let fe = rt.load_bytes("dockerfile", bytes).unwrap();
                    assert_eq!(fe.load_kind, LoadKind::Compiled);
                    t.elapsed()
                })
                .collect(),
        )
    };

    let dir = tempfile::tempdir()?;
    let rt = Runtime::new(Some(dir.path().into()), Limits::default())?;
    rt.load_bytes("dockerfile", bytes)?;
    let warm_load = time(50, || {
        let fe = rt.load_bytes("dockerfile", bytes).unwrap();
        assert_eq!(fe.load_kind, LoadKind::Cached);
        fe
    });
    let fe = rt.load_bytes("dockerfile", bytes)?;
    let call_info = time(50, || rt.info(&fe).unwrap());
    let translate = time(50, || {
        let t = rt.translate(&fe, &input, &cx).unwrap();
        t.expect("the benchmark Dockerfile translates")
    });
    let stages = rt.translate(&fe, &input, &cx)?.unwrap().graph.stages.len();

    let ms = |d: Duration| format!("{:.3} ms", d.as_secs_f64() * 1e3);
    println!("| measurement | median |");
    println!("|---|---|");
    println!("| engine + linker setup | {} |", ms(runtime_new));
    println!(
        "| cold load (Cranelift compile, {} KiB component) | {} |",
        bytes.len() / 1024,
        ms(cold_load)
    );
    println!(
        "| warm load (deserialize cached artifact) | {} |",
        ms(warm_load)
    );
    println!("| instantiate + call `info` | {} |", ms(call_info));
    println!(
        "| translate {instructions}-instruction Dockerfile ({stages} stages, incl. instantiate) | {} |",
        ms(translate)
    );
    Ok(())
}
