//! The capture settings of an object: which changes make events (no-op updates, `track`,
//! `ignore`, `when`, `ignore_users`, the session switch), what the business object carries
//! (`attributes`, `exclude_attributes`, `changes`, children), outbox objects, quoted names.

use serde_json::{json, Value};

use crate::common::{lines, stderr, stdout, Backend, Env};

const STAFF: &str = "
CREATE TABLE staff (staff_id int PRIMARY KEY, name {text}, salary {dec}, hired {ts},
    secret {text}, mod_time {ts}, dept int);
";

/// An environment with `staff` bound to the object `Staff` with `settings`, triggers installed,
/// one file connector; `extra` holds further `[[object]]`s.
fn staff(backend: Backend, settings: &str) -> Option<(Env, std::path::PathBuf)> {
    let env = Env::new(backend)?;
    env.db.execute(STAFF);
    env.config(
        "",
        &format!("[[object]]\nname = \"Staff\"\ntable = \"staff\"\n{settings}\n"),
    );
    let out = env.file_connector("out");
    env.run_ok(&["install-triggers"], 0);
    Some((env, out))
}

fn events(env: &Env) -> Vec<(String, String)> {
    env.db
        .query("SELECT object_verb, object_key FROM {events} ORDER BY event_id")
        .into_iter()
        .map(|r| (r[0].clone().unwrap(), r[1].clone().unwrap()))
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

fn delivered(out: &std::path::Path) -> Vec<Value> {
    lines(out)
}

/// An UPDATE that changes no value is not a change: no event, whatever is configured.
pub fn a_no_op_update_makes_no_event(backend: Backend) {
    let Some((env, _)) = staff(backend, "") else {
        return;
    };
    env.db.execute(
        "INSERT INTO staff (staff_id, name, salary) VALUES (1, 'a', 10.50);
         UPDATE staff SET name = name, salary = salary WHERE staff_id = 1;
         UPDATE staff SET salary = 11.50 WHERE staff_id = 1",
    );
    assert_eq!(
        events(&env),
        pairs(&[("Create", "staff_id=1"), ("Update", "staff_id=1")])
    );
}

/// `track` names the columns whose change matters; `ignore` the ones whose change alone does
/// not (4ALLPORTAL's technical fields, Calem's "Track Selected").
pub fn track_and_ignore_choose_the_changes_that_matter(backend: Backend) {
    let Some((env, _)) = staff(backend, "track = [\"name\", \"salary\"]") else {
        return;
    };
    env.db.execute(
        "INSERT INTO staff (staff_id, name, salary, dept) VALUES (1, 'a', 1, 1);
         UPDATE staff SET dept = 2 WHERE staff_id = 1;
         UPDATE staff SET salary = 2 WHERE staff_id = 1",
    );
    assert_eq!(
        events(&env),
        pairs(&[("Create", "staff_id=1"), ("Update", "staff_id=1")])
    );
    let Some((env, _)) = staff(backend, "ignore = [\"mod_time\"]") else {
        return;
    };
    env.db.execute(
        "INSERT INTO staff (staff_id, name) VALUES (1, 'a');
         UPDATE staff SET mod_time = '2026-11-22 10:00:00' WHERE staff_id = 1;
         UPDATE staff SET name = 'b', mod_time = '2026-11-22 11:00:00' WHERE staff_id = 1",
    );
    assert_eq!(
        events(&env),
        pairs(&[("Create", "staff_id=1"), ("Update", "staff_id=1")])
    );
}

/// Columns left out of the attributes never leave the database: not fetched, not in a delete
/// image, not in `changes`, and a change to them alone makes no event.
pub fn excluded_attributes_never_leave_the_database(backend: Backend) {
    let Some((env, out)) = staff(
        backend,
        "exclude_attributes = [\"secret\", \"mod_time\"]\nchanges = true",
    ) else {
        return;
    };
    env.db.execute(
        "INSERT INTO staff (staff_id, name, secret) VALUES (1, 'a', 'hush');
         UPDATE staff SET secret = 'still hush' WHERE staff_id = 1;
         UPDATE staff SET name = 'b', secret = 'more hush' WHERE staff_id = 1",
    );
    env.run_ok(&["drain"], 0);
    env.db.execute("DELETE FROM staff");
    let payloads = env
        .db
        .column("SELECT payload FROM {archive} WHERE payload IS NOT NULL UNION ALL SELECT payload FROM {events}");
    assert_eq!(
        payloads.len(),
        2,
        "the update's changes and the delete's image"
    );
    assert!(payloads.iter().all(|p| !p.contains("hush")), "{payloads:?}");
    env.run_ok(&["drain"], 0);
    let got = delivered(&out);
    assert_eq!(
        got.iter()
            .map(|l| l["verb"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["Create", "Update", "Delete"],
        "the change to `secret` alone made no event"
    );
    for line in &got {
        let text = line.to_string();
        assert!(!text.contains("hush") && !text.contains("secret"), "{text}");
        assert!(!line["attributes"]
            .as_object()
            .unwrap()
            .contains_key("mod_time"));
    }
    assert_eq!(got[2]["attributes"]["name"], json!("b"));
    assert_eq!(got[1]["changes"], json!({"name": {"old": "a", "new": "b"}}));

    // `attributes` lists what the object carries; the key always comes along.
    let Some((env, out)) = staff(backend, "attributes = [\"name\"]") else {
        return;
    };
    env.db
        .execute("INSERT INTO staff (staff_id, name, salary) VALUES (1, 'a', 5)");
    env.run_ok(&["drain"], 0);
    assert_eq!(
        delivered(&out)[0]["attributes"],
        json!({"staff_id": 1, "name": "a"})
    );
}

/// `changes = true`: an Update carries the old and new value of each changed attribute, with
/// the JSON types of `attributes`; unchanged ones are left out.
pub fn changes_carry_old_and_new_values_with_their_types(backend: Backend) {
    let Some((env, out)) = staff(backend, "changes = true") else {
        return;
    };
    env.db.execute(
        "INSERT INTO staff (staff_id, name, salary, hired, dept)
             VALUES (1, 'como', 1234.50, '2026-11-22 10:00:00.123456', 4)",
    );
    env.db.execute(
        "UPDATE staff SET salary = 2000.00, hired = '2026-11-23 08:30:00', name = NULL
         WHERE staff_id = 1",
    );
    env.run_ok(&["drain"], 0);
    let got = delivered(&out);
    assert!(got[0].get("changes").is_none(), "a Create has no changes");
    // MySQL's DATETIME(6) always has six digits.
    let hired = |time: &str| {
        let time = time.replace(' ', "T");
        match (backend, time.contains('.')) {
            (Backend::Mysql, false) => json!(time + ".000000Z"),
            _ => json!(time + "Z"),
        }
    };
    let expected: Value = serde_json::from_str(&format!(
        r#"{{"name": {{"old": "como", "new": null}},
            "salary": {{"old": 1234.50, "new": 2000.00}},
            "hired": {{"old": {}, "new": {}}}}}"#,
        hired("2026-11-22 10:00:00.123456"),
        hired("2026-11-23 08:30:00")
    ))
    .unwrap();
    assert_eq!(got[1]["changes"], expected, "{}", got[1]);
    // The decimals keep their digits.
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(text.contains("\"old\":1234.50"), "{text}");
}

/// `changes = true` on a table wider than a JSON function takes arguments (PostgreSQL's
/// `json_build_object` takes 100, a name and a value per column), with a column named `x` and a
/// long text left as it was: the changed columns, and only those, arrive; on PostgreSQL the
/// unchanged text is not written into the event. A row gone before its update is delivered is
/// not found, and its delete's image of the chosen attributes holds `x` too.
pub fn changes_of_a_table_with_many_columns(backend: Backend) {
    let Some(env) = Env::new(backend) else { return };
    let columns: Vec<String> = (1..=70)
        .map(|i| format!("c{i} int NOT NULL DEFAULT 0"))
        .collect();
    env.db.execute(&format!(
        "CREATE TABLE wide (wide_id int PRIMARY KEY, {}, x int, label {{text}}, doc {{text}},
             secret int)",
        columns.join(", ")
    ));
    env.config(
        "",
        "[[object]]\nname = \"Wide\"\ntable = \"wide\"\nchanges = true\nexclude_attributes = [\"secret\"]\n",
    );
    let out = env.file_connector("out");
    env.run_ok(&["install-triggers"], 0);
    let doc = "d".repeat(150);
    env.db.execute(&format!(
        "INSERT INTO wide (wide_id, x, doc) VALUES (1, 5, '{doc}')"
    ));
    env.db.execute(
        "UPDATE wide SET c7 = 1, c70 = 2, c33 = 0, x = 6, label = 'new' WHERE wide_id = 1",
    );
    if backend == Backend::Postgres {
        let stored = env
            .db
            .scalar("SELECT payload::text FROM {events} WHERE object_verb = 'Update'")
            .unwrap();
        assert!(!stored.contains(&doc), "{stored}");
    }
    env.run_ok(&["drain"], 0);
    // An update of a row that is gone when it is delivered finds nothing, though the
    // object carries only some of the columns.
    env.db.execute("UPDATE wide SET c1 = 1 WHERE wide_id = 1");
    env.db.execute("DELETE FROM wide WHERE wide_id = 1");
    env.run_ok(&["drain"], 0);
    assert_eq!(
        env.db.query(
            "SELECT object_verb, event_status FROM {archive} WHERE event_id > 2 ORDER BY event_id"
        ),
        [
            [Some("Update".to_string()), Some("-3".to_string())],
            [Some("Delete".to_string()), Some("1".to_string())],
        ]
    );
    let got = delivered(&out);
    assert_eq!(
        got[1]["changes"],
        json!({
            "c7": {"old": 0, "new": 1},
            "c70": {"old": 0, "new": 2},
            "x": {"old": 5, "new": 6},
            "label": {"old": null, "new": "new"},
        }),
        "{}",
        got[1]
    );
    assert_eq!(got[2]["verb"], "Delete");
    assert_eq!(got[2]["attributes"]["x"], json!(6), "{}", got[2]);
    assert_eq!(got[2]["attributes"]["doc"], json!(doc));
    assert!(got[2]["attributes"].get("secret").is_none(), "{}", got[2]);
}

