//! TLS to the database, configured in the URL as each database's own client does it.
//!
//! PostgreSQL takes libpq's `sslmode` and `sslrootcert`:
//!
//! | `sslmode` | encrypted | certificate checked |
//! |---|---|---|
//! | `disable` | never | — |
//! | `prefer` (default) | when the server offers TLS, else plaintext | no |
//! | `require` | always | no (as libpq: with `sslrootcert`, the chain, as `verify-ca`) |
//! | `verify-ca` | always | the chain, against `sslrootcert` |
//! | `verify-full` | always | the chain and the host name |
//!
//! MySQL/MariaDB take the MySQL client's `ssl-mode` (`DISABLED`, `PREFERRED` — the default,
//! `REQUIRED`, `VERIFY_CA`, `VERIFY_IDENTITY`, in any case) and `ssl-ca`, with the same
//! meanings; as with the MySQL client, `ssl-ca` without `ssl-mode` means `VERIFY_CA`.
//!
//! Without `sslrootcert`/`ssl-ca`, the verifying modes check against the system's trusted
//! certificate authorities; with it, against the authorities of that file only.
//!
//! Both parameters are taken out of the URL before the driver reads it (the drivers refuse what
//! they do not know). Messages never echo the URL: it may hold a password.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::SystemTime;

use crate::store::StoreError;

/// How a connection is encrypted and what of the server's certificate is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

/// A database URL with its TLS parameters taken out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsUrl {
    /// The URL without the TLS parameters, for the driver.
    pub url: String,
    pub mode: Mode,
    /// The certificate authorities to trust (PEM), instead of the system's.
    pub root_cert: Option<PathBuf>,
}

impl TlsUrl {
    /// Reads `sslmode` and `sslrootcert` from a PostgreSQL URL.
    pub fn postgres(url: &str) -> Result<TlsUrl, StoreError> {
        let (url, params) = take_params(url, &["sslmode", "sslrootcert"])?;
        let root_cert = params[1].clone().map(PathBuf::from);
        let mode = match params[0].as_deref() {
            None | Some("prefer") => Mode::Prefer,
            Some("disable") => Mode::Disable,
            // libpq checks the chain in `require` mode too when a root certificate is given.
            Some("require") if root_cert.is_some() => Mode::VerifyCa,
            Some("require") => Mode::Require,
            Some("verify-ca") => Mode::VerifyCa,
            Some("verify-full") => Mode::VerifyFull,
            Some(other) => {
                return Err(StoreError::Invalid(format!(
                    "database.url: sslmode={other:?} is not one of disable, prefer, require, \
                     verify-ca, verify-full"
                )))
            }
        };
        Ok(TlsUrl {
            url,
            mode,
            root_cert,
        })
    }

    /// Reads `ssl-mode` and `ssl-ca` from a MySQL URL.
    pub fn mysql(url: &str) -> Result<TlsUrl, StoreError> {
        let (url, params) = take_params(url, &["ssl-mode", "ssl-ca"])?;
        let root_cert = params[1].clone().map(PathBuf::from);
        let mode = match params[0].as_deref().map(str::to_ascii_uppercase).as_deref() {
            None if root_cert.is_some() => Mode::VerifyCa,
            None | Some("PREFERRED") => Mode::Prefer,
            Some("DISABLED") => Mode::Disable,
            Some("REQUIRED") => Mode::Require,
            Some("VERIFY_CA") => Mode::VerifyCa,
            Some("VERIFY_IDENTITY") => Mode::VerifyFull,
            Some(_) => {
                return Err(StoreError::Invalid(format!(
                    "database.url: ssl-mode={:?} is not one of DISABLED, PREFERRED, REQUIRED, \
                     VERIFY_CA, VERIFY_IDENTITY",
                    params[0].as_deref().unwrap_or_default()
                )))
            }
        };
        Ok(TlsUrl {
            url,
            mode,
            root_cert,
        })
    }

