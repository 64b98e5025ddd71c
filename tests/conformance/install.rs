//! install-triggers and uninstall-triggers.

use crate::common::{stderr, stdout, Backend, Env};
use crate::conformance::{hr, HR, HR_OBJECTS};

fn events(env: &Env) -> i64 {
    env.db.count("SELECT count(*) FROM {events}")
}

pub fn dry_run_prints_the_sql_and_changes_nothing(backend: Backend) {
    let Some(env) = Env::new(backend) else { return };
    env.db.execute(HR);
    env.config("", HR_OBJECTS);
    let out = env.run_ok(&["install-triggers", "--dry-run"], 0);
    let sql = String::from_utf8(out.stdout).unwrap();
    assert!(sql.contains("CREATE TABLE"), "{sql}");
    assert!(sql.to_lowercase().contains("trigger"), "{sql}");
    for table in ["employee", "department", "order_line"] {
        assert!(sql.contains(table), "no statement for {table}:\n{sql}");
    }
    // Nothing was created: capture does not happen and the event table does not exist.
    env.db.execute("INSERT INTO department VALUES (1, 'Sales')");
    env.run_ok(&["install-triggers"], 0);
    assert_eq!(events(&env), 0, "the dry run installed a trigger");
}

pub fn a_second_install_changes_nothing(backend: Backend) {
    let Some((env, _)) = hr(backend, "") else {
        return;
    };
    let out = env.run_ok(&["install-triggers", "--dry-run"], 0);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "",
        "a second install would change things"
    );
    env.run_ok(&["install-triggers"], 0);
    let status = env.run_ok(&["status", "--json"], 0);
    let report: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let states: Vec<&str> = report["triggers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["state"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(states, ["up-to-date"; 3], "{report}");
    env.db.execute("INSERT INTO department VALUES (1, 'Sales')");
    assert_eq!(events(&env), 1, "the trigger fires once after two installs");
}

pub fn object_flag_limits_the_install(backend: Backend) {
    let Some(env) = Env::new(backend) else { return };
    env.db.execute(HR);
    env.config("", HR_OBJECTS);
    env.run_ok(&["install-triggers", "--object", "Department"], 0);
    env.db.execute("INSERT INTO department VALUES (1, 'Sales')");
    env.db
        .execute("INSERT INTO employee (emp_id, last_name) VALUES (1, 'x')");
    assert_eq!(
        env.db.query("SELECT object_name FROM {events}"),
        vec![vec![Some("Department".to_string())]]
    );
    let out = env.run_ok(&["install-triggers", "--object", "Nobody"], 2);
    assert!(stderr(&out).contains("Nobody"), "{}", stderr(&out));
    let status = env.run_ok(&["status", "--json"], 0);
    let report: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert!(
        report["triggers"].to_string().contains("missing"),
        "{report}"
    );
}

