//! Crashes, concurrency and bad configuration.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use crate::common::receiver::Receiver;
use crate::common::{stderr, Backend, Env};
use crate::conformance::{eventually, hr};

/// Inserts `n` employee rows in one statement (so the test spends its time in trigpoll).
fn insert_employees(env: &Env, from: usize, n: usize) {
    let values: Vec<String> = (from..from + n)
        .map(|i| format!("({i}, 'name {i}')"))
        .collect();
    for chunk in values.chunks(2000) {
        env.db.execute(&format!(
            "INSERT INTO employee (emp_id, last_name) VALUES {}",
            chunk.join(", ")
        ));
    }
}

pub fn kill_9_mid_drain_loses_nothing(backend: Backend) {
    let Some((env, out)) = hr(backend, "batch_size = 200\nclaim_timeout = \"1s\"") else {
        return;
    };
    let total = 10_000;
    insert_employees(&env, 0, total);
    let mut drain = env.spawn(&["drain"]);
    // Kill it once it has delivered part of the backlog.
    assert!(crate::conformance::eventually(
        Duration::from_secs(60),
        || { lines_count(&out) >= 1_000 }
    ));
    drain.kill().unwrap(); // SIGKILL
    drain.wait().unwrap();
    let archived_before = env.db.count("SELECT count(*) FROM {archive}");
    assert!(
        archived_before < total as i64,
        "the drain finished before the kill"
    );
    std::thread::sleep(Duration::from_millis(1200)); // claims expire
    env.run_ok(&["drain"], 0);
    assert_eq!(env.db.count("SELECT count(*) FROM {events}"), 0);
    assert_eq!(
        env.db.count(
            "SELECT count(*) FROM {archive} WHERE connector_id = 'out' AND event_status = 1"
        ),
        total as i64
    );
    assert_eq!(
        env.db
            .count("SELECT count(DISTINCT event_id) FROM {archive}"),
        total as i64,
        "archived exactly once per connector"
    );
    // The kill may have torn the line being written; the file connector ends it on its next
    // open, and the batch it belonged to was delivered again.
    let delivered: HashSet<i64> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|l| l["attributes"]["emp_id"].as_i64().unwrap())
        .collect();
    assert_eq!(
        delivered.len(),
        total,
        "every change delivered at least once"
    );
}

fn lines_count(path: &std::path::Path) -> usize {
    std::fs::read_to_string(path)
        .map(|t| t.matches('\n').count())
        .unwrap_or(0)
}

pub fn two_drains_deliver_nothing_twice_and_keep_key_order(backend: Backend) {
    let Some((env, _)) = hr(backend, "batch_size = 100\nclaim_timeout = \"5m\"") else {
        return;
    };
    std::fs::remove_file(env.path("connectors/out.toml")).unwrap();
    let receiver = Receiver::start(|_| (200, None));
    env.connector(
        "hook",
        &format!(
            "subscribe = [\"*.*\"]\n[sink]\ntype = \"http\"\nurl = \"{}\"\nsecret = \"k\"\nconcurrency = 8",
            receiver.url
        ),
    );
    // 10k events on 500 keys: every key gets a create and updates.
    let keys = 500;
    insert_employees(&env, 0, keys);
    for round in 0..19 {
        env.db
            .execute(&format!("UPDATE employee SET last_name = 'round {round}'"));
    }
    let total = env.db.count("SELECT count(*) FROM {events}");
    assert_eq!(total, (keys * 20) as i64);
    let a = env.spawn(&["drain"]);
    let b = env.spawn(&["drain"]);
    for mut child in [a, b] {
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(0));
    }
    // Leftovers, if one drain saw an empty batch while the other held the rest of a key.
    env.run_ok(&["drain"], 0);
    let requests = receiver.requests();
    let mut seen = HashSet::new();
    let mut last_per_key: HashMap<String, i64> = HashMap::new();
    for r in &requests {
        let body = r.json();
        let id = body["event_id"].as_i64().unwrap();
        assert!(
            seen.insert(id),
            "event {id} was delivered twice: {:?}",
            requests
                .iter()
                .filter(|r| r.json()["event_id"].as_i64() == Some(id))
                .map(|r| r.body.clone())
                .collect::<Vec<_>>()
        );
        let key = body["key"]["emp_id"].as_str().unwrap().to_string();
        if let Some(prev) = last_per_key.insert(key.clone(), id) {
            assert!(prev < id, "key {key}: event {id} arrived after {prev}");
        }
    }
    assert_eq!(seen.len() as i64, total);
    assert_eq!(env.db.count("SELECT count(*) FROM {events}"), 0);
}

