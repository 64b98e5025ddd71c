//! Running it in production: pruning the archive, metrics, check, replays to connectors that
//! are gone.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use crate::common::receiver::Receiver;
use crate::common::{free_port, lines, stderr, stdout, Backend, ClosedPort, Env};
use crate::conformance::{eventually, hr};

/// Makes every archive row look processed two days ago.
fn age_archive(env: &Env) {
    let two_days_ago = match env.db.backend {
        Backend::Postgres => "now() - interval '2 days'",
        Backend::Mysql => "NOW(6) - INTERVAL 2 DAY",
        Backend::Sqlite => "strftime('%Y-%m-%dT%H:%M:%f000Z', 'now', '-2 days')",
    };
    env.db.execute(&format!(
        "UPDATE {{archive}} SET event_processed = {two_days_ago}"
    ));
}

fn archived(env: &Env, status: i32) -> i64 {
    env.db.count(&format!(
        "SELECT count(*) FROM {{archive}} WHERE event_status = {status}"
    ))
}

/// Inserts `n` departments in one statement.
fn departments(env: &Env, from: usize, n: usize) {
    let values: Vec<String> = (from..from + n).map(|i| format!("({i}, 'd{i}')")).collect();
    env.db.execute(&format!(
        "INSERT INTO department VALUES {}",
        values.join(", ")
    ));
}

/// Events with a key that fits no row: archived as `error`.
fn bad_event(env: &Env) {
    env.db.execute(
        "INSERT INTO {events} (object_name, object_verb, object_key) \
         VALUES ('Department', 'Update', 'nonsense')",
    );
}

pub fn prune_deletes_old_rows_in_batches_and_keeps_failures(backend: Backend) {
    let Some((env, _)) = hr(backend, "batch_size = 1000") else {
        return;
    };
    // More rows than one prune batch (1000) takes.
    departments(&env, 0, 2500);
    bad_event(&env);
    env.run_ok(&["drain"], 3);
    assert_eq!((archived(&env, 1), archived(&env, -1)), (2500, 1));

    let out = env.run_ok(&["prune"], 2);
    assert!(
        stderr(&out).contains("prune needs --older-than"),
        "{}",
        stderr(&out)
    );
    let out = env.run_ok(&["prune", "--status", "ready", "--older-than", "1d"], 2);
    assert!(
        stderr(&out).contains("--status \"ready\""),
        "{}",
        stderr(&out)
    );

    // Nothing is older than a day yet.
    env.run_ok(&["prune", "--older-than", "1d"], 0);
    assert_eq!(archived(&env, 1), 2500);

    age_archive(&env);
    let out = env.run_ok(&["prune", "--older-than", "1d", "--dry-run"], 0);
    assert_eq!(
        stdout(&out),
        "would prune 2500 archive rows (sent, unsubscribed) processed more than 1 day ago\n"
    );
    assert_eq!(archived(&env, 1), 2500, "a dry run deletes nothing");

    // The configured retention is the default cut-off; failures stay.
    let config = std::fs::read_to_string(env.config_path()).unwrap();
    std::fs::write(
        env.config_path(),
        format!("{config}\n[archive]\nretention = \"1d\"\n"),
    )
    .unwrap();
    let out = env.run_ok(&["prune"], 0);
    assert!(
        stderr(&out).contains("pruned 2500 archive rows (sent, unsubscribed)"),
        "{}",
        stderr(&out)
    );
    assert_eq!((archived(&env, 1), archived(&env, -1)), (0, 1));
    env.run_ok(&["prune", "--status", "error"], 0);
    assert_eq!(archived(&env, -1), 0, "failures go when named");

    // poll prunes when it starts, with the retention set.
    departments(&env, 5000, 3);
    bad_event(&env);
    env.run_ok(&["drain"], 3);
    age_archive(&env);
    let mut poll = env.spawn(&["poll", "--interval", "200ms"]);
    assert!(
        eventually(Duration::from_secs(20), || archived(&env, 1) == 0),
        "poll did not prune the archive"
    );
    assert_eq!(archived(&env, -1), 1, "poll keeps failures");
    stop(&mut poll);
}

