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
    // Delivered and finished: killed between the two, the event would rightly come again.
    assert!(conformance::eventually(Duration::from_secs(60), || {
        common::lines(&out).len() == 1 && env.db.count("SELECT count(*) FROM {events}") == 0
    }));
    let pids = env
        .db
        .column(
            "SELECT pid FROM pg_stat_activity
             WHERE application_name = 'trigpoll' AND datname = current_database()",
        )
        .join(", ");
    env.db.execute(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid IN ({pids})"
    ));
    // Gone before the next change is written.
    assert!(conformance::eventually(Duration::from_secs(60), || {
        env.db.count(&format!(
            "SELECT count(*) FROM pg_stat_activity WHERE pid IN ({pids})"
        )) == 0
    }));
    env.db.execute("INSERT INTO department VALUES (2, 'b')");
    if !conformance::eventually(Duration::from_secs(20), || common::lines(&out).len() >= 2) {
        poller.kill().unwrap();
        let mut log = String::new();
        std::io::Read::read_to_string(poller.stderr.as_mut().unwrap(), &mut log).unwrap();
        panic!("the poller did not come back after losing its connection:\n{log}");
    }
    assert_eq!(common::lines(&out).len(), 2);
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

/// A sleeping poller is woken by the capture trigger's notification and by a replay, long
/// before its interval ends.
#[test]
fn notifications_wake_a_sleeping_poller() {
    use std::time::Duration;
    let Some((env, out)) = conformance::hr(PG, "") else {
        return;
    };
    let poller = env.spawn(&["poll", "--interval", "1h"]);
    assert!(conformance::eventually(Duration::from_secs(60), || {
        poller_sleeps(&env)
    }));
    env.db.execute("INSERT INTO department VALUES (1, 'a')");
    assert!(
        conformance::eventually(Duration::from_secs(60), || common::lines(&out).len() == 1),
        "the change was not delivered: no notification woke the poller"
    );
    assert!(conformance::eventually(Duration::from_secs(60), || {
        poller_sleeps(&env)
    }));
    env.run_ok(&["replay", "--object", "Department"], 0);
    assert!(
        conformance::eventually(Duration::from_secs(60), || common::lines(&out).len() == 2),
        "the replayed event was not delivered: the replay did not wake the poller"
    );
    poller.stop();
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
        conformance::eventually(Duration::from_secs(60), || common::lines(&out).len() == 1),
        "the change was left for the next interval"
    );
    poller.stop();
}

/// Login roles for one test (roles are global to the server), dropped when the test ends.
struct Roles {
    admin: String,
    names: Vec<String>,
}

impl Roles {
    fn new(db: &common::TestDb, kinds: &[&str]) -> Roles {
        let suffix = format!("{:08x}", rand::random::<u32>());
        let names: Vec<String> = kinds.iter().map(|k| format!("tp_{k}_{suffix}")).collect();
        for name in &names {
            db.execute(&format!("CREATE ROLE {name} LOGIN"));
        }
        Roles {
            admin: db.url.clone(),
            names,
        }
    }

    /// The test database's URL, connecting as `role` instead of the superuser.
    fn url(&self, role: &str) -> String {
        self.admin.replacen("postgres@", &format!("{role}@"), 1)
    }

    /// Points the test's configuration at `role`, a poller that may read and write every table
    /// and owns none; returns the configuration as it was.
    fn poll_as(&self, env: &common::Env, role: &str) -> String {
        env.db.execute(&format!(
            "GRANT pg_read_all_data, pg_write_all_data TO {role}"
        ));
        let config = std::fs::read_to_string(env.config_path()).unwrap();
        std::fs::write(
            env.config_path(),
            config.replace(&env.db.url, &self.url(role)),
        )
        .unwrap();
        config
    }
}

impl Drop for Roles {
    fn drop(&mut self) {
        let Ok(mut c) = postgres::Client::connect(&self.admin, postgres::NoTls) else {
            return;
        };
        for name in &self.names {
            let _ = c.batch_execute(&format!("DROP OWNED BY {name} CASCADE; DROP ROLE {name}"));
        }
    }
}

