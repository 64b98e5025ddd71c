//! Drain, payloads, statuses, subscriptions, retries and replay.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::receiver::Receiver;
use crate::common::{lines, stderr, Backend};
use crate::conformance::{eventually, hr};

fn archive(env: &crate::common::Env) -> Vec<Vec<Option<String>>> {
    env.db.query(
        "SELECT event_id, connector_id, event_status, attempts, event_description FROM {archive} ORDER BY event_id, connector_id",
    )
}

pub fn drain_delivers_business_objects_with_json_types(backend: Backend) {
    let Some((env, out)) = hr(backend, "") else {
        return;
    };
    env.db.execute(
        "INSERT INTO department VALUES (4, 'Sales');
         INSERT INTO employee VALUES (101961, 'como', 4, 1234.50, NULL, '2026-11-22 10:00:00.123456', true)",
    );
    let run = env.run_ok(&["drain"], 0);
    let summary = stderr(&run);
    assert!(
        summary.contains("drained 2 events")
            && summary.contains("2 sent")
            && summary.contains("events/s"),
        "{summary}"
    );
    let delivered = lines(&out);
    assert_eq!(delivered.len(), 2);
    let emp = delivered
        .iter()
        .find(|l| l["object"] == "Employee")
        .unwrap();
    let id = emp["event_id"].as_i64().unwrap();
    assert_eq!(emp["object_event_id"], json!(format!("out_{id}")));
    assert_eq!(emp["connector"], "out");
    assert_eq!(emp["verb"], "Create");
    assert_eq!(emp["key"], json!({"emp_id": "101961"}));
    assert_eq!(emp["priority"], 1);
    assert_eq!(emp["attempt"], 1);
    assert_eq!(emp["replay_of"], Value::Null);
    let t = emp["event_time"].as_str().unwrap();
    assert!(
        t.len() == 27 && t.ends_with('Z') && t.as_bytes()[10] == b'T',
        "{t}"
    );
    let a = &emp["attributes"];
    assert_eq!(a["emp_id"], json!(101961));
    assert_eq!(a["last_name"], json!("como"));
    assert_eq!(a["dept_id"], json!(4));
    assert_eq!(
        a["salary"].to_string(),
        "1234.50",
        "decimals keep their digits"
    );
    assert_eq!(a["photo"], Value::Null);
    assert_eq!(a["hired"], json!("2026-11-22T10:00:00.123456Z"));
    assert_eq!(a["active"], json!(true));
    assert_eq!(env.db.count("SELECT count(*) FROM {events}"), 0);
    let rows = archive(&env);
    assert_eq!(rows.len(), 2);
    assert!(rows
        .iter()
        .all(|r| r[1].as_deref() == Some("out") && r[2].as_deref() == Some("1")));
}

pub fn bytes_are_base64(backend: Backend) {
    let Some((env, out)) = hr(backend, "") else {
        return;
    };
    let literal = match backend {
        Backend::Postgres => "'\\x0102ff'::bytea",
        Backend::Mysql => "X'0102FF'",
        Backend::Sqlite => "X'0102ff'",
    };
    env.db.execute(&format!(
        "INSERT INTO employee (emp_id, photo) VALUES (1, {literal})"
    ));
    env.run_ok(&["drain"], 0);
    assert_eq!(lines(&out)[0]["attributes"]["photo"], json!("AQL/"));
}

