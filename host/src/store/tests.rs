//! Unit tests of the store as a whole: blobs, refs, cache, locks, concurrency, crash leftovers,
//! layout versioning, usage and pruning.

use std::collections::HashSet;
use std::fs;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::{Arc, Barrier};
use std::time::{Duration, SystemTime};

use super::*;

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("root")).unwrap();
    (dir, store)
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

/// A reader that yields `len` pseudo-random bytes in odd-sized chunks.
struct Pattern {
    state: u64,
    left: usize,
}

impl Read for Pattern {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.left).min(7919);
        for b in &mut buf[..n] {
            self.state = self.state.wrapping_mul(6364136223846793005).wrapping_add(1);
            *b = (self.state >> 33) as u8;
        }
        self.left -= n;
        Ok(n)
    }
}

fn pattern_bytes(len: usize) -> Vec<u8> {
    let mut v = Vec::new();
    Pattern {
        state: 1,
        left: len,
    }
    .read_to_end(&mut v)
    .unwrap();
    v
}

#[test]
fn open_creates_layout_and_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let store = Store::open(&root).unwrap();
    for d in ["blobs/sha256", "snapshots", "cache", "refs", "locks", "tmp"] {
        assert!(root.join(d).is_dir(), "{d}");
    }
    assert_eq!(
        fs::read_to_string(root.join("layout")).unwrap(),
        "wbuild store layout 1\n"
    );
    assert_eq!(store.root(), root);
    assert_eq!(store.snapshots_dir(), root.join("snapshots"));
    // Reopen, and reopen after a subdirectory vanished.
    Store::open(&root).unwrap();
    fs::remove_dir(root.join("refs")).unwrap();
    Store::open(&root).unwrap();
    assert!(root.join("refs").is_dir());
    assert!(files_in(&root.join("tmp")).is_empty());
}

#[test]
fn open_refuses_newer_layout_and_foreign_dirs() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    Store::open(&root).unwrap();
    fs::write(root.join("layout"), "wbuild store layout 2\n").unwrap();
    let err = Store::open(&root).unwrap_err();
    assert!(matches!(
        err,
        StoreError::NewerLayout {
            found: 2,
            supported: 1,
            ..
        }
    ));
    assert!(err.to_string().contains("upgrade wbuild"), "{err}");

    fs::write(root.join("layout"), "garbage").unwrap();
    assert!(matches!(
        Store::open(&root).unwrap_err(),
        StoreError::Corrupt { .. }
    ));

    let home = dir.path().join("home");
    fs::create_dir_all(&home).unwrap();
    fs::write(home.join("notes.txt"), "mine").unwrap();
    let err = Store::open(&home).unwrap_err();
    assert!(matches!(err, StoreError::NotAStore { .. }));
    assert!(err.to_string().contains("--root"), "{err}");
    assert!(!home.join("blobs").exists());

    // A store whose creator crashed before writing `layout` is adopted.
    let half = dir.path().join("half");
    fs::create_dir_all(half.join("blobs/sha256")).unwrap();
    fs::create_dir_all(half.join("tmp")).unwrap();
    Store::open(&half).unwrap();
    assert!(half.join("layout").is_file());
}