const OWNED: &str = r#"
[[object]]
name = "Department"
table = "public.department"

[[object]]
name = "Code"
table = "public.code"
"#;

/// The application's tables, created by their owner; the application role gets privileges on
/// them and on nothing else. The owner installs trigpoll: a superuser made the capture role for
/// it, as README's *Backends and privileges* says, and the configuration names that role.
fn owned_tables(env: &common::Env, roles: &Roles) {
    let [owner, app, capture] = [0, 1, 2].map(|i| roles.names[i].as_str());
    env.db.execute(&format!(
        "GRANT CREATE ON DATABASE {db} TO {owner};
         GRANT CREATE ON SCHEMA public TO {owner};
         ALTER ROLE {capture} NOLOGIN NOINHERIT;
         GRANT {capture} TO {owner};
         SET ROLE {owner};
         CREATE TABLE department (dept_id int PRIMARY KEY, name text NOT NULL);
         CREATE TABLE code (code text PRIMARY KEY, label text);
         GRANT SELECT, INSERT, UPDATE, DELETE ON department, code TO {app};
         RESET ROLE;",
        db = env.db.name
    ));
    std::fs::create_dir_all(env.path("connectors")).unwrap();
    std::fs::write(
        env.config_path(),
        format!(
            "[database]\nurl = \"{}\"\ncapture_role = \"{capture}\"\n{OWNED}",
            roles.url(owner)
        ),
    )
    .unwrap();
}

/// Installing trigpoll as the tables' owner must not make the application's writes fail: the
/// application's role, holding privileges on its own tables only, inserts, updates and deletes
/// (and rolls back) in its own transactions, and what it committed is delivered.
#[test]
fn an_application_role_with_table_privileges_only_keeps_writing() {
    let Some(env) = common::Env::new(PG) else {
        return;
    };
    let roles = Roles::new(&env.db, &["owner", "app", "capture"]);
    let app = &roles.names[1];
    owned_tables(&env, &roles);
    let out = env.file_connector("out");
    env.run_ok(&["install-triggers"], 0);

    let mut writer = postgres::Client::connect(&roles.url(app), postgres::NoTls).unwrap();
    writer
        .batch_execute(
            "INSERT INTO department VALUES (1, 'a'), (2, 'b');
             UPDATE department SET name = 'c' WHERE dept_id = 1;
             DELETE FROM department WHERE dept_id = 2;
             INSERT INTO code VALUES ('x:1', 'one');",
        )
        .unwrap_or_else(|e| panic!("the application's write failed: {e}"));
    let mut tx = writer.transaction().unwrap();
    tx.batch_execute("INSERT INTO department VALUES (3, 'rolled back')")
        .unwrap();
    tx.rollback().unwrap();
    // A role without a use for the capture routines cannot run them.
    let executable = env.db.count(&format!(
        "SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
         WHERE n.nspname = 'trigpoll' AND has_function_privilege('{app}', p.oid, 'EXECUTE')"
    ));
    assert_eq!(
        executable, 0,
        "the capture routines are executable by {app}"
    );

    env.run_ok(&["drain"], 0);
    // Create 2 finds its row deleted; everything else reaches the connector.
    let archived = env
        .db
        .query("SELECT object_verb, object_key, event_status FROM {archive} ORDER BY event_id");
    let want = [
        ("Create", "dept_id=1", "1"),
        ("Create", "dept_id=2", "-3"),
        ("Update", "dept_id=1", "1"),
        ("Delete", "dept_id=2", "1"),
        ("Create", "code=x%3A1", "1"),
    ]
    .map(|(v, k, s)| {
        vec![
            Some(v.to_string()),
            Some(k.to_string()),
            Some(s.to_string()),
        ]
    });
    assert_eq!(archived, want);
    assert_eq!(common::lines(&out).len(), 4);
}