pub fn unsubscribed_malformed_unknown_and_missing_events_are_archived(backend: Backend) {
    let Some((env, out)) = hr(backend, "") else {
        return;
    };
    std::fs::write(
        env.path("connectors/out.toml"),
        "id = \"out\"\nsubscribe = [\"Employee.*\"]\n[sink]\ntype = \"file\"\npath = \"../out.ndjson\"\n",
    )
    .unwrap();
    env.db.execute(
        "INSERT INTO department VALUES (1, 'Sales');
         INSERT INTO {events} (object_name, object_verb, object_key) VALUES
            ('Employee', 'Update', 'emp_id=%zz'),
            ('Employee', 'Update', 'emp_id=abc'),
            ('Employee', 'Update', 'wrong_col=1'),
            ('Nobody', 'Create', 'x=1'),
            ('Employee', 'Update', 'emp_id=424242')",
    );
    let run = env.run_ok(&["drain"], 3);
    assert!(stderr(&run).contains("1 unsubscribed"), "{}", stderr(&run));
    assert!(lines(&out).is_empty());
    let statuses: Vec<(String, String)> = env
        .db
        .query(
            "SELECT object_key, event_status, event_description FROM {archive} ORDER BY event_id",
        )
        .into_iter()
        .map(|r| (r[0].clone().unwrap(), r[1].clone().unwrap()))
        .collect();
    assert_eq!(
        statuses,
        [
            ("dept_id=1", "2"),
            ("emp_id=%zz", "-1"),
            ("emp_id=abc", "-1"),
            ("wrong_col=1", "-1"),
            ("x=1", "-1"),
            ("emp_id=424242", "-3"),
        ]
        .map(|(a, b)| (a.to_string(), b.to_string()))
    );
    let reasons = env.db.column(
        "SELECT event_description FROM {archive} WHERE event_status = -1 ORDER BY event_id",
    );
    assert!(reasons[0].contains("escape"), "{reasons:?}");
    assert!(reasons[1].contains("abc"), "{reasons:?}");
    assert!(reasons[2].contains("wrong_col"), "{reasons:?}");
    assert!(reasons[3].contains("unknown object"), "{reasons:?}");
    assert_eq!(env.db.count("SELECT count(*) FROM {events}"), 0);
}

pub fn subscriptions_and_targeted_events(backend: Backend) {
    let Some((env, all)) = hr(backend, "") else {
        return;
    };
    let sub = |id: &str, pattern: &str| {
        env.connector(
            id,
            &format!("subscribe = [{pattern}]\n[sink]\ntype = \"file\"\npath = \"../{id}.ndjson\""),
        );
        env.path(&format!("{id}.ndjson"))
    };
    let creates = sub("creates", "\"Employee.Create\"");
    let employees = sub("employees", "\"Employee.*\"");
    let deletes = sub("deletes", "\"*.Delete\"");
    env.db.execute(
        "INSERT INTO employee (emp_id) VALUES (1);
         UPDATE employee SET last_name = 'x';
         INSERT INTO department VALUES (1, 'a')",
    );
    env.run_ok(&["drain"], 0);
    env.db.execute(
        "DELETE FROM employee;
         DELETE FROM department;
         INSERT INTO {events} (object_name, object_verb, object_key, payload, connector_id)
         VALUES ('Department', 'Delete', 'dept_id=9', NULL, 'creates')",
    );
    env.run_ok(&["drain"], 0);
    let seen = |path| -> Vec<String> {
        lines(path)
            .iter()
            .map(|l| {
                format!(
                    "{}.{}",
                    l["object"].as_str().unwrap(),
                    l["verb"].as_str().unwrap()
                )
            })
            .collect()
    };
    assert_eq!(seen(&creates), ["Employee.Create", "Department.Delete"]);
    assert_eq!(
        seen(&employees),
        ["Employee.Create", "Employee.Update", "Employee.Delete"]
    );
    assert_eq!(seen(&deletes), ["Department.Delete", "Employee.Delete"]);
    assert_eq!(
        seen(&all).len(),
        5,
        "the targeted event went to `creates` only"
    );
    let targeted = lines(&creates).pop().unwrap();
    assert_eq!(
        targeted["attributes"],
        json!({"dept_id": "9"}),
        "a delete without image carries its key"
    );
}

fn http_connector(env: &crate::common::Env, id: &str, url: &str, extra: &str) {
    env.connector(
        id,
        &format!(
            "subscribe = [\"Department.*\"]\n[sink]\ntype = \"http\"\nurl = \"{url}\"\nsecret = \"s3cret\"\ntimeout = \"2s\"\n{extra}"
        ),
    );
}

