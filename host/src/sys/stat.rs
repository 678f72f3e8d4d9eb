//! A file's identity as `stat` gives it, for the memos that skip reading a file whose digest
//! is known (the build context's hash memo, the frontend file digests): [`FileStat`] and the
//! rule for when a digest read from a file may be remembered ([`FileStat::rememberable`]).
//!
//! A memo entry is reused only when every field matches. A write always moves ctime, which
//! user space cannot set back, so restoring mtime does not fool it; a file changed within
//! [`RACY_WINDOW`] of its read is not remembered (a write in the same filesystem clock tick
//! could leave every field unchanged).

use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Files whose mtime or ctime is this close to their read are read but not remembered.
/// Kernel file timestamps come from a coarse clock (one tick, at most 10 ms at HZ=100).
pub const RACY_WINDOW: Duration = Duration::from_millis(50);

/// The stat fields a remembered digest is keyed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileStat {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i128,
    pub ctime_ns: i128,
}

impl FileStat {
    pub fn of(md: &Metadata) -> FileStat {
        FileStat {
            dev: md.dev(),
            ino: md.ino(),
            size: md.size(),
            mtime_ns: md.mtime() as i128 * 1_000_000_000 + md.mtime_nsec() as i128,
            ctime_ns: md.ctime() as i128 * 1_000_000_000 + md.ctime_nsec() as i128,
        }
    }

    /// Whether a digest read from the file, which had this stat before the read (begun at
    /// `started`) and `after` it, may be remembered: the file did not change during the read,
    /// and neither its mtime nor its ctime is within [`RACY_WINDOW`] of the read.
    pub fn rememberable(&self, after: &FileStat, started: SystemTime) -> bool {
        let racy_limit = started
            .checked_sub(RACY_WINDOW)
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos() as i128);
        self == after && self.mtime_ns < racy_limit && self.ctime_ns < racy_limit
    }
}
