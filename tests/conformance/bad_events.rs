//! Events an application writes into the event table itself, whatever they hold (the table is a
//! public contract; docs/faults.md, "Bad input"): each is archived with its reason or delivered,
//! and the changes of other keys written after it are delivered by the same drain.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use super::{HR, HR_OBJECTS};
use crate::common::{lines, stderr, Backend, Env};

/// The HR objects, an outbox object `Invoice` and a file connector `out` for everything.
fn setup(backend: Backend, poll: &str) -> Option<(Env, PathBuf)> {
    let env = Env::new(backend)?;
    env.db.execute(HR);
    env.config(
        poll,
        &format!("{HR_OBJECTS}\n[[object]]\nname = \"Invoice\"\n"),
    );
    let out = env.file_connector("out");
    env.run_ok(&["install-triggers"], 0);
    Some((env, out))
}

/// An archive row of an event other than the good ones.
#[derive(Debug)]
struct Archived {
    key: String,
    status: i64,
    reason: String,
}

/// The good changes written behind a bad event: two employees, keys of their own.
const GOOD: &str = "INSERT INTO employee (emp_id, last_name) VALUES (101, 'good'), (102, 'good')";

/// Writes the good changes, drains (exit `code`) and checks that both were delivered and that
/// the event table is empty. Returns what else was delivered and archived, in event order.
fn drain_behind(env: &Env, out: &Path, code: i32) -> (Vec<Value>, Vec<Archived>) {
    env.db.execute(GOOD);
    let run = env.run_ok(&["drain"], code);
    let (good, other): (Vec<Value>, Vec<Value>) = lines(out).into_iter().partition(|l| {
        l["object"] == "Employee" && l["verb"] == "Create" && l["attributes"]["last_name"] == "good"
    });
    assert_eq!(good.len(), 2, "the good events behind: {}", stderr(&run));
    assert_eq!(env.db.count("SELECT count(*) FROM {events}"), 0);
    let archived = env
        .db
        .query(
            "SELECT object_key, event_status, event_description FROM {archive}
             WHERE object_key NOT IN ('emp_id=101', 'emp_id=102') OR object_verb <> 'Create'
             ORDER BY event_id",
        )
        .into_iter()
        .map(|r| Archived {
            key: r[0].clone().unwrap(),
            status: r[1].as_deref().unwrap().parse().unwrap(),
            reason: r[2].clone().unwrap_or_default(),
        })
        .collect();
    (other, archived)
}

/// Asserts each archive row's status and that its reason holds the given text.
fn assert_archived(archived: &[Archived], expected: &[(i64, &str)]) {
    let got: Vec<(i64, &str)> = archived
        .iter()
        .map(|a| (a.status, a.reason.as_str()))
        .collect();
    assert_eq!(archived.len(), expected.len(), "{got:?}");
    for ((status, reason), (want_status, want_reason)) in got.iter().zip(expected) {
        assert_eq!(status, want_status, "{got:?}");
        assert!(
            reason.contains(want_reason),
            "{reason:?} lacks {want_reason:?}: {got:?}"
        );
    }
}

/// A key of a megabyte, full of escaped delimiters, naming no row: archived `not-found` with its
/// key intact.
pub fn bad_events_a_key_of_a_megabyte(backend: Backend) {
    let Some((env, out)) = setup(backend, "") else {
        return;
    };
    let key = format!("contract_id=1:header_id={}", "a%3Ab".repeat(200_000));
    env.db.execute(&format!(
        "INSERT INTO {{events}} (object_name, object_verb, object_key) VALUES ('OrderLine', 'Update', '{key}')"
    ));
    let (delivered, archived) = drain_behind(&env, &out, 0);
    assert!(delivered.is_empty());
    assert_eq!(archived.len(), 1);
    assert_eq!(archived[0].status, -3, "{}", archived[0].reason);
    assert!(
        archived[0].key == key,
        "the key changed on its way to the archive"
    );
}

