//! Partitioned tables and TRUNCATE: every change in any partition captured, as the
//! partitioned table's own, whichever way the application writes it.

mod common;

use common::{lines, Backend, Env};
use serde_json::{json, Value};

const PG: Backend = Backend::Postgres;
const MY: Backend = Backend::Mysql;

/// `(object, verb, key)` of each delivered event, in delivery order.
fn seen(out: &std::path::Path) -> Vec<(String, String, Value)> {
    lines(out)
        .iter()
        .map(|l| {
            (
                l["object"].as_str().unwrap().to_string(),
                l["verb"].as_str().unwrap().to_string(),
                l["key"].clone(),
            )
        })
        .collect()
}

fn event(object: &str, verb: &str, key: Value) -> (String, String, Value) {
    (object.to_string(), verb.to_string(), key)
}

/// Two range-partitioned tables, with a sub-partitioned partition and a default one. `orders`
/// keeps its primary key (id, created) as the object's key, so that a row moved to another
/// partition changes its key; `shipments` is keyed by `id` alone, so that a moved row keeps it.
const SHOP: &str = "
CREATE SCHEMA shop;
CREATE TABLE shop.orders (id int, created date, note text, PRIMARY KEY (id, created))
    PARTITION BY RANGE (created);
CREATE TABLE shop.orders_2025 PARTITION OF shop.orders
    FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE shop.orders_2026 PARTITION OF shop.orders
    FOR VALUES FROM ('2026-01-01') TO ('2027-01-01') PARTITION BY RANGE (created);
CREATE TABLE shop.orders_2026_h1 PARTITION OF shop.orders_2026
    FOR VALUES FROM ('2026-01-01') TO ('2026-07-01');
CREATE TABLE shop.orders_2026_h2 PARTITION OF shop.orders_2026 DEFAULT;
CREATE TABLE shop.orders_other PARTITION OF shop.orders DEFAULT;
CREATE TABLE shop.shipments (id int, created date, status text, weight float8,
    PRIMARY KEY (id, created)) PARTITION BY RANGE (created);
CREATE TABLE shop.shipments_2025 PARTITION OF shop.shipments
    FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE shop.shipments_2026 PARTITION OF shop.shipments
    FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
";

const SHOP_OBJECTS: &str = r#"
[[object]]
name = "Order"
table = "shop.orders"

[[object]]
name = "Shipment"
table = "shop.shipments"
keys = ["id"]
changes = true
track = ["created", "status"]
[object.when]
update = "NEW.status <> 'ignored'"
"#;

