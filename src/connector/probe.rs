//! Whether a connector's receiver can be reached, for `check --database`: a connection attempt
//! to each network endpoint a sink delivers to, nothing sent. A sink that talks to the network
//! names its endpoints in [`endpoints`]; the rest of the check is the same for every sink.

use std::net::{TcpStream, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;

use crate::config::SinkConfig;

/// What a probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reach {
    /// Every endpoint accepted a connection, or the local target is there: what was checked.
    Ok(String),
    /// Why the receiver cannot be reached. Never holds a URL's credentials or path.
    Unreachable(String),
}

/// A host and port a sink connects to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// The network endpoints of a sink (none for local sinks), or why its address is unusable.
pub fn endpoints(sink: &SinkConfig) -> Result<Vec<Endpoint>, String> {
    match sink {
        SinkConfig::Stdout | SinkConfig::File { .. } => Ok(Vec::new()),
        SinkConfig::Http(http) => Ok(vec![endpoint(&http.url, "sink.url")?]),
        // A NATS URL may list several servers: each is checked, a member down is worth knowing.
        SinkConfig::Nats(nats) => nats
            .url
            .expose()
            .split(',')
            .map(|url| endpoint(url.trim(), "sink.url"))
            .collect(),
        SinkConfig::Amqp(amqp) => Ok(vec![endpoint(amqp.url.expose(), "sink.url")?]),
        SinkConfig::Redis(redis) => Ok(vec![endpoint(redis.url.expose(), "sink.url")?]),
    }
}

/// The host and port of a URL, the scheme's usual port when it has none. Errors never echo
/// the URL: it may carry credentials.
fn endpoint(url: &str, key: &str) -> Result<Endpoint, String> {
    let url = url::Url::parse(url).map_err(|e| format!("{key}: {e}"))?;
    let host = url.host_str().ok_or_else(|| format!("{key} has no host"))?;
    let port = url
        .port_or_known_default()
        .or(match url.scheme() {
            "nats" | "tls" => Some(4222),
            "amqp" => Some(5672),
            "amqps" => Some(5671),
            "redis" | "rediss" => Some(6379),
            _ => None,
        })
        .ok_or_else(|| format!("{key} has no port"))?;
    Ok(Endpoint {
        host: host.trim_matches(['[', ']']).to_string(),
        port,
    })
}

/// Tries to reach a sink's receiver, waiting at most `timeout` per address.
pub fn probe(sink: &SinkConfig, timeout: Duration) -> Reach {
    if let SinkConfig::File { path } = sink {
        let folder = path.parent().unwrap_or_else(|| Path::new("."));
        // `connectors/../out.ndjson` reads better as the folder it is.
        let folder = folder
            .canonicalize()
            .unwrap_or_else(|_| folder.to_path_buf());
        return match folder.is_dir() {
            true => Reach::Ok(format!("folder {} exists", folder.display())),
            false => Reach::Unreachable(format!("folder {} does not exist", folder.display())),
        };
    }
    let endpoints = match endpoints(sink) {
        Ok(e) => e,
        Err(reason) => return Reach::Unreachable(reason),
    };
    if endpoints.is_empty() {
        return Reach::Ok("nothing to reach".into());
    }
    for endpoint in &endpoints {
        if let Err(reason) = connect(endpoint, timeout) {
            return Reach::Unreachable(format!("cannot connect to {endpoint}: {reason}"));
        }
    }
    let names: Vec<String> = endpoints.iter().map(Endpoint::to_string).collect();
    Reach::Ok(format!("{} accepts connections", names.join(", ")))
}

/// A TCP connection to any of the endpoint's addresses, closed at once.
fn connect(endpoint: &Endpoint, timeout: Duration) -> Result<(), String> {
    let addresses = (endpoint.host.as_str(), endpoint.port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {}: {e}", endpoint.host))?;
    let mut last = "no address".to_string();
    for address in addresses {
        match TcpStream::connect_timeout(&address, timeout) {
            Ok(_) => return Ok(()),
            Err(e) => last = e.to_string(),
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{HttpSinkConfig, RedisSinkConfig, Secret, Signature};

    fn http(url: &str) -> SinkConfig {
        SinkConfig::Http(HttpSinkConfig {
            url: url.into(),
            client_id: "c".into(),
            secrets: vec![Secret::new("s")],
            signature: Signature::Trigpoll,
            timeout: Duration::from_secs(1),
            concurrency: 1,
            batch_size: 1,
            ca_file: None,
        })
    }

    #[test]
    fn http_urls_give_host_and_default_port() {
        let endpoint = |url: &str| endpoints(&http(url)).unwrap().remove(0).to_string();
        assert_eq!(
            endpoint("https://user:pw@hooks.example.com/x?y"),
            "hooks.example.com:443"
        );
        assert_eq!(
            endpoint("http://hooks.example.com/x"),
            "hooks.example.com:80"
        );
        assert_eq!(endpoint("http://[::1]:8080/x"), "[::1]:8080");
    }

    #[test]
    fn broker_urls_give_host_and_default_port() {
        let redis = SinkConfig::Redis(RedisSinkConfig {
            url: Secret::new("rediss://:pw@cache.example.com/0"),
            stream: crate::config::Template::parse("s").unwrap(),
            maxlen: None,
            timeout: Duration::from_secs(1),
            ca_file: None,
        });
        let found: Vec<String> = endpoints(&redis)
            .unwrap()
            .iter()
            .map(Endpoint::to_string)
            .collect();
        assert_eq!(found, ["cache.example.com:6379"]);
        let nats = SinkConfig::Nats(crate::config::NatsSinkConfig {
            url: Secret::new("nats://u:pw@a.example.com, tls://b.example.com:4333"),
            subject: crate::config::Template::parse("s").unwrap(),
            stream: None,
            duplicate_window: Duration::from_secs(60),
            timeout: Duration::from_secs(1),
            ca_file: None,
        });
        let found: Vec<String> = endpoints(&nats)
            .unwrap()
            .iter()
            .map(Endpoint::to_string)
            .collect();
        assert_eq!(found, ["a.example.com:4222", "b.example.com:4333"]);
    }

    #[test]
    fn a_listening_port_is_reachable_and_a_closed_one_is_not() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        assert!(matches!(
            probe(
                &http(&format!("http://127.0.0.1:{port}/hook")),
                Duration::from_secs(2)
            ),
            Reach::Ok(_)
        ));
        // A socket bound to a port but not listening holds it closed: no other test can take
        // the port while this one probes it, and a connection to it is refused.
        let closed =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        let any: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
        closed.bind(&any.into()).unwrap();
        let port = closed.local_addr().unwrap().as_socket().unwrap().port();
        match probe(
            &http(&format!("http://127.0.0.1:{port}/hook")),
            Duration::from_secs(2),
        ) {
            Reach::Unreachable(reason) => {
                assert!(
                    reason.starts_with(&format!("cannot connect to 127.0.0.1:{port}")),
                    "{reason}"
                )
            }
            other => panic!("{other:?}"),
        }
    }
}
