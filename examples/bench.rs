//! The benchmark of docs/performance.md: every figure next to its reference, in one run, on one
//! database, written to BENCHMARKS.md. A report, never a test: no number makes it fail.
//!
//! Run by `scripts/bench.sh`, which installs what it needs and builds this in release mode:
//!
//! ```text
//! bench [--quick] [--url URL] [--mysql-url URL] [--trigpoll PATH] [--before PATH]
//!       [--out FILE] [--runs N] [--only fig1,fig2,fig3,fig4,fig5,fig6,fig7,fig8,fig9,fig10]
//! ```
//!
//! `--before PATH` names an earlier trigpoll binary: figure 2 then measures its triggers beside
//! the current ones, interleaved in the same run (on tables of their own, with its event table
//! in the schema `trigpoll_before`).
//!
//! It creates a throwaway database on the server at `--url` and drops it at the end. Figure 5
//! (drain on MySQL/MariaDB and SQLite) creates two throwaway databases on the server at
//! `--mysql-url` and a throwaway SQLite file in `/dev/shm`, and removes them at the end.
//!
//! Figure 9 (brokers and batched HTTP) uses NATS at `TRIGPOLL_BENCH_NATS_URL`, RabbitMQ at
//! `TRIGPOLL_BENCH_AMQP_URL` and Redis at `TRIGPOLL_BENCH_REDIS_URL` (the local defaults), see
//! `brokers`. Figure 10 (sysbench `oltp_write_only` with trigpoll's triggers and poller) uses two
//! more throwaway databases on the server at `--mysql-url`, see `sysbench`.
//!
//! `--only` with figures 5 to 10 alone leaves the rest of the report alone: it replaces (or
//! adds) only their sections ("## Drain on MySQL and SQLite", "## Hot keys", "## Capture
//! settings", "## Brokers and batched HTTP", "## sysbench on MariaDB") of the existing `--out`
//! file, see `splice_section`.

#[path = "bench/brokers.rs"]
mod brokers;
#[path = "bench/cpu.rs"]
mod cpu;
#[path = "bench/sysbench.rs"]
mod sysbench;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mysql::prelude::Queryable;
use postgres::{Client, NoTls};
use trigpoll::store::EventStore;

const SCHEMA: &str = include_str!("../bench/schema.sql");
const PGQ: &str = include_str!("../bench/pgq.sql");
const BOUND: &str = include_str!("../bench/bound.sql");

const EVENTS: &str = "trigpoll.trigpoll_event";
const ARCHIVE: &str = "trigpoll.trigpoll_archive";
/// Rows in each table of the trigger-cost figure (pgbench picks one at random).
const UPDATE_ROWS: i64 = 100_000;

/// How much work each figure does.
struct Sizes {
    drain_events: i64,
    naive_secs: f64,
    pgbench_secs: u32,
    insert_rows: i64,
    latency_secs: f64,
    latency_rate: u32,
    claim_small: i64,
    claim_big: i64,
    memory_events: i64,
    archive_rows: i64,
    /// pgbench TPC-B's duration in figure 7.
    tpcb_secs: u32,
    /// sysbench's duration in figure 10.
    sysbench_secs: u32,
}

impl Sizes {
    fn new(quick: bool) -> Sizes {
        if quick {
            Sizes {
                drain_events: 20_000,
                naive_secs: 1.5,
                pgbench_secs: 2,
                insert_rows: 50_000,
                latency_secs: 4.0,
                latency_rate: 1000,
                claim_small: 10_000,
                claim_big: 200_000,
                memory_events: 100_000,
                archive_rows: 500_000,
                tpcb_secs: 5,
                sysbench_secs: 5,
            }
        } else {
            Sizes {
                drain_events: 100_000,
                naive_secs: 10.0,
                pgbench_secs: 10,
                insert_rows: 200_000,
                latency_secs: 20.0,
                latency_rate: 1000,
                claim_small: 10_000,
                claim_big: 1_000_000,
                memory_events: 1_000_000,
                archive_rows: 10_000_000,
                tpcb_secs: 15,
                sysbench_secs: 15,
            }
        }
    }
}

struct Opts {
    quick: bool,
    url: String,
    trigpoll: PathBuf,
    out: PathBuf,
    runs: usize,
    only: Vec<String>,
    /// The MySQL/MariaDB server of figure 5, without a database part.
    mysql_url: String,
    /// An earlier trigpoll binary whose triggers figure 2 measures beside the current ones.
    before: Option<PathBuf>,
    /// The brokers of figure 9.
    brokers: brokers::BrokerUrls,
}

fn parse_args() -> Opts {
    let mut opts = Opts {
        quick: false,
        url: std::env::var("TRIGPOLL_BENCH_PG_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into()),
        trigpoll: PathBuf::from("target/release/trigpoll"),
        out: PathBuf::from("BENCHMARKS.md"),
        runs: 3,
        only: Vec::new(),
        mysql_url: std::env::var("TRIGPOLL_BENCH_MYSQL_URL")
            .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".into()),
        before: None,
        brokers: brokers::BrokerUrls::from_env(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .unwrap_or_else(|| die(&format!("{arg} needs a value")))
        };
        match arg.as_str() {
            "--quick" => opts.quick = true,
            "--url" => opts.url = value(),
            "--mysql-url" => opts.mysql_url = value().trim_end_matches('/').to_string(),
            "--trigpoll" => opts.trigpoll = PathBuf::from(value()),
            "--out" => opts.out = PathBuf::from(value()),
            "--runs" => opts.runs = value().parse().unwrap_or_else(|_| die("--runs N")),
            "--only" => opts.only = value().split(',').map(str::to_string).collect(),
            "--before" => opts.before = Some(PathBuf::from(value())),
            other => die(&format!("unknown argument {other}")),
        }
    }
    opts.runs = opts.runs.max(1);
    opts
}

fn die(msg: &str) -> ! {
    eprintln!("bench: {msg}");
    std::process::exit(2)
}

fn say(msg: &str) {
    eprintln!("bench: {msg}");
}

/// The throwaway database, dropped when the bench ends (or panics).
struct Database {
    admin_url: String,
    name: String,
    url: String,
}

impl Database {
    fn create(admin_url: &str) -> Database {
        let name = format!("trigpoll_bench_{:08x}", rand::random::<u32>());
        let mut admin = Client::connect(admin_url, NoTls)
            .unwrap_or_else(|e| die(&format!("cannot connect to {admin_url}: {e}")));
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap_or_else(|e| die(&format!("cannot create the bench database: {e}")));
        let (base, _) = admin_url
            .rsplit_once('/')
            .unwrap_or_else(|| die("the URL has no database part"));
        Database {
            admin_url: admin_url.to_string(),
            url: format!("{base}/{name}"),
            name,
        }
    }

    fn connect(&self) -> Client {
        Client::connect(&self.url, NoTls).expect("connect to the bench database")
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        if let Ok(mut admin) = Client::connect(&self.admin_url, NoTls) {
            let _ = admin.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}

/// A fast local HTTP receiver answering 200 with keep-alive. In latency mode it reads each
/// body's `attributes.sent_us` and records how long ago that was.
struct Receiver {
    url: String,
    count: Arc<AtomicU64>,
    latency_mode: Arc<AtomicBool>,
    latencies: Arc<Mutex<Vec<(u64, u64)>>>,
}

impl Receiver {
    fn start() -> Receiver {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").expect("bind a local port"));
        let port = server.server_addr().to_ip().expect("an IP address").port();
        let count = Arc::new(AtomicU64::new(0));
        let latency_mode = Arc::new(AtomicBool::new(false));
        let latencies = Arc::new(Mutex::new(Vec::new()));
        for _ in 0..8 {
            let (server, count, mode, latencies) = (
                Arc::clone(&server),
                Arc::clone(&count),
                Arc::clone(&latency_mode),
                Arc::clone(&latencies),
            );
            std::thread::spawn(move || {
                let mut body = Vec::new();
                while let Ok(mut request) = server.recv() {
                    body.clear();
                    let _ = request.as_reader().read_to_end(&mut body);
                    if mode.load(Ordering::Relaxed) {
                        let now = now_us();
                        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body) {
                            if let Some(sent) = v["attributes"]["sent_us"].as_u64() {
                                latencies
                                    .lock()
                                    .unwrap()
                                    .push((sent, now.saturating_sub(sent)));
                            }
                        }
                    }
                    count.fetch_add(1, Ordering::Relaxed);
                    let _ = request.respond(tiny_http::Response::empty(200));
                }
            });
        }
        Receiver {
            url: format!("http://127.0.0.1:{port}/events"),
            count,
            latency_mode,
            latencies,
        }
    }
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_micros() as u64
}

fn median(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The variants of one round, starting with a different one each round (`run`), so that drift
/// falls on all of them.
fn rotation<'a>(variants: &[&'a str], run: usize) -> Vec<&'a str> {
    (0..variants.len())
        .map(|k| variants[(k + run) % variants.len()])
        .collect()
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)] as f64
}

struct Bench {
    opts: Opts,
    sizes: Sizes,
    db: Database,
    client: Client,
    dir: tempfile::TempDir,
    /// Where the file connector writes: tmpfs, see `setup`.
    sink: PathBuf,
    receiver: Receiver,
    pgq: Result<String, String>,
    /// figure name -> runs
    results: BTreeMap<String, Vec<f64>>,
    max_rss_kib: Vec<f64>,
    /// Figure 5's backends that ran: key, version, settings.
    fig5_versions: Vec<(&'static str, String, String)>,
    /// Figure 5's backends that could not be set up, and why.
    fig5_missing: Vec<String>,
    /// Figure 9's brokers that did not answer, and why.
    brokers_missing: Vec<String>,
    /// The CPU meter of the PostgreSQL server, when it runs on this machine (figure 1).
    pg_meter: Option<cpu::Meter>,
    /// Why figure 10 (sysbench on MariaDB) did not run.
    sysbench_missing: Option<String>,
    /// The server figure 10 ran on.
    sysbench_version: String,
}

impl Bench {
    fn exec(&mut self, sql: &str) {
        self.client
            .batch_execute(sql)
            .unwrap_or_else(|e| panic!("{sql}\n{e}"));
    }

    fn count(&mut self, sql: &str) -> i64 {
        self.client
            .query_one(sql, &[])
            .unwrap_or_else(|e| panic!("{sql}\n{e}"))
            .get(0)
    }

    fn record(&mut self, figure: &str, value: f64) {
        say(&format!("{figure}: {value:.1}"));
        self.results
            .entry(figure.to_string())
            .or_default()
            .push(value);
    }

    /// Records the CPU seconds between two samples of a meter per 100,000 of `events`.
    fn record_cpu(&mut self, figure: &str, before: f64, after: f64, events: i64) {
        if before.is_finite() && after.is_finite() && events > 0 {
            self.record(figure, (after - before) * 100_000.0 / events as f64);
        }
    }

