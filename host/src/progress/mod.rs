//! Build progress for people and tools: every stage start, step start, cached step, line of RUN
//! output, finished or failed step goes through one [`Progress`], which shows it in one of three
//! ways, as BuildKit does:
//!
//! - `plain`: a log, one line per event, RUN output prefixed with `  | ` (CI, pipes);
//! - `tty`: a live view redrawn in place: the running steps with their elapsed time and the last
//!   lines of their output; finished steps scroll above it with `CACHED` or their duration;
//! - `json`: one JSON object per line (schema in the README), for tools.
//!
//! `auto` picks `tty` when stderr is a terminal and `plain` otherwise.

pub mod profile;
mod tty;

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

/// How progress is shown (`--progress`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// `tty` on a terminal, else `plain`.
    Auto,
    /// A log, RUN output prefixed.
    Plain,
    /// A live view of the running steps.
    Tty,
    /// One JSON event per line.
    Json,
}

/// A step being reported; returned by [`Progress::step_started`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StepId(u64);

/// The most output kept per step for the live view and for showing a failed step's output.
const KEEP_OUTPUT: usize = 64 * 1024;

struct Step {
    id: StepId,
    name: String,
    started: Instant,
    /// The step's output as received (at most [`KEEP_OUTPUT`] bytes, the newest).
    output: Vec<u8>,
}

#[derive(Default)]
struct State {
    next_id: u64,
    running: Vec<Step>,
    /// Finished steps not yet printed above the live view (tty).
    finished: Vec<String>,
    /// Steps finished or cached so far, and steps started.
    done: usize,
    total: usize,
}

/// The sink for build progress events; shared by the stages that run at the same time.
pub struct Progress {
    mode: Mode,
    shared: Arc<Shared>,
    ticker: Mutex<Option<tty::Ticker>>,
}

/// What the live view's thread reads too.
struct Shared {
    started: Instant,
    state: Mutex<State>,
    out: Mutex<Box<dyn Write + Send>>,
}

#[derive(Serialize)]
struct JsonEvent<'a> {
    /// Milliseconds since the build started.
    time_ms: u128,
    event: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    step: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    duration_ms: Option<u128>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a str>,
}

impl Progress {
    /// Progress on stderr in `mode` (`auto` resolved against stderr).
    pub fn stderr(mode: Mode) -> Arc<Progress> {
        let mode = match mode {
            Mode::Auto => {
                let dumb = std::env::var("TERM").is_ok_and(|t| t == "dumb");
                if std::io::stderr().is_terminal() && !dumb {
                    Mode::Tty
                } else {
                    Mode::Plain
                }
            }
            m => m,
        };
        Progress::to_writer(mode, Box::new(std::io::stderr()))
    }

    /// Progress written to `out` in `mode` (`auto` means plain here).
    pub fn to_writer(mode: Mode, out: Box<dyn Write + Send>) -> Arc<Progress> {
        let mode = if mode == Mode::Auto {
            Mode::Plain
        } else {
            mode
        };
        let shared = Arc::new(Shared {
            started: Instant::now(),
            state: Mutex::new(State::default()),
            out: Mutex::new(out),
        });
        let ticker = (mode == Mode::Tty).then(|| tty::Ticker::start(shared.clone()));
        Arc::new(Progress {
            mode,
            shared,
            ticker: Mutex::new(ticker),
        })
    }