fn stop(child: &mut crate::common::Spawned) {
    std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

/// Scrapes `/metrics` and parses it with a Prometheus text parser.
pub fn scrape(port: u16) -> Option<(String, prometheus_parse::Scrape)> {
    let text = ureq::get(&format!("http://127.0.0.1:{port}/metrics"))
        .call()
        .ok()?
        .into_string()
        .ok()?;
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .expect("the exposition parses");
    Some((text, scrape))
}

/// The value of the sample named `name` whose labels include `labels`.
pub fn sample(
    scrape: &prometheus_parse::Scrape,
    name: &str,
    labels: &[(&str, &str)],
) -> Option<f64> {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .find(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match &s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => *v,
            prometheus_parse::Value::Histogram(buckets) => {
                buckets.iter().map(|b| b.count).fold(0.0, f64::max)
            }
            prometheus_parse::Value::Summary(_) => f64::NAN,
        })
}

/// `/healthz`'s status code.
pub fn health(port: u16) -> Option<u16> {
    match ureq::get(&format!("http://127.0.0.1:{port}/healthz")).call() {
        Ok(r) => Some(r.status()),
        Err(ureq::Error::Status(code, _)) => Some(code),
        Err(_) => None,
    }
}

pub fn poll_metrics_count_events_steps_and_backlog(backend: Backend) {
    let Some((env, out)) = hr(backend, "") else {
        return;
    };
    // Departments are delivered; employees wait for their retry at this receiver.
    let receiver = Receiver::start(|_| (503, Some(3600)));
    env.connector(
        "hook",
        &format!(
            "subscribe = [\"Employee.*\"]\n[sink]\ntype = \"http\"\nurl = \"{}\"\n\
             secret = \"metrics-s3cret\"\ntimeout = \"2s\"",
            receiver.url
        ),
    );
    let port = free_port();
    let mut poll = env.spawn(&[
        "poll",
        "--interval",
        "200ms",
        "--metrics",
        &format!("127.0.0.1:{port}"),
    ]);
    assert!(
        eventually(Duration::from_secs(60), || health(port) == Some(200)),
        "/healthz did not answer 200"
    );
    env.db
        .execute("INSERT INTO department VALUES (1, 'a'), (2, 'b')");
    env.db.execute("INSERT INTO employee (emp_id) VALUES (7)");
    assert!(eventually(Duration::from_secs(60), || lines(&out).len() == 3));
    let department = [
        ("object", "Department"),
        ("verb", "Create"),
        ("connector", "out"),
        ("outcome", "sent"),
    ];
    let retried = [
        ("object", "Employee"),
        ("verb", "Create"),
        ("connector", "hook"),
        ("outcome", "retry"),
    ];
    let mut last = None;
    let settled = eventually(Duration::from_secs(15), || {
        let Some((text, scrape)) = scrape(port) else {
            return false;
        };
        let done = sample(&scrape, "trigpoll_events_total", &department) == Some(2.0)
            && sample(&scrape, "trigpoll_events_total", &retried) == Some(1.0)
            && sample(&scrape, "trigpoll_retry_waiting_events", &[]) == Some(1.0)
            && sample(&scrape, "trigpoll_ready_events", &[]) == Some(0.0);
        last = Some((text, scrape));
        done
    });
    let (text, scrape) = last.expect("a scrape");
    assert!(settled, "{text}");
    let employee_out = [
        ("object", "Employee"),
        ("connector", "out"),
        ("outcome", "sent"),
    ];
    assert_eq!(
        sample(&scrape, "trigpoll_events_total", &employee_out),
        Some(1.0)
    );
    for step in ["claim", "fetch", "deliver", "finish"] {
        let count = sample(
            &scrape,
            "trigpoll_step_duration_seconds_count",
            &[("step", step)],
        );
        assert!(count.is_some_and(|c| c >= 1.0), "step {step}: {text}");
    }
    for connector in ["out", "hook"] {
        let count = sample(
            &scrape,
            "trigpoll_delivery_duration_seconds_count",
            &[("connector", connector)],
        );
        assert!(
            count.is_some_and(|c| c >= 1.0),
            "connector {connector}: {text}"
        );
    }
    assert_eq!(
        sample(&scrape, "trigpoll_oldest_ready_event_age_seconds", &[]),
        Some(0.0)
    );
    assert_eq!(sample(&scrape, "trigpoll_healthy", &[]), Some(1.0));
    // The shipped alerting rules and dashboard query metrics that exist; the dashboard shows
    // every one.
    check_queries(&text);
    assert!(!text.contains("metrics-s3cret"), "{text}");
    assert!(!text.contains(&env.db.url), "{text}");
    assert_eq!(health(port), Some(200), "an idle poller is healthy");
    let missing = ureq::get(&format!("http://127.0.0.1:{port}/nothing")).call();
    assert!(matches!(missing, Err(ureq::Error::Status(404, _))));
    stop(&mut poll);
}

