//! The database CPU of figures 1 and 5: the user+system CPU a database server spends on a drain,
//! read from /proc before and after it.
//!
//! - PostgreSQL runs a process per connection: its meter is the postmaster's tree, that is the
//!   postmaster's own time, the time of its children that have exited (`cutime`/`cstime`,
//!   added when the postmaster reaps them) and the time of its live children (every backend,
//!   the checkpointer, the WAL writer, autovacuum). A backend's time moves from the live sum
//!   to `cutime` when it exits, so a drain's connections are counted whether they outlive the
//!   sample or not; the caller waits until they have exited before it samples again.
//! - MariaDB/MySQL is one process: its `utime`/`stime`, every thread included.
//! - SQLite has no server: trigpoll's own process does the database's work, so its meter is the
//!   CPU of the bench's exited children (the drain, waited for), and the bound's is the CPU of
//!   the bench thread that runs it.

use std::path::Path;

/// /proc's unit of CPU time: Linux reports it in USER_HZ, 100 per second on every architecture.
const TICKS_PER_SEC: f64 = 100.0;

/// The fields of /proc/<pid>/stat that a meter reads.
struct Stat {
    ppid: u32,
    /// utime + stime, ticks.
    own: u64,
    /// cutime + cstime, ticks: the children it has waited for.
    children: u64,
}

fn stat(path: &Path) -> Option<Stat> {
    let text = std::fs::read_to_string(path).ok()?;
    // The command name, in parentheses, may hold spaces: the fields start after the last ')'.
    let fields: Vec<&str> = text[text.rfind(')')? + 1..].split_whitespace().collect();
    // Field k of proc(5) is fields[k - 3].
    let field = |k: usize| fields.get(k - 3)?.parse::<u64>().ok();
    Some(Stat {
        ppid: u32::try_from(field(4)?).ok()?,
        own: field(14)? + field(15)?,
        children: field(16)? + field(17)?,
    })
}

fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

#[derive(Clone, Copy)]
pub(super) enum Meter {
    /// A server of many processes (PostgreSQL), by its root process.
    Tree(u32),
    /// A server of one process (MariaDB's mariadbd, MySQL's mysqld).
    Process(u32),
    /// The bench's children that have exited and been waited for.
    Children,
    /// The calling thread.
    Thread,
}

impl Meter {
    /// The PostgreSQL server of the backend `backend_pid` (`pg_backend_pid()`), when it runs on
    /// this machine.
    pub(super) fn postgres(backend_pid: i32) -> Option<Meter> {
        let backend = u32::try_from(backend_pid).ok()?;
        let root = stat(Path::new(&format!("/proc/{backend}/stat")))?.ppid;
        (comm(backend) == "postgres" && ["postgres", "postmaster"].contains(&comm(root).as_str()))
            .then_some(Meter::Tree(root))
    }

    /// The MariaDB/MySQL server that wrote `pid_file` (`@@pid_file`), when it runs on this
    /// machine.
    pub(super) fn mysql(pid_file: &str) -> Option<Meter> {
        let pid: u32 = std::fs::read_to_string(pid_file)
            .ok()?
            .trim()
            .parse()
            .ok()?;
        ["mariadbd", "mysqld"]
            .contains(&comm(pid).as_str())
            .then_some(Meter::Process(pid))
    }

    /// CPU seconds so far (user + system); NaN when the process is gone.
    pub(super) fn secs(&self) -> f64 {
        let ticks = match *self {
            Meter::Process(pid) => stat(Path::new(&format!("/proc/{pid}/stat"))).map(|s| s.own),
            Meter::Children => stat(Path::new("/proc/self/stat")).map(|s| s.children),
            Meter::Thread => stat(Path::new("/proc/thread-self/stat")).map(|s| s.own),
            Meter::Tree(root) => stat(Path::new(&format!("/proc/{root}/stat"))).map(|r| {
                let live: u64 = std::fs::read_dir("/proc")
                    .into_iter()
                    .flatten()
                    .flatten()
                    .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
                    .filter_map(|pid| stat(Path::new(&format!("/proc/{pid}/stat"))))
                    .filter(|s| s.ppid == root)
                    .map(|s| s.own)
                    .sum();
                r.own + r.children + live
            }),
        };
        ticks.map_or(f64::NAN, |t| t as f64 / TICKS_PER_SEC)
    }
}
