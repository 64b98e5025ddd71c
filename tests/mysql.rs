//! The conformance suite on MySQL / MariaDB, plus what only MySQL does.

mod common;
mod conformance;

use common::Backend;

const MY: Backend = Backend::Mysql;

conformance_tests!(MY);

use common::{lines, Env};
use serde_json::json;

fn events(env: &Env) -> Vec<Vec<Option<String>>> {
    env.db
        .query("SELECT object_verb, object_key FROM {events} ORDER BY event_id")
}

fn trigger_names(env: &Env, table: &str) -> Vec<String> {
    env.db.column(&format!(
        "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS
         WHERE TRIGGER_SCHEMA = DATABASE() AND EVENT_OBJECT_TABLE = '{table}'
         ORDER BY ACTION_ORDER"
    ))
}

#[test]
fn the_applications_own_triggers_keep_working() {
    let Some(env) = Env::new(MY) else { return };
    env.db.execute(
        "CREATE TABLE item (item_id int PRIMARY KEY, name {text});
         CREATE TABLE audit (item_id int, what {text});
         CREATE TRIGGER app_audit AFTER INSERT ON item FOR EACH ROW
             INSERT INTO audit VALUES (NEW.item_id, 'created');
         CREATE TRIGGER app_audit_delete AFTER DELETE ON item FOR EACH ROW
             INSERT INTO audit VALUES (OLD.item_id, 'deleted')",
    );
    let objects = |priority: i32| {
        format!("[[object]]\nname = \"Item\"\ntable = \"item\"\npriority = {priority}\n")
    };
    env.config("", &objects(1));
    let out = env.file_connector("out");
    env.run_ok(&["install-triggers"], 0);
    env.db.execute("INSERT INTO item VALUES (1, 'a')");
    // A changed configuration replaces trigpoll's triggers; the application's stay.
    env.config("", &objects(2));
    env.run_ok(&["install-triggers"], 0);
    env.db.execute("INSERT INTO item VALUES (2, 'b')");
    env.run_ok(&["drain"], 0);
    env.db.execute("DELETE FROM item WHERE item_id = 1");
    assert_eq!(
        env.db
            .query("SELECT item_id, what FROM audit ORDER BY item_id, what"),
        [["1", "created"], ["1", "deleted"], ["2", "created"]]
            .map(|r| r.map(|v| Some(v.to_string())).to_vec())
    );
    assert_eq!(
        events(&env),
        [[Some("Delete".to_string()), Some("item_id=1".to_string())]]
    );
    env.run_ok(&["drain"], 0);
    let delivered: Vec<String> = lines(&out)
        .iter()
        .map(|l| format!("{} {} {}", l["priority"], l["verb"], l["key"]["item_id"]))
        .collect();
    assert_eq!(
        delivered,
        [
            "1 \"Create\" \"1\"",
            "2 \"Create\" \"2\"",
            "2 \"Delete\" \"1\""
        ]
    );
    env.run_ok(&["uninstall-triggers"], 0);
    assert_eq!(
        trigger_names(&env, "item"),
        ["app_audit", "app_audit_delete"]
    );
    env.db.execute("INSERT INTO item VALUES (3, 'c')");
    assert_eq!(env.db.count("SELECT count(*) FROM audit"), 4);
    assert_eq!(env.db.count("SELECT count(*) FROM {events}"), 0);
}