#[test]
fn blob_round_trip_streams_large_content() {
    let (_dir, store) = store();
    let data = pattern_bytes(3 * 1024 * 1024 + 17);
    let expected = Digest::of_bytes(&data);
    let reader = Pattern {
        state: 1,
        left: data.len(),
    };
    let (digest, size) = store.put_blob_from_reader(reader, Some(&expected)).unwrap();
    assert_eq!(digest, expected);
    assert_eq!(size, data.len() as u64);
    assert!(store.has_blob(&digest));
    assert_eq!(store.blob_size(&digest).unwrap(), size);
    assert_eq!(
        store.blob_path(&digest),
        store.root().join("blobs/sha256").join(digest.hex())
    );
    let mut back = Vec::new();
    store
        .open_blob(&digest)
        .unwrap()
        .read_to_end(&mut back)
        .unwrap();
    assert_eq!(back, data);
    store.verify_blob(&digest).unwrap();
    assert!(files_in(&store.tmp_dir()).is_empty());

    // Without an expected digest, and through the writer API.
    let (d2, s2) = store.put_blob_from_reader(&b"hello"[..], None).unwrap();
    assert_eq!((d2, s2), (Digest::of_bytes(b"hello"), 5));
    let mut w = store.blob_writer().unwrap();
    w.write_all(b"hel").unwrap();
    w.write_all(b"lo").unwrap();
    assert_eq!(w.size(), 5);
    assert_eq!(w.finish(None).unwrap(), (d2, 5));

    assert!(store.remove_blob(&d2).unwrap());
    assert!(!store.remove_blob(&d2).unwrap());
    assert!(!store.has_blob(&d2));
    assert!(matches!(
        store.open_blob(&d2).unwrap_err(),
        StoreError::BlobNotFound(d) if d == d2
    ));
    assert!(matches!(
        store.blob_size(&d2).unwrap_err(),
        StoreError::BlobNotFound(_)
    ));
}

#[test]
fn digest_mismatch_leaves_nothing_behind() {
    let (_dir, store) = store();
    let wrong = Digest::of_bytes(b"something else");
    let err = store
        .put_blob_from_reader(&b"actual content"[..], Some(&wrong))
        .unwrap_err();
    match &err {
        StoreError::DigestMismatch { expected, actual } => {
            assert_eq!(*expected, wrong);
            assert_eq!(*actual, Digest::of_bytes(b"actual content"));
        }
        other => panic!("unexpected {other}"),
    }
    assert!(err.to_string().contains("fetch it again"), "{err}");
    assert!(files_in(&store.tmp_dir()).is_empty());
    assert!(files_in(&store.root().join("blobs/sha256")).is_empty());
    assert!(!store.has_blob(&wrong));

    // A failing source also leaves nothing.
    struct Failing(u8);
    impl Read for Failing {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.0 == 0 {
                return Err(std::io::Error::other("connection reset"));
            }
            self.0 -= 1;
            buf[0] = b'x';
            Ok(1)
        }
    }
    let err = store.put_blob_from_reader(Failing(3), None).unwrap_err();
    assert!(matches!(err, StoreError::SourceRead(_)), "{err}");
    assert!(files_in(&store.tmp_dir()).is_empty());
    // So does an abandoned writer.
    let mut w = store.blob_writer().unwrap();
    w.write_all(b"partial").unwrap();
    drop(w);
    assert!(files_in(&store.tmp_dir()).is_empty());
    assert!(files_in(&store.root().join("blobs/sha256")).is_empty());
}

#[test]
fn verify_detects_corruption() {
    let (_dir, store) = store();
    let (d, _) = store.put_blob_from_reader(&b"good"[..], None).unwrap();
    fs::write(store.blob_path(&d), b"bad!").unwrap();
    let err = store.verify_blob(&d).unwrap_err();
    assert!(
        matches!(err, StoreError::CorruptBlob { digest, actual } if digest == d && actual == Digest::of_bytes(b"bad!"))
    );
    // Writing it again repairs it.
    store.put_blob_from_reader(&b"good"[..], Some(&d)).unwrap();
    store.verify_blob(&d).unwrap();
}

#[test]
fn concurrent_writers_of_the_same_blob_all_succeed() {
    let (_dir, store) = store();
    let data = Arc::new(pattern_bytes(512 * 1024 + 3));
    let expected = Digest::of_bytes(&data);
    let barrier = Arc::new(Barrier::new(8));
    let handles: Vec<_> = (0..8)
        .map(|i| {
            let (store, data, barrier) = (store.clone(), data.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                // Half announce the digest, half do not.
                let exp = (i % 2 == 0).then_some(&expected);
                store.put_blob_from_reader(&data[..], exp).unwrap()
            })
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), (expected, data.len() as u64));
    }
    store.verify_blob(&expected).unwrap();
    assert_eq!(
        store.list_blobs().unwrap(),
        vec![(expected, data.len() as u64)]
    );
    assert!(files_in(&store.tmp_dir()).is_empty());
}

