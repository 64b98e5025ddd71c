//! Hot keys: many events of one key in a batch, in order, with several pollers, retries and
//! coalescing.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::receiver::{Received, Receiver};
use crate::common::{lines, stderr, Backend, Env};

const ITEMS: &str = "
CREATE TABLE item (item_id int PRIMARY KEY, v int NOT NULL);
CREATE TABLE noise (writer int NOT NULL, n int NOT NULL, v int NOT NULL,
    PRIMARY KEY (writer, n));
";

const ITEM_OBJECTS: &str = r#"
[[object]]
name = "Item"
table = "item"

[[object]]
name = "Noise"
table = "noise"
"#;

fn http_everything(env: &Env, receiver: &Receiver, concurrency: usize) {
    env.connector(
        "hook",
        &format!(
            "subscribe = [\"*.*\"]\n[sink]\ntype = \"http\"\nurl = \"{}\"\nsecret = \"k\"\nconcurrency = {concurrency}\nbackoff = \"50ms\"",
            receiver.url
        ),
    );
}

/// The events each key's requests carried, in the order they arrived; fails on a duplicate.
fn arrivals(requests: &[Received]) -> HashMap<String, Vec<i64>> {
    let mut seen = HashSet::new();
    let mut per_key: HashMap<String, Vec<i64>> = HashMap::new();
    for r in requests.iter().filter(|r| r.answered == 200) {
        let body = r.json();
        let id = body["event_id"].as_i64().unwrap();
        assert!(seen.insert(id), "event {id} was delivered twice");
        let key = format!("{}:{}", body["object"], body["key"]);
        per_key.entry(key).or_default().push(id);
    }
    per_key
}

fn assert_in_order(per_key: &HashMap<String, Vec<i64>>) {
    for (key, ids) in per_key {
        for pair in ids.windows(2) {
            assert!(
                pair[0] < pair[1],
                "key {key}: event {} arrived after event {}",
                pair[1],
                pair[0]
            );
        }
    }
}

fn stop(mut poller: crate::common::Spawned) {
    std::process::Command::new("kill")
        .args(["-TERM", &poller.id().to_string()])
        .status()
        .unwrap();
    assert_eq!(poller.wait().unwrap().code(), Some(0));
}

