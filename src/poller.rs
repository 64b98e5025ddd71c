//! The poller: claim a batch, build business objects, deliver them, archive the outcomes.
//!
//! One batch is one claim, one bulk row fetch per object, one delivery call per connector and
//! one finishing transaction, whatever the batch size. Where the backend offers a second
//! connection, a thread claims and builds the next batch on it while the current one is
//! delivered and finished, so that the database works on both at once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::value::RawValue;
use tracing::{debug, error, info, warn};

use crate::config::{Config, Verb};
use crate::connector::{Connector, Delivery, Outcome};
use crate::dialect::{Capture, ChildCapture};
use crate::event::{ArchiveRow, Event, Hold, RetryLater, Settlement, Status};
use crate::key::{self, KeyPair};
use crate::lease::{Keeper, Lease};
use crate::metrics::{EventLabels, Metrics, Step};
use crate::payload;
use crate::store::{EventStore, Fetched, Interrupt, StoreError};
use crate::subscription::Subscription;
use crate::table::Column;

/// What the batches so far came to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Events claimed.
    pub events: u64,
    /// Deliveries that succeeded (one per event and connector).
    pub sent: u64,
    pub unsubscribed: u64,
    /// Deliveries that ended `failed`.
    pub failed: u64,
    /// Events that ended `error`.
    pub errors: u64,
    pub not_found: u64,
    /// Events put back for a later attempt.
    pub retrying: u64,
    /// Events put back untried, behind an earlier event of their key that must be retried
    /// first (not counted in `events`: they come again).
    pub held: u64,
    /// Events of `events` that this poller had put back for a retry in an earlier batch:
    /// `events - repeats` counts each event once, however often it was attempted.
    pub repeats: u64,
    /// Events given back untried because their claim may have run out (not in `events`:
    /// they come again).
    pub given_back: u64,
}

impl Tally {
    pub fn add(&mut self, other: Tally) {
        self.events += other.events;
        self.sent += other.sent;
        self.unsubscribed += other.unsubscribed;
        self.failed += other.failed;
        self.errors += other.errors;
        self.not_found += other.not_found;
        self.retrying += other.retrying;
        self.held += other.held;
        self.repeats += other.repeats;
        self.given_back += other.given_back;
    }

    /// Events processed, each counted once however often it was attempted.
    pub fn distinct_events(&self) -> u64 {
        self.events - self.repeats
    }

    /// Whether the batch claimed anything at all: when not, nothing was ready.
    pub fn claimed_any(&self) -> bool {
        self.events + self.held + self.given_back > 0
    }
}

/// A configured object: bound to its table (and children), or an outbox object.
enum Bound {
    Table(Box<Capture>),
    /// Applications write its events with the business object in `payload`.
    Outbox,
}

impl Bound {
    /// Deliver a run of `Update`s of one key in a batch once, as its last.
    fn coalesces(&self) -> bool {
        matches!(self, Bound::Table(c) if c.object.coalesce)
    }
}

/// Why the poller could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Config(String),
    #[error("cannot start the claiming thread: {0}")]
    Thread(std::io::Error),
}

pub struct Poller {
    /// Fetches rows and finishes batches; also what the commands use between batches (status,
    /// waiting).
    store: Box<dyn EventStore>,
    stopper: Stopper,
    batches: Batches,
    objects: Objects,
    connectors: Vec<Connector>,
    archive_sent: bool,
    /// The keys the last batch left waiting for a retry, and the event each waits for. A batch
    /// claimed ahead, before that one was finished, may hold later events of these keys: they
    /// are put back untried, behind it (later batches are claimed after the finish, and the
    /// event table keeps them back).
    held: HashMap<(String, String), i64>,
    /// Events held behind events deleted by hand are released once, before the first claim.
    orphans_released: bool,
    /// Events this poller put back for a retry: claimed again, they are not new events.
    retried: std::collections::HashSet<i64>,
    /// Where batches are measured, once [`Poller::set_metrics`] was called.
    metrics: Meter,
    /// How many more events the builder may claim ([`Poller::limit_claims`]).
    claims_left: Arc<AtomicU64>,
    /// The claims of the batches in hand, renewed by `_keeper` while they are worked on.
    lease: Arc<Lease>,
    _keeper: Keeper,
}

/// The metrics a poller and its claiming thread record into, when there are any.
type Meter = Arc<OnceLock<Arc<Metrics>>>;

/// Makes a poller give up what keeps it waiting, from another thread: its statements in flight
/// are cancelled, its deliveries still waiting for a receiver are given up, and it starts no new
/// step; its batch goes back to the queue, to be delivered again. For a stop that must not wait
/// for the batch in hand any longer.
#[derive(Clone)]
pub struct Stopper {
    given_up: Arc<AtomicBool>,
    /// What the connectors watch: set on a stop, and when the batch's lease may have run out.
    abandon: Arc<AtomicBool>,
    stores: Arc<Vec<Box<dyn Interrupt>>>,
}

impl Stopper {
    pub fn give_up(&self) {
        self.given_up.store(true, Ordering::SeqCst);
        self.abandon.store(true, Ordering::SeqCst);
        for store in self.stores.iter() {
            store.interrupt();
        }
    }

    fn check(&self) -> Result<(), StoreError> {
        match self.given_up.load(Ordering::SeqCst) {
            true => Err(StoreError::Stopped),
            false => Ok(()),
        }
    }

    /// A batch's deliveries start: the connectors give up only on a stop, or when the lease
    /// of this batch may run out.
    fn begin_delivery(&self) {
        self.abandon
            .store(self.given_up.load(Ordering::SeqCst), Ordering::SeqCst);
    }

    /// Whether the deliveries were given up.
    fn abandoned(&self) -> bool {
        self.abandon.load(Ordering::SeqCst)
    }
}

