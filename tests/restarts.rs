//! The database restarts under a running `poll` while the application writes: `poll` keeps
//! running, reconnects by itself, and every committed change is delivered and archived once
//! per connector; a `poll` started while the server is down waits for it. Each test starts a server of its own on a free port (never the shared one)
//! and restarts it: PostgreSQL from the binaries under /usr/lib/postgresql/*/bin run as the
//! `postgres` OS user, MariaDB from mariadb-install-db and mariadbd run as `mysql`.

mod common;
// For its sample schema and helpers only.
#[allow(dead_code)]
mod conformance;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{free_port, lines, Backend, Env, TestDb};
use conformance::eventually;
use conformance::operations::health;

fn port_open(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

/// Runs a command, insisting that it succeeds.
fn run(command: &mut Command) {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(
        out.status.success(),
        "{command:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A folder the server's OS user owns.
fn server_dir(user: &str) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("trigpoll-restart-")
        .tempdir()
        .unwrap();
    run(Command::new("chown")
        .arg(format!("{user}:"))
        .arg(dir.path()));
    dir
}

/// What these tests need from the machine: the server binaries, and root to run them as their
/// own OS user.
fn can_run_servers(binaries: &[&Path]) -> Option<()> {
    if let Some(missing) = binaries.iter().find(|b| !b.exists()) {
        return common::unreachable(
            "database server binaries for the restart tests",
            format!("{} is missing", missing.display()),
        );
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    if !root {
        return common::unreachable("root, to run a database server as its OS user", "not root");
    }
    Some(())
}

/// A PostgreSQL server of the test's own.
struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    /// The server's options, for a start after a stop (a restart keeps them by itself).
    options: String,
}

impl Postgres {
    fn start() -> Option<Postgres> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()
            .and_then(|versions| {
                versions
                    .filter_map(|v| v.ok())
                    .map(|v| v.path().join("bin"))
                    .filter(|b| b.join("pg_ctl").exists())
                    .max_by_key(|b| {
                        let version = b.parent().and_then(|v| v.file_name());
                        version.and_then(|v| v.to_str()?.parse::<u32>().ok())
                    })
            })
            .unwrap_or_else(|| PathBuf::from("/usr/lib/postgresql/none/bin"));
        can_run_servers(&[&bin.join("initdb"), &bin.join("pg_ctl")])?;
        let dir = server_dir("postgres");
        let port = free_port();
        // No TLS on this server: trigpoll's default, sslmode=prefer, falls back to plaintext.
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c ssl=off",
            dir.path().display()
        );
        let server = Postgres {
            dir,
            bin,
            port,
            options,
        };
        run(server
            .as_postgres("initdb")
            .args(["-A", "trust", "-U", "postgres", "-D"])
            .arg(server.data()));
        server.start_again();
        Some(server)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn as_postgres(&self, program: &str) -> Command {
        let mut command = Command::new("runuser");
        command
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join(program));
        command
    }

    fn pg_ctl(&self) -> Command {
        let mut command = self.as_postgres("pg_ctl");
        command
            .arg("-D")
            .arg(self.data())
            .arg("-l")
            .arg(self.dir.path().join("log"));
        command
    }

    /// `pg_ctl restart -m fast` (sessions are disconnected) or `-m immediate` (a crash:
    /// recovery from the WAL at the next start).
    fn restart(&self, mode: &str) {
        run(self.pg_ctl().args(["-w", "-m", mode, "restart"]));
    }

    fn stop(&self) {
        run(self.pg_ctl().args(["-w", "-m", "fast", "stop"]));
    }

    fn start_again(&self) {
        run(self.pg_ctl().args(["-w", "-o", &self.options, "start"]));
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self
            .pg_ctl()
            .args(["-w", "-m", "immediate", "stop"])
            .output();
    }
}

/// A MariaDB server of the test's own.
struct Mariadb {
    dir: tempfile::TempDir,
    port: u16,
    server: Option<Child>,
}

const MARIADBD: &str = "/usr/sbin/mariadbd";

impl Mariadb {
    fn start() -> Option<Mariadb> {
        let install = which("mariadb-install-db");
        can_run_servers(&[Path::new(MARIADBD), &install])?;
        let dir = server_dir("mysql");
        run(Command::new(install)
            .args(["--no-defaults", "--user=mysql", "--skip-test-db"])
            .arg("--auth-root-authentication-method=normal")
            .arg(format!("--datadir={}", dir.path().join("data").display())));
        let mut server = Mariadb {
            dir,
            port: free_port(),
            server: None,
        };
        server.start_again();
        Some(server)
    }

