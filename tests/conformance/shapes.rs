//! The shapes real schemas have and the sessions real writers have: every type of the payload
//! written from a session with unusual settings, generated columns, names that collide with the
//! triggers' own, keys of any length.

use serde_json::{json, Value};

use crate::common::{lines, Backend, Env};

/// A table with a column of every type the payload describes (docs/payload.md), on each backend:
/// its DDL, two rows' values (the second differs in every column), and the settings of a writer's
/// session that differ from the poller's in every way that could change how a value is written.
struct Typed {
    ddl: &'static str,
    first: &'static str,
    second: &'static str,
    session: &'static str,
}

fn typed(backend: Backend) -> Typed {
    match backend {
        Backend::Postgres => Typed {
            ddl: "CREATE TYPE mood AS ENUM ('sad', 'happy');
                  CREATE DOMAIN stamp AS timestamptz;
                  CREATE TYPE pair AS (at timestamptz, x float8);
                  CREATE TABLE typed (id int PRIMARY KEY, s smallint, b bigint,
                      n numeric(38,10), r real, d double precision, bo boolean, t text,
                      v varchar(20), c char(5), dt date, tm time(6), tz timetz, ts timestamp(6),
                      tstz timestamptz(6), iv interval, by bytea, j json, jb jsonb, u uuid,
                      ai int[], ats timestamptz[], m mood, st stamp, p pair, ip inet, pt point,
                      g bigint GENERATED ALWAYS AS (b * 2) STORED)",
            first: "(1, 1, 9007199254740993, 12345678901234567890123456.1234567890, 0.1,
                     0.30000000000000004, true, 'élève ✓', 'v', 'c', '2026-03-28',
                     '10:11:12.5', '10:11:12+02', '2026-03-28 20:00:00.5',
                     '2026-03-28 20:00:00.25+00', '1 day 02:03:04', '\\x0102ff',
                     '{\"big\": 123456789012345678901234567890, \"a\": [1, 2.50]}',
                     '{\"b\": 1.10}', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{1,2,3}',
                     '{\"2026-01-01 00:00:00+00\"}', 'happy', '2026-03-28 20:00:00+00',
                     ROW('2026-03-28 20:00:00+00', 1e-7), '10.0.0.1/8', '(1.5,2.25)')",
            second: "(1, -2, -4611686018427387904, -0.0000000001, 3.4e38, 1e308, false, '🦀',
                      'w', 'd', '1999-12-31', '23:59:59.999999', '00:00:00-05:30',
                      '1999-12-31 23:59:59.999999', '1999-12-31 23:59:59.999999+00',
                      '-3 mons -1 sec', '\\x', '[]', '{\"n\": null}',
                      '00000000-0000-0000-0000-000000000000', '{}', '{NULL}', 'sad',
                      '1999-12-31 23:00:00+00', ROW(NULL, 'NaN'), '::1', '(-0,1e-300)')",
            session: "SET TimeZone = 'Asia/Kolkata'; SET DateStyle = 'SQL, DMY';
                      SET IntervalStyle = 'iso_8601'; SET extra_float_digits = 0;
                      SET bytea_output = 'escape';",
        },
        Backend::Mysql => Typed {
            ddl: "CREATE TABLE typed (id INT PRIMARY KEY, ti TINYINT(1), i INT,
                      bu BIGINT UNSIGNED, n DECIMAL(38,10), f FLOAT, d DOUBLE, v VARCHAR(20),
                      c CHAR(5), t TEXT, dt DATE, tm TIME(6), dtt DATETIME(6),
                      ts TIMESTAMP(6) NULL, bl BLOB, j JSON, e ENUM('sad', 'happy'),
                      st SET('a', 'b'), y YEAR, gv BIGINT AS (i * 2) VIRTUAL,
                      gs BIGINT AS (i * 3) STORED)",
            first: "(1, 1, 7, 18446744073709551615, 1234567890123456789012345678.1234567890,
                     0.1, 0.30000000000000004, 'v', 'c', 'élève', '2026-03-28', '10:11:12.5',
                     '2026-03-28 20:00:00.5', '2026-03-28 20:00:00.25', X'0102FF',
                     '{\"big\": 123456789012345678901234567890, \"a\": [1, 2.50]}', 'happy',
                     'a,b', 2026, DEFAULT, DEFAULT)",
            second: "(1, 0, -7, 0, -0.0000000001, 3.4e38, 1e308, 'w', 'd', '', '1999-12-31',
                      '-838:59:59', '1999-12-31 23:59:59.999999', '1999-12-31 23:59:59.999999',
                      X'', '[]', 'sad', '', 1999, DEFAULT, DEFAULT)",
            session: "SET time_zone = '+05:30';
                      SET sql_mode = 'ANSI_QUOTES,PAD_CHAR_TO_FULL_LENGTH,NO_BACKSLASH_ESCAPES';
                      SET character_set_client = latin1;",
        },
        Backend::Sqlite => Typed {
            ddl: "CREATE TABLE typed (id INTEGER PRIMARY KEY, i INTEGER, r REAL,
                      n NUMERIC(12,2), bo BOOLEAN, t TEXT, dt DATETIME, bl BLOB, j JSON,
                      g INTEGER GENERATED ALWAYS AS (i * 2) VIRTUAL,
                      gs INTEGER GENERATED ALWAYS AS (i * 3) STORED)",
            first: "(1, 9223372036854775807, 0.30000000000000004, 10.5, 1, 'élève ✓',
                     '2026-03-28 20:00:00.5', X'0102FF', '{\"a\": [1, 2.50]}')",
            second: "(1, -7, 1e308, -0.01, 0, '🦀', '1999-12-31 23:59:59', X'', '[]')",
            session: "",
        },
    }
}

