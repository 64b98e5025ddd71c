//! SIGHUP in `poll`: the configuration and connector files are read again between batches,
//! while events flow.

use std::collections::{BTreeSet, HashMap};
use std::io::BufRead;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::{lines, stderr, Backend, Env, Spawned};
use crate::conformance::{eventually, hr};

/// A poll whose log lines (info and up) are kept as they come.
struct Logged {
    child: Spawned,
    log: Arc<Mutex<Vec<String>>>,
}

impl Logged {
    fn start(env: &Env, args: &[&str]) -> Logged {
        let mut child = Spawned(
            env.command(args)
                .env("RUST_LOG", "info")
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().unwrap();
        let kept = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { return };
                kept.lock().unwrap().push(line);
            }
        });
        Logged { child, log }
    }

    /// The log lines containing `text`.
    fn lines_with(&self, text: &str) -> Vec<String> {
        let log = self.log.lock().unwrap();
        log.iter().filter(|l| l.contains(text)).cloned().collect()
    }

    fn all(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    fn signal(&self, name: &str) {
        let status = std::process::Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Sends SIGHUP and waits for the reload's log line (`configuration reloaded` or `not
    /// reloaded`): the `n`-th of its kind.
    fn reload(&self, outcome: &str, n: usize) -> String {
        self.signal("HUP");
        let done = eventually(Duration::from_secs(30), || {
            self.lines_with(outcome).len() >= n
        });
        assert!(done, "no {outcome:?} number {n}:\n{}", self.all());
        self.lines_with(outcome)[n - 1].clone()
    }
}

/// The department id and event id of each line of a file connector's output.
fn delivered(path: &std::path::Path) -> Vec<(i64, i64)> {
    lines(path)
        .iter()
        .map(|l| {
            (
                l["attributes"]["dept_id"].as_i64().unwrap(),
                l["event_id"].as_i64().unwrap(),
            )
        })
        .collect()
}

/// Connectors are added, refused, and removed by SIGHUP while an application writes: every
/// event reaches `out` exactly once; a connector takes part from the first batch after the
/// reload that added it to the last batch before the reload that removed it, and the archive
/// says so for each event it got; an invalid configuration and another database are refused
/// with the message `check` gives, and delivery goes on with the running configuration.
pub fn sighup_reloads_connectors_while_events_flow(backend: Backend) {
    let Some((env, out)) = hr(backend, "batch_size = 20") else {
        return;
    };
    let config = std::fs::read_to_string(env.config_path()).unwrap();
    let poll = Logged::start(&env, &["poll", "--interval", "100ms"]);
    assert!(
        eventually(Duration::from_secs(60), || !poll
            .lines_with("polling")
            .is_empty()),
        "{}",
        poll.all()
    );
    // The application writes one department per transaction, on and on.
    let total = 600;
    let written = Arc::new(AtomicUsize::new(0));
    let writer = {
        let mut app = env.db.writer();
        let written = Arc::clone(&written);
        std::thread::spawn(move || {
            for i in 0..total {
                app.transaction(&format!("INSERT INTO department VALUES ({i}, 'd{i}')"))
                    .unwrap();
                written.store(i + 1, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(8));
            }
        })
    };
    let progress = |at: usize| {
        eventually(Duration::from_secs(60), || {
            written.load(Ordering::SeqCst) >= at
        })
    };

    assert!(progress(50));
    env.connector(
        "second",
        "subscribe = [\"Department.*\"]\n[sink]\ntype = \"file\"\npath = \"../second.ndjson\"",
    );
    let line = poll.reload("configuration reloaded", 1);
    assert!(line.contains("added=[\"second\"]"), "{line}");
    // Written from here on: claimed by the poller that has `second`.
    let added_at = written.load(Ordering::SeqCst);

    assert!(progress(added_at + 100));
    // An invalid value: refused with check's own words; the running configuration stays.
    std::fs::write(
        env.config_path(),
        config.replace("batch_size = 20", "batch_size = 0"),
    )
    .unwrap();
    let check = env.run_ok(&["check"], 2);
    let message = stderr(&check);
    let message = message.trim().strip_prefix("trigpoll: ").unwrap();
    let line = poll.reload("not reloaded", 1);
    assert!(
        line.contains(&format!(
            "configuration not reloaded, the running one stays: {message}"
        )),
        "{line}\ncheck said: {message}"
    );
    // Another database: refused, the poller cannot move its claims there.
    std::fs::write(
        env.config_path(),
        config.replace(&env.db.url, &format!("{}x", env.db.url)),
    )
    .unwrap();
    let line = poll.reload("not reloaded", 2);
    assert!(
        line.contains("database.url changed: restart trigpoll"),
        "{line}"
    );
    assert!(!line.contains(&env.db.url), "the URL is a secret: {line}");

    assert!(progress(added_at + 200));
    // Delivered by now: by the poller that has `second`, when written after it was added.
    let before_removal: BTreeSet<i64> = delivered(&out).iter().map(|(dept, _)| *dept).collect();
    std::fs::write(env.config_path(), &config).unwrap();
    std::fs::remove_file(env.path("connectors/second.toml")).unwrap();
    let line = poll.reload("configuration reloaded", 2);
    assert!(line.contains("removed=[\"second\"]"), "{line}");
    // Written from here on: claimed by the poller without `second`.
    let removed_at = written.load(Ordering::SeqCst);

    writer.join().unwrap();
    assert!(
        eventually(Duration::from_secs(60), || lines(&out).len() >= total),
        "{} of {total} delivered\n{}",
        lines(&out).len(),
        poll.all()
    );
    poll.signal("TERM");
    let mut child = poll.child;
    assert_eq!(child.wait().unwrap().code(), Some(0));

    // Nothing lost, nothing twice.
    let to_out = delivered(&out);
    let ids: BTreeSet<i64> = to_out.iter().map(|(dept, _)| *dept).collect();
    assert_eq!(to_out.len(), total, "duplicates in out");
    assert_eq!(ids, (0..total as i64).collect());
    assert_eq!(env.db.count("SELECT count(*) FROM {events}"), 0);
    assert_eq!(
        env.db.count(
            "SELECT count(*) FROM {archive} WHERE connector_id = 'out' AND event_status = 1"
        ),
        total as i64
    );

    // `second` got each of its events once, and the archive says which.
    let to_second = delivered(&env.path("second.ndjson"));
    let second: BTreeSet<i64> = to_second.iter().map(|(dept, _)| *dept).collect();
    assert_eq!(second.len(), to_second.len(), "duplicates in second");
    let archived: BTreeSet<i64> = env
        .db
        .column("SELECT event_id FROM {archive} WHERE connector_id = 'second' AND event_status = 1")
        .iter()
        .map(|id| id.parse().unwrap())
        .collect();
    let event_ids: BTreeSet<i64> = to_second.iter().map(|(_, event)| *event).collect();
    assert_eq!(event_ids, archived);
    // Written after it was added and delivered before it was removed: every one went to it
    // too (its batch finished with the connectors it started with).
    let between: Vec<&i64> = before_removal
        .iter()
        .filter(|&&d| d >= added_at as i64)
        .collect();
    assert!(
        !between.is_empty(),
        "nothing written after `second` was added was delivered"
    );
    for dept in between {
        assert!(
            second.contains(dept),
            "department {dept}, written after `second` was added, did not reach it"
        );
    }
    // Written after it was removed: none did.
    let late: Vec<&i64> = second.iter().filter(|&&d| d >= removed_at as i64).collect();
    assert!(late.is_empty(), "after its removal, `second` got {late:?}");
    // The events each connector got were archived for it, the others not.
    let per_event: HashMap<String, i64> = env
        .db
        .query("SELECT event_id, count(*) FROM {archive} GROUP BY event_id")
        .into_iter()
        .map(|r| {
            (
                r[0].clone().unwrap(),
                r[1].clone().unwrap().parse().unwrap(),
            )
        })
        .collect();
    for (_, event) in &to_out {
        let expected = 1 + i64::from(event_ids.contains(event));
        assert_eq!(per_event[&event.to_string()], expected, "event {event}");
    }
}