    fn start_again(&mut self) {
        let dir = self.dir.path();
        let child = Command::new(MARIADBD)
            .args(["--no-defaults", "--user=mysql", "--bind-address=127.0.0.1"])
            .arg(format!("--datadir={}", dir.join("data").display()))
            .arg(format!("--port={}", self.port))
            .arg(format!("--socket={}", dir.join("mariadb.sock").display()))
            .arg(format!("--pid-file={}", dir.join("mariadb.pid").display()))
            .arg("--innodb-flush-log-at-trx-commit=0")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mariadbd");
        self.server = Some(child);
        assert!(
            eventually(Duration::from_secs(60), || port_open(self.port)),
            "MariaDB did not start"
        );
    }

    /// A clean shutdown (SIGTERM, as the service manager sends), then a start.
    fn restart(&mut self) {
        self.stop();
        self.start_again();
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.server.take() {
            run(Command::new("kill").args(["-TERM", &child.id().to_string()]));
            child.wait().unwrap();
        }
    }

    fn url(&self) -> String {
        format!("mysql://root@127.0.0.1:{}/mysql", self.port)
    }
}

impl Drop for Mariadb {
    fn drop(&mut self) {
        if let Some(mut child) = self.server.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The full path of a program on the PATH, or a path that does not exist.
fn which(program: &str) -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join(program))
                .find(|p| p.exists())
        })
        .unwrap_or_else(|| PathBuf::from(format!("/nonexistent/{program}")))
}

