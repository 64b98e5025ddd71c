//! Event rules (`[[object.rule]]`, `[[object.child.rule]]`): Infranet's event_code.txt, the
//! first rule whose condition holds choosing a change's verb, priority and comment, or no event.

use std::collections::HashMap;

use serde_json::{json, Value};

use crate::common::{lines, stderr, stdout, Backend, Env};

const ACCOUNT: &str = "
CREATE TABLE account (account_id int PRIMARY KEY, status int, name {text}, balance {dec});
CREATE TABLE contact (contact_id int PRIMARY KEY, account_id int, program {text},
    last_name {text});
";

/// Infranet's account example, translated: a status change to 0 is the account's creation, to
/// 10100 and its kin a status update; changes of the internal account make no event; a delete
/// closes the account.
const ACCOUNT_RULES: &str = r#"
[[object]]
name = "Account"
table = "account"
priority = 3

[[object.rule]]
on = "update"
when = "NEW.status = 0 AND OLD.status <> 0"
verb = "Create"
priority = 1
comment = "Account Creation"

[[object.rule]]
on = "update"
when = "NEW.status <> OLD.status AND NEW.status IN (10100, 10102, 10103)"
priority = 1
comment = "Status Updated"

[[object.rule]]
on = ["update", "delete"]
when = "OLD.name = 'internal'"
skip = true

[[object.rule]]
on = "delete"
verb = "Close"
comment = "Account closed"
"#;

/// An environment with the account tables, `objects` installed and a file connector `out`.
fn accounts(backend: Backend, objects: &str) -> Option<(Env, std::path::PathBuf)> {
    let env = Env::new(backend)?;
    env.db.execute(ACCOUNT);
    env.config("", objects);
    let out = env.file_connector("out");
    env.run_ok(&["install-triggers"], 0);
    Some((env, out))
}

/// The events in the event table: verb, key, priority, comment, action.
fn events(env: &Env) -> Vec<[Option<String>; 5]> {
    env.db
        .query(
            "SELECT object_verb, object_key, event_priority, event_comment, event_action \
             FROM {events} ORDER BY event_id",
        )
        .into_iter()
        .map(|r| <[Option<String>; 5]>::try_from(r).expect("five columns"))
        .collect()
}

fn event(
    verb: &str,
    key: &str,
    priority: i32,
    comment: Option<&str>,
    action: Option<&str>,
) -> [Option<String>; 5] {
    [
        Some(verb.to_string()),
        Some(key.to_string()),
        Some(priority.to_string()),
        comment.map(str::to_string),
        action.map(str::to_string),
    ]
}

/// Each key's events reach the connector in event-id order, whatever their priorities.
fn in_key_order(delivered: &[Value]) {
    let mut last: HashMap<String, i64> = HashMap::new();
    for d in delivered {
        let key = format!("{}:{}", d["object"], d["key"]);
        let id = d["event_id"].as_i64().unwrap();
        if let Some(before) = last.insert(key.clone(), id) {
            assert!(before < id, "{key}: event {id} delivered after {before}");
        }
    }
}