pub fn uninstall_reverses_the_install(backend: Backend) {
    let Some((env, _)) = hr(backend, "") else {
        return;
    };
    env.run_ok(&["uninstall-triggers"], 0);
    env.db.execute("INSERT INTO department VALUES (1, 'Sales')");
    assert_eq!(events(&env), 0, "a trigger survived uninstall");
    env.run_ok(&["install-triggers"], 0);
    env.db
        .execute("INSERT INTO department VALUES (2, 'Ops'), (4, 'IT')");
    assert_eq!(events(&env), 2);
    // One of them claimed by a poller that is delivering it.
    env.db
        .execute("UPDATE {events} SET event_status = 3 WHERE object_key = 'dept_id=4'");
    // Undelivered events are named, and dropped only with --force.
    let dry = env.run_ok(&["uninstall-triggers", "--drop-tables", "--dry-run"], 0);
    let script = stdout(&dry);
    assert!(script.contains("DROP TABLE"), "{script}");
    assert!(
        script.starts_with("-- the event table ")
            && script.contains(" holds 1 ready event and 1 in progress\n"),
        "{script}"
    );
    assert_eq!(events(&env), 2, "the dry run dropped something");
    let refused = env.run_ok(&["uninstall-triggers", "--drop-tables"], 2);
    let said = stderr(&refused);
    assert!(
        said.contains("refused, nothing was changed")
            && said.contains(" holds 1 ready event and 1 in progress;")
            && said.contains("--force"),
        "{said}"
    );
    env.db.execute("INSERT INTO department VALUES (5, 'HR')");
    assert_eq!(events(&env), 3, "the refused uninstall removed a trigger");
    let forced = env.run_ok(&["uninstall-triggers", "--drop-tables", "--force"], 0);
    assert!(
        stderr(&forced).contains("holds 2 ready events and 1 in progress"),
        "{}",
        stderr(&forced)
    );
    env.db.execute("INSERT INTO department VALUES (3, 'Legal')");
    let out = env.run(&["status"]);
    assert_ne!(
        out.status.code(),
        Some(0),
        "status works without the event table?"
    );
    // An empty event table needs no --force.
    env.run_ok(&["install-triggers"], 0);
    env.run_ok(&["uninstall-triggers", "--drop-tables"], 0);
}

/// An object taken out of the configuration leaves its trigger: `status` names it, and
/// `uninstall-triggers --unconfigured` removes that one while the configured ones capture on,
/// also one whose settings no longer fit its table.
pub fn unconfigured_triggers_are_removed_alone(backend: Backend) {
    let Some((env, _)) = hr(backend, "") else {
        return;
    };
    let without_orders = HR_OBJECTS.replace(
        "[[object]]\nname = \"OrderLine\"\ntable = \"order_line\"\n",
        "",
    );
    assert_ne!(without_orders, HR_OBJECTS);
    // An object whose settings no longer fit its table still owns its trigger.
    let invalid_employee = without_orders.replace(
        "table = \"employee\"\n",
        "table = \"employee\"\ntrack = [\"no_such_column\"]\n",
    );
    assert_ne!(invalid_employee, without_orders);
    env.config("", &invalid_employee);
    let status = stdout(&env.run(&["status"]));
    assert!(status.contains("no_such_column"), "{status}");
    let dry = stdout(&env.run_ok(&["uninstall-triggers", "--unconfigured", "--dry-run"], 0));
    assert!(
        dry.contains("order_line") && !dry.contains("employee"),
        "{dry}"
    );
    env.config("", &without_orders);
    let status = stdout(&env.run_ok(&["status"], 0));
    assert!(
        status.contains("not in the configuration: run uninstall-triggers --unconfigured"),
        "{status}"
    );
    let dry = stdout(&env.run_ok(&["uninstall-triggers", "--unconfigured", "--dry-run"], 0));
    assert!(
        dry.contains("order_line") && !dry.contains("employee"),
        "{dry}"
    );
    // A run says so when it starts, naming the table.
    let drained = stderr(&env.run_ok(&["drain"], 0));
    let warnings: Vec<&str> = drained
        .lines()
        .filter(|l| l.contains("capture trigger not as configured"))
        .collect();
    assert!(
        warnings.len() == 1 && warnings[0].contains("order_line"),
        "{drained}"
    );
    env.run_ok(&["uninstall-triggers", "--unconfigured"], 0);
    env.db.execute(
        "INSERT INTO order_line VALUES (1, 'a', 1);
         INSERT INTO department VALUES (1, 'Sales');
         INSERT INTO employee (emp_id) VALUES (1)",
    );
    let captured = env
        .db
        .column("SELECT object_name FROM {events} ORDER BY event_id");
    assert_eq!(captured, ["Department", "Employee"]);
    let status = stdout(&env.run_ok(&["status"], 0));
    assert!(!status.contains("not in the configuration"), "{status}");
}