/// An application that inserts departments one transaction at a time, riding out the
/// restarts: a failed insert is tried again on a new connection, as an insert that does nothing
/// when the row is there (a commit whose answer was lost). The table is the truth at the end.
struct Application {
    stop: Arc<AtomicBool>,
    committed: Arc<AtomicUsize>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Application {
    fn start(env: &Env, total: usize) -> Application {
        let stop = Arc::new(AtomicBool::new(false));
        let committed = Arc::new(AtomicUsize::new(0));
        let url = env.db.url.clone();
        let backend = env.db.backend;
        let thread = {
            let (stop, committed) = (Arc::clone(&stop), Arc::clone(&committed));
            std::thread::spawn(move || {
                let mut writer = None;
                let mut i = 0;
                while i < total && !stop.load(Ordering::Relaxed) {
                    let sql = match backend {
                        Backend::Mysql => {
                            format!("INSERT IGNORE INTO department VALUES ({i}, 'd{i}')")
                        }
                        _ => format!(
                            "INSERT INTO department VALUES ({i}, 'd{i}') ON CONFLICT DO NOTHING"
                        ),
                    };
                    let done = match (&mut writer, backend) {
                        (None, _) => {
                            writer = connect(&url, backend);
                            if writer.is_none() {
                                std::thread::sleep(Duration::from_millis(100));
                            }
                            continue;
                        }
                        (Some(w), _) => w.transaction(&sql),
                    };
                    if done.is_err() {
                        writer = None;
                        continue;
                    }
                    i += 1;
                    committed.store(i, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(3));
                }
            })
        };
        Application {
            stop,
            committed,
            thread: Some(thread),
        }
    }

    fn committed(&self) -> usize {
        self.committed.load(Ordering::Relaxed)
    }

    fn finish(mut self) {
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
    }
}

impl Drop for Application {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn connect(url: &str, backend: Backend) -> Option<common::Writer> {
    match backend {
        Backend::Postgres => common::pg_connect(url).ok().map(common::Writer::Postgres),
        Backend::Mysql => common::mysql_connect(url).ok().map(common::Writer::Mysql),
        Backend::Sqlite => unreachable!("SQLite has no server to restart"),
    }
}

/// The HR schema on the test's server, two file connectors, the triggers installed.
fn setup(db: TestDb) -> Option<Env> {
    let env = Env::with(db)?;
    env.db.execute(conformance::HR);
    env.config("batch_size = 50", conformance::HR_OBJECTS);
    env.file_connector("out");
    env.file_connector("copy");
    env.run_ok(&["install-triggers"], 0);
    Some(env)
}

/// A PostgreSQL of the test's own, set up as [`setup`] does.
fn postgres_with_hr() -> Option<(Postgres, Env)> {
    let server = Postgres::start()?;
    let env =
        TestDb::on(Backend::Postgres, server.url(), "the test's PostgreSQL").and_then(setup)?;
    Some((server, env))
}

/// Waits for the application to reach `n` commits.
fn after_commits(app: &Application, n: usize) {
    assert!(
        eventually(Duration::from_secs(60), || app.committed() >= n),
        "the application is stuck at {} commits",
        app.committed()
    );
}

/// Every row in the table delivered to both connectors, archived once per connector, the event
/// table empty, the poller still running; then it stops on SIGTERM.
fn everything_delivered_once(env: &Env, poll: &mut common::Spawned) {
    let rows: HashSet<i64> = env
        .db
        .query("SELECT dept_id FROM department")
        .into_iter()
        .map(|r| r[0].as_ref().unwrap().parse().unwrap())
        .collect();
    let delivered = |connector: &str| -> HashSet<i64> {
        lines(&env.path(&format!("{connector}.ndjson")))
            .iter()
            .map(|l| l["attributes"]["dept_id"].as_i64().unwrap())
            .collect()
    };
    let all_there = eventually(Duration::from_secs(90), || {
        delivered("out").is_superset(&rows)
            && delivered("copy").is_superset(&rows)
            && env.db.count("SELECT count(*) FROM {events}") == 0
    });
    assert!(
        all_there,
        "{} rows, {} delivered to out, {} to copy, {} events left",
        rows.len(),
        delivered("out").len(),
        delivered("copy").len(),
        env.db.count("SELECT count(*) FROM {events}")
    );
    assert!(poll.try_wait().unwrap().is_none(), "poll stopped by itself");
    for connector in ["out", "copy"] {
        let archived = env.db.count(&format!(
            "SELECT count(*) FROM {{archive}} WHERE connector_id = '{connector}' AND event_status = 1"
        ));
        let distinct = env.db.count(&format!(
            "SELECT count(DISTINCT event_id) FROM {{archive}} WHERE connector_id = '{connector}'"
        ));
        assert_eq!(
            (archived, distinct),
            (rows.len() as i64, rows.len() as i64),
            "{connector}: every change archived once"
        );
    }
    run(Command::new("kill").args(["-TERM", &poll.id().to_string()]));
    assert_eq!(poll.wait().unwrap().code(), Some(0));
}

#[test]
fn postgres_fast_and_immediate_restarts_under_poll() {
    let Some((server, env)) = postgres_with_hr() else {
        return;
    };
    let mut poll = env.spawn(&["poll", "--interval", "200ms"]);
    let app = Application::start(&env, 600);
    after_commits(&app, 150);
    server.restart("fast");
    after_commits(&app, 350);
    server.restart("immediate");
    app.finish();
    everything_delivered_once(&env, &mut poll);
}

#[test]
fn mariadb_restart_under_poll() {
    let Some(mut server) = Mariadb::start() else {
        return;
    };
    let Some(env) = TestDb::on(Backend::Mysql, server.url(), "the test's MariaDB").and_then(setup)
    else {
        return;
    };
    let mut poll = env.spawn(&["poll", "--interval", "200ms"]);
    let app = Application::start(&env, 500);
    after_commits(&app, 150);
    server.restart();
    after_commits(&app, 300);
    server.restart();
    app.finish();
    everything_delivered_once(&env, &mut poll);
}

/// `/healthz` turns 503 once the database has been unreachable for about ten intervals, and
/// 200 again when it is back; the poller delivers what was written meanwhile.
#[test]
fn health_follows_the_database() {
    let Some((server, env)) = postgres_with_hr() else {
        return;
    };
    let port = free_port();
    let metrics = format!("127.0.0.1:{port}");
    let mut poll = env.spawn(&["poll", "--interval", "100ms", "--metrics", &metrics]);
    assert!(eventually(Duration::from_secs(60), || health(port) == Some(200)));
    // Counted from before the stop: the server refuses connections as soon as it begins, and a
    // fast shutdown's checkpoint can take long on a busy machine. The last good answer came at
    // most one idle pass (100 ms and a claim) before that.
    let stopping = Instant::now();
    server.stop();
    assert!(
        eventually(Duration::from_secs(30), || health(port) == Some(503)),
        "/healthz stayed {:?} with the database down",
        health(port)
    );
    assert!(
        stopping.elapsed() >= Duration::from_millis(700),
        "unhealthy before ten intervals had passed"
    );
    let (_, scrape) = conformance::operations::scrape(port).expect("metrics while unhealthy");
    let healthy = conformance::operations::sample(&scrape, "trigpoll_healthy", &[]);
    assert_eq!(healthy, Some(0.0));
    server.start_again();
    env.db.execute("INSERT INTO department VALUES (1, 'back')");
    assert!(
        eventually(Duration::from_secs(60), || health(port) == Some(200)),
        "/healthz did not recover"
    );
    everything_delivered_once(&env, &mut poll);
}

/// A poll started while the database is down (booting after trigpoll, or restarting) waits for
/// it as a running poll waits for a lost connection: it says why, delivers once the server
/// answers, and a SIGTERM while it waits ends it with exit 0.
#[test]
fn poll_started_while_the_database_is_down_waits_for_it() {
    let Some((server, env)) = postgres_with_hr() else {
        return;
    };
    server.stop();
    let mut poll = env.spawn(&["poll", "--interval", "100ms"]);
    let stopped = env.spawn(&["poll", "--interval", "100ms"]);
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        poll.try_wait().unwrap().is_none(),
        "poll exited with the database down"
    );
    let said = stopped.stop();
    assert!(
        said.contains("database not reachable; poll waits for it")
            && said.contains("cannot connect to PostgreSQL"),
        "{said}"
    );
    server.start_again();
    env.db.execute("INSERT INTO department VALUES (1, 'back')");
    everything_delivered_once(&env, &mut poll);
}
