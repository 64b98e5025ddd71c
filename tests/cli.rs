//! The command line itself: completions and manual pages, generated from its definition.

use std::process::{Command, Output};

fn trigpoll(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_trigpoll"))
        .args(args)
        // No configuration is needed: they describe the command line only.
        .env("TRIGPOLL_CONFIG", "/nonexistent/trigpoll.toml")
        .output()
        .unwrap()
}

fn ok(args: &[&str]) -> String {
    let out = trigpoll(args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

const SUBCOMMANDS: [&str; 9] = [
    "install-triggers",
    "uninstall-triggers",
    "poll",
    "drain",
    "replay",
    "status",
    "prune",
    "check",
    "completions",
];

#[test]
fn completions_cover_every_subcommand_in_each_shell() {
    let bash = ok(&["completions", "bash"]);
    assert!(bash.contains("complete -F _trigpoll"), "{bash}");
    let zsh = ok(&["completions", "zsh"]);
    assert!(zsh.starts_with("#compdef trigpoll"), "{zsh}");
    let fish = ok(&["completions", "fish"]);
    assert!(fish.contains("complete -c trigpoll"), "{fish}");
    for script in [&bash, &zsh, &fish] {
        for sub in SUBCOMMANDS {
            assert!(script.contains(sub), "{sub} missing");
        }
        assert!(script.contains("--older-than") || script.contains("older-than"));
    }
    let out = trigpoll(&["completions", "powershell-ish"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn man_pages_describe_the_commands() {
    let page = ok(&["man"]);
    assert!(page.contains(".TH trigpoll 1"), "{page}");
    for sub in SUBCOMMANDS {
        // roff escapes hyphens.
        let entry = format!("trigpoll\\-{}(1)", sub.replace('-', "\\-"));
        assert!(page.contains(&entry), "{entry} missing from the page");
    }
    let dir = tempfile::tempdir().unwrap();
    ok(&["man", "--dir", dir.path().to_str().unwrap()]);
    let prune = std::fs::read_to_string(dir.path().join("trigpoll-prune.1")).unwrap();
    assert!(prune.contains("older\\-than"), "{prune}");
    assert!(dir.path().join("trigpoll.1").exists());
}