/// Claims batches and works out what each event needs: subscriptions, keys, captured images.
struct Builder {
    given_up: Arc<AtomicBool>,
    objects: Objects,
    /// Each connector's id and subscriptions, in the order of `Poller::connectors`.
    routes: Vec<(String, Vec<Subscription>)>,
    delimiter: String,
    batch_size: usize,
    /// `poll.linger`: how long after the start of a claim that found fewer events than a batch
    /// the next claim waits, so that an application writing all the time has its events claimed
    /// in fuller batches rather than a few at a time, each batch costing its database the same
    /// statements and commits (README, `poll`; BENCHMARKS.md, round 7).
    linger: Duration,
    /// The start of the last claim, when it claimed some events but fewer than it asked for.
    partial: Option<Instant>,
    metrics: Meter,
    claims_left: Arc<AtomicU64>,
    lease: Arc<Lease>,
}

/// The configured objects by name, shared by the poller and its builder.
type Objects = Arc<HashMap<String, Bound>>;

/// Where the next batch comes from.
enum Batches {
    /// Claimed on the poller's own connection when it is needed.
    Inline(Builder),
    /// Claimed one batch ahead on a second connection.
    Ahead(Ahead),
}

/// A claimed batch: its handle in the [`Lease`], and the work of each event.
struct Claimed {
    batch: Option<u64>,
    work: Vec<Work>,
}

type Built = Result<Claimed, StoreError>;

/// A thread that claims and builds a batch on its own connection each time it is asked to.
struct Ahead {
    requests: Option<SyncSender<()>>,
    replies: Receiver<Built>,
    /// A batch has been asked for and not yet received.
    outstanding: bool,
    /// It was asked for while the previous batch was still being processed.
    overlapped: bool,
    thread: Option<JoinHandle<()>>,
}

impl Ahead {
    fn start(builder: Builder, mut store: Box<dyn EventStore>) -> std::io::Result<Ahead> {
        let (requests, asked) = mpsc::sync_channel::<()>(1);
        let (reply, replies) = mpsc::sync_channel::<Built>(1);
        let thread = std::thread::Builder::new()
            .name("trigpoll-claim".into())
            .spawn(move || {
                let mut builder = builder;
                let mut lost = false;
                while asked.recv().is_ok() {
                    let built = match lost {
                        true => store
                            .reconnect()
                            .and_then(|()| builder.next_batch(store.as_mut())),
                        false => builder.next_batch(store.as_mut()),
                    };
                    lost = matches!(built, Err(StoreError::Connection(_)));
                    if reply.send(built).is_err() {
                        break;
                    }
                }
            })?;
        Ok(Ahead {
            requests: Some(requests),
            replies,
            outstanding: false,
            overlapped: false,
            thread: Some(thread),
        })
    }

    /// Asks for the next batch while the current one is being processed.
    fn ask_ahead(&mut self) {
        self.ask();
        self.overlapped = true;
    }

    fn ask(&mut self) {
        if self.outstanding {
            return;
        }
        self.overlapped = false;
        if let Some(requests) = &self.requests {
            self.outstanding = requests.send(()).is_ok();
        }
    }

    fn receive(&mut self) -> Built {
        let mut built = self.receive_once();
        // A claim made while the previous batch was being finished passes over the events
        // waiting behind that batch's keys; now that it is finished, they may be ready.
        if self.overlapped && matches!(&built, Ok(claimed) if claimed.work.is_empty()) {
            built = self.receive_once();
        }
        built
    }

    fn receive_once(&mut self) -> Built {
        self.ask();
        self.outstanding = false;
        self.replies.recv().unwrap_or_else(|_| {
            Err(StoreError::Connection(
                "the claiming thread stopped".to_string(),
            ))
        })
    }

    /// Waits for a batch asked for and not received; true when it claimed events.
    fn cancel(&mut self) -> bool {
        if !self.outstanding {
            return false;
        }
        self.outstanding = false;
        matches!(self.replies.recv(), Ok(Ok(claimed)) if !claimed.work.is_empty())
    }
}

