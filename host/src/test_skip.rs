//! How a unit test that cannot run here says so (tests only). With `CI` set — the README's test
//! command and `.ci/run` set it — a missing prerequisite is a failure, never a skip. Otherwise
//! the test returns early and is *reported* as skipped: its name and reason go to stderr and,
//! when `WBUILD_SKIP_LOG` names a file, into that file, which the test command's summary counts
//! as skipped instead of passed.

use std::io::Write as _;

/// Fails the test under `CI`; else records the skip (as the end-to-end tests' `common::skip`
/// does). The caller returns afterwards.
pub(crate) fn skip(reason: &str) {
    let name = std::thread::current()
        .name()
        .unwrap_or("<unnamed test>")
        .to_string();
    assert!(
        std::env::var_os("CI").is_none(),
        "{name}: {reason}; CI must provide it (see .ci/run)"
    );
    eprintln!("skipped {name}: {reason}");
    if let Some(log) = std::env::var_os("WBUILD_SKIP_LOG")
        && let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
    {
        let _ = writeln!(f, "{name}: {reason}");
    }
}