#[test]
fn utf8mb4_keys_and_values_round_trip() {
    let Some(env) = Env::new(MY) else { return };
    // A binary collation keeps every emoji apart; utf8mb4_general_ci would call them equal.
    env.db.execute(
        "CREATE TABLE tag (label VARCHAR(191) COLLATE utf8mb4_bin PRIMARY KEY, note {text})",
    );
    env.config("", "[[object]]\nname = \"Tag\"\ntable = \"tag\"\n");
    let out = env.file_connector("out");
    env.run_ok(&["install-triggers"], 0);
    let labels = ["🦀", "🦊", "a🦀:=%b", "日本語", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "é"];
    for label in labels {
        env.db.execute(&format!(
            "INSERT INTO tag VALUES ('{label}', 'note {label} ✓')"
        ));
    }
    assert_eq!(
        env.db
            .scalar("SELECT object_key FROM {events} WHERE object_key LIKE '%\u{1f980}%b'"),
        Some("label=a🦀%3A%3D%25b".to_string())
    );
    env.run_ok(&["drain"], 0);
    env.db.execute("UPDATE tag SET note = CONCAT(note, ' 🔁')");
    env.run_ok(&["drain"], 0);
    env.db.execute("DELETE FROM tag");
    env.run_ok(&["drain"], 0);
    let delivered = lines(&out);
    assert_eq!(delivered.len(), labels.len() * 3);
    for line in &delivered {
        let label = line["key"]["label"].as_str().unwrap();
        assert!(labels.contains(&label), "{label:?}");
        assert_eq!(line["attributes"]["label"], json!(label));
        let note = line["attributes"]["note"].as_str().unwrap();
        assert!(note.starts_with(&format!("note {label} ✓")), "{note:?}");
    }
}

#[test]
fn long_composite_keys_keep_their_order() {
    let Some(env) = Env::new(MY) else { return };
    // Keys longer than any InnoDB index (3072 bytes): the event table's per-key index must
    // not be in the way, and keys that differ only at their end must stay apart.
    env.db
        .execute("CREATE TABLE doc (a TEXT NOT NULL, b TEXT NOT NULL, n int)");
    env.config(
        "",
        "[[object]]\nname = \"Doc\"\ntable = \"doc\"\nkeys = [\"a\", \"b\"]\n",
    );
    let out = env.file_connector("out");
    env.run_ok(&["install-triggers"], 0);
    let long = |last: char| format!("{}{last}", "🦀%=".repeat(500));
    let keys = [long('x'), long('y')];
    for round in 0..3 {
        for k in &keys {
            if round == 0 {
                env.db
                    .execute(&format!("INSERT INTO doc VALUES ('{k}', '{k}', 0)"));
            } else {
                env.db.execute(&format!(
                    "UPDATE doc SET n = {round} WHERE a = '{k}' AND b = '{k}'"
                ));
            }
        }
    }
    let longest = env.db.count("SELECT MAX(LENGTH(object_key)) FROM {events}");
    assert!(longest > 3072, "object keys of {longest} bytes");
    env.run_ok(&["drain"], 0);
    let delivered = lines(&out);
    assert_eq!(delivered.len(), 6);
    for k in &keys {
        let mine: Vec<(&str, i64)> = delivered
            .iter()
            .filter(|l| l["key"]["b"] == json!(k))
            .map(|l| {
                assert_eq!(l["key"], json!({"a": k, "b": k}));
                (
                    l["verb"].as_str().unwrap(),
                    l["attributes"]["n"].as_i64().unwrap(),
                )
            })
            .collect();
        // Rows are fetched at delivery, so each event sees the latest row.
        assert_eq!(mine, [("Create", 2), ("Update", 2), ("Update", 2)]);
    }
}

#[test]
fn timestamps_are_utc_whatever_the_writers_time_zone() {
    let Some(env) = Env::new(MY) else { return };
    env.db.execute(
        "CREATE TABLE shift (shift_id int PRIMARY KEY, starts TIMESTAMP(6) NULL, day DATE,
             at DATETIME)",
    );
    env.config("", "[[object]]\nname = \"Shift\"\ntable = \"shift\"\n");
    let out = env.file_connector("out");
    env.run_ok(&["install-triggers"], 0);
    env.db.execute(
        "SET time_zone = '+05:00';
         INSERT INTO shift VALUES (1, '2026-01-01 10:00:00.5', '2026-01-01', '2026-01-01 10:00:00');
         INSERT INTO shift VALUES (2, '2026-01-01 10:00:00.5', '2026-01-01', '2026-01-01 10:00:00')",
    );
    env.run_ok(&["drain"], 0);
    // The delete's row image is made by the trigger, in the writer's session.
    env.db
        .execute("SET time_zone = '-07:00'; DELETE FROM shift WHERE shift_id = 2");
    env.run_ok(&["drain"], 0);
    let delivered = lines(&out);
    assert_eq!(delivered.len(), 3);
    for line in &delivered {
        let a = &line["attributes"];
        assert_eq!(a["starts"], json!("2026-01-01T05:00:00.500000Z"), "{line}");
        assert_eq!(a["day"], json!("2026-01-01"));
        assert_eq!(a["at"], json!("2026-01-01T10:00:00Z"));
    }
}

