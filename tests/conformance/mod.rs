//! The conformance suite: every test takes a backend, and each backend's test file runs all of
//! them through `conformance_tests!`.

use std::time::{Duration, Instant};

use crate::common::{Backend, Env};

pub mod capture;
pub mod delivery;
pub mod faults;
pub mod install;

/// Declares one `#[test]` per conformance test for a backend.
#[macro_export]
macro_rules! conformance_tests {
    ($backend:expr; $($module:ident :: $name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                conformance::$module::$name($backend);
            }
        )*
    };
}

/// The sample schema most tests use.
pub const HR: &str = "
CREATE TABLE department (dept_id int PRIMARY KEY, name {text} NOT NULL);
CREATE TABLE employee (emp_id int PRIMARY KEY, last_name {text}, dept_id int, salary {dec},
    photo {bytes}, hired {ts}, active boolean);
CREATE TABLE order_line (contract_id int NOT NULL, header_id {text} NOT NULL, qty int,
    PRIMARY KEY (contract_id, header_id));
";

pub const HR_OBJECTS: &str = r#"
[[object]]
name = "Employee"
table = "employee"
priority = 1

[[object]]
name = "Department"
table = "department"

[[object]]
name = "OrderLine"
table = "order_line"
"#;

/// An environment with the HR schema, its triggers installed and one file connector `out`.
pub fn hr(backend: Backend, poll: &str) -> Option<(Env, std::path::PathBuf)> {
    let env = Env::new(backend)?;
    env.db.execute(HR);
    env.config(poll, HR_OBJECTS);
    let out = env.file_connector("out");
    env.run_ok(&["install-triggers"], 0);
    Some((env, out))
}

/// Waits until `done` holds, for at most `limit`.
pub fn eventually(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    done()
}
