//! A claim is a lease. The batches a poller holds (the one it delivers and the one claimed
//! ahead) are renewed from a connection of their own while they are worked on, so that a batch
//! that outlives `claim_timeout` (a slow receiver, a long retry) stays this poller's; and one
//! whose lease may have run out (the database unreachable from here, the process stalled) is
//! given up before another poller, which may have taken it, delivers it too (README,
//! *Guarantees*).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::store::{EventStore, StoreError};

/// The batches a poller holds, and when each was last known to be held.
pub struct Lease {
    timeout: Duration,
    batches: Mutex<Vec<Held>>,
    next: AtomicU64,
    /// Set when the batch being delivered may no longer be held: its connectors give up what
    /// they still wait for, and no new delivery starts.
    abandon: Arc<AtomicBool>,
}

struct Held {
    batch: u64,
    ids: Vec<i64>,
    /// When the last renewal that found every event still held was sent (or the claim made):
    /// the lease runs at least `timeout` from then.
    renewed: Instant,
    delivering: bool,
}

impl Lease {
    /// Leases of `timeout` (`claim_timeout`); `abandon` is what the connectors watch.
    pub fn new(timeout: Duration, abandon: Arc<AtomicBool>) -> Arc<Lease> {
        Arc::new(Lease {
            timeout,
            batches: Mutex::new(Vec::new()),
            next: AtomicU64::new(0),
            abandon,
        })
    }

    fn batches(&self) -> std::sync::MutexGuard<'_, Vec<Held>> {
        self.batches.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A batch claimed at `claimed` (taken before the claim was sent): its handle.
    pub fn hold(&self, ids: Vec<i64>, claimed: Instant) -> u64 {
        let batch = self.next.fetch_add(1, Ordering::Relaxed);
        self.batches().push(Held {
            batch,
            ids,
            renewed: claimed,
            delivering: false,
        });
        batch
    }

    /// The batch is no longer held (finished, or given back).
    pub fn release(&self, batch: u64) {
        self.batches().retain(|h| h.batch != batch);
    }

    /// Whether the batch is surely still held: renewed less than three quarters of the lease
    /// ago, a margin for the time a delivery takes to start and the clocks' rates.
    pub fn fresh(&self, batch: u64) -> bool {
        let margin = self.timeout * 3 / 4;
        self.batches()
            .iter()
            .any(|h| h.batch == batch && h.renewed.elapsed() < margin)
    }

    /// Whether the batch is still held (not finished nor given back).
    pub fn holds(&self, batch: u64) -> bool {
        self.batches().iter().any(|h| h.batch == batch)
    }

    /// Every batch was given back.
    pub fn release_all(&self) {
        self.batches().clear();
    }

    /// The batch's deliveries start: it is watched from now on.
    pub fn delivering(&self, batch: u64) {
        for h in self.batches().iter_mut().filter(|h| h.batch == batch) {
            h.delivering = true;
        }
    }

    /// The batches due for renewal (renewed a quarter of the lease ago or more) with their
    /// events, copied: the lock is not held while the database is asked.
    fn due(&self) -> Vec<(u64, Vec<i64>)> {
        let quarter = self.timeout / 4;
        self.batches()
            .iter()
            .filter(|h| h.renewed.elapsed() >= quarter)
            .map(|h| (h.batch, h.ids.clone()))
            .collect()
    }

    fn renewed(&self, batch: u64, at: Instant) {
        for h in self.batches().iter_mut().filter(|h| h.batch == batch) {
            h.renewed = h.renewed.max(at);
        }
    }

    /// Gives up the batch being delivered when its lease may have run out.
    fn watch(&self) {
        let margin = self.timeout * 3 / 4;
        if self
            .batches()
            .iter()
            .any(|h| h.delivering && h.renewed.elapsed() >= margin)
        {
            self.abandon.store(true, Ordering::SeqCst);
        }
    }
}

/// Renews the leases from its own connection until dropped.
pub struct Keeper {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Keeper {
    /// Renews what `lease` holds on `store` (a connection of its own with the poller's claim
    /// token) every quarter of the lease, and watches the batch being delivered.
    pub fn start(lease: Arc<Lease>, mut store: Box<dyn EventStore>) -> std::io::Result<Keeper> {
        let (stop, stopped) = mpsc::channel::<()>();
        let tick = (lease.timeout / 8).clamp(Duration::from_millis(20), Duration::from_secs(5));
        let thread = std::thread::Builder::new()
            .name("trigpoll-lease".into())
            .spawn(move || {
                let mut lost = false;
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(tick) {
                    for (batch, ids) in lease.due() {
                        let sent = Instant::now();
                        let renewed = match lost {
                            true => store.reconnect().and_then(|()| store.renew_claims(&ids)),
                            false => store.renew_claims(&ids),
                        };
                        lost = matches!(renewed, Err(StoreError::Connection(_)));
                        match renewed {
                            Ok(n) if n as usize == ids.len() => lease.renewed(batch, sent),
                            // Taken over by another poller once expired: not renewed, the
                            // batch's lease runs out. (One finished while this ran is gone.)
                            Ok(n) if lease.holds(batch) => tracing::warn!(
                                events = ids.len(),
                                still_held = n,
                                "a batch's claim ran out before it was renewed"
                            ),
                            Ok(_) => {}
                            Err(e) => tracing::debug!(error = %e, "could not renew claims"),
                        }
                    }
                    lease.watch();
                }
            })?;
        Ok(Keeper {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Keeper {
    fn drop(&mut self) {
        self.stop = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
