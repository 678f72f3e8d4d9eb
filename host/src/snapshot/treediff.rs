//! RUN on the copying snapshotter, where no overlay can be mounted: the "mount" copies the
//! snapshot to the container's rootfs, and the "unmount" compares the rootfs with the
//! snapshot and writes what changed into the upper dir in overlayfs form — changed and new
//! entries copied with their metadata, removed ones as 0/0 whiteouts, a directory that
//! replaced something else marked opaque — so the layer is written as from an overlay.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::fs;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, Result};

use super::sys;

/// A copied rootfs still to compare: the snapshot, the upper dir, and the ctime at which
/// the copy was done.
struct Copy {
    lower: PathBuf,
    upper: PathBuf,
    mark: (i64, i64),
    /// The inode of every directory of the copy: one with another inode afterwards was
    /// removed and made again (overlayfs makes that an opaque directory).
    dirs: HashMap<PathBuf, u64>,
}

/// The inodes of the directories under `root`, by path relative to it.
fn dir_inodes(root: &Path, rel: &Path, out: &mut HashMap<PathBuf, u64>) -> Result<()> {
    out.insert(
        rel.to_path_buf(),
        fs::symlink_metadata(root.join(rel))?.ino(),
    );
    for e in fs::read_dir(root.join(rel))? {
        let e = e?;
        if e.file_type()?.is_dir() {
            dir_inodes(root, &rel.join(e.file_name()), out)?;
        }
    }
    Ok(())
}

/// The copied rootfs dirs still to compare, by target.
static COPIES: Mutex<Option<HashMap<PathBuf, Copy>>> = Mutex::new(None);

/// Copies `lower` to `target` for a RUN whose changes go to `upper` at [`finish`].
pub fn mount_copy(lower: &Path, upper: &Path, target: &Path) -> Result<()> {
    super::copy_tree(lower, target)
        .with_context(|| format!("copying {} for a RUN", lower.display()))?;
    // Inode change times are coarse (a clock tick): a marker made after the copy, then a
    // wait past the next tick, so every change the RUN makes has a later ctime than the mark.
    let mut dirs = HashMap::new();
    dir_inodes(target, Path::new(""), &mut dirs)?;
    let marker = tempfile::NamedTempFile::new_in(upper.parent().unwrap_or(upper))?;
    let m = marker.as_file().metadata()?;
    let mark = (m.ctime(), m.ctime_nsec());
    std::thread::sleep(std::time::Duration::from_millis(20));
    COPIES
        .lock()
        .unwrap()
        .get_or_insert_with(HashMap::new)
        .insert(
            target.to_path_buf(),
            Copy {
                lower: lower.to_path_buf(),
                upper: upper.to_path_buf(),
                mark,
                dirs,
            },
        );
    Ok(())
}

/// When `target` is a copy made by [`mount_copy`]: writes its changes into the upper dir and
/// empties it. None when it is not one.
pub fn finish(target: &Path) -> Option<Result<()>> {
    let copy = COPIES.lock().unwrap().as_mut()?.remove(target)?;
    Some((|| {
        let mut w = Writer {
            upper: copy.upper.clone(),
            mark: copy.mark,
            dirs: copy.dirs,
            links: HashMap::new(),
        };
        w.dir(&copy.lower, target, Path::new(""))?;
        fs::remove_dir_all(target).with_context(|| format!("removing {}", target.display()))?;
        fs::create_dir(target)?;
        Ok(())
    })())
}

fn opaque_xattr() -> &'static str {
    if crate::userns::rootless() {
        "user.overlay.opaque"
    } else {
        "trusted.overlay.opaque"
    }
}

/// Whether the rootfs entry `b` changed since it was copied from `a`: its inode was changed
/// after the copy (a ctime after `mark`: writes, renames, links, metadata), or what a layer
/// records differs.
fn differs(
    (a, am): (&Path, &fs::Metadata),
    (b, bm): (&Path, &fs::Metadata),
    mark: (i64, i64),
) -> Result<bool> {
    if (bm.ctime(), bm.ctime_nsec()) > mark
        || am.mode() != bm.mode()
        || am.uid() != bm.uid()
        || am.gid() != bm.gid()
        || (am.mtime(), am.mtime_nsec()) != (bm.mtime(), bm.mtime_nsec())
        || am.rdev() != bm.rdev()
        || (!am.is_dir() && am.len() != bm.len())
    {
        return Ok(true);
    }
    Ok(am.file_type().is_symlink() && fs::read_link(a)? != fs::read_link(b)?)
}

struct Writer {
    upper: PathBuf,
    mark: (i64, i64),
    dirs: HashMap<PathBuf, u64>,
    links: HashMap<(u64, u64), PathBuf>,
}

impl Writer {
    /// Makes the upper's directory `rel` (and its parents) with the rootfs's metadata.
    fn ensure_dir(&self, new_root: &Path, rel: &Path) -> Result<()> {
        let mut cur = PathBuf::new();
        for c in rel.components() {
            cur.push(c);
            let d = self.upper.join(&cur);
            if fs::symlink_metadata(&d).is_err() {
                fs::create_dir(&d)?;
                let src = new_root.join(&cur);
                super::copy::copy_meta(&src, &d, &fs::symlink_metadata(&src)?)?;
            }
        }
        Ok(())
    }

