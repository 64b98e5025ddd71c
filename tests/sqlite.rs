//! The conformance suite on SQLite, plus what only SQLite does.

mod common;
mod conformance;

use common::Backend;

const SQLITE: Backend = Backend::Sqlite;

conformance_tests!(SQLITE);

/// The database file of a test.
fn database_file(env: &common::Env) -> std::path::PathBuf {
    env.db.url.strip_prefix("sqlite://").unwrap().into()
}

/// The application keeps writing, one transaction per change as an application does, while
/// `poll` claims and archives: WAL mode and short write transactions mean it never gets
/// SQLITE_BUSY (it waits at most a few milliseconds, with the busy timeout most drivers set),
/// and every change is delivered.
#[test]
fn the_application_writes_while_trigpoll_polls() {
    use std::time::Duration;
    let Some((env, out)) = conformance::hr(SQLITE, "batch_size = 50") else {
        return;
    };
    let mut poller = env.spawn(&["poll", "--interval", "100ms"]);
    let path = database_file(&env);
    let total = 1_000;
    let writer = std::thread::spawn(move || {
        let app = rusqlite::Connection::open(path).unwrap();
        app.busy_timeout(Duration::from_secs(5)).unwrap();
        for i in 0..total {
            app.execute(
                "INSERT INTO department VALUES (?1, 'dept')",
                rusqlite::params![i],
            )
            .unwrap_or_else(|e| panic!("insert {i}: {e}"));
        }
    });
    writer.join().expect("the application's writes succeed");
    assert!(
        conformance::eventually(Duration::from_secs(30), || common::lines(&out).len()
            == total as usize),
        "{} of {total} delivered",
        common::lines(&out).len()
    );
    std::process::Command::new("kill")
        .args(["-TERM", &poller.id().to_string()])
        .status()
        .unwrap();
    assert_eq!(poller.wait().unwrap().code(), Some(0));
    assert_eq!(env.db.count("SELECT count(*) FROM {events}"), 0);
    assert_eq!(
        env.db
            .count("SELECT count(*) FROM {archive} WHERE event_status = 1"),
        total
    );
}

/// A mistyped path is an error naming it, not a new empty database.
#[test]
fn a_missing_database_file_is_not_created() {
    let Some((env, _)) = conformance::hr(SQLITE, "") else {
        return;
    };
    let missing = env.path("missing.db");
    let config = std::fs::read_to_string(env.config_path()).unwrap();
    std::fs::write(
        env.config_path(),
        config.replace(&env.db.url, &format!("sqlite://{}", missing.display())),
    )
    .unwrap();
    let out = env.run_ok(&["drain"], 1);
    let text = common::stderr(&out);
    assert!(
        text.contains("cannot connect") && text.contains("missing.db"),
        "{text}"
    );
    assert!(!missing.exists());
}