/// A writer that puts its own schema before the system catalog, with a look-alike of a function
/// the capture routine calls, an operator and trigpoll's event table, changes nothing of what
/// the routine (running with its owner's rights) does.
#[test]
fn look_alikes_on_a_writers_search_path_change_nothing() {
    let Some(env) = common::Env::new(PG) else {
        return;
    };
    let roles = Roles::new(&env.db, &["owner", "app", "capture"]);
    let app = &roles.names[1];
    owned_tables(&env, &roles);
    env.file_connector("out");
    env.run_ok(&["install-triggers"], 0);
    env.db.execute(&format!(
        "CREATE SCHEMA evil AUTHORIZATION {app};
         SET ROLE {app};
         CREATE FUNCTION evil.replace(text, text, text) RETURNS text LANGUAGE sql
             AS $$ SELECT 'HIJACKED'::text $$;
         CREATE FUNCTION evil.cat(text, text) RETURNS text LANGUAGE sql
             AS $$ SELECT 'HIJACKED'::text $$;
         CREATE OPERATOR evil.|| (LEFTARG = text, RIGHTARG = text, FUNCTION = evil.cat);
         CREATE TABLE evil.trigpoll_event (object_name text, object_verb text, object_key text,
             event_priority int, payload json);
         RESET ROLE;"
    ));
    let mut writer = postgres::Client::connect(&roles.url(app), postgres::NoTls).unwrap();
    writer
        .batch_execute(
            "SET search_path = evil, pg_catalog, public;
             CREATE TEMP TABLE trigpoll_event (object_name text, object_verb text,
                 object_key text, event_priority int, payload json);
             INSERT INTO code VALUES ('a:b', 'x');
             UPDATE code SET label = 'y';",
        )
        .unwrap();
    let keys = env
        .db
        .query("SELECT object_key FROM {events} ORDER BY event_id");
    assert_eq!(
        keys,
        vec![vec![Some("code=a%3Ab".to_string())]; 2],
        "the capture routine used the writer's look-alikes"
    );
    assert_eq!(env.db.count("SELECT count(*) FROM evil.trigpoll_event"), 0);
    let hardened = env.db.count(
        "SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
         WHERE n.nspname = 'trigpoll' AND p.prosecdef
           AND p.proconfig = ARRAY['search_path=pg_catalog, pg_temp']",
    );
    assert_eq!(hardened, 2);
}

/// `status` names a trigger that makes the application's writes fail because its routine's
/// owner lost the right to insert into the event table, and exits 1.
#[test]
fn status_reports_a_trigger_whose_owner_lost_its_rights() {
    let Some(env) = common::Env::new(PG) else {
        return;
    };
    let roles = Roles::new(&env.db, &["owner", "app", "capture"]);
    owned_tables(&env, &roles);
    env.file_connector("out");
    env.run_ok(&["install-triggers"], 0);
    let out = env.run_ok(&["status"], 0);
    assert!(!common::stdout(&out).contains("BROKEN"));
    // The routines belong to the capture role, whose rights they run with.
    let capture = &roles.names[2];
    env.db.execute(&format!(
        "REVOKE INSERT ON trigpoll.trigpoll_event FROM {capture}"
    ));
    let out = env.run_ok(&["status"], 1);
    let text = common::stdout(&out);
    assert!(
        text.contains("BROKEN") && text.contains(&format!("owner {capture} may not insert")),
        "{text}"
    );
    // install-triggers grants it again.
    env.run_ok(&["install-triggers"], 0);
    let out = env.run_ok(&["status"], 0);
    assert!(!common::stdout(&out).contains("BROKEN"));
}