/// Percent escapes that are not two hex digits, and escapes that are not UTF-8: `error`.
pub fn bad_events_keys_with_invalid_escapes(backend: Backend) {
    let Some((env, out)) = setup(backend, "") else {
        return;
    };
    env.db.execute(
        "INSERT INTO {events} (object_name, object_verb, object_key) VALUES
            ('Employee', 'Update', 'emp_id=%G1'),
            ('Employee', 'Update', 'emp_id=1%'),
            ('Employee', 'Update', 'emp_id=%+1'),
            ('Employee', 'Update', 'emp_id=%C3%28')",
    );
    let (delivered, archived) = drain_behind(&env, &out, 3);
    assert!(delivered.is_empty());
    assert_archived(
        &archived,
        &[
            (-1, "bad percent escape"),
            (-1, "bad percent escape"),
            (-1, "bad percent escape"),
            (-1, "does not decode to UTF-8"),
        ],
    );
}

/// Control characters in a key value need no escape: a row whose key holds them is delivered
/// with its key as it is; the same characters where a number belongs are an `error`.
pub fn bad_events_keys_with_control_characters(backend: Backend) {
    let Some((env, out)) = setup(backend, "") else {
        return;
    };
    let header = "a\u{1}\tb\nc\u{1b}\u{7f}";
    env.db.execute(&format!(
        "INSERT INTO order_line VALUES (7, '{header}', 3);
         INSERT INTO {{events}} (object_name, object_verb, object_key) VALUES
            ('OrderLine', 'Update', 'contract_id=7:header_id={header}'),
            ('Employee', 'Update', 'emp_id=\u{1}\u{7}')"
    ));
    let (delivered, archived) = drain_behind(&env, &out, 3);
    let lines: Vec<&Value> = delivered
        .iter()
        .filter(|l| l["object"] == "OrderLine" && l["verb"] == "Update")
        .collect();
    assert_eq!(lines.len(), 1, "{delivered:?}");
    assert_eq!(lines[0]["key"]["header_id"], header);
    assert_eq!(lines[0]["attributes"]["header_id"], header);
    let errors: Vec<&Archived> = archived.iter().filter(|a| a.status != 1).collect();
    assert_eq!(errors.len(), 1, "{archived:?}");
    assert_eq!(errors[0].status, -1, "{archived:?}");
    assert!(errors[0].key.starts_with("emp_id="), "{archived:?}");
}

/// A part without `=` is a column whose value is NULL: no row has a NULL key, so `not-found`;
/// a part naming no key column is an `error` naming it.
pub fn bad_events_keys_without_equals(backend: Backend) {
    let Some((env, out)) = setup(backend, "") else {
        return;
    };
    env.db.execute(
        "INSERT INTO {events} (object_name, object_verb, object_key) VALUES
            ('Employee', 'Update', 'emp_id'),
            ('Employee', 'Update', 'emp_id101')",
    );
    let (delivered, archived) = drain_behind(&env, &out, 3);
    assert!(delivered.is_empty());
    assert_archived(&archived, &[(-3, ""), (-1, "emp_id101")]);
}

/// A verb no trigger makes is the application's own: delivered with its row to whoever
/// subscribes, as is an empty verb.
pub fn bad_events_unknown_verbs(backend: Backend) {
    let Some((env, out)) = setup(backend, "") else {
        return;
    };
    env.db.execute(
        "INSERT INTO employee (emp_id, last_name) VALUES (7, 'seven');
         INSERT INTO {events} (object_name, object_verb, object_key) VALUES
            ('Employee', 'Frobnicate', 'emp_id=7'),
            ('Employee', '', 'emp_id=7')",
    );
    let (delivered, archived) = drain_behind(&env, &out, 0);
    let verbs: Vec<(&str, &Value)> = delivered
        .iter()
        .filter(|l| l["object"] == "Employee" && l["attributes"]["emp_id"] == 7)
        .map(|l| (l["verb"].as_str().unwrap(), &l["attributes"]["last_name"]))
        .collect();
    assert_eq!(
        verbs,
        [
            ("Create", &Value::from("seven")),
            ("Frobnicate", &Value::from("seven")),
            ("", &Value::from("seven"))
        ]
    );
    assert!(archived.iter().all(|a| a.status == 1), "{archived:?}");
}