impl Drop for Ahead {
    fn drop(&mut self) {
        self.requests = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The work one event needs in this batch.
struct Work {
    event: Event,
    /// The event's object and key as a number unique within the batch.
    key_id: usize,
    /// The row action that made it ([`action`]).
    action: Option<Verb>,
    key: Vec<KeyPair>,
    /// Indices into `Poller::connectors`.
    targets: Vec<usize>,
    attributes: Option<Box<RawValue>>,
    /// An `Update`'s captured changes (`changes = true`), with their JSON types.
    changes: Option<Box<RawValue>>,
    /// Set once the event's fate is known without delivery.
    verdict: Option<(Status, String)>,
    /// Put back untried, behind this event of its key (held by the batch before).
    behind: Option<i64>,
    /// Delivered as part of a later `Update` of its key (index in the batch): `coalesce`.
    coalesced_into: Option<usize>,
    /// The attributes its captured image lacks ([`payload::Content::partial`]).
    partial: Vec<String>,
}

impl Work {
    /// Whether the event goes to its connectors in this batch.
    fn delivers(&self) -> bool {
        self.verdict.is_none() && self.behind.is_none() && self.coalesced_into.is_none()
    }
}

impl Poller {
    pub fn new(config: &Config, mut store: Box<dyn EventStore>) -> Result<Self, StartError> {
        let tables = crate::install::describe_all(store.as_mut(), &config.objects)?;
        let mut objects = HashMap::new();
        for object in &config.objects {
            let bound = match object.table {
                None => Bound::Outbox,
                Some(_) => Bound::Table(Box::new(
                    Capture::new(object, &tables, &config.poll.key_delimiter)
                        .map_err(|problems| StartError::Config(problems.join("\n")))?,
                )),
            };
            objects.insert(object.name.clone(), bound);
        }
        let objects = Arc::new(objects);
        let metrics = Meter::default();
        let given_up = Arc::new(AtomicBool::new(false));
        let abandon = Arc::new(AtomicBool::new(false));
        let lease = Lease::new(config.poll.claim_timeout, Arc::clone(&abandon));
        let claims_left = Arc::new(AtomicU64::new(u64::MAX));
        let connectors = config
            .connectors
            .iter()
            .map(|c| {
                let mut connector =
                    Connector::new(c.clone()).map_err(|e| StartError::Config(e.to_string()))?;
                connector.abandon_on(Arc::clone(&abandon));
                Ok(connector)
            })
            .collect::<Result<Vec<_>, StartError>>()?;
        let builder = Builder {
            given_up: Arc::clone(&given_up),
            objects: Arc::clone(&objects),
            routes: config
                .connectors
                .iter()
                .map(|c| (c.id.clone(), c.subscribe.clone()))
                .collect(),
            delimiter: config.poll.key_delimiter.clone(),
            batch_size: config.poll.batch_size,
            linger: config.poll.linger,
            partial: None,
            metrics: Arc::clone(&metrics),
            claims_left: Arc::clone(&claims_left),
            lease: Arc::clone(&lease),
        };
        let keeper = Keeper::start(Arc::clone(&lease), store.another_connection()?)
            .map_err(StartError::Thread)?;
        let mut interrupters = vec![store.interrupter()];
        let batches = match store.sibling() {
            Some(sibling) => {
                let sibling = sibling?;
                interrupters.push(sibling.interrupter());
                Batches::Ahead(Ahead::start(builder, sibling).map_err(StartError::Thread)?)
            }
            None => Batches::Inline(builder),
        };
        Ok(Poller {
            store,
            stopper: Stopper {
                given_up,
                abandon,
                stores: Arc::new(interrupters),
            },
            lease,
            _keeper: keeper,
            batches,
            objects,
            connectors,
            archive_sent: config.poll.archive,
            held: HashMap::new(),
            orphans_released: false,
            retried: Default::default(),
            metrics,
            claims_left,
        })
    }

    pub fn store(&mut self) -> &mut dyn EventStore {
        self.store.as_mut()
    }

    /// Records what every batch does from now on (events, step and delivery durations) into
    /// `metrics`; a second call is ignored.
    pub fn set_metrics(&mut self, metrics: Arc<Metrics>) {
        let _ = self.metrics.set(metrics);
    }

    /// Claims no more than `events` events from now on, all batches together (the one claimed
    /// ahead too; an event claimed again after a retry counts again): a run that is to stop
    /// after that many claims only what it will process.
    pub fn limit_claims(&mut self, events: u64) {
        self.claims_left.store(events, Ordering::SeqCst);
    }

    /// Whether [`Poller::limit_claims`] allows no more claims.
    pub fn claim_limit_reached(&self) -> bool {
        self.claims_left.load(Ordering::SeqCst) == 0
    }

    /// What makes this poller give up its batch from another thread.
    pub fn stopper(&self) -> Stopper {
        self.stopper.clone()
    }

    /// Replaces a lost connection and gives back this poller's claims, so that the batch that
    /// was interrupted is delivered again. The claiming connection reconnects on its next claim.
    pub fn reconnect(&mut self) -> Result<(), StoreError> {
        self.cancel_ahead();
        self.store.reconnect()?;
        self.store.release_claims()
    }

    /// Claims and processes one batch. An empty tally means nothing was ready.
    pub fn run_batch(&mut self) -> Result<Tally, StoreError> {
        if !self.orphans_released {
            // Before the first claim, after the stopper can reach this store.
            let released = self.store.release_orphans()?;
            if released > 0 {
                warn!(
                    events = released,
                    "released events held behind events no longer in the event table"
                );
            }
            self.orphans_released = true;
        }
        let work = match &mut self.batches {
            Batches::Inline(builder) => builder.next_batch(self.store.as_mut()),
            Batches::Ahead(ahead) => ahead.receive(),
        };
        let (batch, work) = match work {
            Ok(Claimed {
                batch: Some(batch),
                work,
            }) => (batch, work),
            Ok(Claimed { batch: None, .. }) => return Ok(Tally::default()),
            Err(e) => {
                // The claim may have been made before building failed.
                self.release_claims();
                return Err(e);
            }
        };
        if !self.lease.fresh(batch) {
            // Claimed ahead and kept waiting too long: another poller may have it by now.
            return Ok(self.give_back(work.len()));
        }
        if let Batches::Ahead(ahead) = &mut self.batches {
            ahead.ask_ahead();
        }
        match self.process(batch, work) {
            Ok(tally) => Ok(tally),
            Err(StoreError::LeaseLost(events)) => Ok(self.give_back(events)),
            Err(e) => {
                // Whatever was delivered will be delivered again: at-least-once.
                self.release_claims();
                Err(e)
            }
        }
    }

    /// Gives back every claim, the batch in hand's (`events` of them) may have run out.
    fn give_back(&mut self, events: usize) -> Tally {
        warn!(
            events,
            "a batch outlived its claim (claim_timeout) without renewing it: given back untried, \
             since another poller may have taken it"
        );
        self.release_claims();
        Tally {
            given_back: events as u64,
            ..Tally::default()
        }
    }

    fn process(&mut self, batch: u64, mut work: Vec<Work>) -> Result<Tally, StoreError> {
        for w in &mut work {
            let (object, id) = (&w.event.object_name, w.event.event_id);
            let key = (object.clone(), w.event.object_key.clone());
            w.behind = match w.event.object_key.is_empty() {
                false => self.held.get(&key).copied(),
                // A `Truncate` waits for every earlier event of its object (store::claim).
                true => self
                    .held
                    .iter()
                    .filter(|((o, _), &b)| o == object && b < id)
                    .map(|(_, &b)| b)
                    .min(),
            }
            .filter(|&blocker| id > blocker);
        }
        self.coalesce(&mut work);
        self.stopper.check()?;
        let started = Instant::now();
        self.fetch(&mut work)?;
        self.measure(Step::Fetch, started);
        let started = Instant::now();
        self.stopper.begin_delivery();
        self.lease.delivering(batch);
        let outcomes = self.deliver(&work);
        self.measure(Step::Deliver, started);
        // Deliveries given up on a stop have no outcome to record: the batch goes back whole;
        // as it does when its lease may have run out, whatever was delivered.
        self.stopper.check()?;
        if self.stopper.abandoned() {
            return Err(StoreError::LeaseLost(work.len()));
        }
        // Finished by the finishing statement alone, which touches only what is still held.
        self.lease.release(batch);
        self.settle(work, outcomes)
    }

    /// Folds each run of consecutive `Update`s of one key, of an object with `coalesce`, into
    /// its last: the row is fetched once anyway, so all of them would carry the same
    /// attributes. Only events going to the same connectors fold.
    fn coalesce(&self, work: &mut [Work]) {
        let mut last_of_key: HashMap<usize, usize> = HashMap::new();
        let mut folds_into: Vec<Option<usize>> = vec![None; work.len()];
        for i in 0..work.len() {
            let w = &work[i];
            let foldable = w.delivers()
                && is_update(w)
                && self
                    .objects
                    .get(&w.event.object_name)
                    .is_some_and(Bound::coalesces);
            let previous = last_of_key.insert(w.key_id, i);
            let Some(p) = previous.filter(|_| foldable) else {
                continue;
            };
            let before = &work[p];
            if before.delivers()
                && is_update(before)
                && before.targets == w.targets
                && before.event.connector_id == w.event.connector_id
                && before.event.done_connectors == w.event.done_connectors
            {
                folds_into[p] = Some(i);
            }
        }
        // Every event of a run goes into the run's last.
        for i in (0..work.len()).rev() {
            if let Some(next) = folds_into[i] {
                work[i].coalesced_into = Some(work[next].coalesced_into.unwrap_or(next));
            }
        }
    }

    fn measure(&self, step: Step, started: Instant) {
        if let Some(m) = self.metrics.get() {
            m.step(step, started.elapsed());
        }
    }

    /// Gives back every claim of this poller, the batch claimed ahead included.
    fn release_claims(&mut self) {
        self.cancel_ahead();
        self.give_back_claims();
        self.lease.release_all();
    }

    /// Waits for a batch asked for ahead and not received; true when it claimed events.
    fn cancel_ahead(&mut self) -> bool {
        match &mut self.batches {
            Batches::Ahead(ahead) => ahead.cancel(),
            Batches::Inline(_) => false,
        }
    }

    fn give_back_claims(&mut self) {
        if let Err(e) = self.store.release_claims() {
            debug!(error = %e, "could not release claims; they expire");
        }
    }
}

impl Drop for Poller {
    /// A batch claimed ahead and never processed goes back to the queue at once rather than
    /// after the claim timeout.
    fn drop(&mut self) {
        if self.cancel_ahead() {
            self.give_back_claims();
        }
    }
}

impl Builder {
    /// Claims a batch and works out what each of its events needs for delivery.
    /// Waits until `linger` has passed since `last`, a claim that found fewer events than it
    /// asked for; a stop ends the wait.
    fn linger_after(&self, last: Instant) -> Result<(), StoreError> {
        let until = last + self.linger;
        let wait = until.saturating_duration_since(Instant::now());
        if !wait.is_zero() {
            debug!(
                ?wait,
                "the last claim found less than a batch: claiming again after poll.linger"
            );
        }
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(());
            }
            if self.given_up.load(Ordering::SeqCst) {
                return Err(StoreError::Stopped);
            }
            std::thread::sleep(left.min(Duration::from_millis(50)));
        }
    }