pub fn http_retries_transient_failures_then_delivers(backend: Backend) {
    let Some((env, file)) = hr(backend, "") else {
        return;
    };
    // The first Retry-After keeps the event waiting until `status` has looked, however slow
    // the machine; the third must be what sets the last wait, longer than the backoff's.
    let receiver = Receiver::start(|n| match n {
        0 => (500, Some(5)),
        1 => (500, None),
        2 => (429, Some(1)),
        _ => (200, None),
    });
    http_connector(
        &env,
        "hook",
        &receiver.url,
        "max_attempts = 10\nbackoff = \"100ms\"",
    );
    env.db.execute("INSERT INTO department VALUES (1, 'Sales')");
    let first = env.run_ok(&["drain"], 0);
    assert!(
        stderr(&first).contains("1 waiting for retry"),
        "{}",
        stderr(&first)
    );
    let status = env.run_ok(&["status", "--json"], 0);
    let report: Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(
        (report["retrying"].as_u64(), report["in_progress"].as_u64()),
        (Some(1), Some(0)),
        "{report}"
    );
    let waited = stderr(&env.run_ok(&["drain", "--wait"], 0));
    // Three attempts, one event; a rate below one event a second still shows.
    assert!(waited.contains("drained 1 event in"), "{waited}");
    assert!(!waited.contains("(0 events/s)"), "{waited}");
    let requests = receiver.requests();
    assert_eq!(
        requests.iter().map(|r| r.answered).collect::<Vec<_>>(),
        [500, 500, 429, 200]
    );
    // The third answer said Retry-After: 1 (the backoff alone would be 0.2 to 0.4 s).
    let gap = requests[3].at - requests[2].at;
    assert!(
        gap >= Duration::from_millis(950),
        "Retry-After 1s was not honoured: {gap:?}"
    );
    let attempts: Vec<i64> = requests
        .iter()
        .map(|r| r.json()["attempt"].as_i64().unwrap())
        .collect();
    assert_eq!(attempts, [1, 2, 3, 4]);
    let last = &requests[3];
    assert_eq!(last.header("X-Trigpoll-Client-Id"), Some("trigpoll"));
    let id = last.json()["event_id"].as_i64().unwrap();
    assert_eq!(
        last.header("X-Trigpoll-Event-Id"),
        Some(format!("hook_{id}").as_str())
    );
    let ts = last.header("X-Trigpoll-Timestamp").unwrap();
    assert_eq!(
        last.header("X-Trigpoll-Signature").unwrap(),
        trigpoll::connector::sign("s3cret", ts, &last.body)
    );
    // The file connector succeeded on the first attempt and was not sent the event again.
    assert_eq!(lines(&file).len(), 1);
    let rows = archive(&env);
    assert_eq!(rows.len(), 2, "{rows:?}");
    let hook = rows
        .iter()
        .find(|r| r[1].as_deref() == Some("hook"))
        .unwrap();
    assert_eq!(
        (hook[2].as_deref(), hook[3].as_deref()),
        (Some("1"), Some("4"))
    );
    let out = rows
        .iter()
        .find(|r| r[1].as_deref() == Some("out"))
        .unwrap();
    assert_eq!(
        (out[2].as_deref(), out[3].as_deref()),
        (Some("1"), Some("1"))
    );
}

