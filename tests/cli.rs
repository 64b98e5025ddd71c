//! The command line itself: completions and manual pages, generated from its definition; what
//! the commands say on stderr (-q, --log-format json); how arguments are read.

mod common;

use std::process::{Command, Output};

use common::{stderr, stdout, Backend, Env};

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
    assert!(page.contains(".SH \"EXIT STATUS\""), "{page}");
    for code in ["0", "1", "2", "3"] {
        assert!(
            page.contains(&format!(".TP\n\\fB{code}\\fR\n")),
            "{code}: {page}"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    ok(&["man", "--dir", dir.path().to_str().unwrap()]);
    let prune = std::fs::read_to_string(dir.path().join("trigpoll-prune.1")).unwrap();
    assert!(prune.contains("older\\-than"), "{prune}");
    let main = std::fs::read_to_string(dir.path().join("trigpoll.1")).unwrap();
    assert_eq!(main, page, "the page printed is the page written");
    // Every page the main page names is written, and no other.
    let named: Vec<String> = page
        .split("trigpoll\\-")
        .skip(1)
        .filter_map(|rest| rest.split_once("(1)"))
        .map(|(name, _)| format!("trigpoll-{}.1", name.replace("\\-", "-")))
        .collect();
    let mut written: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| name != "trigpoll.1")
        .collect();
    written.sort();
    let mut expected = named.clone();
    expected.sort();
    expected.dedup();
    assert_eq!(written, expected, "named: {named:?}");
}

/// A SQLite database with one captured table, its triggers installed, and a file connector
/// `out` subscribed to everything.
fn installed() -> Option<Env> {
    let env = Env::new(Backend::Sqlite)?;
    env.db
        .execute("CREATE TABLE department (dept_id int PRIMARY KEY, name text)");
    env.config(
        "",
        "[[object]]\nname = \"Department\"\ntable = \"department\"\n",
    );
    env.file_connector("out");
    env.run_ok(&["install-triggers"], 0);
    Some(env)
}

/// Runs with the logging trigpoll chooses itself (`Env` sets `RUST_LOG=warn`, which would
/// hide what -q must hide anyway).
fn run_own_logging(env: &Env, args: &[&str]) -> Output {
    env.command(args).env_remove("RUST_LOG").output().unwrap()
}

/// An event for an object no `[[object]]` has: archived as `error`, so drain exits 3.
fn insert_bad_event(env: &Env) {
    env.db.execute(
        "INSERT INTO trigpoll_event (object_name, object_verb, object_key) \
         VALUES ('Nobody', 'Create', 'id=1')",
    );
}

/// Failure codes are negative: `--status -2` is a value, not an unknown flag, as `--status=-2`.
#[test]
fn negative_status_codes_are_values() {
    let Some(env) = installed() else {
        return;
    };
    insert_bad_event(&env);
    env.run_ok(&["drain"], 3);
    for status in [["--status", "-1"], ["--status=-1", "--limit=5"]] {
        let mut args = vec!["replay", "--dry-run"];
        args.extend(status);
        let listed = stdout(&env.run_ok(&args, 0));
        assert_eq!(listed.lines().count(), 1, "{args:?}: {listed}");
        assert!(listed.contains("\"replay_of\""), "{listed}");
    }
    let none = env.run_ok(&["replay", "--dry-run", "--status", "-2"], 0);
    assert_eq!(stdout(&none), "");
    for status in [["--status", "-1"], ["--status=-1", "--status=-2"]] {
        let mut args = vec!["prune", "--dry-run", "--older-than", "1d"];
        args.extend(status);
        let said = stdout(&env.run_ok(&args, 0));
        assert!(
            said.starts_with("would prune 0 archive rows (error"),
            "{said}"
        );
    }
}

/// Under cron, `-q` mails nothing for a run that needs no attention: no summary, no line at
/// all; a run that ends with failures or errors (exit 3) says so.
#[test]
fn quiet_says_nothing_unless_something_needs_attention() {
    let Some(env) = installed() else {
        return;
    };
    let silent = |args: &[&str], code: i32| {
        let out = run_own_logging(&env, args);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {}", stderr(&out));
        assert_eq!(stderr(&out), "", "{args:?}");
        assert_eq!(stdout(&out), "", "{args:?}");
    };
    silent(&["-q", "drain"], 0);
    env.db.execute("INSERT INTO department VALUES (1, 'a')");
    silent(&["-q", "drain", "--max-time", "1h"], 0);
    assert_eq!(common::lines(&env.path("out.ndjson")).len(), 1);
    silent(&["-q", "prune", "--older-than", "1d"], 0);
    insert_bad_event(&env);
    let failed = run_own_logging(&env, &["-q", "drain"]);
    assert_eq!(failed.status.code(), Some(3));
    let said = stderr(&failed);
    let lines: Vec<&str> = said.lines().collect();
    assert_eq!(lines.len(), 2, "{said}");
    assert!(lines[0].contains("unknown object \"Nobody\""), "{said}");
    assert!(
        lines[1].starts_with("drained 1 event in ") && lines[1].contains(" 1 error,"),
        "{said}"
    );
    // Without -q the summary comes every time.
    let loud = run_own_logging(&env, &["drain"]);
    assert!(
        stderr(&loud).contains("drained 0 events"),
        "{}",
        stderr(&loud)
    );
}