/// `[object.when]`: a condition per verb over `NEW.`/`OLD.`, the same text on every backend.
pub fn when_conditions_decide_per_verb(backend: Backend) {
    let Some((env, _)) = staff(
        backend,
        "[object.when]
create = \"NEW.dept <> 0\"
update = \"NEW.dept <> 0 OR OLD.dept <> 0\"
delete = \"OLD.name <> 'keep quiet'\"",
    ) else {
        return;
    };
    env.db.execute(
        "INSERT INTO staff (staff_id, name, dept) VALUES (1, 'draft', 0), (2, 'a', 1);
         UPDATE staff SET name = 'still draft' WHERE staff_id = 1;
         UPDATE staff SET dept = 3, name = 'published' WHERE staff_id = 1;
         UPDATE staff SET name = 'keep quiet' WHERE staff_id = 2;
         DELETE FROM staff WHERE staff_id = 2;
         DELETE FROM staff WHERE staff_id = 1",
    );
    assert_eq!(
        events(&env),
        pairs(&[
            ("Create", "staff_id=2"),
            ("Update", "staff_id=1"),
            ("Update", "staff_id=2"),
            ("Delete", "staff_id=1"),
        ])
    );
}

/// A `when` may hold the backend's own quoted strings, `NEW.` and `OLD.` inside them being text:
/// MySQL's backslash escapes, PostgreSQL's `E'…'` and dollar quotes, SQLite's doubled quotes.
pub fn when_conditions_keep_the_backends_quoted_strings(backend: Backend) {
    let condition = match backend {
        Backend::Postgres => r"NEW.name <> E'it\'s NEW.x' AND NEW.name <> $q$ OLD.y $q$",
        Backend::Mysql => r#"NEW.name <> 'it\'s NEW.x' AND NEW.name <> " OLD.y ""#,
        Backend::Sqlite => "NEW.name <> 'it''s NEW.x' AND NEW.name <> ' OLD.y '",
    };
    let Some((env, _)) = staff(
        backend,
        &format!("[object.when]\ncreate = '''{condition} AND NEW.dept <> 0'''"),
    ) else {
        return;
    };
    env.db.execute(
        "INSERT INTO staff (staff_id, name, dept) VALUES
            (1, 'it''s NEW.x', 1), (2, ' OLD.y ', 1), (3, 'a', 0), (4, 'a', 1)",
    );
    assert_eq!(events(&env), pairs(&[("Create", "staff_id=4")]));
}

