//! Test harness: a throwaway database per test, a configuration folder, the real binary.
//!
//! Each test gets its own database, named at random and dropped at the end. A test that cannot
//! reach its database server (or message broker) fails under `CI=true` and is skipped (with a
//! note) otherwise.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

pub mod receiver;
pub mod tls;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Mysql,
    Sqlite,
}

pub struct TestDb {
    pub backend: Backend,
    pub url: String,
    pub name: String,
    admin_url: String,
}

/// A PostgreSQL connection for the harness: plaintext, or TLS as the URL's `sslmode` says.
pub fn pg_connect(url: &str) -> Result<postgres::Client, String> {
    if url.contains("sslmode=") {
        trigpoll::store::tls::postgres_client(url).map_err(|e| e.to_string())
    } else {
        postgres::Client::connect(url, postgres::NoTls).map_err(|e| e.to_string())
    }
}

/// A MySQL connection for the harness: plaintext, or TLS as the URL's `ssl-mode` says.
pub fn mysql_connect(url: &str) -> Result<mysql::Conn, String> {
    let opts = match url.contains("ssl-mode=") {
        true => trigpoll::store::tls::mysql_opts(url).map_err(|e| e.to_string())?,
        false => mysql::Opts::from_url(url).map_err(|e| e.to_string())?,
    };
    mysql::Conn::new(opts).map_err(|e| e.to_string())
}

/// `url` with its query string replaced by `query` (none when empty).
pub fn with_query(url: &str, query: &str) -> String {
    let base = url.split_once('?').map_or(url, |(b, _)| b);
    match query {
        "" => base.to_string(),
        q => format!("{base}?{q}"),
    }
}

/// `url` (`scheme://user@host:port/...`) with its host replaced.
pub fn with_host(url: &str, host: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("a URL");
    let (user, rest) = rest.split_once('@').map_or(("", rest), |(u, r)| (u, r));
    let port = rest.split_once(':').map_or(rest, |(_, p)| p);
    let at = if user.is_empty() { "" } else { "@" };
    format!("{scheme}://{user}{at}{host}:{port}")
}