    /// The PostgreSQL server's CPU seconds so far (NaN when it is not on this machine), once
    /// the client backends of what ran before on the bench database have exited.
    fn pg_cpu(&mut self) -> f64 {
        let Some(meter) = self.pg_meter else {
            return f64::NAN;
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.count(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()
             AND backend_type = 'client backend' AND pid <> pg_backend_pid()",
        ) > 0
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        // A backend leaves pg_stat_activity just before its process exits and is reaped.
        std::thread::sleep(Duration::from_millis(50));
        meter.secs()
    }

    /// Installs (`on`) or removes the triggers of the objects of `config`.
    fn set_triggers(&self, config: &str, on: bool) -> bool {
        let command = if on {
            "install-triggers"
        } else {
            "uninstall-triggers"
        };
        let out = self
            .trigpoll(config, &[command])
            .output()
            .expect("run trigpoll");
        if !out.status.success() {
            say(&format!(
                "{command} ({config}) failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        out.status.success()
    }

    fn median_of(&self, figure: &str) -> f64 {
        self.results.get(figure).map_or(f64::NAN, |v| median(v))
    }

    fn config_path(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.toml"))
    }

    fn write_config(&self, name: &str, connectors: &str, archive: &str, coalesce: bool) {
        let text = format!(
            r#"[database]
url = "{url}"
archive_table = "{archive}"

[poll]
batch_size = 1000
interval = "1s"
connectors_dir = "{connectors}"

[[object]]
name = "Item"
table = "public.item"
{coalesce}

[[object]]
name = "Bench"
table = "public.u_trigpoll"

[[object]]
name = "BenchInsert"
table = "public.i_trigpoll"

[[object]]
name = "Tick"
table = "public.tick"
"#,
            url = self.db.url,
            // Left out unless set, so that an earlier binary reads the file too.
            coalesce = if coalesce { "coalesce = true" } else { "" },
        );
        std::fs::write(self.config_path(name), text).expect("write a config");
    }

    fn write_connector(&self, folder: &str, body: &str) {
        let dir = self.dir.path().join(folder);
        std::fs::create_dir_all(&dir).expect("create a connectors folder");
        std::fs::write(dir.join("out.toml"), body).expect("write a connector");
    }

    fn trigpoll(&self, config: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.opts.trigpoll);
        cmd.arg("--config")
            .arg(self.config_path(config))
            .arg("-q")
            .args(args)
            .env("RUST_LOG", "warn")
            .env_remove("TRIGPOLL_CONFIG");
        cmd
    }

    /// The connectors and configs every figure uses (no database work).
    fn write_files(&mut self) {
        // tmpfs rather than /dev/null: the file connector fsyncs a regular file before it reports
        // a batch sent (and skips that for a device), so the measured path includes the fsync.
        let shm = Path::new("/dev/shm");
        let base = if shm.is_dir() {
            shm.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        self.sink = base.join(format!("{}.ndjson", self.db.name));
        let sink = format!(
            "id = \"out\"\nsubscribe = [\"*.*\"]\n[sink]\ntype = \"file\"\npath = \"{}\"\n",
            self.sink.display()
        );
        self.write_connector("conn-file", &sink);
        self.write_connector(
            "conn-http",
            &format!(
                "id = \"out\"\nsubscribe = [\"*.*\"]\n[sink]\ntype = \"http\"\nurl = \"{}\"\nsecret = \"bench\"\n",
                self.receiver.url
            ),
        );
        self.write_config("file", "conn-file", "trigpoll_archive", false);
        self.write_config("coalesce", "conn-file", "trigpoll_archive", true);
        self.write_config("http", "conn-http", "trigpoll_archive", false);
        self.write_config("big", "conn-file", "trigpoll_archive_big", false);
    }

    /// The PostgreSQL tables and triggers of figures 1 to 4.
    fn setup(&mut self) {
        let rows = self.sizes.drain_events.max(self.sizes.memory_events);
        self.exec(SCHEMA);
        say(&format!("filling item with {rows} rows"));
        self.exec(&format!(
            "INSERT INTO item SELECT g, 'item ' || g, g % 1000, (g % 10000) / 100.0, now()
             FROM generate_series(1, {rows}) g;
             INSERT INTO u_none SELECT g, 'row ' || g, 0, now() FROM generate_series(1, {UPDATE_ROWS}) g;
             INSERT INTO u_trigpoll SELECT * FROM u_none;
             INSERT INTO u_pgq SELECT * FROM u_none;"
        ));
        for config in ["file", "big"] {
            let out = self
                .trigpoll(config, &["install-triggers"])
                .output()
                .expect("run trigpoll");
            if !out.status.success() {
                die(&format!(
                    "install-triggers failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
        }
        if let Some(before) = self.opts.before.clone() {
            self.setup_before(&before);
        }
        self.pgq = match self.client.batch_execute(PGQ) {
            Ok(()) => {
                let v: String = self
                    .client
                    .query_one(
                        "SELECT extversion FROM pg_extension WHERE extname = 'pgq'",
                        &[],
                    )
                    .map(|r| r.get(0))
                    .unwrap_or_default();
                Ok(v)
            }
            Err(e) => {
                let msg = e
                    .as_db_error()
                    .map_or_else(|| e.to_string(), |d| d.message().to_string());
                say(&format!("PgQ is not available: {msg}"));
                Err(msg)
            }
        };
        self.exec("VACUUM ANALYZE");
        let backend = self.count("SELECT pg_backend_pid()::bigint");
        self.pg_meter = i32::try_from(backend).ok().and_then(cpu::Meter::postgres);
        if self.pg_meter.is_none() {
            say("the PostgreSQL server is not on this machine: its CPU will not be measured");
        }
    }

    /// The tables of the `before` variants of figures 2 and 8, with the triggers of the earlier
    /// binary `before`, which writes to an event table of its own (schema `trigpoll_before`).
    fn setup_before(&mut self, before: &Path) {
        self.exec(
            "CREATE TABLE u_before (LIKE u_none INCLUDING ALL);
             CREATE TABLE i_before (LIKE u_none INCLUDING ALL);
             CREATE TABLE u_changes_before (LIKE u_none INCLUDING ALL);
             INSERT INTO u_before SELECT * FROM u_none;
             INSERT INTO u_changes_before SELECT * FROM u_none;",
        );
        let text = format!(
            "[database]\nurl = \"{}\"\nschema = \"trigpoll_before\"\n\n[poll]\nconnectors_dir = \"conn-file\"\n\n\
             [[object]]\nname = \"Bench\"\ntable = \"public.u_before\"\n\n\
             [[object]]\nname = \"BenchInsert\"\ntable = \"public.i_before\"\n\n\
             [[object]]\nname = \"BenchChanges\"\ntable = \"public.u_changes_before\"\nchanges = true\n",
            self.db.url
        );
        std::fs::write(self.config_path("before"), text).expect("write a config");
        let out = Command::new(before)
            .arg("--config")
            .arg(self.config_path("before"))
            .args(["-q", "install-triggers"])
            .output()
            .expect("run the earlier trigpoll");
        if !out.status.success() {
            die(&format!(
                "install-triggers of {} failed: {}",
                before.display(),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }

    /// Empties the event table (and the archive) and queues `n` Update events for item 1..n.
    fn queue_events(&mut self, n: i64, clear_archive: bool) {
        self.queue_on_keys(n, n, clear_archive)
    }

    /// Like `queue_events`, with the events spread over `keys` keys (item 1..keys), in turn.
    fn queue_on_keys(&mut self, n: i64, keys: i64, clear_archive: bool) {
        self.exec(&format!("TRUNCATE {EVENTS}"));
        if clear_archive {
            self.exec(&format!("TRUNCATE {ARCHIVE}"));
        }
        self.exec(&format!(
            "INSERT INTO {EVENTS} (object_name, object_verb, object_key, event_priority)
             SELECT 'Item', 'Update', 'id=' || ((g - 1) % {keys} + 1), 0
             FROM generate_series(1, {n}) g"
        ));
        self.exec(&format!("VACUUM ANALYZE {EVENTS}"));
        self.exec("CHECKPOINT");
    }

    /// Runs `trigpoll drain` and returns events/s, measured around the process.
    fn drain(&mut self, config: &str, n: i64) -> f64 {
        let secs = self.drain_secs(config);
        let left = self.count(&format!("SELECT count(*) FROM {EVENTS}"));
        if left != 0 {
            say(&format!("{left} events were left after drain ({config})"));
        }
        (n - left) as f64 / secs
    }

    /// Runs `trigpoll drain` with `config` (any backend) and returns its wall time in seconds,
    /// measured around the process; its max RSS goes to `max_rss_kib` when `/usr/bin/time` is
    /// there.
    fn drain_secs(&mut self, config: &str) -> f64 {
        let _ = std::fs::remove_file(&self.sink);
        let time = Path::new("/usr/bin/time");
        let mut cmd = if time.exists() {
            let mut c = Command::new(time);
            c.arg("-f").arg("maxrss_kib=%M").arg(&self.opts.trigpoll);
            c
        } else {
            Command::new(&self.opts.trigpoll)
        };
        cmd.arg("--config")
            .arg(self.config_path(config))
            .args(["-q", "drain"])
            .env("RUST_LOG", "warn")
            .env_remove("TRIGPOLL_CONFIG")
            .stdout(Stdio::null());
        let start = Instant::now();
        let out = cmd.output().expect("run trigpoll drain");
        let secs = start.elapsed().as_secs_f64();
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            say(&format!("drain exited {:?}: {stderr}", out.status));
        }
        if let Some(kib) = stderr
            .lines()
            .find_map(|l| l.strip_prefix("maxrss_kib="))
            .and_then(|v| v.trim().parse::<f64>().ok())
        {
            self.max_rss_kib.push(kib);
        }
        let _ = std::fs::remove_file(&self.sink);
        secs
    }

    /// One event per transaction: claim one, fetch its row, archive it, delete it, commit.
    fn naive(&mut self, n: i64, limit: Duration) -> f64 {
        let mut c = self.db.connect();
        let claim = c
            .prepare(&format!(
                "SELECT event_id, object_key FROM {EVENTS}
                 WHERE waiting_for IS NULL AND event_status = 0
                 ORDER BY event_priority, event_id LIMIT 1 FOR UPDATE SKIP LOCKED"
            ))
            .unwrap();
        let fetch = c
            .prepare("SELECT to_json(t.*)::text FROM item t WHERE id = $1")
            .unwrap();
        let archive = c
            .prepare(&format!(
                "INSERT INTO {ARCHIVE} (event_id, object_name, object_verb, object_key,
                    event_priority, event_time, event_status, connector_id, attempts, payload,
                    replay_of)
                 SELECT event_id, object_name, object_verb, object_key, event_priority,
                    event_time, 1, 'naive', attempts + 1, payload, replay_of
                 FROM {EVENTS} WHERE event_id = $1"
            ))
            .unwrap();
        let delete = c
            .prepare(&format!("DELETE FROM {EVENTS} WHERE event_id = $1"))
            .unwrap();
        let start = Instant::now();
        let mut done = 0i64;
        let mut sink = std::io::sink();
        while done < n && start.elapsed() < limit {
            let mut tx = c.transaction().unwrap();
            let Some(row) = tx.query_opt(&claim, &[]).unwrap() else {
                break;
            };
            let event_id: i64 = row.get(0);
            let key: &str = row.get(1);
            let id: i64 = key.trim_start_matches("id=").parse().unwrap();
            let image: String = tx.query_one(&fetch, &[&id]).unwrap().get(0);
            let body = format!("{{\"event_id\":{event_id},\"attributes\":{image}}}\n");
            std::io::Write::write_all(&mut sink, body.as_bytes()).unwrap();
            tx.execute(&archive, &[&event_id]).unwrap();
            tx.execute(&delete, &[&event_id]).unwrap();
            tx.commit().unwrap();
            done += 1;
        }
        done as f64 / start.elapsed().as_secs_f64()
    }

    /// The database's own bound: `bench/bound.sql` in a loop, one commit per batch of 1000.
    fn bound(&mut self, n: i64) -> f64 {
        let mut c = self.db.connect();
        let statement = c.prepare(BOUND).unwrap();
        let start = Instant::now();
        let mut moved = 0u64;
        loop {
            let rows = c.execute(&statement, &[]).unwrap();
            if rows == 0 {
                break;
            }
            moved += rows;
        }
        let secs = start.elapsed().as_secs_f64();
        if moved as i64 != n {
            say(&format!("the bound moved {moved} of {n} events"));
        }
        moved as f64 / secs
    }

    /// PgQ: logutriga fills the queue (ticked every 1000 events), then one consumer reads it
    /// batch by batch, one transaction per batch.
    fn pgq_drain(&mut self, n: i64) -> f64 {
        self.exec("TRUNCATE p_item");
        let chunk = 1000;
        let mut from = 1;
        while from <= n {
            let to = (from + chunk - 1).min(n);
            self.exec(&format!(
                "INSERT INTO p_item SELECT * FROM item WHERE id BETWEEN {from} AND {to};
                 SELECT pgq.ticker('bench');"
            ));
            from = to + 1;
        }
        // The last, partial chunk needs a forced tick to become a batch.
        self.exec("SELECT pgq.force_tick('bench')");
        self.exec("SELECT pgq.ticker('bench')");
        self.exec("CHECKPOINT");
        let mut c = self.db.connect();
        let mut sink = std::io::sink();
        let start = Instant::now();
        let mut events = 0i64;
        loop {
            let mut tx = c.transaction().unwrap();
            let batch: Option<i64> = tx
                .query_one("SELECT pgq.next_batch('bench', 'bench')", &[])
                .unwrap()
                .get(0);
            let Some(batch) = batch else {
                tx.commit().unwrap();
                break;
            };
            for row in tx
                .query(
                    "SELECT ev_id, ev_type, ev_data FROM pgq.get_batch_events($1)",
                    &[&batch],
                )
                .unwrap()
            {
                let id: i64 = row.get(0);
                let data: &str = row.get(2);
                let body = format!("{{\"event_id\":{id},\"data\":\"{data}\"}}\n");
                std::io::Write::write_all(&mut sink, body.as_bytes()).unwrap();
                events += 1;
            }
            tx.query_one("SELECT pgq.finish_batch($1)", &[&batch])
                .unwrap();
            tx.commit().unwrap();
        }
        let secs = start.elapsed().as_secs_f64();
        if events < n {
            say(&format!("the PgQ consumer read {events} of {n} events"));
        }
        events as f64 / secs
    }

    fn fig1(&mut self) {
        say("figure 1: drain throughput");
        let n = self.sizes.drain_events;
        let limit = Duration::from_secs_f64(self.sizes.naive_secs);
        // The receiver's first connections are slow to be served (tiny_http grows its pool of
        // connection threads): warm it up so that the first measured run is not an outlier.
        self.queue_events(2000, true);
        self.drain("http", 2000);
        for run in 0..self.opts.runs {
            // A different variant starts each round, so that drift falls on all of them.
            for variant in rotation(&["file", "http", "bound", "naive", "pgq"], run) {
                match variant {
                    "file" => {
                        self.queue_events(n, true);
                        let before = self.pg_cpu();
                        let r = self.drain("file", n);
                        let after = self.pg_cpu();
                        self.record("drain.file", r);
                        self.record_cpu("cpu.postgresql.trigpoll", before, after, n);
                    }
                    "http" => {
                        self.queue_events(n, true);
                        let r = self.drain("http", n);
                        self.record("drain.http", r);
                    }
                    "bound" => {
                        self.queue_events(n, true);
                        let before = self.pg_cpu();
                        let r = self.bound(n);
                        let after = self.pg_cpu();
                        self.record("drain.bound", r);
                        self.record_cpu("cpu.postgresql.bound", before, after, n);
                    }
                    "naive" => {
                        // Enough for the time it is given, no more.
                        let m = n.min((self.sizes.naive_secs * 5000.0) as i64);
                        self.queue_events(m, true);
                        let r = self.naive(m, limit);
                        self.record("drain.naive", r);
                    }
                    _ => {
                        if self.pgq.is_ok() {
                            let r = self.pgq_drain(n);
                            self.record("drain.pgq", r);
                        }
                    }
                }
            }
        }
        self.exec(&format!("TRUNCATE {EVENTS}, {ARCHIVE}"));
    }

    fn pgbench(&mut self, table: &str, sync_off: bool) -> f64 {
        let script = self.dir.path().join(format!("update_{table}.sql"));
        std::fs::write(
            &script,
            format!(
                "\\set id random(1, {UPDATE_ROWS})\nUPDATE {table} SET qty = qty + 1, updated = now() WHERE id = :id;\n"
            ),
        )
        .unwrap();
        let mut cmd = Command::new("pgbench");
        cmd.args(["-n", "-c", "2", "-j", "2", "-T"])
            .arg(self.sizes.pgbench_secs.to_string())
            .arg("-f")
            .arg(&script)
            .arg(&self.db.url);
        if sync_off {
            cmd.env("PGOPTIONS", "-c synchronous_commit=off");
        }
        let out = match cmd.output() {
            Ok(out) => out,
            Err(e) => {
                say(&format!("pgbench did not run: {e}"));
                return f64::NAN;
            }
        };
        let text = String::from_utf8_lossy(&out.stdout);
        let tps = text
            .lines()
            .find(|l| l.starts_with("tps = "))
            .and_then(|l| l["tps = ".len()..].split_whitespace().next())
            .and_then(|v| v.parse().ok());
        tps.unwrap_or_else(|| {
            say(&format!(
                "pgbench failed: {text}{}",
                String::from_utf8_lossy(&out.stderr)
            ));
            f64::NAN
        })
    }

    fn clear_queues(&mut self) {
        self.exec(&format!("TRUNCATE {EVENTS}"));
        if self.opts.before.is_some() {
            self.exec("TRUNCATE trigpoll_before.trigpoll_event");
        }
        if self.pgq.is_ok() {
            let table: String = self
                .client
                .query_one(
                    "SELECT queue_data_pfx FROM pgq.queue WHERE queue_name = 'bench'",
                    &[],
                )
                .unwrap()
                .get(0);
            self.exec(&format!("TRUNCATE {table}"));
        }
    }

    fn fig2(&mut self) {
        say("figure 2: trigger cost");
        let mut variants = vec!["none", "trigpoll"];
        if self.pgq.is_ok() {
            variants.push("pgq");
        }
        if self.opts.before.is_some() {
            variants.push("before");
        }
        for run in 0..self.opts.runs {
            for sync_off in [true, false] {
                for k in 0..variants.len() {
                    let v = variants[(k + run) % variants.len()];
                    self.clear_queues();
                    self.exec(&format!("VACUUM ANALYZE u_{v}"));
                    self.exec("CHECKPOINT");
                    let tps = self.pgbench(&format!("u_{v}"), sync_off);
                    let sync = if sync_off { "off" } else { "on" };
                    self.record(&format!("update.{sync}.{v}"), tps);
                }
            }
        }
        let rows = self.sizes.insert_rows;
        for run in 0..self.opts.runs {
            for k in 0..variants.len() {
                let v = variants[(k + run) % variants.len()];
                self.clear_queues();
                self.exec(&format!("TRUNCATE i_{v}"));
                self.exec("CHECKPOINT");
                let start = Instant::now();
                self.exec(&format!(
                    "INSERT INTO i_{v} SELECT g, 'row ' || g, g % 100, now() FROM generate_series(1, {rows}) g"
                ));
                self.record(
                    &format!("insert.{v}"),
                    start.elapsed().as_secs_f64() * 1000.0,
                );
            }
        }
        self.clear_queues();
        self.exec("TRUNCATE i_none, i_trigpoll, i_pgq");
        if self.opts.before.is_some() {
            self.exec("TRUNCATE i_before");
        }
    }

    fn fig3(&mut self) {
        say("figure 3: latency commit to delivery");
        let rate = self.sizes.latency_rate as f64;
        let secs = self.sizes.latency_secs;
        for _ in 0..self.opts.runs {
            self.exec(&format!("TRUNCATE {EVENTS}, {ARCHIVE}"));
            self.receiver.latencies.lock().unwrap().clear();
            self.receiver.latency_mode.store(true, Ordering::Relaxed);
            let before = self.receiver.count.load(Ordering::Relaxed);
            let mut poll: Child = self
                .trigpoll("http", &["poll", "--interval", "1s"])
                .stdout(Stdio::null())
                .spawn()
                .expect("start trigpoll poll");
            // Let it connect and LISTEN.
            std::thread::sleep(Duration::from_millis(1500));
            let mut c = self.db.connect();
            c.batch_execute("SET synchronous_commit = off").unwrap();
            let insert = c
                .prepare(
                    "INSERT INTO tick (sent_us)
                     SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::bigint",
                )
                .unwrap();
            let total = (secs * rate) as u64;
            let start = Instant::now();
            for i in 0..total {
                let due = start + Duration::from_secs_f64(i as f64 / rate);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                c.execute(&insert, &[]).unwrap();
            }
            let achieved = total as f64 / start.elapsed().as_secs_f64();
            let deadline = Instant::now() + Duration::from_secs(30);
            while self.receiver.count.load(Ordering::Relaxed) - before < total
                && Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(poll.id().to_string())
                .status();
            let _ = poll.wait();
            self.receiver.latency_mode.store(false, Ordering::Relaxed);
            let mut lat = self.receiver.latencies.lock().unwrap().clone();
            // The first second warms up the connection and caches.
            let first = lat.iter().map(|l| l.0).min().unwrap_or(0);
            lat.retain(|l| l.0 >= first + 1_000_000);
            let mut us: Vec<u64> = lat.iter().map(|l| l.1).collect();
            us.sort_unstable();
            let received = self.receiver.count.load(Ordering::Relaxed) - before;
            if received < total {
                say(&format!("latency: {received} of {total} delivered"));
            }
            self.record("latency.rate", achieved);
            self.record("latency.p50", percentile(&us, 50.0) / 1000.0);
            self.record("latency.p99", percentile(&us, 99.0) / 1000.0);
            self.record(
                "latency.max",
                us.last().copied().unwrap_or(0) as f64 / 1000.0,
            );
        }
        self.exec(&format!("TRUNCATE {EVENTS}, {ARCHIVE}"));
    }

    /// Milliseconds for a fresh store to claim its first batch.
    fn first_claim(&mut self) -> f64 {
        let config =
            trigpoll::config::Config::load(&self.config_path("file")).expect("load the config");
        let mut store =
            trigpoll::store::postgres::PgStore::connect(&config).expect("connect the store");
        let start = Instant::now();
        let events = store.claim(config.poll.batch_size).expect("claim");
        let ms = start.elapsed().as_secs_f64() * 1000.0;
        if events.is_empty() {
            say("the claim found nothing");
        }
        store.release_claims().expect("release the claims");
        ms
    }

    fn fig4(&mut self) {
        say("figure 4: scale");
        for (label, n) in [
            ("small", self.sizes.claim_small),
            ("big", self.sizes.claim_big),
        ] {
            self.queue_events(n, true);
            for _ in 0..self.opts.runs {
                let ms = self.first_claim();
                self.record(&format!("claim.{label}"), ms);
            }
        }
        // Peak memory draining the big backlog.
        let m = self.sizes.memory_events;
        self.max_rss_kib.clear();
        let runs = if self.opts.quick { self.opts.runs } else { 1 };
        for _ in 0..runs {
            self.queue_events(m, true);
            let r = self.drain("file", m);
            self.record("memory.rate", r);
        }
        let rss = std::mem::take(&mut self.max_rss_kib);
        for kib in rss {
            self.record("memory.max_rss_mib", kib / 1024.0);
        }
        // A big archive must not slow the drain: interleave an empty and a big archive table.
        let a = self.sizes.archive_rows;
        say(&format!("filling the big archive with {a} rows"));
        self.exec(&format!(
            "INSERT INTO trigpoll.trigpoll_archive_big (event_id, object_name, object_verb,
                object_key, event_priority, event_time, event_status, connector_id, attempts,
                event_processed)
             SELECT -g, 'Item', 'Update', 'id=' || g, 0, now(), 1, 'old', 1, now()
             FROM generate_series(1, {a}) g"
        ));
        self.exec("VACUUM ANALYZE trigpoll.trigpoll_archive_big");
        let n = self.sizes.drain_events;
        for run in 0..self.opts.runs {
            for k in 0..2 {
                if (k + run) % 2 == 0 {
                    self.queue_events(n, true);
                    let r = self.drain("file", n);
                    self.record("archive.empty", r);
                } else {
                    self.queue_events(n, false);
                    let r = self.drain("big", n);
                    self.record("archive.big", r);
                }
            }
        }
        self.exec("TRUNCATE trigpoll.trigpoll_archive_big");
        self.exec(&format!("TRUNCATE {EVENTS}, {ARCHIVE}"));
    }
}

fn run_text(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn machine() -> Vec<(String, String)> {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
        })
        .map_or("unknown".into(), |kib| {
            format!("{:.1} GiB", kib / 1024.0 / 1024.0)
        });
    vec![
        ("CPU".into(), cpu),
        ("cores (nproc)".into(), run_text("nproc", &[])),
        ("memory".into(), mem),
        ("kernel".into(), run_text("uname", &["-r"])),
    ]
}

fn fmt(v: f64, digits: usize) -> String {
    if v.is_nan() {
        "n/a".into()
    } else {
        let s = format!("{v:.digits$}");
        // Thousands separators for the integer part, for readability.
        let (int, frac) = s
            .split_once('.')
            .map_or((s.as_str(), None), |(a, b)| (a, Some(b)));
        let (sign, digits_) = int.strip_prefix('-').map_or(("", int), |d| ("-", d));
        let mut out = String::new();
        for (i, c) in digits_.chars().enumerate() {
            if i > 0 && (digits_.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        match frac {
            Some(f) => format!("{sign}{out}.{f}"),
            None => format!("{sign}{out}"),
        }
    }
}

/// A row of a "measurement | median | runs" table.
fn measurement_row(md: &mut String, label: &str, runs: &[f64], digits: usize) {
    let _ = writeln!(
        md,
        "| {label} | {} | {} |",
        fmt(median(runs), digits),
        runs_text(Some(runs), digits)
    );
}

fn runs_text(values: Option<&[f64]>, digits: usize) -> String {
    values.map_or("—".into(), |v| {
        v.iter()
            .map(|x| fmt(*x, digits))
            .collect::<Vec<_>>()
            .join(" / ")
    })
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "**missed**"
    }
}

impl Bench {
    fn report(&mut self, started: &str, load_before: &str, elapsed: Duration) -> String {
        let m = |k: &str| self.median_of(k);
        let mut md = String::new();
        let mode = if self.opts.quick {
            "quick (`--quick`: smaller sizes, indicative only)"
        } else {
            "default"
        };
        let _ = writeln!(md, "# Benchmarks\n");
        let _ = writeln!(
            md,
            "Generated by `scripts/bench.sh` ({mode}) on {started}; took {:.0} s. The figures of \
             docs/performance.md, each next to its reference, measured in one run on one machine against \
             one PostgreSQL. Each number is the median of {} runs unless said otherwise; every \
             run is listed under Details. A report, not a test: no number fails anything.\n",
            elapsed.as_secs_f64(),
            self.opts.runs
        );
        let _ = writeln!(md, "## Summary\n");
        let _ = writeln!(md, "| figure | trigpoll | reference | ratio | target | |");
        let _ = writeln!(md, "|---|---|---|---|---|---|");
        let file = m("drain.file");
        let (bound, naive) = (m("drain.bound"), m("drain.naive"));
        let _ = writeln!(
            md,
            "| drain, events/s (file connector) vs naive poller | {} | {} | {:.0}× | ≥ 50× | {} |",
            fmt(file, 0),
            fmt(naive, 0),
            file / naive,
            verdict(file / naive >= 50.0)
        );
        let _ = writeln!(
            md,
            "| drain, events/s (file connector) vs database bound | {} | {} | {:.2} | ≥ 0.80 | {} |",
            fmt(file, 0),
            fmt(bound, 0),
            file / bound,
            verdict(file / bound >= 0.8)
        );
        let http = m("drain.http");
        let _ = writeln!(
            md,
            "| drain, events/s (http connector) vs database bound | {} | {} | {:.2} | (≥ 0.80) | {} |",
            fmt(http, 0),
            fmt(bound, 0),
            http / bound,
            verdict(http / bound >= 0.8)
        );
        let (cpu_tp, cpu_bound) = (m("cpu.postgresql.trigpoll"), m("cpu.postgresql.bound"));
        if cpu_tp.is_finite() {
            let _ = writeln!(
                md,
                "| database CPU per 100,000 events drained, s (PostgreSQL server processes, file connector) vs the database bound's | {} | {} | {:.2}× | ≤ 1.5× | {} |",
                fmt(cpu_tp, 2),
                fmt(cpu_bound, 2),
                cpu_tp / cpu_bound,
                verdict(cpu_tp / cpu_bound <= 1.5)
            );
        }
        for (sync, label) in [
            ("off", "`synchronous_commit=off`"),
            ("on", "default commit"),
        ] {
            let none = m(&format!("update.{sync}.none"));
            let tp = m(&format!("update.{sync}.trigpoll"));
            let target = if sync == "off" {
                "≥ 0.80"
            } else {
                "(≥ 0.80)"
            };
            let _ = writeln!(
                md,
                "| single-row UPDATE tps, {label}, vs no trigger | {} | {} | {:.2} | {target} | {} |",
                fmt(tp, 0),
                fmt(none, 0),
                tp / none,
                verdict(tp / none >= 0.8)
            );
        }
        let (ins_none, ins_tp) = (m("insert.none"), m("insert.trigpoll"));
        let _ = writeln!(
            md,
            "| {}-row INSERT … SELECT, ms, vs no trigger | {} | {} | {:.2}× | ≤ 2.5× | {} |",
            fmt(self.sizes.insert_rows as f64, 0),
            fmt(ins_tp, 0),
            fmt(ins_none, 0),
            ins_tp / ins_none,
            verdict(ins_tp / ins_none <= 2.5)
        );
        let p99 = m("latency.p99");
        let _ = writeln!(
            md,
            "| latency commit → delivery, p99, ms, at {} changes/s | {} | poll interval 1,000 | — | ≤ 100 | {} |",
            fmt(self.sizes.latency_rate as f64, 0),
            fmt(p99, 1),
            verdict(p99 <= 100.0)
        );
        let (small, big) = (m("claim.small"), m("claim.big"));
        let _ = writeln!(
            md,
            "| first-batch claim, ms, {} vs {} ready events | {} | {} | {:.2}× | ≤ 2× | {} |",
            fmt(self.sizes.claim_big as f64, 0),
            fmt(self.sizes.claim_small as f64, 0),
            fmt(big, 1),
            fmt(small, 1),
            big / small,
            verdict(big / small <= 2.0)
        );
        let rss = m("memory.max_rss_mib");
        let _ = writeln!(
            md,
            "| peak memory (max RSS) draining {} events, MiB | {} | — | — | ≤ 64 | {} |",
            fmt(self.sizes.memory_events as f64, 0),
            fmt(rss, 1),
            verdict(rss <= 64.0)
        );
        let (empty, full) = (m("archive.empty"), m("archive.big"));
        let _ = writeln!(
            md,
            "| drain events/s with a {}-row archive vs an empty one | {} | {} | {:.2} | flat | {} |",
            fmt(self.sizes.archive_rows as f64, 0),
            fmt(full, 0),
            fmt(empty, 0),
            full / empty,
            verdict(full / empty >= 0.8)
        );
        let _ = writeln!(md);

        if let Some(before) = &self.opts.before {
            let _ = writeln!(md, "## Trigger cost before and after\n");
            let _ = writeln!(
                md,
                "The triggers of the earlier binary `{}` (its own event table, schema \
                 `trigpoll_before`) measured beside the current ones, interleaved in the same run \
                 on identical tables.\n",
                before.display()
            );
            let _ = writeln!(md, "| figure | no trigger | before | now | now / before |");
            let _ = writeln!(md, "|---|---|---|---|---|");
            for sync in ["off", "on"] {
                let (none, was, now) = (
                    m(&format!("update.{sync}.none")),
                    m(&format!("update.{sync}.before")),
                    m(&format!("update.{sync}.trigpoll")),
                );
                let _ = writeln!(
                    md,
                    "| single-row UPDATE tps, synchronous_commit={sync} | {} | {} ({:.2}) | {} ({:.2}) | {:.2} |",
                    fmt(none, 0),
                    fmt(was, 0),
                    was / none,
                    fmt(now, 0),
                    now / none,
                    now / was
                );
            }
            let was = m("insert.before");
            let _ = writeln!(
                md,
                "| {}-row INSERT, ms | {} | {} ({:.2}×) | {} ({:.2}×) | {:.2} |",
                fmt(self.sizes.insert_rows as f64, 0),
                fmt(ins_none, 0),
                fmt(was, 0),
                was / ins_none,
                fmt(ins_tp, 0),
                ins_tp / ins_none,
                ins_tp / was
            );
            let _ = writeln!(md);
        }

        let _ = writeln!(md, "## PgQ beside trigpoll\n");
        match &self.pgq {
            Ok(v) => {
                let _ = writeln!(
                    md,
                    "PgQ {v} (`logutriga` C trigger; consumer: next_batch / get_batch_events / \
                     finish_batch, one transaction per batch of about 1000 events, queue ticked \
                     every 1000 events while it was filled).\n"
                );
                let _ = writeln!(md, "| figure | no trigger | trigpoll | PgQ |");
                let _ = writeln!(md, "|---|---|---|---|");
                let _ = writeln!(
                    md,
                    "| drain, events/s | — | {} | {} |",
                    fmt(file, 0),
                    fmt(m("drain.pgq"), 0)
                );
                for sync in ["off", "on"] {
                    let none = m(&format!("update.{sync}.none"));
                    let _ = writeln!(
                        md,
                        "| UPDATE tps, synchronous_commit={sync} | {} | {} ({:.2}) | {} ({:.2}) |",
                        fmt(none, 0),
                        fmt(m(&format!("update.{sync}.trigpoll")), 0),
                        m(&format!("update.{sync}.trigpoll")) / none,
                        fmt(m(&format!("update.{sync}.pgq")), 0),
                        m(&format!("update.{sync}.pgq")) / none
                    );
                }
                let _ = writeln!(
                    md,
                    "| {}-row INSERT, ms | {} | {} ({:.2}×) | {} ({:.2}×) |",
                    fmt(self.sizes.insert_rows as f64, 0),
                    fmt(ins_none, 0),
                    fmt(ins_tp, 0),
                    ins_tp / ins_none,
                    fmt(m("insert.pgq"), 0),
                    m("insert.pgq") / ins_none
                );
                let _ = writeln!(md);
            }
            Err(e) => {
                let _ = writeln!(
                    md,
                    "PgQ could not be installed, so its columns are missing: {e}\n"
                );
            }
        }

        if self.results.keys().any(|k| k.starts_with("fig5.")) || !self.fig5_missing.is_empty() {
            md.push_str(&self.fig5_section(started, load_before));
        }
        if self.results.keys().any(|k| k.starts_with("hot.")) {
            md.push_str(&self.hot_section(started, load_before));
        }
        if self.results.keys().any(|k| k.starts_with("settings.")) {
            md.push_str(&self.settings_section(started));
        }
        if self.results.keys().any(|k| k.starts_with("brokers."))
            || !self.brokers_missing.is_empty()
        {
            md.push_str(&self.brokers_section(started));
        }
        if self.results.keys().any(|k| k.starts_with("sysbench."))
            || self.sysbench_missing.is_some()
        {
            md.push_str(&self.sysbench_section(started, load_before));
        }
        let _ = writeln!(md, "## Details\n");
        let _ = writeln!(md, "| measurement | median | runs |");
        let _ = writeln!(md, "|---|---|---|");
        let names: Vec<(&str, String, usize)> = vec![
            (
                "drain.file",
                "drain, trigpoll, file connector (tmpfs), events/s".into(),
                0,
            ),
            (
                "drain.http",
                "drain, trigpoll, http connector (local receiver), events/s".into(),
                0,
            ),
            (
                "drain.bound",
                "drain, database bound (bench/bound.sql), events/s".into(),
                0,
            ),
            (
                "drain.naive",
                "drain, naive poller (1 event per transaction), events/s".into(),
                0,
            ),
            ("drain.pgq", "drain, PgQ consumer, events/s".into(), 0),
            (
                "cpu.postgresql.trigpoll",
                "PostgreSQL server CPU per 100,000 events, trigpoll drain (file connector), s"
                    .into(),
                2,
            ),
            (
                "cpu.postgresql.bound",
                "PostgreSQL server CPU per 100,000 events, database bound, s".into(),
                2,
            ),
            (
                "update.off.none",
                "UPDATE tps, sync off, no trigger".into(),
                0,
            ),
            (
                "update.off.trigpoll",
                "UPDATE tps, sync off, trigpoll".into(),
                0,
            ),
            (
                "update.off.pgq",
                "UPDATE tps, sync off, PgQ logutriga".into(),
                0,
            ),
            (
                "update.on.none",
                "UPDATE tps, sync on, no trigger".into(),
                0,
            ),
            (
                "update.on.trigpoll",
                "UPDATE tps, sync on, trigpoll".into(),
                0,
            ),
            (
                "update.on.pgq",
                "UPDATE tps, sync on, PgQ logutriga".into(),
                0,
            ),
            ("insert.none", "INSERT … SELECT, ms, no trigger".into(), 0),
            ("insert.trigpoll", "INSERT … SELECT, ms, trigpoll".into(), 0),
            ("insert.pgq", "INSERT … SELECT, ms, PgQ logutriga".into(), 0),
            (
                "update.off.before",
                "UPDATE tps, sync off, earlier trigpoll (`--before`)".into(),
                0,
            ),
            (
                "update.on.before",
                "UPDATE tps, sync on, earlier trigpoll (`--before`)".into(),
                0,
            ),
            (
                "insert.before",
                "INSERT … SELECT, ms, earlier trigpoll (`--before`)".into(),
                0,
            ),
            ("latency.rate", "latency: changes/s achieved".into(), 0),
            ("latency.p50", "latency p50, ms".into(), 1),
            ("latency.p99", "latency p99, ms".into(), 1),
            ("latency.max", "latency max, ms".into(), 1),
            (
                "claim.small",
                format!(
                    "first claim, {} ready, ms",
                    fmt(self.sizes.claim_small as f64, 0)
                ),
                1,
            ),
            (
                "claim.big",
                format!(
                    "first claim, {} ready, ms",
                    fmt(self.sizes.claim_big as f64, 0)
                ),
                1,
            ),
            (
                "memory.rate",
                format!(
                    "drain of {} events, events/s",
                    fmt(self.sizes.memory_events as f64, 0)
                ),
                0,
            ),
            ("memory.max_rss_mib", "max RSS of that drain, MiB".into(), 1),
            ("archive.empty", "drain, empty archive, events/s".into(), 0),
            (
                "archive.big",
                format!(
                    "drain, {}-row archive, events/s",
                    fmt(self.sizes.archive_rows as f64, 0)
                ),
                0,
            ),
        ];
        for (key, label, digits) in names {
            if let Some(v) = self.results.get(key) {
                measurement_row(&mut md, &label, v, digits);
            }
        }
        let _ = writeln!(md);
        let _ = writeln!(md, "## How each figure is measured\n");
        let _ = writeln!(
            md,
            "- **Drain**: {} `Update` events for existing rows of `item` (5 columns) are queued \
             straight into the event table (then VACUUM ANALYZE, CHECKPOINT), and the release \
             `trigpoll drain` binary runs with `batch_size = 1000`, timed around the process. \
             The file connector writes to tmpfs (`/dev/shm`) rather than `/dev/null`, so that \
             the fsync it makes for every batch of a regular file is part of the figure. The http connector posts to a local \
             `tiny_http` receiver with 8 threads answering 200 (keep-alive, default concurrency \
             8). The naive poller claims one event, fetches its row, archives it, deletes it and \
             commits, with prepared statements, for {} s. The bound is `bench/bound.sql` in a \
             loop. PgQ is filled by `logutriga` on a copy of `item`, and its consumer's time is \
             measured. Variants are interleaved run by run. The database CPU of the file \
             connector's drain and of the bound is the user+system CPU of the server's processes \
             from /proc, before and after, per 100,000 events: the postmaster's own, its exited \
             children's (`cutime`/`cstime`, counted when it reaps them: each sample waits until \
             the bench database has no other client backend) and every live child's (backends, \
             checkpointer, WAL writer, autovacuum), so it counts the whole server: a server \
             nobody else uses while the bench runs.",
            fmt(self.sizes.drain_events as f64, 0),
            self.sizes.naive_secs
        );
        let _ = writeln!(
            md,
            "- **Trigger cost**: `pgbench -n -c 2 -j 2 -T {}` with a custom script updating one \
             random row of 100,000 (`UPDATE … SET qty = qty + 1, updated = now() WHERE id = :id`), \
             on three identical tables: no trigger, trigpoll's (`trigpoll install-triggers`), PgQ's \
             `logutriga`; with `PGOPTIONS=-c synchronous_commit=off` and at the server default. \
             The INSERT is one `INSERT … SELECT` of {} rows from generate_series into an empty \
             table. Variants are interleaved run by run, event tables emptied before each run.",
            self.sizes.pgbench_secs,
            fmt(self.sizes.insert_rows as f64, 0)
        );
        let _ = writeln!(
            md,
            "- **Latency**: `trigpoll poll --interval 1s` with the http connector; one connection \
             inserts one row per transaction into `tick` at {} rows/s for {} s (paced, \
             `synchronous_commit=off` so that the writer keeps the pace), each row carrying \
             `clock_timestamp()` in µs; the receiver subtracts it from its arrival time. The \
             first second is left out.",
            self.sizes.latency_rate, self.sizes.latency_secs
        );
        let _ = writeln!(
            md,
            "- **Scale**: the first `claim` of a freshly connected store (`PgStore::claim`, \
             batch 1000) over {} and over {} ready events, each with its own key. Peak memory: \
             `/usr/bin/time` max RSS of `trigpoll drain` over {} events ({}). The archive figure \
             interleaves drains of {} events into an empty archive table and into one holding \
             {} rows.",
            fmt(self.sizes.claim_small as f64, 0),
            fmt(self.sizes.claim_big as f64, 0),
            fmt(self.sizes.memory_events as f64, 0),
            if self.opts.quick {
                "each run"
            } else {
                "one run, for time"
            },
            fmt(self.sizes.drain_events as f64, 0),
            fmt(self.sizes.archive_rows as f64, 0)
        );
        let _ = writeln!(md);

        let _ = writeln!(md, "## Machine, versions, settings\n");
        let _ = writeln!(md, "| | |\n|---|---|");
        for (k, v) in machine() {
            let _ = writeln!(md, "| {k} | {v} |");
        }
        let _ = writeln!(
            md,
            "| load average (1, 5, 15 min) | before {load_before}; after {} |",
            loadavg()
        );
        let version: String = self
            .client
            .query_one("SELECT version()", &[])
            .map(|r| r.get(0))
            .unwrap_or_default();
        let _ = writeln!(md, "| PostgreSQL | {version} |");
        let _ = writeln!(
            md,
            "| PgQ | {} |",
            self.pgq
                .as_ref()
                .map_or_else(|e| format!("not installed: {e}"), |v| v.clone())
        );
        let _ = writeln!(md, "| pgbench | {} |", run_text("pgbench", &["--version"]));
        if self.results.keys().any(|k| k.starts_with("sysbench.")) {
            let _ = writeln!(
                md,
                "| sysbench | {} |",
                run_text("sysbench", &["--version"])
            );
        }
        let _ = writeln!(md, "| rustc | {} |", run_text("rustc", &["--version"]));
        let rev = run_text("git", &["rev-parse", "--short", "HEAD"]);
        let dirty = !run_text("git", &["status", "--porcelain", "--", "src"]).is_empty();
        let _ = writeln!(
            md,
            "| trigpoll | {} {rev}{} (release build) |",
            env!("CARGO_PKG_VERSION"),
            if dirty {
                " with uncommitted changes"
            } else {
                ""
            }
        );
        let settings = self
            .client
            .query(
                "SELECT name, setting || COALESCE(' ' || unit, '') FROM pg_settings
                 WHERE name IN ('shared_buffers', 'synchronous_commit', 'fsync', 'wal_level',
                    'max_wal_size', 'checkpoint_timeout', 'work_mem', 'autovacuum', 'jit',
                    'full_page_writes', 'max_connections', 'wal_buffers')
                 ORDER BY name",
                &[],
            )
            .map(|rows| {
                rows.iter()
                    .map(|r| format!("{}={}", r.get::<_, String>(0), r.get::<_, String>(1)))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        let _ = writeln!(md, "| server settings | {settings} |");
        let _ = writeln!(md);
        md
    }
}

fn main() {
    let opts = parse_args();
    if !opts.trigpoll.exists() {
        die(&format!(
            "{} not found: build it with cargo build --release",
            opts.trigpoll.display()
        ));
    }
    let started_wall = run_text("date", &["-u", "+%Y-%m-%d %H:%M UTC"]);
    let load_before = loadavg();
    let started = Instant::now();
    let db = Database::create(&opts.url);
    say(&format!("database {}", db.name));
    let client = db.connect();
    let mut bench = Bench {
        sizes: Sizes::new(opts.quick),
        opts,
        client,
        db,
        dir: tempfile::tempdir().expect("a temporary folder"),
        sink: PathBuf::new(),
        receiver: Receiver::start(),
        pgq: Err("not tried".into()),
        results: BTreeMap::new(),
        max_rss_kib: Vec::new(),
        fig5_versions: Vec::new(),
        fig5_missing: Vec::new(),
        brokers_missing: Vec::new(),
        pg_meter: None,
        sysbench_missing: None,
        sysbench_version: String::new(),
    };
    let only = bench.opts.only.clone();
    let wanted = |f: &str| only.is_empty() || only.iter().any(|o| o == f);
    for o in &only {
        if ![
            "fig1", "fig2", "fig3", "fig4", "fig5", "fig6", "fig7", "fig8", "fig9", "fig10",
        ]
        .contains(&o.as_str())
        {
            die(&format!("--only: unknown figure {o}"));
        }
    }
    // Only figures with sections of their own (5: MySQL and SQLite; 6 and 7: hot keys; 8:
    // capture settings; 9: brokers; 10: sysbench on MariaDB): the report keeps every other
    // figure as it is (see `splice_section`).
    let sections_only = !only.is_empty()
        && only
            .iter()
            .all(|o| ["fig5", "fig6", "fig7", "fig8", "fig9", "fig10"].contains(&o.as_str()));
    bench.write_files();
    bench.setup();
    // Dropping them drops their throwaway databases and file.
    let mut backends = if wanted("fig5") || wanted("fig6") || wanted("fig8") {
        bench.fig5_backends()
    } else {
        Vec::new()
    };
    if wanted("fig1") {
        bench.fig1();
    }
    if wanted("fig2") {
        bench.fig2();
    }
    if wanted("fig3") {
        bench.fig3();
    }
    if wanted("fig4") {
        bench.fig4();
    }
    if wanted("fig5") {
        bench.fig5(&mut backends);
    }
    if wanted("fig6") {
        bench.fig6(&mut backends);
    }
    if wanted("fig7") {
        bench.fig7();
    }
    if wanted("fig8") {
        bench.fig8(&mut backends);
    }
    if wanted("fig9") {
        bench.fig9();
    }
    if wanted("fig10") {
        bench.fig10();
    }
    drop(backends);
    let out = bench.opts.out.clone();
    if sections_only {
        // Merge: only the sections run are replaced (or added) in the existing report; every
        // other figure, and the hand-written history, stays as it was.
        let mut text = std::fs::read_to_string(&out).unwrap_or_default();
        if wanted("fig5") {
            let section = bench.fig5_section(&started_wall, &load_before);
            text = splice_section(&text, FIG5_HEADING, &section);
        }
        if wanted("fig6") || wanted("fig7") {
            let section = bench.hot_section(&started_wall, &load_before);
            text = splice_section(&text, HOT_HEADING, &section);
        }
        if wanted("fig8") {
            let section = bench.settings_section(&started_wall);
            text = splice_section(&text, SETTINGS_HEADING, &section);
        }
        if wanted("fig9") {
            let section = bench.brokers_section(&started_wall);
            text = splice_section(&text, brokers::BROKERS_HEADING, &section);
        }
        if wanted("fig10") {
            let section = bench.sysbench_section(&started_wall, &load_before);
            text = splice_section(&text, sysbench::SYSBENCH_HEADING, &section);
        }
        std::fs::write(&out, text).expect("write the report");
        say(&format!(
            "updated {} in {:.0} s",
            out.display(),
            started.elapsed().as_secs_f64()
        ));
        return;
    }
    let report = bench.report(&started_wall, &load_before, started.elapsed());
    // Everything from "## History" on is kept: before/after figures written by hand.
    let history = std::fs::read_to_string(&out)
        .ok()
        .and_then(|t| t.find("\n## History").map(|i| t[i..].to_string()))
        .unwrap_or_default();
    std::fs::write(&out, format!("{report}{history}")).expect("write the report");
    say(&format!(
        "wrote {} in {:.0} s",
        out.display(),
        started.elapsed().as_secs_f64()
    ));
}

// Figure 8: what the capture settings cost.

/// The section figure 8 writes, also the heading `--only fig8` looks for.
const SETTINGS_HEADING: &str = "## Capture settings";

/// Child rows of each `item` in figure 8.
const PARTS_PER_ITEM: i64 = 5;

/// The event rules of figure 8: three on update, none skipping, so that every update still
/// makes one event and each tries every condition before the last matches one in a hundred.
const RULES: &str = "[[object.rule]]\non = \"update\"\nwhen = \"NEW.qty < 0\"\nverb = \"Negative\"\ncomment = \"below zero\"\n\
[[object.rule]]\non = \"update\"\nwhen = \"NEW.name <> OLD.name\"\nverb = \"Renamed\"\npriority = 1\n\
[[object.rule]]\non = \"update\"\nwhen = \"NEW.qty % 100 = 0\"\nverb = \"Hundred\"\ncomment = \"a round hundred\"\n";

impl Bench {
    /// Figure 8: single-row UPDATE tps with `changes`, `track`, a `when` condition and three
    /// event rules against the key-only trigger, interleaved; and the drain of an object with
    /// one child table (five rows per object) against the same object without it, on
    /// PostgreSQL and on each backend of figure 5.
    fn fig8(&mut self, backends: &mut [Box<dyn Backend>]) {
        say("figure 8: capture settings");
        let n = self.sizes.drain_events;
        self.exec(&format!(
            "CREATE TABLE u_changes (LIKE u_none INCLUDING ALL);
             CREATE TABLE u_track (LIKE u_none INCLUDING ALL);
             CREATE TABLE u_when (LIKE u_none INCLUDING ALL);
             CREATE TABLE u_rules (LIKE u_none INCLUDING ALL);
             INSERT INTO u_changes SELECT * FROM u_none;
             INSERT INTO u_track SELECT * FROM u_none;
             INSERT INTO u_when SELECT * FROM u_none;
             INSERT INTO u_rules SELECT * FROM u_none;
             CREATE TABLE item_part (item_id bigint NOT NULL, part_no int NOT NULL,
                 name text NOT NULL, qty int NOT NULL, PRIMARY KEY (item_id, part_no));
             INSERT INTO item_part SELECT i, p, 'part ' || p, p
             FROM generate_series(1, {n}) i, generate_series(1, {PARTS_PER_ITEM}) p;"
        ));
        self.exec("VACUUM ANALYZE");
        let database = format!(
            "[database]\nurl = \"{}\"\n\n[poll]\nbatch_size = 1000\nconnectors_dir = \"conn-file\"\n\n",
            self.db.url
        );
        let settings = format!(
            "{database}[[object]]\nname = \"BenchChanges\"\ntable = \"public.u_changes\"\nchanges = true\n\n\
             [[object]]\nname = \"BenchTrack\"\ntable = \"public.u_track\"\ntrack = [\"qty\"]\n\n\
             [[object]]\nname = \"BenchWhen\"\ntable = \"public.u_when\"\n[object.when]\nupdate = \"NEW.qty >= 0\"\n\n\
             [[object]]\nname = \"BenchRules\"\ntable = \"public.u_rules\"\n{RULES}"
        );
        let children = format!(
            "{database}[[object]]\nname = \"Item\"\ntable = \"public.item\"\n\
             [[object.child]]\nname = \"parts\"\ntable = \"public.item_part\"\nparent_keys = [\"item_id\"]\n"
        );
        for (name, text) in [("settings", settings), ("children", children)] {
            std::fs::write(self.config_path(name), text).expect("write a config");
            let out = self
                .trigpoll(name, &["install-triggers"])
                .output()
                .expect("run trigpoll");
            if !out.status.success() {
                die(&format!(
                    "install-triggers ({name}) failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
        }
        let mut variants = vec!["trigpoll", "changes", "track", "when", "rules"];
        if self.opts.before.is_some() {
            variants.push("changes_before");
        }
        for run in 0..self.opts.runs {
            for v in rotation(&variants, run) {
                self.clear_queues();
                self.exec(&format!("VACUUM ANALYZE u_{v}"));
                self.exec("CHECKPOINT");
                let tps = self.pgbench(&format!("u_{v}"), true);
                self.record(&format!("settings.update.{v}"), tps);
            }
        }
        let mut children_on = Vec::new();
        for b in backends.iter_mut() {
            b.add_parts(PARTS_PER_ITEM);
            let key = b.key();
            let text = format!(
                "{}\n[poll]\nbatch_size = 1000\nconnectors_dir = \"conn-file\"\n\n\
                 [[object]]\nname = \"Item\"\ntable = \"item\"\n\
                 [[object.child]]\nname = \"parts\"\ntable = \"item_part\"\nparent_keys = [\"item_id\"]\n",
                b.database_toml()
            );
            let config = format!("fig5-{key}-children");
            std::fs::write(self.config_path(&config), text).expect("write a config");
            children_on.push(self.set_triggers(&config, true));
        }
        for run in 0..self.opts.runs {
            for config in rotation(&["file", "children"], run) {
                self.queue_events(n, true);
                let r = self.drain(config, n);
                self.record(&format!("settings.drain.{config}"), r);
                for (b, &ok) in backends.iter_mut().zip(&children_on) {
                    if !ok {
                        continue;
                    }
                    let key = b.key();
                    b.queue(n);
                    let name = match config {
                        "file" => format!("fig5-{key}"),
                        _ => format!("fig5-{key}-children"),
                    };
                    let secs = self.drain_secs(&name);
                    let left = b.left();
                    if left != 0 {
                        say(&format!(
                            "{key}: {left} events were left after drain ({name})"
                        ));
                    }
                    self.record(
                        &format!("settings.{key}.drain.{config}"),
                        (n - left) as f64 / secs,
                    );
                }
            }
        }
        self.clear_queues();
        self.exec(&format!("TRUNCATE {ARCHIVE}"));
    }

    /// The section of figure 8, complete in itself so that `--only fig8` can splice it.
    fn settings_section(&self, started: &str) -> String {
        let m = |k: &str| self.median_of(k);
        let mut md = String::new();
        let _ = writeln!(md, "{SETTINGS_HEADING}\n");
        let _ =
            writeln!(
            md,
            "Measured on {started} ({}), median of {} runs, interleaved run by run: the trigger \
             cost of the settings that add work to a trigger, against the key-only trigger on an \
             identical table, and the drain of an object with one child table.\n",
            if self.opts.quick { "`--quick`" } else { "default size" },
            self.opts.runs
        );
        let _ = writeln!(
            md,
            "| figure | key-only | with the setting | ratio | target | |"
        );
        let _ = writeln!(md, "|---|---|---|---|---|---|");
        let key_only = m("settings.update.trigpoll");
        for (v, label) in [
            ("changes", "`changes = true`"),
            (
                "changes_before",
                "`changes = true`, the triggers of the `--before` binary",
            ),
            ("track", "`track = [\"qty\"]`"),
            ("when", "`[object.when] update = \"NEW.qty >= 0\"`"),
            (
                "rules",
                "three `[[object.rule]]` on update, each tried (one in a hundred matches)",
            ),
        ] {
            if !self.results.contains_key(&format!("settings.update.{v}")) {
                continue;
            }
            let with = m(&format!("settings.update.{v}"));
            let (target, met) = match v {
                "changes_before" => ("(before)", String::new()),
                "rules" => ("≥ 0.90", verdict(with / key_only >= 0.90).to_string()),
                _ => ("≥ 0.85", verdict(with / key_only >= 0.85).to_string()),
            };
            let _ = writeln!(
                md,
                "| single-row UPDATE tps, `synchronous_commit=off`, {label} | {} | {} | {:.2} | {target} | {met} |",
                fmt(key_only, 0),
                fmt(with, 0),
                with / key_only,
            );
        }
        let mut backends = vec![("", "PostgreSQL".to_string())];
        backends.extend(
            self.fig5_versions
                .iter()
                .map(|(key, version, _)| (*key, version.clone())),
        );
        for (key, label) in backends {
            let prefix = if key.is_empty() {
                "settings.drain".to_string()
            } else {
                format!("settings.{key}.drain")
            };
            let (flat, children) = (
                m(&format!("{prefix}.file")),
                m(&format!("{prefix}.children")),
            );
            if !flat.is_finite() {
                continue;
            }
            let _ = writeln!(
                md,
                "| drain of {} events, events/s, {label}: an object with one child table ({PARTS_PER_ITEM} rows each) vs the same without | {} | {} | {:.2} | ≥ 0.80 | {} |",
                fmt(self.sizes.drain_events as f64, 0),
                fmt(flat, 0),
                fmt(children, 0),
                children / flat,
                verdict(children / flat >= 0.8)
            );
        }
        let _ = writeln!(md);
        let _ = writeln!(md, "| measurement | median | runs |");
        let _ = writeln!(md, "|---|---|---|");
        let mut keys: Vec<&String> = self
            .results
            .keys()
            .filter(|k| k.starts_with("settings."))
            .collect();
        keys.sort();
        for key in keys {
            measurement_row(&mut md, key, &self.results[key], 0);
        }
        let _ = writeln!(md);
        let _ = writeln!(
            md,
            "The UPDATE figures are `pgbench -n -c 2 -j 2 -T {}` with the script of figure 2 (one \
             random row of 100,000: `qty = qty + 1, updated = now()`), so every variant makes one \
             event per update; `changes` stores both columns' values before and after (the `--before` \
             binary's trigger compared them column by column and stored the changed ones); `rules` \
             has three rules on update (`NEW.qty < 0`, `NEW.name <> OLD.name`, \
             `NEW.qty % 100 = 0`, none skipping), so every update tries all three conditions and \
             one in a hundred takes the third's verb and comment. The drain queues \
             {} `Update` events of `item` and drains them with the file connector, once bound as \
             a flat object and once with `[[object.child]]` on `item_part`; on MariaDB/MySQL and \
             SQLite too, in the throwaway databases of the section \"Drain on MySQL and SQLite\" \
             (their own `item_part`, the same {PARTS_PER_ITEM} rows per item).\n",
            self.sizes.pgbench_secs,
            fmt(self.sizes.drain_events as f64, 0)
        );
        md
    }
}

// Figures 6 and 7: hot keys.

/// The section figures 6 and 7 write, also the heading `--only fig6,fig7` looks for.
const HOT_HEADING: &str = "## Hot keys";

/// Figure 6's shapes of backlog: (name, keys, coalesce); `None` keys is one key per event.
const SHAPES: [(&str, Option<i64>, bool); 5] = [
    ("distinct", None, false),
    ("keys100", Some(100), false),
    ("keys10", Some(10), false),
    ("keys1", Some(1), false),
    ("keys1.coalesce", Some(1), true),
];

impl Bench {
    /// Figure 6: drain of the same backlog spread over every key, 100, 10 and 1 key, on each
    /// backend; then the first claim over 10k and over 1M events of one key (PostgreSQL).
    fn fig6(&mut self, backends: &mut [Box<dyn Backend>]) {
        say("figure 6: hot keys");
        let n = self.sizes.drain_events;
        let names: Vec<&str> = SHAPES.iter().map(|s| s.0).collect();
        for run in 0..self.opts.runs {
            for name in rotation(&names, run) {
                let &(_, keys, coalesce) = SHAPES.iter().find(|s| s.0 == name).unwrap();
                let keys = keys.unwrap_or(n);
                let suffix = if coalesce { "-coalesce" } else { "" };
                self.queue_on_keys(n, keys, true);
                let r = self.drain(if coalesce { "coalesce" } else { "file" }, n);
                self.record(&format!("hot.postgresql.{name}"), r);
                for b in backends.iter_mut() {
                    b.queue_on_keys(n, keys);
                    let secs = self.drain_secs(&format!("fig5-{}{suffix}", b.key()));
                    let left = b.left();
                    if left != 0 {
                        say(&format!("{}: {left} events were left after drain", b.key()));
                    }
                    self.record(&format!("hot.{}.{name}", b.key()), (n - left) as f64 / secs);
                }
            }
        }
        for (label, size) in [
            ("small", self.sizes.claim_small),
            ("big", self.sizes.claim_big),
        ] {
            self.queue_on_keys(size, 1, true);
            for _ in 0..self.opts.runs {
                let ms = self.first_claim();
                self.record(&format!("hot.claim.{label}"), ms);
            }
        }
        self.exec(&format!("TRUNCATE {EVENTS}, {ARCHIVE}"));
    }

    /// Figure 7: pgbench's TPC-B load (`pgbench -i -s 2`: 2 branches, 20 tellers, 200,000
    /// accounts) with trigpoll's triggers on its tables and `poll --interval 100ms` running
    /// beside it; how many events wait when the load stops, and how long until none does.
    fn fig7(&mut self) {
        say("figure 7: pgbench TPC-B with poll running");
        let init = Command::new("pgbench")
            .args(["-i", "-s", "2", "-q"])
            .arg(&self.db.url)
            .output();
        match init {
            Ok(out) if out.status.success() => {}
            Ok(out) => {
                say(&format!(
                    "pgbench -i failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                ));
                return;
            }
            Err(e) => {
                say(&format!("pgbench did not run: {e}"));
                return;
            }
        }
        let text = format!(
            "[database]\nurl = \"{}\"\n\n[poll]\nconnectors_dir = \"conn-file\"\n\n\
             [[object]]\nname = \"Account\"\ntable = \"public.pgbench_accounts\"\n\n\
             [[object]]\nname = \"Teller\"\ntable = \"public.pgbench_tellers\"\n\n\
             [[object]]\nname = \"Branch\"\ntable = \"public.pgbench_branches\"\n",
            self.db.url
        );
        std::fs::write(self.config_path("tpcb"), text).expect("write a config");
        let out = self
            .trigpoll("tpcb", &["install-triggers"])
            .output()
            .expect("run trigpoll");
        if !out.status.success() {
            say(&format!(
                "install-triggers failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
            return;
        }
        self.exec("VACUUM ANALYZE");
        let mut installed = true;
        for run in 0..self.opts.runs {
            for variant in rotation(&["poll", "triggers", "none"], run) {
                self.exec(&format!("TRUNCATE {EVENTS}, {ARCHIVE}, pgbench_history"));
                if installed != (variant != "none") {
                    installed = !installed;
                    if !self.set_triggers("tpcb", installed) {
                        return;
                    }
                }
                self.exec("CHECKPOINT");
                match variant {
                    "poll" => self.tpcb_with_poll(),
                    _ => {
                        let tps = self.tpcb_load();
                        self.record(&format!("hot.tpcb.tps_{variant}"), tps);
                    }
                }
            }
        }
        // `uninstall-triggers` removes every trigger that writes into the event table, those of
        // the other figures' objects too (figure 8's key-only reference among them): put them
        // back.
        self.set_triggers("file", true);
        self.exec(&format!("TRUNCATE {EVENTS}, {ARCHIVE}"));
    }

    /// pgbench TPC-B for `tpcb_secs`, 4 clients: its tps.
    fn tpcb_load(&self) -> f64 {
        Command::new("pgbench")
            .args(["-n", "-c", "4", "-j", "4", "-T"])
            .arg(self.sizes.tpcb_secs.to_string())
            .arg(&self.db.url)
            .output()
            .ok()
            .and_then(|out| {
                String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .find(|l| l.starts_with("tps = "))
                    .and_then(|l| l["tps = ".len()..].split_whitespace().next()?.parse().ok())
            })
            .unwrap_or(f64::NAN)
    }

    /// One run of figure 7 with the triggers and `poll --interval 100ms`.
    fn tpcb_with_poll(&mut self) {
        let mut poll: Child = self
            .trigpoll("tpcb", &["poll", "--interval", "100ms"])
            .stdout(Stdio::null())
            .spawn()
            .expect("start trigpoll poll");
        std::thread::sleep(Duration::from_secs(1));
        let tps = self.tpcb_load();
        let stopped = Instant::now();
        let backlog = self.count(&format!("SELECT count(*) FROM {EVENTS}"));
        let mut left = backlog;
        while left > 0 && stopped.elapsed() < Duration::from_secs(300) {
            std::thread::sleep(Duration::from_millis(20));
            left = self.count(&format!("SELECT count(*) FROM {EVENTS}"));
        }
        let empty_secs = stopped.elapsed().as_secs_f64();
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(poll.id().to_string())
            .status();
        let _ = poll.wait();
        let events = self.count(&format!("SELECT count(DISTINCT event_id) FROM {ARCHIVE}"));
        if left > 0 {
            say(&format!("tpcb: {left} events still waiting after 300 s"));
        }
        self.record("hot.tpcb.tps", tps);
        self.record("hot.tpcb.events", events as f64);
        self.record("hot.tpcb.backlog", backlog as f64);
        self.record(
            "hot.tpcb.empty_secs",
            if left > 0 { f64::NAN } else { empty_secs },
        );
    }

    /// The section of figures 6 and 7, complete in itself so that `--only fig6,fig7` can
    /// splice it into an existing report.
    fn hot_section(&self, started: &str, load_before: &str) -> String {
        let m = |k: &str| self.median_of(k);
        let mut md = String::new();
        let _ = writeln!(md, "{HOT_HEADING}\n");
        let _ =
            writeln!(
            md,
            "Measured on {started} ({}), median of {} runs, interleaved run by run; load average \
             before {load_before}, after {}. The same {} `Update` events drained with every \
             event on its own key, then on 100, 10 and 1 key (`batch_size = 1000`, file \
             connector on tmpfs); target: every shape ≥ 0.50 of the drain with every event on \
             its own key, ≥ 1.00 with `coalesce = true`.\n",
            if self.opts.quick { "`--quick`" } else { "default size" },
            self.opts.runs,
            loadavg(),
            fmt(self.sizes.drain_events as f64, 0)
        );
        let _ = writeln!(
            md,
            "| backend | every key, events/s | 100 keys | 10 keys | 1 key | 1 key, `coalesce` | worst / every key | 1 key `coalesce` / every key |"
        );
        let _ = writeln!(md, "|---|---|---|---|---|---|---|---|");
        let mut backends = vec![("postgresql", "PostgreSQL".to_string())];
        backends.extend(
            self.fig5_versions
                .iter()
                .map(|(key, version, _)| (*key, version.clone())),
        );
        for (key, label) in &backends {
            let get = |shape: &str| m(&format!("hot.{key}.{shape}"));
            let every = get("distinct");
            if !every.is_finite() {
                continue;
            }
            let worst = ["keys100", "keys10", "keys1"]
                .iter()
                .map(|s| get(s) / every)
                .fold(f64::INFINITY, f64::min);
            let folded = get("keys1.coalesce") / every;
            let _ = writeln!(
                md,
                "| {label} | {} | {} | {} | {} | {} | {:.2} {} | {:.2} {} |",
                fmt(every, 0),
                fmt(get("keys100"), 0),
                fmt(get("keys10"), 0),
                fmt(get("keys1"), 0),
                fmt(get("keys1.coalesce"), 0),
                worst,
                verdict(worst >= 0.5),
                folded,
                verdict(folded >= 1.0)
            );
        }
        let (small, big) = (m("hot.claim.small"), m("hot.claim.big"));
        let _ = writeln!(md);
        let _ = writeln!(md, "| figure | measured | reference | ratio | target | |");
        let _ = writeln!(md, "|---|---|---|---|---|---|");
        if small.is_finite() {
            let _ = writeln!(
                md,
                "| first-batch claim, ms, {} ready events on 1 key vs {} | {} | {} | {:.2}× | ≤ 2× | {} |",
                fmt(self.sizes.claim_big as f64, 0),
                fmt(self.sizes.claim_small as f64, 0),
                fmt(big, 1),
                fmt(small, 1),
                big / small,
                verdict(big / small <= 2.0)
            );
        }
        let empty = m("hot.tpcb.empty_secs");
        if self.results.contains_key("hot.tpcb.tps") {
            let _ = writeln!(
                md,
                "| pgbench TPC-B (scale 2, 4 clients, {} s) with `poll --interval 100ms`: seconds until no event waits, after the load stops | {} | backlog when the load stopped: {} events (of {}; {} tps) | — | ≤ 5 s | {} |",
                self.sizes.tpcb_secs,
                fmt(empty, 2),
                fmt(m("hot.tpcb.backlog"), 0),
                fmt(m("hot.tpcb.events"), 0),
                fmt(m("hot.tpcb.tps"), 0),
                verdict(empty <= 5.0)
            );
        }
        let (with, none) = (m("hot.tpcb.tps"), m("hot.tpcb.tps_none"));
        let alone = m("hot.tpcb.tps_triggers");
        if none.is_finite() && alone.is_finite() {
            let _ = writeln!(
                md,
                "| pgbench TPC-B (scale 2, 4 clients, {} s) tps, trigpoll's triggers alone (no poller) vs the same load without triggers | {} | {} | {:.2} | (report) | |",
                self.sizes.tpcb_secs,
                fmt(alone, 0),
                fmt(none, 0),
                alone / none,
            );
        }
        if none.is_finite() {
            let _ = writeln!(
                md,
                "| pgbench TPC-B (scale 2, 4 clients, {} s) tps, triggers and `poll --interval 100ms` running vs the same load without triggers | {} | {} | {:.2} | ≥ 0.80 | {} |",
                self.sizes.tpcb_secs,
                fmt(with, 0),
                fmt(none, 0),
                with / none,
                verdict(with / none >= 0.8)
            );
        }
        let _ = writeln!(md);
        let _ = writeln!(md, "| measurement | median | runs |");
        let _ = writeln!(md, "|---|---|---|");
        let mut keys: Vec<&String> = self
            .results
            .keys()
            .filter(|k| k.starts_with("hot."))
            .collect();
        keys.sort();
        for key in keys {
            let v = &self.results[key];
            let digits = if key.contains("claim") || key.ends_with("secs") {
                2
            } else {
                0
            };
            measurement_row(&mut md, key, v, digits);
        }
        let _ = writeln!(md);
        let _ = writeln!(
            md,
            "The claim figure is the first `claim` of a freshly connected store (`PgStore::claim`, \
             batch 1000) over {} and over {} ready events that all have the same key. TPC-B: \
             `pgbench -i -s 2`, trigpoll's triggers on `pgbench_accounts`, `pgbench_tellers` and \
             `pgbench_branches` (`pgbench_history` has no key), `trigpoll poll --interval 100ms` \
             with the defaults (`batch_size = 500`, `linger = \"20ms\"`) and the file connector, \
             then `pgbench -n -c 4 -j 4 -T {}`; the event table is counted every 20 ms from the \
             moment pgbench exits. The reference runs the same load with the triggers removed \
             (`trigpoll uninstall-triggers`) and no poller, and the triggers alone run it with \
             the triggers and no poller, interleaved run by run. \
             Every transaction updates one of 2 branch rows and one of 20 teller rows: most \
             events sit on 22 keys.\n",
            fmt(self.sizes.claim_small as f64, 0),
            fmt(self.sizes.claim_big as f64, 0),
            self.sizes.tpcb_secs
        );
        md
    }
}

// Figure 5: drain on MySQL/MariaDB and SQLite, each next to its own naive poller and bound.

/// The section figure 5 writes, also the heading `--only fig5` looks for in an existing report.
const FIG5_HEADING: &str = "## Drain on MySQL and SQLite";

/// The columns of `item` as one JSON object, the row image the naive poller and the bound read.
const ITEM_JSON: &str =
    "'id', t.id, 'name', t.name, 'qty', t.qty, 'price', t.price, 'updated', t.updated";

/// One backend of figure 5: its throwaway database with `item` (rows 1..n) and trigpoll's
/// tables installed by `trigpoll install-triggers`, and the two references written for it.
/// Dropping it drops the throwaway database.
trait Backend {
    /// The key of its figures (`fig5.<key>.trigpoll`, …).
    fn key(&self) -> &'static str;
    /// The server and version, for the report.
    fn version(&mut self) -> String;
    /// The trigpoll config (`[database]` table only) of this backend.
    fn database_toml(&self) -> String;
    /// Empties the event and archive tables and queues `n` Update events for item 1..n.
    fn queue(&mut self, n: i64) {
        self.queue_on_keys(n, n)
    }
    /// Like `queue`, with the events spread over `keys` keys (item 1..keys), in turn.
    fn queue_on_keys(&mut self, n: i64, keys: i64);
    /// Events left in the event table.
    fn left(&mut self) -> i64;
    /// One event per transaction, for at most `limit`: events/s.
    fn naive(&mut self, limit: Duration) -> f64;
    /// Set-based statements, a commit per batch of 1000, until the table is empty: events/s.
    fn bound(&mut self) -> f64;
    /// The settings that decide what a commit costs, for the report.
    fn settings(&mut self) -> String;
    /// The CPU meters of the database's work: trigpoll's drain's and the bound's (see `cpu`);
    /// none when the server is not on this machine.
    fn meters(&mut self) -> Option<(cpu::Meter, cpu::Meter)>;
    /// Figure 8's child table `item_part`: `per_item` rows for each row of `item`.
    fn add_parts(&mut self, per_item: i64);
}

struct MysqlBackend {
    server: String,
    /// Holds `item`; the URL's database in trigpoll's config.
    app_db: String,
    /// trigpoll's `database.schema`: the event and archive tables.
    event_db: String,
    conn: mysql::Conn,
}

impl MysqlBackend {
    fn create(server: &str, name: &str, rows: i64) -> Result<MysqlBackend, String> {
        let opts = mysql::Opts::from_url(server).map_err(|e| e.to_string())?;
        let mut conn = mysql::Conn::new(opts).map_err(|e| format!("{server}: {e}"))?;
        let (app_db, event_db) = (name.to_string(), format!("{name}_events"));
        for db in [&app_db, &event_db] {
            conn.query_drop(format!("CREATE DATABASE `{db}` CHARACTER SET utf8mb4"))
                .map_err(|e| e.to_string())?;
        }
        let mut backend = MysqlBackend {
            server: server.to_string(),
            app_db,
            event_db,
            conn,
        };
        // As trigpoll's sessions run (src/store/mysql.rs).
        backend.exec("SET time_zone = '+00:00'");
        backend.exec("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED");
        backend.exec(&format!("USE `{}`", backend.app_db));
        backend.exec(
            "CREATE TABLE item (
                id      BIGINT PRIMARY KEY,
                name    TEXT NOT NULL,
                qty     INT NOT NULL,
                price   DECIMAL(12,2),
                updated TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)
            ) ENGINE=InnoDB",
        );
        // No generate_series: 1..rows from a cross join of digits (portable to MySQL 8).
        backend.exec("CREATE TABLE digit (d INT NOT NULL)");
        backend.exec("INSERT INTO digit VALUES (0),(1),(2),(3),(4),(5),(6),(7),(8),(9)");
        let mut places = 1i64;
        let mut terms = vec!["d0.d".to_string()];
        let mut from = vec!["digit d0".to_string()];
        while 10i64.pow(places as u32) < rows {
            terms.push(format!("d{places}.d * {}", 10i64.pow(places as u32)));
            from.push(format!("digit d{places}"));
            places += 1;
        }
        backend.exec(&format!(
            "INSERT INTO item (id, name, qty, price, updated)
             SELECT g, CONCAT('item ', g), g % 1000, (g % 10000) / 100.0, NOW(6)
             FROM (SELECT {} + 1 AS g FROM {}) s WHERE g <= {rows}",
            terms.join(" + "),
            from.join(", ")
        ));
        backend.exec("ANALYZE TABLE item");
        Ok(backend)
    }

    fn exec(&mut self, sql: &str) {
        self.conn
            .query_drop(sql)
            .unwrap_or_else(|e| panic!("{sql}\n{e}"));
    }

    fn events(&self) -> String {
        format!("`{}`.trigpoll_event", self.event_db)
    }

    fn archive(&self) -> String {
        format!("`{}`.trigpoll_archive", self.event_db)
    }
}

impl Drop for MysqlBackend {
    fn drop(&mut self) {
        for db in [self.app_db.clone(), self.event_db.clone()] {
            let _ = self
                .conn
                .query_drop(format!("DROP DATABASE IF EXISTS `{db}`"));
        }
    }
}

impl Backend for MysqlBackend {
    fn key(&self) -> &'static str {
        "mysql"
    }

    fn version(&mut self) -> String {
        let v: Option<String> = self.conn.query_first("SELECT VERSION()").ok().flatten();
        let v = v.unwrap_or_default();
        if v.contains("MariaDB") {
            format!("MariaDB {}", v.split('-').next().unwrap_or(&v))
        } else {
            format!("MySQL {v}")
        }
    }

    fn settings(&mut self) -> String {
        let rows: Vec<(String, String)> = self
            .conn
            .query(
                "SHOW GLOBAL VARIABLES WHERE Variable_name IN ('innodb_flush_log_at_trx_commit',
                    'sync_binlog', 'log_bin', 'innodb_buffer_pool_size', 'innodb_doublewrite')",
            )
            .unwrap_or_default();
        rows.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn database_toml(&self) -> String {
        format!(
            "[database]\nurl = \"{}/{}\"\nschema = \"{}\"\n",
            self.server, self.app_db, self.event_db
        )
    }

    fn meters(&mut self) -> Option<(cpu::Meter, cpu::Meter)> {
        let pid_file: Option<String> = self.conn.query_first("SELECT @@pid_file").ok()?;
        let meter = cpu::Meter::mysql(&pid_file?)?;
        Some((meter, meter))
    }

    fn add_parts(&mut self, per_item: i64) {
        self.exec(
            "CREATE TABLE item_part (item_id BIGINT NOT NULL, part_no INT NOT NULL,
                name TEXT NOT NULL, qty INT NOT NULL, PRIMARY KEY (item_id, part_no))
             ENGINE=InnoDB",
        );
        self.exec(&format!(
            "INSERT INTO item_part SELECT t.id, d.d, CONCAT('part ', d.d), d.d
             FROM item t JOIN digit d ON d.d BETWEEN 1 AND {per_item}"
        ));
        self.exec("ANALYZE TABLE item_part");
    }

    fn queue_on_keys(&mut self, n: i64, keys: i64) {
        let (events, archive) = (self.events(), self.archive());
        self.exec(&format!("TRUNCATE TABLE {events}"));
        self.exec(&format!("TRUNCATE TABLE {archive}"));
        self.exec(&format!(
            "INSERT INTO {events} (object_name, object_verb, object_key, event_priority)
             SELECT 'Item', 'Update', CONCAT('id=', (id - 1) % {keys} + 1), 0 FROM item
             WHERE id <= {n} ORDER BY id"
        ));
        self.exec(&format!("ANALYZE TABLE {events}"));
    }

    fn left(&mut self) -> i64 {
        let sql = format!("SELECT COUNT(*) FROM {}", self.events());
        self.conn
            .query_first(&sql)
            .unwrap_or_else(|e| panic!("{sql}\n{e}"))
            .unwrap_or(0)
    }

    fn naive(&mut self, limit: Duration) -> f64 {
        let (events, archive) = (self.events(), self.archive());
        let c = &mut self.conn;
        let claim = c
            .prep(format!(
                "SELECT event_id, object_key FROM {events} FORCE INDEX (trigpoll_event_ready)
                 WHERE waiting_for IS NULL AND event_status = 0
                 ORDER BY event_priority, event_id LIMIT 1 FOR UPDATE SKIP LOCKED"
            ))
            .unwrap();
        let fetch = c
            .prep(format!(
                "SELECT JSON_OBJECT({ITEM_JSON}) FROM item t WHERE t.id = ?"
            ))
            .unwrap();
        let archive = c
            .prep(format!(
                "INSERT INTO {archive} (event_id, object_name, object_verb, object_key,
                    event_priority, event_time, event_status, connector_id, attempts, payload,
                    replay_of)
                 SELECT event_id, object_name, object_verb, object_key, event_priority,
                    event_time, 1, 'naive', attempts + 1, payload, replay_of
                 FROM {events} WHERE event_id = ?"
            ))
            .unwrap();
        let delete = c
            .prep(format!("DELETE FROM {events} WHERE event_id = ?"))
            .unwrap();
        let start = Instant::now();
        let mut done = 0i64;
        let mut sink = std::io::sink();
        while start.elapsed() < limit {
            let mut tx = c.start_transaction(mysql::TxOpts::default()).unwrap();
            let Some((event_id, key)) = tx.exec_first::<(i64, String), _, _>(&claim, ()).unwrap()
            else {
                break;
            };
            let id: i64 = key.trim_start_matches("id=").parse().unwrap();
            let image: String = tx.exec_first(&fetch, (id,)).unwrap().unwrap();
            let body = format!("{{\"event_id\":{event_id},\"attributes\":{image}}}\n");
            std::io::Write::write_all(&mut sink, body.as_bytes()).unwrap();
            tx.exec_drop(&archive, (event_id,)).unwrap();
            tx.exec_drop(&delete, (event_id,)).unwrap();
            tx.commit().unwrap();
            done += 1;
        }
        done as f64 / start.elapsed().as_secs_f64()
    }

    fn bound(&mut self) -> f64 {
        let (events, archive) = (self.events(), self.archive());
        // No data-modifying CTE here: each batch claims the 1000 oldest ready events (the claim
        // index forced, as trigpoll's claim does: otherwise MariaDB sorts the whole table), then
        // moves them with their row image to the archive and deletes them, by their ids.
        let claim = format!(
            "SELECT event_id FROM {events} FORCE INDEX (trigpoll_event_ready)
             WHERE waiting_for IS NULL AND event_status = 0
             ORDER BY event_priority, event_id LIMIT 1000
             FOR UPDATE SKIP LOCKED"
        );
        let c = &mut self.conn;
        let start = Instant::now();
        let mut moved = 0u64;
        loop {
            let mut tx = c.start_transaction(mysql::TxOpts::default()).unwrap();
            let ids: Vec<i64> = tx.query(&claim).unwrap();
            if ids.is_empty() {
                tx.commit().unwrap();
                break;
            }
            let list = ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
            tx.query_drop(format!(
                "INSERT INTO {archive} (event_id, object_name, object_verb, object_key,
                    event_priority, event_time, event_status, connector_id, attempts, payload,
                    replay_of)
                 SELECT c.event_id, c.object_name, c.object_verb, c.object_key,
                    c.event_priority, c.event_time, 1, 'bound', c.attempts + 1,
                    JSON_OBJECT({ITEM_JSON}), c.replay_of
                 FROM {events} c JOIN item t ON t.id = CAST(SUBSTRING(c.object_key, 4) AS SIGNED)
                 WHERE c.event_id IN ({list})"
            ))
            .unwrap();
            tx.query_drop(format!("DELETE FROM {events} WHERE event_id IN ({list})"))
                .unwrap();
            moved += tx.affected_rows();
            tx.commit().unwrap();
        }
        moved as f64 / start.elapsed().as_secs_f64()
    }
}

struct SqliteBackend {
    path: PathBuf,
    conn: rusqlite::Connection,
}

impl SqliteBackend {
    fn create(dir: &Path, name: &str, rows: i64) -> Result<SqliteBackend, String> {
        let path = dir.join(format!("{name}.db"));
        let conn = rusqlite::Connection::open(&path).map_err(|e| e.to_string())?;
        // As trigpoll opens it (src/store/sqlite.rs): WAL, synchronous = NORMAL.
        let backend = SqliteBackend { path, conn };
        backend.exec(&format!(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = NORMAL;
             CREATE TABLE item (
                id      INTEGER PRIMARY KEY,
                name    TEXT NOT NULL,
                qty     INTEGER NOT NULL,
                price   NUMERIC,
                updated TEXT NOT NULL
             );
             WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < {rows})
             INSERT INTO item SELECT g, 'item ' || g, g % 1000, (g % 10000) / 100.0,
                strftime('%Y-%m-%dT%H:%M:%fZ', 'now') FROM s;"
        ));
        Ok(backend)
    }

    fn exec(&self, sql: &str) {
        self.conn
            .execute_batch(sql)
            .unwrap_or_else(|e| panic!("{sql}\n{e}"));
    }
}

impl Drop for SqliteBackend {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let mut p = self.path.clone().into_os_string();
            p.push(suffix);
            let _ = std::fs::remove_file(p);
        }
    }
}

impl Backend for SqliteBackend {
    fn key(&self) -> &'static str {
        "sqlite"
    }

    fn version(&mut self) -> String {
        format!("SQLite {}", rusqlite::version())
    }

    fn settings(&mut self) -> String {
        format!(
            "journal_mode=WAL, synchronous=NORMAL (as trigpoll sets them), file in {}",
            self.path
                .parent()
                .map_or("?".into(), |p| p.display().to_string())
        )
    }

    fn database_toml(&self) -> String {
        format!("[database]\nurl = \"sqlite://{}\"\n", self.path.display())
    }

    fn meters(&mut self) -> Option<(cpu::Meter, cpu::Meter)> {
        Some((cpu::Meter::Children, cpu::Meter::Thread))
    }

    fn add_parts(&mut self, per_item: i64) {
        self.exec(&format!(
            "CREATE TABLE item_part (item_id INTEGER NOT NULL, part_no INTEGER NOT NULL,
                name TEXT NOT NULL, qty INTEGER NOT NULL, PRIMARY KEY (item_id, part_no));
             WITH RECURSIVE p(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM p WHERE n < {per_item})
             INSERT INTO item_part SELECT t.id, p.n, 'part ' || p.n, p.n FROM item t, p;
             ANALYZE;"
        ));
    }

    fn queue_on_keys(&mut self, n: i64, keys: i64) {
        self.exec(&format!(
            "DELETE FROM trigpoll_event;
             DELETE FROM trigpoll_archive;
             INSERT INTO trigpoll_event (object_name, object_verb, object_key, event_priority)
             SELECT 'Item', 'Update', 'id=' || ((id - 1) % {keys} + 1), 0 FROM item
             WHERE id <= {n} ORDER BY id;
             ANALYZE;
             PRAGMA wal_checkpoint(TRUNCATE);"
        ));
    }

    fn left(&mut self) -> i64 {
        self.conn
            .query_row("SELECT count(*) FROM trigpoll_event", [], |r| r.get(0))
            .expect("count the events")
    }

    fn naive(&mut self, limit: Duration) -> f64 {
        let start = Instant::now();
        let mut done = 0i64;
        let mut sink = std::io::sink();
        while start.elapsed() < limit {
            let tx = self
                .conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .unwrap();
            let claimed: Option<(i64, String)> = {
                let mut claim = tx
                    .prepare_cached(
                        "SELECT event_id, object_key FROM trigpoll_event
                         WHERE waiting_for IS NULL AND event_status = 0
                         ORDER BY event_priority, event_id LIMIT 1",
                    )
                    .unwrap();
                let mut rows = claim.query([]).unwrap();
                rows.next()
                    .unwrap()
                    .map(|r| (r.get(0).unwrap(), r.get(1).unwrap()))
            };
            let Some((event_id, key)) = claimed else {
                break;
            };
            let id: i64 = key.trim_start_matches("id=").parse().unwrap();
            let image: String = tx
                .prepare_cached(&format!(
                    "SELECT json_object({ITEM_JSON}) FROM item t WHERE t.id = ?1"
                ))
                .unwrap()
                .query_row([id], |r| r.get(0))
                .unwrap();
            let body = format!("{{\"event_id\":{event_id},\"attributes\":{image}}}\n");
            std::io::Write::write_all(&mut sink, body.as_bytes()).unwrap();
            tx.prepare_cached(
                "INSERT INTO trigpoll_archive (event_id, object_name, object_verb, object_key,
                    event_priority, event_time, event_status, connector_id, attempts, payload,
                    replay_of)
                 SELECT event_id, object_name, object_verb, object_key, event_priority,
                    event_time, 1, 'naive', attempts + 1, payload, replay_of
                 FROM trigpoll_event WHERE event_id = ?1",
            )
            .unwrap()
            .execute([event_id])
            .unwrap();
            tx.prepare_cached("DELETE FROM trigpoll_event WHERE event_id = ?1")
                .unwrap()
                .execute([event_id])
                .unwrap();
            tx.commit().unwrap();
            done += 1;
        }
        done as f64 / start.elapsed().as_secs_f64()
    }

    fn bound(&mut self) -> f64 {
        let insert = format!(
            "INSERT INTO trigpoll_archive (event_id, object_name, object_verb, object_key,
                event_priority, event_time, event_status, connector_id, attempts, payload,
                replay_of)
             SELECT c.event_id, c.object_name, c.object_verb, c.object_key, c.event_priority,
                c.event_time, 1, 'bound', c.attempts + 1, json_object({ITEM_JSON}), c.replay_of
             FROM (SELECT * FROM trigpoll_event WHERE waiting_for IS NULL AND event_status = 0
                   ORDER BY event_priority, event_id LIMIT 1000) c
             JOIN item t ON t.id = CAST(substr(c.object_key, 4) AS INTEGER)"
        );
        let delete = "DELETE FROM trigpoll_event WHERE event_id IN (
                SELECT event_id FROM trigpoll_event WHERE waiting_for IS NULL AND event_status = 0
                ORDER BY event_priority, event_id LIMIT 1000)";
        let start = Instant::now();
        let mut moved = 0u64;
        loop {
            let tx = self
                .conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .unwrap();
            tx.prepare_cached(&insert).unwrap().execute([]).unwrap();
            let rows = tx.prepare_cached(delete).unwrap().execute([]).unwrap();
            tx.commit().unwrap();
            if rows == 0 {
                break;
            }
            moved += rows as u64;
        }
        moved as f64 / start.elapsed().as_secs_f64()
    }
}

impl Bench {
    /// The backends of figure 5 that could be set up, with the trigpoll config of each written
    /// and `install-triggers` run; a backend that cannot be set up is reported and left out.
    fn fig5_backends(&mut self) -> Vec<Box<dyn Backend>> {
        let rows = self.sizes.drain_events;
        let name = self.db.name.clone();
        let shm = self
            .sink
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let mut backends: Vec<Box<dyn Backend>> = Vec::new();
        say(&format!(
            "figure 5: filling item with {rows} rows on MySQL and SQLite"
        ));
        match MysqlBackend::create(&self.opts.mysql_url, &name, rows) {
            Ok(b) => backends.push(Box::new(b)),
            Err(e) => {
                say(&format!(
                    "MySQL is not available at {}: {e}",
                    self.opts.mysql_url
                ));
                self.fig5_missing.push(format!("MySQL/MariaDB ({e})"));
            }
        }
        match SqliteBackend::create(&shm, &name, rows) {
            Ok(b) => backends.push(Box::new(b)),
            Err(e) => {
                say(&format!("SQLite: {e}"));
                self.fig5_missing.push(format!("SQLite ({e})"));
            }
        }
        let mut ready: Vec<Box<dyn Backend>> = Vec::new();
        for mut b in backends {
            let config = format!(
                "{}\n[poll]\nbatch_size = 1000\ninterval = \"1s\"\nconnectors_dir = \"conn-file\"\n\n\
                 [[object]]\nname = \"Item\"\ntable = \"item\"\n",
                b.database_toml()
            );
            let config_name = format!("fig5-{}", b.key());
            std::fs::write(
                self.config_path(&format!("{config_name}-coalesce")),
                format!("{config}coalesce = true\n"),
            )
            .expect("write a config");
            std::fs::write(self.config_path(&config_name), config).expect("write a config");
            let out = self
                .trigpoll(&config_name, &["install-triggers"])
                .output()
                .expect("run trigpoll");
            if out.status.success() {
                let (version, settings) = (b.version(), b.settings());
                self.fig5_versions.push((b.key(), version, settings));
                ready.push(b);
            } else {
                let e = String::from_utf8_lossy(&out.stderr).trim().to_string();
                say(&format!("install-triggers failed on {}: {e}", b.key()));
                self.fig5_missing
                    .push(format!("{} (install-triggers: {e})", b.version()));
            }
        }
        ready
    }

    fn fig5(&mut self, backends: &mut [Box<dyn Backend>]) {
        say("figure 5: drain on MySQL and SQLite");
        let n = self.sizes.drain_events;
        let limit = Duration::from_secs_f64(self.sizes.naive_secs);
        for run in 0..self.opts.runs {
            for b in backends.iter_mut() {
                let key = b.key();
                let meters = b.meters();
                for variant in rotation(&["trigpoll", "naive", "bound"], run) {
                    b.queue(n);
                    let rate = match variant {
                        "trigpoll" => {
                            let before = meters.map_or(f64::NAN, |(m, _)| m.secs());
                            let secs = self.drain_secs(&format!("fig5-{key}"));
                            let after = meters.map_or(f64::NAN, |(m, _)| m.secs());
                            self.record_cpu(&format!("fig5.{key}.cpu_trigpoll"), before, after, n);
                            let left = b.left();
                            if left != 0 {
                                say(&format!("{key}: {left} events were left after drain"));
                            }
                            (n - left) as f64 / secs
                        }
                        "naive" => b.naive(limit),
                        _ => {
                            let before = meters.map_or(f64::NAN, |(_, m)| m.secs());
                            let r = b.bound();
                            let after = meters.map_or(f64::NAN, |(_, m)| m.secs());
                            self.record_cpu(&format!("fig5.{key}.cpu_bound"), before, after, n);
                            let left = b.left();
                            if left != 0 {
                                say(&format!("{key}: the bound left {left} events"));
                            }
                            r
                        }
                    };
                    self.record(&format!("fig5.{key}.{variant}"), rate);
                }
            }
        }
    }

    /// The section of figure 5, complete in itself so that `--only fig5` can splice it into an
    /// existing report.
    fn fig5_section(&self, started: &str, load_before: &str) -> String {
        let m = |k: &str| self.median_of(k);
        let mut md = String::new();
        let _ = writeln!(md, "{FIG5_HEADING}\n");
        let _ =
            writeln!(
            md,
            "Measured on {started} ({}), median of {} runs, interleaved run by run; load average \
             before {load_before}, after {}. docs/performance.md's drain references, on the other two backends.\n",
            if self.opts.quick { "`--quick`" } else { "default size" },
            self.opts.runs,
            loadavg()
        );
        let _ = writeln!(
            md,
            "| backend | trigpoll, events/s | naive poller, events/s | database bound, events/s | trigpoll / naive | trigpoll / bound |"
        );
        let _ = writeln!(md, "|---|---|---|---|---|---|");
        for (key, version, _) in &self.fig5_versions {
            let (tp, naive, bound) = (
                m(&format!("fig5.{key}.trigpoll")),
                m(&format!("fig5.{key}.naive")),
                m(&format!("fig5.{key}.bound")),
            );
            let _ = writeln!(
                md,
                "| {version} | {} | {} | {} | {}× | {:.2} |",
                fmt(tp, 0),
                fmt(naive, 0),
                fmt(bound, 0),
                fmt(tp / naive, if tp / naive < 10.0 { 1 } else { 0 }),
                tp / bound
            );
        }
        for missing in &self.fig5_missing {
            let _ = writeln!(md, "| {missing} | n/a | n/a | n/a | — | — |");
        }
        let _ = writeln!(md);
        if self.results.keys().any(|k| k.contains(".cpu_")) {
            let _ = writeln!(
                md,
                "| backend | database CPU per {} events drained, s: trigpoll | the database bound's | ratio | target | |",
                fmt(100_000.0, 0)
            );
            let _ = writeln!(md, "|---|---|---|---|---|---|");
            for (key, version, _) in &self.fig5_versions {
                let (tp, bound) = (
                    m(&format!("fig5.{key}.cpu_trigpoll")),
                    m(&format!("fig5.{key}.cpu_bound")),
                );
                if !tp.is_finite() {
                    continue;
                }
                let whose = if *key == "sqlite" {
                    "trigpoll's own process; the bound's thread"
                } else {
                    "the server process"
                };
                let _ = writeln!(
                    md,
                    "| {version} ({whose}) | {} | {} | {:.2}× | ≤ 1.5× | {} |",
                    fmt(tp, 2),
                    fmt(bound, 2),
                    tp / bound,
                    verdict(tp / bound <= 1.5)
                );
            }
            let _ = writeln!(md);
        }
        let _ = writeln!(md, "| measurement | median | runs |");
        let _ = writeln!(md, "|---|---|---|");
        for (key, version, _) in &self.fig5_versions {
            for (variant, label) in [
                ("trigpoll", "trigpoll drain, file connector (tmpfs)"),
                ("naive", "naive poller (1 event per transaction)"),
                ("bound", "database bound (set-based, 1000 per commit)"),
            ] {
                let k = format!("fig5.{key}.{variant}");
                let _ = writeln!(
                    md,
                    "| {version}, {label}, events/s | {} | {} |",
                    fmt(m(&k), 0),
                    runs_text(self.results.get(&k).map(Vec::as_slice), 0)
                );
            }
            for (variant, label) in [
                ("cpu_trigpoll", "trigpoll drain"),
                ("cpu_bound", "database bound"),
            ] {
                let k = format!("fig5.{key}.{variant}");
                if let Some(runs) = self.results.get(&k) {
                    let label = format!("{version}, {label}, database CPU per 100,000 events, s");
                    measurement_row(&mut md, &label, runs, 2);
                }
            }
        }
        let _ = writeln!(md);
        let _ = writeln!(
            md,
            "- **trigpoll**: {n} `Update` events for existing rows of `item` (5 columns) are \
             queued by one `INSERT … SELECT` straight into the event table that `trigpoll \
             install-triggers` created (MySQL: `database.schema` is a second throwaway database; \
             SQLite: a file in `/dev/shm`, WAL), and the release `trigpoll drain` binary runs \
             with `batch_size = 1000` and the file connector writing to tmpfs, timed around the \
             process.\n\
             - **Naive poller**: in the driver, one event per transaction: claim the oldest ready \
             event (MySQL: `FOR UPDATE SKIP LOCKED` at READ COMMITTED; SQLite: `BEGIN \
             IMMEDIATE`), fetch its row as `JSON_OBJECT`/`json_object`, archive it, delete it, \
             commit; prepared statements, for {secs} s at most (SQLite may empty the queue sooner).\n\
             - **Database bound**: neither backend has PostgreSQL's `DELETE … RETURNING` in a \
             CTE, so each batch is one transaction of set-based statements: `INSERT INTO \
             archive … SELECT` the 1000 oldest ready events joined to their rows (row image as \
             JSON), then delete those 1000 events, commit; in a loop until the table is empty. \
             MySQL claims the batch first (`SELECT event_id … FORCE INDEX (claim index) … \
             LIMIT 1000 FOR UPDATE SKIP LOCKED`, as trigpoll's claim forces the index: without \
             it MariaDB sorts the whole table) and moves and deletes by those ids; SQLite \
             selects the batch in a subquery (`… ORDER BY event_priority, event_id LIMIT \
             1000`) in both statements, inside one `BEGIN IMMEDIATE`.\n\
             - **Database CPU**: the user+system CPU of the database's work from /proc, read \
             before and after trigpoll's drain and the bound, per 100,000 events: MariaDB/MySQL, \
             the server process (`@@pid_file`; every thread, so anything else the server does \
             meanwhile counts too); SQLite, which has no server, trigpoll's own process \
             (`cutime`/`cstime` of the bench, which waits for it) against the bench thread that \
             runs the bound. /proc counts CPU in hundredths of a second, so a figure over few \
             events (`--quick`) is coarse.\n\
             - The driver's sessions are set as trigpoll sets its own: MySQL `READ COMMITTED`, \
             UTC; SQLite `journal_mode = WAL`, `synchronous = NORMAL`. The servers run with the \
             settings they were found with:",
            n = fmt(self.sizes.drain_events as f64, 0),
            secs = self.sizes.naive_secs,
        );
        for (_, version, settings) in &self.fig5_versions {
            let _ = writeln!(md, "  - {version}: {settings}.");
        }
        let _ = writeln!(md);
        md
    }
}

/// Replaces the section starting at `heading` in `report` (up to the next `## ` heading) with
/// `section`; without one, inserts it before "## Details" (the place a full run gives it), else
/// before "## History", else at the end. What `--only fig5` does to an existing report, so that
/// the other figures stay as they were measured.
fn splice_section(report: &str, heading: &str, section: &str) -> String {
    let find = |h: &str| {
        report
            .find(&format!("\n{h}\n"))
            .map(|i| i + 1)
            .or_else(|| report.starts_with(&format!("{h}\n")).then_some(0))
    };
    if let Some(start) = find(heading) {
        let rest = &report[start + heading.len()..];
        let end = rest
            .find("\n## ")
            .map_or(report.len(), |i| start + heading.len() + i + 1);
        return format!("{}{section}{}", &report[..start], &report[end..]);
    }
    match find("## Details").or_else(|| find("## History")) {
        Some(at) => format!("{}{section}{}", &report[..at], &report[at..]),
        None if report.is_empty() => format!("# Benchmarks\n\n{section}"),
        None => format!("{}\n{section}", report.trim_end_matches('\n')),
    }
}