    fn next_batch(&mut self, store: &mut dyn EventStore) -> Built {
        if self.given_up.load(Ordering::SeqCst) {
            return Err(StoreError::Stopped);
        }
        let allowed = self.claims_left.load(Ordering::SeqCst);
        if allowed == 0 {
            return Ok(Claimed {
                batch: None,
                work: Vec::new(),
            });
        }
        if let Some(last) = self.partial.take() {
            self.linger_after(last)?;
        }
        let started = Instant::now();
        let cap = allowed.try_into().unwrap_or(usize::MAX);
        let limit = self.batch_size.min(cap);
        let claimed = store.claim_capped(limit, cap)?;
        self.partial = (!claimed.is_empty() && claimed.len() < limit).then_some(started);
        // Only this thread claims: nothing else lowers the count meanwhile.
        self.claims_left.store(
            allowed.saturating_sub(claimed.len() as u64),
            Ordering::SeqCst,
        );
        if let Some(m) = self.metrics.get() {
            m.step(Step::Claim, started.elapsed());
        }
        let batch = (!claimed.is_empty()).then(|| {
            self.lease
                .hold(claimed.iter().map(|e| e.event_id).collect(), started)
        });
        let events = each_key_in_order(claimed);
        let mut key_ids: HashMap<(String, String), usize> = HashMap::new();
        let work = events
            .into_iter()
            .map(|e| {
                let next = key_ids.len();
                let key_id = *key_ids
                    .entry((e.object_name.clone(), e.object_key.clone()))
                    .or_insert(next);
                self.prepare(store, e, key_id)
            })
            .collect();
        Ok(Claimed { batch, work })
    }