/// A `when` the database refuses makes `install-triggers` exit 2 naming the object and the
/// verb, with nothing installed; one that works afterwards installs.
pub fn a_wrong_when_condition_is_refused_before_anything_is_installed(backend: Backend) {
    let Some(env) = Env::new(backend) else { return };
    env.db.execute(STAFF);
    env.db
        .execute("CREATE TABLE other (other_id int PRIMARY KEY, v int)");
    let objects = |condition: &str| {
        format!(
            "[[object]]\nname = \"Other\"\ntable = \"other\"\n\n\
             [[object]]\nname = \"Staff\"\ntable = \"staff\"\n[object.when]\nupdate = \"{condition}\"\n"
        )
    };
    env.config("", &objects("NEW.no_such_column > 0"));
    env.file_connector("out");
    let out = env.run_ok(&["install-triggers"], 2);
    let message = stderr(&out);
    assert!(
        message.contains("object Staff: when.update") && message.contains("new.no_such_column"),
        "{message}"
    );
    env.db.execute("INSERT INTO other VALUES (1, 1)");
    let events_table = env.db.try_execute("SELECT count(*) FROM {events}");
    assert!(
        events_table.is_err() || env.db.count("SELECT count(*) FROM {events}") == 0,
        "something was installed"
    );
    env.config("", &objects("NEW.dept > 0"));
    env.run_ok(&["install-triggers"], 0);
    env.db.execute(
        "INSERT INTO staff (staff_id, dept) VALUES (1, 1);
         UPDATE staff SET dept = 0, name = 'x' WHERE staff_id = 1;
         UPDATE staff SET dept = 5 WHERE staff_id = 1",
    );
    assert_eq!(
        events(&env),
        pairs(&[("Create", "staff_id=1"), ("Update", "staff_id=1")])
    );
}