/// The columns the backend fills itself, left out of the INSERT's column list.
fn inserted_columns(backend: Backend) -> &'static str {
    match backend {
        Backend::Postgres => "",
        Backend::Mysql => "",
        Backend::Sqlite => "(id, i, r, n, bo, t, dt, bl, j)",
    }
}

/// The Delete image and the changes of an Update, which the trigger writes in the writer's
/// session, are the JSON the poller writes when it fetches the same row: a receiver that keeps
/// the last image of a key, or compares values, sees no change that did not happen.
pub fn images_are_the_fetched_rows_whatever_the_writers_session(backend: Backend) {
    let Some(env) = Env::new(backend) else { return };
    let t = typed(backend);
    env.db.execute(t.ddl);
    env.config(
        "",
        "[[object]]\nname = \"Typed\"\ntable = \"typed\"\nchanges = true\n",
    );
    let out = env.file_connector("out");
    env.run_ok(&["install-triggers"], 0);
    let columns = inserted_columns(backend);
    let session = t.session;
    for step in [
        format!("{session} INSERT INTO typed {columns} VALUES {}", t.first),
        format!(
            "{session} UPDATE typed SET {} WHERE id = 1",
            set_all_from_second(backend)
        ),
        format!("{session} DELETE FROM typed"),
        format!("{session} INSERT INTO typed {columns} VALUES {}", t.first),
        format!("{session} UPDATE typed SET id = 2"),
    ] {
        env.db.execute(&step);
        env.run_ok(&["drain"], 0);
    }
    let delivered = lines(&out);
    let find = |verb: &str, nth: usize| -> &Value {
        &delivered
            .iter()
            .filter(|l| l["verb"] == verb)
            .nth(nth)
            .unwrap_or_else(|| panic!("no {verb} #{nth} in {delivered:#?}"))["attributes"]
    };
    // Fetched: the first row (Create #0, #1), the second (the Update). Written by the trigger:
    // the second row's image (Delete #0), the first's when its key changed (Delete #1).
    let (first, second) = (find("Create", 0), find("Update", 0));
    assert_eq!(find("Create", 1), first);
    assert_eq!(find("Delete", 0), second, "the image of the deleted row");
    assert_eq!(
        find("Delete", 1),
        first,
        "the image of the row whose key changed"
    );
    let update = delivered.iter().find(|l| l["verb"] == "Update").unwrap();
    let changes = update["changes"].as_object().expect("changes");
    for (column, value) in first.as_object().unwrap() {
        if column == "id" || value == &second[column] {
            assert!(
                !changes.contains_key(column),
                "{column} did not change: {changes:?}"
            );
            continue;
        }
        let change = changes
            .get(column)
            .unwrap_or_else(|| panic!("{column} changed: {changes:?}"));
        assert_eq!(&change["old"], value, "old value of {column}");
        assert_eq!(&change["new"], &second[column], "new value of {column}");
    }
}