pub fn awkward_identifiers_are_quoted(backend: Backend) {
    let Some(env) = Env::new(backend) else { return };
    let q = |s: &str| match backend {
        Backend::Postgres => format!("\"{}\"", s.replace('"', "\"\"")),
        Backend::Mysql => format!("`{}`", s.replace('`', "``")),
        Backend::Sqlite => format!("\"{}\"", s.replace('"', "\"\"")),
    };
    env.db.execute(&format!(
        "CREATE TABLE {} ({} int NOT NULL, {} {{text}} NOT NULL, {} {{text}}, PRIMARY KEY ({}, {}))",
        q("Order Lines"),
        q("Key Col"),
        q("select"),
        q("we\"ird'one"),
        q("Key Col"),
        q("select")
    ));
    env.config(
        "",
        // An object name that would end a SQL string literal and inject a statement.
        "[[object]]\nname = \"Odd'); DROP TABLE \\\"Order Lines\\\"; --\"\ntable = \"Order Lines\"\n",
    );
    env.file_connector("out");
    env.run_ok(&["install-triggers"], 0);
    env.db.execute(&format!(
        "INSERT INTO {} VALUES (1, 'a''b', 'x')",
        q("Order Lines")
    ));
    env.run_ok(&["drain"], 0);
    let delivered = crate::common::lines(&env.path("out.ndjson"));
    assert_eq!(delivered.len(), 1);
    assert_eq!(
        delivered[0]["key"],
        serde_json::json!({"Key Col": "1", "select": "a'b"})
    );
    assert_eq!(delivered[0]["attributes"]["we\"ird'one"], "x");
    assert_eq!(
        delivered[0]["object"],
        "Odd'); DROP TABLE \"Order Lines\"; --"
    );
}

pub fn a_table_without_primary_key_needs_keys(backend: Backend) {
    let Some(env) = Env::new(backend) else { return };
    env.db.execute("CREATE TABLE note (note_id int, body {text}); CREATE TABLE department (dept_id int PRIMARY KEY, name {text})");
    let objects = "[[object]]\nname = \"Department\"\ntable = \"department\"\n\n[[object]]\nname = \"Note\"\ntable = \"note\"\n";
    env.config("", objects);
    let out = env.run_ok(&["install-triggers"], 2);
    assert!(stderr(&out).contains("no primary key"), "{}", stderr(&out));
    assert!(stderr(&out).contains("note"), "{}", stderr(&out));
    // Nothing half-installed: not even the department trigger or the event table.
    env.db.execute("INSERT INTO department VALUES (1, 'x')");
    let status = env.run(&["status"]);
    assert_ne!(status.status.code(), Some(0), "the event table was created");
    env.config("", &format!("{objects}keys = [\"note_id\"]\n"));
    env.run_ok(&["install-triggers"], 0);
    env.db.execute("INSERT INTO note VALUES (7, 'hello')");
    assert_eq!(
        env.db.query("SELECT object_key FROM {events}"),
        vec![vec![Some("note_id=7".to_string())]]
    );
}

pub fn missing_tables_and_key_columns_are_named(backend: Backend) {
    let Some(env) = Env::new(backend) else { return };
    env.db
        .execute("CREATE TABLE department (dept_id int PRIMARY KEY, name {text})");
    env.config(
        "",
        "[[object]]\nname = \"Ghost\"\ntable = \"no_such_table\"\n\n[[object]]\nname = \"Department\"\ntable = \"department\"\nkeys = [\"dept_code\"]\n",
    );
    let out = env.run_ok(&["install-triggers"], 2);
    let text = stderr(&out);
    assert!(text.contains("no_such_table"), "{text}");
    assert!(text.contains("dept_code"), "{text}");
}