/// SIGTERM while the batch in hand waits for a lock (here its fetch, behind an ACCESS
/// EXCLUSIVE lock on the captured table): the statement is cancelled on the server, the claim
/// goes back and drain exits 0.
#[test]
fn sigterm_cancels_a_statement_waiting_for_a_lock() {
    use std::time::{Duration, Instant};
    let Some((env, _)) = conformance::hr(PG, "") else {
        return;
    };
    env.db.execute("INSERT INTO department VALUES (1, 'a')");
    let mut locker = postgres::Client::connect(&env.db.url, postgres::NoTls).unwrap();
    let mut tx = locker.transaction().unwrap();
    tx.batch_execute("LOCK TABLE department IN ACCESS EXCLUSIVE MODE")
        .unwrap();
    let waiting = || {
        env.db.count(
            "SELECT count(*) FROM pg_stat_activity
             WHERE application_name = 'trigpoll' AND datname = current_database()
               AND state = 'active' AND wait_event_type = 'Lock'",
        )
    };
    let drain = env.spawn(&["drain"]);
    assert!(conformance::eventually(
        Duration::from_secs(10),
        || waiting() == 1
    ));
    let signalled = Instant::now();
    drain.stop();
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
    tx.rollback().unwrap();
    assert_eq!(
        env.db
            .query("SELECT event_status, attempts, claimed_by FROM {events}"),
        [vec![Some("0".to_string()), Some("0".to_string()), None]]
    );
}

/// A `when` condition runs with the capture role's rights, which are to write events and no
/// more: an application role that owns a function the condition calls, and replaces it with one
/// that makes it superuser, gains nothing (before, the condition ran with the installer's
/// rights, a superuser's, and it did). install-triggers checks a condition as that role, and
/// `check --database` warns of the function the application role may replace.
#[test]
fn a_condition_runs_with_the_capture_roles_rights_only() {
    let Some(env) = common::Env::new(PG) else {
        return;
    };
    let roles = Roles::new(&env.db, &["app"]);
    let app = &roles.names[0];
    env.db.execute(&format!(
        "CREATE SCHEMA app AUTHORIZATION {app};
         SET ROLE {app};
         CREATE TABLE app.account (id int PRIMARY KEY, active boolean);
         CREATE FUNCTION app.is_active(b boolean) RETURNS boolean LANGUAGE sql AS 'SELECT b';
         RESET ROLE;"
    ));
    env.config(
        "",
        "[[object]]\nname = \"Account\"\ntable = \"app.account\"\n\
         [object.when]\ncreate = \"app.is_active(NEW.active)\"\n",
    );
    env.file_connector("out");
    // The capture role may not use the application's schema: refused, saying what to grant.
    let refused = env.run_ok(&["install-triggers"], 2);
    let text = common::stderr(&refused);
    assert!(
        text.contains("permission denied for schema app")
            && text
                .contains("a condition runs with the rights of the capture role trigpoll_capture"),
        "{text}"
    );
    env.db.execute(&format!(
        "GRANT USAGE ON SCHEMA app TO trigpoll_capture; GRANT USAGE ON SCHEMA app TO {app}"
    ));
    env.run_ok(&["install-triggers"], 0);
    let checked = env.run_ok(&["check", "--database"], 0);
    let text = common::stdout(&checked);
    assert!(
        text.contains(&format!(
            "object Account: when.create calls app.is_active(boolean), which {app} may replace"
        )),
        "{text}"
    );
    let mut writer = postgres::Client::connect(&roles.url(app), postgres::NoTls).unwrap();
    writer
        .batch_execute(&format!(
            "CREATE OR REPLACE FUNCTION app.is_active(b boolean) RETURNS boolean
                 LANGUAGE plpgsql AS $$ BEGIN ALTER ROLE {app} SUPERUSER; RETURN b; END $$"
        ))
        .unwrap();
    let written = writer.batch_execute("INSERT INTO app.account VALUES (1, true)");
    let superuser = env.db.scalar(&format!(
        "SELECT rolsuper::text FROM pg_roles WHERE rolname = '{app}'"
    ));
    assert_eq!(superuser.as_deref(), Some("false"), "{written:?}");
    let error = written
        .expect_err("the replaced function fails the write")
        .to_string();
    assert!(error.contains("db error"), "{error}");
    assert_eq!(env.db.count("SELECT count(*) FROM app.account"), 0);
}

