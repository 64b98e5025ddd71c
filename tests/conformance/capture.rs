//! What the triggers write, and the object-key codec through the database.

use serde_json::json;

use crate::common::{lines, Backend, Env};
use crate::conformance::hr;

fn event_rows(env: &Env) -> Vec<Vec<Option<String>>> {
    env.db.query(
        "SELECT object_name, object_verb, object_key, event_priority, event_status FROM {events} ORDER BY event_id",
    )
}

fn row(v: &[&str]) -> Vec<Option<String>> {
    v.iter().map(|s| Some(s.to_string())).collect()
}

pub fn triggers_write_one_event_per_change(backend: Backend) {
    let Some((env, _)) = hr(backend, "") else {
        return;
    };
    env.db.execute(
        "INSERT INTO employee (emp_id, last_name) VALUES (1, 'a');
         INSERT INTO order_line VALUES (45381, '321', 2);
         UPDATE employee SET last_name = 'b' WHERE emp_id = 1;
         DELETE FROM order_line",
    );
    assert_eq!(
        event_rows(&env),
        vec![
            row(&["Employee", "Create", "emp_id=1", "1", "0"]),
            row(&[
                "OrderLine",
                "Create",
                "contract_id=45381:header_id=321",
                "0",
                "0"
            ]),
            row(&["Employee", "Update", "emp_id=1", "1", "0"]),
            row(&[
                "OrderLine",
                "Delete",
                "contract_id=45381:header_id=321",
                "0",
                "0"
            ]),
        ]
    );
    let image = env
        .db
        .scalar("SELECT payload FROM {events} WHERE object_verb = 'Delete'")
        .expect("a delete carries the old row");
    let image: serde_json::Value = serde_json::from_str(&image).unwrap();
    assert_eq!(image["qty"], json!(2));
    assert_eq!(image["header_id"], json!("321"));
}

/// The statements applications write with, besides plain INSERT/UPDATE/DELETE: an upsert that
/// inserts and then updates (each backend's form), and on PostgreSQL `MERGE` and a writable CTE.
/// Each change is one event of the verb it made.
pub fn upserts_merges_and_writable_ctes_make_their_events(backend: Backend) {
    let Some((env, _)) = hr(backend, "") else {
        return;
    };
    let upsert = |name: &str| match backend {
        Backend::Mysql => format!(
            "INSERT INTO employee (emp_id, last_name) VALUES (1, '{name}')
             ON DUPLICATE KEY UPDATE last_name = VALUES(last_name)"
        ),
        _ => format!(
            "INSERT INTO employee (emp_id, last_name) VALUES (1, '{name}')
             ON CONFLICT (emp_id) DO UPDATE SET last_name = excluded.last_name"
        ),
    };
    env.db.execute(&upsert("a"));
    env.db.execute(&upsert("b"));
    let mut expected = vec![("Create", "emp_id=1"), ("Update", "emp_id=1")];
    if backend == Backend::Postgres {
        env.db.execute(
            "MERGE INTO employee t USING (VALUES (1, 'c'), (2, 'd')) AS s(id, name)
             ON t.emp_id = s.id
             WHEN MATCHED THEN UPDATE SET last_name = s.name
             WHEN NOT MATCHED THEN INSERT (emp_id, last_name) VALUES (s.id, s.name);
             WITH gone AS (DELETE FROM employee WHERE emp_id = 2 RETURNING emp_id)
             INSERT INTO employee (emp_id, last_name) SELECT emp_id + 10, 'e' FROM gone",
        );
        expected.extend([
            ("Update", "emp_id=1"),
            ("Create", "emp_id=2"),
            ("Delete", "emp_id=2"),
            ("Create", "emp_id=12"),
        ]);
    }
    let made: Vec<(String, String)> = event_rows(&env)
        .into_iter()
        .map(|r| (r[1].clone().unwrap(), r[2].clone().unwrap()))
        .collect();
    let expected: Vec<(String, String)> = expected
        .into_iter()
        .map(|(v, k)| (v.to_string(), k.to_string()))
        .collect();
    assert_eq!(made, expected);
}

pub fn a_key_change_is_a_delete_and_a_create(backend: Backend) {
    let Some((env, out)) = hr(backend, "") else {
        return;
    };
    env.db
        .execute("INSERT INTO employee (emp_id, last_name) VALUES (1, 'a')");
    env.run_ok(&["drain"], 0);
    env.db
        .execute("UPDATE employee SET emp_id = 2 WHERE emp_id = 1");
    assert_eq!(
        event_rows(&env),
        vec![
            row(&["Employee", "Delete", "emp_id=1", "1", "0"]),
            row(&["Employee", "Create", "emp_id=2", "1", "0"]),
        ]
    );
    env.run_ok(&["drain"], 0);
    let delivered = lines(&out);
    let verbs: Vec<(&str, &Value)> = delivered
        .iter()
        .map(|l| (l["verb"].as_str().unwrap(), &l["key"]))
        .collect();
    assert_eq!(
        verbs,
        vec![
            ("Create", &json!({"emp_id": "1"})),
            ("Delete", &json!({"emp_id": "1"})),
            ("Create", &json!({"emp_id": "2"})),
        ]
    );
    assert_eq!(
        delivered[1]["attributes"]["last_name"], "a",
        "the delete carries the old row"
    );
}

