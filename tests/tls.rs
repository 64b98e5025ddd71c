//! TLS to the database, against servers that accept encrypted connections only (started by
//! scripts/test.sh: TRIGPOLL_TEST_PG_TLS_URL, TRIGPOLL_TEST_MYSQL_TLS_URL, with a certificate
//! for `localhost` signed by the certificate authority in TRIGPOLL_TEST_TLS_CA).

mod common;
// For its sample schema only.
#[allow(dead_code)]
mod conformance;

use std::path::PathBuf;

use common::{stderr, with_host, with_query, Backend, Env, TestDb};

/// The TLS-only server of `backend`, its URL in `variable`, and the CA that signed it.
fn tls_env(backend: Backend, variable: &str, query: &str) -> Option<(Env, PathBuf)> {
    let server = match std::env::var(variable) {
        Ok(url) => url,
        Err(e) => return common::unreachable(variable, e),
    };
    let ca = match std::env::var("TRIGPOLL_TEST_TLS_CA") {
        Ok(ca) => PathBuf::from(ca),
        Err(e) => return common::unreachable("TRIGPOLL_TEST_TLS_CA", e),
    };
    let db = TestDb::on(backend, with_query(&server, query), variable)?;
    let env = Env::with(db)?;
    env.db.execute(conformance::HR);
    env.config("", conformance::HR_OBJECTS);
    env.file_connector("out");
    Some((env, ca))
}

/// A certificate authority that signed nothing the servers use.
fn other_ca(env: &Env) -> PathBuf {
    let dir = env.path("other-ca");
    std::fs::create_dir_all(&dir).unwrap();
    let status = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=not the test CA", "-keyout"])
        .arg(dir.join("ca.key"))
        .arg("-out")
        .arg(dir.join("ca.pem"))
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl");
    assert!(status.success());
    dir.join("ca.pem")
}

/// Runs `status` with the database URL replaced; returns its exit code and stderr.
fn status_with(env: &Env, url: &str) -> (i32, String) {
    env.config_with_url(url, "", conformance::HR_OBJECTS);
    let out = env.run(&["status"]);
    (out.status.code().unwrap_or(-1), stderr(&out))
}

/// A password in the URL must never show: the server trusts everyone, so any will do.
fn with_password(url: &str) -> String {
    url.replacen("@", ":tls-s3cret@", 1)
}

#[test]
fn postgres_over_tls_with_each_sslmode() {
    let Some((env, ca)) = tls_env(
        Backend::Postgres,
        "TRIGPOLL_TEST_PG_TLS_URL",
        "sslmode=require",
    ) else {
        return;
    };
    let url = with_password(&env.db.url);
    let ca = ca.display().to_string();
    // `require` encrypts without checking the certificate (its CA is not the system's).
    env.config_with_url(&url, "", conformance::HR_OBJECTS);
    env.run_ok(&["install-triggers"], 0);
    env.db.execute("INSERT INTO department VALUES (1, 'a')");
    env.run_ok(&["drain"], 0);
    assert_eq!(common::lines(&env.path("out.ndjson")).len(), 1);
    assert_eq!(
        env.db
            .scalar("SELECT ssl::text FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .as_deref(),
        Some("true")
    );

    let ok = [
        // The default, prefer, tries TLS first.
        with_query(&url, ""),
        with_query(&url, &format!("sslmode=verify-full&sslrootcert={ca}")),
        // verify-ca checks the chain but not the host name.
        with_host(
            &with_query(&url, &format!("sslmode=verify-ca&sslrootcert={ca}")),
            "127.0.0.1",
        ),
    ];
    for url in &ok {
        let (code, err) = status_with(&env, url);
        assert_eq!(code, 0, "{url}: {err}");
    }

    let wrong_ca = other_ca(&env).display().to_string();
    let failing = [
        (
            with_host(
                &with_query(&url, &format!("sslmode=verify-full&sslrootcert={ca}")),
                "127.0.0.1",
            ),
            "certificate",
        ),
        (
            with_query(&url, &format!("sslmode=verify-ca&sslrootcert={wrong_ca}")),
            "certificate verify failed",
        ),
        (
            with_query(&url, "sslmode=disable"),
            "the server accepts encrypted connections only",
        ),
    ];
    for (url, reason) in &failing {
        let (code, err) = status_with(&env, url);
        assert_eq!(code, 1, "{url}: {err}");
        assert!(err.contains("cannot connect to PostgreSQL"), "{err}");
        assert!(err.contains(reason), "{url}: {err}");
        assert!(!err.contains("tls-s3cret"), "{err}");
    }

    let refused = [
        (
            with_query(&url, "sslmode=sometimes"),
            "sslmode=\"sometimes\"",
        ),
        (
            with_query(&url, "sslmode=verify-ca&sslrootcert=/nonexistent/ca.pem"),
            "sslrootcert /nonexistent/ca.pem: cannot read",
        ),
    ];
    for (url, reason) in &refused {
        let (code, err) = status_with(&env, url);
        assert_eq!(code, 2, "{url}: {err}");
        assert!(err.contains(reason), "{err}");
        assert!(!err.contains("tls-s3cret"), "{err}");
    }
}

#[test]
fn mysql_over_tls_with_each_ssl_mode() {
    let Some((env, ca)) = tls_env(
        Backend::Mysql,
        "TRIGPOLL_TEST_MYSQL_TLS_URL",
        "ssl-mode=REQUIRED",
    ) else {
        return;
    };
    let url = env.db.url.clone();
    let ca = ca.display().to_string();
    env.run_ok(&["install-triggers"], 0);
    env.db.execute("INSERT INTO department VALUES (1, 'a')");
    env.run_ok(&["drain"], 0);
    assert_eq!(common::lines(&env.path("out.ndjson")).len(), 1);

    let ok = [
        // The default, PREFERRED, uses TLS when the server has it.
        with_query(&url, ""),
        with_query(&url, &format!("ssl-mode=VERIFY_IDENTITY&ssl-ca={ca}")),
        // ssl-ca alone means VERIFY_CA, which does not check the host name.
        with_host(&with_query(&url, &format!("ssl-ca={ca}")), "127.0.0.1"),
    ];
    for url in &ok {
        let (code, err) = status_with(&env, url);
        assert_eq!(code, 0, "{url}: {err}");
    }

    let wrong_ca = other_ca(&env).display().to_string();
    let failing = [
        (
            with_host(
                &with_query(&url, &format!("ssl-mode=VERIFY_IDENTITY&ssl-ca={ca}")),
                "127.0.0.1",
            ),
            "certificate verify failed",
        ),
        (
            with_query(&url, &format!("ssl-mode=verify_ca&ssl-ca={wrong_ca}")),
            "certificate verify failed",
        ),
        (
            with_query(&url, "ssl-mode=DISABLED"),
            "a server that requires secure transport refuses plaintext connections",
        ),
    ];
    for (url, reason) in &failing {
        let (code, err) = status_with(&env, url);
        assert_eq!(code, 1, "{url}: {err}");
        assert!(err.contains("cannot connect to MySQL"), "{url}: {err}");
        assert!(err.contains(reason), "{url}: {err}");
    }

    let (code, err) = status_with(&env, &with_query(&url, "ssl-mode=SOMETIMES"));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("ssl-mode=\"SOMETIMES\" is not one of"),
        "{err}"
    );
}