pub fn configuration_errors_exit_2_naming_file_line_and_key(backend: Backend) {
    let Some((env, _)) = hr(backend, "") else {
        return;
    };
    let path = env.config_path();
    let good = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, good.replace("[poll]\n", "[poll]\nbatchsize = 5\n")).unwrap();
    let out = env.run_ok(&["drain"], 2);
    let text = stderr(&out);
    assert!(
        text.contains("trigpoll.toml:5") && text.contains("batchsize"),
        "{text}"
    );
    std::fs::write(
        &path,
        good.replace("url = \"", "url = \"${TRIGPOLL_TEST_UNSET_VAR}"),
    )
    .unwrap();
    let out = env.run_ok(&["status"], 2);
    assert!(
        stderr(&out).contains("TRIGPOLL_TEST_UNSET_VAR"),
        "{}",
        stderr(&out)
    );
    std::fs::write(&path, &good).unwrap();
    let missing = env
        .command(&["status"])
        .arg("--config")
        .arg(env.path("nope.toml"))
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
    assert!(stderr(&missing).contains("nope.toml"));
}

pub fn an_unreachable_database_exits_1(backend: Backend) {
    let Some((env, _)) = hr(backend, "") else {
        return;
    };
    let path = env.config_path();
    let good = std::fs::read_to_string(&path).unwrap();
    let bad = match backend {
        Backend::Postgres => "postgres://postgres@127.0.0.1:1/nothing",
        Backend::Mysql => "mysql://root@127.0.0.1:1/nothing",
        Backend::Sqlite => "sqlite:///nonexistent-folder/nothing.db",
    };
    std::fs::write(&path, good.replace(&env.db.url, bad)).unwrap();
    let out = env.run_ok(&["drain"], 1);
    let said = stderr(&out);
    assert!(said.contains("cannot connect"), "{said}");
    // The reason as a person reads it, not the driver's types (`DriverError { … }`).
    assert!(!said.contains("Error {"), "{said}");

    // `poll` waits for a server that is down (tests/restarts.rs), but not for what waiting
    // cannot mend: a database that does not exist on a server that answers.
    let missing = match backend {
        Backend::Sqlite => bad.to_string(),
        _ => {
            let (base, options) = env.db.url.split_once('?').unwrap_or((&env.db.url, ""));
            let (server, _) = base.rsplit_once('/').unwrap();
            let options = if options.is_empty() {
                String::new()
            } else {
                format!("?{options}")
            };
            format!("{server}/trigpoll_no_such_database{options}")
        }
    };
    std::fs::write(&path, good.replace(&env.db.url, &missing)).unwrap();
    let mut poll = env.spawn(&["poll"]);
    assert!(
        eventually(Duration::from_secs(30), || poll
            .try_wait()
            .unwrap()
            .is_some()),
        "poll waits for a database that does not exist"
    );
    assert_eq!(poll.wait().unwrap().code(), Some(1));
    let said = poll.said();
    assert!(said.contains("cannot connect"), "{said}");
    assert!(!said.contains("waits for it"), "{said}");
}