/// The first rule whose condition holds decides (a later one that also holds does not); a
/// rule with `skip` makes no event; a change no rule matches makes the event it makes without
/// rules; a key change is the Delete and the Create, each chosen by its action's rules. The
/// poller delivers a rule's own verb of a delete with the image, and every event with its
/// comment, each key in event-id order whatever the priorities.
pub fn the_first_matching_rule_decides_verb_priority_and_comment(backend: Backend) {
    let Some((env, out)) = accounts(backend, ACCOUNT_RULES) else {
        return;
    };
    env.db.execute(
        "INSERT INTO account VALUES (1, 5, 'a', 1.00), (2, 5, 'internal', 2.00), (3, 5, 'c', 3.00);
         UPDATE account SET status = 0 WHERE account_id = 1;
         UPDATE account SET status = 10100 WHERE account_id = 2;
         UPDATE account SET balance = 5.00 WHERE account_id = 2;
         UPDATE account SET balance = 6.00 WHERE account_id = 3;
         UPDATE account SET status = 0 WHERE account_id = 1",
    );
    let first = vec![
        event("Create", "account_id=1", 3, None, None),
        event("Create", "account_id=2", 3, None, None),
        event("Create", "account_id=3", 3, None, None),
        event(
            "Create",
            "account_id=1",
            1,
            Some("Account Creation"),
            Some("update"),
        ),
        event(
            "Update",
            "account_id=2",
            1,
            Some("Status Updated"),
            Some("update"),
        ),
        event("Update", "account_id=3", 3, None, Some("update")),
    ];
    assert_eq!(events(&env), first);
    env.run_ok(&["drain"], 0);
    let delivered = lines(&out);
    assert_eq!(delivered.len(), 6);
    in_key_order(&delivered);
    let created = delivered
        .iter()
        .find(|d| d["comment"] == "Account Creation")
        .unwrap();
    assert_eq!(created["verb"], "Create");
    assert_eq!(created["priority"], 1);
    assert_eq!(created["attributes"]["status"], 0);
    assert!(delivered
        .iter()
        .filter(|d| d["priority"] == 3)
        .all(|d| d["comment"] == Value::Null && d.as_object().unwrap().contains_key("comment")));
    let archived = env.db.query(
        "SELECT object_verb, event_comment, event_action FROM {archive} \
         WHERE event_comment IS NOT NULL ORDER BY event_id",
    );
    assert_eq!(
        archived,
        [
            vec![
                Some("Create".into()),
                Some("Account Creation".into()),
                Some("update".into())
            ],
            vec![
                Some("Update".into()),
                Some("Status Updated".into()),
                Some("update".into())
            ],
        ]
    );

    env.db.execute(
        "DELETE FROM account WHERE account_id = 2;
         DELETE FROM account WHERE account_id = 3;
         UPDATE account SET account_id = 4 WHERE account_id = 1",
    );
    assert_eq!(
        events(&env),
        [
            event(
                "Close",
                "account_id=3",
                3,
                Some("Account closed"),
                Some("delete")
            ),
            event(
                "Close",
                "account_id=1",
                3,
                Some("Account closed"),
                Some("delete")
            ),
            event("Create", "account_id=4", 3, None, None),
        ]
    );
    env.run_ok(&["drain"], 0);
    let delivered = lines(&out);
    assert_eq!(delivered.len(), 9);
    let closed: Vec<&Value> = delivered.iter().filter(|d| d["verb"] == "Close").collect();
    assert_eq!(closed.len(), 2);
    // The rows are gone: a delete's image is what they carry.
    let image = &closed[0]["attributes"];
    assert_eq!(
        (&image["account_id"], &image["status"], &image["name"]),
        (&json!(3), &json!(5), &json!("c"))
    );
    assert_eq!(image["balance"].to_string(), "6.00");
    assert_eq!(closed[1]["attributes"]["status"], 0);
    assert!(closed.iter().all(|d| d["comment"] == "Account closed"));
    assert_eq!(delivered[8]["verb"], "Create");
    assert_eq!(delivered[8]["key"], json!({"account_id": "4"}));
    assert_eq!(
        env.db
            .count("SELECT count(*) FROM {archive} WHERE event_status = 1"),
        9,
        "every event sent"
    );
}