/// Priorities outside the objects' range (negative, the column's extremes) are delivered, the
/// most urgent first.
pub fn bad_events_extreme_priorities(backend: Backend) {
    let Some((env, out)) = setup(backend, "") else {
        return;
    };
    env.db.execute(
        "INSERT INTO department VALUES (1, 'a'), (2, 'b'), (3, 'c');
         DELETE FROM {events};
         INSERT INTO {events} (object_name, object_verb, object_key, event_priority) VALUES
            ('Department', 'Update', 'dept_id=1', 2147483647),
            ('Department', 'Update', 'dept_id=2', -1),
            ('Department', 'Update', 'dept_id=3', -2147483648)",
    );
    let (delivered, archived) = drain_behind(&env, &out, 0);
    let names: Vec<&Value> = delivered.iter().map(|l| &l["attributes"]["name"]).collect();
    assert_eq!(names, ["c", "b", "a"]);
    assert!(archived.iter().all(|a| a.status == 1), "{archived:?}");
}

/// Text that is not JSON never reaches the event table (each backend's column checks it); JSON
/// that is not an object is an `error` for an outbox object.
pub fn bad_events_outbox_payloads_that_are_not_objects(backend: Backend) {
    let Some((env, out)) = setup(backend, "") else {
        return;
    };
    let refused = env.db.try_execute(
        "INSERT INTO {events} (object_name, object_verb, object_key, payload)
         VALUES ('Invoice', 'Create', 'n=0', 'not {json')",
    );
    assert!(
        refused.is_err(),
        "the database took a payload that is not JSON"
    );
    env.db.execute(
        r#"INSERT INTO {events} (object_name, object_verb, object_key, payload) VALUES
            ('Invoice', 'Create', 'n=1', '"text"'),
            ('Invoice', 'Create', 'n=2', '[1, 2]'),
            ('Invoice', 'Create', 'n=3', '42'),
            ('Invoice', 'Create', 'n=4', 'null'),
            ('Invoice', 'Create', 'n=5', NULL),
            ('Invoice', 'Create', 'n=6', '{}')"#,
    );
    let (delivered, archived) = drain_behind(&env, &out, 3);
    let keys: Vec<&Value> = delivered.iter().map(|l| &l["key"]["n"]).collect();
    assert_eq!(keys, ["6"], "only the object is delivered");
    assert_eq!(delivered[0]["attributes"], serde_json::json!({}));
    assert_archived(
        &archived,
        &[
            (-1, "payload"),
            (-1, "payload"),
            (-1, "payload"),
            (-1, "payload"),
            (-1, "payload"),
            (1, ""),
        ],
    );
}

/// An outbox payload of 100 MB (MySQL/MariaDB: 12 MB, below the default `max_allowed_packet`
/// of 16 MB that bounds a statement and a row) is delivered intact.
pub fn bad_events_an_outbox_payload_of_100_mb(backend: Backend) {
    let Some((env, out)) = setup(backend, "") else {
        return;
    };
    let size: usize = match backend {
        Backend::Mysql => 12 << 20,
        _ => 100 << 20,
    };
    let blob = match backend {
        Backend::Postgres => format!("json_build_object('blob', repeat('x', {size}))"),
        Backend::Mysql => format!("JSON_OBJECT('blob', REPEAT('x', {size}))"),
        Backend::Sqlite => format!(
            "json_object('blob', replace(hex(zeroblob({})), '0', 'x'))",
            size / 2
        ),
    };
    env.db.execute(&format!(
        "INSERT INTO {{events}} (object_name, object_verb, object_key, payload)
         VALUES ('Invoice', 'Create', 'n=1', {blob})"
    ));
    let (delivered, archived) = drain_behind(&env, &out, 0);
    assert_eq!(delivered.len(), 1);
    let got = delivered[0]["attributes"]["blob"].as_str().unwrap();
    assert!(got.len() == size && got.bytes().all(|b| b == b'x'));
    assert_archived(&archived, &[(1, "")]);
}

/// A `connector_id` naming no connector: `error`, naming it.
pub fn bad_events_an_unknown_connector_id(backend: Backend) {
    let Some((env, out)) = setup(backend, "") else {
        return;
    };
    env.db.execute(
        "INSERT INTO department VALUES (1, 'a');
         DELETE FROM {events};
         INSERT INTO {events} (object_name, object_verb, object_key, connector_id)
         VALUES ('Department', 'Update', 'dept_id=1', 'nobody')",
    );
    let (delivered, archived) = drain_behind(&env, &out, 3);
    assert!(delivered.is_empty());
    assert_archived(&archived, &[(-1, "nobody")]);
}