/// With the event table gone the capture triggers make every write to their tables fail:
/// `status` says so for each of them and exits 1, and `uninstall-triggers` removes them so that
/// the application can write again.
pub fn status_reports_triggers_that_fail_writes_and_uninstall_removes_them(backend: Backend) {
    let Some((env, _)) = hr(backend, "") else {
        return;
    };
    env.db.execute("DROP TABLE {events}");
    assert!(
        env.db
            .try_execute("INSERT INTO department VALUES (1, 'Sales')")
            .is_err(),
        "a write succeeded although its trigger has no event table to write to"
    );
    let out = env.run_ok(&["status"], 1);
    let text = crate::common::stdout(&out);
    assert_eq!(text.matches("BROKEN").count(), 3, "{text}");
    assert!(text.contains("does not exist"), "{text}");
    let out = env.run_ok(&["status", "--json"], 1);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["tables_installed"], false, "{report}");
    assert!(
        report["triggers"][0]["state"]["broken"].is_string(),
        "{report}"
    );

    env.run_ok(&["uninstall-triggers"], 0);
    env.db.execute("INSERT INTO department VALUES (1, 'Sales')");
    env.run_ok(&["install-triggers"], 0);
    env.db
        .execute("INSERT INTO department VALUES (2, 'Support')");
    assert_eq!(events(&env), 1);
}

/// A renamed object leaves nothing behind: install-triggers replaces the old capture (its
/// routine too) and says what becomes of the old name's pending events; a capture routine left
/// without a trigger shows in `status` and goes with `uninstall-triggers --unconfigured`; and
/// `uninstall-triggers --drop-tables` removes every trigger, function and table of trigpoll's,
/// and its schema (PostgreSQL) or database (MySQL) once nothing else is in it.
pub fn a_renamed_object_leaves_nothing_behind(backend: Backend) {
    let Some((env, _)) = hr(backend, "") else {
        return;
    };
    env.db.execute("INSERT INTO department VALUES (1, 'Sales')");
    env.config(
        "",
        &HR_OBJECTS.replace("name = \"Department\"", "name = \"Dept\""),
    );
    let installed = env.run_ok(&["install-triggers"], 0);
    assert!(
        stderr(&installed).contains(
            "1 ready event of object \"Department\", which is no longer configured: the next \
             poll or drain archives it as error (unknown object)"
        ),
        "{}",
        stderr(&installed)
    );
    env.db.execute("INSERT INTO department VALUES (2, 'Ops')");
    assert_eq!(
        env.db
            .column("SELECT object_name FROM {events} ORDER BY event_id"),
        ["Department", "Dept"]
    );
    let status = stdout(&env.run_ok(&["status"], 0));
    assert!(
        !status.contains("leftover") && !status.contains("no trigger runs"),
        "{status}"
    );
    if backend == Backend::Postgres {
        // A routine whose triggers went (by hand, or an earlier trigpoll's rename).
        env.db.execute(
            "DROP TRIGGER trigpoll_capture_insert ON department;
                      DROP TRIGGER trigpoll_capture_delete ON department;
                      DROP TRIGGER trigpoll_capture ON department",
        );
        let status = stdout(&env.run(&["status"]));
        assert!(
            status.contains("a capture function no trigger runs"),
            "{status}"
        );
        env.run_ok(&["uninstall-triggers", "--unconfigured"], 0);
        let status = stdout(&env.run(&["status"]));
        assert!(!status.contains("no trigger runs"), "{status}");
        env.run_ok(&["install-triggers"], 0);
    }
    env.run_ok(&["uninstall-triggers", "--drop-tables", "--force"], 0);
    let left = match backend {
        Backend::Postgres => env.db.count(
            "SELECT (SELECT count(*) FROM pg_namespace WHERE nspname = 'trigpoll')
                  + (SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'trigpoll%')",
        ),
        Backend::Mysql => env.db.count(&format!(
            "SELECT (SELECT count(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = '{}')
                  + (SELECT count(*) FROM information_schema.TRIGGERS
                     WHERE TRIGGER_SCHEMA = '{}' AND TRIGGER_NAME LIKE 'trigpoll%')",
            env.db.event_schema().unwrap(),
            env.db.name
        )),
        Backend::Sqlite => env
            .db
            .count("SELECT count(*) FROM sqlite_master WHERE name LIKE 'trigpoll%'"),
    };
    assert_eq!(left, 0, "something of trigpoll's is left");
}