/// The stderr lines of a run, each parsed as JSON (a line that is not fails the test).
fn json_lines(out: &Output) -> Vec<serde_json::Value> {
    stderr(out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect()
}

fn message(line: &serde_json::Value) -> &str {
    line["fields"]["message"].as_str().unwrap_or_default()
}

/// With `--log-format json` a log pipeline gets no plain line: the drain summary, prune's
/// result and a fatal error are JSON lines, with fields.
#[test]
fn json_logs_carry_summaries_and_fatal_errors() {
    let Some(env) = installed() else {
        return;
    };
    env.db.execute("INSERT INTO department VALUES (1, 'a')");
    let drained = run_own_logging(&env, &["--log-format", "json", "drain"]);
    assert_eq!(drained.status.code(), Some(0), "{}", stderr(&drained));
    let lines = json_lines(&drained);
    let summary = lines
        .iter()
        .find(|l| message(l).starts_with("drained 1 event in "))
        .unwrap_or_else(|| panic!("no summary in {lines:?}"));
    assert_eq!(summary["level"], "INFO");
    assert_eq!(summary["fields"]["sent"], 1);
    assert_eq!(summary["fields"]["failed"], 0);

    insert_bad_event(&env);
    let failed = run_own_logging(&env, &["--log-format", "json", "-q", "drain"]);
    assert_eq!(failed.status.code(), Some(3));
    let lines = json_lines(&failed);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[1]["level"], "WARN");
    assert_eq!(lines[1]["fields"]["error"], 1);

    let pruned = run_own_logging(
        &env,
        &["--log-format", "json", "prune", "--older-than", "1d"],
    );
    assert_eq!(pruned.status.code(), Some(0), "{}", stderr(&pruned));
    let lines = json_lines(&pruned);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        message(&lines[0]).starts_with("pruned 0 archive rows"),
        "{lines:?}"
    );
    assert_eq!(lines[0]["fields"]["rows"], 0);
    let quiet = run_own_logging(
        &env,
        &["--log-format", "json", "-q", "prune", "--older-than", "1d"],
    );
    assert_eq!(stderr(&quiet), "");

    let fatal = Command::new(env!("CARGO_BIN_EXE_trigpoll"))
        .args(["--log-format", "json", "drain"])
        .env("TRIGPOLL_CONFIG", "/nonexistent/trigpoll.toml")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert_eq!(fatal.status.code(), Some(2));
    let lines = json_lines(&fatal);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["level"], "ERROR");
    assert!(
        message(&lines[0]).contains("/nonexistent/trigpoll.toml"),
        "{lines:?}"
    );
    assert_eq!(lines[0]["fields"]["exit_code"], 2);
}

/// `-v` shows each batch and each failed delivery, `-vv` also one line per delivery.
#[test]
fn each_verbosity_adds_lines() {
    let Some(env) = installed() else {
        return;
    };
    let said = |args: &[&str]| {
        env.db.execute(
            "INSERT INTO department SELECT coalesce(max(dept_id), 0) + 1, 'x' FROM department",
        );
        let out = run_own_logging(&env, args);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
        stderr(&out)
    };
    let delivered = "delivered connector=out event_id=";
    let normal = said(&["drain"]);
    assert!(!normal.contains("batch done"), "{normal}");
    let verbose = said(&["-v", "drain"]);
    assert!(verbose.contains("batch done"), "{verbose}");
    assert!(!verbose.contains(delivered), "{verbose}");
    let very = said(&["-vv", "drain"]);
    assert!(very.contains(delivered), "{very}");
}

/// `replay` says how many archived events it sends again and how many archive rows (one new
/// event each): an event delivered to two connectors has two.
#[test]
fn replay_counts_events_and_archive_rows() {
    let Some(env) = installed() else {
        return;
    };
    env.file_connector("copy");
    env.db
        .execute("INSERT INTO department VALUES (1, 'a'), (2, 'b')");
    env.run_ok(&["drain"], 0);
    let dry = run_own_logging(&env, &["replay", "--dry-run"]);
    assert_eq!(stdout(&dry).lines().count(), 4);
    assert!(
        stderr(&dry).contains(
            "dry run: would replay 2 archived events: 4 archive rows, one new event each"
        ),
        "{}",
        stderr(&dry)
    );
    let done = run_own_logging(&env, &["replay"]);
    assert!(
        stderr(&done).contains("replayed 2 archived events: 4 archive rows, one new event each"),
        "{}",
        stderr(&done)
    );
    assert_eq!(env.db.count("SELECT count(*) FROM trigpoll_event"), 4);
}

/// `poll --metrics` takes a host name (resolved when it starts) as well as an address; an
/// address without a port is a usage error.
#[test]
fn metrics_listen_on_a_host_name() {
    let Some(env) = installed() else {
        return;
    };
    let port = common::free_port();
    let mut poll = env.spawn(&["poll", "--metrics", &format!("localhost:{port}")]);
    let url = format!("http://localhost:{port}/healthz");
    let mut answer = None;
    for _ in 0..100 {
        if let Ok(response) = ureq::get(&url).call() {
            answer = Some(response.status());
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(answer, Some(200));
    Command::new("kill")
        .args(["-TERM", &poll.id().to_string()])
        .status()
        .unwrap();
    assert_eq!(poll.wait().unwrap().code(), Some(0));
    let out = env.run_ok(&["poll", "--metrics", "localhost"], 2);
    assert!(stderr(&out).contains("HOST:PORT"), "{}", stderr(&out));
}