    /// How this progress is shown.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    fn json(&self, event: JsonEvent<'_>) {
        let mut line = serde_json::to_vec(&event).expect("events serialize");
        line.push(b'\n');
        let _ = self.shared.out.lock().unwrap().write_all(&line);
    }

    fn event<'a>(&self, event: &'a str) -> JsonEvent<'a> {
        JsonEvent {
            time_ms: self.shared.started.elapsed().as_millis(),
            event,
            step: None,
            id: None,
            duration_ms: None,
            data: None,
        }
    }

    /// A finished line for the live view: printed above it on the next redraw, or at once when
    /// the view has already stopped.
    fn above(&self, line: String) {
        if self.ticker.lock().unwrap().is_some() {
            self.shared.state.lock().unwrap().finished.push(line);
        } else {
            self.plain(&line);
        }
    }

    fn plain(&self, text: &str) {
        let mut out = self.shared.out.lock().unwrap();
        let _ = out.write_all(text.as_bytes());
        let _ = out.write_all(b"\n");
    }

    /// A stage begins (`[build 0/3] FROM busybox`).
    pub fn stage_started(&self, name: &str) {
        match self.mode {
            Mode::Json => self.json(JsonEvent {
                step: Some(name),
                ..self.event("stage")
            }),
            Mode::Tty => self.above(format!("=> {name}")),
            _ => self.plain(name),
        }
    }

    /// A step found in the build cache: it does not run.
    pub fn step_cached(&self, name: &str) {
        match self.mode {
            Mode::Json => self.json(JsonEvent {
                step: Some(name),
                ..self.event("cached")
            }),
            Mode::Tty => {
                {
                    let mut st = self.shared.state.lock().unwrap();
                    st.total += 1;
                    st.done += 1;
                }
                self.above(format!("=> CACHED {name}"));
            }
            _ => self.plain(&format!("{name}\n  CACHED")),
        }
    }

    /// A step starts running.
    pub fn step_started(&self, name: &str) -> StepId {
        let id = {
            let mut st = self.shared.state.lock().unwrap();
            st.next_id += 1;
            st.total += 1;
            let id = StepId(st.next_id);
            st.running.push(Step {
                id,
                name: name.to_string(),
                started: Instant::now(),
                output: Vec::new(),
            });
            id
        };
        match self.mode {
            Mode::Json => self.json(JsonEvent {
                step: Some(name),
                id: Some(id.0),
                ..self.event("started")
            }),
            Mode::Tty => {}
            _ => self.plain(name),
        }
        id
    }

    /// Output of a running step (RUN's stdout and stderr, as it arrives).
    pub fn step_output(&self, id: StepId, chunk: &[u8]) {
        {
            let mut st = self.shared.state.lock().unwrap();
            if let Some(step) = st.running.iter_mut().find(|s| s.id == id) {
                step.output.extend_from_slice(chunk);
                if step.output.len() > KEEP_OUTPUT {
                    let cut = step.output.len() - KEEP_OUTPUT;
                    step.output.drain(..cut);
                }
            }
        }
        match self.mode {
            Mode::Json => self.json(JsonEvent {
                id: Some(id.0),
                data: Some(&String::from_utf8_lossy(chunk)),
                ..self.event("output")
            }),
            Mode::Tty => {}
            _ => {
                let mut out = self.shared.out.lock().unwrap();
                for line in chunk.split_inclusive(|b| *b == b'\n') {
                    let _ = out.write_all(b"  | ");
                    let _ = out.write_all(line);
                }
                if !chunk.ends_with(b"\n") {
                    let _ = out.write_all(b"\n");
                }
            }
        }
    }

    fn take_step(&self, id: StepId) -> Option<Step> {
        let mut st = self.shared.state.lock().unwrap();
        let i = st.running.iter().position(|s| s.id == id)?;
        st.done += 1;
        Some(st.running.remove(i))
    }

    /// A running step finished successfully.
    pub fn step_done(&self, id: StepId) {
        self.end_step(id, None);
    }

    /// A running step failed with `error`. In the live view its whole kept output is printed,
    /// since only its last lines were on screen.
    pub fn step_failed(&self, id: StepId, error: &str) {
        self.end_step(id, Some(error));
    }

    fn end_step(&self, id: StepId, error: Option<&str>) {
        let Some(step) = self.take_step(id) else {
            return;
        };
        let took = step.started.elapsed();
        match (self.mode, error) {
            (Mode::Json, _) => self.json(JsonEvent {
                step: Some(&step.name),
                id: Some(id.0),
                duration_ms: Some(took.as_millis()),
                data: error,
                ..self.event(if error.is_some() { "error" } else { "done" })
            }),
            (Mode::Tty, None) => self.above(format!("=> {} {}", step.name, seconds(took))),
            (Mode::Tty, Some(_)) => {
                self.above(format!("=> ERROR {} {}", step.name, seconds(took)));
                for line in String::from_utf8_lossy(&step.output).lines() {
                    self.above(format!("  | {line}"));
                }
            }
            (_, None) => self.plain(&format!("  DONE {}", seconds(took))),
            (_, Some(e)) => self.plain(&format!("  ERROR {}: {e}", seconds(took))),
        }
    }

    /// A line that is not about a step (`built sha256:…`, `named app:1`).
    pub fn message(&self, text: &str) {
        match self.mode {
            Mode::Json => self.json(JsonEvent {
                data: Some(text),
                ..self.event("message")
            }),
            Mode::Tty => self.above(text.to_string()),
            _ => self.plain(text),
        }
    }

    /// Stop the live view (drawing what is left) before the process prints anything else.
    pub fn finish(&self) {
        if let Some(t) = self.ticker.lock().unwrap().take() {
            t.stop();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

/// `1.2s`, as BuildKit shows durations.
fn seconds(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer the test can read back.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Shared {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    fn run_events(p: &Progress) {
        p.stage_started("[build 0/2] FROM busybox");
        p.step_cached("[build 1/2] COPY a /a");
        let id = p.step_started("[build 2/2] RUN make");
        p.step_output(id, b"compiling\nlinking\n");
        p.step_done(id);
        let id = p.step_started("[final 1/1] RUN false");
        p.step_output(id, b"oops");
        p.step_failed(id, "the command exited with code 1");
        p.message("built sha256:abc");
        p.finish();
    }

    #[test]
    fn plain_is_a_log_with_prefixed_output() {
        let out = Shared::default();
        let p = Progress::to_writer(Mode::Plain, Box::new(out.clone()));
        run_events(&p);
        let text = out.text();
        assert!(text.contains("[build 1/2] COPY a /a\n  CACHED\n"), "{text}");
        assert!(text.contains("[build 2/2] RUN make\n  | compiling\n  | linking\n  DONE "));
        assert!(text.contains("  | oops\n  ERROR "), "{text}");
        assert!(text.ends_with("built sha256:abc\n"), "{text}");
    }

    #[test]
    fn json_is_one_object_per_line() {
        let out = Shared::default();
        let p = Progress::to_writer(Mode::Json, Box::new(out.clone()));
        run_events(&p);
        let events: Vec<serde_json::Value> = out
            .text()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let kinds: Vec<&str> = events
            .iter()
            .map(|e| e["event"].as_str().unwrap())
            .collect();
        assert_eq!(
            kinds,
            [
                "stage", "cached", "started", "output", "done", "started", "output", "error",
                "message"
            ]
        );
        assert_eq!(events[3]["data"], "compiling\nlinking\n");
        assert_eq!(events[3]["id"], events[2]["id"]);
        assert_eq!(events[7]["data"], "the command exited with code 1");
    }

    #[test]
    fn tty_redraws_running_steps_and_keeps_finished_ones() {
        let out = Shared::default();
        let p = Progress::to_writer(Mode::Tty, Box::new(out.clone()));
        let id = p.step_started("[build 1/1] RUN make");
        p.step_output(id, b"line one\nline two\n");
        // The ticker draws the running step with its last output lines.
        let deadline = Instant::now() + Duration::from_secs(5);
        while !out.text().contains("line two") {
            assert!(Instant::now() < deadline, "no live view: {:?}", out.text());
            std::thread::sleep(Duration::from_millis(20));
        }
        p.step_done(id);
        p.step_cached("[other 1/1] COPY x /x");
        p.finish();
        let text = out.text();
        assert!(text.contains("\x1b["), "no cursor control: {text:?}");
        assert!(text.contains("=> [build 1/1] RUN make "), "{text:?}");
        assert!(text.contains("=> CACHED [other 1/1] COPY x /x"), "{text:?}");
        assert!(text.contains("FINISHED"), "{text:?}");
    }
}
