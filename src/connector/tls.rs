//! What the TLS connectors (http, nats, amqp, redis) trust: the certificate authorities of the
//! connector's `ca_file` when it names one, as `sslrootcert`/`ssl-ca` do for the database; else
//! the system's certificate store (where `SSL_CERT_FILE` or `SSL_CERT_DIR` point, when set), and
//! the Mozilla list built into trigpoll only when the system has none (a minimal container), so
//! that a receiver with a public certificate is reached everywhere while a CA the system
//! removed is not brought back.
//!
//! All four run on rustls; the databases keep the system's OpenSSL (README, *TLS to receivers and
//! brokers*, says why).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::CertificateDer;

/// The certificate authorities a connector trusts.
#[derive(Debug)]
pub struct Roots {
    /// Those rustls can use as trust anchors; the others are left out.
    certs: Vec<CertificateDer<'static>>,
    config: Arc<ClientConfig>,
}

impl Roots {
    /// The roots for `ca_file` (or the system's), read once per process and file: reading the
    /// system's store takes tens of milliseconds.
    pub fn load(ca_file: Option<&Path>) -> Result<Arc<Roots>, String> {
        static LOADED: Mutex<Vec<(Option<PathBuf>, Arc<Roots>)>> = Mutex::new(Vec::new());
        let key = ca_file.map(Path::to_path_buf);
        let mut loaded = LOADED.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, roots)) = loaded.iter().find(|(k, _)| *k == key) {
            return Ok(Arc::clone(roots));
        }
        let certs = match ca_file {
            Some(path) => crate::config::read_ca_file(path)?,
            None => system_or_built_in(),
        };
        let roots = Arc::new(Roots::new(certs)?);
        loaded.push((key, Arc::clone(&roots)));
        Ok(roots)
    }

    fn new(certs: Vec<CertificateDer<'static>>) -> Result<Roots, String> {
        let mut store = RootCertStore::empty();
        let certs: Vec<_> = certs
            .into_iter()
            .filter(|cert| store.add(cert.clone()).is_ok())
            .collect();
        if certs.is_empty() {
            return Err("no certificate in it can be a certificate authority".into());
        }
        let config =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .map_err(|e| e.to_string())?
                .with_root_certificates(store)
                .with_no_client_auth();
        Ok(Roots {
            certs,
            config: Arc::new(config),
        })
    }

    /// A rustls client configuration that trusts these roots.
    pub fn client_config(&self) -> Arc<ClientConfig> {
        Arc::clone(&self.config)
    }

    /// The roots as PEM text, for clients that take them so (redis).
    pub fn pem(&self) -> Vec<u8> {
        use base64::Engine;
        let mut pem = String::new();
        for cert in &self.certs {
            let encoded = base64::engine::general_purpose::STANDARD.encode(cert.as_ref());
            pem.push_str("-----BEGIN CERTIFICATE-----\n");
            for line in encoded.as_bytes().chunks(64) {
                pem.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
                pem.push('\n');
            }
            pem.push_str("-----END CERTIFICATE-----\n");
        }
        pem.into_bytes()
    }
}

/// The system's certificate authorities, or the built-in Mozilla list when it has none.
fn system_or_built_in() -> Vec<CertificateDer<'static>> {
    let found = rustls_native_certs::load_native_certs();
    for error in &found.errors {
        tracing::debug!(%error, "could not read part of the system's certificate store");
    }
    match found.certs.is_empty() {
        false => found.certs,
        true => {
            tracing::debug!("the system has no certificate store: trusting the built-in list");
            webpki_root_certs::TLS_SERVER_ROOT_CERTS.to_vec()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_roots_round_trip_through_pem() {
        let roots = Roots::new(webpki_root_certs::TLS_SERVER_ROOT_CERTS.to_vec()).unwrap();
        assert!(roots.certs.len() > 100);
        use rustls_pki_types::pem::PemObject;
        let parsed: Vec<CertificateDer> = CertificateDer::pem_slice_iter(&roots.pem())
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(parsed, roots.certs);
    }

    #[test]
    fn a_file_without_certificates_is_refused_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty.pem");
        std::fs::write(&path, "no certificate here\n").unwrap();
        let message = Roots::load(Some(&path)).unwrap_err();
        assert!(message.contains("empty.pem"), "{message}");
        let missing = Roots::load(Some(&dir.path().join("missing.pem"))).unwrap_err();
        assert!(missing.contains("missing.pem: "), "{missing}");
    }
}