/// Application transactions delete and re-insert the same few rows from several connections,
/// with other changes between the delete and the insert, while two pollers run: no key's later
/// event reaches the receiver before an earlier one, and none arrives twice.
pub fn writers_reinserting_keys_beside_two_pollers_keep_each_keys_order(backend: Backend) {
    let Some(env) = Env::new(backend) else { return };
    env.db.execute(ITEMS);
    env.config("batch_size = 1000", ITEM_OBJECTS);
    let receiver = Receiver::start(|_| (200, None));
    http_everything(&env, &receiver, 8);
    env.run_ok(&["install-triggers"], 0);
    let (writers, keys, noise) = (4, 2000, 10);
    let rows: Vec<String> = (0..keys).map(|k| format!("({k}, 0)")).collect();
    env.db
        .execute(&format!("INSERT INTO item VALUES {}", rows.join(", ")));
    for w in 0..writers {
        let rows: Vec<String> = (0..noise).map(|n| format!("({w}, {n}, 0)")).collect();
        env.db
            .execute(&format!("INSERT INTO noise VALUES {}", rows.join(", ")));
    }
    let pollers = [
        env.spawn(&["poll", "--interval", "50ms"]),
        env.spawn(&["poll", "--interval", "50ms"]),
    ];
    let running = Arc::new(AtomicBool::new(true));
    let threads: Vec<_> = (0..writers)
        .map(|w| {
            let mut db = env.db.writer();
            let running = Arc::clone(&running);
            std::thread::spawn(move || {
                let mut committed = 0;
                let mut n = 0u64;
                while running.load(Ordering::Relaxed) {
                    n += 1;
                    let k = rand::random::<u64>() % keys as u64;
                    let sql = format!(
                        "DELETE FROM item WHERE item_id = {k};
                         UPDATE noise SET v = v + 1 WHERE writer = {w};
                         INSERT INTO item VALUES ({k}, {n})"
                    );
                    // Writers wait for each other on the same rows; a deadlock is rolled back
                    // whole, as an application would see it.
                    if db.transaction(&sql).is_ok() {
                        committed += 1;
                    }
                }
                committed
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(4));
    running.store(false, Ordering::Relaxed);
    let committed: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert!(committed > 50, "only {committed} transactions committed");
    // Stopped mid-batch after the grace period, a poller rightly puts back events it delivered
    // (at-least-once); here the pollers are stopped once they have emptied the table.
    assert!(crate::conformance::eventually(
        Duration::from_secs(120),
        || { env.db.count("SELECT count(*) FROM {events}") == 0 }
    ));
    for poller in pollers {
        stop(poller);
    }
    env.run_ok(&["drain"], 0);
    let total = env.db.count("SELECT count(*) FROM {archive}");
    let per_key = arrivals(&receiver.requests());
    assert_eq!(per_key.values().map(Vec::len).sum::<usize>() as i64, total);
    assert_in_order(&per_key);
    assert_eq!(env.db.count("SELECT count(*) FROM {events}"), 0);
}

/// 5,000 events of one key, drained by two pollers at once: they arrive in event-id order and
/// each once, and the busy key does not stop either drain with an error.
pub fn five_thousand_events_of_one_key_two_pollers_in_order_once(backend: Backend) {
    let Some(env) = Env::new(backend) else { return };
    env.db.execute(ITEMS);
    env.config("batch_size = 200", ITEM_OBJECTS);
    let out = env.file_connector("out");
    env.run_ok(&["install-triggers"], 0);
    env.db.execute("INSERT INTO item VALUES (1, 0)");
    let updates = "UPDATE item SET v = v + 1 WHERE item_id = 1;".repeat(4999);
    env.db.writer().transaction(&updates).unwrap();
    assert_eq!(env.db.count("SELECT count(*) FROM {events}"), 5000);
    let a = env.spawn(&["drain"]);
    let b = env.spawn(&["drain"]);
    for mut drain in [a, b] {
        assert_eq!(drain.wait().unwrap().code(), Some(0));
    }
    // What a drain left when it found the key busy with the other one.
    env.run_ok(&["drain"], 0);
    let ids: Vec<i64> = lines(&out)
        .iter()
        .map(|l| l["event_id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids.len(), 5000, "events delivered: {}", ids.len());
    assert!(
        ids.windows(2).all(|p| p[0] < p[1]),
        "out of order or twice: {:?}",
        ids.windows(2).find(|p| p[0] >= p[1])
    );
}

/// A transient failure in the middle of a key's run: the events before it are delivered, the
/// failed one waits for its retry, and the rest of the run is not attempted (attempt counts
/// unchanged) but held behind it, out of the claims' way; another key goes on. Then everything
/// arrives in order.
pub fn a_transient_failure_holds_the_rest_of_its_keys_run(backend: Backend) {
    let Some(env) = Env::new(backend) else { return };
    env.db.execute(ITEMS);
    env.config("", ITEM_OBJECTS);
    // One key at a time (concurrency 1), in batch order: key 1's ten events come first, and
    // the fourth of them fails once. Its Retry-After keeps it waiting until `status` has
    // looked, however slow the machine (the backoff alone would make it due within a second).
    let receiver = Receiver::start(|n| match n {
        3 => (503, Some(6)),
        _ => (200, None),
    });
    env.connector(
        "hook",
        &format!(
            "subscribe = [\"Item.*\"]\n[sink]\ntype = \"http\"\nurl = \"{}\"\nsecret = \"k\"\nconcurrency = 1\nbackoff = \"1s\"",
            receiver.url
        ),
    );
    env.run_ok(&["install-triggers"], 0);
    env.db.execute("INSERT INTO item VALUES (1, 0), (2, 0)");
    let mut db = env.db.writer();
    for v in 1..=9 {
        db.transaction(&format!(
            "UPDATE item SET v = {v} WHERE item_id = 1; UPDATE item SET v = {v} WHERE item_id = 2"
        ))
        .unwrap();
    }
    drop(db);
    let ids_of = |key: i32| -> Vec<i64> {
        env.db
            .query(&format!(
                "SELECT event_id FROM {{events}} WHERE object_key = 'item_id={key}' ORDER BY event_id"
            ))
            .iter()
            .map(|r| r[0].as_deref().unwrap().parse().unwrap())
            .collect()
    };
    let key1 = ids_of(1);
    assert_eq!(key1.len(), 10);

    let first = env.run_ok(&["drain"], 0);
    assert!(
        stderr(&first).contains("7 waiting for retry"),
        "{}",
        stderr(&first)
    );
    let sent: Vec<i64> = receiver
        .requests()
        .iter()
        .filter(|r| r.json()["key"]["item_id"] == "1")
        .map(|r| r.json()["event_id"].as_i64().unwrap())
        .collect();
    assert_eq!(sent, key1[..4], "key 1 went on past its failed event");
    assert!(ids_of(2).is_empty(), "key 2 was held by key 1's failure");
    let failed = key1[3];
    let rows = env
        .db
        .query("SELECT event_id, attempts, waiting_for FROM {events} ORDER BY event_id");
    let want: Vec<Vec<Option<String>>> = key1[3..]
        .iter()
        .map(|&id| {
            let (attempts, behind) = match id == failed {
                true => ("1", None),
                false => ("0", Some(failed.to_string())),
            };
            vec![Some(id.to_string()), Some(attempts.to_string()), behind]
        })
        .collect();
    assert_eq!(
        rows, want,
        "the failed event retries, the rest wait behind it untried"
    );
    let status = env.run_ok(&["status", "--json"], 0);
    let report: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(
        (report["retrying"].as_u64(), report["held"].as_u64()),
        (Some(1), Some(6)),
        "{report}"
    );
    assert_eq!(
        report["backlog"],
        serde_json::json!([]),
        "held events are not ready: {report}"
    );

    let started = Instant::now();
    env.run_ok(&["drain", "--wait"], 0);
    assert!(started.elapsed() < Duration::from_secs(40));
    let per_key = arrivals(&receiver.requests());
    assert_in_order(&per_key);
    assert_eq!(per_key.values().map(Vec::len).sum::<usize>(), 20);
    assert_eq!(env.db.count("SELECT count(*) FROM {events}"), 0);
}

/// `coalesce = true`: a run of updates of one key in one batch is delivered once, as its last
/// event; every event of the run is archived with that outcome, the others saying which event
/// they were coalesced into. A delete or a create ends a run.
pub fn coalesce_folds_a_run_and_archives_every_event(backend: Backend) {
    let Some(env) = Env::new(backend) else { return };
    env.db.execute(ITEMS);
    env.config(
        "",
        "[[object]]\nname = \"Item\"\ntable = \"item\"\ncoalesce = true\n",
    );
    let out = env.file_connector("out");
    env.run_ok(&["install-triggers"], 0);
    env.db.execute("INSERT INTO item VALUES (1, 0), (2, 0)");
    let mut db = env.db.writer();
    for v in 1..=5 {
        db.transaction(&format!("UPDATE item SET v = {v} WHERE item_id = 1"))
            .unwrap();
    }
    for sql in [
        "UPDATE item SET v = 1 WHERE item_id = 2",
        "UPDATE item SET v = 2 WHERE item_id = 2",
        "DELETE FROM item WHERE item_id = 2",
        "INSERT INTO item VALUES (2, 3)",
        "UPDATE item SET v = 4 WHERE item_id = 2",
    ] {
        db.transaction(sql).unwrap();
    }
    drop(db);
    let events: Vec<(i64, String, String)> = env
        .db
        .query("SELECT event_id, object_verb, object_key FROM {events} ORDER BY event_id")
        .into_iter()
        .map(|r| {
            let [id, verb, key] = [0, 1, 2].map(|i| r[i].clone().unwrap());
            (id.parse().unwrap(), verb, key)
        })
        .collect();
    assert_eq!(events.len(), 12);
    env.run_ok(&["drain"], 0);
    let mut delivered: Vec<i64> = lines(&out)
        .iter()
        .map(|l| l["event_id"].as_i64().unwrap())
        .collect();
    delivered.sort_unstable();
    let id = |i: usize| events[i].0;
    // C1 C2 U1 U1 U1 U1 U1 U2 U2 D2 C2 U2: the first four updates of key 1 fold into the
    // fifth, the first update of key 2 into the second.
    assert_eq!(
        delivered,
        [id(0), id(1), id(6), id(8), id(9), id(10), id(11)],
        "{events:?}"
    );
    let archived = env
        .db
        .query("SELECT event_id, event_status, event_description FROM {archive} ORDER BY event_id");
    assert_eq!(archived.len(), 12, "every event is archived: {archived:?}");
    for row in &archived {
        let event: i64 = row[0].as_deref().unwrap().parse().unwrap();
        let into = match events.iter().position(|e| e.0 == event).unwrap() {
            2..=5 => Some(id(6)),
            7 => Some(id(8)),
            _ => None,
        };
        assert_eq!(row[1].as_deref(), Some("1"), "{archived:?}");
        assert_eq!(
            row[2],
            into.map(|i| format!("coalesced into event {i}")),
            "{archived:?}"
        );
    }
}

/// Events of one key may differ in priority (an application's own events, event rules): an
/// urgent event does not wait for the low-priority queue behind an earlier event of its key, it
/// takes that key's earlier events along into its batch, and they are delivered in key order.
/// (Before, the urgent Delete was delivered after every other priority-0 event.)
pub fn an_urgent_event_takes_its_keys_earlier_events_along(backend: Backend) {
    let Some(env) = Env::new(backend) else { return };
    env.config("batch_size = 50", "[[object]]\nname = \"Doc\"\n");
    let out = env.file_connector("out");
    env.run_ok(&["install-triggers"], 0);
    let event = |key: &str, verb: &str, priority: i32| {
        format!("('Doc', '{verb}', '{key}', {priority}, '{{\"k\": \"{key}\"}}')")
    };
    let insert = |rows: Vec<String>| {
        for chunk in rows.chunks(500) {
            env.db.execute(&format!(
                "INSERT INTO {{events}} (object_name, object_verb, object_key, event_priority, payload)
                 VALUES {}",
                chunk.join(", ")
            ));
        }
    };
    // Priority 0 goes first, oldest first: the Delete after the first 1,000 of them, before the
    // next 1,000, and its key's Update of priority 5 along with it.
    insert(vec![event("id=1", "Update", 5)]);
    insert(
        (2..1002)
            .map(|i| event(&format!("id={i}"), "Update", 0))
            .collect(),
    );
    insert(vec![event("id=1", "Delete", 0)]);
    insert(
        (1002..2002)
            .map(|i| event(&format!("id={i}"), "Update", 0))
            .collect(),
    );
    env.run_ok(&["drain"], 0);
    let delivered = lines(&out);
    assert_eq!(delivered.len(), 2002);
    let of_key: Vec<(usize, &str)> = delivered
        .iter()
        .enumerate()
        .filter(|(_, l)| l["key"]["id"] == "1")
        .map(|(i, l)| (i, l["verb"].as_str().unwrap()))
        .collect();
    assert_eq!(
        of_key.iter().map(|(_, v)| *v).collect::<Vec<_>>(),
        ["Update", "Delete"]
    );
    assert!(
        of_key[1].0 < 1100,
        "the urgent Delete came {}th of 2002",
        of_key[1].0 + 1
    );
    // Two pollers: each key's events in order, each once.
    std::fs::remove_file(&out).unwrap();
    insert(vec![event("id=1", "Update", 5), event("id=2", "Update", 5)]);
    insert(
        (3..1003)
            .map(|i| event(&format!("id={}", i % 50), "Update", 0))
            .collect(),
    );
    insert(vec![event("id=1", "Delete", 0), event("id=2", "Delete", 0)]);
    let a = env.spawn(&["drain"]);
    let b = env.spawn(&["drain"]);
    for mut child in [a, b] {
        let mut said = String::new();
        if let Some(mut stderr) = child.stderr.take() {
            std::io::Read::read_to_string(&mut stderr, &mut said).unwrap();
        }
        assert_eq!(child.wait().unwrap().code(), Some(0), "{said}");
    }
    env.run_ok(&["drain"], 0);
    let delivered = lines(&out);
    let mut seen = HashSet::new();
    let mut last: HashMap<String, i64> = HashMap::new();
    for line in &delivered {
        let id = line["event_id"].as_i64().unwrap();
        assert!(seen.insert(id), "event {id} twice");
        let key = line["key"]["id"].as_str().unwrap().to_string();
        if let Some(previous) = last.insert(key.clone(), id) {
            assert!(previous < id, "key {key}: {id} after {previous}");
        }
    }
    assert_eq!(delivered.len(), 1004);
}

/// Every candidate of a claim behind an earlier, lower-priority event of its key (a rule that
/// makes some updates urgent): the claim takes those along, and drain delivers everything.
/// (Before, such a claim took nothing, and drain stopped with the events still ready.)
pub fn urgent_events_behind_lower_priorities_do_not_stall_a_claim(backend: Backend) {
    let Some(env) = Env::new(backend) else { return };
    env.db
        .execute("CREATE TABLE item (id int PRIMARY KEY, status int)");
    env.config(
        "batch_size = 7",
        "[[object]]\nname = \"Item\"\ntable = \"item\"\npriority = 6\n\
         [[object.rule]]\non = \"update\"\nwhen = \"NEW.status % 2 = 0\"\npriority = 0\n",
    );
    let out = env.file_connector("out");
    env.run_ok(&["install-triggers"], 0);
    let rows: Vec<String> = (0..30).map(|i| format!("({i}, 1)")).collect();
    env.db
        .execute(&format!("INSERT INTO item VALUES {}", rows.join(", ")));
    for _ in 0..8 {
        env.db.execute("UPDATE item SET status = status + 1");
    }
    env.run_ok(&["drain"], 0);
    assert_eq!(env.db.count("SELECT count(*) FROM {events}"), 0);
    let delivered = lines(&out);
    assert_eq!(delivered.len(), 270);
    let mut last: HashMap<String, i64> = HashMap::new();
    for line in &delivered {
        let id = line["event_id"].as_i64().unwrap();
        let key = line["key"]["id"].as_str().unwrap().to_string();
        if let Some(previous) = last.insert(key.clone(), id) {
            assert!(previous < id, "key {key}: {id} after {previous}");
        }
    }
}

/// A claim made while this poller delivers an event that others of its key are held behind (its
/// retry, the one claimed ahead meanwhile) takes no later event of that key: the held ones come
/// first. (Before, the held events were invisible to the claim, which took the key's next ready
/// event into the batch claimed ahead, and it reached every connector before them: found by
/// scripts/soak.sh, with an HTTP receiver answering 500 to a few requests.)
pub fn a_claim_ahead_does_not_pass_events_held_behind_its_own_retry(backend: Backend) {
    let Some(env) = Env::new(backend) else { return };
    env.config("batch_size = 50", "[[object]]\nname = \"Doc\"\n");
    env.file_connector("out");
    env.run_ok(&["install-triggers"], 0);
    let insert = |key: &str| {
        env.db.execute(&format!(
            "INSERT INTO {{events}} (object_name, object_verb, object_key, payload)
             VALUES ('Doc', 'Update', '{key}', '{{\"k\": 1}}')"
        ))
    };
    let config = trigpoll::config::Config::load(&env.config_path()).unwrap();
    let mut store = trigpoll::store::open(&config).unwrap();
    // The retry of id=1's first event, claimed by this poller; its second event held behind it.
    insert("id=1");
    let retried: Vec<i64> = store
        .claim(10)
        .unwrap()
        .iter()
        .map(|e| e.event_id)
        .collect();
    assert_eq!(retried.len(), 1);
    insert("id=1");
    env.db.execute(&format!(
        "UPDATE {{events}} SET waiting_for = {} WHERE event_id > {}",
        retried[0], retried[0]
    ));
    // The key's next event, and another key's, ready.
    insert("id=1");
    insert("id=2");
    let mut ahead = store.another_connection().unwrap();
    let claimed: Vec<String> = ahead
        .claim(10)
        .unwrap()
        .iter()
        .map(|e| e.object_key.clone())
        .collect();
    assert_eq!(claimed, ["id=2"]);
}

/// An urgent event behind a retried one that others of its key are held behind (the soak with
/// urgent events saw it): the claim inherits the retried event, and the key's later events
/// wait behind it with the held ones, not delivered before them.
pub fn an_inherited_retry_keeps_its_held_events_first(backend: Backend) {
    let Some(env) = Env::new(backend) else { return };
    env.config("batch_size = 50", "[[object]]\nname = \"Doc\"\n");
    env.file_connector("out");
    env.run_ok(&["install-triggers"], 0);
    let insert = |priority: i32| {
        env.db.execute(&format!(
            "INSERT INTO {{events}} (object_name, object_verb, object_key, event_priority, payload)
             VALUES ('Doc', 'Update', 'id=1', {priority}, '{{\"k\": 1}}')"
        ))
    };
    // In id order (a claim returns its candidates by priority first).
    let ids = |events: Vec<trigpoll::event::Event>| -> Vec<i64> {
        let mut ids: Vec<i64> = events.iter().map(|e| e.event_id).collect();
        ids.sort_unstable();
        ids
    };
    let config = trigpoll::config::Config::load(&env.config_path()).unwrap();
    let mut store = trigpoll::store::open(&config).unwrap();
    // The first event, due for its retry, with the second held behind it.
    insert(5);
    insert(5);
    let first = env.db.count("SELECT min(event_id) FROM {events}");
    env.db.execute(&format!(
        "UPDATE {{events}} SET waiting_for = {first} WHERE event_id > {first}"
    ));
    // Then another event of the key, and an urgent one: the only candidate of a claim of one.
    insert(5);
    insert(0);
    assert_eq!(ids(store.claim(1).unwrap()), [first]);
    // Delivered, it lets the rest go, in order.
    store
        .finish(&trigpoll::event::Settlement {
            complete: vec![first],
            ..Default::default()
        })
        .unwrap();
    assert_eq!(
        ids(store.claim(10).unwrap()),
        [first + 1, first + 2, first + 3]
    );
}
