//! The fuzz targets' committed corpora (fuzz/corpus/<target>/) run through the same checks the
//! targets make (fuzz/src/lib.rs), on stable Rust: every seed, and every crash once fixed, stays
//! a test. `scripts/fuzz.sh` runs the targets themselves.

use std::path::Path;

#[path = "../fuzz/src/lib.rs"]
mod checks;

fn run(target: &str, check: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut seeds: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    seeds.sort();
    assert!(seeds.len() >= 10, "{target}: only {} seeds", seeds.len());
    for seed in seeds {
        let data = std::fs::read(&seed).unwrap();
        let outcome = std::panic::catch_unwind(|| check(&data));
        assert!(outcome.is_ok(), "{target}: {} fails", seed.display());
    }
}

#[test]
fn key_corpus() {
    run("key", checks::key);
}

#[test]
fn config_corpus() {
    run("config", checks::config);
    // The folder the checks write connector files to; the other checks only name it.
    let dir = std::env::temp_dir().join(format!("trigpoll-fuzz-{}", std::process::id()));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn names_corpus() {
    run("names", checks::names);
}

#[test]
fn rows_corpus() {
    run("rows", checks::rows);
}

#[test]
fn durations_corpus() {
    run("durations", checks::durations);
}
