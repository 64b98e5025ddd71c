//! Loading and validating configurations, end to end.

use super::expand::{expand, Expansion};
use super::*;

const MAIN: &str = "[database]\nurl = \"sqlite://x.db\"\n";

/// The message for a main file that must be refused.
fn err(text: &str) -> String {
    Config::from_str(text, Path::new("trigpoll.toml"))
        .expect_err("the configuration was accepted")
        .to_string()
}

/// A folder with `trigpoll.toml` and `connectors/<name>` files.
fn folder(main: &str, connectors: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("trigpoll.toml"), main).unwrap();
    if !connectors.is_empty() {
        std::fs::create_dir(dir.path().join("connectors")).unwrap();
    }
    for (name, text) in connectors {
        std::fs::write(dir.path().join("connectors").join(name), text).unwrap();
    }
    dir
}

fn load(dir: &tempfile::TempDir) -> Result<Config, ConfigError> {
    Config::load(&dir.path().join("trigpoll.toml"))
}

/// Loads one connector file; the message has the folder replaced by `DIR`.
fn connector_err(text: &str) -> String {
    let dir = folder(MAIN, &[("c.toml", text)]);
    let message = load(&dir)
        .expect_err("the connector was accepted")
        .to_string();
    message.replace(&dir.path().display().to_string(), "DIR")
}

fn connector_ok(text: &str) -> ConnectorConfig {
    let dir = folder(MAIN, &[("c.toml", text)]);
    let mut config = load(&dir).unwrap();
    assert_eq!(config.connectors.len(), 1);
    config.connectors.remove(0)
}

fn expand_with(text: &str, vars: &[(&str, &str)]) -> Expansion {
    expand(text, |name| {
        Ok(vars
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.to_string()))
    })
}

#[test]
fn defaults_apply_to_keys_left_out() {
    let dir = folder(MAIN, &[]);
    let config = load(&dir).unwrap();
    assert_eq!(config.path, dir.path().join("trigpoll.toml"));
    assert_eq!(config.database.url.expose(), "sqlite://x.db");
    assert_eq!(config.database.schema, "trigpoll");
    assert_eq!(config.database.event_table, "trigpoll_event");
    assert_eq!(config.database.archive_table, "trigpoll_archive");
    assert_eq!(config.poll.interval, Duration::from_secs(5));
    assert_eq!(config.poll.batch_size, 500);
    assert_eq!(config.poll.key_delimiter, ":");
    assert!(config.poll.archive);
    assert_eq!(config.poll.claim_timeout, Duration::from_secs(300));
    assert_eq!(config.poll.linger, Duration::from_millis(20));
    assert_eq!(config.poll.connectors_dir, dir.path().join("connectors"));
    assert!(config.objects.is_empty());
    assert!(config.connectors.is_empty(), "the default folder is absent");
}

#[test]
fn every_key_is_read() {
    let text = r#"
[database]
url = "postgres://u:p@h/db"
schema = "Events Here"
event_table = "ev"
archive_table = "ar"

[poll]
interval = "1h 30m"
batch_size = 100000
key_delimiter = "||"
archive = false
claim_timeout = "250ms"
linger = "0s"
connectors_dir = "conn.d"

[[object]]
name = "Employee"
table = "public.employee"
keys = ["emp_id", "dept_id"]
verbs = ["Delete", "Create"]
priority = 3

[[object]]
name = "Order Line"
table = 'My Schema."Order.Lines"'
"#;
    let dir = folder(text, &[]);
    std::fs::create_dir(dir.path().join("conn.d")).unwrap();
    let config = load(&dir).unwrap();
    assert_eq!(config.database.url.expose(), "postgres://u:p@h/db");
    assert_eq!(config.database.schema, "Events Here");
    assert_eq!(config.database.event_table, "ev");
    assert_eq!(config.database.archive_table, "ar");
    assert_eq!(config.poll.interval, Duration::from_secs(5400));
    assert_eq!(config.poll.batch_size, 100_000);
    assert_eq!(config.poll.key_delimiter, "||");
    assert!(!config.poll.archive);
    assert_eq!(config.poll.claim_timeout, Duration::from_millis(250));
    assert_eq!(config.poll.linger, Duration::ZERO);
    assert_eq!(config.poll.connectors_dir, dir.path().join("conn.d"));

    let [employee, line] = &config.objects[..] else {
        panic!("two objects expected: {:?}", config.objects)
    };
    assert_eq!(employee.name, "Employee");
    assert_eq!(
        employee.table,
        Some(TableName {
            schema: Some("public".into()),
            name: "employee".into()
        })
    );
    assert_eq!(
        employee.keys,
        Some(vec!["emp_id".to_string(), "dept_id".to_string()])
    );
    assert_eq!(employee.verbs, [Verb::Delete, Verb::Create]);
    assert_eq!(employee.priority, 3);

    assert_eq!(line.name, "Order Line");
    let table = line.table.as_ref().unwrap();
    assert_eq!(table.schema.as_deref(), Some("My Schema"));
    assert_eq!(table.name, "Order.Lines", "a quoted part keeps its dot");
    assert_eq!(line.keys, None);
    assert_eq!(line.verbs, [Verb::Create, Verb::Update, Verb::Delete]);
    assert_eq!(line.priority, 0);
}

#[test]
fn a_table_without_schema_has_none() {
    let text = format!("{MAIN}[[object]]\nname = \"A\"\ntable = \"Employee\"\n");
    let dir = folder(&text, &[]);
    let config = load(&dir).unwrap();
    assert_eq!(
        config.objects[0].table,
        Some(TableName {
            schema: None,
            name: "Employee".into()
        })
    );
}