    /// Matches subscriptions and parses the key; captured row images are used as they are.
    fn prepare(&self, store: &dyn EventStore, event: Event, key_id: usize) -> Work {
        let mut w = Work {
            key_id,
            action: None,
            targets: Vec::new(),
            key: Vec::new(),
            attributes: None,
            changes: None,
            verdict: None,
            behind: None,
            coalesced_into: None,
            partial: Vec::new(),
            event,
        };
        let e = &w.event;
        // An event for an object that is not configured is an error, whoever subscribes.
        let Some(bound) = self.objects.get(&e.object_name) else {
            w.verdict = Some((
                Status::Error,
                format!(
                    "unknown object {:?}: no [[object]] has this name",
                    e.object_name
                ),
            ));
            return w;
        };
        let action = match action(e) {
            Ok(action) => action,
            Err(reason) => {
                w.verdict = Some((Status::Error, reason));
                return w;
            }
        };
        w.action = action;
        let matching: Vec<usize> = match &e.connector_id {
            Some(id) => {
                let found: Vec<usize> = self
                    .routes
                    .iter()
                    .position(|(c, _)| c == id)
                    .into_iter()
                    .collect();
                if found.is_empty() {
                    w.verdict = Some((
                        Status::Error,
                        format!("event is for connector {id}, which is not configured"),
                    ));
                    return w;
                }
                found
            }
            None => (0..self.routes.len())
                .filter(|&i| {
                    self.routes[i]
                        .1
                        .iter()
                        .any(|s| s.matches(&e.object_name, &e.object_verb))
                })
                .collect(),
        };
        if matching.is_empty() {
            w.verdict = Some((
                Status::Unsubscribed,
                format!(
                    "no connector subscribes to {}.{}",
                    e.object_name, e.object_verb
                ),
            ));
            return w;
        }
        w.targets = matching
            .into_iter()
            .filter(|&i| !e.done_connectors.iter().any(|d| *d == self.routes[i].0))
            .collect();
        // A TRUNCATE of the object's table: no key, no row, `"attributes": null`.
        if matches!(bound, Bound::Table(_))
            && action == Some(Verb::Truncate)
            && e.object_key.is_empty()
        {
            w.attributes = Some(RawValue::from_string("null".to_string()).expect("JSON null"));
            return w;
        }
        let pairs = match key::decode(&e.object_key, &self.delimiter) {
            Ok(pairs) => pairs,
            Err(reason) => {
                w.verdict = Some((
                    Status::Error,
                    format!("malformed object key {:?}: {reason}", e.object_key),
                ));
                return w;
            }
        };
        let capture = match bound {
            Bound::Outbox => {
                w.key = pairs;
                match outbox_object(e.payload.as_deref()) {
                    Ok(raw) => w.attributes = Some(raw),
                    Err(reason) => w.verdict = Some((Status::Error, reason)),
                }
                return w;
            }
            Bound::Table(capture) => capture,
        };
        let key_names: Vec<&str> = capture.keys.iter().map(|c| c.name.as_str()).collect();
        match in_key_order(pairs, &key_names) {
            Ok(pairs) => w.key = pairs,
            Err(reason) => {
                w.verdict = Some((
                    Status::Error,
                    format!("object key {:?}: {reason}", e.object_key),
                ));
                return w;
            }
        }
        // What the action captured decides, whatever verb a rule gave the event.
        let captured = match (action, &e.payload) {
            (Some(Verb::Delete), Some(image)) => {
                store.row_image(&capture.table, image).map(|raw| {
                    w.partial = lacking(&raw, &capture.attributes);
                    w.attributes = Some(raw);
                })
            }
            // An application's own Delete event carries no image: the key is all there is.
            (Some(Verb::Delete), None) => {
                w.attributes = Some(crate::store::attributes(
                    &w.key
                        .iter()
                        .map(|(n, v)| (n.clone(), v.clone().into()))
                        .collect(),
                ));
                Ok(())
            }
            (Some(Verb::Update), Some(changes)) if !capture.changes.is_empty() => {
                crate::store::changes(store, &capture.table, changes)
                    .map(|raw| w.changes = Some(raw))
            }
            _ => Ok(()),
        };
        if let Err(reason) = captured {
            w.verdict = Some((Status::Error, reason.to_string()));
        }
        w
    }
}

/// The attributes a captured image does not have: columns added to the table since its trigger
/// was installed, which the fetched rows of its other events carry.
fn lacking(image: &RawValue, attributes: &[Column]) -> Vec<String> {
    let Ok(names) = serde_json::from_str::<HashMap<&str, serde::de::IgnoredAny>>(image.get())
    else {
        return Vec::new();
    };
    attributes
        .iter()
        .filter(|c| !names.contains_key(c.name.as_str()))
        .map(|c| c.name.clone())
        .collect()
}

/// Puts each found row's children (and theirs) into its attributes, as arrays named after
/// the children: one query per child table for all the rows at once.
fn with_children(
    store: &mut dyn EventStore,
    children: &[ChildCapture],
    columns: &[Column],
    fetched: &mut [Fetched],
    keys: &[Vec<Option<String>>],
) -> Result<(), StoreError> {
    let found: Vec<usize> = (0..fetched.len())
        .filter(|&i| matches!(fetched[i], Fetched::Row(_)))
        .collect();
    let mut rows: Vec<Box<RawValue>> = found
        .iter()
        .map(
            |&i| match std::mem::replace(&mut fetched[i], Fetched::Missing) {
                Fetched::Row(raw) => raw,
                _ => unreachable!("only found rows"),
            },
        )
        .collect();
    let found_keys: Vec<Vec<Option<String>>> = found.iter().map(|&i| keys[i].clone()).collect();
    attach(store, children, columns, &mut rows, &found_keys)?;
    for (i, row) in found.into_iter().zip(rows) {
        fetched[i] = Fetched::Row(row);
    }
    Ok(())
}

/// Attaches to each parent row (its key values in `keys`, its attributes `columns`) the rows
/// of each child table.
fn attach(
    store: &mut dyn EventStore,
    children: &[ChildCapture],
    columns: &[Column],
    parents: &mut [Box<RawValue>],
    keys: &[Vec<Option<String>>],
) -> Result<(), StoreError> {
    let mut arrays: Vec<Vec<Array>> = vec![Vec::new(); parents.len()];
    for child in children {
        let parent_keys: Vec<&Column> = child.parent_keys.iter().collect();
        // The child's own key travels along only when its children need it.
        let carry: &[Column] = match child.children.is_empty() {
            true => &[],
            false => &child.keys,
        };
        let per_parent = store.fetch_children(
            &child.table,
            &parent_keys,
            keys,
            &child.attributes,
            &child.order_by,
            carry,
        )?;
        let mut owners: Vec<usize> = Vec::new();
        let mut rows: Vec<Box<RawValue>> = Vec::new();
        let mut row_keys: Vec<Vec<Option<String>>> = Vec::new();
        for (parent, list) in per_parent.into_iter().enumerate() {
            for row in list {
                owners.push(parent);
                rows.push(row.attributes);
                row_keys.push(row.carry);
            }
        }
        if !child.children.is_empty() {
            attach(
                store,
                &child.children,
                &child.attributes,
                &mut rows,
                &row_keys,
            )?;
        }
        let mut items: Vec<Vec<Box<RawValue>>> = vec![Vec::new(); parents.len()];
        for (parent, row) in owners.into_iter().zip(rows) {
            items[parent].push(row);
        }
        for (list, items) in arrays.iter_mut().zip(items) {
            list.push((&child.config.name, items));
        }
    }
    let replaces = children
        .iter()
        .any(|child| columns.iter().any(|c| c.name == child.config.name));
    for (parent, arrays) in parents.iter_mut().zip(arrays) {
        *parent = with_arrays(parent, &arrays, replaces)?;
    }
    Ok(())
}