/// The triggers list the table's columns (SQLite has no `to_json(row)`): a new column makes them
/// stale, the table changed, until install-triggers replaces them, and then deletes carry it.
#[test]
fn an_added_column_makes_the_triggers_stale() {
    let Some((env, out)) = conformance::hr(SQLITE, "") else {
        return;
    };
    env.db
        .execute("ALTER TABLE department ADD COLUMN budget numeric(10,2)");
    let status = env.run_ok(&["status", "--json"], 0);
    let report: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let department = report["triggers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["object"] == "Department")
        .unwrap();
    assert_eq!(department["state"], "table-changed", "{report}");
    // Until then a delete's image lacks the column, and says so.
    for _ in 0..2 {
        env.db
            .execute("INSERT INTO department VALUES (1, 'Sales', 1000)");
        env.run_ok(&["drain"], 0);
        env.db.execute("DELETE FROM department");
        env.run_ok(&["drain"], 0);
        env.run_ok(&["install-triggers"], 0);
    }
    let delivered = common::lines(&out);
    assert_eq!(delivered.len(), 4);
    assert_eq!(delivered[1]["verb"], "Delete");
    assert_eq!(delivered[1]["attributes"].get("budget"), None);
    assert_eq!(delivered[1]["partial"], serde_json::json!(["budget"]));
    assert_eq!(delivered[3]["verb"], "Delete");
    assert_eq!(delivered[3]["attributes"]["budget"].to_string(), "1000.00");
    assert_eq!(delivered[3].get("partial"), None);
}

/// A configuration written for PostgreSQL (`public.department`) works: SQLite has no schemas.
#[test]
fn schema_qualified_tables_are_found_in_the_database_file() {
    let Some(env) = common::Env::new(SQLITE) else {
        return;
    };
    env.db.execute(conformance::HR);
    env.config(
        "",
        "[[object]]\nname = \"Department\"\ntable = \"public.department\"\n",
    );
    let out = env.file_connector("out");
    env.run_ok(&["install-triggers"], 0);
    env.db.execute("INSERT INTO department VALUES (1, 'Sales')");
    env.run_ok(&["drain"], 0);
    assert_eq!(common::lines(&out)[0]["attributes"]["name"], "Sales");
    let status = env.run_ok(&["status", "--json"], 0);
    let report: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(report["triggers"][0]["state"], "up-to-date", "{report}");
}

/// SQLite has no schemas: messages and dry-run comments name the tables as SQLite sees them.
#[test]
fn messages_name_the_tables_without_a_schema() {
    let Some(env) = common::Env::new(SQLITE) else {
        return;
    };
    env.db.execute(conformance::HR);
    env.config("", conformance::HR_OBJECTS);
    let out = env.run_ok(&["drain"], 2);
    let text = common::stderr(&out);
    assert!(
        text.contains(
            "the event table trigpoll_event or the archive table trigpoll_archive does not exist"
        ),
        "{text}"
    );
    let out = env.run_ok(&["install-triggers", "--dry-run"], 0);
    let script = common::stdout(&out);
    assert!(
        script.starts_with(
            "-- create the event table trigpoll_event and the archive table trigpoll_archive\n"
        ),
        "{script}"
    );
    env.run_ok(&["install-triggers"], 0);
    let out = env.run_ok(&["uninstall-triggers", "--drop-tables", "--dry-run"], 0);
    let script = common::stdout(&out);
    assert!(
        script.contains("-- drop the tables trigpoll_event and trigpoll_archive"),
        "{script}"
    );
    for text in [&script, &text] {
        assert!(!text.contains("trigpoll.trigpoll_"), "{text}");
    }
}

/// `check` warns of subscriptions that can never match: an object no `[[object]]` has, a verb
/// no trigger of the object makes (by a row action or a rule), a verb in another case. It still
/// passes: they are not errors of the file.
#[test]
fn check_warns_of_subscriptions_that_never_match() {
    let Some(env) = common::Env::new(SQLITE) else {
        return;
    };
    env.db.execute(conformance::HR);
    // An outbox object: its events carry the application's own verbs, in any case.
    // Account's deletes all close it: no trigger of it makes Delete, which a key change's
    // Delete would be but for the rule.
    let objects = format!(
        "{}\n[[object]]\nname = \"Note\"\n\n[[object]]\nname = \"Account\"\ntable = \"account\"\n\
         verbs = [\"Update\", \"Delete\"]\n[[object.rule]]\non = \"delete\"\nverb = \"Close\"\n",
        conformance::HR_OBJECTS
    );
    env.config("", &objects);
    env.connector(
        "hook",
        "subscribe = [\"Employe.*\", \"Employee.create\", \"Department.Create\", \"*.Archived\", \"Note.create\",\n\
             \"Account.Close\", \"Account.close\", \"Account.Delete\", \"Account.Create\", \"*.Close\", \"*.close\"]\n\
         [sink]\ntype = \"file\"\npath = \"hook.ndjson\"",
    );
    let out = env.run_ok(&["check"], 0);
    let text = common::stdout(&out);
    let warnings: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("subscription"))
        .collect();
    assert_eq!(
        warnings,
        [
            "subscription   warning: connector hook: \"Employe.*\" names no configured object; it never matches",
            "subscription   warning: connector hook: \"Employee.create\" never matches the triggers' verb Create (verbs are case-sensitive)",
            "subscription   warning: connector hook: \"Account.close\" never matches the triggers' verb Close (verbs are case-sensitive)",
            "subscription   warning: connector hook: \"Account.Delete\": no trigger of Account makes verb Delete, by a row action or a rule (Close, Create, Update); only events applications write would match",
            "subscription   warning: connector hook: \"*.close\" never matches the triggers' verb Close (verbs are case-sensitive)",
        ],
        "{text}"
    );
}

/// A database file that does not exist is never created: the message names the file, with
/// the directory a relative path was taken from.
#[test]
fn a_missing_database_file_is_named_and_not_created() {
    let Some(env) = common::Env::new(SQLITE) else {
        return;
    };
    env.config_with_url("sqlite://no-such-app.db", "", conformance::HR_OBJECTS);
    env.file_connector("out");
    let out = env
        .command(&["status"])
        .current_dir(env.path(""))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let message = common::stderr(&out);
    let absolute = env.path("no-such-app.db");
    assert!(
        message.contains(&format!(
            "cannot connect to the SQLite database no-such-app.db ({}): the file does not exist",
            absolute.display()
        )),
        "{message}"
    );
    assert!(!absolute.exists());
}