/// Child rules choose the parent's event for a child row's change (Infranet's contacts): a new
/// contact, a contact updated by a given program, a contact deleted; other contact updates make
/// none, and a change no rule matches the parent's plain Update.
pub fn child_rules_choose_the_parents_event(backend: Backend) {
    let objects = r#"
[[object]]
name = "Account"
table = "account"
priority = 3

[[object.child]]
name = "contacts"
table = "contact"
parent_keys = ["account_id"]

[[object.child.rule]]
on = "create"
priority = 1
comment = "new contact"

[[object.child.rule]]
on = "update"
when = "NEW.program = 'Customer Mngmt. Event Log'"
priority = 2
comment = "contact_update"

[[object.child.rule]]
on = "update"
skip = true

[[object.child.rule]]
on = "delete"
when = "OLD.program <> 'Automatic Account Creation'"
verb = "ContactDeleted"
priority = 2
comment = "contact_delete"
"#;
    let Some((env, out)) = accounts(backend, objects) else {
        return;
    };
    env.db.execute(
        "INSERT INTO account VALUES (1, 0, 'a', 0), (2, 0, 'b', 0);
         INSERT INTO contact VALUES (10, 1, 'Admin Manager', 'x'),
             (11, 1, 'Automatic Account Creation', 'y');
         UPDATE contact SET last_name = 'z' WHERE contact_id = 10;
         UPDATE contact SET program = 'Customer Mngmt. Event Log' WHERE contact_id = 10;
         UPDATE contact SET account_id = 2, last_name = 'moved' WHERE contact_id = 10;
         DELETE FROM contact WHERE contact_id = 11",
    );
    let update = |key: &str, priority, comment: Option<&str>| {
        event("Update", key, priority, comment, Some("update"))
    };
    // The moved row's two events are written by one statement, in no promised order.
    let mut expected = vec![
        event("Create", "account_id=1", 3, None, None),
        event("Create", "account_id=2", 3, None, None),
        update("account_id=1", 1, Some("new contact")),
        update("account_id=1", 1, Some("new contact")),
        update("account_id=1", 2, Some("contact_update")),
        // Moved to another account: both accounts changed, by the same rule.
        update("account_id=1", 2, Some("contact_update")),
        update("account_id=2", 2, Some("contact_update")),
        update("account_id=1", 3, None),
    ];
    let mut written = events(&env);
    written.sort();
    expected.sort();
    assert_eq!(written, expected);
    env.db.execute("DELETE FROM contact WHERE contact_id = 10");
    env.run_ok(&["drain"], 0);
    let delivered = lines(&out);
    assert_eq!(delivered.len(), 9);
    in_key_order(&delivered);
    let last = delivered
        .iter()
        .find(|d| d["verb"] == "ContactDeleted")
        .unwrap();
    assert_eq!(
        (&last["verb"], &last["priority"], &last["comment"]),
        (
            &json!("ContactDeleted"),
            &json!(2),
            &json!("contact_delete")
        )
    );
    assert_eq!(last["key"], json!({"account_id": "2"}));
    // The parent's row, fetched: a child's change is no delete of it.
    assert_eq!(last["attributes"]["name"], "b");
    assert_eq!(last["attributes"]["contacts"], json!([]));
}

/// A rule's condition the database refuses makes install-triggers exit 2 naming the object (and
/// child), the rule, its action and its verb, with nothing installed; `--dry-run` shows the
/// rules in the SQL; a changed rule makes the trigger stale until installed again.
pub fn rules_are_checked_shown_and_part_of_the_fingerprint(backend: Backend) {
    let Some(env) = Env::new(backend) else { return };
    env.db.execute(ACCOUNT);
    env.file_connector("out");
    let objects = |account: &str, contact: &str| {
        format!(
            "[[object]]\nname = \"Account\"\ntable = \"account\"\n\
             [[object.rule]]\non = \"update\"\nwhen = \"NEW.status = 1\"\nskip = true\n\
             [[object.rule]]\non = [\"update\", \"delete\"]\nwhen = \"{account}\"\nverb = \"Close\"\ncomment = \"it's closed\"\n\
             [[object.child]]\nname = \"contacts\"\ntable = \"contact\"\nparent_keys = [\"account_id\"]\n\
             [[object.child.rule]]\non = \"delete\"\nwhen = \"{contact}\"\n"
        )
    };
    env.config("", &objects("NEW.status = 9", "OLD.no_such_column = 1"));
    let out = env.run_ok(&["install-triggers"], 2);
    let message = stderr(&out);
    assert!(
        message.contains("object Account: rule[1].when (on delete, verb Close): the database refuses the condition")
            && message.contains("object Account, child contacts: rule[0].when (on delete, verb Update): the database refuses the condition")
            && message.contains("no_such_column")
            && !message.contains("(on update, verb Close)"),
        "{message}"
    );
    let events_table = env.db.try_execute("SELECT count(*) FROM {events}");
    assert!(
        events_table.is_err() || env.db.count("SELECT count(*) FROM {events}") == 0,
        "something was installed"
    );
    env.db.execute("INSERT INTO account VALUES (1, 0, 'a', 0)");
    assert!(
        env.db.try_execute("SELECT count(*) FROM {events}").is_err()
            || env.db.count("SELECT count(*) FROM {events}") == 0
    );

    env.config("", &objects("OLD.status = 9", "OLD.program = 'x'"));
    let dry = stdout(&env.run_ok(&["install-triggers", "--dry-run"], 0));
    assert!(
        dry.contains("trigpoll_rule") && dry.contains("'Close'") && dry.contains("'it''s closed'"),
        "{dry}"
    );
    env.run_ok(&["install-triggers"], 0);
    let status = stdout(&env.run_ok(&["status"], 0));
    assert!(!status.contains("stale"), "{status}");
    env.config("", &objects("OLD.status = 1", "OLD.program = 'x'"));
    let status = stdout(&env.run_ok(&["status"], 0));
    assert!(status.contains("stale"), "{status}");
    env.run_ok(&["install-triggers"], 0);
    env.db.execute(
        "UPDATE account SET status = 8 WHERE account_id = 1;
         UPDATE account SET status = 1 WHERE account_id = 1;
         DELETE FROM account",
    );
    assert_eq!(
        events(&env),
        [
            event("Update", "account_id=1", 0, None, Some("update")),
            event(
                "Close",
                "account_id=1",
                0,
                Some("it's closed"),
                Some("delete")
            ),
        ]
    );
}