/// A `track`, `attributes` or `parent_keys` column that the table does not have: install
/// refuses (exit 2) naming the object, the setting and the column, and installs nothing.
pub fn missing_setting_columns_are_refused_before_anything_is_installed(backend: Backend) {
    let Some(env) = Env::new(backend) else { return };
    env.db.execute(SHOP);
    env.config(
        "",
        r#"
[[object]]
name = "Order"
table = "orders"
track = ["no_track"]
attributes = ["status", "no_attribute"]

[[object.child]]
name = "lines"
table = "order_line"
parent_keys = ["no_parent"]
"#,
    );
    env.file_connector("out");
    let out = env.run_ok(&["install-triggers"], 2);
    let message = stderr(&out);
    for expected in [
        "object Order: `track` column \"no_track\" does not exist",
        "object Order: `attributes` column \"no_attribute\" does not exist",
        "object Order, child lines: `parent_keys` column \"no_parent\" does not exist",
    ] {
        assert!(message.contains(expected), "{expected}: {message}");
    }
    env.db.execute("INSERT INTO orders VALUES (1, 'new')");
    let events_table = env.db.try_execute("SELECT count(*) FROM {events}");
    assert!(
        events_table.is_err() || env.db.count("SELECT count(*) FROM {events}") == 0,
        "something was installed"
    );
}