/// Rules apply on a partitioned table as on any other: to the rows written through its
/// partitions' cloned row triggers, and to a row an UPDATE moves to another partition, which is
/// an Update of its key (the partition key is not part of it).
#[test]
fn rules_apply_to_partitioned_tables_and_moved_rows() {
    let Some(env) = common::Env::new(PG) else {
        return;
    };
    env.db.execute(
        "CREATE TABLE ledger (id int NOT NULL, region text NOT NULL, status int,
             PRIMARY KEY (id, region)) PARTITION BY LIST (region);
         CREATE TABLE ledger_eu PARTITION OF ledger FOR VALUES IN ('eu');
         CREATE TABLE ledger_us PARTITION OF ledger FOR VALUES IN ('us');",
    );
    env.config(
        "",
        r#"[[object]]
name = "Ledger"
table = "ledger"
keys = ["id"]

[[object.rule]]
on = "update"
when = "NEW.region <> OLD.region"
verb = "Relocate"
comment = "moved"

[[object.rule]]
on = "update"
when = "NEW.status = 9"
skip = true

[[object.rule]]
on = "create"
when = "NEW.region = 'us'"
priority = 4
comment = "us"

[[object.rule]]
on = "delete"
verb = "Remove"
"#,
    );
    let out = env.file_connector("out");
    env.run_ok(&["install-triggers"], 0);
    env.db.execute(
        "INSERT INTO ledger VALUES (1, 'eu', 0), (2, 'us', 0);
         UPDATE ledger SET region = 'us' WHERE id = 1;
         UPDATE ledger SET status = 9 WHERE id = 2;
         UPDATE ledger SET status = 1 WHERE id = 2;
         DELETE FROM ledger WHERE id = 2",
    );
    let events = env.db.query(
        "SELECT object_verb, object_key, event_priority, event_comment, event_action
         FROM {events} ORDER BY event_id",
    );
    let row =
        |verb: &str, key: &str, priority: &str, comment: Option<&str>, action: Option<&str>| {
            vec![
                Some(verb.to_string()),
                Some(key.to_string()),
                Some(priority.to_string()),
                comment.map(str::to_string),
                action.map(str::to_string),
            ]
        };
    assert_eq!(
        events,
        [
            row("Create", "id=1", "0", None, Some("create")),
            row("Create", "id=2", "4", Some("us"), Some("create")),
            row("Relocate", "id=1", "0", Some("moved"), Some("update")),
            row("Update", "id=2", "0", None, Some("update")),
            row("Remove", "id=2", "0", None, Some("delete")),
        ]
    );
    env.run_ok(&["drain"], 0);
    let delivered = common::lines(&out);
    let removed = delivered.iter().find(|d| d["verb"] == "Remove").unwrap();
    assert_eq!(removed["attributes"]["status"], 1, "the delete's image");
    let relocated = delivered.iter().find(|d| d["verb"] == "Relocate").unwrap();
    assert_eq!(relocated["attributes"]["region"], "us");
}

/// A server with no connection left for trigpoll (SQLSTATE 53300: `max_connections` reached, or
/// the role's `CONNECTION LIMIT`) may have one in a moment: a `poll` started then waits, says
/// why, and delivers once it gets in.
#[test]
fn poll_waits_while_the_server_has_no_connection_for_it() {
    use std::time::Duration;
    let Some((env, out)) = conformance::hr(PG, "") else {
        return;
    };
    let roles = Roles::new(&env.db, &["poller"]);
    let poller = &roles.names[0];
    roles.poll_as(&env, poller);
    env.db
        .execute(&format!("ALTER ROLE {poller} CONNECTION LIMIT 0"));
    let mut poll = env.spawn(&["poll", "--interval", "100ms"]);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        poll.try_wait().unwrap().is_none(),
        "poll exited while the server had no connection for it"
    );
    env.db
        .execute(&format!("ALTER ROLE {poller} CONNECTION LIMIT -1"));
    env.db.execute("INSERT INTO department VALUES (1, 'a')");
    assert!(conformance::eventually(Duration::from_secs(60), || {
        common::lines(&out).len() == 1
    }));
    let said = poll.stop();
    assert!(
        said.contains("poll waits for it") && said.contains("too many connections"),
        "{said}"
    );
}

