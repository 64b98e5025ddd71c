//! The SQL trigpoll generates for each backend, checked against `sql/<backend>.sql` without a
//! database. Those files are also the reference a DBA can read before running
//! `install-triggers`. After an intended change, regenerate them with
//! `TRIGPOLL_BLESS=1 cargo test --test sql_scripts` and review the diff.

use std::collections::HashMap;
use std::path::Path;

use trigpoll::config::{Config, TableName};
use trigpoll::dialect::{Capture, Dialect};
use trigpoll::table::{Column, ColumnKind, TableInfo};

/// The sample configuration: every capture setting appears in it. `{url}` names the backend
/// (SQLite refuses `ignore_users`), `{users}` is the `ignore_users` line where it is taken.
const CONFIG: &str = r#"
[database]
url = "{url}"

[[object]]
name = "Employee"
table = "employee"
priority = 1
track = ["last_name", "dept_id", "salary"]
exclude_attributes = ["photo"]
changes = true
{users}
[object.when]
create = "NEW.dept_id IS NOT NULL"
update = "NEW.salary > 0 OR OLD.salary > 0"
delete = "OLD.last_name <> 'test'"

[[object.rule]]
on = "update"
when = "OLD.dept_id IS NOT NULL AND NEW.dept_id IS NULL"
verb = "Leave"
priority = 0
comment = "left the department"

[[object.rule]]
on = ["update", "delete"]
when = "OLD.last_name = 'it''s me'"
skip = true

[[object.rule]]
on = "create"
comment = "hired"

[[object]]
name = "Department"
table = "department"
verbs = ["Create", "Delete"]

[[object]]
name = "OrderLine"
table = "order_line"
attributes = ["qty"]

[[object.rule]]
on = "delete"
when = "OLD.qty > 0"
verb = "Cancel"

[[object]]
name = "Order"
table = '"Orders"'
coalesce = true
ignore = ["mod_time"]

[[object.child]]
name = "items"
table = "order_item"
parent_keys = ["order_id"]
order_by = ["line_no"]
exclude_attributes = ["note"]

[[object.child.rule]]
on = "create"
comment = "new item"

[[object.child.rule]]
on = ["update", "delete"]
when = "OLD.qty = 0"
skip = true

[[object.child.rule]]
on = "delete"
verb = "ItemRemoved"
priority = 2

[[object.child.child]]
name = "notes"
table = "order_item_note"
parent_keys = ["order_id", "line_no"]

[[object]]
name = "InvoiceIssued"
"#;

/// A column: name, this backend's type, nullable, kind.
type Spec<'a> = (&'a str, &'a str, bool, ColumnKind);

fn table(name: &str, columns: &[Spec], primary_key: &[&str]) -> TableInfo {
    TableInfo {
        name: TableName {
            schema: None,
            name: name.to_string(),
        },
        columns: columns
            .iter()
            .map(|(n, t, nullable, kind)| Column {
                name: n.to_string(),
                sql_type: t.to_string(),
                nullable: *nullable,
                kind: *kind,
            })
            .collect(),
        primary_key: primary_key.iter().map(|k| k.to_string()).collect(),
        partitioning: Default::default(),
    }
}