/// Ping-pong: changes made by an ignored database user, or by a session that switched capture
/// off, make no event. SQLite has neither users nor session variables: `ignore_users` is a
/// configuration error there.
pub fn ignored_users_and_the_session_switch_make_no_event(backend: Backend) {
    let me = match backend {
        Backend::Postgres => "postgres",
        Backend::Mysql => "root",
        Backend::Sqlite => {
            let Some(env) = Env::new(backend) else { return };
            env.db.execute(STAFF);
            env.config(
                "",
                "[[object]]\nname = \"Staff\"\ntable = \"staff\"\nignore_users = [\"sync\"]\n",
            );
            let out = env.run_ok(&["install-triggers"], 2);
            assert!(stderr(&out).contains("ignore_users"), "{}", stderr(&out));
            let out = env.run_ok(&["status"], 2);
            assert!(stderr(&out).contains("ignore_users"), "{}", stderr(&out));
            return;
        }
    };
    let Some((env, _)) = staff(backend, &format!("ignore_users = [\"{me}\"]")) else {
        return;
    };
    env.db.execute("INSERT INTO staff (staff_id) VALUES (1)");
    assert!(
        events(&env).is_empty(),
        "the ignored user's change made an event"
    );

    let Some((env, _)) = staff(backend, "ignore_users = [\"someone_else\"]") else {
        return;
    };
    let off = match backend {
        Backend::Postgres => "SET trigpoll.capture = 'off'",
        _ => "SET @trigpoll_capture = 'off'",
    };
    let mut writer = env.db.writer();
    writer
        .transaction(&format!("{off}; INSERT INTO staff (staff_id) VALUES (1)"))
        .unwrap();
    assert!(
        events(&env).is_empty(),
        "the switched-off session made an event"
    );
    env.db.execute("INSERT INTO staff (staff_id) VALUES (2)");
    assert_eq!(events(&env), pairs(&[("Create", "staff_id=2")]));
}

const SHOP: &str = "
CREATE TABLE orders (order_id int PRIMARY KEY, status {text});
CREATE TABLE order_line (order_id int NOT NULL, line_no int NOT NULL, qty int, secret {text},
    PRIMARY KEY (order_id, line_no));
CREATE TABLE line_note (order_id int NOT NULL, line_no int NOT NULL, note_no int NOT NULL,
    body {text}, PRIMARY KEY (order_id, line_no, note_no));
";

const ORDER: &str = r#"
[[object]]
name = "Order"
table = "orders"

[[object.child]]
name = "lines"
table = "order_line"
parent_keys = ["order_id"]
order_by = ["line_no"]
exclude_attributes = ["secret"]

[[object.child.child]]
name = "notes"
table = "line_note"
parent_keys = ["order_id", "line_no"]
"#;