/// A loopback port that is free now, for a server a test starts later. It is drawn from below
/// the system's ephemeral range (32768 and up on Linux), where no `bind` to port 0 of a test
/// running beside this one can land while the port waits for its server.
pub fn free_port() -> u16 {
    loop {
        let port = rand::random::<u16>() % 12_000 + 20_000;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A loopback port that refuses connections for as long as the value lives: a socket bound to
/// it and not listening holds it, so a test running beside this one cannot take it.
pub struct ClosedPort(socket2::Socket);

impl ClosedPort {
    pub fn new() -> ClosedPort {
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        let any: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
        socket.bind(&any.into()).unwrap();
        ClosedPort(socket)
    }

    pub fn port(&self) -> u16 {
        self.0.local_addr().unwrap().as_socket().unwrap().port()
    }
}

/// What a test needs and cannot reach: a failure under `CI=true`, a skip (with a note)
/// otherwise.
pub fn unreachable<T>(what: &str, err: impl std::fmt::Display) -> Option<T> {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{what} is required under CI=true: {err}");
    }
    eprintln!("skipped: {what} is not reachable ({err}); run scripts/test.sh");
    None
}

impl TestDb {
    pub fn new(backend: Backend) -> Option<TestDb> {
        let admin_url = match backend {
            Backend::Postgres => std::env::var("TRIGPOLL_TEST_PG_URL")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into()),
            Backend::Mysql => std::env::var("TRIGPOLL_TEST_MYSQL_URL")
                .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/mysql".into()),
            Backend::Sqlite => String::new(),
        };
        let what = match backend {
            Backend::Postgres => "PostgreSQL at TRIGPOLL_TEST_PG_URL",
            _ => "MySQL at TRIGPOLL_TEST_MYSQL_URL",
        };
        TestDb::on(backend, admin_url, what)
    }

    /// A database on the server of `admin_url` (which names its administration database and
    /// may carry TLS parameters, which the test database's URL keeps); `what` names the server
    /// when it cannot be reached.
    pub fn on(backend: Backend, admin_url: String, what: &str) -> Option<TestDb> {
        let name = format!("trigpoll_test_{:016x}", rand::random::<u64>());
        match backend {
            Backend::Postgres => {
                let mut admin = match pg_connect(&admin_url) {
                    Ok(c) => c,
                    Err(e) => return unreachable(what, e),
                };
                admin
                    .batch_execute(&format!("CREATE DATABASE {name}"))
                    .expect("create the test database");
                let (base, options) = admin_url
                    .split_once('?')
                    .map_or((admin_url.as_str(), String::new()), |(b, o)| {
                        (b, format!("?{o}"))
                    });
                let url = match base.rsplit_once('/') {
                    Some((base, _)) => format!("{base}/{name}{options}"),
                    None => panic!("{what} has no database part"),
                };
                Some(TestDb {
                    backend,
                    url,
                    name,
                    admin_url,
                })
            }
            Backend::Mysql => {
                let mut admin = match mysql_connect(&admin_url) {
                    Ok(c) => c,
                    Err(e) => return unreachable(what, e),
                };
                mysql::prelude::Queryable::query_drop(
                    &mut admin,
                    format!("CREATE DATABASE {name} CHARACTER SET utf8mb4"),
                )
                .expect("create the test database");
                // The URL with the test database in place of the admin one, options kept.
                let (base, options) = admin_url
                    .split_once('?')
                    .map_or((admin_url.as_str(), String::new()), |(b, o)| {
                        (b, format!("?{o}"))
                    });
                let url = match base.split_once("://").map(|(_, rest)| rest.contains('/')) {
                    Some(true) => format!("{}/{name}{options}", base.rsplit_once('/').unwrap().0),
                    _ => format!("{base}/{name}{options}"),
                };
                Some(TestDb {
                    backend,
                    url,
                    name,
                    admin_url,
                })
            }
            Backend::Sqlite => {
                // A database file in a folder of its own; `name` is its path.
                let dir = tempfile::Builder::new()
                    .prefix(&name)
                    .tempdir()
                    .expect("a temporary folder")
                    .keep();
                let path = dir.join("app.db");
                rusqlite::Connection::open(&path).expect("create the test database");
                Some(TestDb {
                    backend,
                    url: format!("sqlite://{}", path.display()),
                    name: path.display().to_string(),
                    admin_url: String::new(),
                })
            }
        }
    }

    /// Runs statements (separated by `;` at line ends).
    pub fn execute(&self, sql: &str) {
        if let Err(e) = self.try_execute(sql) {
            panic!("{}\n{e}", self.dialect(sql));
        }
    }

    /// Runs statements, returning the database's error.
    pub fn try_execute(&self, sql: &str) -> Result<(), String> {
        let sql = self.dialect(sql);
        match self.backend {
            Backend::Postgres => {
                let mut c = pg_connect(&self.url).unwrap();
                c.batch_execute(&sql).map_err(|e| format!("{e:?}"))
            }
            Backend::Mysql => mysql::prelude::Queryable::query_drop(&mut self.mysql(), &sql)
                .map_err(|e| format!("{e:?}")),
            Backend::Sqlite => self
                .sqlite()
                .execute_batch(&sql)
                .map_err(|e| format!("{e:?}")),
        }
    }

    /// The first column of a query's rows, none of them NULL.
    pub fn column(&self, sql: &str) -> Vec<String> {
        self.query(sql)
            .into_iter()
            .map(|r| r[0].clone().unwrap_or_else(|| panic!("NULL in {sql}")))
            .collect()
    }

    /// Rows as text (NULL as None).
    pub fn query(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        let sql = self.dialect(sql);
        match self.backend {
            Backend::Postgres => {
                let mut c = pg_connect(&self.url).unwrap();
                let wrapped = format!("SELECT to_json(q.*)::text FROM ({sql}) q");
                c.query(&wrapped, &[])
                    .unwrap_or_else(|e| panic!("{sql}\n{e:?}"))
                    .iter()
                    .map(|r| {
                        let v: serde_json::Value =
                            serde_json::from_str(r.get::<_, &str>(0)).unwrap();
                        v.as_object()
                            .unwrap()
                            .values()
                            .map(|v| match v {
                                serde_json::Value::Null => None,
                                serde_json::Value::String(s) => Some(s.clone()),
                                other => Some(other.to_string()),
                            })
                            .collect()
                    })
                    .collect()
            }
            Backend::Mysql => {
                let rows: Vec<mysql::Row> =
                    mysql::prelude::Queryable::query(&mut self.mysql(), &sql)
                        .unwrap_or_else(|e| panic!("{sql}\n{e:?}"));
                rows.into_iter()
                    .map(|r| {
                        r.unwrap()
                            .into_iter()
                            .map(|v| match v {
                                mysql::Value::NULL => None,
                                mysql::Value::Bytes(b) => {
                                    Some(String::from_utf8_lossy(&b).into_owned())
                                }
                                other => Some(other.as_sql(true)),
                            })
                            .collect()
                    })
                    .collect()
            }
            Backend::Sqlite => {
                use rusqlite::types::ValueRef;
                let c = self.sqlite();
                let mut stmt = c.prepare(&sql).unwrap_or_else(|e| panic!("{sql}\n{e:?}"));
                let width = stmt.column_count();
                let rows = stmt.query_map([], |r| {
                    (0..width)
                        .map(|i| {
                            Ok(match r.get_ref(i)? {
                                ValueRef::Null => None,
                                ValueRef::Integer(n) => Some(n.to_string()),
                                ValueRef::Real(x) => Some(x.to_string()),
                                ValueRef::Text(t) => Some(String::from_utf8_lossy(t).into_owned()),
                                ValueRef::Blob(b) => Some(hex::encode(b)),
                            })
                        })
                        .collect()
                });
                rows.and_then(|rows| rows.collect())
                    .unwrap_or_else(|e| panic!("{sql}\n{e:?}"))
            }
        }
    }

    /// A connection of the application's, for transactions of its own.
    pub fn writer(&self) -> Writer {
        match self.backend {
            Backend::Postgres => Writer::Postgres(pg_connect(&self.url).unwrap()),
            Backend::Mysql => Writer::Mysql(self.mysql()),
            Backend::Sqlite => Writer::Sqlite(self.sqlite()),
        }
    }

    /// A connection to the MySQL test database.
    fn mysql(&self) -> mysql::Conn {
        mysql_connect(&self.url).unwrap()
    }

    /// MySQL has no schemas within a database: trigpoll's tables go to a second database of the
    /// test's own (`database.schema`), so that tests never share an event table.
    pub fn event_schema(&self) -> Option<String> {
        (self.backend == Backend::Mysql).then(|| format!("{}_ev", self.name))
    }

    /// A connection to the SQLite test database that waits for locks, as an application should.
    fn sqlite(&self) -> rusqlite::Connection {
        let c = rusqlite::Connection::open(&self.name).unwrap();
        c.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
        c
    }

    pub fn scalar(&self, sql: &str) -> Option<String> {
        self.query(sql)
            .into_iter()
            .next()
            .and_then(|r| r.into_iter().next().flatten())
    }

    pub fn count(&self, sql: &str) -> i64 {
        self.scalar(sql).map_or(0, |s| s.parse().unwrap())
    }

    /// Replaces the type placeholders `{text}` (a text type that can be a key), `{bytes}`,
    /// `{ts}` (timestamp, microseconds), `{dec}` (decimal 12,2) and `{json}` with this backend's.
    pub fn dialect(&self, sql: &str) -> String {
        let types: &[(&str, &str)] = match self.backend {
            Backend::Postgres => &[
                ("{text}", "text"),
                ("{bytes}", "bytea"),
                ("{ts}", "timestamp(6)"),
                ("{dec}", "numeric(12,2)"),
                ("{json}", "jsonb"),
                ("{events}", "trigpoll.trigpoll_event"),
                ("{archive}", "trigpoll.trigpoll_archive"),
            ],
            // `{text}` must fit in a primary key: 191 utf8mb4 characters fit InnoDB's 767 bytes.
            Backend::Mysql => &[
                ("{text}", "VARCHAR(191)"),
                ("{bytes}", "BLOB"),
                ("{ts}", "DATETIME(6)"),
                ("{dec}", "DECIMAL(12,2)"),
                ("{json}", "JSON"),
            ],
            // Declared types decide the JSON types of a SQLite column's values.
            Backend::Sqlite => &[
                ("{text}", "text"),
                ("{bytes}", "blob"),
                ("{ts}", "datetime"),
                ("{dec}", "numeric(12,2)"),
                ("{json}", "text"),
                ("{events}", "trigpoll_event"),
                ("{archive}", "trigpoll_archive"),
            ],
        };
        // Where trigpoll's tables are named per test.
        let sql = match self.event_schema() {
            Some(schema) => sql
                .replace("{events}", &format!("`{schema}`.trigpoll_event"))
                .replace("{archive}", &format!("`{schema}`.trigpoll_archive")),
            None => sql.to_string(),
        };
        types.iter().fold(sql, |s, (from, to)| s.replace(from, to))
    }
}