    /// Compares directory `rel` of the snapshot (`old/rel`) and of the rootfs (`new/rel`).
    fn dir(&mut self, old_root: &Path, new_root: &Path, rel: &Path) -> Result<()> {
        let names = |d: &Path| -> Result<HashSet<OsString>> {
            Ok(fs::read_dir(d)?
                .map(|e| e.map(|e| e.file_name()))
                .collect::<std::io::Result<_>>()?)
        };
        let old_names = names(&old_root.join(rel))?;
        let mut new_names: Vec<OsString> = names(&new_root.join(rel))?.into_iter().collect();
        new_names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        let mut gone: Vec<&OsString> = old_names
            .iter()
            .filter(|n| !new_names.contains(n))
            .collect();
        gone.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        for name in gone {
            self.ensure_dir(new_root, rel)?;
            let parent = fs::File::open(self.upper.join(rel))?;
            sys::mknod_at(parent.as_fd(), &sys::cstr(name)?, libc::S_IFCHR, 0, 0)
                .context("writing a whiteout")?;
        }
        for name in new_names {
            let r = rel.join(&name);
            let (o, n) = (old_root.join(&r), new_root.join(&r));
            let nm = fs::symlink_metadata(&n)?;
            let om = fs::symlink_metadata(&o).ok();
            // A directory made again is not the same entry, even as a directory.
            let same_type = om
                .as_ref()
                .is_some_and(|om| om.file_type() == nm.file_type())
                && (!nm.is_dir() || self.dirs.get(&r) == Some(&nm.ino()));
            if nm.is_dir() && same_type {
                let om = om.expect("same type");
                if differs((&o, &om), (&n, &nm), self.mark)? {
                    self.ensure_dir(new_root, &r)?;
                }
                self.dir(old_root, new_root, &r)?;
                continue;
            }
            if same_type && !differs((&o, om.as_ref().expect("same type")), (&n, &nm), self.mark)? {
                continue;
            }
            self.ensure_dir(new_root, rel)?;
            let dest = self.upper.join(&r);
            self.copy(&n, &dest, &nm)
                .with_context(|| format!("copying {} into the layer", n.display()))?;
            if nm.is_dir() && om.is_some() {
                // A directory where the snapshot had something else hides all of it.
                sys::set_xattr(&dest, opaque_xattr(), b"y")
                    .context("marking an opaque directory")?;
            }
        }
        Ok(())
    }

    /// Copies one new or changed entry (a directory with all it holds), keeping hard links
    /// between the entries written.
    fn copy(&mut self, src: &Path, dest: &Path, meta: &fs::Metadata) -> Result<()> {
        if meta.is_dir() {
            return super::copy_tree(src, dest);
        }
        if meta.nlink() > 1 {
            let key = (meta.dev(), meta.ino());
            if let Some(first) = self.links.get(&key) {
                fs::hard_link(first, dest)?;
                return Ok(());
            }
            self.links.insert(key, dest.to_path_buf());
        }
        let ft = meta.file_type();
        if ft.is_file() {
            fs::copy(src, dest)?;
        } else if ft.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(src)?, dest)?;
        } else {
            let parent = fs::File::open(dest.parent().expect("child path"))?;
            let rdev = meta.rdev();
            sys::mknod_at(
                parent.as_fd(),
                &sys::cstr(dest.file_name().expect("child path"))?,
                (meta.mode() & libc::S_IFMT) | 0o600,
                libc::major(rdev),
                libc::minor(rdev),
            )?;
        }
        super::copy::copy_meta(src, dest, meta)
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_changed_copy_gives_the_upper_an_overlay_would() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            crate::test_skip::skip("whiteouts (0/0 devices) need root");
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let (lower, upper, target) = (
            tmp.path().join("lower"),
            tmp.path().join("upper"),
            tmp.path().join("rootfs"),
        );
        for d in [&lower, &upper, &target] {
            fs::create_dir(d).unwrap();
        }
        fs::create_dir_all(lower.join("a")).unwrap();
        fs::create_dir_all(lower.join("d")).unwrap();
        fs::create_dir_all(lower.join("same/deep")).unwrap();
        for f in [
            "a/keep",
            "a/gone",
            "a/unchanged",
            "d/old",
            "same/deep/f",
            "f-gone",
        ] {
            fs::write(lower.join(f), f).unwrap();
        }
        super::mount_copy(&lower, &upper, &target).unwrap();

        fs::write(target.join("new"), "n").unwrap();
        fs::remove_file(target.join("a/gone")).unwrap();
        fs::remove_file(target.join("f-gone")).unwrap();
        fs::set_permissions(target.join("a/keep"), fs::Permissions::from_mode(0o600)).unwrap();
        fs::remove_dir_all(target.join("d")).unwrap();
        fs::create_dir(target.join("d")).unwrap();
        fs::write(target.join("d/new"), "x").unwrap();
        super::finish(&target).unwrap().unwrap();
        assert_eq!(
            fs::read_dir(&target).unwrap().count(),
            0,
            "the copy is emptied"
        );
        assert!(super::finish(&target).is_none(), "finished once");

        let mut tar = Vec::new();
        super::super::diff_upper(&upper, &mut tar, &Default::default()).unwrap();
        let names: Vec<String> = tar::Archive::new(&tar[..])
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "a",
                "a/.wh.gone",
                "a/keep",
                "d",
                "d/.wh..wh..opq",
                "d/new",
                ".wh.f-gone",
                "new"
            ]
        );
    }
}