/// A hierarchical object: its children (and theirs) travel in its attributes, in order; each
/// change of a child row raises an `Update` of its parent, of both parents when it moves; a
/// `Delete` carries the parent's old image only.
pub fn children_travel_with_their_object(backend: Backend) {
    let Some(env) = Env::new(backend) else { return };
    env.db.execute(SHOP);
    env.config("", ORDER);
    let out = env.file_connector("out");
    env.run_ok(&["install-triggers"], 0);
    env.db.execute(
        "INSERT INTO orders VALUES (1, 'new'), (2, 'new');
         INSERT INTO order_line VALUES (1, 2, 5, 'x'), (1, 1, 3, 'x');
         INSERT INTO line_note VALUES (1, 1, 1, 'fragile')",
    );
    assert_eq!(
        events(&env),
        pairs(&[
            ("Create", "order_id=1"),
            ("Create", "order_id=2"),
            ("Update", "order_id=1"),
            ("Update", "order_id=1"),
            ("Update", "order_id=1"),
        ]),
        "each child row (and the grandchild) raises an Update of its order"
    );
    env.run_ok(&["drain"], 0);
    let got = delivered(&out);
    assert_eq!(
        got[0]["attributes"],
        json!({"order_id": 1, "status": "new", "lines": [
            {"order_id": 1, "line_no": 1, "qty": 3, "notes": [
                {"order_id": 1, "line_no": 1, "note_no": 1, "body": "fragile"}
            ]},
            {"order_id": 1, "line_no": 2, "qty": 5, "notes": []}
        ]}),
        "{}",
        got[0]
    );
    assert_eq!(got[1]["attributes"]["lines"], json!([]));

    // A line that moves to another order changes both; an unchanged update changes nothing.
    env.db.execute(
        "UPDATE order_line SET order_id = 2 WHERE line_no = 2;
         UPDATE order_line SET qty = qty WHERE line_no = 1;
         DELETE FROM line_note",
    );
    let mut moved = events(&env);
    moved[..2].sort();
    assert_eq!(
        moved,
        pairs(&[
            ("Update", "order_id=1"),
            ("Update", "order_id=2"),
            ("Update", "order_id=1"),
        ])
    );
    env.run_ok(&["drain"], 0);
    env.db.execute("DELETE FROM orders WHERE order_id = 2");
    env.run_ok(&["drain"], 0);
    let last = delivered(&out).pop().unwrap();
    assert_eq!(last["verb"], "Delete");
    assert_eq!(last["attributes"], json!({"order_id": 2, "status": "new"}));
}