/// `signature = "standard-webhooks"` with two secrets and `batch_size`, through the binary: each
/// request carries `{"data": [...]}` in event order and verifies with both secrets, by a
/// verifier written from the Standard Webhooks specification.
pub fn http_standard_webhooks_in_batches(backend: Backend) {
    use base64::Engine;
    use hmac::{Hmac, Mac};
    let Some((env, file)) = hr(backend, "") else {
        return;
    };
    let secrets = [
        "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    ];
    let receiver = Receiver::start(|_| (200, None));
    env.connector(
        "hook",
        &format!(
            "subscribe = [\"Department.*\"]\n[sink]\ntype = \"http\"\nurl = \"{}\"\n\
             signature = \"standard-webhooks\"\nsecret = [\"{}\", \"{}\"]\nbatch_size = 4\n\
             concurrency = 1",
            receiver.url, secrets[0], secrets[1]
        ),
    );
    let values: Vec<String> = (1..=10).map(|i| format!("({i}, 'd{i}')")).collect();
    env.db.execute(&format!(
        "INSERT INTO department VALUES {}",
        values.join(", ")
    ));
    env.run_ok(&["drain"], 0);
    let requests = receiver.requests();
    assert_eq!(requests.len(), 3, "10 events, 4 per request");
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut event_ids = Vec::new();
    for request in &requests {
        let id = request.header("webhook-id").unwrap();
        assert!(id.starts_with("batch_"), "{id}");
        let timestamp = request.header("webhook-timestamp").unwrap();
        let content = format!("{id}.{timestamp}.{}", request.body);
        let signatures: Vec<&str> = request
            .header("webhook-signature")
            .unwrap()
            .split(' ')
            .collect();
        assert_eq!(signatures.len(), 2);
        for (secret, signature) in secrets.iter().zip(signatures) {
            let key = b64.decode(&secret["whsec_".len()..]).unwrap();
            let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
            mac.update(content.as_bytes());
            let given = b64.decode(signature.strip_prefix("v1,").unwrap()).unwrap();
            mac.verify_slice(&given).expect("the signature verifies");
        }
        for payload in request.json()["data"].as_array().unwrap() {
            assert_eq!(payload["object"], "Department");
            event_ids.push(payload["event_id"].as_i64().unwrap());
        }
    }
    let mut sorted = event_ids.clone();
    sorted.sort_unstable();
    assert_eq!(event_ids, sorted, "event order");
    assert_eq!(event_ids.len(), 10);
    assert_eq!(lines(&file).len(), 10);
}

pub fn a_rejected_event_fails_and_replay_sends_it_again(backend: Backend) {
    let Some((env, _)) = hr(backend, "") else {
        return;
    };
    let receiver = Receiver::start(|n| if n == 0 { (400, None) } else { (200, None) });
    http_connector(&env, "hook", &receiver.url, "backoff = \"20ms\"");
    env.db.execute("INSERT INTO department VALUES (1, 'Sales')");
    let run = env.run_ok(&["drain"], 3);
    assert!(stderr(&run).contains("1 failed"), "{}", stderr(&run));
    let failed = env.db.query(
        "SELECT event_id, event_description FROM {archive} WHERE connector_id = 'hook' AND event_status = -2",
    );
    assert_eq!(failed.len(), 1);
    assert!(
        failed[0][1].as_deref().unwrap().contains("400"),
        "{failed:?}"
    );
    let original = failed[0][0].clone().unwrap();

    let dry = env.run_ok(
        &[
            "replay",
            "--status",
            "failed",
            "--connector",
            "hook",
            "--dry-run",
        ],
        0,
    );
    assert_eq!(String::from_utf8_lossy(&dry.stdout).lines().count(), 1);
    assert_eq!(
        env.db.count("SELECT count(*) FROM {events}"),
        0,
        "the dry run enqueued"
    );

    env.run_ok(&["replay", "--status", "failed", "--connector", "hook"], 0);
    assert_eq!(env.db.count("SELECT count(*) FROM {events}"), 1);
    env.run_ok(&["drain"], 0);
    let requests = receiver.requests();
    assert_eq!(requests.len(), 2);
    let replayed = requests[1].json();
    assert_eq!(replayed["replay_of"].to_string(), original);
    assert_eq!(replayed["object"], "Department");
    assert_ne!(replayed["event_id"].to_string(), original);
    // The file connector `out` was not sent the replay: it went to `hook` only.
    assert_eq!(lines(&env.path("out.ndjson")).len(), 1);
}

pub fn exhausted_attempts_end_as_failed(backend: Backend) {
    let Some((env, _)) = hr(backend, "") else {
        return;
    };
    let receiver = Receiver::start(|_| (503, None));
    http_connector(
        &env,
        "hook",
        &receiver.url,
        "max_attempts = 3\nbackoff = \"20ms\"",
    );
    env.db.execute("INSERT INTO department VALUES (1, 'Sales')");
    env.run_ok(&["drain", "--wait"], 3);
    assert_eq!(receiver.requests().len(), 3);
    let row = env.db.query("SELECT event_status, attempts, event_description FROM {archive} WHERE connector_id = 'hook'");
    assert_eq!(row[0][0].as_deref(), Some("-2"));
    assert_eq!(row[0][1].as_deref(), Some("3"));
    assert!(
        row[0][2]
            .as_deref()
            .unwrap()
            .contains("gave up after 3 attempts"),
        "{row:?}"
    );
}

pub fn replay_filters_select_archived_events(backend: Backend) {
    let Some((env, out)) = hr(backend, "") else {
        return;
    };
    env.db.execute(
        "INSERT INTO department VALUES (1, 'a');
         INSERT INTO department VALUES (2, 'b');
         INSERT INTO employee (emp_id) VALUES (1);
         UPDATE department SET name = 'c' WHERE dept_id = 1",
    );
    env.run_ok(&["drain"], 0);
    let ids: Vec<i64> = env
        .db
        .query("SELECT event_id FROM {archive} ORDER BY event_id")
        .into_iter()
        .map(|r| r[0].as_deref().unwrap().parse().unwrap())
        .collect();
    let count = |args: &[&str]| {
        let mut all = vec!["replay", "--dry-run"];
        all.extend_from_slice(args);
        String::from_utf8(env.run_ok(&all, 0).stdout)
            .unwrap()
            .lines()
            .count()
    };
    assert_eq!(count(&[]), 4);
    assert_eq!(count(&["--object", "Department"]), 3);
    assert_eq!(count(&["--object", "Department", "--verb", "Update"]), 1);
    assert_eq!(
        count(&["--event-id", &format!("{}..{}", ids[1], ids[2])]),
        2
    );
    assert_eq!(count(&["--status", "sent", "--limit", "2"]), 2);
    assert_eq!(count(&["--status", "failed"]), 0);
    assert_eq!(count(&["--since", "1h"]), 4);
    assert_eq!(count(&["--until", "1h"]), 0);
    let bad = env.run_ok(&["replay", "--status", "bogus"], 2);
    assert!(stderr(&bad).contains("bogus"));
    let bad = env.run_ok(&["replay", "--event-id", "9..1"], 2);
    assert!(stderr(&bad).contains("--event-id"));
    let bad = env.run_ok(&["replay", "--connector", "nobody"], 2);
    assert!(stderr(&bad).contains("nobody"), "{}", stderr(&bad));

    env.run_ok(&["replay", "--object", "Employee"], 0);
    env.run_ok(&["drain"], 0);
    let delivered = lines(&out);
    assert_eq!(delivered.len(), 5);
    assert_eq!(delivered[4]["object"], "Employee");
    assert_eq!(delivered[4]["replay_of"], json!(ids[2]));
}

pub fn status_reports_backlog_and_failures(backend: Backend) {
    let Some((env, _)) = hr(backend, "") else {
        return;
    };
    env.db.execute(
        "INSERT INTO department VALUES (1, 'a');
         INSERT INTO department VALUES (2, 'b');
         INSERT INTO employee (emp_id) VALUES (1)",
    );
    let out = env.run_ok(&["status", "--json"], 0);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report["backlog"],
        json!([
            {"object": "Department", "verb": "Create", "priority": 0, "ready": 2},
            {"object": "Employee", "verb": "Create", "priority": 1, "ready": 1}
        ])
    );
    assert!(report["oldest_ready_age_seconds"].as_f64().unwrap() >= 0.0);
    assert_eq!(report["in_progress"], 0);
    assert_eq!(report["retrying"], 0);
    let text = String::from_utf8(env.run_ok(&["status"], 0).stdout).unwrap();
    assert!(text.contains("ready        3"), "{text}");
    assert!(text.contains("Department"), "{text}");
}