#[test]
fn refs_round_trip_and_reject_traversal() {
    let (dir, store) = store();
    let a = Digest::of_bytes(b"manifest a");
    let b = Digest::of_bytes(b"manifest b");
    assert_eq!(store.get_ref("app:1").unwrap(), None);
    store.set_ref("app:1", &a).unwrap();
    store
        .set_ref("registry.example:5000/team/app:v2", &b)
        .unwrap();
    assert_eq!(store.get_ref("app:1").unwrap(), Some(a));
    store.set_ref("app:1", &b).unwrap();
    assert_eq!(store.get_ref("app:1").unwrap(), Some(b));
    let long = format!("example.com/{}:tag", "x".repeat(400));
    store.set_ref(&long, &a).unwrap();
    assert_eq!(store.get_ref(&long).unwrap(), Some(a));
    assert_eq!(
        store.list_refs().unwrap(),
        vec![
            ("app:1".to_string(), b),
            (long.clone(), a),
            ("registry.example:5000/team/app:v2".to_string(), b),
        ]
    );
    // Every ref is a single file directly in refs/.
    for name in files_in(&store.root().join("refs")) {
        assert!(!name.starts_with('.') && !name.contains('/'), "{name}");
    }

    for bad in ["../x", "../../escape", "a/../../b", "/abs", "..", "", "a b"] {
        assert!(
            matches!(
                store.set_ref(bad, &a),
                Err(StoreError::InvalidRefName { .. })
            ),
            "{bad:?}"
        );
        assert!(store.get_ref(bad).is_err());
        assert!(store.remove_ref(bad).is_err());
    }
    assert!(!dir.path().join("x").exists() && !dir.path().join("escape").exists());
    assert!(!store.root().join("x").exists());

    assert!(store.remove_ref("app:1").unwrap());
    assert!(!store.remove_ref("app:1").unwrap());
    assert_eq!(store.get_ref("app:1").unwrap(), None);
    assert_eq!(store.list_refs().unwrap().len(), 2);
    assert!(files_in(&store.tmp_dir()).is_empty());
}

#[test]
fn corrupt_ref_file_is_reported() {
    let (_dir, store) = store();
    store.set_ref("app:1", &Digest::of_bytes(b"m")).unwrap();
    fs::write(store.root().join("refs/app%3A1"), "{").unwrap();
    let err = store.get_ref("app:1").unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
}

#[test]
fn cache_round_trip() {
    let (_dir, store) = store();
    let key = Digest::of_bytes(b"step key");
    assert_eq!(store.get_cache(&key).unwrap(), None);
    store.put_cache(&key, b"{\"layer\":1}").unwrap();
    assert_eq!(store.get_cache(&key).unwrap().unwrap(), b"{\"layer\":1}");
    store.put_cache(&key, b"").unwrap();
    assert_eq!(store.get_cache(&key).unwrap().unwrap(), b"");
    store.put_cache(&key, b"v2").unwrap();
    assert_eq!(store.list_cache().unwrap(), vec![(key, 2)]);
    assert!(store.remove_cache(&key).unwrap());
    assert_eq!(store.get_cache(&key).unwrap(), None);
    assert!(files_in(&store.tmp_dir()).is_empty());
}

#[test]
fn usage_and_prune_free_the_right_bytes() {
    let (_dir, store) = store();
    let (keep1, _) = store.put_blob_from_reader(&[1u8; 100][..], None).unwrap();
    let (keep2, _) = store.put_blob_from_reader(&[2u8; 200][..], None).unwrap();
    let (drop1, _) = store.put_blob_from_reader(&[3u8; 300][..], None).unwrap();
    let (drop2, _) = store.put_blob_from_reader(&[4u8; 4000][..], None).unwrap();
    store.set_ref("app:1", &keep1).unwrap();
    store.put_cache(&keep2, b"12345").unwrap();
    let usage = store.disk_usage().unwrap();
    assert_eq!(
        usage,
        Usage {
            blobs: 4,
            blob_bytes: 4600,
            refs: 1,
            cache_entries: 1,
            cache_bytes: 5,
            tmp_files: 0,
            tmp_bytes: 0,
        }
    );
    let keep: HashSet<Digest> = [keep1, keep2].into();
    let _gc = store.lock(Store::GC_LOCK).unwrap();
    assert_eq!(store.prune_blobs(&keep).unwrap(), 4300);
    assert!(store.has_blob(&keep1) && store.has_blob(&keep2));
    assert!(!store.has_blob(&drop1) && !store.has_blob(&drop2));
    assert_eq!(store.prune_blobs(&keep).unwrap(), 0);
    assert_eq!(store.disk_usage().unwrap().blob_bytes, 300);
}

