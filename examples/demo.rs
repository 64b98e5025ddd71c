//! The quick-start demo's application side: creates a small HR schema and makes changes to it,
//! as an application would. `scripts/demo.sh` runs it around the real `trigpoll` commands.
//!
//!     cargo run --example demo -- schema  <database url>
//!     cargo run --example demo -- changes <database url>

use std::process::ExitCode;

const SCHEMA: &str = "
CREATE TABLE department (dept_id integer PRIMARY KEY, name varchar(100) NOT NULL);
CREATE TABLE employee (
    emp_id     integer PRIMARY KEY,
    first_name varchar(100) NOT NULL,
    last_name  varchar(100) NOT NULL,
    dept_id    integer REFERENCES department (dept_id),
    salary     numeric(10, 2),
    hired      date
);
CREATE TABLE order_line (
    order_id   integer NOT NULL,
    line_no    integer NOT NULL,
    sku        varchar(40) NOT NULL,
    qty        integer NOT NULL,
    PRIMARY KEY (order_id, line_no)
);
";

const CHANGES: &str = "
INSERT INTO department VALUES (1, 'Sales'), (2, 'Engineering');
INSERT INTO employee VALUES
    (101961, 'Ada', 'Como', 2, 5120.50, '2024-03-01'),
    (101962, 'Grace', 'Hopper', 2, 6400.00, '2023-07-15'),
    (101963, 'Linus', 'Pauling', 1, 4100.25, '2025-01-09');
UPDATE employee SET salary = 5300.75 WHERE emp_id = 101961;
UPDATE employee SET dept_id = 1 WHERE emp_id = 101962;
DELETE FROM employee WHERE emp_id = 101963;
INSERT INTO order_line VALUES (45381, 1, 'SKU-RED', 2), (45381, 2, 'SKU-BLUE', 1);
UPDATE order_line SET qty = 3 WHERE order_id = 45381 AND line_no = 1;
DELETE FROM order_line WHERE order_id = 45381 AND line_no = 2;
";

fn run(what: &str, url: &str) -> Result<(), String> {
    let sql = match what {
        "schema" => SCHEMA,
        "changes" => CHANGES,
        _ => return Err(format!("unknown step {what:?}: expected schema or changes")),
    };
    if let Some(path) = url.strip_prefix("sqlite://") {
        let db = rusqlite::Connection::open(path).map_err(|e| e.to_string())?;
        db.execute_batch(sql).map_err(|e| e.to_string())
    } else if url.starts_with("postgres") {
        let mut db = postgres::Client::connect(url, postgres::NoTls).map_err(|e| e.to_string())?;
        db.batch_execute(sql).map_err(|e| e.to_string())
    } else if url.starts_with("mysql://") {
        let pool = mysql::Opts::from_url(url).map_err(|e| e.to_string())?;
        let mut db = mysql::Conn::new(pool).map_err(|e| e.to_string())?;
        use mysql::prelude::Queryable;
        db.query_drop(sql).map_err(|e| e.to_string())
    } else {
        Err(format!("unsupported database url {url:?}"))
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [what, url] = args.as_slice() else {
        eprintln!("usage: demo schema|changes <database url>");
        return ExitCode::from(2);
    };
    match run(what, url) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo {what}: {e}");
            ExitCode::FAILURE
        }
    }
}