    /// The TLS connector for this mode (for `Disable` too: the driver then never uses it).
    /// Making one reads the system's certificate bundle, tens of milliseconds, so it is made
    /// once per process for each mode and root certificate file (as last modified) and shared
    /// by every connection: the poller's two, and each reconnection.
    pub fn connector(&self) -> Result<native_tls::TlsConnector, StoreError> {
        type Made = (
            (Mode, Option<(PathBuf, Option<SystemTime>)>),
            native_tls::TlsConnector,
        );
        static MADE: Mutex<Vec<Made>> = Mutex::new(Vec::new());
        let file = self.root_cert.as_ref().map(|path| {
            let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
            (path.clone(), modified)
        });
        let key = (self.mode, file);
        let made = MADE.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, connector)) = made.iter().find(|(k, _)| *k == key) {
            return Ok(connector.clone());
        }
        drop(made);
        let connector = self.make()?;
        let mut made = MADE.lock().unwrap_or_else(|e| e.into_inner());
        made.push((key, connector.clone()));
        Ok(connector)
    }

    fn make(&self) -> Result<native_tls::TlsConnector, StoreError> {
        let mut builder = native_tls::TlsConnector::builder();
        match self.mode {
            Mode::Disable | Mode::Prefer | Mode::Require => {
                builder
                    .danger_accept_invalid_certs(true)
                    .danger_accept_invalid_hostnames(true);
            }
            Mode::VerifyCa => {
                builder.danger_accept_invalid_hostnames(true);
            }
            Mode::VerifyFull => {}
        }
        if let Some(path) = self.root_cert.as_ref().filter(|_| self.verifies()) {
            for cert in self.root_certs(path)? {
                builder.add_root_certificate(cert);
            }
            builder.disable_built_in_roots(true);
        }
        builder
            .build()
            .map_err(|e| StoreError::Invalid(format!("database.url: cannot set up TLS: {e}")))
    }

    /// Whether the server's certificate is checked.
    pub fn verifies(&self) -> bool {
        matches!(self.mode, Mode::VerifyCa | Mode::VerifyFull)
    }

    fn root_certs(&self, path: &PathBuf) -> Result<Vec<native_tls::Certificate>, StoreError> {
        let name = self.root_cert_param();
        let pem = std::fs::read(path).map_err(|e| {
            StoreError::Invalid(format!(
                "database.url: {name} {}: cannot read: {e}",
                path.display()
            ))
        })?;
        match native_tls::Certificate::stack_from_pem(&pem) {
            Ok(certs) if !certs.is_empty() => Ok(certs),
            Ok(_) => Err(StoreError::Invalid(format!(
                "database.url: {name} {}: no PEM certificate in it",
                path.display()
            ))),
            Err(e) => Err(StoreError::Invalid(format!(
                "database.url: {name} {}: not PEM certificates: {e}",
                path.display()
            ))),
        }
    }

    fn root_cert_param(&self) -> &'static str {
        match self.url.starts_with("mysql:") {
            true => "ssl-ca",
            false => "sslrootcert",
        }
    }

    /// A hint for a connection refused by a server that only takes encrypted ones.
    pub fn hint(&self, message: &str) -> String {
        if self.mode != Mode::Disable {
            return message.to_string();
        }
        let mysql = self.url.starts_with("mysql:");
        if mysql && (message.contains("insecure transport") || message.contains("error 1045")) {
            // MariaDB refuses a plaintext connection under require_secure_transport as if the
            // password were wrong.
            format!(
                "{message} (with ssl-mode=DISABLED: a server that requires secure transport \
                 refuses plaintext connections, MariaDB as access denied; use ssl-mode=REQUIRED, \
                 VERIFY_CA or VERIFY_IDENTITY in database.url)"
            )
        } else if !mysql && message.contains("no encryption") {
            format!(
                "{message} (the server accepts encrypted connections only: use sslmode=require, \
                 verify-ca or verify-full in database.url)"
            )
        } else {
            message.to_string()
        }
    }
}

