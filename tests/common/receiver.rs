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
/// a status and optional `Retry-After` seconds.
pub type Script = dyn Fn(usize) -> (u16, Option<u64>) + Send + Sync;

pub struct Receiver {
    pub url: String,
    pub received: Arc<Mutex<Vec<Received>>>,
    server: Arc<tiny_http::Server>,
    threads: Vec<JoinHandle<()>>,
}

impl Receiver {
    pub fn start(script: impl Fn(usize) -> (u16, Option<u64>) + Send + Sync + 'static) -> Self {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
        let port = server.server_addr().to_ip().unwrap().port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let script: Arc<Script> = Arc::new(script);
        let threads = (0..8)
            .map(|_| {
                let server = Arc::clone(&server);
                let received = Arc::clone(&received);
                let script = Arc::clone(&script);
                std::thread::spawn(move || {
                    while let Ok(mut request) = server.recv() {
                        let mut body = String::new();
                        request.as_reader().read_to_string(&mut body).unwrap();
                        let headers = request
                            .headers()
                            .iter()
                            .map(|h| (h.field.to_string(), h.value.to_string()))
                            .collect();
                        // Numbering and recording under one lock keeps arrival order.
                        let mut log = received.lock().unwrap();
                        let (status, retry_after) = script(log.len());
                        log.push(Received {
                            body,
                            headers,
                            answered: status,
                        });
                        drop(log);
                        let mut response =
                            tiny_http::Response::from_string("ok").with_status_code(status);
                        if let Some(secs) = retry_after {
                            response.add_header(
                                tiny_http::Header::from_bytes("Retry-After", secs.to_string())
                                    .unwrap(),
                            );
                        }
                        let _ = request.respond(response);
                    }
                })
            })
            .collect();
        Receiver {
            url: format!("http://127.0.0.1:{port}/events"),
            received,
            server,
            threads,
        }
    }

    pub fn requests(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.unblock();
        for _ in 1..self.threads.len() {
            self.server.unblock();
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