/// A named array of rows, as a row's children go into its attributes.
type Array<'a> = (&'a str, Vec<Box<RawValue>>);

/// A row's attributes (a JSON object) with the named arrays added after them, written into
/// its text as they are: neither the row nor its children are parsed into values and written
/// again, which was most of the cost of a batch's children. When an array's name is a column
/// of the row (`replaces`), the array takes the column's place, as a JSON object would have it.
fn with_arrays(
    row: &RawValue,
    arrays: &[Array],
    replaces: bool,
) -> Result<Box<RawValue>, StoreError> {
    let not_object = || StoreError::Database("row image is not a JSON object".to_string());
    if replaces {
        let mut object = crate::store::json_object(row.get())?;
        for (name, items) in arrays {
            let values = items
                .iter()
                .map(|item| serde_json::from_str(item.get()))
                .collect::<Result<Vec<serde_json::Value>, _>>()
                .map_err(|_| not_object())?;
            object.insert(name.to_string(), serde_json::Value::Array(values));
        }
        return Ok(crate::store::attributes(&object));
    }
    let body = row
        .get()
        .trim_end()
        .strip_suffix('}')
        .filter(|b| b.trim_start().starts_with('{'))
        .ok_or_else(not_object)?;
    let mut text = String::new();
    text.push_str(body);
    let mut first = body.trim() == "{";
    for (name, items) in arrays {
        if !first {
            text.push(',');
        }
        first = false;
        text.push_str(&serde_json::to_string(name).expect("a name serializes"));
        text.push_str(":[");
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                text.push(',');
            }
            text.push_str(item.get());
        }
        text.push(']');
    }
    text.push('}');
    RawValue::from_string(text).map_err(|_| not_object())
}

/// An outbox event's business object: its `payload`, a JSON object, as it is.
fn outbox_object(payload: Option<&str>) -> Result<Box<RawValue>, String> {
    let payload = payload.ok_or_else(|| {
        "an outbox event carries its business object in `payload`, which is empty".to_string()
    })?;
    let raw = RawValue::from_string(payload.to_string())
        .map_err(|e| format!("the outbox event's payload is not JSON: {e}"))?;
    match raw.get().trim_start().starts_with('{') {
        true => Ok(raw),
        false => Err("the outbox event's payload is not a JSON object".to_string()),
    }
}

impl Poller {
    /// Fetches the rows of every event still needing one: one query per object, one row per
    /// key (every event of a key gets the row as it is now), and one query per child table for
    /// the children of the whole batch.
    fn fetch(&mut self, work: &mut [Work]) -> Result<(), StoreError> {
        let mut by_object: HashMap<&str, Vec<usize>> = HashMap::new();
        let mut by_key: HashMap<usize, Vec<usize>> = HashMap::new();
        for (i, w) in work.iter().enumerate() {
            if w.delivers() && w.attributes.is_none() && !w.targets.is_empty() {
                let same_key = by_key.entry(w.key_id).or_default();
                if same_key.is_empty() {
                    by_object.entry(&w.event.object_name).or_default().push(i);
                }
                same_key.push(i);
            }
        }
        let mut results = Vec::new();
        for (object, indices) in by_object {
            let Bound::Table(capture) = &self.objects[object] else {
                continue;
            };
            let columns: Vec<&Column> = capture.keys.iter().collect();
            let keys: Vec<Vec<Option<String>>> = indices
                .iter()
                .map(|&i| work[i].key.iter().map(|(_, v)| v.clone()).collect())
                .collect();
            let mut fetched =
                self.store
                    .fetch_rows(&capture.table, &columns, &keys, &capture.attributes)?;
            if !capture.children.is_empty() {
                with_children(
                    self.store.as_mut(),
                    &capture.children,
                    &capture.attributes,
                    &mut fetched,
                    &keys,
                )?;
            }
            results.extend(indices.into_iter().zip(fetched));
        }
        for (first, fetched) in results {
            for &i in &by_key[&work[first].key_id] {
                let w = &mut work[i];
                match &fetched {
                    Fetched::Row(row) => w.attributes = Some(row.clone()),
                    Fetched::Missing => {
                        w.verdict = Some((
                            Status::NotFound,
                            format!(
                                "no row of {} has the key {}",
                                w.event.object_name, w.event.object_key
                            ),
                        ))
                    }
                    Fetched::Invalid(reason) => {
                        w.verdict = Some((
                            Status::Error,
                            format!("object key {:?}: {reason}", w.event.object_key),
                        ))
                    }
                }
            }
        }
        Ok(())
    }

    /// Hands each connector its deliveries in one call. Returns, per connector, the outcome of
    /// each (work index) it was given.
    fn deliver(&mut self, work: &[Work]) -> Vec<Vec<(usize, Outcome)>> {
        let mut batches: Vec<(Vec<usize>, Vec<Delivery>)> =
            vec![(Vec::new(), Vec::new()); self.connectors.len()];
        for (i, w) in work.iter().enumerate() {
            let Some(attributes) = w.attributes.as_ref().filter(|_| w.delivers()) else {
                continue;
            };
            for &c in &w.targets {
                let id = self.connectors[c].id();
                let object_event_id = payload::object_event_id(id, w.event.event_id);
                let content = payload::Content {
                    attributes,
                    changes: w.changes.as_deref(),
                    partial: &w.partial,
                };
                let body = payload::render(&w.event, &w.key, id, &object_event_id, content);
                batches[c].0.push(i);
                batches[c].1.push(Delivery {
                    event_id: w.event.event_id,
                    key: w.key_id,
                    object: w.event.object_name.clone(),
                    verb: w.event.object_verb.clone(),
                    object_event_id,
                    body,
                });
            }
        }
        batches
            .into_iter()
            .enumerate()
            .map(|(c, (indices, deliveries))| {
                if deliveries.is_empty() {
                    return Vec::new();
                }
                let started = Instant::now();
                let outcomes = self.connectors[c].deliver(&deliveries);
                if let Some(m) = self.metrics.get() {
                    m.delivery(self.connectors[c].id(), started.elapsed());
                }
                indices.into_iter().zip(outcomes).collect()
            })
            .collect()
    }