/// Takes the named query parameters out of a URL (percent-decoded; the last one counts when
/// one is repeated) and returns the URL without them.
fn take_params(url: &str, names: &[&str]) -> Result<(String, Vec<Option<String>>), StoreError> {
    let mut found = vec![None; names.len()];
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_string(), found));
    };
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match names.iter().position(|n| *n == key) {
            Some(i) => {
                let decoded = percent_decode(value).ok_or_else(|| {
                    StoreError::Invalid(format!(
                        "database.url: {key} is not valid percent-encoding"
                    ))
                })?;
                found[i] = Some(decoded);
            }
            None => kept.push(pair),
        }
    }
    let url = match kept.is_empty() {
        true => base.to_string(),
        false => format!("{base}?{}", kept.join("&")),
    };
    Ok((url, found))
}

/// Decodes `%XX` escapes only, as libpq and the MySQL client do: a `+` stays a `+` (it means a
/// space in HTML forms, not in URLs), so `sslrootcert=/etc/ssl/a+b.pem` names that file. `None`
/// for a `%` without two hex digits after it, or text that is not UTF-8 once decoded.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let escapes_whole = bytes.iter().enumerate().all(|(i, &b)| {
        b != b'%'
            || bytes
                .get(i + 1..i + 3)
                .is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit))
    });
    if !escapes_whole {
        return None;
    }
    percent_encoding::percent_decode_str(text)
        .decode_utf8()
        .ok()
        .map(|decoded| decoded.into_owned())
}

/// A PostgreSQL client for `url`, honouring its TLS parameters; also for tests and tools that
/// need a plain connection to the same server.
pub fn postgres_client(url: &str) -> Result<postgres::Client, StoreError> {
    let tls = TlsUrl::postgres(url)?;
    let config = tls.postgres_config()?;
    let connector = postgres_native_tls::MakeTlsConnector::new(tls.connector()?);
    config
        .connect(connector)
        .map_err(|e| StoreError::Connection(tls.hint(&e.to_string())))
}

/// MySQL driver options for `url`, honouring its TLS parameters (`PREFERRED` insists on TLS
/// here: the store falls back to plaintext itself); for tests and tools.
pub fn mysql_opts(url: &str) -> Result<mysql::Opts, StoreError> {
    let tls = TlsUrl::mysql(url)?;
    let opts = mysql::Opts::from_url(&tls.url)
        .map_err(|e| StoreError::Invalid(format!("database.url is not a MySQL URL: {e}")))?;
    Ok(mysql::OptsBuilder::from_opts(opts)
        .ssl_opts(tls.mysql_ssl_opts())
        .into())
}

impl TlsUrl {
    /// The driver's configuration: the URL, and whether TLS is off, tried or insisted on.
    pub fn postgres_config(&self) -> Result<postgres::Config, StoreError> {
        use postgres::config::SslMode;
        let mut config: postgres::Config = self.url.parse().map_err(|e| {
            StoreError::Invalid(format!("database.url is not a PostgreSQL URL: {e}"))
        })?;
        config.ssl_mode(match self.mode {
            Mode::Disable => SslMode::Disable,
            Mode::Prefer => SslMode::Prefer,
            Mode::Require | Mode::VerifyCa | Mode::VerifyFull => SslMode::Require,
        });
        Ok(config)
    }

