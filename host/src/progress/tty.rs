//! The live terminal view: a thread that redraws, ten times a second, a header with the build's
//! elapsed time and step counts and one block per running step (its elapsed time and the last
//! lines of its output). Finished steps are printed once above the block, so the scrollback is a
//! clean log. Lines are cut to the terminal's width so that cursor movement stays exact.

use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use super::{Shared, seconds};

/// Output lines shown under each running step.
const TAIL_LINES: usize = 6;
const TICK: Duration = Duration::from_millis(100);

/// The redraw thread of a [`Progress`] in tty mode.
pub(super) struct Ticker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Ticker {
    pub(super) fn start(shared: Arc<Shared>) -> Ticker {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut drawn = 0;
            loop {
                let last = flag.load(Ordering::Acquire);
                drawn = redraw(&shared, drawn, last);
                if last {
                    break;
                }
                std::thread::sleep(TICK);
            }
        });
        Ticker {
            stop,
            thread: Some(thread),
        }
    }

    /// Draw the final state and end the thread.
    pub(super) fn stop(mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Width of the terminal on stderr, or 120 columns.
fn width() -> usize {
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ writes a winsize into the pointed-to struct and nothing else.
    let ok = unsafe { libc::ioctl(libc::STDERR_FILENO, libc::TIOCGWINSZ, &mut ws) } == 0;
    if ok && ws.ws_col > 20 {
        ws.ws_col as usize
    } else {
        120
    }
}

fn cut(line: &str, width: usize) -> String {
    let line: String = line
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if line.chars().count() < width {
        line
    } else {
        line.chars()
            .take(width.saturating_sub(2))
            .collect::<String>()
            + "…"
    }
}

/// Erase the `drawn` lines of the previous live block, print finished steps, draw the block
/// again (or the closing header when `last`). Returns the number of lines drawn.
fn redraw(p: &Shared, drawn: usize, last: bool) -> usize {
    let width = width();
    let mut frame = String::new();
    if drawn > 0 {
        frame.push_str(&format!("\r\x1b[{drawn}A\x1b[J"));
    }
    let mut lines = 0;
    {
        let mut st = p.state.lock().unwrap();
        for line in st.finished.drain(..) {
            frame.push_str(&cut(&line, width));
            frame.push('\n');
        }
        let elapsed = seconds(p.started.elapsed());
        let header = if last {
            format!("[+] Building {elapsed} ({}/{}) FINISHED", st.done, st.total)
        } else {
            format!("[+] Building {elapsed} ({}/{})", st.done, st.total)
        };
        frame.push_str(&cut(&header, width));
        frame.push('\n');
        if last {
            lines = 0;
        } else {
            lines += 1;
            for step in &st.running {
                let head = format!("=> {} {}", step.name, seconds(step.started.elapsed()));
                frame.push_str(&cut(&head, width));
                frame.push('\n');
                lines += 1;
                let text = String::from_utf8_lossy(&step.output);
                let tail: Vec<&str> = text.lines().rev().take(TAIL_LINES).collect();
                for line in tail.into_iter().rev() {
                    frame.push_str(&cut(&format!("=> => # {line}"), width));
                    frame.push('\n');
                    lines += 1;
                }
            }
        }
    }
    let mut out = p.out.lock().unwrap();
    let _ = out.write_all(frame.as_bytes());
    let _ = out.flush();
    lines
}
