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
            assert!(
                before < id,
                "{key}: event {id} after {before}: {delivered:?}"
            );
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
