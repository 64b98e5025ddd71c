//! `poll` under systemd: the notify protocol (sd_notify(3)) against a real datagram socket
//! given in NOTIFY_SOCKET, as systemd gives it to a `Type=notify` service.

mod common;
// Only its HR schema and `eventually` are used here.
#[allow(dead_code)]
mod conformance;

use std::os::unix::net::UnixDatagram;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::receiver::Receiver;
use common::{lines, Backend, Env, Spawned};
use conformance::{eventually, hr};

const SQLITE: Backend = Backend::Sqlite;

/// What systemd's side of NOTIFY_SOCKET received: each datagram with its arrival time.
struct Manager {
    address: String,
    received: Arc<Mutex<Vec<(Instant, String)>>>,
}

impl Manager {
    /// Listens on an abstract socket (`@name`), as systemd's own notify socket may be.
    fn on_abstract_socket() -> Manager {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("trigpoll-test-{}-{}", std::process::id(), rand_suffix());
        let address = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        Manager::listen(
            UnixDatagram::bind_addr(&address).unwrap(),
            format!("@{name}"),
        )
    }

    /// Listens on a socket file.
    fn on_socket_file(path: &std::path::Path) -> Manager {
        Manager::listen(
            UnixDatagram::bind(path).unwrap(),
            path.display().to_string(),
        )
    }

    fn listen(socket: UnixDatagram, address: String) -> Manager {
        let received = Arc::new(Mutex::new(Vec::new()));
        let kept = Arc::clone(&received);
        std::thread::spawn(move || {
            let mut buffer = vec![0; 65536];
            while let Ok(n) = socket.recv(&mut buffer) {
                let text = String::from_utf8(buffer[..n].to_vec()).unwrap();
                kept.lock().unwrap().push((Instant::now(), text));
            }
        });
        Manager { address, received }
    }

    fn messages(&self) -> Vec<(Instant, String)> {
        self.received.lock().unwrap().clone()
    }