#[test]
fn crash_leftovers_are_ignored_and_cleaned() {
    let (_dir, store) = store();
    let (d, _) = store.put_blob_from_reader(&b"real"[..], None).unwrap();
    // A killed writer left a half-written temp file and a stray file in blobs/ that is not
    // a digest name.
    let old = store.tmp_dir().join("999999-0-dead.tmp");
    fs::write(&old, b"torn wri").unwrap();
    let hour_ago = SystemTime::now() - Duration::from_secs(2 * 3600);
    fs::File::options()
        .write(true)
        .open(&old)
        .unwrap()
        .set_modified(hour_ago)
        .unwrap();
    let blobs = store.root().join("blobs/sha256");
    fs::write(blobs.join("not-a-digest"), b"junk").unwrap();
    fs::write(blobs.join(format!("{}.tmp", d.hex())), b"junk").unwrap();
    let fresh = store.tmp_dir().join("999999-1-beef.tmp");
    fs::write(&fresh, b"maybe a live writer").unwrap();

    // Readers are not confused.
    let store = Store::open(store.root()).unwrap();
    assert_eq!(store.list_blobs().unwrap(), vec![(d, 4)]);
    store.verify_blob(&d).unwrap();
    assert_eq!(store.disk_usage().unwrap().tmp_files, 2);

    // A live writer's temp file is locked and survives any cleanup.
    let mut live = store.blob_writer().unwrap();
    live.write_all(b"in progress").unwrap();

    assert_eq!(store.cleanup_tmp().unwrap(), 1);
    assert!(!old.exists() && fresh.exists());
    assert_eq!(store.cleanup_tmp_older_than(Duration::ZERO).unwrap(), 1);
    assert!(!fresh.exists());
    assert_eq!(files_in(&store.tmp_dir()).len(), 1);

    let (d2, _) = live.finish(None).unwrap();
    assert_eq!(d2, Digest::of_bytes(b"in progress"));
    assert!(files_in(&store.tmp_dir()).is_empty());
}

#[test]
fn locks_serialize_threads() {
    let (_dir, store) = store();
    let guard = store.lock("snapshot sha256:abc/../x").unwrap();
    assert!(guard.path().starts_with(store.root().join("locks")));
    assert!(
        store
            .try_lock("snapshot sha256:abc/../x")
            .unwrap()
            .is_none()
    );
    assert!(store.try_lock("other").unwrap().is_some());
    drop(guard);
    assert!(
        store
            .try_lock("snapshot sha256:abc/../x")
            .unwrap()
            .is_some()
    );
    assert!(matches!(
        store.lock(""),
        Err(StoreError::InvalidLockName { .. })
    ));

    // Shared holders coexist; an exclusive one waits for them.
    let s1 = store.lock_shared(Store::GC_LOCK).unwrap();
    let s2 = store.lock_shared(Store::GC_LOCK).unwrap();
    assert!(store.try_lock(Store::GC_LOCK).unwrap().is_none());
    drop((s1, s2));
    assert!(store.try_lock(Store::GC_LOCK).unwrap().is_some());

    // A counter incremented non-atomically under the lock by 8 threads stays exact.
    let counter = store.root().join("counter");
    fs::write(&counter, "0").unwrap();
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let (store, counter) = (store.clone(), counter.clone());
            std::thread::spawn(move || {
                for _ in 0..25 {
                    let _g = store.lock("counter").unwrap();
                    let n: u32 = fs::read_to_string(&counter).unwrap().parse().unwrap();
                    std::thread::yield_now();
                    fs::write(&counter, (n + 1).to_string()).unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(fs::read_to_string(&counter).unwrap(), "200");
}