#[test]
fn rules_are_read_in_file_order() {
    let text = format!(
        "{MAIN}[[object]]\nname = \"Account\"\ntable = \"account\"\npriority = 3
[[object.rule]]
on = \"update\"
when = \"NEW.status = 0\"
verb = \"Create\"
priority = 1
comment = \"Account Creation\"
[[object.rule]]
on = [\"create\", \"delete\"]
skip = true
[[object.rule]]
on = \"update\"
verb = \"Touched\"
[[object.child]]
name = \"contacts\"
table = \"contact\"
parent_keys = [\"account_id\"]
[[object.child.rule]]
on = \"create\"
comment = \"new contact\"
"
    );
    let dir = folder(&text, &[]);
    let config = load(&dir).unwrap();
    let account = &config.objects[0];
    assert_eq!(
        account.rules,
        [
            Rule {
                on: vec![Verb::Update],
                when: Some("NEW.status = 0".into()),
                skip: false,
                verb: Some("Create".into()),
                priority: Some(1),
                comment: Some("Account Creation".into()),
            },
            Rule {
                on: vec![Verb::Create, Verb::Delete],
                skip: true,
                ..Rule::default()
            },
            Rule {
                on: vec![Verb::Update],
                verb: Some("Touched".into()),
                ..Rule::default()
            },
        ]
    );
    assert_eq!(
        account.children[0].rules,
        [Rule {
            on: vec![Verb::Create],
            comment: Some("new contact".into()),
            ..Rule::default()
        }]
    );
}

#[test]
fn a_missing_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("trigpoll.toml");
    let message = Config::load(&path).unwrap_err().to_string();
    assert_eq!(
        message,
        format!("{}: cannot read: No such file or directory", path.display())
    );
}

#[test]
fn main_file_errors_name_file_line_and_key() {
    let object = |body: &str| format!("{MAIN}[[object]]\n{body}");
    let cases: Vec<(String, &str)> = vec![
        (
            format!("{MAIN}[poll]\nbatch_size = \"x\"\n"),
            "trigpoll.toml:4:14: poll.batch_size: invalid type: string \"x\", expected an integer",
        ),
        (
            format!("{MAIN}[poll]\nbatch_size = 0\n"),
            "trigpoll.toml:4:14: poll.batch_size: 0 is out of range: must be between 1 and 100000",
        ),
        (
            format!("{MAIN}[poll]\nbatch_size = 100001\n"),
            "trigpoll.toml:4:14: poll.batch_size: 100001 is out of range: must be between 1 and 100000",
        ),
        (
            format!("{MAIN}[poll]\ninterval = \"5x\"\n"),
            "trigpoll.toml:4:12: poll.interval: invalid duration \"5x\": unknown time unit \"x\", \
             supported units: ns, us/µs, ms, sec, min, hours, days, weeks, months, years (and few variations)",
        ),
        (
            format!("{MAIN}[poll]\ninterval = 5\n"),
            "trigpoll.toml:4:12: poll.interval: invalid type: integer `5`, expected a duration such as \"5s\" or \"250ms\"",
        ),
        (
            format!("{MAIN}[poll]\nclaim_timeout = \"0s\"\n"),
            "trigpoll.toml:4:17: poll.claim_timeout: must be greater than zero",
        ),
        (
            format!("{MAIN}[poll]\nlinger = \"2s\"\n"),
            "trigpoll.toml:4:10: poll.linger: must be at most 1s",
        ),
        (
            format!("{MAIN}[poll]\nkey_delimiter = \"\"\n"),
            "trigpoll.toml:4:17: poll.key_delimiter: must not be empty",
        ),
        (
            format!("{MAIN}[poll]\nkey_delimiter = \"=\"\n"),
            "trigpoll.toml:4:17: poll.key_delimiter: \"=\" must not contain `=` or `%`",
        ),
        (
            format!("{MAIN}[poll]\nkey_delimiter = \"a%\"\n"),
            "trigpoll.toml:4:17: poll.key_delimiter: \"a%\" must not contain `=` or `%`",
        ),
        (
            format!("{MAIN}[poll]\nkey_delimiter = \"8\"\n"),
            "trigpoll.toml:4:17: poll.key_delimiter: \"8\" must not contain a digit or A-F: they \
             are the hex digits of an escape",
        ),
        (
            format!("{MAIN}[poll]\nkey_delimiter = \"|D\"\n"),
            "trigpoll.toml:4:17: poll.key_delimiter: \"|D\" must not contain a digit or A-F: they \
             are the hex digits of an escape",
        ),
        (
            format!("{MAIN}[poll]\narchive = \"yes\"\n"),
            "trigpoll.toml:4:11: poll.archive: invalid type: string \"yes\", expected a boolean",
        ),
        (
            format!("{MAIN}[poll]\nbatchsize = 5\n"),
            "trigpoll.toml:4:1: poll.batchsize: unknown field `batchsize`, expected one of \
             `interval`, `batch_size`, `key_delimiter`, `archive`, `claim_timeout`, `linger`, \
             `connectors_dir`",
        ),
        (
            format!("{MAIN}schemas = \"x\"\n"),
            "trigpoll.toml:3:1: database.schemas: unknown field `schemas`, expected one of \
             `url`, `schema`, `event_table`, `archive_table`, `capture_role`",
        ),
        (
            format!("{MAIN}capture_role = \"cap\"\n"),
            "trigpoll.toml:3:16: database.capture_role: is a PostgreSQL role: MySQL triggers run \
             as their definer (the installing account), SQLite has no users",
        ),
        (
            format!("{MAIN}[polling]\n"),
            "trigpoll.toml:3:2: polling: unknown field `polling`, expected one of `database`, `poll`, `object`, `archive`",
        ),
        (
            format!("{MAIN}schema = \" \"\n"),
            "trigpoll.toml:3:10: database.schema: must not be empty",
        ),
        (
            "[poll]\nbatch_size = 5\n".to_string(),
            "trigpoll.toml:1:1: database: missing field `database`",
        ),
        (
            "\n[database]\nschema = \"x\"\n".to_string(),
            "trigpoll.toml:2:1: database.url: missing field `url`",
        ),
        (
            "[database]\nurl = \"\"\n".to_string(),
            "trigpoll.toml:2:7: database.url: must not be empty",
        ),
        (
            "[database]\nurl = 12345\n".to_string(),
            "trigpoll.toml:2:7: database.url: invalid type: expected a string (value hidden)",
        ),
        (
            "[database]\nurl = \"postgres//app:s3cret@db/app\"\n".to_string(),
            "trigpoll.toml:2:7: database.url: must start with postgres://, postgresql://, mysql:// or sqlite:// (value hidden)",
        ),
        (
            format!("{MAIN}[poll]\nbatch_size = 5 5\n"),
            "trigpoll.toml:4:16: expected newline, `#`",
        ),
        (
            object("name = \"A\"\nkeys = [\"id\"]\n"),
            "trigpoll.toml:5:8: object[0].keys: an outbox object (no `table`) takes no capture \
             settings: applications write its events, with their payload, into the event table",
        ),
        (
            object("name = \"A\"\ntable = \"t\"\ntrack = [\"a\"]\nignore = [\"b\"]\n"),
            "trigpoll.toml:7:10: object[0].ignore: `track` and `ignore` exclude each other: an \
             Update makes an event when one of these columns changed, or, with `ignore`, when \
             another one did",
        ),
        (
            object(
                "name = \"A\"\ntable = \"t\"\nattributes = [\"a\"]\nexclude_attributes = [\"b\"]\n",
            ),
            "trigpoll.toml:7:22: object[0].exclude_attributes: `attributes` and \
             `exclude_attributes` exclude each other: the business object carries these columns, \
             or, with `exclude_attributes`, all others",
        ),
        (
            object("name = \"A\"\ntable = \"t\"\ncoalesce = true\nchanges = true\n"),
            "trigpoll.toml:7:11: object[0].changes: `changes` and `coalesce` do not go together: \
             each Update's changes differ, and coalescing would deliver only the last of them",
        ),
        (
            object("name = \"A\"\ntable = \"t\"\nignore_users = [\"sync\"]\n"),
            "trigpoll.toml:6:16: object[0].ignore_users: SQLite has no database users: changes \
             cannot be told apart by who made them",
        ),
        (
            object("name = \"A\"\ntable = \"t\"\nverbs = [\"Create\", \"Truncate\"]\n"),
            "trigpoll.toml:6:20: object[0].verbs[1]: verb Truncate is captured on PostgreSQL only: \
             SQLite has no TRUNCATE: its `DELETE FROM` a whole table is captured as the Delete of \
             each row",
        ),
        (
            object(
                "name = \"A\"\ntable = \"t\"\nverbs = [\"Create\"]\n[object.when]\ndelete = \"OLD.a > 0\"\n",
            ),
            "trigpoll.toml:8:10: object[0].when.delete: the object does not capture Delete (see \
             `verbs`)",
        ),
        (
            object("name = \"A\"\ntable = \"t\"\n[[object.rule]]\nverb = \"Close\"\n"),
            "trigpoll.toml:6:1: object[0].rule[0].on: missing field `on`",
        ),
        (
            object("name = \"A\"\ntable = \"t\"\n[[object.rule]]\non = \"Update\"\n"),
            "trigpoll.toml:7:6: object[0].rule[0].on: \"Update\" is not a row action: write \
             create, update or delete",
        ),
        (
            object("name = \"A\"\ntable = \"t\"\n[[object.rule]]\non = [\"update\", \"truncate\"]\n"),
            "trigpoll.toml:7:17: object[0].rule[0].on[1]: \"truncate\" is not a row action: \
             write create, update or delete",
        ),
        (
            object("name = \"A\"\ntable = \"t\"\n[[object.rule]]\non = []\n"),
            "trigpoll.toml:7:6: object[0].rule[0].on: must name at least one row action: create, \
             update or delete",
        ),
        (
            object("name = \"A\"\ntable = \"t\"\n[[object.rule]]\non = [\"update\", \"update\"]\n"),
            "trigpoll.toml:7:17: object[0].rule[0].on[1]: action update is listed twice",
        ),
        (
            object(
                "name = \"A\"\ntable = \"t\"\nverbs = [\"Update\"]\n[[object.rule]]\non = [\"update\", \"delete\"]\n",
            ),
            "trigpoll.toml:8:6: object[0].rule[0].on: the object does not capture Delete (see \
             `verbs`)",
        ),
        (
            object("name = \"A\"\ntable = \"t\"\n[[object.rule]]\non = \"update\"\nverb = \"Account.Close\"\n"),
            "trigpoll.toml:8:8: object[0].rule[0].verb: verb \"Account.Close\" must be made of \
             letters, digits, `_` and `-`: subscriptions (Object.Verb) and broker subjects name it",
        ),
        (
            object("name = \"A\"\ntable = \"t\"\n[[object.rule]]\non = \"update\"\nskip = true\ncomment = \"x\"\n"),
            "trigpoll.toml:9:11: object[0].rule[0].comment: a rule with `skip = true` makes no \
             event, which would carry its `comment`",
        ),
        (
            object(
                "name = \"A\"\ntable = \"t\"\n[[object.rule]]\non = [\"update\", \"delete\"]\ncomment = \"x\"\n\
                 [[object.rule]]\non = \"create\"\n[[object.rule]]\non = [\"delete\", \"update\"]\nwhen = \"OLD.a > 0\"\n",
            ),
            "trigpoll.toml:12:6: object[0].rule[2].on: never tried: object[0].rule[0] has no `when`, so it \
             decides every change of these actions first",
        ),
        (
            object("name = \"A\"\ntable = \"t\"\n[[object.rule]]\non = \"update\"\npriority = -2\n"),
            "trigpoll.toml:8:12: object[0].rule[0].priority: -2 is out of range: must be at least 0",
        ),
        (
            object("name = \"A\"\ntable = \"t\"\n[[object.rule]]\non = \"update\"\nwhen = \"\"\n"),
            "trigpoll.toml:8:8: object[0].rule[0].when: must not be empty",
        ),
        (
            object("name = \"A\"\ntable = \"t\"\n[[object.rule]]\non = \"update\"\nverbs = \"Close\"\n"),
            "trigpoll.toml:8:1: object[0].rule[0].verbs: unknown field `verbs`, expected one of \
             `on`, `when`, `skip`, `verb`, `priority`, `comment`",
        ),
        (
            object(
                "name = \"A\"\ntable = \"t\"\n[[object.child]]\nname = \"c\"\ntable = \"c\"\nparent_keys = [\"a\"]\n[[object.child.rule]]\non = \"erase\"\n",
            ),
            "trigpoll.toml:11:6: object[0].child[0].rule[0].on: \"erase\" is not a row action: \
             write create, update or delete",
        ),
        (
            object("name = \"A\"\n[[object.rule]]\non = \"update\"\n"),
            "trigpoll.toml:5:1: object[0].rule: an outbox object (no `table`) takes no capture \
             settings: applications write its events, with their payload, into the event table",
        ),
        (
            object("name = \"A\"\ntable = \"t\"\n[object.when]\nremove = \"OLD.a > 0\"\n"),
            "trigpoll.toml:7:1: object[0].when.remove: unknown field `remove`, expected one of \
             `create`, `update`, `delete`",
        ),
        (
            object(
                "name = \"A\"\ntable = \"t\"\n[[object.child]]\nname = \"lines\"\ntable = \"line\"\n",
            ),
            "trigpoll.toml:6:1: object[0].child[0].parent_keys: missing field `parent_keys`",
        ),
        (
            object(
                "name = \"A\"\ntable = \"t\"\n[[object.child]]\nname = \"lines\"\ntable = \"t\"\nparent_keys = [\"a\"]\n",
            ),
            "trigpoll.toml:8:9: object[0].child[0].table: table t is already bound by object[0].table",
        ),
        (
            object("name = \"A\"\ntable = '\"unclosed'\n"),
            "trigpoll.toml:5:9: object[0].table: \"\\\"unclosed\" is not of the form schema.table \
             or table (a part may be in double quotes)",
        ),
        (
            object("table = \"t\"\n"),
            "trigpoll.toml:3:1: object[0].name: missing field `name`",
        ),
        (
            object("name = \"  \"\ntable = \"t\"\n"),
            "trigpoll.toml:4:8: object[0].name: must not be empty",
        ),
        (
            object("name = \"A\"\ntable = \"t\"\ncolumns = [\"a\"]\n"),
            "trigpoll.toml:6:1: object[0].columns: unknown field `columns`, expected one of \
             `name`, `table`, `keys`, `verbs`, `priority`, `coalesce`, `track`, `ignore`, \
             `attributes`, `exclude_attributes`, `changes`, `ignore_users`, `when`, `rule`, `child`",
        ),
        (
            object("name = \"A\"\ntable = \"public.\"\n"),
            "trigpoll.toml:5:9: object[0].table: \"public.\" is not of the form schema.table or \
             table (a part may be in double quotes)",
        ),
        (
            object("name = \"A\"\ntable = \".emp\"\n"),
            "trigpoll.toml:5:9: object[0].table: \".emp\" is not of the form schema.table or \
             table (a part may be in double quotes)",
        ),
        (
            object("name = \"A\"\ntable = \"t\"\nkeys = []\n"),
            "trigpoll.toml:6:8: object[0].keys: must list at least one column; leave it out to use the primary key",
        ),
        (
            object("name = \"A\"\ntable = \"t\"\nkeys = [\"a\",\n  \"\"]\n"),
            "trigpoll.toml:7:3: object[0].keys[1]: must not be empty",
        ),
        (
            object("name = \"A\"\ntable = \"t\"\nkeys = [\"a\", \"b\", \"a\"]\n"),
            "trigpoll.toml:6:19: object[0].keys[2]: column \"a\" is listed twice",
        ),
        (
            object("name = \"A\"\ntable = \"t\"\nverbs = []\n"),
            "trigpoll.toml:6:9: object[0].verbs: must list at least one verb; leave it out for all three",
        ),
        (
            object("name = \"A\"\ntable = \"t\"\nverbs = [\"Create\",\n  \"create\"]\n"),
            "trigpoll.toml:7:3: object[0].verbs[1]: unknown variant `create`, expected one of \
             `Create`, `Update`, `Delete`, `Truncate`",
        ),
        (
            object("name = \"A\"\ntable = \"t\"\nverbs = [\"Delete\", \"Delete\"]\n"),
            "trigpoll.toml:6:20: object[0].verbs[1]: verb Delete is listed twice",
        ),
        (
            object("name = \"A\"\ntable = \"t\"\npriority = -1\n"),
            "trigpoll.toml:6:12: object[0].priority: -1 is out of range: must be at least 0",
        ),
        (
            object("name = \"A\"\ntable = \"t\"\npriority = \"high\"\n"),
            "trigpoll.toml:6:12: object[0].priority: invalid type: string \"high\", expected an integer",
        ),
        (
            object("name = \"A\"\ntable = \"a\"\n[[object]]\nname = \"A\"\ntable = \"b\"\n"),
            "trigpoll.toml:7:8: object[1].name: object \"A\" is already defined by object[0]",
        ),
        (
            object("name = \"A\"\ntable = \"s.t\"\n[[object]]\nname = \"B\"\ntable = \"s.t\"\n"),
            "trigpoll.toml:8:9: object[1].table: table s.t is already bound by object[0].table",
        ),
        (
            format!("{MAIN}[poll]\nconnectors_dir = \"trigpoll-no-such-dir\"\n"),
            "trigpoll.toml:4:18: poll.connectors_dir: cannot read folder trigpoll-no-such-dir: \
             No such file or directory",
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(err(&text), expected, "for:\n{text}");
    }
}

#[test]
fn variables_defaults_and_dollars_expand() {
    let vars = [("T_HOST", "db.example"), ("T_EMPTY", ""), ("T_NUM", "42")];
    let cases = [
        ("a = \"${T_HOST}\"", "a = \"db.example\""),
        ("a = \"${T_HOST:-other}\"", "a = \"db.example\""),
        ("a = \"${T_UNSET:-other}\"", "a = \"other\""),
        ("a = \"${T_EMPTY:-other}\"", "a = \"other\""),
        ("a = \"${T_EMPTY}\"", "a = \"\""),
        ("a = \"${T_UNSET:-}\"", "a = \"\""),
        ("a = \"$${T_HOST} $5 $\"", "a = \"${T_HOST} $5 $\""),
        ("a = 'x${T_HOST}'", "a = 'xdb.example'"),
        (
            "a = \"\"\"\n${T_HOST}\"\"\"",
            "a = \"\"\"\ndb.example\"\"\"",
        ),
        ("a = 1 # ${T_UNSET} $$", "a = 1 # ${T_UNSET} $$"),
        (
            "a = \"#\" # ${T_UNSET}\nb = \"${T_HOST}\"",
            "a = \"#\" # ${T_UNSET}\nb = \"db.example\"",
        ),
        ("a = \"\\\"${T_HOST}\"", "a = \"\\\"db.example\""),
        ("n = ${T_NUM}", "n = 42"),
    ];
    for (text, expected) in cases {
        let expansion = expand_with(text, &vars);
        assert!(
            expansion.problems.is_empty(),
            "{text}: {}",
            expansion.problems[0].message
        );
        assert_eq!(expansion.text, expected, "for {text}");
    }
}

#[test]
fn malformed_references_are_refused() {
    let cases = [
        (
            "a = \"${T_X\"",
            "unterminated ${ (no closing } on this line; write $$ for a literal $)",
        ),
        (
            "a = \"${1X}\"",
            "invalid variable reference ${1X}: expected ${NAME} or ${NAME:-default}",
        ),
        (
            "a = \"${}\"",
            "invalid variable reference ${}: expected ${NAME} or ${NAME:-default}",
        ),
        (
            "a = \"${T_X-d}\"",
            "invalid variable reference ${T_X-d}: expected ${NAME} or ${NAME:-default}",
        ),
        (
            "a = \"${T_UNSET}\"",
            "environment variable T_UNSET is not set",
        ),
    ];
    for (text, expected) in cases {
        let expansion = expand_with(text, &[]);
        let messages: Vec<_> = expansion.problems.iter().map(|p| &p.message).collect();
        assert_eq!(messages, [expected], "for {text}");
    }
}

#[test]
fn values_are_escaped_for_basic_strings() {
    let value = "sqlite://p\"a\\ss\nword\t\u{1}";
    std::env::set_var("TRIGPOLL_TEST_ESCAPED_URL", value);
    let text = "[database]\nurl = \"${TRIGPOLL_TEST_ESCAPED_URL}\"\n[poll]\nbatch_size = 0\n";
    let message = err(text);
    assert_eq!(
        message,
        "trigpoll.toml:4:14: poll.batch_size: 0 is out of range: must be between 1 and 100000",
        "the value must not add lines"
    );
    let dir = folder(&text.replace("batch_size = 0", ""), &[]);
    assert_eq!(load(&dir).unwrap().database.url.expose(), value);
}

#[test]
fn literal_strings_take_values_verbatim_or_refuse_them() {
    let expansion = expand_with("a = 'C:${T_DIR}'", &[("T_DIR", "\\temp")]);
    assert!(expansion.problems.is_empty());
    assert_eq!(expansion.text, "a = 'C:\\temp'");
    let expansion = expand_with("a = 'x'\nb = '${T_Q}'", &[("T_Q", "it's")]);
    let messages: Vec<_> = expansion.problems.iter().map(|p| &p.message).collect();
    assert_eq!(
        messages,
        [
            "the value of T_Q holds a ' or a control character and cannot be put in a '…' \
          literal string; use a \"…\" string"
        ]
    );
}

#[test]
fn an_unset_variable_names_file_line_and_key() {
    assert_eq!(
        err("[database]\nurl = \"${TRIGPOLL_TEST_UNSET_URL}\"\n"),
        "trigpoll.toml:2:8: database.url: environment variable TRIGPOLL_TEST_UNSET_URL is not set"
    );
    assert_eq!(
        err(&format!("{MAIN}[poll]\nbatch_size = ${{TRIGPOLL_TEST_UNSET_BATCH}}\n")),
        "trigpoll.toml:4:14: poll.batch_size: environment variable TRIGPOLL_TEST_UNSET_BATCH is not set"
    );
    assert_eq!(
        connector_err("id = \"a\"\nsubscribe = [\"*.*\",\n \"${TRIGPOLL_TEST_UNSET_SUB}\"]\n[sink]\ntype = \"stdout\"\n"),
        "DIR/connectors/c.toml:3:3: subscribe[1]: environment variable TRIGPOLL_TEST_UNSET_SUB is not set"
    );
}

#[test]
fn a_set_variable_is_used_and_columns_count_in_the_file() {
    std::env::set_var("TRIGPOLL_TEST_SET_DELIM", "|");
    assert_eq!(
        err("poll = { key_delimiter = \"${TRIGPOLL_TEST_SET_DELIM}\", batch_size = 0 }\n"),
        "trigpoll.toml:1:69: poll.batch_size: 0 is out of range: must be between 1 and 100000"
    );
    let dir = folder(
        &format!("{MAIN}[poll]\nkey_delimiter = \"${{TRIGPOLL_TEST_SET_DELIM}}\"\n"),
        &[],
    );
    assert_eq!(load(&dir).unwrap().poll.key_delimiter, "|");
}

#[test]
fn connectors_load_in_file_name_order() {
    let dir = folder(
        MAIN,
        &[
            ("b.toml", "id = \"second\"\nsubscribe = [\"*.*\"]\n[sink]\ntype = \"stdout\"\n"),
            ("a.toml", "id = \"first\"\nsubscribe = [\"Employee.*\", \"*.Delete\"]\n[sink]\ntype = \"stdout\"\nmax_attempts = 3\nbackoff = \"250ms\"\n"),
            ("notes.txt", "not a connector"),
        ],
    );
    let config = load(&dir).unwrap();
    let ids: Vec<_> = config.connectors.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["first", "second"]);
    let first = &config.connectors[0];
    assert_eq!(first.source, dir.path().join("connectors").join("a.toml"));
    let patterns: Vec<_> = first.subscribe.iter().map(ToString::to_string).collect();
    assert_eq!(patterns, ["Employee.*", "*.Delete"]);
    assert!(matches!(first.sink, SinkConfig::Stdout));
    assert_eq!(first.max_attempts, 3);
    assert_eq!(first.backoff, Duration::from_millis(250));
    let second = &config.connectors[1];
    assert_eq!(second.max_attempts, 10);
    assert_eq!(second.backoff, Duration::from_secs(1));
}

#[test]
fn a_configured_connectors_dir_is_relative_to_the_config_file() {
    let dir = folder(&format!("{MAIN}[poll]\nconnectors_dir = \"conn.d\"\n"), &[]);
    std::fs::create_dir(dir.path().join("conn.d")).unwrap();
    std::fs::write(
        dir.path().join("conn.d/x.toml"),
        "id = \"x\"\nsubscribe = [\"*\"]\n[sink]\ntype = \"stdout\"\n",
    )
    .unwrap();
    let config = load(&dir).unwrap();
    assert_eq!(config.connectors[0].id, "x");
}

#[test]
fn file_sink_paths_are_relative_to_the_connector_file() {
    let dir = folder(
        MAIN,
        &[(
            "f.toml",
            "id = \"f\"\nsubscribe = [\"*.*\"]\n[sink]\ntype = \"file\"\npath = \"../out.ndjson\"\n",
        )],
    );
    let config = load(&dir).unwrap();
    let SinkConfig::File { path } = &config.connectors[0].sink else {
        panic!("a file sink expected")
    };
    assert_eq!(path, &dir.path().join("connectors").join("../out.ndjson"));

    let absolute = std::env::temp_dir().join("trigpoll-abs.ndjson");
    let connector = connector_ok(&format!(
        "id = \"f\"\nsubscribe = [\"*.*\"]\n[sink]\ntype = \"file\"\npath = {:?}\n",
        absolute.display().to_string()
    ));
    let SinkConfig::File { path } = connector.sink else {
        panic!("a file sink expected")
    };
    assert_eq!(path, absolute);
}

/// `ca_file` is taken from the connector file's folder and read when the configuration is
/// loaded: a file that cannot be used is a configuration error naming file, line and key.
#[test]
fn ca_files_are_relative_to_the_connector_file_and_read_at_once() {
    let ca = "-----BEGIN CERTIFICATE-----\n\
        MIIBeTCCAR+gAwIBAgIUYjVr0R3ZbH8sHk0XoH6Yb5VfR2QwCgYIKoZIzj0EAwIw\n\
        -----END CERTIFICATE-----\n";
    let head = "id = \"c\"\nsubscribe = [\"*.*\"]\n[sink]\ntype = \"http\"\n\
                url = \"https://h/e\"\nsecret = \"s\"\n";
    let dir = folder(
        MAIN,
        &[("c.toml", &format!("{head}ca_file = \"../ca.pem\"\n"))],
    );
    std::fs::write(dir.path().join("ca.pem"), ca).unwrap();
    let config = load(&dir).unwrap();
    let SinkConfig::Http(http) = &config.connectors[0].sink else {
        panic!("an http sink expected")
    };
    assert_eq!(
        http.ca_file.as_deref(),
        Some(dir.path().join("connectors").join("../ca.pem").as_path())
    );
    assert_eq!(
        connector_err(&format!("{head}ca_file = \"missing.pem\"\n")),
        "DIR/connectors/c.toml:7:11: sink.ca_file: cannot read DIR/connectors/missing.pem: \
         No such file or directory"
    );
    let dir = folder(
        MAIN,
        &[("c.toml", &format!("{head}ca_file = \"../ca.pem\"\n"))],
    );
    std::fs::write(dir.path().join("ca.pem"), "not a certificate\n").unwrap();
    let message = load(&dir).unwrap_err().to_string();
    assert!(
        message.contains("sink.ca_file: ") && message.contains("holds no PEM certificate"),
        "{message}"
    );
    assert!(
        connector_err("id = \"c\"\nsubscribe = [\"*.*\"]\n[sink]\ntype = \"file\"\npath = \"x\"\nca_file = \"ca.pem\"\n")
            .contains("`ca_file` is not a key of file sinks"),
    );
}

#[test]
fn http_sinks_have_defaults() {
    let connector = connector_ok(
        "id = \"hr\"\nsubscribe = [\"*.*\"]\n[sink]\ntype = \"http\"\nurl = \"https://h/e\"\nsecret = \"s3cr3t\"\n",
    );
    let SinkConfig::Http(http) = connector.sink else {
        panic!("an http sink expected")
    };
    assert_eq!(http.url, "https://h/e");
    assert_eq!(http.client_id, "trigpoll");
    assert_eq!(http.secrets, [Secret::new("s3cr3t")]);
    assert_eq!(http.signature, Signature::Trigpoll);
    assert_eq!(http.batch_size, 1);
    assert_eq!(http.timeout, Duration::from_secs(10));
    assert_eq!(http.concurrency, 8);
    assert_eq!(connector.max_attempts, 10);
    assert_eq!(connector.backoff, Duration::from_secs(1));

    let connector = connector_ok(
        "id = \"hr\"\nsubscribe = [\"*.*\"]\n[sink]\ntype = \"http\"\nurl = \"http://h/e\"\n\
         secret = \"s\"\nclient_id = \"me\"\ntimeout = \"2s\"\nconcurrency = 256\n",
    );
    let SinkConfig::Http(http) = connector.sink else {
        panic!("an http sink expected")
    };
    assert_eq!(http.client_id, "me");
    assert_eq!(http.timeout, Duration::from_secs(2));
    assert_eq!(http.concurrency, 256);
}

#[test]
fn http_sinks_take_standard_webhooks_rotated_secrets_and_batches() {
    let connector = connector_ok(
        "id = \"hr\"\nsubscribe = [\"*.*\"]\n[sink]\ntype = \"http\"\nurl = \"https://h/e\"\n\
         signature = \"standard-webhooks\"\nbatch_size = 50\n\
         secret = [\"whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD\", \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"]\n",
    );
    let SinkConfig::Http(http) = connector.sink else {
        panic!("an http sink expected")
    };
    assert_eq!(http.signature, Signature::StandardWebhooks);
    assert_eq!(http.batch_size, 50);
    assert_eq!(http.secrets.len(), 2);
    // A list works with the trigpoll scheme too (one signature per secret).
    let connector = connector_ok(
        "id = \"hr\"\nsubscribe = [\"*.*\"]\n[sink]\ntype = \"http\"\nurl = \"https://h/e\"\n\
         secret = [\"old\", \"new\"]\n",
    );
    let SinkConfig::Http(http) = connector.sink else {
        panic!("an http sink expected")
    };
    assert_eq!(http.secrets, [Secret::new("old"), Secret::new("new")]);
}