/// A child named like a column of its object takes that column's place in the attributes
/// (docs/payload.md): a JSON object never holds a name twice.
pub fn a_child_named_like_a_column_takes_its_place(backend: Backend) {
    let Some(env) = Env::new(backend) else { return };
    env.db.execute(SHOP);
    env.config(
        "",
        &ORDER.replace(r#"name = "lines""#, r#"name = "status""#),
    );
    let out = env.file_connector("out");
    env.run_ok(&["install-triggers"], 0);
    env.db.execute(
        "INSERT INTO orders VALUES (1, 'new');
         INSERT INTO order_line VALUES (1, 2, 5, 'x'), (1, 1, 3, 'x')",
    );
    env.run_ok(&["drain"], 0);
    let got = delivered(&out);
    assert_eq!(got.len(), 3);
    for object in &got {
        assert_eq!(
            object["attributes"],
            json!({"order_id": 1, "status": [
                {"order_id": 1, "line_no": 1, "qty": 3, "notes": []},
                {"order_id": 1, "line_no": 2, "qty": 5, "notes": []}
            ]}),
            "{object}"
        );
    }
    // Parsed, a name written twice would read as its last value: the text has it once.
    let text = std::fs::read_to_string(&out).unwrap();
    for line in text.lines() {
        assert_eq!(line.matches(r#""status":"#).count(), 1, "{line}");
    }
}

/// An outbox object has no table: applications write its events with the business object in
/// `payload`, delivered as it is; an outbox event without a payload is an error.
pub fn outbox_objects_deliver_their_payload(backend: Backend) {
    let Some(env) = Env::new(backend) else { return };
    env.db.execute(STAFF);
    env.config("", "[[object]]\nname = \"InvoiceIssued\"\n");
    let out = env.file_connector("out");
    env.run_ok(&["install-triggers"], 0);
    env.db.execute(
        r#"INSERT INTO {events} (object_name, object_verb, object_key, payload) VALUES
            ('InvoiceIssued', 'Create', 'invoice=2026-0042', '{"invoice": "2026-0042", "total": 99.90, "lines": [1, 2]}'),
            ('InvoiceIssued', 'Create', 'invoice=2026-0043', NULL)"#,
    );
    env.run_ok(&["drain"], 3);
    let got = delivered(&out);
    assert_eq!(got.len(), 1);
    let expected: Value =
        serde_json::from_str(r#"{"invoice": "2026-0042", "total": 99.90, "lines": [1, 2]}"#)
            .unwrap();
    assert_eq!(got[0]["attributes"], expected);
    assert_eq!(got[0]["key"], json!({"invoice": "2026-0042"}));
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(text.contains("99.90"), "{text}");
    assert_eq!(
        env.db
            .scalar("SELECT event_status FROM {archive} WHERE object_key = 'invoice=2026-0043'"),
        Some("-1".to_string())
    );
}

/// `table` takes SQL-quoted parts: a space, a dot, mixed case.
pub fn quoted_table_names_are_found(backend: Backend) {
    let Some(env) = Env::new(backend) else { return };
    let quote = |name: &str| match backend {
        Backend::Mysql => format!("`{name}`"),
        _ => format!("\"{name}\""),
    };
    env.db.execute(&format!(
        "CREATE TABLE {} (id int PRIMARY KEY, v int);
         CREATE TABLE {} (id int PRIMARY KEY, v int)",
        quote("Order Lines"),
        quote("my.table")
    ));
    env.config(
        "",
        "[[object]]\nname = \"Lines\"\ntable = '\"Order Lines\"'\n\n\
         [[object]]\nname = \"Dotted\"\ntable = '\"my.table\"'\n",
    );
    let out = env.file_connector("out");
    env.run_ok(&["install-triggers"], 0);
    env.db.execute(&format!(
        "INSERT INTO {} VALUES (1, 1); INSERT INTO {} VALUES (2, 2)",
        quote("Order Lines"),
        quote("my.table")
    ));
    env.run_ok(&["drain"], 0);
    let objects: Vec<String> = delivered(&out)
        .iter()
        .map(|l| format!("{}:{}", l["object"].as_str().unwrap(), l["attributes"]["v"]))
        .collect();
    assert_eq!(objects, ["Lines:1", "Dotted:2"]);
}

/// A changed setting changes the triggers: `status` reports them stale until install-triggers
/// replaces them, and `--dry-run` shows the setting in the SQL.
pub fn a_changed_setting_is_drift_until_installed(backend: Backend) {
    let Some((env, _)) = staff(backend, "track = [\"name\"]") else {
        return;
    };
    let state = |env: &Env| {
        let out = env.run_ok(&["status", "--json"], 0);
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        report["triggers"][0]["state"].clone()
    };
    assert_eq!(state(&env), json!("up-to-date"));
    env.config(
        "",
        "[[object]]\nname = \"Staff\"\ntable = \"staff\"\ntrack = [\"salary\"]\n",
    );
    assert_eq!(state(&env), json!("stale"));
    let dry = env.run_ok(&["install-triggers", "--dry-run"], 0);
    assert!(stdout(&dry).contains("salary"), "{}", stdout(&dry));
    env.run_ok(&["install-triggers"], 0);
    assert_eq!(state(&env), json!("up-to-date"));
    // A column added to the table, the configuration unchanged: a trigger that names the
    // table's columns (SQLite, MySQL) says the table changed; PostgreSQL's takes the whole row.
    env.db
        .execute("ALTER TABLE staff ADD COLUMN nickname {text}");
    let changed = match backend {
        Backend::Postgres => json!("up-to-date"),
        _ => json!("table-changed"),
    };
    assert_eq!(state(&env), changed);
    let text = stdout(&env.run_ok(&["status"], 0));
    if backend != Backend::Postgres {
        assert!(
            text.contains("stale: the table's columns changed since install-triggers"),
            "{text}"
        );
    }
    env.run_ok(&["install-triggers"], 0);
    assert_eq!(state(&env), json!("up-to-date"));
}