/// Inserts, updates and deletes through the partitioned table and straight into a partition, a
/// sub-partition and a partition attached after install-triggers, and rows moved between
/// partitions: each change is one event of the partitioned table's object. A moved row is a key
/// change when its key holds the partition key, and an Update (with `changes`, `track` and
/// `when` as for any update) when it does not.
#[test]
fn every_partition_is_captured_as_the_partitioned_table() {
    let Some(env) = Env::new(PG) else { return };
    env.db.execute(SHOP);
    env.config("", SHOP_OBJECTS);
    let out = env.file_connector("out");
    env.run_ok(&["install-triggers"], 0);
    env.db.execute(
        "INSERT INTO shop.orders VALUES (1, '2025-05-01', 'a');
         INSERT INTO shop.orders_2026_h1 VALUES (2, '2026-02-01', 'b');
         INSERT INTO shop.orders VALUES (3, '2030-01-01', 'c');
         CREATE TABLE shop.orders_2027 (LIKE shop.orders INCLUDING ALL);
         ALTER TABLE shop.orders ATTACH PARTITION shop.orders_2027
             FOR VALUES FROM ('2027-01-01') TO ('2028-01-01');
         INSERT INTO shop.orders_2027 VALUES (4, '2027-03-01', 'd');
         INSERT INTO shop.shipments VALUES (1, '2025-05-01', 'new', 1.5), (2, '2025-06-01', 'new', 2)",
    );
    env.run_ok(&["drain"], 0);
    env.db.execute(
        "UPDATE shop.orders SET created = '2026-09-01' WHERE id = 1;
         UPDATE shop.orders_2026_h1 SET note = 'bb' WHERE id = 2;
         UPDATE shop.shipments SET created = '2026-02-01' WHERE id = 1;
         UPDATE shop.shipments SET created = '2026-02-01', status = 'ignored' WHERE id = 2;
         UPDATE shop.shipments SET weight = 9 WHERE id = 1;
         DELETE FROM shop.orders_2027 WHERE id = 4;
         DELETE FROM shop.orders WHERE id = 3",
    );
    env.run_ok(&["drain"], 0);
    let o = |verb: &str, id: i64, created: &str| {
        event(
            "Order",
            verb,
            json!({"id": id.to_string(), "created": created}),
        )
    };
    let s = |verb: &str, id: i64| event("Shipment", verb, json!({"id": id.to_string()}));
    assert_eq!(
        seen(&out),
        [
            o("Create", 1, "2025-05-01"),
            o("Create", 2, "2026-02-01"),
            o("Create", 3, "2030-01-01"),
            o("Create", 4, "2027-03-01"),
            s("Create", 1),
            s("Create", 2),
            // The move changes the key (id, created): the old key is gone, a new one exists.
            o("Delete", 1, "2025-05-01"),
            o("Create", 1, "2026-09-01"),
            o("Update", 2, "2026-02-01"),
            // Moved, its key (id) kept: an Update; the second is not captured (`when`), the
            // third changed no tracked column.
            s("Update", 1),
            o("Delete", 4, "2027-03-01"),
            o("Delete", 3, "2030-01-01"),
        ]
    );
    let delivered = lines(&out);
    let moved = &delivered[9];
    assert_eq!(
        moved["changes"],
        json!({"created": {"old": "2025-05-01", "new": "2026-02-01"}})
    );
    assert_eq!(moved["attributes"]["created"], "2026-02-01");
    assert_eq!(
        delivered[6]["attributes"]["note"], "a",
        "the old row's image"
    );

    // The partitions' clones are the partitioned table's own triggers.
    let status = env.run_ok(&["status"], 0);
    let text = common::stdout(&status);
    assert!(!text.contains("orders_20"), "{text}");
    assert!(!text.contains("not in the configuration"), "{text}");
    assert_eq!(text.matches("up to date").count(), 2, "{text}");
    let unconfigured = env.run_ok(&["uninstall-triggers", "--unconfigured", "--dry-run"], 0);
    assert!(
        !common::stdout(&unconfigured).contains("DROP TRIGGER"),
        "{}",
        common::stdout(&unconfigured)
    );
    env.run_ok(&["uninstall-triggers"], 0);
    assert_eq!(
        env.db.count(
            "SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'trigpoll%' AND NOT tgisinternal"
        ),
        0
    );
}

/// A partition cannot be an object's table: its own triggers would miss the rows written
/// through the partitioned table. The refusal names the table to bind instead.
#[test]
fn a_partition_alone_is_refused_naming_its_partitioned_table() {
    let Some(env) = Env::new(PG) else { return };
    env.db.execute(SHOP);
    env.config(
        "",
        "[[object]]\nname = \"Old\"\ntable = \"shop.orders_2026_h1\"\n",
    );
    let refused = env.run_ok(&["install-triggers"], 2);
    assert!(
        common::stderr(&refused).contains(
            "object Old: table shop.orders_2026_h1 is a partition of shop.orders: bind it to shop.orders"
        ),
        "{}",
        common::stderr(&refused)
    );
    assert_eq!(
        env.db
            .count("SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'trigpoll%'"),
        0
    );
}