/// Whether any event is held is asked of the index of held events, whatever the statistics say.
/// Asked with `EXISTS` of an event table analyzed while empty, PostgreSQL guessed that most
/// events are held and read the whole table, dead rows and all, in every claim and every finish
/// (BENCHMARKS.md, round 8).
#[test]
fn claims_and_finishes_ask_the_index_whether_events_are_held() {
    let Some(env) = common::Env::new(PG) else {
        return;
    };
    env.db.execute("CREATE TABLE item (id int PRIMARY KEY)");
    env.config("", "[[object]]\nname = \"Item\"\ntable = \"public.item\"\n");
    env.run_ok(&["install-triggers"], 0);
    let mut c = postgres::Client::connect(&env.db.url, postgres::NoTls).unwrap();
    c.batch_execute(
        "ANALYZE trigpoll.trigpoll_event;
         INSERT INTO trigpoll.trigpoll_event (object_name, object_verb, object_key)
         SELECT 'Item', 'Update', 'id=' || g FROM generate_series(1, 5000) g",
    )
    .unwrap();
    use trigpoll::dialect::postgres as sql;
    let names = sql::names("trigpoll", "trigpoll_event", "trigpoll_archive", "postgres");
    let statements = [
        (
            "claim",
            sql::claim_neighbours(&names, 300.0),
            "('{Item}', '{id=1}', '{1}', 't', '{1}')",
        ),
        (
            "finish",
            sql::finish(&names),
            "('{1}', '{}', 't', '{}', '{}', '{}', '{}', '{}', '{}')",
        ),
    ];
    for (what, statement, values) in statements {
        c.batch_execute(&format!("PREPARE s AS {statement}"))
            .unwrap();
        let plan: Vec<String> = c
            .query(&format!("EXPLAIN (COSTS OFF) EXECUTE s{values}"), &[])
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        c.batch_execute("DEALLOCATE s").unwrap();
        let plan = plan.join("\n");
        assert!(
            plan.contains("Index Only Scan using trigpoll_event_waiting on trigpoll_event h")
                && !plan.contains("Seq Scan on trigpoll_event h"),
            "the {what} asks the index of held events:\n{plan}"
        );
    }
}

/// A poller that keeps up with its application vacuums the event table itself, about once a
/// second, when its role may (README, *Backends and privileges*); one whose role may not says
/// so once, leaves it to autovacuum and delivers as before.
#[test]
fn a_poller_keeping_up_vacuums_the_event_table_when_its_role_may() {
    use std::time::Duration;
    let Some((env, out)) = conformance::hr(PG, "") else {
        return;
    };
    let vacuums = || {
        env.db.count(
            "SELECT vacuum_count FROM pg_stat_user_tables
             WHERE relid = 'trigpoll.trigpoll_event'::regclass",
        )
    };
    // The application's writes while `poll` runs: small transactions, so that every batch is
    // smaller than `batch_size`, and more events than a vacuum waits for.
    let write = |first: i64| {
        for t in 0..30 {
            let from = first + t * 50;
            env.db.execute(&format!(
                "INSERT INTO department SELECT g, 'd' || g FROM generate_series({from}, {}) g",
                from + 49
            ));
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let roles = Roles::new(&env.db, &["poller"]);
    let config = roles.poll_as(&env, &roles.names[0]);
    let poll = env.spawn(&["poll", "--interval", "100ms"]);
    write(1);
    assert!(conformance::eventually(Duration::from_secs(60), || {
        common::lines(&out).len() == 1500
    }));
    let said = poll.stop();
    assert!(said.contains("may not vacuum the event table"), "{said}");
    assert_eq!(vacuums(), 0, "vacuumed by a role that may not");

    std::fs::write(env.config_path(), config).unwrap();
    let poll = env.spawn(&["poll", "--interval", "100ms"]);
    write(1501);
    assert!(conformance::eventually(Duration::from_secs(60), || {
        common::lines(&out).len() == 3000
    }));
    assert!(
        conformance::eventually(Duration::from_secs(10), || vacuums() >= 1),
        "the event table was not vacuumed"
    );
    poll.stop();
}