/// A rule's verb is a verb like any other: subscribed by name (`Account.Close`, `*.Close`,
/// `Account.*`), in `status`'s backlog by verb, in the metrics' labels, chosen by `replay
/// --verb` (the replay keeping its comment and its delete image), and never folded by
/// `coalesce`, which folds only the Updates that updates make.
pub fn custom_verbs_are_subscribed_counted_replayed_and_not_coalesced(backend: Backend) {
    let objects = ACCOUNT_RULES.replace("priority = 3\n", "priority = 3\ncoalesce = true\n");
    let Some((env, all)) = accounts(backend, &objects) else {
        return;
    };
    let file = |id: &str, pattern: &str| {
        env.connector(
            id,
            &format!(
                "subscribe = [\"{pattern}\"]\n[sink]\ntype = \"file\"\npath = \"../{id}.ndjson\""
            ),
        );
        env.path(&format!("{id}.ndjson"))
    };
    let close = file("close", "Account.Close");
    let any_close = file("any_close", "*.Close");
    let account = file("account", "Account.*");
    let deletes = file("deletes", "Account.Delete");
    env.db.execute(
        "INSERT INTO account VALUES (1, 5, 'a', 1.00), (2, 5, 'b', 2.00);
         UPDATE account SET balance = 2.00 WHERE account_id = 1;
         UPDATE account SET balance = 3.00 WHERE account_id = 1;
         UPDATE account SET status = 0 WHERE account_id = 1;
         UPDATE account SET balance = 4.00 WHERE account_id = 1;
         DELETE FROM account WHERE account_id = 2",
    );
    let status: Value =
        serde_json::from_str(&stdout(&env.run_ok(&["status", "--json"], 0))).unwrap();
    let backlog: Vec<(String, String, i64, i64)> = status["backlog"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["object"].as_str().unwrap().to_string(),
                b["verb"].as_str().unwrap().to_string(),
                b["priority"].as_i64().unwrap(),
                b["ready"].as_i64().unwrap(),
            )
        })
        .collect();
    let row =
        |verb: &str, priority, ready| ("Account".to_string(), verb.to_string(), priority, ready);
    assert_eq!(
        backlog,
        [
            row("Create", 1, 1),
            row("Close", 3, 1),
            row("Create", 3, 2),
            row("Update", 3, 3)
        ],
        "{status}"
    );
    let text = stdout(&env.run_ok(&["status"], 0));
    assert!(text.contains("Close"), "{text}");

    env.run_ok(&["drain"], 0);
    let verbs = |path: &std::path::Path| -> Vec<String> {
        lines(path)
            .iter()
            .map(|l| {
                format!(
                    "{}.{}",
                    l["key"]["account_id"].as_str().unwrap(),
                    l["verb"].as_str().unwrap()
                )
            })
            .collect()
    };
    assert_eq!(verbs(&close), ["2.Close"]);
    assert_eq!(verbs(&any_close), ["2.Close"]);
    assert!(verbs(&deletes).is_empty(), "{:?}", verbs(&deletes));
    // Key 1: the run of two Updates folds into its last; the Create a rule made out of an
    // update ends the run, and the Update after it is delivered on its own.
    let key_one: Vec<String> = verbs(&account)
        .into_iter()
        .filter(|v| v.starts_with("1."))
        .collect();
    assert_eq!(key_one, ["1.Create", "1.Update", "1.Create", "1.Update"]);
    // Account 2's Create found its row gone (not-found): the other six went out.
    assert_eq!(
        verbs(&all),
        ["1.Create", "1.Update", "1.Create", "1.Update", "2.Close"]
    );
    assert_eq!(
        env.db.count(
            "SELECT count(*) FROM {archive} WHERE connector_id = 'account' AND event_description LIKE 'coalesced into event %'"
        ),
        1
    );

    let listed = stdout(&env.run_ok(&["replay", "--verb", "Close", "--dry-run"], 0));
    assert_eq!(listed.lines().count(), 4, "one per connector: {listed}");
    env.run_ok(&["replay", "--verb", "Close", "--connector", "close"], 0);
    assert_eq!(
        events(&env),
        [event(
            "Close",
            "account_id=2",
            3,
            Some("Account closed"),
            Some("delete")
        )]
    );
    let port = crate::common::free_port();
    let mut poll = env.spawn(&[
        "poll",
        "--interval",
        "200ms",
        "--metrics",
        &format!("127.0.0.1:{port}"),
    ]);
    assert!(crate::conformance::eventually(
        std::time::Duration::from_secs(60),
        || lines(&close).len() == 2
    ));
    let replayed = &lines(&close)[1];
    assert_eq!(replayed["comment"], "Account closed");
    assert_eq!(replayed["attributes"]["name"], "b", "the delete's image");
    assert!(replayed["replay_of"].is_i64());
    let labels = [
        ("object", "Account"),
        ("verb", "Close"),
        ("connector", "close"),
        ("outcome", "sent"),
    ];
    let mut last = String::new();
    let counted = crate::conformance::eventually(std::time::Duration::from_secs(15), || {
        let Some((text, scrape)) = crate::conformance::operations::scrape(port) else {
            return false;
        };
        last = text;
        crate::conformance::operations::sample(&scrape, "trigpoll_events_total", &labels)
            == Some(1.0)
    });
    assert!(counted, "{last}");
    poll.kill().unwrap();
}