/// The names in an exposition as Prometheus stores its series: `trigpoll_events_total`,
/// `…_bucket`, `…_sum`, `…_count`; and the metric families (`# TYPE` lines).
fn exposed(text: &str) -> (BTreeSet<&str>, BTreeSet<&str>) {
    let series = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap())
        .collect();
    let families = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    (series, families)
}

/// The `trigpoll_` metric names in a text (a PromQL expression, a rules file).
fn metric_names(text: &str) -> BTreeSet<&str> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("trigpoll_"))
        .collect()
}

/// Every PromQL expression of a Grafana dashboard: its panels' targets and its variables.
fn dashboard_queries(dashboard: &serde_json::Value) -> Vec<String> {
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            queries.push(target["expr"].as_str().unwrap().to_string());
        }
    }
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        if let Some(query) = variable["query"]["query"].as_str() {
            queries.push(query.to_string());
        }
    }
    queries
}

/// examples/alerts.yml and examples/grafana-dashboard.json against what `poll --metrics`
/// exposes (`text`, a scrape where every metric has samples).
fn check_queries(text: &str) {
    let (series, families) = exposed(text);
    assert!(families.len() >= 7, "{families:?}");
    let example = |name: &str| {
        std::fs::read_to_string(format!("{}/examples/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
    };
    let rules = example("alerts.yml");
    let used = metric_names(&rules);
    assert!(used.len() >= 5, "{used:?}");
    for metric in used {
        assert!(
            series.contains(metric),
            "examples/alerts.yml uses {metric}, which is not exposed"
        );
    }
    let dashboard: serde_json::Value =
        serde_json::from_str(&example("grafana-dashboard.json")).unwrap();
    let queries = dashboard_queries(&dashboard);
    let mut shown = BTreeSet::new();
    for query in &queries {
        for metric in metric_names(query) {
            assert!(
                series.contains(metric),
                "examples/grafana-dashboard.json queries {metric}, which is not exposed: {query}"
            );
            shown.insert(metric);
        }
        // Every panel follows the dashboard's job and poller choice.
        if !query.starts_with("label_values") {
            assert!(
                query.contains("instance=~\"$instance\""),
                "a query ignores the $instance variable: {query}"
            );
        }
    }
    for family in families {
        assert!(
            shown.iter().any(|m| m.starts_with(family)),
            "examples/grafana-dashboard.json shows nothing of {family}"
        );
    }
}

pub fn replay_refuses_rows_of_connectors_no_longer_configured(backend: Backend) {
    let Some((env, out)) = hr(backend, "") else {
        return;
    };
    let gone = env.file_connector("gone");
    departments(&env, 1, 2);
    env.run_ok(&["drain"], 0);
    assert_eq!((lines(&out).len(), lines(&gone).len()), (2, 2));
    std::fs::remove_file(env.path("connectors/gone.toml")).unwrap();
    let refused = env.run_ok(&["replay"], 2);
    let message = stderr(&refused);
    assert!(
        message.contains("connector gone") && message.contains("nothing was enqueued"),
        "{message}"
    );
    assert_eq!(env.db.count("SELECT count(*) FROM {events}"), 0);
    env.run_ok(&["replay", "--dry-run"], 2);
    // To a configured connector it goes.
    let replayed = env.run_ok(&["replay", "--connector", "out"], 0);
    assert_eq!(stdout(&replayed).lines().count(), 2);
    env.run_ok(&["drain"], 0);
    assert_eq!(lines(&out).len(), 4);
    let counts: HashMap<String, i64> = env
        .db
        .query("SELECT connector_id, count(*) FROM {archive} GROUP BY connector_id")
        .into_iter()
        .map(|r| {
            (
                r[0].clone().unwrap_or_default(),
                r[1].as_ref().unwrap().parse().unwrap(),
            )
        })
        .collect();
    assert_eq!(counts.get("gone"), Some(&2), "{counts:?}");
}

/// The line of `check --database`'s report on an object's trigger (its table is named as the
/// backend names it, with or without schema).
fn trigger_line<'a>(report: &'a str, object: &str) -> &'a str {
    report
        .lines()
        .find(|l| l.starts_with(&format!("trigger        {object} on ")))
        .unwrap_or_else(|| panic!("no trigger line for {object}: {report}"))
}

