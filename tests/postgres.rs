//! The conformance suite on PostgreSQL, plus what only PostgreSQL does.

mod common;
mod conformance;

use common::Backend;

const PG: Backend = Backend::Postgres;

conformance_tests!(PG);

/// A poller whose database connection is killed reconnects, and nothing is lost.
#[test]
fn poll_survives_a_lost_connection() {
    use std::time::Duration;
    let Some((env, out)) = conformance::hr(PG, "") else {
        return;
    };
    let mut poller = env.spawn(&["poll", "--interval", "200ms"]);
    env.db.execute("INSERT INTO department VALUES (1, 'a')");
    assert!(conformance::eventually(Duration::from_secs(10), || {
        common::lines(&out).len() == 1
    }));
    env.db.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE application_name = 'trigpoll' AND datname = current_database()",
    );
    env.db.execute("INSERT INTO department VALUES (2, 'b')");
    assert!(
        conformance::eventually(Duration::from_secs(20), || common::lines(&out).len() == 2),
        "the poller did not come back after losing its connection"
    );
    std::process::Command::new("kill")
        .args(["-TERM", &poller.id().to_string()])
        .status()
        .unwrap();
    assert_eq!(poller.wait().unwrap().code(), Some(0));
    assert_eq!(env.db.count("SELECT count(*) FROM {events}"), 0);
}

/// A capture trigger dropped by hand shows as drift, and install-triggers puts it back.
#[test]
fn a_missing_capture_trigger_is_drift_until_reinstalled() {
    let Some((env, _)) = conformance::hr(PG, "") else {
        return;
    };
    let states = || -> Vec<(String, String)> {
        let out = env.run_ok(&["status", "--json"], 0);
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        report["triggers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                (
                    t["object"].as_str().unwrap().to_string(),
                    t["state"].as_str().unwrap_or("?").to_string(),
                )
            })
            .collect()
    };
    env.db
        .execute("DROP TRIGGER trigpoll_capture_insert ON employee");
    assert!(
        states().contains(&("Employee".into(), "stale".into())),
        "{:?}",
        states()
    );
    env.db.execute("INSERT INTO employee (emp_id) VALUES (1)");
    assert_eq!(env.db.count("SELECT count(*) FROM {events}"), 0);
    env.run_ok(&["install-triggers"], 0);
    assert!(
        states().iter().all(|(_, s)| s == "up-to-date"),
        "{:?}",
        states()
    );
    env.db.execute("INSERT INTO employee (emp_id) VALUES (2)");
    assert_eq!(env.db.count("SELECT count(*) FROM {events}"), 1);
}

/// The gate of the wake-up protocol, as `pg_locks` shows it while a poller sleeps on it.
fn poller_sleeps(env: &common::Env) -> bool {
    env.db.count(
        "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
         WHERE l.locktype = 'advisory' AND l.mode = 'ExclusiveLock' AND l.granted
           AND a.application_name = 'trigpoll' AND a.datname = current_database()",
    ) == 1
}

fn stop(mut poller: common::Spawned) {
    std::process::Command::new("kill")
        .args(["-TERM", &poller.id().to_string()])
        .status()
        .unwrap();
    assert_eq!(poller.wait().unwrap().code(), Some(0));
}

/// A sleeping poller is woken by the capture trigger's notification and by a replay, long
/// before its interval ends.
#[test]
fn notifications_wake_a_sleeping_poller() {
    use std::time::Duration;
    let Some((env, out)) = conformance::hr(PG, "") else {
        return;
    };
    let poller = env.spawn(&["poll", "--interval", "1h"]);
    assert!(conformance::eventually(Duration::from_secs(10), || {
        poller_sleeps(&env)
    }));
    env.db.execute("INSERT INTO department VALUES (1, 'a')");
    assert!(
        conformance::eventually(Duration::from_secs(5), || common::lines(&out).len() == 1),
        "the change was not delivered: no notification woke the poller"
    );
    assert!(conformance::eventually(Duration::from_secs(10), || {
        poller_sleeps(&env)
    }));
    env.run_ok(&["replay", "--object", "Department"], 0);
    assert!(
        conformance::eventually(Duration::from_secs(5), || common::lines(&out).len() == 2),
        "the replayed event was not delivered: the replay did not wake the poller"
    );
    stop(poller);
}

/// A change written while the poller was going to sleep, by a transaction that passed the
/// wake gate before the poller closed it, is not left until the interval ends.
#[test]
fn a_change_committed_while_the_poller_falls_asleep_is_delivered() {
    use std::time::Duration;
    let Some((env, out)) = conformance::hr(PG, "") else {
        return;
    };
    let mut writer = postgres::Client::connect(&env.db.url, postgres::NoTls).unwrap();
    let mut tx = writer.transaction().unwrap();
    tx.batch_execute("INSERT INTO department VALUES (1, 'a')")
        .unwrap();
    // The poller finds nothing to claim and cannot close the gate while the writer is inside.
    let poller = env.spawn(&["poll", "--interval", "1h"]);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(!poller_sleeps(&env));
    tx.commit().unwrap();
    assert!(
        conformance::eventually(Duration::from_secs(5), || common::lines(&out).len() == 1),
        "the change was left for the next interval"
    );
    stop(poller);
}