    /// The values of `key` in every message, in order, with their arrival times.
    fn values(&self, key: &str) -> Vec<(Instant, String)> {
        let prefix = format!("{key}=");
        self.messages()
            .into_iter()
            .flat_map(|(at, text)| {
                text.lines()
                    .filter_map(|l| l.strip_prefix(&prefix).map(str::to_string))
                    .map(move |v| (at, v))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    fn all(&self) -> String {
        let messages: Vec<String> = self.messages().into_iter().map(|(_, m)| m).collect();
        messages.join("--\n")
    }

    fn wait_for(&self, what: &str, done: impl Fn(&Manager) -> bool) {
        assert!(
            eventually(Duration::from_secs(60), || done(self)),
            "no {what} in:\n{}",
            self.all()
        );
    }
}

/// Socket names of one test run apart from another's, also across processes.
fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(Instant::now())
}

fn spawn_poll(env: &Env, notify: &[(&str, &str)]) -> Spawned {
    let mut command = env.command(&["poll", "--interval", "100ms"]);
    command
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        .env_remove("WATCHDOG_PID");
    for (name, value) in notify {
        command.env(name, value);
    }
    Spawned(
        command
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    )
}

fn signal(child: &Spawned, name: &str) {
    let status = std::process::Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Stops the poller with SIGTERM; its exit code and what it logged (warnings and errors: little
/// enough for the pipe to hold until now).
fn stop(mut child: Spawned) -> (Option<i32>, String) {
    use std::io::Read;
    signal(&child, "TERM");
    let mut log = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    (child.wait().unwrap().code(), log)
}

/// The gaps between consecutive watchdog pings.
fn gaps(pings: &[(Instant, String)]) -> Vec<Duration> {
    pings.windows(2).map(|w| w[1].0 - w[0].0).collect()
}

/// READY=1 once connected, with the backlog in STATUS; STATUS as the backlog changes;
/// WATCHDOG=1 at half of WATCHDOG_USEC while the loop runs; STOPPING=1 on SIGTERM.
#[test]
fn poll_tells_systemd_ready_status_watchdog_and_stopping() {
    let Some((env, out)) = hr(SQLITE, "") else {
        return;
    };
    env.db
        .execute("INSERT INTO department VALUES (1, 'a'), (2, 'b'), (3, 'c')");
    let manager = Manager::on_abstract_socket();
    let watchdog = Duration::from_secs(2);
    let poll = spawn_poll(
        &env,
        &[
            ("NOTIFY_SOCKET", &manager.address),
            ("WATCHDOG_USEC", &watchdog.as_micros().to_string()),
        ],
    );
    manager.wait_for("READY=1", |m| !m.values("READY").is_empty());
    // Nothing before READY=1; it carries the backlog counted before the first batch.
    let (_, first) = manager.messages()[0].clone();
    assert!(first.lines().any(|l| l == "READY=1"), "{first}");
    let status = manager.values("STATUS")[0].1.clone();
    assert!(
        status.starts_with("3 ready (oldest ")
            && status.ends_with(", 0 waiting for a retry; 0 processed"),
        "{status}"
    );
    assert!(eventually(Duration::from_secs(30), || lines(&out).len() == 3));
    manager.wait_for("STATUS with the events processed", |m| {
        m.values("STATUS")
            .iter()
            .any(|(_, s)| s == "0 ready, 0 waiting for a retry; 3 processed")
    });
    // The watchdog, over a few of its periods while the poller idles.
    let started = Instant::now();
    std::thread::sleep(watchdog * 3);
    let pings: Vec<(Instant, String)> = manager
        .values("WATCHDOG")
        .into_iter()
        .filter(|(at, _)| *at >= started)
        .collect();
    assert!(pings.iter().all(|(_, v)| v == "1"), "{pings:?}");
    assert!(
        pings.len() >= 4,
        "{} pings in {:?}",
        pings.len(),
        watchdog * 3
    );
    for gap in gaps(&pings) {
        assert!(
            gap >= watchdog / 2 - Duration::from_millis(50) && gap < watchdog,
            "a ping {gap:?} after the last, with WATCHDOG_USEC {watchdog:?}"
        );
    }
    let (code, log) = stop(poll);
    assert_eq!(code, Some(0), "{log}");
    manager.wait_for("STOPPING=1", |m| !m.values("STOPPING").is_empty());
    let stopping = manager.values("STOPPING");
    assert_eq!(stopping.len(), 1, "{}", manager.all());
    assert_eq!(stopping[0].1, "1");
    for (_, message) in manager.messages() {
        for line in message.lines() {
            let key = line.split('=').next().unwrap();
            assert!(
                ["READY", "STATUS", "WATCHDOG", "STOPPING"].contains(&key),
                "unexpected {line:?}"
            );
        }
    }
    assert!(!log.contains("notify"), "{log}");
}

/// The pings come from the poll loop itself: while a batch waits on a receiver that does not
/// answer, there are none (systemd would restart a poller stuck for WatchdogSec), and they
/// come again once the batch is over.
#[test]
fn a_stuck_batch_stops_the_watchdog_pings() {
    let Some((env, _out)) = hr(SQLITE, "") else {
        return;
    };
    let receiver = Receiver::start(|_| (0, None));
    env.connector(
        "hook",
        &format!(
            "subscribe = [\"Employee.*\"]\n[sink]\ntype = \"http\"\nurl = \"{}\"\n\
             secret = \"s\"\ntimeout = \"3s\"\nbackoff = \"1h\"",
            receiver.url
        ),
    );
    let manager = Manager::on_abstract_socket();
    let watchdog = Duration::from_millis(600);
    let poll = spawn_poll(
        &env,
        &[
            ("NOTIFY_SOCKET", &manager.address),
            ("WATCHDOG_USEC", &watchdog.as_micros().to_string()),
        ],
    );
    manager.wait_for("READY=1", |m| !m.values("READY").is_empty());
    std::thread::sleep(watchdog * 2);
    env.db.execute("INSERT INTO employee (emp_id) VALUES (7)");
    assert!(eventually(Duration::from_secs(30), || !receiver
        .requests()
        .is_empty()));
    let stuck_at = receiver.requests()[0].at;
    // The request times out after 3 s; then the loop goes on.
    manager.wait_for("pings after the stuck batch", |m| {
        m.values("WATCHDOG")
            .iter()
            .filter(|(at, _)| *at > stuck_at + Duration::from_secs(3))
            .count()
            >= 2
    });
    let pings = manager.values("WATCHDOG");
    let longest = gaps(&pings).into_iter().max().unwrap();
    assert!(
        longest >= Duration::from_millis(2500),
        "the pings went on while the batch was stuck: the longest gap was {longest:?}"
    );
    let (code, log) = stop(poll);
    assert_eq!(code, Some(0), "{log}");
}

/// SIGHUP: RELOADING=1 (with MONOTONIC_USEC, which systemd needs to match it with the reload),
/// then READY=1. A refused configuration stays in STATUS, in check's words (or in poll's, for
/// a table that does not exist), until a reload works. WATCHDOG_USEC meant for another process (WATCHDOG_PID) is not answered. NOTIFY_SOCKET
/// may also name a socket file.
#[test]
fn reloads_are_told_and_a_refused_one_stays_in_the_status() {
    let Some((env, _out)) = hr(SQLITE, "") else {
        return;
    };
    let manager = Manager::on_socket_file(&env.path("notify.sock"));
    let poll = spawn_poll(
        &env,
        &[
            ("NOTIFY_SOCKET", &manager.address),
            ("WATCHDOG_USEC", "200000"),
            ("WATCHDOG_PID", "1"),
        ],
    );
    manager.wait_for("READY=1", |m| m.values("READY").len() == 1);
    let config = std::fs::read_to_string(env.config_path()).unwrap();
    std::fs::write(
        env.config_path(),
        format!("{config}\n[archive]\nretention = \"soon\"\n"),
    )
    .unwrap();
    let check = env.run_ok(&["check"], 2);
    let refusal = common::stderr(&check)
        .trim()
        .strip_prefix("trigpoll: ")
        .unwrap()
        .to_string();
    signal(&poll, "HUP");
    manager.wait_for("READY=1 after the reload", |m| m.values("READY").len() == 2);
    let reloading = manager
        .messages()
        .into_iter()
        .find(|(_, m)| m.contains("RELOADING=1"))
        .map(|(_, m)| m)
        .expect("RELOADING=1");
    let usec: u64 = reloading
        .lines()
        .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
        .expect("MONOTONIC_USEC")
        .parse()
        .unwrap();
    assert!(usec > 0);
    let (_, status) = manager.values("STATUS").last().unwrap().clone();
    assert!(
        status.ends_with(&format!("; configuration not reloaded: {refusal}")),
        "{status}\ncheck said: {refusal}"
    );
    // Valid, but an object whose table does not exist: refused as `poll` refuses to start.
    std::fs::write(
        env.config_path(),
        format!("{config}\n[[object]]\nname = \"Ghost\"\ntable = \"ghost\"\n"),
    )
    .unwrap();
    signal(&poll, "HUP");
    manager.wait_for("READY=1 after the second reload", |m| {
        m.values("READY").len() == 3
    });
    let (_, status) = manager.values("STATUS").last().unwrap().clone();
    assert!(
        status.contains("; configuration not reloaded: ") && status.contains("ghost"),
        "{status}"
    );
    std::fs::write(env.config_path(), &config).unwrap();
    signal(&poll, "HUP");
    manager.wait_for("READY=1 after the third reload", |m| {
        m.values("READY").len() == 4
    });
    let (_, status) = manager.values("STATUS").last().unwrap().clone();
    assert!(!status.contains("not reloaded"), "{status}");
    let (code, log) = stop(poll);
    assert_eq!(code, Some(0), "{log}");
    assert!(
        manager.values("WATCHDOG").is_empty(),
        "pinged a watchdog meant for process 1: {}",
        manager.all()
    );
}

/// Without NOTIFY_SOCKET (started by hand, by cron, by another service manager), `poll` works as
/// ever and says nothing about notifications, whatever else of systemd's is set.
#[test]
fn without_notify_socket_poll_works_and_says_nothing_of_it() {
    let Some((env, out)) = hr(SQLITE, "") else {
        return;
    };
    let poll = spawn_poll(&env, &[("WATCHDOG_USEC", "200000")]);
    env.db.execute("INSERT INTO department VALUES (1, 'a')");
    assert!(eventually(Duration::from_secs(30), || lines(&out).len() == 1));
    signal(&poll, "HUP");
    std::thread::sleep(Duration::from_millis(500));
    env.db.execute("INSERT INTO department VALUES (2, 'b')");
    assert!(eventually(Duration::from_secs(30), || lines(&out).len() == 2));
    let (code, log) = stop(poll);
    assert_eq!(code, Some(0), "{log}");
    assert!(!log.contains("notify"), "{log}");
}