/// An application's connection to the test database.
pub enum Writer {
    Postgres(postgres::Client),
    Mysql(mysql::Conn),
    Sqlite(rusqlite::Connection),
}

impl Writer {
    /// Runs statements (separated by `;`) in one transaction and commits it, or returns the
    /// database's error (a deadlock, say) with the transaction rolled back.
    pub fn transaction(&mut self, sql: &str) -> Result<(), String> {
        match self {
            Writer::Postgres(c) => {
                let mut tx = c.transaction().map_err(|e| e.to_string())?;
                tx.batch_execute(sql).map_err(|e| e.to_string())?;
                tx.commit().map_err(|e| e.to_string())
            }
            Writer::Mysql(c) => {
                use mysql::prelude::Queryable;
                let mut tx = c
                    .start_transaction(mysql::TxOpts::default())
                    .map_err(|e| e.to_string())?;
                tx.query_drop(sql).map_err(|e| e.to_string())?;
                tx.commit().map_err(|e| e.to_string())
            }
            Writer::Sqlite(c) => {
                let tx = c
                    .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                    .map_err(|e| e.to_string())?;
                tx.execute_batch(sql).map_err(|e| e.to_string())?;
                tx.commit().map_err(|e| e.to_string())
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        match self.backend {
            Backend::Postgres => {
                if let Ok(mut admin) = pg_connect(&self.admin_url) {
                    let _ = admin.batch_execute(&format!(
                        "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                        self.name
                    ));
                }
            }
            Backend::Mysql => {
                if let Ok(mut admin) = mysql_connect(&self.admin_url) {
                    for db in [Some(self.name.clone()), self.event_schema()]
                        .into_iter()
                        .flatten()
                    {
                        let _ = mysql::prelude::Queryable::query_drop(
                            &mut admin,
                            format!("DROP DATABASE IF EXISTS {db}"),
                        );
                    }
                }
            }
            Backend::Sqlite => {
                if let Some(dir) = Path::new(&self.name).parent() {
                    let _ = std::fs::remove_dir_all(dir);
                }
            }
        }
    }
}

/// A test's world: a database, a folder with trigpoll.toml and connectors/, the binary.
pub struct Env {
    pub db: TestDb,
    pub dir: tempfile::TempDir,
}

impl Env {
    pub fn new(backend: Backend) -> Option<Env> {
        Env::with(TestDb::new(backend)?)
    }

    pub fn with(db: TestDb) -> Option<Env> {
        Some(Env {
            db,
            dir: tempfile::tempdir().unwrap(),
        })
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn config_path(&self) -> PathBuf {
        self.path("trigpoll.toml")
    }

    /// Writes trigpoll.toml: the database, `[poll]` settings and the given `[[object]]`s.
    pub fn config(&self, poll: &str, objects: &str) {
        self.config_with_url(&self.db.url, poll, objects)
    }

    /// Writes trigpoll.toml with another URL for the test database (another user, say).
    pub fn config_with_url(&self, url: &str, poll: &str, objects: &str) {
        std::fs::create_dir_all(self.path("connectors")).unwrap();
        // The schema line takes the place of the blank one: line numbers stay the same.
        let schema = self
            .db
            .event_schema()
            .map(|s| format!("schema = \"{s}\""))
            .unwrap_or_default();
        let text = format!("[database]\nurl = \"{url}\"\n{schema}\n[poll]\n{poll}\n\n{objects}\n");
        std::fs::write(self.config_path(), text).unwrap();
    }

    pub fn connector(&self, id: &str, body: &str) {
        std::fs::create_dir_all(self.path("connectors")).unwrap();
        std::fs::write(
            self.path(&format!("connectors/{id}.toml")),
            format!("id = \"{id}\"\n{body}\n"),
        )
        .unwrap();
    }

    /// A file connector subscribed to everything, writing to `<id>.ndjson`.
    pub fn file_connector(&self, id: &str) -> PathBuf {
        self.connector(
            id,
            &format!("subscribe = [\"*.*\"]\n[sink]\ntype = \"file\"\npath = \"../{id}.ndjson\""),
        );
        self.path(&format!("{id}.ndjson"))
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_trigpoll"));
        cmd.arg("--config")
            .arg(self.config_path())
            .args(args)
            .env_remove("TRIGPOLL_CONFIG")
            .env("RUST_LOG", "warn");
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// Runs and insists on the exit code, showing stderr when it differs.
    pub fn run_ok(&self, args: &[&str], code: i32) -> Output {
        let out = self.run(args);
        assert_eq!(
            out.status.code(),
            Some(code),
            "trigpoll {args:?} exited {:?}\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    pub fn spawn(&self, args: &[&str]) -> Spawned {
        Spawned(
            self.command(args)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        )
    }
}

/// A trigpoll started in the background, killed if the test ends (or fails) while it runs: a
/// poller with a long interval would otherwise outlive the test run.
pub struct Spawned(pub Child);

impl std::ops::Deref for Spawned {
    type Target = Child;

    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Spawned {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Spawned {
    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let sent = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success(), "kill -TERM {}", self.0.id());
    }

    /// Stops it with SIGTERM and insists that it exits 0: what it wrote on stderr.
    pub fn stop(mut self) -> String {
        self.terminate();
        assert_eq!(self.0.wait().unwrap().code(), Some(0));
        self.said()
    }

    /// What it wrote on stderr, once it has exited.
    pub fn said(&mut self) -> String {
        let mut text = String::new();
        if let Some(mut stderr) = self.0.stderr.take() {
            std::io::Read::read_to_string(&mut stderr, &mut text).unwrap();
        }
        text
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// The NDJSON lines of a file connector's output.
pub fn lines(path: &Path) -> Vec<serde_json::Value> {
    match std::fs::read_to_string(path) {
        Ok(text) => text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
            .collect(),
        Err(_) => Vec::new(),
    }
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}