    /// Turns outcomes into archive rows, retry state and held events, and writes them in one
    /// transaction.
    fn settle(
        &mut self,
        work: Vec<Work>,
        outcomes: Vec<Vec<(usize, Outcome)>>,
    ) -> Result<Tally, StoreError> {
        let mut per_event: Vec<Vec<(usize, Outcome)>> = vec![Vec::new(); work.len()];
        for (c, list) in outcomes.into_iter().enumerate() {
            for (i, outcome) in list {
                per_event[i].push((c, outcome));
            }
        }
        // A coalesced event shares the outcomes of the event it was delivered as.
        for (i, w) in work.iter().enumerate() {
            if let Some(into) = w.coalesced_into {
                per_event[i] = per_event[into].clone();
            }
        }
        // Per key, the first event that must be retried: what follows it waits behind it.
        let mut blockers: HashMap<usize, i64> = HashMap::new();
        for (w, results) in work.iter().zip(&per_event) {
            let blocker = w.behind.or_else(|| {
                results
                    .iter()
                    .any(|(_, o)| matches!(o, Outcome::Retry { .. }))
                    .then_some(w.event.event_id)
            });
            if let Some(b) = blocker {
                let first = blockers.entry(w.key_id).or_insert(b);
                *first = (*first).min(b);
            }
        }
        let mut tally = Tally::default();
        let mut settlement = Settlement::default();
        // One warning per batch and Object.Verb, not one per event.
        let mut unsubscribed: std::collections::BTreeMap<(String, String), u64> =
            Default::default();
        let mut held_keys = HashMap::new();
        // (object, verb, connector, outcome) of every event and connector, for the metrics.
        let mut outcomes: Vec<(&Event, String, &'static str)> = Vec::new();
        for (w, results) in work.iter().zip(per_event) {
            let e = &w.event;
            let attempt = e.attempts + 1;
            if let Some(behind) = w.behind {
                tally.held += 1;
                held_keys.insert((e.object_name.clone(), e.object_key.clone()), behind);
                settlement.hold.push(Hold {
                    event_id: e.event_id,
                    behind: Some(behind),
                    done_connectors: e.done_connectors.clone(),
                });
                continue;
            }
            tally.events += 1;
            if let Some((status, reason)) = &w.verdict {
                match status {
                    Status::Unsubscribed => {
                        tally.unsubscribed += 1;
                        *unsubscribed
                            .entry((e.object_name.clone(), e.object_verb.clone()))
                            .or_insert(0) += 1;
                    }
                    Status::NotFound => {
                        tally.not_found += 1;
                        info!(event_id = e.event_id, key = %e.object_key, "{reason}")
                    }
                    _ => {
                        tally.errors += 1;
                        error!(event_id = e.event_id, "{reason}")
                    }
                }
                outcomes.push((e, e.connector_id.clone().unwrap_or_default(), status.name()));
                settlement.archive.push(ArchiveRow {
                    event_id: e.event_id,
                    connector_id: e.connector_id.clone(),
                    status: *status,
                    description: Some(reason.clone()),
                    attempts: attempt,
                });
                settlement.complete.push(e.event_id);
                continue;
            }
            let coalesced = w
                .coalesced_into
                .map(|into| format!("coalesced into event {}", work[into].event.event_id));
            let mut done = e.done_connectors.clone();
            let mut pending: Vec<(String, Duration)> = Vec::new();
            let mut waits = false;
            for (c, outcome) in results {
                let connector = &self.connectors[c];
                let id = connector.id().to_string();
                let (status, reason) = match outcome {
                    Outcome::Sent => (Status::Sent, None),
                    Outcome::Reject { reason } => (Status::Failed, Some(reason)),
                    Outcome::Held => {
                        waits = true;
                        continue;
                    }
                    Outcome::Retry { reason, .. }
                        if attempt >= connector.config.max_attempts as i32 =>
                    {
                        (
                            Status::Failed,
                            Some(format!(
                                "gave up after {attempt} attempt{}: {reason}",
                                if attempt == 1 { "" } else { "s" }
                            )),
                        )
                    }
                    Outcome::Retry { reason, after } => {
                        let delay = connector.backoff_delay(attempt as u32, after);
                        debug!(event_id = e.event_id, connector = %id, attempt, ?delay, "{reason}");
                        pending.push((format!("{id}: {reason}"), delay));
                        outcomes.push((e, id, "retry"));
                        continue;
                    }
                };
                outcomes.push((e, id.clone(), status.name()));
                if status == Status::Sent {
                    tally.sent += 1;
                } else {
                    tally.failed += 1;
                    warn!(event_id = e.event_id, connector = %id, "failed: {}", reason.as_deref().unwrap_or_default());
                }
                let description = match (&coalesced, reason) {
                    (Some(into), Some(reason)) => Some(format!("{into}: {reason}")),
                    (Some(into), None) => Some(into.clone()),
                    (None, reason) => reason,
                };
                if status != Status::Sent || self.archive_sent {
                    settlement.archive.push(ArchiveRow {
                        event_id: e.event_id,
                        connector_id: Some(id.clone()),
                        status,
                        description,
                        attempts: attempt,
                    });
                }
                done.push(id);
            }
            if !pending.is_empty() {
                tally.retrying += 1;
                // The slowest receiver sets the pace, so a Retry-After is always honoured.
                let delay = pending.iter().map(|p| p.1).max().unwrap_or_default();
                let reasons: Vec<String> = pending.into_iter().map(|p| p.0).collect();
                settlement.retry.push(RetryLater {
                    event_id: e.event_id,
                    attempts: attempt,
                    delay,
                    description: format!("attempt {attempt} failed: {}", reasons.join("; ")),
                    done_connectors: done,
                });
            } else if waits {
                // Some connector has yet to get it, after an earlier event of its key: it
                // waits behind that one, this attempt not counted.
                tally.events -= 1;
                tally.held += 1;
                let behind = blockers.get(&w.key_id).copied();
                if let Some(b) = behind {
                    held_keys.insert((e.object_name.clone(), e.object_key.clone()), b);
                }
                settlement.hold.push(Hold {
                    event_id: e.event_id,
                    behind,
                    done_connectors: done,
                });
            } else {
                settlement.complete.push(e.event_id);
            }
        }
        for (w, blocker) in work
            .iter()
            .filter_map(|w| Some((w, blockers.get(&w.key_id)?)))
        {
            held_keys.insert(
                (w.event.object_name.clone(), w.event.object_key.clone()),
                *blocker,
            );
        }
        // An event held behind one that this batch completes is simply ready again.
        let completed: std::collections::HashSet<i64> =
            settlement.complete.iter().copied().collect();
        for hold in &mut settlement.hold {
            hold.behind = hold.behind.filter(|b| !completed.contains(b));
        }
        held_keys.retain(|_, b| !completed.contains(b));
        let started = Instant::now();
        self.store.finish(&settlement)?;
        self.measure(Step::Finish, started);
        if let Some(m) = self.metrics.get() {
            let mut counts: HashMap<EventLabels, u64> = HashMap::new();
            for (e, connector, outcome) in outcomes {
                let labels = EventLabels {
                    object: e.object_name.clone(),
                    verb: e.object_verb.clone(),
                    connector,
                    outcome: outcome.to_string(),
                };
                *counts.entry(labels).or_default() += 1;
            }
            m.events(&counts);
        }
        self.held = held_keys;
        let attempted = settlement.retry.iter().map(|r| r.event_id);
        for id in settlement.complete.iter().copied().chain(attempted) {
            if self.retried.remove(&id) {
                tally.repeats += 1;
            }
        }
        self.retried
            .extend(settlement.retry.iter().map(|r| r.event_id));
        for ((object, verb), events) in unsubscribed {
            warn!(
                events,
                "unsubscribed: no connector subscribes to {object}.{verb}"
            );
        }
        if tally.claimed_any() {
            debug!(
                events = tally.events,
                sent = tally.sent,
                retrying = tally.retrying,
                held = tally.held,
                failed = tally.failed,
                "batch done"
            );
        }
        Ok(tally)
    }
}

/// A batch in claim order (priority, then event id), with each key's events in event-id order
/// in the places its events hold: one key's events can differ in priority (an application's
/// own events, a replay), and its order comes first.
fn each_key_in_order(events: Vec<Event>) -> Vec<Event> {
    let mut places: HashMap<(&str, &str), Vec<usize>> = HashMap::new();
    for (i, e) in events.iter().enumerate() {
        places
            .entry((&e.object_name, &e.object_key))
            .or_default()
            .push(i);
    }
    let mut order: Vec<usize> = (0..events.len()).collect();
    for slots in places.values() {
        let mut by_id = slots.clone();
        by_id.sort_by_key(|&i| events[i].event_id);
        for (&slot, &from) in slots.iter().zip(&by_id) {
            order[slot] = from;
        }
    }
    let mut events: Vec<Option<Event>> = events.into_iter().map(Some).collect();
    order
        .into_iter()
        .map(|i| events[i].take().expect("each event once"))
        .collect()
}

/// The row action that made an event: its `event_action` (written by the triggers of an object
/// with rules, whose verb may be any name), or else its verb's when that is one of the
/// triggers' own; `None` for an application's own verb, whose row is fetched as an Update's.
fn action(e: &Event) -> Result<Option<Verb>, String> {
    match &e.action {
        Some(written) => Verb::from_action(written).map(Some).ok_or_else(|| {
            format!("unknown event_action {written:?}: it is create, update, delete or truncate")
        }),
        None => Ok([Verb::Create, Verb::Update, Verb::Delete, Verb::Truncate]
            .into_iter()
            .find(|v| v.as_str() == e.object_verb)),
    }
}

/// An `Update` made by an update (not a verb a rule gave a delete): what `coalesce` folds.
fn is_update(w: &Work) -> bool {
    w.event.object_verb == "Update" && w.action == Some(Verb::Update)
}

/// Puts parsed key pairs into the order of the object's key columns, or says why they don't fit.
fn in_key_order(mut pairs: Vec<KeyPair>, columns: &[&str]) -> Result<Vec<KeyPair>, String> {
    let names: Vec<&str> = pairs.iter().map(|(n, _)| n.as_str()).collect();
    let fits = pairs.len() == columns.len() && columns.iter().all(|c| names.contains(c));
    if !fits {
        return Err(format!(
            "has the columns ({}) but the object's key is ({})",
            names.join(", "),
            columns.join(", ")
        ));
    }
    pairs.sort_by_key(|(n, _)| columns.iter().position(|c| c == n));
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_string()).unwrap()
    }

    #[test]
    fn arrays_are_written_into_the_rows_text() {
        let parts = vec![raw(r#"{"no":1}"#), raw(r#"{"no":2}"#)];
        let got = with_arrays(
            &raw(r#"{"id" : 7, "name" : "a}"} "#),
            &[("parts", parts), ("notes", Vec::new())],
            false,
        )
        .unwrap();
        assert_eq!(
            got.get(),
            r#"{"id" : 7, "name" : "a}","parts":[{"no":1},{"no":2}],"notes":[]}"#
        );
        let got = with_arrays(&raw("{ }"), &[("a\"b", vec![raw("{}")])], false).unwrap();
        assert_eq!(got.get(), r#"{ "a\"b":[{}]}"#);
    }

    /// A child named like a column of its parent takes the column's place, as an object's
    /// insert does: never a name twice in one object.
    #[test]
    fn an_array_named_like_a_column_replaces_it() {
        let got = with_arrays(
            &raw(r#"{"id":7,"parts":"text","z":1}"#),
            &[("parts", vec![raw(r#"{"no":1}"#)])],
            true,
        )
        .unwrap();
        assert_eq!(got.get(), r#"{"id":7,"parts":[{"no":1}],"z":1}"#);
    }

    #[test]
    fn a_row_that_is_not_an_object_is_an_error() {
        for text in ["[1]", "5", "\"}\""] {
            assert!(
                with_arrays(&raw(text), &[("a", Vec::new())], false).is_err(),
                "{text}"
            );
        }
    }
}