/// A poller finishing a batch touches only the events it still holds: one whose claim expired
/// and was taken over by another poller is neither archived nor removed nor put back by it
/// (docs/guarantees.md), for completed and retried events alike.
pub fn a_finish_leaves_events_another_poller_took_over(backend: Backend) {
    use trigpoll::event::{ArchiveRow, RetryLater, Settlement, Status};
    let Some((env, _)) = hr(backend, "") else {
        return;
    };
    env.db
        .execute("INSERT INTO department VALUES (1, 'a'), (2, 'b'), (3, 'c'), (4, 'd')");
    let config = trigpoll::config::Config::load(&env.config_path()).unwrap();
    let mut store = trigpoll::store::open(&config).unwrap();
    let ids: Vec<i64> = store
        .claim(10)
        .unwrap()
        .iter()
        .map(|e| e.event_id)
        .collect();
    assert_eq!(ids.len(), 4);
    // Events 2 and 4 now belong to another poller.
    env.db.execute(&format!(
        "UPDATE {{events}} SET claimed_by = 'another poller' WHERE event_id IN ({}, {})",
        ids[1], ids[3]
    ));
    let sent = |event_id| ArchiveRow {
        event_id,
        connector_id: Some("out".into()),
        status: Status::Sent,
        description: None,
        attempts: 1,
    };
    let later = |event_id| RetryLater {
        event_id,
        attempts: 1,
        delay: Duration::from_secs(60),
        description: "attempt 1 failed".into(),
        done_connectors: vec!["out".into()],
    };
    store
        .finish(&Settlement {
            archive: vec![sent(ids[0]), sent(ids[1]), sent(ids[2]), sent(ids[3])],
            complete: vec![ids[0], ids[1]],
            retry: vec![later(ids[2]), later(ids[3])],
            hold: Vec::new(),
        })
        .unwrap();
    let archived = env
        .db
        .query("SELECT event_id FROM {archive} ORDER BY event_id");
    assert_eq!(
        archived,
        [
            vec![Some(ids[0].to_string())],
            vec![Some(ids[2].to_string())]
        ]
    );
    let left = env.db.query(
        "SELECT event_id, event_status, claimed_by, attempts FROM {events} ORDER BY event_id",
    );
    let row = |id: i64, status: &str, by: Option<&str>, attempts: &str| {
        vec![
            Some(id.to_string()),
            Some(status.to_string()),
            by.map(str::to_string),
            Some(attempts.to_string()),
        ]
    };
    assert_eq!(
        left,
        [
            row(ids[1], "3", Some("another poller"), "0"),
            row(ids[2], "0", None, "1"),
            row(ids[3], "3", Some("another poller"), "0"),
        ]
    );
}

/// SIGTERM while the batch in hand waits for a receiver that never answers: after the grace
/// period the delivery is given up, the claim goes back (attempts unchanged) and drain exits 0,
/// in a bounded time whatever the connector's timeout.
pub fn sigterm_gives_up_a_batch_stuck_on_a_slow_receiver(backend: Backend) {
    let Some((env, _)) = hr(backend, "") else {
        return;
    };
    let receiver = Receiver::start(|_| (0, None));
    env.connector(
        "hook",
        &format!(
            "subscribe = [\"Department.*\"]\n[sink]\ntype = \"http\"\nurl = \"{}\"\nsecret = \"k\"\ntimeout = \"5m\"",
            receiver.url
        ),
    );
    env.db.execute("INSERT INTO department VALUES (1, 'a')");
    let mut drain = env.spawn(&["drain"]);
    assert!(eventually(Duration::from_secs(60), || receiver
        .requests()
        .len()
        == 1));
    let signalled = std::time::Instant::now();
    std::process::Command::new("kill")
        .args(["-TERM", &drain.id().to_string()])
        .status()
        .unwrap();
    assert!(
        eventually(Duration::from_secs(20), || matches!(
            drain.try_wait(),
            Ok(Some(_))
        )),
        "drain did not stop"
    );
    assert_eq!(drain.wait().unwrap().code(), Some(0));
    assert!(
        signalled.elapsed() < Duration::from_secs(15),
        "{:?}",
        signalled.elapsed()
    );
    assert_eq!(
        env.db
            .query("SELECT event_status, attempts, claimed_by FROM {events}"),
        [vec![Some("0".to_string()), Some("0".to_string()), None]]
    );
    assert_eq!(env.db.count("SELECT count(*) FROM {archive}"), 0);
}

