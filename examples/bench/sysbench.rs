//! Figure 10: an application's write load on MariaDB/MySQL (sysbench `oltp_write_only`, 4
//! tables of 10,000 rows, 4 threads) without triggers, with trigpoll's triggers alone, and with
//! the triggers and `trigpoll poll --interval 100ms` running; then how long the poller takes to
//! empty the event table once the load stops.
//!
//! It creates two throwaway databases on the server at `--mysql-url` (the tables, and trigpoll's
//! `database.schema`) and drops them at the end.

use std::fmt::Write as _;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mysql::prelude::Queryable;

use super::{fmt, loadavg, measurement_row, rotation, say, verdict, Bench};

/// The section figure 10 writes, also the heading `--only fig10` looks for.
pub(super) const SYSBENCH_HEADING: &str = "## sysbench on MariaDB";

const TABLES: u32 = 4;
const TABLE_SIZE: u32 = 10_000;
const THREADS: u32 = 4;

/// The figure's variants, in the order the report shows them.
const VARIANTS: [(&str, &str); 3] = [
    ("none", "no triggers (reference)"),
    ("triggers", "trigpoll's triggers, no poller"),
    ("poll", "trigpoll's triggers and `poll --interval 100ms`"),
];

/// The throwaway databases, dropped with it.
struct Databases {
    conn: mysql::Conn,
    app: String,
    events: String,
}

impl Drop for Databases {
    fn drop(&mut self) {
        for db in [self.app.clone(), self.events.clone()] {
            let _ = self
                .conn
                .query_drop(format!("DROP DATABASE IF EXISTS `{db}`"));
        }
    }
}

impl Databases {
    fn count_events(&mut self) -> i64 {
        let sql = format!("SELECT COUNT(*) FROM `{}`.trigpoll_event", self.events);
        self.conn
            .query_first(&sql)
            .unwrap_or_else(|e| panic!("{sql}\n{e}"))
            .unwrap_or(0)
    }

    fn clear_events(&mut self) {
        for table in ["trigpoll_event", "trigpoll_archive"] {
            let sql = format!("TRUNCATE TABLE `{}`.{table}", self.events);
            self.conn
                .query_drop(&sql)
                .unwrap_or_else(|e| panic!("{sql}\n{e}"));
        }
    }
}