#[test]
fn broker_sinks_have_defaults() {
    let head = "id = \"b\"\nsubscribe = [\"*.*\"]\n[sink]\n";
    let nats = connector_ok(&format!(
        "{head}type = \"nats\"\nurl = \"nats://127.0.0.1:4222\"\nsubject = \"trigpoll.{{object}}.{{verb}}\"\n"
    ));
    let SinkConfig::Nats(config) = nats.sink else {
        panic!("a nats sink expected")
    };
    assert_eq!(config.url.expose(), "nats://127.0.0.1:4222");
    assert_eq!(config.subject.to_string(), "trigpoll.{object}.{verb}");
    assert_eq!(config.stream, None);
    assert_eq!(config.timeout, Duration::from_secs(10));
    assert_eq!(config.duplicate_window, Duration::from_secs(3600));

    // The duplicate window outlasts a long claim timeout.
    let dir = folder(
        &format!("{MAIN}[poll]\nclaim_timeout = \"2h\"\n"),
        &[(
            "n.toml",
            &format!(
                "{head}type = \"nats\"\nurl = \"tls://u:p@h\"\nsubject = \"a.{{object}}\"\n\
                 stream = \"TRIGPOLL\"\ntimeout = \"3s\"\n"
            ),
        )],
    );
    let SinkConfig::Nats(config) = &load(&dir).unwrap().connectors[0].sink else {
        panic!("a nats sink expected")
    };
    assert_eq!(config.duplicate_window, Duration::from_secs(4 * 3600));
    assert_eq!(config.stream.as_deref(), Some("TRIGPOLL"));
    assert_eq!(config.timeout, Duration::from_secs(3));

    let amqp = connector_ok(&format!(
        "{head}type = \"amqp\"\nurl = \"amqp://guest:guest@h:5672/%2f\"\nexchange = \"trigpoll\"\n"
    ));
    let SinkConfig::Amqp(config) = amqp.sink else {
        panic!("an amqp sink expected")
    };
    assert_eq!(config.exchange, "trigpoll");
    assert_eq!(config.routing_key.to_string(), "{object}.{verb}");

    let redis = connector_ok(&format!(
        "{head}type = \"redis\"\nurl = \"redis://h:6379/0\"\nstream = \"trigpoll:{{object}}\"\nmaxlen = 100000\n"
    ));
    let SinkConfig::Redis(config) = redis.sink else {
        panic!("a redis sink expected")
    };
    assert_eq!(
        config.stream.render("Employee", "Create", "b"),
        "trigpoll:Employee"
    );
    assert_eq!(config.maxlen, Some(100_000));
}