#[test]
fn key_values_that_do_not_fit_their_column_are_errors() {
    let Some(env) = Env::new(MY) else { return };
    env.db.execute(
        "CREATE TABLE visit (day DATE, room TINYINT, amount DECIMAL(5,2), PRIMARY KEY (day, room, amount));
         INSERT INTO visit VALUES ('2026-02-28', 7, 1.5)",
    );
    env.config("", "[[object]]\nname = \"Visit\"\ntable = \"visit\"\n");
    env.file_connector("out");
    env.run_ok(&["install-triggers"], 0);
    env.db.execute(
        "INSERT INTO {events} (object_name, object_verb, object_key) VALUES
            ('Visit', 'Update', 'day=2026-02-28:room=7:amount=1.50'),
            ('Visit', 'Update', 'day=2026-02-30:room=7:amount=1.5'),
            ('Visit', 'Update', 'day=2026-02-28:room=300:amount=1.5'),
            ('Visit', 'Update', 'day=2026-02-28:room=7:amount=12345'),
            ('Visit', 'Update', 'day=2026-02-28:room=7x:amount=1.5')",
    );
    env.run_ok(&["drain"], 3);
    let archived = env
        .db
        .query("SELECT event_status, event_description FROM {archive} ORDER BY event_id");
    let statuses: Vec<&str> = archived.iter().map(|r| r[0].as_deref().unwrap()).collect();
    assert_eq!(statuses, ["1", "-1", "-1", "-1", "-1"], "{archived:?}");
    let reason = archived[1][1].as_deref().unwrap();
    assert!(
        reason.contains("2026-02-30") && reason.contains("day"),
        "{reason}"
    );
}