/// `SET col = <the second row's value>, …` for every column but the key and the generated ones.
fn set_all_from_second(backend: Backend) -> String {
    let t = typed(backend);
    let names: Vec<&str> = match backend {
        Backend::Postgres => vec![
            "s", "b", "n", "r", "d", "bo", "t", "v", "c", "dt", "tm", "tz", "ts", "tstz", "iv",
            "by", "j", "jb", "u", "ai", "ats", "m", "st", "p", "ip", "pt",
        ],
        Backend::Mysql => vec![
            "ti", "i", "bu", "n", "f", "d", "v", "c", "t", "dt", "tm", "dtt", "ts", "bl", "j", "e",
            "st", "y",
        ],
        Backend::Sqlite => vec!["i", "r", "n", "bo", "t", "dt", "bl", "j"],
    };
    let values = split_values(t.second);
    // The second row's values after its id.
    names
        .iter()
        .zip(&values[1..])
        .map(|(n, v)| format!("{n} = {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The values of a `(a, b, …)` row literal, split at the commas outside quotes and parentheses.
fn split_values(row: &str) -> Vec<String> {
    let inner = row.trim().trim_start_matches('(').trim_end_matches(')');
    let (mut values, mut current, mut depth, mut quoted) = (Vec::new(), String::new(), 0, false);
    for ch in inner.chars() {
        match ch {
            '\'' => quoted = !quoted,
            '(' if !quoted => depth += 1,
            ')' if !quoted => depth -= 1,
            ',' if !quoted && depth == 0 => {
                values.push(current.trim().to_string());
                current.clear();
                continue;
            }
            _ => {}
        }
        current.push(ch);
    }
    values.push(current.trim().to_string());
    values.retain(|v| v != "DEFAULT");
    values
}

/// Generated columns travel in the object and count in `track`.
pub fn generated_columns_travel_and_count_in_track(backend: Backend) {
    let Some(env) = Env::new(backend) else { return };
    let ddl = match backend {
        Backend::Postgres => {
            "CREATE TABLE gen (id int PRIMARY KEY, x int, other int,
                 g int GENERATED ALWAYS AS (x * 2) STORED)"
        }
        Backend::Mysql => {
            "CREATE TABLE gen (id int PRIMARY KEY, x int, other int,
                 g int AS (x * 2) VIRTUAL, gs int AS (x * 3) STORED)"
        }
        Backend::Sqlite => {
            "CREATE TABLE gen (id int PRIMARY KEY, x int, other int,
                 g int GENERATED ALWAYS AS (x * 2) VIRTUAL)"
        }
    };
    env.db.execute(ddl);
    env.config(
        "",
        "[[object]]\nname = \"Gen\"\ntable = \"gen\"\ntrack = [\"g\"]\nchanges = true\n",
    );
    let out = env.file_connector("out");
    env.run_ok(&["install-triggers"], 0);
    for step in [
        "INSERT INTO gen (id, x, other) VALUES (1, 1, 1)",
        "UPDATE gen SET other = 2 WHERE id = 1; UPDATE gen SET x = 5 WHERE id = 1",
        "DELETE FROM gen WHERE id = 1",
    ] {
        env.db.execute(step);
        env.run_ok(&["drain"], 0);
    }
    let delivered = lines(&out);
    let verbs: Vec<&str> = delivered
        .iter()
        .map(|l| l["verb"].as_str().unwrap())
        .collect();
    // The update of `other` alone changed no tracked column.
    assert_eq!(verbs, ["Create", "Update", "Delete"]);
    assert_eq!(delivered[0]["attributes"]["g"], json!(2));
    assert_eq!(delivered[1]["attributes"]["g"], json!(10));
    assert_eq!(delivered[1]["changes"]["g"], json!({"old": 2, "new": 10}));
    assert_eq!(delivered[2]["attributes"], delivered[1]["attributes"]);
}

