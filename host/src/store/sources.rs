//! Blob sources: which registry repositories each blob came from (`ROOT/registry-sources/<hex>`,
//! one `host/path` a line), so a push can cross-repository mount a blob instead of uploading it.
//! Best effort: a lost record only costs an upload.

use std::io::Write as _;

use super::{Digest, Store};

impl Store {
    /// Remembers that blob `d` is in repository `repo` (`host/path`).
    pub fn record_blob_source(&self, d: &Digest, repo: &str) {
        let path = self.registry_sources_dir().join(d.hex());
        let mut lines = self.blob_sources(d);
        if lines.iter().any(|l| l == repo) {
            return;
        }
        lines.push(repo.to_string());
        let _ = std::fs::create_dir_all(self.registry_sources_dir());
        let _ = crate::sys::write_atomic(&path, |f| f.write_all(lines.join("\n").as_bytes()));
    }

    /// The repositories blob `d` is known to be in.
    pub fn blob_sources(&self, d: &Digest) -> Vec<String> {
        std::fs::read_to_string(self.registry_sources_dir().join(d.hex()))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Forgets the sources of blobs the store no longer has (after a prune).
    pub fn prune_blob_sources(&self) -> std::io::Result<()> {
        let dir = self.registry_sources_dir();
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name();
            let gone = Digest::from_hex(&name.to_string_lossy())
                .ok()
                .is_none_or(|d| !self.has_blob(&d));
            if gone {
                std::fs::remove_file(entry.path())?;
            }
        }
        Ok(())
    }
}