pub fn archive_false_keeps_only_failures(backend: Backend) {
    let Some((env, out)) = hr(backend, "archive = false") else {
        return;
    };
    env.db.execute(
        "INSERT INTO department VALUES (1, 'a');
         INSERT INTO {events} (object_name, object_verb, object_key) VALUES ('Department', 'Update', 'dept_id=x')",
    );
    env.run_ok(&["drain"], 3);
    assert_eq!(lines(&out).len(), 1);
    assert_eq!(
        env.db.query("SELECT event_status FROM {archive}"),
        vec![vec![Some("-1".to_string())]]
    );
}

pub fn very_large_rows_are_delivered_intact(backend: Backend) {
    let Some((env, out)) = hr(backend, "") else {
        return;
    };
    if backend == Backend::Mysql {
        // `{text}` is VARCHAR(191) on MySQL so that it can be part of a key; megabytes need
        // LONGTEXT.
        env.db
            .execute("ALTER TABLE department MODIFY name LONGTEXT NOT NULL");
    }
    let big: String = (0..3_000_000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    env.db
        .execute(&format!("INSERT INTO department VALUES (1, '{big}')"));
    env.run_ok(&["drain"], 0);
    env.db.execute("DELETE FROM department");
    env.run_ok(&["drain"], 0);
    let delivered = lines(&out);
    assert_eq!(delivered.len(), 2);
    assert!(delivered
        .iter()
        .all(|l| l["attributes"]["name"].as_str() == Some(big.as_str())));
}

pub fn poll_wakes_up_delivers_and_stops_on_sigterm(backend: Backend) {
    let Some((env, out)) = hr(backend, "") else {
        return;
    };
    let mut poller = env.spawn(&["poll", "--interval", "200ms"]);
    env.db.execute("INSERT INTO department VALUES (1, 'a')");
    assert!(eventually(Duration::from_secs(60), || lines(&out).len() == 1));
    env.db.execute("INSERT INTO department VALUES (2, 'b')");
    assert!(eventually(Duration::from_secs(60), || lines(&out).len() == 2));
    let pid = poller.id().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    let status = poller.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    assert_eq!(env.db.count("SELECT count(*) FROM {events}"), 0);
}

/// After a claim that found fewer events than a batch, `poll` claims again only once
/// `poll.linger` has passed since that claim (fuller batches for an application that writes all
/// the time); `drain` never lingers.
pub fn poll_lingers_after_a_partial_batch_and_drain_does_not(backend: Backend) {
    let Some((env, out)) = hr(backend, "linger = \"1s\"\nbatch_size = 2") else {
        return;
    };
    let poller = crate::common::Spawned(
        env.command(&["poll", "--interval", "100ms"])
            .env("RUST_LOG", "trigpoll=debug")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    env.db.execute("INSERT INTO department VALUES (1, 'a')");
    assert!(eventually(Duration::from_secs(60), || lines(&out).len() == 1));
    let first = Instant::now();
    env.db.execute("INSERT INTO department VALUES (2, 'b')");
    assert!(eventually(Duration::from_secs(60), || lines(&out).len() == 2));
    // Without lingering the second event goes within an interval (100 ms) of its commit.
    assert!(
        first.elapsed() >= Duration::from_millis(500),
        "delivered {:?} after the first, within poll.linger of the first claim",
        first.elapsed()
    );
    let said = poller.stop();
    assert!(said.contains("claiming again after poll.linger"), "{said}");

    // Three events in batches of two: a partial batch, then a claim that finds nothing.
    env.db
        .execute("INSERT INTO department VALUES (3, 'c'), (4, 'd'), (5, 'e')");
    let run = env
        .command(&["drain"])
        .env("RUST_LOG", "trigpoll=debug")
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(0), "{}", stderr(&run));
    assert_eq!(lines(&out).len(), 5);
    assert!(!stderr(&run).contains("poll.linger"), "{}", stderr(&run));
}

/// `--max-events` claims no more than is left to do, however large the batches: the rest stays
/// ready for the next run, claimed by nobody.
pub fn drain_stops_at_max_events(backend: Backend) {
    let Some((env, out)) = hr(backend, "batch_size = 100") else {
        return;
    };
    let values: Vec<String> = (1..=30).map(|i| format!("({i}, 'd{i}')")).collect();
    env.db.execute(&format!(
        "INSERT INTO department VALUES {}",
        values.join(", ")
    ));
    let run = env.run_ok(&["drain", "--max-events", "5"], 0);
    assert!(
        stderr(&run).contains("drained 5 events"),
        "{}",
        stderr(&run)
    );
    assert_eq!(lines(&out).len(), 5);
    assert_eq!(
        env.db
            .count("SELECT count(*) FROM {events} WHERE event_status = 0 AND claimed_by IS NULL"),
        25
    );
    env.run_ok(&["drain", "--max-events", "20"], 0);
    assert_eq!(lines(&out).len(), 25);
    env.run_ok(&["drain", "--max-time", "1h"], 0);
    assert_eq!(lines(&out).len(), 30);
    assert_eq!(env.db.count("SELECT count(*) FROM {events}"), 0);
}