/// A `replay_of` naming no archived event is only a note: delivered, and archived with it.
pub fn bad_events_a_replay_of_nothing(backend: Backend) {
    let Some((env, out)) = setup(backend, "") else {
        return;
    };
    env.db.execute(
        "INSERT INTO department VALUES (1, 'a');
         DELETE FROM {events};
         INSERT INTO {events} (object_name, object_verb, object_key, replay_of)
         VALUES ('Department', 'Update', 'dept_id=1', 987654321)",
    );
    let (delivered, archived) = drain_behind(&env, &out, 0);
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0]["attributes"]["name"], "a");
    assert_archived(&archived, &[(1, "")]);
    assert_eq!(
        env.db
            .column("SELECT replay_of FROM {archive} WHERE object_key = 'dept_id=1'"),
        ["987654321"]
    );
}

/// Rows written as in progress under a claim nobody holds, with no claim time or a fresh one:
/// taken over once `claim_timeout` has passed since the claim (at once without one), and
/// delivered; their keys' later events wait behind them, other keys flow on.
pub fn bad_events_claims_nobody_holds(backend: Backend) {
    let Some((env, out)) = setup(backend, "claim_timeout = \"2s\"") else {
        return;
    };
    env.db.execute(
        "INSERT INTO department VALUES (1, 'a'), (2, 'b');
         DELETE FROM {events};
         INSERT INTO {events} (object_name, object_verb, object_key, event_status, claimed_by)
         VALUES ('Department', 'Update', 'dept_id=1', 3, 'ghost');
         UPDATE department SET name = 'a2' WHERE dept_id = 1",
    );
    env.db.execute(&format!(
        "INSERT INTO {{events}} (object_name, object_verb, object_key, event_status, claimed_by,
            claimed_at) VALUES ('Department', 'Update', 'dept_id=2', 3, 'ghost', {})",
        match backend {
            Backend::Postgres => "now()",
            Backend::Mysql => "CURRENT_TIMESTAMP(6)",
            Backend::Sqlite => "strftime('%Y-%m-%dT%H:%M:%f000Z', 'now')",
        }
    ));
    env.db.execute(GOOD);
    env.run_ok(&["drain"], 0);
    let seen = |object: &str| -> Vec<String> {
        lines(&out)
            .iter()
            .filter(|l| l["object"] == object)
            .map(|l| l["key"].to_string())
            .collect()
    };
    assert_eq!(seen("Employee").len(), 2, "the good events behind");
    assert_eq!(
        seen("Department"),
        [r#"{"dept_id":"1"}"#, r#"{"dept_id":"1"}"#],
        "the one without a claim time and its key's later event"
    );
    std::thread::sleep(Duration::from_millis(2500));
    env.run_ok(&["drain"], 0);
    assert_eq!(
        seen("Department"),
        [
            r#"{"dept_id":"1"}"#,
            r#"{"dept_id":"1"}"#,
            r#"{"dept_id":"2"}"#
        ]
    );
    assert_eq!(env.db.count("SELECT count(*) FROM {events}"), 0);
}

/// A status the event table does not use (an archive's, or none at all) is taken for ready:
/// delivered, with its key's later events after it.
pub fn bad_events_statuses_of_no_event(backend: Backend) {
    let Some((env, out)) = setup(backend, "") else {
        return;
    };
    env.db.execute(
        "INSERT INTO department VALUES (1, 'a'), (2, 'b'), (3, 'c');
         DELETE FROM {events};
         INSERT INTO {events} (object_name, object_verb, object_key, event_status) VALUES
            ('Department', 'Update', 'dept_id=1', 1),
            ('Department', 'Update', 'dept_id=2', -1),
            ('Department', 'Update', 'dept_id=3', 7);
         UPDATE department SET name = 'x'",
    );
    let (delivered, archived) = drain_behind(&env, &out, 0);
    // Per key, the event ids in delivery order: the hand-written one, then the trigger's.
    let mut by_key: std::collections::BTreeMap<String, Vec<i64>> = Default::default();
    for l in &delivered {
        assert_eq!(l["attributes"]["name"], "x", "{l}");
        by_key
            .entry(l["key"]["dept_id"].to_string())
            .or_default()
            .push(l["event_id"].as_i64().unwrap());
    }
    assert_eq!(by_key.len(), 3, "{by_key:?}");
    for ids in by_key.values() {
        assert!(ids.len() == 2 && ids[0] < ids[1], "{by_key:?}");
    }
    assert!(archived.iter().all(|a| a.status == 1), "{archived:?}");
}