impl Bench {
    /// Runs `sysbench oltp_write_only … args` on database `db` of the server at `--mysql-url`:
    /// its output.
    fn sysbench(&self, db: &str, args: &[&str]) -> Result<String, String> {
        let opts = mysql::Opts::from_url(&self.opts.mysql_url).map_err(|e| e.to_string())?;
        let mut cmd = Command::new("sysbench");
        cmd.arg("oltp_write_only")
            .arg("--db-driver=mysql")
            .arg(format!("--mysql-host={}", opts.get_ip_or_hostname()))
            .arg(format!("--mysql-port={}", opts.get_tcp_port()))
            .arg(format!(
                "--mysql-user={}",
                opts.get_user().unwrap_or("root")
            ))
            .arg(format!("--mysql-db={db}"))
            .arg(format!("--tables={TABLES}"))
            .arg(format!("--table-size={TABLE_SIZE}"))
            .arg(format!("--threads={THREADS}"))
            .args(args);
        if let Some(pass) = opts.get_pass() {
            cmd.arg(format!("--mysql-password={pass}"));
        }
        let out = cmd
            .output()
            .map_err(|e| format!("sysbench did not run: {e}"))?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() {
            Ok(text)
        } else {
            Err(format!(
                "sysbench {args:?} failed: {text}{}",
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    /// One run of the load: transactions per second, from sysbench's
    /// `transactions: N (X per sec.)`.
    fn sysbench_tps(&self, db: &str) -> f64 {
        let time = format!("--time={}", self.sizes.sysbench_secs);
        match self.sysbench(db, &[time.as_str(), "run"]) {
            Ok(text) => text
                .lines()
                .find(|l| l.trim_start().starts_with("transactions:"))
                .and_then(|l| l.split('(').nth(1)?.split_whitespace().next()?.parse().ok())
                .unwrap_or(f64::NAN),
            Err(e) => {
                say(&e);
                f64::NAN
            }
        }
    }

    /// The databases, `sysbench prepare` and trigpoll's config `sysbench`, or why not.
    fn sysbench_setup(&mut self) -> Result<Databases, String> {
        let opts = mysql::Opts::from_url(&self.opts.mysql_url).map_err(|e| e.to_string())?;
        let conn = mysql::Conn::new(opts).map_err(|e| format!("{}: {e}", self.opts.mysql_url))?;
        let mut dbs = Databases {
            conn,
            app: format!("{}_sb", self.db.name),
            events: format!("{}_sb_events", self.db.name),
        };
        for db in [dbs.app.clone(), dbs.events.clone()] {
            dbs.conn
                .query_drop(format!("CREATE DATABASE `{db}` CHARACTER SET utf8mb4"))
                .map_err(|e| e.to_string())?;
        }
        say(&format!(
            "figure 10: sysbench prepare ({TABLES} tables of {TABLE_SIZE} rows)"
        ));
        self.sysbench(&dbs.app, &["prepare"])?;
        let mut text = format!(
            "[database]\nurl = \"{}/{}\"\nschema = \"{}\"\n\n[poll]\nconnectors_dir = \"conn-file\"\n",
            self.opts.mysql_url, dbs.app, dbs.events
        );
        for t in 1..=TABLES {
            let _ = write!(
                text,
                "\n[[object]]\nname = \"Sbtest{t}\"\ntable = \"sbtest{t}\"\n"
            );
        }
        std::fs::write(self.config_path("sysbench"), text).expect("write a config");
        if !self.set_triggers("sysbench", true) {
            return Err("install-triggers failed".into());
        }
        Ok(dbs)
    }

    /// Figure 10, interleaved run by run.
    pub(super) fn fig10(&mut self) {
        say("figure 10: sysbench oltp_write_only on MariaDB");
        let mut dbs = match self.sysbench_setup() {
            Ok(dbs) => dbs,
            Err(e) => {
                say(&format!("figure 10 not run: {e}"));
                self.sysbench_missing = Some(e);
                return;
            }
        };
        let version: Option<String> = dbs.conn.query_first("SELECT VERSION()").ok().flatten();
        let version = version.unwrap_or_default();
        self.sysbench_version = match version.split_once("-MariaDB") {
            Some((number, _)) => format!("MariaDB {number}"),
            None => format!("MySQL {version}"),
        };
        let names: Vec<&str> = VARIANTS.iter().map(|v| v.0).collect();
        let mut installed = true;
        for run in 0..self.opts.runs {
            for v in rotation(&names, run) {
                dbs.clear_events();
                if installed != (v != "none") {
                    installed = !installed;
                    if !self.set_triggers("sysbench", installed) {
                        self.sysbench_missing = Some("install/uninstall-triggers failed".into());
                        return;
                    }
                }
                if v != "poll" {
                    let tps = self.sysbench_tps(&dbs.app);
                    self.record(&format!("sysbench.{v}.tps"), tps);
                    continue;
                }
                let _ = std::fs::remove_file(&self.sink);
                let mut poll: Child = self
                    .trigpoll("sysbench", &["poll", "--interval", "100ms"])
                    .stdout(Stdio::null())
                    .spawn()
                    .expect("start trigpoll poll");
                std::thread::sleep(Duration::from_secs(1));
                let tps = self.sysbench_tps(&dbs.app);
                let stopped = Instant::now();
                let backlog = dbs.count_events();
                let mut left = backlog;
                while left > 0 && stopped.elapsed() < Duration::from_secs(300) {
                    std::thread::sleep(Duration::from_millis(20));
                    left = dbs.count_events();
                }
                let empty_secs = stopped.elapsed().as_secs_f64();
                let _ = Command::new("kill")
                    .arg("-TERM")
                    .arg(poll.id().to_string())
                    .status();
                let _ = poll.wait();
                let _ = std::fs::remove_file(&self.sink);
                if left > 0 {
                    say(&format!(
                        "sysbench: {left} events still waiting after 300 s"
                    ));
                }
                self.record("sysbench.poll.tps", tps);
                self.record("sysbench.poll.backlog", backlog as f64);
                self.record(
                    "sysbench.poll.empty_secs",
                    if left > 0 { f64::NAN } else { empty_secs },
                );
            }
        }
    }

    /// The section of figure 10, complete in itself so that `--only fig10` can splice it.
    pub(super) fn sysbench_section(&self, started: &str, load_before: &str) -> String {
        let m = |k: &str| self.median_of(k);
        let mut md = String::new();
        let _ = writeln!(md, "{SYSBENCH_HEADING}\n");
        let _ =
            writeln!(
            md,
            "Measured on {started} ({}), median of {} runs, interleaved run by run; load average \
             before {load_before}, after {}. sysbench `oltp_write_only` ({TABLES} tables of \
             {} rows, {THREADS} threads, {} s) on {}: an application's write load without \
             triggers, with trigpoll's triggers alone, and with `trigpoll poll --interval 100ms` \
             running beside it.\n",
            if self.opts.quick { "`--quick`" } else { "default size" },
            self.opts.runs,
            loadavg(),
            fmt(TABLE_SIZE as f64, 0),
            self.sizes.sysbench_secs,
            if self.sysbench_version.is_empty() {
                "the server at `--mysql-url`"
            } else {
                self.sysbench_version.as_str()
            },
        );
        if let Some(why) = &self.sysbench_missing {
            let _ = writeln!(md, "Not run: {why}.\n");
        }
        let none = m("sysbench.none.tps");
        if none.is_finite() {
            let _ = writeln!(md, "| figure | measured | reference | ratio | target | |");
            let _ = writeln!(md, "|---|---|---|---|---|---|");
            let triggers = m("sysbench.triggers.tps");
            let _ = writeln!(
                md,
                "| tps, trigpoll's triggers alone (no poller) vs no triggers | {} | {} | {:.2} | (report) | |",
                fmt(triggers, 0),
                fmt(none, 0),
                triggers / none
            );
            let poll = m("sysbench.poll.tps");
            let _ = writeln!(
                md,
                "| tps, triggers and `poll --interval 100ms` running vs no triggers | {} | {} | {:.2} | ≥ 0.70 | {} |",
                fmt(poll, 0),
                fmt(none, 0),
                poll / none,
                verdict(poll / none >= 0.7)
            );
            let empty = m("sysbench.poll.empty_secs");
            let _ = writeln!(
                md,
                "| seconds until no event waits, after the load stops (poll running) | {} | backlog when the load stopped: {} events | — | ≤ 5 s | {} |",
                fmt(empty, 2),
                fmt(m("sysbench.poll.backlog"), 0),
                verdict(empty <= 5.0)
            );
            let _ = writeln!(md);
        }
        let _ = writeln!(md, "| measurement | median | runs |");
        let _ = writeln!(md, "|---|---|---|");
        for (v, label) in VARIANTS {
            let key = format!("sysbench.{v}.tps");
            if let Some(runs) = self.results.get(&key) {
                measurement_row(&mut md, &format!("tps, {label}"), runs, 0);
            }
        }
        for (key, label, digits) in [
            (
                "sysbench.poll.backlog",
                "backlog when the load stopped, events",
                0,
            ),
            (
                "sysbench.poll.empty_secs",
                "seconds until no event waits",
                2,
            ),
        ] {
            if let Some(runs) = self.results.get(key) {
                measurement_row(&mut md, label, runs, digits);
            }
        }
        let _ = writeln!(md);
        let _ = writeln!(
            md,
            "`sysbench oltp_write_only --tables={TABLES} --table-size={TABLE_SIZE} \
             --threads={THREADS} --time={}` (each transaction: an update by the secondary index, \
             an update of a non-indexed column, a delete and an insert of the same row) against \
             a throwaway database prepared once. trigpoll's triggers are installed on the four \
             `sbtest` tables by `trigpoll install-triggers` (events in a second throwaway \
             database, `database.schema`) and removed for the reference by `trigpoll \
             uninstall-triggers`; the event and archive tables are emptied before each run. With \
             the poller, `trigpoll poll --interval 100ms` (its defaults otherwise, file connector \
             on tmpfs) starts a second before the load, and the event table is counted every 20 ms \
             from the moment sysbench exits until it is empty.\n",
            self.sizes.sysbench_secs
        );
        md
    }
}