pub fn check_reports_tables_drift_and_unreachable_connectors(backend: Backend) {
    let Some(env) = Env::new(backend) else {
        return;
    };
    env.db.execute(crate::conformance::HR);
    env.config("", crate::conformance::HR_OBJECTS);
    env.file_connector("out");
    let closed_port = ClosedPort::new();
    let closed = closed_port.port();
    env.connector(
        "hook",
        &format!(
            "subscribe = [\"*.*\"]\n[sink]\ntype = \"http\"\n\
             url = \"http://user:hook-s3cret@127.0.0.1:{closed}/x\"\nsecret = \"k\""
        ),
    );
    let out = env.run_ok(&["check"], 0);
    assert!(
        stdout(&out).starts_with("configuration  ok:"),
        "{}",
        stdout(&out)
    );

    let out = env.run_ok(&["check", "--database"], 1);
    let report = stdout(&out);
    assert!(report.contains("tables         missing"), "{report}");
    assert!(trigger_line(&report, "Employee").ends_with(": missing: run install-triggers"));
    assert!(
        report.contains(&format!(
            "connector      hook: UNREACHABLE: cannot connect to 127.0.0.1:{closed}"
        )),
        "{report}"
    );
    assert!(report.contains("connector      out: ok"), "{report}");
    assert!(!report.contains("hook-s3cret"), "{report}");
    assert_eq!(
        env.db.count("SELECT count(*) FROM department"),
        0,
        "check changes nothing"
    );

    env.run_ok(&["install-triggers"], 0);
    let receiver = Receiver::start(|_| (200, None));
    env.connector(
        "hook",
        &format!(
            "subscribe = [\"*.*\"]\n[sink]\ntype = \"http\"\nurl = \"{}\"\nsecret = \"k\"",
            receiver.url
        ),
    );
    let out = env.run_ok(&["check", "--database"], 0);
    assert!(
        stdout(&out).contains("tables         ok"),
        "{}",
        stdout(&out)
    );
    assert!(receiver.requests().is_empty(), "check sends nothing");

    // A configuration that no longer matches the installed triggers.
    let config = std::fs::read_to_string(env.config_path()).unwrap();
    let narrowed = config.replacen(
        "name = \"Employee\"",
        "name = \"Employee\"\nverbs = [\"Create\"]",
        1,
    );
    std::fs::write(env.config_path(), narrowed).unwrap();
    let out = env.run_ok(&["check", "--database"], 1);
    let report = stdout(&out);
    assert!(
        trigger_line(&report, "Employee").contains(": stale:"),
        "{report}"
    );

    std::fs::write(
        env.config_path(),
        config.replace("[poll]\n", "[poll]\nbatchsize = 1\n"),
    )
    .unwrap();
    let out = env.run_ok(&["check"], 2);
    assert!(stderr(&out).contains("trigpoll.toml:"), "{}", stderr(&out));
}
