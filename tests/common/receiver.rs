//! A real HTTP receiver for tests: records every request and answers from a script.

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// One recorded request.
#[derive(Debug, Clone)]
pub struct Received {
    pub body: String,
    pub headers: Vec<(String, String)>,
    /// The status the receiver answered with.
    pub answered: u16,
    /// When it arrived.
    pub at: std::time::Instant,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap()
    }
}

/// What to answer: the n-th request (0-based, over all requests) gets `script(n)`:
/// a status and optional `Retry-After` seconds. Status 0 answers nothing: the request hangs, as
/// at a receiver that never answers.
pub type Script = dyn Fn(usize) -> (u16, Option<u64>) + Send + Sync;

pub struct Receiver {
    pub url: String,
    pub received: Arc<Mutex<Vec<Received>>>,
    addr: std::net::SocketAddr,
    stop: Arc<std::sync::atomic::AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl Receiver {
    /// Serves HTTP/1.1 with keep-alive, one thread per connection. (tiny_http 0.12 queues a
    /// connection without a thread to run it when more than four arrive at once, and its
    /// requests then wait until another connection closes: with a client that keeps its
    /// connections, until the client times out and retries.)
    pub fn start(script: impl Fn(usize) -> (u16, Option<u64>) + Send + Sync + 'static) -> Self {
        use std::sync::atomic::{AtomicBool, Ordering};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let script: Arc<Script> = Arc::new(script);
        let stop = Arc::new(AtomicBool::new(false));
        let acceptor = {
            let (received, stop) = (Arc::clone(&received), Arc::clone(&stop));
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let (received, script) = (Arc::clone(&received), Arc::clone(&script));
                    std::thread::spawn(move || serve(stream, &received, &*script));
                }
            })
        };
        Receiver {
            url: format!("http://{addr}/events"),
            received,
            addr,
            stop,
            acceptor: Some(acceptor),
        }
    }

    /// Where it listens, for a TLS front ([`super::tls::TlsFront`]).
    pub fn addr(&self) -> std::net::SocketAddr {
        self.addr
    }

    pub fn requests(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

/// Answers the requests of one connection until the client closes it.
fn serve(stream: std::net::TcpStream, received: &Mutex<Vec<Received>>, script: &Script) {
    use std::io::{BufRead, BufReader, Read, Write};
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut headers = Vec::new();
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                headers.push((name.trim().to_string(), value.trim().to_string()));
            }
        }
        let value = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        };
        let length: usize = value("Content-Length").map_or(0, |v| v.parse().unwrap());
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let close = value("Connection").is_some_and(|v| v.eq_ignore_ascii_case("close"));
        // Numbering and recording under one lock keeps arrival order.
        let mut log = received.lock().unwrap();
        let (status, retry_after) = script(log.len());
        log.push(Received {
            body: String::from_utf8(body).unwrap(),
            headers,
            answered: status,
            at: std::time::Instant::now(),
        });
        drop(log);
        if status == 0 {
            // Until the client gives up and closes the connection.
            let mut rest = Vec::new();
            let _ = reader.read_to_end(&mut rest);
            return;
        }
        let retry_after = retry_after
            .map(|secs| format!("Retry-After: {secs}\r\n"))
            .unwrap_or_default();
        let response =
            format!("HTTP/1.1 {status} Scripted\r\nContent-Length: 2\r\n{retry_after}\r\nok");
        if writer.write_all(response.as_bytes()).is_err() || close {
            return;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        // Wakes the acceptor up so that it sees `stop`.
        let _ = std::net::TcpStream::connect(self.addr);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}