/// With `Truncate` in `verbs`, a TRUNCATE (also of a partitioned table, and one reached by
/// CASCADE) is one event with no key and `"attributes": null`, after the events written before
/// it in its transaction; without it, a TRUNCATE makes none.
#[test]
fn truncate_is_one_event_of_its_objects() {
    let Some(env) = Env::new(PG) else { return };
    env.db.execute(&format!(
        "{SHOP}
         CREATE TABLE dept (id int PRIMARY KEY, name text);
         CREATE TABLE emp (id int PRIMARY KEY, dept int REFERENCES dept (id));
         CREATE TABLE plain (id int PRIMARY KEY)"
    ));
    env.config(
        "",
        r#"
[[object]]
name = "Order"
table = "shop.orders"
verbs = ["Create", "Update", "Delete", "Truncate"]

[[object]]
name = "Dept"
table = "dept"
verbs = ["Create", "Truncate"]

[[object]]
name = "Emp"
table = "emp"
verbs = ["Truncate"]

[[object]]
name = "Plain"
table = "plain"
"#,
    );
    let out = env.file_connector("out");
    env.connector(
        "trunc",
        "subscribe = [\"*.Truncate\"]\n[sink]\ntype = \"file\"\npath = \"trunc.ndjson\"\n",
    );
    env.run_ok(&["install-triggers"], 0);
    let mut writer = env.db.writer();
    writer
        .transaction(
            "INSERT INTO shop.orders VALUES (1, '2025-05-01', 'a');
             INSERT INTO dept VALUES (1, 'x');
             INSERT INTO emp VALUES (1, 1);
             INSERT INTO plain VALUES (1);
             TRUNCATE shop.orders;
             TRUNCATE dept CASCADE;
             TRUNCATE plain",
        )
        .unwrap();
    env.run_ok(&["drain"], 0);
    let truncated = |object: &str| event(object, "Truncate", json!({}));
    // The Creates find no row: archived not-found, not delivered.
    let mut delivered = seen(&out);
    delivered.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        delivered,
        [truncated("Dept"), truncated("Emp"), truncated("Order")]
    );
    assert_eq!(
        env.db.column(
            "SELECT object_name || '.' || object_verb || ':' || event_status FROM {archive}
             WHERE connector_id = 'out' OR connector_id IS NULL ORDER BY event_id"
        ),
        [
            "Order.Create:-3",
            "Dept.Create:-3",
            "Plain.Create:-3",
            "Order.Truncate:1",
            "Dept.Truncate:1",
            "Emp.Truncate:1"
        ]
    );
    let delivered = lines(&out);
    assert!(delivered.iter().all(
        |l| l["attributes"] == Value::Null && l.as_object().unwrap().contains_key("attributes")
    ));
    // Across objects in the order they could be claimed: each after its own object's events.
    let mut only_truncates = seen(&env.path("connectors/trunc.ndjson"));
    only_truncates.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        only_truncates,
        [truncated("Dept"), truncated("Emp"), truncated("Order")]
    );
}

/// MySQL's partitions are no tables of their own: a table partitioned by range or by hash is
/// captured as any table, also when an UPDATE moves a row to another partition.
#[test]
fn mysql_partitioned_tables_capture_every_change() {
    let Some(env) = Env::new(MY) else { return };
    env.db.execute(
        "CREATE TABLE byrange (id int, created date, note text, PRIMARY KEY (id, created))
             PARTITION BY RANGE (YEAR(created)) (
                 PARTITION p2025 VALUES LESS THAN (2026),
                 PARTITION p2026 VALUES LESS THAN (2027),
                 PARTITION later VALUES LESS THAN MAXVALUE);
         CREATE TABLE byhash (id int, bucket int, note text, PRIMARY KEY (id, bucket))
             PARTITION BY HASH (bucket) PARTITIONS 4",
    );
    env.config(
        "",
        "[[object]]\nname = \"R\"\ntable = \"byrange\"\n[[object]]\nname = \"H\"\ntable = \"byhash\"\n",
    );
    let out = env.file_connector("out");
    env.run_ok(&["install-triggers"], 0);
    env.db.execute(
        "INSERT INTO byrange VALUES (1, '2025-05-01', 'a');
         INSERT INTO byhash VALUES (1, 1, 'a')",
    );
    env.run_ok(&["drain"], 0);
    env.db.execute(
        "UPDATE byrange SET created = '2026-05-01' WHERE id = 1;
         UPDATE byhash SET bucket = 2 WHERE id = 1;
         UPDATE byrange SET note = 'b' WHERE id = 1",
    );
    env.run_ok(&["drain"], 0);
    env.db.execute("DELETE FROM byhash");
    env.run_ok(&["drain"], 0);
    let r = |verb: &str, created: &str| event("R", verb, json!({"id": "1", "created": created}));
    let h = |verb: &str, bucket: &str| event("H", verb, json!({"id": "1", "bucket": bucket}));
    assert_eq!(
        seen(&out),
        [
            r("Create", "2025-05-01"),
            h("Create", "1"),
            r("Delete", "2025-05-01"),
            r("Create", "2026-05-01"),
            h("Delete", "1"),
            h("Create", "2"),
            r("Update", "2026-05-01"),
            h("Delete", "2"),
        ]
    );
}