use serde_json::Value;

/// Values that stress the codec: the delimiter, `=`, `%`, unicode, newlines, escapes that look
/// already encoded, and spaces.
pub const NASTY: &[&str] = &[
    "plain",
    "a:b",
    "x=y",
    "100%",
    "%3A",
    "%%==::",
    "élève ✓ 日本",
    "line1\nline2\r\n",
    "tab\there",
    " lead and trail ",
    "emoji 🦀",
    "",
];

pub fn keys_round_trip_through_the_database(backend: Backend) {
    let Some((env, out)) = hr(backend, "") else {
        return;
    };
    for (i, value) in NASTY.iter().enumerate() {
        let literal = value.replace('\'', "''");
        env.db.execute(&format!(
            "INSERT INTO order_line VALUES ({i}, '{literal}', {i})"
        ));
    }
    env.run_ok(&["drain"], 0);
    let delivered = lines(&out);
    assert_eq!(delivered.len(), NASTY.len());
    for line in &delivered {
        let i = line["attributes"]["qty"].as_i64().unwrap() as usize;
        assert_eq!(
            line["key"],
            json!({"contract_id": i.to_string(), "header_id": NASTY[i]}),
            "key of {:?}",
            NASTY[i]
        );
        assert_eq!(line["attributes"]["header_id"], json!(NASTY[i]));
    }
    // Updates and deletes find the rows by the same keys.
    env.db.execute("UPDATE order_line SET qty = qty + 100");
    env.run_ok(&["drain"], 0);
    env.db.execute("DELETE FROM order_line");
    env.run_ok(&["drain"], 0);
    let delivered = lines(&out);
    let updates = delivered.iter().filter(|l| l["verb"] == "Update").count();
    let deletes = delivered.iter().filter(|l| l["verb"] == "Delete").count();
    assert_eq!((updates, deletes), (NASTY.len(), NASTY.len()));
    assert!(delivered
        .iter()
        .filter(|l| l["verb"] == "Update")
        .all(|l| l["attributes"]["qty"].as_i64().unwrap() >= 100));
}

pub fn keys_with_other_delimiters_round_trip(backend: Backend) {
    let Some(env) = Env::new(backend) else { return };
    env.db.execute(crate::conformance::HR);
    env.config("key_delimiter = \"|~\"", crate::conformance::HR_OBJECTS);
    let out = env.file_connector("out");
    env.run_ok(&["install-triggers"], 0);
    env.db
        .execute("INSERT INTO order_line VALUES (1, 'a|~b|c~%=', 1)");
    assert_eq!(
        env.db.scalar("SELECT object_key FROM {events}").unwrap(),
        "contract_id=1|~header_id=a%7C%7Eb%7Cc%7E%25%3D"
    );
    env.run_ok(&["drain"], 0);
    assert_eq!(lines(&out)[0]["key"]["header_id"], "a|~b|c~%=");
}

/// Random keys through the triggers, the database and back: any text the database stores.
pub fn random_keys_round_trip_through_the_database(backend: Backend) {
    use rand::{Rng, SeedableRng};
    let Some((env, out)) = hr(backend, "") else {
        return;
    };
    let seed: u64 = rand::random();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let alphabet: Vec<char> = ":=%%|~ \n\tabcXYZ09éß日🦀\u{7f}\u{a0}".chars().collect();
    let mut values: Vec<String> = Vec::new();
    while values.len() < 200 {
        let len = rng.gen_range(0..12);
        let v: String = (0..len)
            .map(|_| alphabet[rng.gen_range(0..alphabet.len())])
            .collect();
        if !values.contains(&v) {
            values.push(v);
        }
    }
    let rows: Vec<String> = values
        .iter()
        .enumerate()
        .map(|(i, v)| format!("({i}, '{}', {i})", v.replace('\'', "''")))
        .collect();
    env.db.execute(&format!(
        "INSERT INTO order_line VALUES {}",
        rows.join(", ")
    ));
    env.run_ok(&["drain"], 0);
    let delivered = lines(&out);
    assert_eq!(delivered.len(), values.len(), "seed {seed}");
    for line in &delivered {
        let i = line["attributes"]["qty"].as_i64().unwrap() as usize;
        assert_eq!(
            line["key"]["header_id"],
            json!(values[i]),
            "seed {seed}: key {:?}",
            values[i]
        );
    }
}
