//! Where a build's time goes: named phases of the steps (the sandbox's setup, the command, the
//! teardown, the layer diff, the blob's fsync, the cache record, the snapshot unpack), summed
//! over the build. Off unless `WBUILD_PROFILE=1`; then `wbuild build` prints the table on
//! stderr at the end. A phase is timed by holding a [`span`] guard; with profiling off a span
//! costs one relaxed load.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

static ENABLED: OnceLock<bool> = OnceLock::new();
static TOTALS: Mutex<BTreeMap<&'static str, (u32, Duration)>> = Mutex::new(BTreeMap::new());

fn enabled() -> bool {
    *ENABLED.get_or_init(|| std::env::var_os("WBUILD_PROFILE").is_some_and(|v| v == "1"))
}

/// Times the phase `name` until dropped.
pub(crate) struct Span {
    name: &'static str,
    start: Option<Instant>,
}

/// Starts timing the phase `name` (a no-op unless profiling is on).
pub(crate) fn span(name: &'static str) -> Span {
    Span {
        name,
        start: enabled().then(Instant::now),
    }
}

impl Drop for Span {
    fn drop(&mut self) {
        if let Some(start) = self.start {
            let mut totals = TOTALS.lock().unwrap_or_else(|e| e.into_inner());
            let e = totals.entry(self.name).or_default();
            e.0 += 1;
            e.1 += start.elapsed();
        }
    }
}

/// The table of phases (count, total, mean), or None when profiling is off.
pub fn report() -> Option<String> {
    if !enabled() {
        return None;
    }
    let totals = TOTALS.lock().unwrap_or_else(|e| e.into_inner());
    let mut out = String::from("profile: phase, count, total ms, mean ms\n");
    for (name, (n, d)) in totals.iter() {
        let ms = d.as_secs_f64() * 1000.0;
        out += &format!(
            "profile: {name:<18} {n:>5} {ms:>10.1} {:>8.2}\n",
            ms / f64::from((*n).max(1))
        );
    }
    Some(out)
}