/// The sample schema as each backend describes it: (int, text, decimal, timestamp, bytes), and
/// the kind of its integer columns.
fn tables(types: [&str; 5], integer: ColumnKind) -> Vec<TableInfo> {
    use ColumnKind::*;
    let [int, text, dec, ts, bytes] = types;
    vec![
        table(
            "employee",
            &[
                ("emp_id", int, false, integer),
                ("last_name", text, true, Plain),
                ("dept_id", int, true, integer),
                ("salary", dec, true, Plain),
                ("hired", ts, true, NaiveTimestamp),
                ("photo", bytes, true, Bytes),
            ],
            &["emp_id"],
        ),
        table(
            "department",
            &[
                ("dept_id", int, false, integer),
                ("name", text, false, Plain),
            ],
            &["dept_id"],
        ),
        table(
            "order_line",
            &[
                ("contract_id", int, false, integer),
                ("header_id", text, false, Plain),
                ("qty", int, true, integer),
            ],
            &["contract_id", "header_id"],
        ),
        table(
            "Orders",
            &[
                ("order_id", int, false, integer),
                ("status", text, true, Plain),
                ("total", dec, true, Plain),
                ("mod_time", ts, true, NaiveTimestamp),
            ],
            &["order_id"],
        ),
        table(
            "order_item",
            &[
                ("order_id", int, false, integer),
                ("line_no", int, false, integer),
                ("qty", int, true, integer),
                ("note", text, true, Plain),
            ],
            &["order_id", "line_no"],
        ),
        table(
            "order_item_note",
            &[
                ("order_id", int, false, integer),
                ("line_no", int, false, integer),
                ("note_no", int, false, integer),
                ("body", text, true, Plain),
            ],
            &["order_id", "line_no", "note_no"],
        ),
    ]
}

fn script(backend: &str, types: [&str; 5]) -> String {
    let (url, users) = match backend {
        "sqlite" => ("sqlite://unused.db", ""),
        "mysql" => ("mysql://unused/db", "ignore_users = [\"sync\"]"),
        _ => ("postgres://unused/db", "ignore_users = [\"sync\"]"),
    };
    let text = CONFIG.replace("{url}", url).replace("{users}", users);
    let config = Config::from_str(&text, Path::new("tests/trigpoll.toml")).unwrap();
    let dialect = Dialect::new(backend, &config);
    // SQLite's integer columns can hold text, so it describes none as integer.
    let integer = match backend {
        "sqlite" => ColumnKind::Plain,
        _ => ColumnKind::Integer,
    };
    let tables: HashMap<TableName, TableInfo> = tables(types, integer)
        .into_iter()
        .map(|t| (t.name.clone(), t))
        .collect();
    let mut statements = dialect.create_tables();
    statements.extend(dialect.support_functions(&config.poll.key_delimiter));
    for object in config.objects.iter().filter(|o| o.table.is_some()) {
        let capture = Capture::new(object, &tables, &config.poll.key_delimiter).unwrap();
        for ddl in dialect.capture(&capture) {
            statements.extend(ddl.statements);
        }
    }
    format!(
        "-- trigpoll install-triggers on {backend}, for the sample schema of tests/sql_scripts.rs.\n\
         -- Generated: TRIGPOLL_BLESS=1 cargo test --test sql_scripts\n\n{}",
        dialect.script(&statements)
    )
}

fn check(backend: &str, types: [&str; 5]) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("sql/{backend}.sql"));
    let generated = script(backend, types);
    if std::env::var_os("TRIGPOLL_BLESS").is_some() {
        std::fs::write(&path, &generated).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    if generated != expected {
        let line = generated
            .lines()
            .zip(expected.lines())
            .position(|(a, b)| a != b)
            .map_or(
                generated.lines().count().min(expected.lines().count()),
                |l| l,
            )
            + 1;
        panic!(
            "the generated {backend} SQL differs from {} from line {line}:\n  generated: {:?}\n  file:      {:?}\n\
             If the change is intended: TRIGPOLL_BLESS=1 cargo test --test sql_scripts",
            path.display(),
            generated.lines().nth(line - 1),
            expected.lines().nth(line - 1)
        );
    }
}

#[test]
fn postgres_sql() {
    check(
        "postgresql",
        [
            "integer",
            "text",
            "numeric",
            "timestamp without time zone",
            "bytea",
        ],
    );
}

#[test]
fn mysql_sql() {
    check(
        "mysql",
        [
            "int(11)",
            "varchar(100) CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci",
            "decimal(12,2)",
            "datetime(6)",
            "blob",
        ],
    );
}

#[test]
fn sqlite_sql() {
    check(
        "sqlite",
        ["INTEGER", "TEXT", "NUMERIC(12,2)", "DATETIME", "BLOB"],
    );
}