#[test]
fn broker_sink_errors_name_file_line_and_key() {
    let head = "id = \"c\"\nsubscribe = [\"*.*\"]\n[sink]\n";
    let nats = format!("{head}type = \"nats\"\nurl = \"nats://h\"\n");
    let amqp = format!("{head}type = \"amqp\"\nurl = \"amqp://h\"\n");
    let redis = format!("{head}type = \"redis\"\nurl = \"redis://h\"\n");
    let cases: Vec<(String, &str)> = vec![
        (
            format!("{head}type = \"nats\"\nurl = \"\"\nsubject = \"s\"\n"),
            "DIR/connectors/c.toml:5:7: sink.url: must not be empty",
        ),
        (
            format!("{head}type = \"nats\"\nurl = \"amqp://u:pw@h\"\nsubject = \"s\"\n"),
            "DIR/connectors/c.toml:5:7: sink.url: must start with nats:// or tls://",
        ),
        (
            format!("{head}type = \"amqp\"\nurl = \"http://u:pw@h\"\nexchange = \"x\"\n"),
            "DIR/connectors/c.toml:5:7: sink.url: must start with amqp:// or amqps://",
        ),
        (
            format!("{head}type = \"redis\"\nurl = \"nats://u:pw@h\"\nstream = \"s\"\n"),
            "DIR/connectors/c.toml:5:7: sink.url: must start with redis:// or rediss://",
        ),
        (
            format!("{head}type = \"nats\"\nsubject = \"s\"\n"),
            "DIR/connectors/c.toml:4:8: sink.url: missing field `url`, required by nats sinks",
        ),
        (
            nats.clone(),
            "DIR/connectors/c.toml:4:8: sink.subject: missing field `subject`, required by nats sinks",
        ),
        (
            format!("{nats}subject = \"trigpoll.{{object}}.{{action}}\"\n"),
            "DIR/connectors/c.toml:6:11: sink.subject: unknown placeholder {action} \
             (placeholders: {object}, {verb}, {connector})",
        ),
        (
            format!("{nats}subject = \"trigpoll.*.{{verb}}\"\n"),
            "DIR/connectors/c.toml:6:11: sink.subject: `trigpoll.*.{verb}` is not a NATS subject: \
             wildcards cannot be published to",
        ),
        (
            format!("{nats}subject = \"trigpoll..{{verb}}\"\n"),
            "DIR/connectors/c.toml:6:11: sink.subject: `trigpoll..{verb}` is not a NATS subject: \
             a token between dots is empty",
        ),
        (
            format!("{nats}subject = \"trigpoll.obj-{{object}}\"\nstream = \"S\"\n"),
            "DIR/connectors/c.toml:6:11: sink.subject: with `stream` set, every placeholder of \
             `trigpoll.obj-{object}` must be a whole token between dots: the stream captures \
             `trigpoll.obj-*`, and NATS wildcards stand for whole tokens",
        ),
        (
            format!("{nats}subject = \"a.{{object}}\"\nstream = \"my.stream\"\n"),
            "DIR/connectors/c.toml:7:10: sink.stream: stream name \"my.stream\" must not contain \
             spaces, `.`, `*`, `>`, `/` or `\\`",
        ),
        (
            format!("{nats}subject = \"a\"\nexchange = \"x\"\n"),
            "DIR/connectors/c.toml:7:12: sink.exchange: `exchange` is not a key of nats sinks \
             (their keys: type, url, subject, stream, timeout, ca_file, max_attempts, backoff)",
        ),
        (
            amqp.clone(),
            "DIR/connectors/c.toml:4:8: sink.exchange: missing field `exchange`, required by amqp sinks",
        ),
        (
            format!("{amqp}exchange = \"trig poll\"\n"),
            "DIR/connectors/c.toml:6:12: sink.exchange: exchange name \"trig poll\" must be at most \
             255 letters, digits, `-`, `_`, `.` and `:`",
        ),
        (
            format!("{amqp}exchange = \"x\"\nrouting_key = \"{{object}}.{{Verb}}\"\n"),
            "DIR/connectors/c.toml:7:15: sink.routing_key: unknown placeholder {Verb} \
             (placeholders: {object}, {verb}, {connector})",
        ),
        (
            format!("{amqp}exchange = \"x\"\nstream = \"s\"\n"),
            "DIR/connectors/c.toml:7:10: sink.stream: `stream` is not a key of amqp sinks \
             (their keys: type, url, exchange, routing_key, timeout, ca_file, max_attempts, \
             backoff)",
        ),
        (
            format!("{redis}stream = \"trigpoll:{{object\"\n"),
            "DIR/connectors/c.toml:6:10: sink.stream: unclosed `{` (write `{{` for a literal \
             brace; placeholders: {object}, {verb}, {connector})",
        ),
        (
            format!("{redis}stream = \"s\"\nmaxlen = 0\n"),
            "DIR/connectors/c.toml:7:10: sink.maxlen: 0 is out of range: must be at least 1",
        ),
        (
            format!("{redis}stream = \"s\"\ntimeout = \"0s\"\n"),
            "DIR/connectors/c.toml:7:11: sink.timeout: must be greater than zero",
        ),
        (
            format!("{head}type = \"http\"\nurl = \"http://h\"\nsecret = \"s\"\nsignature = \"hmac\"\n"),
            "DIR/connectors/c.toml:7:13: sink.signature: unknown variant `hmac`, expected \
             `trigpoll` or `standard-webhooks`",
        ),
        (
            format!("{head}type = \"http\"\nurl = \"http://h\"\nsecret = []\n"),
            "DIR/connectors/c.toml:6:10: sink.secret: must list at least one secret",
        ),
        (
            format!("{head}type = \"http\"\nurl = \"http://h\"\nsecret = \"s\"\nbatch_size = 1001\n"),
            "DIR/connectors/c.toml:7:14: sink.batch_size: 1001 is out of range: must be between 1 and 1000",
        ),
        (
            format!("{head}type = \"http\"\nurl = \"http://h\"\nsignature = \"standard-webhooks\"\nsecret = \"s3cret\"\n"),
            "DIR/connectors/c.toml:7:10: sink.secret: not a Standard Webhooks secret: expected \
             `whsec_` followed by the key in base64",
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(connector_err(&text), expected, "for:\n{text}");
    }
}

#[test]
fn duplicate_connector_ids_name_both_files() {
    let connector = "id = \"same\"\nsubscribe = [\"*.*\"]\n[sink]\ntype = \"stdout\"\n";
    let dir = folder(MAIN, &[("a.toml", connector), ("b.toml", connector)]);
    let message = load(&dir).unwrap_err().to_string();
    let connectors = dir.path().join("connectors");
    assert_eq!(
        message,
        format!(
            "{}:1:6: id: connector id \"same\" is already used by {}",
            connectors.join("b.toml").display(),
            connectors.join("a.toml").display()
        )
    );
}

#[test]
fn connector_errors_name_file_line_and_key() {
    let head = "id = \"c\"\nsubscribe = [\"*.*\"]\n[sink]\n";
    let http = format!("{head}type = \"http\"\nurl = \"http://h\"\nsecret = \"s\"\n");
    let cases: Vec<(String, &str)> = vec![
        (
            "id = \"a b\"\nsubscribe = [\"*.*\"]\n[sink]\ntype = \"stdout\"\n".into(),
            "DIR/connectors/c.toml:1:6: id: connector id \"a b\" must be made of letters, digits, `_`, `.` and `-`",
        ),
        (
            "subscribe = [\"*.*\"]\n[sink]\ntype = \"stdout\"\n".into(),
            "DIR/connectors/c.toml:1:1: id: missing field `id`",
        ),
        (
            "id = \"c\"\nsubscribe = []\n[sink]\ntype = \"stdout\"\n".into(),
            "DIR/connectors/c.toml:2:13: subscribe: must list at least one pattern, e.g. \"Employee.*\"",
        ),
        (
            "id = \"c\"\nsubscribe = [\n  \"Employee.*\",\n  \"Employee\",\n]\n[sink]\ntype = \"stdout\"\n".into(),
            "DIR/connectors/c.toml:4:3: subscribe[1]: subscription \"Employee\" is not of the form Object.Verb",
        ),
        (
            "id = \"c\"\nsubscribe = [\"Employee.*\", \"Emp*.Create\"]\n[sink]\ntype = \"stdout\"\n".into(),
            "DIR/connectors/c.toml:2:28: subscribe[1]: subscription \"Emp*.Create\": `*` must stand alone on its side of the dot (partial wildcards such as Emp* are not supported); write Object.Verb, Object.*, *.Verb or *.*",
        ),
        (
            "id = \"c\"\nsubscribe = [\"*.*\"]\n".into(),
            "DIR/connectors/c.toml:1:1: sink: missing field `sink`",
        ),
        (
            "id = \"c\"\nsubscribe = [\"*.*\"]\nname = \"x\"\n[sink]\ntype = \"stdout\"\n".into(),
            "DIR/connectors/c.toml:3:1: name: unknown field `name`, expected one of `id`, `subscribe`, `sink`",
        ),
        (
            format!("{head}type = \"kafka\"\n"),
            "DIR/connectors/c.toml:4:8: sink.type: unknown variant `kafka`, expected one of `stdout`, `file`, `http`, `nats`, `amqp`, `redis`",
        ),
        (
            format!("{head}path = \"x\"\n"),
            "DIR/connectors/c.toml:3:1: sink.type: missing field `type`",
        ),
        (
            format!("{head}type = \"stdout\"\nretries = 3\n"),
            "DIR/connectors/c.toml:5:1: sink.retries: unknown field `retries`, expected one of `type`, \
             `path`, `url`, `client_id`, `secret`, `signature`, `timeout`, `concurrency`, \
             `batch_size`, `subject`, `stream`, `exchange`, `routing_key`, `maxlen`, `ca_file`, \
             `max_attempts`, `backoff`",
        ),
        (
            format!("{http}path = \"out.ndjson\"\n"),
            "DIR/connectors/c.toml:7:8: sink.path: `path` is not a key of http sinks (their keys: \
             type, url, client_id, secret, signature, timeout, concurrency, batch_size, ca_file, \
             max_attempts, backoff)",
        ),
        (
            format!("{head}type = \"file\"\npath = \"x\"\nurl = \"http://h\"\n"),
            "DIR/connectors/c.toml:6:7: sink.url: `url` is not a key of file sinks (their keys: \
             type, path, max_attempts, backoff)",
        ),
        (
            format!("{head}type = \"stdout\"\ntimeout = \"1s\"\n"),
            "DIR/connectors/c.toml:5:11: sink.timeout: `timeout` is not a key of stdout sinks \
             (their keys: type, max_attempts, backoff)",
        ),
        (
            format!("{head}type = \"file\"\n"),
            "DIR/connectors/c.toml:4:8: sink.path: missing field `path`, required by file sinks",
        ),
        (
            format!("{head}type = \"http\"\nsecret = \"s\"\n"),
            "DIR/connectors/c.toml:4:8: sink.url: missing field `url`, required by http sinks",
        ),
        (
            format!("{head}type = \"http\"\nurl = \"http://h\"\n"),
            "DIR/connectors/c.toml:4:8: sink.secret: missing field `secret`, required by http sinks",
        ),
        (
            format!("{head}type = \"http\"\nurl = \"ftp://u:pw@h\"\nsecret = \"s\"\n"),
            "DIR/connectors/c.toml:5:7: sink.url: must start with http:// or https://",
        ),
        (
            format!("{http}concurrency = 0\n"),
            "DIR/connectors/c.toml:7:15: sink.concurrency: 0 is out of range: must be between 1 and 256",
        ),
        (
            format!("{http}concurrency = 257\n"),
            "DIR/connectors/c.toml:7:15: sink.concurrency: 257 is out of range: must be between 1 and 256",
        ),
        (
            format!("{http}timeout = \"0s\"\n"),
            "DIR/connectors/c.toml:7:11: sink.timeout: must be greater than zero",
        ),
        (
            format!("{http}client_id = \"\"\n"),
            "DIR/connectors/c.toml:7:13: sink.client_id: must not be empty",
        ),
        (
            format!("{head}type = \"stdout\"\nmax_attempts = 0\n"),
            "DIR/connectors/c.toml:5:16: sink.max_attempts: 0 is out of range: must be at least 1",
        ),
        (
            format!("{head}type = \"stdout\"\nbackoff = \"soon\"\n"),
            "DIR/connectors/c.toml:5:11: sink.backoff: invalid duration \"soon\": expected number at 0",
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(connector_err(&text), expected, "for:\n{text}");
    }
}

#[test]
fn secrets_stay_out_of_messages_and_debug_output() {
    let message = connector_err(
        "id = \"c\"\nsubscribe = [\"*.*\"]\n[sink]\ntype = \"http\"\nurl = \"http://h\"\nsecret = 987654321\n",
    );
    assert_eq!(
        message,
        "DIR/connectors/c.toml:6:10: sink.secret: invalid type: expected a string or a list of strings (value hidden)"
    );
    let message = connector_err(
        "id = \"c\"\nsubscribe = [\"*.*\"]\n[sink]\ntype = \"http\"\nurl = \"http://h\"\nsecret = [\"a\", 987654321]\n",
    );
    assert_eq!(
        message,
        "DIR/connectors/c.toml:6:16: sink.secret[1]: invalid type: expected a string (value hidden)"
    );
    let message = connector_err(
        "id = \"c\"\nsubscribe = [\"*.*\"]\n[sink]\ntype = \"http\"\nsignature = \"standard-webhooks\"\n\
         url = \"http://h\"\nsecret = [\"whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD\", \"whsec_987654321!\"]\n",
    );
    assert_eq!(
        message,
        "DIR/connectors/c.toml:7:53: sink.secret[1]: not a Standard Webhooks secret: expected \
         `whsec_` followed by the key in base64"
    );

    let main = "[database]\nurl = \"postgres://u:db-password@h/db\"\n";
    let dir = folder(
        main,
        &[(
            "c.toml",
            "id = \"c\"\nsubscribe = [\"*.*\"]\n[sink]\ntype = \"http\"\nurl = \"http://h\"\nsecret = \"hmac-key\"\n",
        )],
    );
    let debug = format!("{:?}", load(&dir).unwrap());
    assert!(!debug.contains("db-password"), "{debug}");
    assert!(!debug.contains("hmac-key"), "{debug}");

    let dir = folder(
        MAIN,
        &[(
            "c.toml",
            "id = \"c\"\nsubscribe = [\"*.*\"]\n[sink]\ntype = \"amqp\"\n\
             url = \"amqp://app:broker-password@h/%2f\"\nexchange = \"x\"\n",
        )],
    );
    let debug = format!("{:?}", load(&dir).unwrap());
    assert!(!debug.contains("broker-password"), "{debug}");
}

#[test]
fn the_example_configuration_loads() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = Config::load(&root.join("config.example.toml")).unwrap();
    let objects: Vec<_> = config
        .objects
        .iter()
        .map(|o| {
            let table = o.table.as_ref().map(|t| t.to_string()).unwrap_or_default();
            (o.name.as_str(), table, o.keys.clone())
        })
        .collect();
    assert_eq!(
        objects,
        [
            (
                "Employee",
                "public.employee".to_string(),
                Some(vec!["emp_id".to_string()])
            ),
            ("Department", "public.department".to_string(), None),
            ("Account", "public.account".to_string(), None),
            ("InvoiceIssued", String::new(), None),
        ]
    );
    // Infranet's account example: its rules, and its contacts'.
    let account = &config.objects[2];
    let comments = |rules: &[Rule]| -> Vec<Option<String>> {
        rules.iter().map(|r| r.comment.clone()).collect()
    };
    assert_eq!(
        comments(&account.rules),
        [
            Some("Account Creation".into()),
            Some("Status Updated".into()),
            None
        ]
    );
    assert_eq!(
        comments(&account.children[0].rules),
        [
            Some("new contact".into()),
            Some("contact_update".into()),
            Some("contact_delete".into()),
            None
        ]
    );
    let connectors: Vec<_> = config.connectors.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(
        connectors,
        [
            "events-amqp",
            "audit-file",
            "hr-sync",
            "events-nats",
            "events-redis",
            "console"
        ]
    );
    assert!(matches!(config.connectors[0].sink, SinkConfig::Amqp(_)));
    assert!(matches!(
        &config.connectors[1].sink,
        SinkConfig::File { path } if *path == root.join("connectors/../trigpoll-events.ndjson")
    ));
    assert!(matches!(config.connectors[2].sink, SinkConfig::Http(_)));
    assert!(matches!(config.connectors[3].sink, SinkConfig::Nats(_)));
    assert!(matches!(config.connectors[4].sink, SinkConfig::Redis(_)));
    assert!(matches!(config.connectors[5].sink, SinkConfig::Stdout));
    // And they build, without a network.
    for connector in config.connectors {
        crate::connector::Connector::new(connector).unwrap();
    }
}

#[test]
fn archive_retention_is_read_and_checked() {
    let dir = folder(&format!("{MAIN}[archive]\nretention = \"30d\"\n"), &[]);
    assert_eq!(
        load(&dir).unwrap().archive.retention,
        Some(Duration::from_secs(30 * 86_400))
    );
    assert_eq!(load(&folder(MAIN, &[])).unwrap().archive.retention, None);
    assert_eq!(
        err(&format!("{MAIN}[archive]\nretention = \"0s\"\n")),
        "trigpoll.toml:4:13: archive.retention: must be greater than zero"
    );
    assert_eq!(
        err(&format!("{MAIN}[archive]\nkeep = \"1d\"\n")),
        "trigpoll.toml:4:1: archive.keep: unknown field `keep`, expected `retention`"
    );
}

#[test]
fn every_toml_syntax_error_says_what_is_wrong() {
    // Found by fuzzing: toml has no message for a control character in a comment.
    assert_eq!(
        err(&format!("{MAIN}# a\u{7f}b\n")),
        "trigpoll.toml:3:4: invalid TOML: unexpected character '\\u{7f}'"
    );
}