    /// The MySQL driver's TLS options for this mode; `None` for a plaintext connection.
    pub fn mysql_ssl_opts(&self) -> Option<mysql::SslOpts> {
        let opts = mysql::SslOpts::default();
        match self.mode {
            Mode::Disable => None,
            Mode::Prefer | Mode::Require => Some(
                opts.with_danger_accept_invalid_certs(true)
                    .with_danger_skip_domain_validation(true),
            ),
            Mode::VerifyCa => Some(
                opts.with_root_cert_path(self.root_cert.clone())
                    .with_danger_skip_domain_validation(true),
            ),
            Mode::VerifyFull => Some(opts.with_root_cert_path(self.root_cert.clone())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_parameters_are_taken_out_of_the_url() {
        let tls = TlsUrl::postgres(
            "postgres://u:p@db.example.com:5432/app?sslmode=verify-full&application_name=x&sslrootcert=%2Fetc%2Fca.pem",
        )
        .unwrap();
        assert_eq!(
            tls.url,
            "postgres://u:p@db.example.com:5432/app?application_name=x"
        );
        assert_eq!(tls.mode, Mode::VerifyFull);
        assert_eq!(tls.root_cert, Some(PathBuf::from("/etc/ca.pem")));
        let plain = TlsUrl::postgres("postgres://u@h/db").unwrap();
        assert_eq!(
            (plain.url.as_str(), plain.mode),
            ("postgres://u@h/db", Mode::Prefer)
        );
        let modes = [
            ("disable", Mode::Disable),
            ("prefer", Mode::Prefer),
            ("require", Mode::Require),
            ("verify-ca", Mode::VerifyCa),
        ];
        for (text, mode) in modes {
            let url = format!("postgres://h/db?sslmode={text}");
            assert_eq!(TlsUrl::postgres(&url).unwrap().mode, mode, "{text}");
        }
        let required = TlsUrl::postgres("postgres://h/db?sslmode=require&sslrootcert=ca.pem");
        assert_eq!(required.unwrap().mode, Mode::VerifyCa, "as libpq");
    }

    #[test]
    fn mysql_parameters_are_taken_out_of_the_url() {
        let tls =
            TlsUrl::mysql("mysql://u:p@h:3306/db?ssl-mode=verify_identity&ssl-ca=/ca.pem").unwrap();
        assert_eq!(tls.url, "mysql://u:p@h:3306/db");
        assert_eq!(tls.mode, Mode::VerifyFull);
        assert_eq!(tls.root_cert, Some(PathBuf::from("/ca.pem")));
        let modes = [
            ("DISABLED", Mode::Disable),
            ("PREFERRED", Mode::Prefer),
            ("REQUIRED", Mode::Require),
            ("VERIFY_CA", Mode::VerifyCa),
        ];
        for (text, mode) in modes {
            let url = format!("mysql://h/db?prefer_socket=false&ssl-mode={text}");
            let tls = TlsUrl::mysql(&url).unwrap();
            assert_eq!(tls.mode, mode, "{text}");
            assert_eq!(tls.url, "mysql://h/db?prefer_socket=false");
        }
        assert_eq!(TlsUrl::mysql("mysql://h/db").unwrap().mode, Mode::Prefer);
        let ca_only = TlsUrl::mysql("mysql://h/db?ssl-ca=/ca.pem").unwrap();
        assert_eq!(ca_only.mode, Mode::VerifyCa, "as the MySQL client");
    }

    #[test]
    fn only_percent_escapes_are_decoded() {
        let tls = TlsUrl::postgres("postgres://h/db?sslrootcert=/etc/ssl/a+b%20c%2B.pem").unwrap();
        assert_eq!(tls.root_cert, Some(PathBuf::from("/etc/ssl/a+b c+.pem")));
        let tls = TlsUrl::mysql("mysql://h/db?ssl-ca=/etc/ssl/a+b.pem").unwrap();
        assert_eq!(tls.root_cert, Some(PathBuf::from("/etc/ssl/a+b.pem")));
        for bad in ["%2", "%zz", "a%", "%ff"] {
            let url = format!("postgres://h/db?sslrootcert={bad}");
            let message = TlsUrl::postgres(&url).unwrap_err().to_string();
            assert!(
                message.contains("not valid percent-encoding"),
                "{bad}: {message}"
            );
        }
    }

    #[test]
    fn unknown_modes_are_refused_without_echoing_the_url() {
        for message in [
            TlsUrl::postgres("postgres://u:secret@h/db?sslmode=allow").unwrap_err(),
            TlsUrl::mysql("mysql://u:secret@h/db?ssl-mode=sometimes").unwrap_err(),
        ]
        .map(|e| e.to_string())
        {
            assert!(message.contains("is not one of"), "{message}");
            assert!(!message.contains("secret"), "{message}");
        }
    }

    #[test]
    fn an_unreadable_root_certificate_is_named() {
        let tls =
            TlsUrl::postgres("postgres://h/db?sslmode=verify-ca&sslrootcert=/nonexistent/ca.pem")
                .unwrap();
        let message = tls.connector().unwrap_err().to_string();
        assert!(
            message.contains("sslrootcert /nonexistent/ca.pem: cannot read"),
            "{message}"
        );
    }
}