#[test]
fn an_interrupted_install_is_completed_by_running_it_again() {
    let Some(env) = Env::new(MY) else { return };
    env.db.execute(conformance::HR);
    env.config("", conformance::HR_OBJECTS);
    env.file_connector("out");
    env.run_ok(&["install-triggers"], 0);
    let names = trigger_names(&env, "department");
    assert_eq!(names.len(), 3, "{names:?}");
    // As if the install had stopped after one of its statements.
    env.db.execute(&format!("DROP TRIGGER `{}`", names[2]));
    let status = env.run_ok(&["status", "--json"], 0);
    let report: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let department = report["triggers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["object"] == "Department")
        .unwrap();
    assert_eq!(department["state"], "stale", "{report}");
    env.run_ok(&["install-triggers"], 0);
    assert_eq!(trigger_names(&env, "department"), names);
    let again = env.run_ok(&["install-triggers", "--dry-run"], 0);
    assert_eq!(String::from_utf8_lossy(&again.stdout), "");
    env.db
        .execute("INSERT INTO department VALUES (1, 'a'); DELETE FROM department");
    assert_eq!(
        events(&env),
        [["Create", "dept_id=1"], ["Delete", "dept_id=1"]]
            .map(|r| r.map(|v| Some(v.to_string())).to_vec())
    );
}

/// MySQL accounts for one test (accounts are global to the server), dropped when it ends.
struct Accounts {
    admin: String,
    names: Vec<String>,
}

impl Accounts {
    fn new(env: &Env, kinds: &[&str]) -> Accounts {
        let suffix = format!("{:08x}", rand::random::<u32>());
        let names: Vec<String> = kinds.iter().map(|k| format!("tp_{k}_{suffix}")).collect();
        for name in &names {
            env.db.execute(&format!("CREATE USER '{name}'@'%'"));
        }
        Accounts {
            admin: env.db.url.clone(),
            names,
        }
    }

    /// The test database's URL as `account` instead of root.
    fn url(&self, account: &str) -> String {
        self.admin.replacen("root@", &format!("{account}@"), 1)
    }
}

impl Drop for Accounts {
    fn drop(&mut self) {
        let Ok(mut c) = mysql::Conn::new(self.admin.as_str()) else {
            return;
        };
        for name in &self.names {
            let _ = mysql::prelude::Queryable::query_drop(
                &mut c,
                format!("DROP USER IF EXISTS '{name}'@'%'"),
            );
        }
    }
}

const ITEMS: &str = "[[object]]\nname = \"Item\"\ntable = \"item\"\n";

/// The triggers run as their definer (the installing user): an application account holding
/// privileges on its own tables only inserts, updates and deletes, and its changes are
/// delivered.
#[test]
fn an_application_account_with_table_privileges_only_keeps_writing() {
    let Some(env) = Env::new(MY) else { return };
    let accounts = Accounts::new(&env, &["app"]);
    let app = &accounts.names[0];
    env.db.execute(&format!(
        "CREATE TABLE item (item_id int PRIMARY KEY, name {{text}});
         GRANT SELECT, INSERT, UPDATE, DELETE ON {}.item TO '{app}'@'%'",
        env.db.name
    ));
    env.config("", ITEMS);
    let out = env.file_connector("out");
    env.run_ok(&["install-triggers"], 0);
    let mut writer = mysql::Conn::new(accounts.url(app).as_str()).unwrap();
    mysql::prelude::Queryable::query_drop(
        &mut writer,
        "INSERT INTO item VALUES (1, 'a'), (2, 'b');
         UPDATE item SET name = 'c' WHERE item_id = 1;
         DELETE FROM item WHERE item_id = 2",
    )
    .unwrap_or_else(|e| panic!("the application's write failed: {e}"));
    let mut tx = writer.start_transaction(Default::default()).unwrap();
    mysql::prelude::Queryable::query_drop(&mut tx, "INSERT INTO item VALUES (3, 'x')").unwrap();
    tx.rollback().unwrap();
    env.run_ok(&["drain"], 0);
    // Create 2 finds its row deleted; everything else reaches the connector.
    let archived = env
        .db
        .query("SELECT object_verb, object_key, event_status FROM {archive} ORDER BY event_id");
    let want = [
        ("Create", "item_id=1", "1"),
        ("Create", "item_id=2", "-3"),
        ("Update", "item_id=1", "1"),
        ("Delete", "item_id=2", "1"),
    ]
    .map(|(v, k, s)| {
        vec![
            Some(v.to_string()),
            Some(k.to_string()),
            Some(s.to_string()),
        ]
    });
    assert_eq!(archived, want);
    assert_eq!(lines(&out).len(), 3);
}

/// A poller's account without the TRIGGER privilege cannot see the triggers (MariaDB lists them
/// with NULL bodies and definers to an account that may write the table, MySQL not at all):
/// every command says so in the same words instead of panicking on the NULLs or calling the
/// triggers missing; `drain` says it once and delivers; install and uninstall refuse, naming the
/// table.
#[test]
fn a_poller_that_cannot_see_triggers_says_so_once() {
    let Some(env) = Env::new(MY) else { return };
    let accounts = Accounts::new(&env, &["poller"]);
    let poller = &accounts.names[0];
    let schema = env.db.event_schema().unwrap();
    env.db.execute(&format!(
        "CREATE TABLE item (item_id int PRIMARY KEY, name {{text}});
         CREATE TABLE other (other_id int PRIMARY KEY);
         GRANT SELECT, INSERT, UPDATE, DELETE ON {db}.item TO '{poller}'@'%';
         GRANT SELECT ON {db}.other TO '{poller}'@'%'",
        db = env.db.name
    ));
    let objects = format!("{ITEMS}\n[[object]]\nname = \"Other\"\ntable = \"other\"\n");
    env.config("", &objects);
    let out = env.file_connector("out");
    env.run_ok(&["install-triggers"], 0);
    env.db.execute(&format!(
        "GRANT SELECT, INSERT, UPDATE, DELETE ON {schema}.* TO '{poller}'@'%';
         INSERT INTO item VALUES (1, 'a')"
    ));
    env.config_with_url(&accounts.url(poller), "", &objects);
    let said = "not visible to this account (it lacks the TRIGGER privilege on";
    let drained = env
        .command(&["drain"])
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    let log = common::stderr(&drained);
    assert_eq!(drained.status.code(), Some(0), "{log}");
    assert_eq!(log.matches(said).count(), 1, "{log}");
    assert!(!log.contains("not as configured"), "{log}");
    assert!(!log.contains("panicked"), "{log}");
    assert_eq!(lines(&out).len(), 1);
    let status = env.run_ok(&["status"], 0);
    let text = common::stdout(&status);
    assert_eq!(text.matches(said).count(), 2, "{text}");
    assert!(!text.contains("missing"), "{text}");
    let checked = env.run_ok(&["check", "--database"], 0);
    let text = common::stdout(&checked);
    assert_eq!(text.matches(said).count(), 2, "{text}");
    for args in [
        &["install-triggers"][..],
        &["install-triggers", "--dry-run"],
        &["uninstall-triggers", "--dry-run"],
        &["uninstall-triggers", "--unconfigured", "--dry-run"],
    ] {
        let refused = env.run_ok(args, 2);
        let text = common::stderr(&refused);
        assert!(
            text.contains(
                "this account cannot see the triggers of item: it lacks the TRIGGER privilege"
            ),
            "{args:?}: {text}"
        );
    }
}

/// A trigger whose definer was dropped makes every write to its table fail (error 1449):
/// `status` names the definer and exits 1, and install-triggers, run by an account that
/// exists, replaces the triggers so that writes work again.
#[test]
fn status_reports_triggers_whose_definer_was_dropped() {
    let Some(env) = Env::new(MY) else { return };
    let accounts = Accounts::new(&env, &["installer"]);
    let installer = &accounts.names[0];
    let schema = env.db.event_schema().unwrap();
    env.db.execute(&format!(
        "CREATE TABLE item (item_id int PRIMARY KEY, name {{text}});
         GRANT ALL ON {db}.* TO '{installer}'@'%';
         GRANT ALL ON {schema}.* TO '{installer}'@'%'",
        db = env.db.name
    ));
    env.config_with_url(&accounts.url(installer), "", ITEMS);
    env.file_connector("out");
    env.run_ok(&["install-triggers"], 0);
    env.db.execute("INSERT INTO item VALUES (1, 'a')");

    env.db.execute(&format!("DROP USER '{installer}'@'%'"));
    let failed = env.db.try_execute("INSERT INTO item VALUES (2, 'b')");
    assert!(
        failed.as_ref().is_err_and(|e| e.contains("1449")),
        "{failed:?}"
    );
    env.config("", ITEMS);
    let out = env.run_ok(&["status"], 1);
    let text = common::stdout(&out);
    assert!(
        text.contains("BROKEN") && text.contains(&format!("definer {installer}@% does not exist")),
        "{text}"
    );
    env.run_ok(&["install-triggers"], 0);
    env.run_ok(&["status"], 0);
    env.db.execute("INSERT INTO item VALUES (2, 'b')");
    assert_eq!(events(&env).len(), 2);
}

/// SIGTERM while the batch in hand waits for a table lock (its fetch, behind `LOCK TABLES …
/// WRITE`): the statement is killed on the server, the claim goes back and drain exits 0.
#[test]
fn sigterm_kills_a_statement_waiting_for_a_lock() {
    use std::time::{Duration, Instant};
    let Some((env, _)) = conformance::hr(MY, "") else {
        return;
    };
    env.db.execute("INSERT INTO department VALUES (1, 'a')");
    let mut locker = mysql::Conn::new(env.db.url.as_str()).unwrap();
    mysql::prelude::Queryable::query_drop(&mut locker, "LOCK TABLES department WRITE").unwrap();
    let waiting = || {
        env.db.count(&format!(
            "SELECT count(*) FROM information_schema.PROCESSLIST
             WHERE DB = '{}' AND STATE LIKE '%lock%' AND INFO LIKE '%department%'
               AND ID <> CONNECTION_ID()",
            env.db.name
        ))
    };
    let mut drain = env.spawn(&["drain"]);
    assert!(conformance::eventually(
        Duration::from_secs(10),
        || waiting() == 1
    ));
    let signalled = Instant::now();
    std::process::Command::new("kill")
        .args(["-TERM", &drain.id().to_string()])
        .status()
        .unwrap();
    assert_eq!(drain.wait().unwrap().code(), Some(0));
    assert!(
        signalled.elapsed() < Duration::from_secs(15),
        "{:?}",
        signalled.elapsed()
    );
    assert_eq!(
        waiting(),
        0,
        "the server still runs the abandoned statement"
    );
    mysql::prelude::Queryable::query_drop(&mut locker, "UNLOCK TABLES").unwrap();
    assert_eq!(
        env.db
            .query("SELECT event_status, attempts, claimed_by FROM {events}"),
        [vec![Some("0".to_string()), Some("0".to_string()), None]]
    );
}

/// The statements that mark and delete a batch by its ids read the event table by its primary
/// key also when it holds only a few hundred events, as it does while a poller keeps up with its
/// application: left to its estimate, MariaDB read (and locked) every row of the table for them
/// (BENCHMARKS.md, round 8).
#[test]
fn a_batch_is_marked_and_deleted_by_the_primary_key_in_a_small_event_table() {
    let Some(env) = Env::new(MY) else { return };
    env.db
        .execute("CREATE TABLE item (id INT PRIMARY KEY, qty INT NOT NULL)");
    env.config("", "[[object]]\nname = \"Item\"\ntable = \"item\"\n");
    env.run_ok(&["install-triggers"], 0);
    let rows: Vec<String> = (1..=600)
        .map(|id| format!("('Item', 'Update', 'id={id}')"))
        .collect();
    env.db.execute(&format!(
        "INSERT INTO {{events}} (object_name, object_verb, object_key) VALUES {}",
        rows.join(", ")
    ));
    env.db.execute("ANALYZE TABLE {events}");
    let ids = env
        .db
        .column("SELECT event_id FROM {events} ORDER BY event_id LIMIT 200")
        .join(", ");
    let schema = env.db.event_schema().unwrap();
    let names = trigpoll::dialect::mysql::names(&schema, "trigpoll_event", "trigpoll_archive");
    let statements = [
        ("mark", trigpoll::dialect::mysql::mark_claimed(&names, 1)),
        (
            "delete",
            trigpoll::dialect::mysql::delete_claimed(&names, 1),
        ),
    ];
    for (what, sql) in statements {
        // EXPLAIN wants values: the ids, and a token for the other parameter.
        let sql = sql
            .replacen("IN (?)", &format!("IN ({ids})"), 1)
            .replace('?', "'t'");
        let plan = env.db.query(&format!("EXPLAIN {sql}"));
        assert_eq!(plan.len(), 1, "{what}: {plan:?}");
        // EXPLAIN's columns: id, select_type, table, type, possible_keys, key, …
        assert_eq!(
            (plan[0][3].as_deref(), plan[0][5].as_deref()),
            (Some("range"), Some("PRIMARY")),
            "{what} reads the event table by its primary key: {plan:?}"
        );
    }
}