/// `drain --max-time` is a limit, whatever the receivers do: at the limit no new batch is
/// claimed, the batch in hand gets the grace a SIGTERM gives it, and what still waits for a
/// receiver that never answers is given back (attempts unchanged); the run ends with its
/// summary and exit code 0 a few seconds after the limit, not after the connector's timeout.
pub fn drain_max_time_gives_up_a_batch_stuck_on_a_slow_receiver(backend: Backend) {
    use std::io::Read;
    let Some((env, _)) = hr(backend, "") else {
        return;
    };
    let receiver = Receiver::start(|_| (0, None));
    env.connector(
        "hook",
        &format!(
            "subscribe = [\"Department.*\"]\n[sink]\ntype = \"http\"\nurl = \"{}\"\nsecret = \"k\"\ntimeout = \"5m\"\nconcurrency = 2",
            receiver.url
        ),
    );
    env.db
        .execute("INSERT INTO department VALUES (1, 'a'), (2, 'b'), (3, 'c')");
    let started = std::time::Instant::now();
    let mut drain = env.spawn(&["drain", "--max-time", "2s"]);
    assert!(
        eventually(Duration::from_secs(30), || matches!(
            drain.try_wait(),
            Ok(Some(_))
        )),
        "drain did not stop at its time limit"
    );
    let took = started.elapsed();
    assert_eq!(drain.wait().unwrap().code(), Some(0));
    // The limit, the 5 s grace of a stop, and room for a slow start.
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(12),
        "{took:?}"
    );
    assert_eq!(receiver.requests().len(), 2, "one request per lane");
    let mut said = String::new();
    drain
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut said)
        .unwrap();
    assert!(said.contains("drained 0 events"), "{said}");
    assert_eq!(
        env.db
            .query("SELECT event_status, attempts, claimed_by FROM {events}"),
        vec![vec![Some("0".to_string()), Some("0".to_string()), None]; 3]
    );
    assert_eq!(env.db.count("SELECT count(*) FROM {archive}"), 0);
}

/// A claim is a lease: a batch that outlives `claim_timeout` (here on a slow receiver) stays its
/// poller's, which renews the claim while it delivers; a second poller does not take the batch
/// over and deliver its events again, out of order. (Before, it did: each event twice, the
/// second poller's copies interleaved with the first's.)
pub fn a_batch_that_outlives_its_claim_stays_its_pollers(backend: Backend) {
    let Some((env, _)) = hr(backend, "batch_size = 100\nclaim_timeout = \"1s\"") else {
        return;
    };
    std::fs::remove_file(env.path("connectors/out.toml")).unwrap();
    let receiver = Receiver::start(|_| {
        std::thread::sleep(Duration::from_millis(150));
        (200, None)
    });
    env.connector(
        "hook",
        &format!(
            "subscribe = [\"*.*\"]\n[sink]\ntype = \"http\"\nurl = \"{}\"\nsecret = \"k\"\nconcurrency = 2",
            receiver.url
        ),
    );
    insert_employees(&env, 0, 2);
    for round in 0..9 {
        env.db
            .execute(&format!("UPDATE employee SET last_name = 'round {round}'"));
    }
    let total = env.db.count("SELECT count(*) FROM {events}");
    assert_eq!(total, 20);
    // About 1.5 s of deliveries per key, one key after the other on each lane.
    let a = env.spawn(&["poll", "--interval", "100ms"]);
    std::thread::sleep(Duration::from_millis(300));
    let b = env.spawn(&["poll", "--interval", "100ms"]);
    assert!(eventually(Duration::from_secs(60), || env
        .db
        .count("SELECT count(*) FROM {events}")
        == 0));
    drop((a, b));
    let requests = receiver.requests();
    let mut seen = HashSet::new();
    let mut last_per_key: HashMap<String, i64> = HashMap::new();
    for r in &requests {
        let body = r.json();
        let id = body["event_id"].as_i64().unwrap();
        assert!(seen.insert(id), "event {id} was delivered twice");
        let key = body["key"]["emp_id"].as_str().unwrap().to_string();
        if let Some(prev) = last_per_key.insert(key.clone(), id) {
            assert!(prev < id, "key {key}: event {id} arrived after {prev}");
        }
    }
    assert_eq!(seen.len() as i64, total);
}
