//! systemd's service notification protocol (sd_notify(3)) for `poll` run as a `Type=notify`
//! service: READY, STATUS, WATCHDOG, RELOADING and STOPPING. Nothing is sent unless the service
//! manager set `NOTIFY_SOCKET` (a socket file, or with a leading `@` an abstract socket).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use libsystemd::daemon::{self, NotifyState};

/// Where notifications go: nowhere without `NOTIFY_SOCKET`.
#[derive(Clone, Copy)]
pub struct Notifier {
    enabled: bool,
}

/// A failed notification is worth one warning, not one per watchdog ping.
static WARNED: AtomicBool = AtomicBool::new(false);

impl Notifier {
    pub fn from_env() -> Notifier {
        Notifier {
            enabled: std::env::var_os("NOTIFY_SOCKET").is_some(),
        }
    }

    fn send(&self, states: &[NotifyState]) {
        if !self.enabled {
            return;
        }
        if let Err(e) = daemon::notify(false, states) {
            match WARNED.swap(true, Ordering::Relaxed) {
                false => tracing::warn!(error = %e, "could not notify the service manager"),
                true => tracing::debug!(error = %e, "could not notify the service manager"),
            }
        }
    }

    /// The process is stopping: sent once, as soon as SIGTERM or SIGINT is seen (by the thread
    /// that watches for it, or by the poll loop leaving, whichever comes first).
    pub fn stopping(&self) {
        static SENT: AtomicBool = AtomicBool::new(false);
        if !SENT.swap(true, Ordering::SeqCst) {
            self.send(&[NotifyState::Stopping]);
        }
    }
}

/// What the poll loop tells the service manager: readiness, a status line, and that it is alive.
pub struct Service {
    notifier: Notifier,
    /// How often the watchdog wants a ping: half its timeout, as sd_watchdog_enabled(3) advises.
    ping_every: Option<Duration>,
    pinged: Instant,
    /// The status line, and whether it is still to be sent with the next READY=1 (while
    /// starting or reloading) rather than at once.
    status: String,
    held: bool,
}

impl Service {
    pub fn from_env() -> Service {
        let notifier = Notifier::from_env();
        Service {
            notifier,
            // WATCHDOG_USEC set for another process (WATCHDOG_PID) is not ours to answer.
            ping_every: daemon::watchdog_enabled(false)
                .filter(|_| notifier.enabled)
                .map(|timeout| timeout / 2),
            pinged: Instant::now(),
            status: "polling".to_string(),
            held: true,
        }
    }

    pub fn notifier(&self) -> Notifier {
        self.notifier
    }

    /// Whether a service manager listens.
    pub fn enabled(&self) -> bool {
        self.notifier.enabled
    }

    /// Started (connected to the database, the capture triggers checked), or reloaded.
    pub fn ready(&mut self) {
        self.notifier
            .send(&[NotifyState::Ready, NotifyState::Status(self.status.clone())]);
        self.held = false;
        self.pinged = Instant::now();
    }

    /// A new status line, sent when it differs from the last one.
    pub fn status(&mut self, status: String) {
        let status = one_line(status);
        if status != self.status {
            if !self.held {
                self.notifier.send(&[NotifyState::Status(status.clone())]);
            }
            self.status = status;
        }
    }

    /// A status line sent at once while starting (before READY=1): what the start waits for.
    /// READY=1 replaces it with the line kept by [`Service::status`].
    pub fn starting(&self, status: String) {
        self.notifier.send(&[NotifyState::Status(one_line(status))]);
    }

    /// The poll loop goes on: pings the watchdog when half its timeout has passed since the last
    /// ping. Called from the loop itself, so that a loop stuck anywhere stops pinging and the
    /// service manager restarts the process.
    pub fn alive(&mut self) {
        let Some(every) = self.ping_every else {
            return;
        };
        if self.pinged.elapsed() >= every {
            self.notifier.send(&[NotifyState::Watchdog]);
            self.pinged = Instant::now();
        }
    }

    /// A reload begins; [`Service::ready`] says it ended.
    pub fn reloading(&mut self) {
        let mut states = vec![NotifyState::Reloading];
        // systemd ties the reload to this time (required with Type=notify-reload).
        if let Ok(now) = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC) {
            let usec = now.tv_sec() as u64 * 1_000_000 + now.tv_nsec() as u64 / 1_000;
            states.push(NotifyState::Other(format!("MONOTONIC_USEC={usec}")));
        }
        self.notifier.send(&states);
        self.held = true;
    }
}

/// A status is one line of the protocol: a line break would start another assignment.
fn one_line(status: String) -> String {
    match status.contains('\n') {
        true => status.lines().collect::<Vec<_>>().join("; "),
        false => status,
    }
}

#[cfg(test)]
mod tests {
    use super::one_line;

    #[test]
    fn a_status_stays_on_one_line() {
        assert_eq!(one_line("a\nb".into()), "a; b");
        assert_eq!(one_line("a b".into()), "a b");
    }
}