/// Columns named like the aliases and variables of the triggers and of the poller's queries,
/// and reserved words, break neither the capture nor the images: a table carried whole and one
/// carried in part, with `changes` and a `when` condition over such columns.
pub fn columns_named_like_the_triggers_own_are_captured(backend: Backend) {
    let Some(env) = Env::new(backend) else { return };
    let q = |name: &str| match backend {
        Backend::Mysql => format!("`{name}`"),
        _ => format!("\"{name}\""),
    };
    let names = [
        "n",
        "o",
        "x",
        "new",
        "old",
        "k",
        "k0",
        "i",
        "u",
        "t",
        "p1",
        "parents",
        "trigpoll_row",
        "trigpoll_changes",
        "trigpoll_moved",
        "trigpoll_before",
        "trigpoll_after",
        "trigpoll_new",
        "trigpoll_old",
        "from",
    ];
    let columns: Vec<String> = names.iter().map(|n| format!("{} int", q(n))).collect();
    for table in ["select", "order"] {
        env.db.execute(&format!(
            "CREATE TABLE {} ({} int PRIMARY KEY, {})",
            q(table),
            q("where"),
            columns.join(", ")
        ));
    }
    let all: Vec<String> = names.iter().map(|n| format!("{n:?}")).collect();
    env.config(
        "",
        &format!(
            "[[object]]\nname = \"Select\"\ntable = '\"select\"'\nchanges = true\n\
             attributes = [{}]\n[object.when]\nupdate = 'NEW.\"new\" <> OLD.\"old\" OR NEW.x IS NULL'\n\
             [[object]]\nname = \"Order\"\ntable = '\"order\"'\n",
            all[..all.len() - 1].join(", ")
        )
        .replace("'\"select\"'", &format!("'{}'", sql_name(backend, "select")))
        .replace("'\"order\"'", &format!("'{}'", sql_name(backend, "order")))
        .replace("NEW.\"new\"", &format!("NEW.{}", q("new")))
        .replace("OLD.\"old\"", &format!("OLD.{}", q("old"))),
    );
    let out = env.file_connector("out");
    env.run_ok(&["install-triggers"], 0);
    let list: Vec<String> = names.iter().map(|n| q(n)).collect();
    let values = |base: usize| -> String {
        (0..names.len())
            .map(|i| (base + i).to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    for table in ["select", "order"] {
        let t = q(table);
        for step in [
            format!(
                "INSERT INTO {t} ({}, {}) VALUES (1, {})",
                q("where"),
                list.join(", "),
                values(10)
            ),
            format!("UPDATE {t} SET {} = 99, {} = 1", q("new"), q("from")),
            format!("DELETE FROM {t}"),
        ] {
            env.db.execute(&step);
            env.run_ok(&["drain"], 0);
        }
    }
    let delivered = lines(&out);
    let seen: Vec<(&str, &str)> = delivered
        .iter()
        .map(|l| (l["object"].as_str().unwrap(), l["verb"].as_str().unwrap()))
        .collect();
    assert_eq!(
        seen,
        [
            ("Select", "Create"),
            ("Select", "Update"),
            ("Select", "Delete"),
            ("Order", "Create"),
            ("Order", "Update"),
            ("Order", "Delete"),
        ]
    );
    for object in ["Select", "Order"] {
        let of: Vec<&Value> = delivered.iter().filter(|l| l["object"] == object).collect();
        let updated = &of[1]["attributes"];
        assert_eq!(updated["new"], json!(99), "{object}: {updated}");
        assert_eq!(updated["trigpoll_row"], json!(22), "{object}: {updated}");
        assert_eq!(&of[2]["attributes"], updated, "{object}: the Delete image");
        let carries_from = object == "Order";
        assert_eq!(updated.get("from").is_some(), carries_from, "{updated}");
    }
    let changes = &delivered[1]["changes"];
    assert_eq!(changes, &json!({"new": {"old": 13, "new": 99}}));
}

/// The table name as the configuration spells a quoted one on each backend.
fn sql_name(backend: Backend, name: &str) -> String {
    match backend {
        Backend::Mysql => format!("`{name}`"),
        _ => format!("\"{name}\""),
    }
}

/// A key of any length the application can store never fails its write, and is delivered
/// intact: up to 1 MB of text, also full of the characters the key encoding escapes (which
/// triple in length). The application indexes a hash of it, as one does for long values.
pub fn keys_of_any_length_never_fail_a_write(backend: Backend) {
    let Some(env) = Env::new(backend) else { return };
    let ddl = match backend {
        Backend::Postgres => {
            "CREATE TABLE w (k text NOT NULL, v int);
             CREATE UNIQUE INDEX w_k ON w (md5(k))"
        }
        Backend::Mysql => {
            "CREATE TABLE w (k MEDIUMTEXT NOT NULL, v int,
             h BINARY(16) AS (UNHEX(MD5(k))) STORED, UNIQUE (h))"
        }
        Backend::Sqlite => {
            "CREATE TABLE w (k text NOT NULL, v int);
             CREATE UNIQUE INDEX w_k ON w (k)"
        }
    };
    env.db.execute(ddl);
    let attributes = match backend {
        Backend::Mysql => "attributes = [\"k\", \"v\"]\n",
        _ => "",
    };
    env.config(
        "",
        &format!("[[object]]\nname = \"W\"\ntable = \"w\"\nkeys = [\"k\"]\n{attributes}"),
    );
    let out = env.file_connector("out");
    env.run_ok(&["install-triggers"], 0);
    let keys = [
        "a".repeat(9_600),
        ":=%".repeat(1 << 18),
        format!("{}é✓", "x".repeat(1 << 20)),
    ];
    for key in &keys {
        for step in [
            format!("INSERT INTO w (k, v) VALUES ('{key}', 1)"),
            format!("UPDATE w SET v = 2 WHERE k = '{key}'"),
            format!("DELETE FROM w WHERE k = '{key}'"),
        ] {
            env.db
                .try_execute(&step)
                .unwrap_or_else(|e| panic!("the application's write failed: {e:.300}"));
            env.run_ok(&["drain"], 0);
        }
    }
    let delivered = lines(&out);
    assert_eq!(delivered.len(), 9);
    for (i, line) in delivered.iter().enumerate() {
        let key = &keys[i / 3];
        assert_eq!(line["key"]["k"].as_str(), Some(key.as_str()), "event {i}");
        assert_eq!(
            line["attributes"]["k"].as_str(),
            Some(key.as_str()),
            "event {i}"
        );
        assert_eq!(
            line["attributes"]["v"],
            json!(if i % 3 == 0 { 1 } else { 2 })
        );
    }
}