/// Tables made before `event_action` and `event_comment` existed, with events and archive rows
/// in them: the pollers, `status` and `check --database` ask for install-triggers, which adds
/// the columns in place; nothing is lost, and rules work from then on.
pub fn tables_of_an_earlier_version_are_upgraded_with_their_events(backend: Backend) {
    let plain = "[[object]]\nname = \"Account\"\ntable = \"account\"\n";
    let Some((env, out)) = accounts(backend, plain) else {
        return;
    };
    env.db
        .execute("INSERT INTO account VALUES (1, 5, 'a', 1.00)");
    env.run_ok(&["drain"], 0);
    for table in ["{events}", "{archive}"] {
        let drop = match backend {
            Backend::Sqlite => format!(
                "ALTER TABLE {table} DROP COLUMN event_action; ALTER TABLE {table} DROP COLUMN event_comment"
            ),
            _ => format!("ALTER TABLE {table} DROP COLUMN event_action, DROP COLUMN event_comment"),
        };
        env.db.execute(&drop);
    }
    // The triggers of the earlier version keep capturing.
    env.db.execute(
        "INSERT INTO account VALUES (2, 5, 'b', 2.00);
         UPDATE account SET status = 6 WHERE account_id = 1",
    );
    for (args, code) in [(&["status"][..], 2), (&["drain"][..], 2)] {
        let message = stderr(&env.run_ok(args, code));
        assert!(
            message.contains("made by an earlier trigpoll") && message.contains("install-triggers"),
            "{args:?}: {message}"
        );
    }
    let check = stdout(&env.run_ok(&["check", "--database"], 1));
    assert!(
        check.contains("was made by an earlier trigpoll; run install-triggers"),
        "{check}"
    );
    env.config("", ACCOUNT_RULES);
    let dry = stdout(&env.run_ok(&["install-triggers", "--dry-run"], 0));
    assert!(
        dry.contains("-- upgrade the event table")
            && dry.contains("-- upgrade the archive table")
            && dry.contains("add event_action and event_comment (its rows stay)"),
        "{dry}"
    );
    env.run_ok(&["install-triggers"], 0);
    let again = stdout(&env.run_ok(&["install-triggers", "--dry-run"], 0));
    assert_eq!(again, "", "a second install would change things");
    env.run_ok(&["check", "--database"], 0);
    assert_eq!(
        events(&env),
        [
            event("Create", "account_id=2", 0, None, None),
            event("Update", "account_id=1", 0, None, None),
        ]
    );
    env.db
        .execute("UPDATE account SET status = 0 WHERE account_id = 2");
    env.run_ok(&["drain"], 0);
    let delivered = lines(&out);
    let seen: Vec<(String, Value)> = delivered
        .iter()
        .map(|d| {
            (
                d["verb"].as_str().unwrap().to_string(),
                d["comment"].clone(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("Create".to_string(), Value::Null),
            ("Create".to_string(), Value::Null),
            ("Update".to_string(), Value::Null),
            ("Create".to_string(), json!("Account Creation")),
        ]
    );
    assert_eq!(env.db.count("SELECT count(*) FROM {archive}"), 4);
}

/// Rules give one key's events different priorities, a later one often a higher: each key's
/// events still reach the connector in event-id order, once, with two drains side by side. (A
/// claim takes an event only with the earlier events of its key, so the batches are as large as
/// the backlog here: a candidate whose earlier events are not candidates waits for them.)
pub fn a_keys_events_of_different_priorities_keep_its_order(backend: Backend) {
    let objects = r#"
[[object]]
name = "Account"
table = "account"
priority = 6

[[object.rule]]
on = "update"
when = "NEW.status IN (2, 4, 6, 8)"
priority = 0
comment = "even"
"#;
    let Some(env) = Env::new(backend) else { return };
    env.db.execute(ACCOUNT);
    env.config("", objects);
    let receiver = crate::common::receiver::Receiver::start(|_| (200, None));
    env.connector(
        "hook",
        &format!(
            "subscribe = [\"*.*\"]\n[sink]\ntype = \"http\"\nurl = \"{}\"\nsecret = \"k\"\nconcurrency = 8",
            receiver.url
        ),
    );
    env.run_ok(&["install-triggers"], 0);
    let keys = 30;
    let rows: Vec<String> = (0..keys).map(|k| format!("({k}, 1, 'a', 0)")).collect();
    env.db
        .execute(&format!("INSERT INTO account VALUES {}", rows.join(", ")));
    for _ in 0..8 {
        env.db.execute("UPDATE account SET status = status + 1");
    }
    let total = env.db.count("SELECT count(*) FROM {events}");
    assert_eq!(total, keys * 9);
    assert_eq!(
        env.db
            .count("SELECT count(*) FROM {events} WHERE event_priority = 0"),
        keys * 4
    );
    let a = env.spawn(&["drain"]);
    let b = env.spawn(&["drain"]);
    for mut child in [a, b] {
        assert_eq!(child.wait().unwrap().code(), Some(0));
    }
    env.run_ok(&["drain"], 0);
    let delivered: Vec<Value> = receiver.requests().iter().map(|r| r.json()).collect();
    assert_eq!(delivered.len() as i64, total);
    let ids: std::collections::HashSet<i64> = delivered
        .iter()
        .map(|d| d["event_id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids.len() as i64, total, "an event delivered twice");
    in_key_order(&delivered);
}

/// `[object.when]` decides first whether a change is captured at all; the rules then choose
/// among the changes it lets through (here of a multi-row statement, which PostgreSQL captures
/// by statement).
pub fn when_decides_before_the_rules(backend: Backend) {
    let objects = r#"
[[object]]
name = "Account"
table = "account"

[object.when]
create = "NEW.status <> 7"
update = "NEW.status <> 7"
delete = "OLD.status <> 7"

[[object.rule]]
on = "create"
when = "NEW.name = 'vip'"
priority = 1
comment = "vip"

[[object.rule]]
on = "delete"
when = "OLD.name = 'vip'"
priority = 1
comment = "vip"

[[object.rule]]
on = "update"
when = "NEW.status > 7"
verb = "Escalate"
"#;
    let Some((env, _)) = accounts(backend, objects) else {
        return;
    };
    env.db.execute(
        "INSERT INTO account VALUES (1, 7, 'vip', 0), (2, 1, 'vip', 0), (3, 1, 'x', 0);
         UPDATE account SET status = 8 WHERE account_id IN (2, 3);
         UPDATE account SET status = 7 WHERE account_id = 3;
         DELETE FROM account WHERE account_id IN (1, 2, 3)",
    );
    assert_eq!(
        events(&env),
        [
            event("Create", "account_id=2", 1, Some("vip"), Some("create")),
            event("Create", "account_id=3", 0, None, Some("create")),
            event("Escalate", "account_id=2", 0, None, Some("update")),
            event("Escalate", "account_id=3", 0, None, Some("update")),
            event("Delete", "account_id=2", 1, Some("vip"), Some("delete")),
        ]
    );
}
