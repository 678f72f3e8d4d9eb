//! The store commands: `import`, `images`, `rm`, `prune`, `check`, `du`.

use std::path::Path;

use anyhow::bail;

use crate::catalog;
use crate::image::familiar;
use crate::store::Store;

pub(super) fn import(root: &Path, file: &Path, tags: &[String]) -> anyhow::Result<()> {
    let store = Store::open(root)?;
    for (name, digest) in catalog::import(&store, file, tags)? {
        println!("{} {digest}", familiar(&name));
    }
    Ok(())
}

pub(super) fn images(root: &Path) -> anyhow::Result<()> {
    let store = Store::open(root)?;
    println!(
        "{:<40} {:<19} {:>10}  {:<25} PLATFORMS",
        "NAME", "DIGEST", "SIZE", "CREATED"
    );
    for img in catalog::list(&store)? {
        println!(
            "{:<40} {:<19} {:>10}  {:<25} {}",
            familiar(&img.name),
            &img.digest.to_string()[..19],
            human_bytes(img.size()),
            img.config.created.as_deref().unwrap_or("-"),
            img.platform_names().join(",")
        );
    }
    Ok(())
}

pub(super) fn rm(root: &Path, names: &[String]) -> anyhow::Result<()> {
    let store = Store::open(root)?;
    for n in names {
        println!("removed {}", familiar(&catalog::remove(&store, n)?));
    }
    Ok(())
}

pub(super) fn prune(root: &Path) -> anyhow::Result<()> {
    let store = Store::open(root)?;
    let freed = catalog::prune(&store)?;
    println!("freed {} ({freed} bytes)", human_bytes(freed));
    Ok(())
}

pub(super) fn check(root: &Path, repair: bool) -> anyhow::Result<()> {
    use crate::check;
    let store = Store::open(root)?;
    let _gc = check::lock_store(&store)?;
    let mut report = check::check(&store)?;
    let print = |r: &check::Report| {
        println!(
            "checked {} blobs, {} names, {} cache entries, {} snapshots",
            r.blobs, r.names, r.cache_entries, r.snapshots
        );
        for p in &r.problems {
            println!("problem: {p}");
        }
        for l in &r.leftovers {
            println!("leftover: {l}");
        }
    };
    print(&report);
    if repair && !report.is_clean() {
        let done = check::repair(&store, &report)?;
        for a in &done.actions {
            println!("repair: {a}");
        }
        for e in &done.errors {
            println!("repair failed: {e}");
        }
        report = check::check(&store)?;
        println!("after repair:");
        print(&report);
    }
    let (p, l) = (report.problems.len(), report.leftovers.len());
    if p == 0 {
        // Leftovers of killed runs are not damage: the next build or a prune sweeps them.
        if l == 0 {
            println!("the store is sound");
        } else {
            println!(
                "the store is sound; {l} leftover(s) of killed runs: the next build or \
                 `wbuild prune` removes them"
            );
        }
        return Ok(());
    }
    let hint = if repair {
        "images with missing blobs need a rebuild or re-import (or `wbuild rm NAME`)"
    } else {
        "`wbuild check --repair` removes leftovers, corrupt blobs and broken cache entries"
    };
    bail!("the store has {p} problem(s) and {l} leftover(s); {hint}")
}

pub(super) fn du(root: &Path) -> anyhow::Result<()> {
    let store = Store::open(root)?;
    let u = store.disk_usage()?;
    println!("{:<12} {:>8} {:>12}", "KIND", "COUNT", "SIZE");
    println!(
        "{:<12} {:>8} {:>12}",
        "blobs",
        u.blobs,
        human_bytes(u.blob_bytes)
    );
    println!("{:<12} {:>8} {:>12}", "images", u.refs, "-");
    let (snapshots, snapshot_bytes) = catalog::snapshot_usage(&store);
    println!(
        "{:<12} {:>8} {:>12}",
        "snapshots",
        snapshots,
        human_bytes(snapshot_bytes)
    );
    println!(
        "{:<12} {:>8} {:>12}",
        "cache",
        u.cache_entries,
        human_bytes(u.cache_bytes)
    );
    println!(
        "{:<12} {:>8} {:>12}",
        "temp",
        u.tmp_files,
        human_bytes(u.tmp_bytes)
    );
    Ok(())
}

/// `1.5 MiB`-style sizes.
fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}
