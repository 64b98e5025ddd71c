//! What a claim takes, whatever the backend: the ordering rules of the README's *Guarantees*
//! (order, hot keys) as a pure function, so that every store claims the same way and the rules are tested
//! without a database.
//!
//! A claim looks in three steps, all in one transaction:
//!
//! 1. **Candidates**: up to `batch_size` ready events (or abandoned claims), highest priority
//!    first, then oldest, each locked so that no other poller takes it meanwhile. Events held
//!    behind a retry (`waiting_for` set) are not in the claim index and are never read here.
//! 2. **Neighbours**: for each candidate's key, the events of that key up to its last candidate
//!    that are not held and not in progress under this poller's own token (unless events are
//!    held behind it: they come next, so the key's run stops there), in event-id order; and for
//!    each candidate, the first event held behind it, if any.
//! 3. [`plan`]: a candidate is claimed when every earlier event of its key is a candidate too
//!    (or is in progress under this poller's own token, which delivers its batches in order).
//!    At the first event of a key that is not, the key's run stops: when that event waits for a
//!    retry, the candidates behind it are held behind it (they leave the claim index until it is
//!    done, so no later claim reads them again); when it is in progress elsewhere, they are left
//!    ready, for a later claim.
//!
//! Every step reads at most the candidates, the events in progress and the events waiting for a
//! retry: never the events that wait behind a key, however many there are.

use std::collections::{BTreeSet, HashMap};

use crate::event::Event;

/// One key of a claim's candidates, and the last (highest) of its candidates' event ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRange<'a> {
    pub object_name: &'a str,
    pub object_key: &'a str,
    pub last: i64,
}

/// The distinct keys of a claim's candidates, and for each object of theirs its empty key (a
/// `Truncate`'s: see [`plan`]), up to the object's last candidate.
#[derive(Debug, Clone)]
pub struct Keys<'a> {
    pub ranges: Vec<KeyRange<'a>>,
    /// For each candidate, the index of its key in `ranges`.
    of: Vec<usize>,
    /// For each object, the index of its empty key in `ranges`.
    barriers: HashMap<&'a str, usize>,
}

impl<'a> Keys<'a> {
    pub fn of(candidates: &'a [Event]) -> Keys<'a> {
        let mut index: HashMap<(&str, &str), usize> = HashMap::new();
        let mut ranges: Vec<KeyRange> = Vec::new();
        let mut range = |object_name: &'a str, object_key: &'a str, last: i64| {
            let i = *index.entry((object_name, object_key)).or_insert_with(|| {
                ranges.push(KeyRange {
                    object_name,
                    object_key,
                    last,
                });
                ranges.len() - 1
            });
            ranges[i].last = ranges[i].last.max(last);
            i
        };
        let of: Vec<usize> = candidates
            .iter()
            .map(|e| range(&e.object_name, &e.object_key, e.event_id))
            .collect();
        let barriers = candidates
            .iter()
            .map(|e| {
                (
                    e.object_name.as_str(),
                    range(&e.object_name, "", e.event_id),
                )
            })
            .collect();
        Keys {
            ranges,
            of,
            barriers,
        }
    }
}

/// An event of a candidate's key found in step 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Neighbour {
    /// Index into [`Keys::ranges`].
    pub key: usize,
    pub event_id: i64,
    pub priority: i32,
    /// Ready but waiting for its retry time.
    pub waiting: bool,
}

/// What a claim does with its candidates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Indices into the candidates of those claimed, in candidate order.
    pub claim: Vec<usize>,
    /// Candidates that wait behind an event of their key: (event id, the event it waits for).
    pub hold: Vec<(i64, i64)>,
    /// Keys whose run stops at an event of a lower priority than a candidate behind it: their
    /// ready events from that one to the key's last candidate are worth claiming too
    /// (priority inheritance).
    pub inherit: Vec<Inherit>,
}

/// Events of one key to take into a claim: `from` up to `last`, both included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inherit {
    pub object_name: String,
    pub object_key: String,
    pub from: i64,
    pub last: i64,
}

/// Why a key's run stops.
#[derive(Debug, Clone, Copy)]
enum Stop {
    /// At an event in progress elsewhere, or ready but not a candidate.
    Busy,
    /// At an event that waits for its retry: hold what follows behind it.
    Retry(i64),
    /// At an event held behind this claimed candidate: hold what follows behind it too.
    HeldBehind(i64),
}

/// Decides which candidates a claim takes (see the module documentation). `waiters` holds, for
/// candidates that have them, the id of the first event held behind them; `before`, for
/// candidates with an empty key, an earlier event of their object that is still to be
/// delivered and not in this poller's hands.
///
/// An event with an empty key (a `Truncate`) orders all of its object's events around it, whatever
/// their key: it is claimed only once every earlier event of the object is done or in this
/// poller's earlier batches, and alone of its object in its batch (whose keys are delivered in
/// parallel); the object's later events wait for it, held behind it while it waits for a retry.
pub fn plan(
    candidates: &[Event],
    keys: &Keys,
    neighbours: &[Neighbour],
    waiters: &[(i64, i64)],
    before: &[(i64, i64)],
) -> Plan {
    let mut ids: Vec<BTreeSet<i64>> = vec![BTreeSet::new(); keys.ranges.len()];
    for (event, &k) in candidates.iter().zip(&keys.of) {
        ids[k].insert(event.event_id);
    }
    let mut sorted: Vec<Neighbour> = neighbours.to_vec();
    sorted.sort_by_key(|n| (n.key, n.event_id));
    // Per key: the first event that is not a candidate, why the run stops there, and that
    // event's priority.
    let mut stops: Vec<Option<(i64, Stop, i32)>> = vec![None; keys.ranges.len()];
    for n in &sorted {
        if stops[n.key].is_none() && !ids[n.key].contains(&n.event_id) {
            let why = match n.waiting {
                true => Stop::Retry(n.event_id),
                false => Stop::Busy,
            };
            stops[n.key] = Some((n.event_id, why, n.priority));
        }
    }
    let first_waiter: HashMap<i64, i64> = waiters.iter().copied().collect();
    for (event, &k) in candidates.iter().zip(&keys.of) {
        if let Some(&waiter) = first_waiter.get(&event.event_id) {
            if stops[k].is_none_or(|(at, _, _)| waiter < at) {
                stops[k] = Some((waiter, Stop::HeldBehind(event.event_id), event.priority));
            }
        }
    }
    // Per object: its empty key's events (`Truncate`s) known to this claim, candidates or not,
    // by id, with whether each is a candidate and whether it waits for a retry.
    let mut barriers: HashMap<&str, Vec<(i64, bool, bool)>> = HashMap::new();
    for (&object, &k) in &keys.barriers {
        let list = barriers.entry(object).or_default();
        list.extend(ids[k].iter().map(|&id| (id, true, false)));
        list.extend(
            sorted
                .iter()
                .filter(|n| n.key == k && !ids[k].contains(&n.event_id))
                .map(|n| (n.event_id, false, n.waiting)),
        );
        list.sort_unstable();
    }
    let blocked: BTreeSet<i64> = before.iter().map(|&(id, _)| id).collect();
    // The earliest claimed event of each object with a key: a `Truncate` after it waits.
    let mut first_keyed: HashMap<&str, i64> = HashMap::new();
    let mut plan = Plan::default();
    // Keys whose run is already asked for: once each, however many candidates it has.
    let mut inheriting = vec![false; keys.ranges.len()];
    let mut decisions: Vec<Option<Stop>> = Vec::with_capacity(candidates.len());
    for (event, &k) in candidates.iter().zip(&keys.of) {
        let decision = match stops[k] {
            Some((at, why, priority)) if event.event_id > at => {
                if matches!(why, Stop::Busy) && priority > event.priority && !inheriting[k] {
                    inheriting[k] = true;
                    plan.inherit.push(Inherit {
                        object_name: event.object_name.clone(),
                        object_key: event.object_key.clone(),
                        from: at,
                        last: keys.ranges[k].last,
                    });
                }
                Some(why)
            }
            _ => None,
        };
        let barrier = match event.object_key.is_empty() {
            true => None,
            false => barriers[event.object_name.as_str()]
                .iter()
                .take_while(|(id, _, _)| *id < event.event_id)
                .next()
                .map(|&(id, candidate, waiting)| match (candidate, waiting) {
                    (false, true) => Stop::Retry(id),
                    _ => Stop::Busy,
                }),
        };
        let decision = decision.or(barrier);
        if decision.is_none() && !event.object_key.is_empty() {
            let first = first_keyed
                .entry(&event.object_name)
                .or_insert(event.event_id);
            *first = (*first).min(event.event_id);
        }
        decisions.push(decision);
    }
    for (i, (event, decision)) in candidates.iter().zip(&mut decisions).enumerate() {
        if decision.is_none() && event.object_key.is_empty() {
            let after_keyed = first_keyed
                .get(event.object_name.as_str())
                .is_some_and(|&first| first < event.event_id);
            if after_keyed || blocked.contains(&event.event_id) {
                *decision = Some(Stop::Busy);
            }
        }
        match decision {
            Some(Stop::Retry(behind) | Stop::HeldBehind(behind)) => {
                plan.hold.push((event.event_id, *behind))
            }
            Some(Stop::Busy) => {}
            None => plan.claim.push(i),
        }
    }
    plan
}

/// What step 2 finds: the neighbours of the candidates' keys, and for candidates with events
/// held behind them, the first of those (the `waiters` of [`plan`]).
pub type Found = (Vec<Neighbour>, Vec<(i64, i64)>);

/// What a store looks up for a claim, inside its claim's transaction (see the module
/// documentation); [`decide`] runs the rest.
pub trait Lookups {
    type Error;

    /// Step 2 for `keys` and the candidates `ids`: the neighbours and the waiters of [`plan`].
    fn neighbours(&mut self, keys: &Keys, ids: &[i64]) -> Result<Found, Self::Error>;

    /// For each `(object, event id)` of a candidate with an empty key: the first event of the
    /// object before it that is still in the event table and not in progress under this claim's
    /// token, if any (the `before` of [`plan`]).
    fn before(&mut self, barriers: &[(&str, i64)]) -> Result<Vec<(i64, i64)>, Self::Error>;

    /// The claimable events of each run (ready and due, or claimed longer ago than the claim
    /// timeout), locked as the candidates are; those another claim holds are passed over.
    fn inherit(&mut self, runs: &[Inherit]) -> Result<Vec<Event>, Self::Error>;
}

/// Steps 2 and 3 of a claim of `candidates`: the candidates, with the events inherited from
/// lower priorities added (while the claim takes no more than `limit` events), and what to do
/// with each.
pub fn decide<L: Lookups>(
    lookups: &mut L,
    mut candidates: Vec<Event>,
    limit: usize,
) -> Result<(Vec<Event>, Plan), L::Error> {
    let plan = look_and_plan(lookups, &candidates)?;
    if plan.inherit.is_empty() {
        return Ok((candidates, plan));
    }
    // Each event once: a candidate already, or found again, it is not taken twice.
    let mut taken: BTreeSet<i64> = candidates.iter().map(|e| e.event_id).collect();
    let inherited: Vec<Event> = lookups
        .inherit(&plan.inherit)?
        .into_iter()
        .filter(|e| taken.insert(e.event_id))
        .collect();
    if inherited.is_empty() {
        return Ok((candidates, plan));
    }
    let original = candidates.len();
    candidates.extend(inherited);
    // Looked up again: an inherited event may have events held behind it (it waited for a
    // retry), which come before the key's later candidates.
    let inheriting = look_and_plan(lookups, &candidates)?;
    if inheriting.claim.len() > limit {
        // Claiming them would pass the limit (`drain --max-events`): the next claim, then.
        candidates.truncate(original);
        return Ok((candidates, plan));
    }
    Ok((candidates, inheriting))
}

/// Steps 2 and 3 for `candidates` as they are.
fn look_and_plan<L: Lookups>(lookups: &mut L, candidates: &[Event]) -> Result<Plan, L::Error> {
    let ids: Vec<i64> = candidates.iter().map(|e| e.event_id).collect();
    let keys = Keys::of(candidates);
    let (neighbours, waiters) = lookups.neighbours(&keys, &ids)?;
    let barriers: Vec<(&str, i64)> = candidates
        .iter()
        .filter(|e| e.object_key.is_empty())
        .map(|e| (e.object_name.as_str(), e.event_id))
        .collect();
    let before = match barriers.is_empty() {
        true => Vec::new(),
        false => lookups.before(&barriers)?,
    };
    Ok(plan(candidates, &keys, &neighbours, &waiters, &before))
}

/// The candidates a plan claims, in candidate order.
pub fn take(candidates: Vec<Event>, plan: &Plan) -> Vec<Event> {
    let mut claimed = vec![false; candidates.len()];
    for &i in &plan.claim {
        claimed[i] = true;
    }
    candidates
        .into_iter()
        .zip(claimed)
        .filter_map(|(event, taken)| taken.then_some(event))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: i64, key: &str) -> Event {
        Event {
            event_id: id,
            object_name: "Thing".into(),
            object_verb: "Update".into(),
            object_key: key.into(),
            priority: 0,
            event_time: String::new(),
            connector_id: None,
            attempts: 0,
            payload: None,
            replay_of: None,
            done_connectors: Vec::new(),
            action: None,
            comment: None,
        }
    }

    /// Plans a claim where the candidates are `(id, key)` and each key's neighbours are the
    /// candidates plus `others` `(id, key, waiting)`; returns the claimed ids and the holds.
    fn run(
        candidates: &[(i64, &str)],
        others: &[(i64, &str, bool)],
        waiters: &[(i64, i64)],
    ) -> (Vec<i64>, Vec<(i64, i64)>) {
        let events: Vec<Event> = candidates.iter().map(|(id, k)| event(*id, k)).collect();
        let keys = Keys::of(&events);
        let key_index = |k: &str| {
            keys.ranges
                .iter()
                .position(|r| r.object_key == k)
                .expect("a candidate's key")
        };
        let mut neighbours: Vec<Neighbour> = candidates
            .iter()
            .map(|(id, k)| Neighbour {
                key: key_index(k),
                event_id: *id,
                priority: 0,
                waiting: false,
            })
            .collect();
        neighbours.extend(others.iter().map(|(id, k, waiting)| Neighbour {
            key: key_index(k),
            event_id: *id,
            priority: 0,
            waiting: *waiting,
        }));
        let plan = plan(&events, &keys, &neighbours, waiters, &[]);
        (
            plan.claim.iter().map(|&i| events[i].event_id).collect(),
            plan.hold,
        )
    }

    #[test]
    fn a_run_of_one_key_is_claimed_whole() {
        let (claimed, held) = run(&[(1, "a"), (2, "a"), (3, "b"), (4, "a")], &[], &[]);
        assert_eq!(claimed, [1, 2, 3, 4]);
        assert!(held.is_empty());
    }

    #[test]
    fn keys_record_their_last_candidate() {
        let events = [event(5, "a"), event(2, "b"), event(9, "a")];
        let keys = Keys::of(&events);
        let lasts: Vec<(&str, i64)> = keys.ranges.iter().map(|r| (r.object_key, r.last)).collect();
        // The object's empty key (a `Truncate`'s) up to its last candidate.
        assert_eq!(lasts, [("a", 9), ("b", 2), ("", 9)]);
    }

    #[test]
    fn an_earlier_event_in_progress_elsewhere_stops_the_key_and_holds_nothing() {
        let (claimed, held) = run(&[(5, "a"), (6, "b"), (7, "a")], &[(3, "a", false)], &[]);
        assert_eq!(claimed, [6]);
        assert!(held.is_empty());
    }

    #[test]
    fn an_event_waiting_for_its_retry_holds_the_candidates_behind_it() {
        let (claimed, held) = run(&[(5, "a"), (6, "b"), (7, "a")], &[(3, "a", true)], &[]);
        assert_eq!(claimed, [6]);
        assert_eq!(held, [(5, 3), (7, 3)]);
    }

    #[test]
    fn a_gap_in_the_middle_of_a_run_cuts_it_there() {
        // Event 3 of key a is locked by another claim (or has a lower priority): 1 and 2 go, 4
        // and 5 stay.
        let (claimed, held) = run(
            &[(1, "a"), (2, "a"), (4, "a"), (5, "a")],
            &[(3, "a", false)],
            &[],
        );
        assert_eq!(claimed, [1, 2]);
        assert!(held.is_empty());
    }

    #[test]
    fn an_event_held_behind_a_candidate_stops_the_run_after_it() {
        // 4 waits behind candidate 2 (held there during an earlier retry of 2): 2 and 3 are
        // claimed, 6 waits behind 2 as well.
        let (claimed, held) = run(&[(2, "a"), (3, "a"), (6, "a"), (7, "b")], &[], &[(2, 4)]);
        assert_eq!(claimed, [2, 3, 7]);
        assert_eq!(held, [(6, 2)]);
    }

    #[test]
    fn the_earliest_reason_to_stop_wins() {
        let (claimed, held) = run(
            &[(2, "a"), (5, "a"), (9, "a")],
            &[(7, "a", true)],
            &[(2, 4)],
        );
        assert_eq!(claimed, [2]);
        assert_eq!(held, [(5, 2), (9, 2)]);
        let (claimed, held) = run(
            &[(2, "a"), (5, "a"), (9, "a")],
            &[(3, "a", true)],
            &[(2, 4)],
        );
        assert_eq!(claimed, [2]);
        assert_eq!(held, [(5, 3), (9, 3)]);
        let (claimed, held) = run(&[(5, "a"), (9, "a")], &[(3, "a", true)], &[(5, 6)]);
        assert!(claimed.is_empty());
        assert_eq!(held, [(5, 3), (9, 3)]);
    }

    #[test]
    fn candidates_out_of_id_order_keep_the_rule() {
        // Claim order is by priority: key a's 8 may come before its 4; both are candidates.
        let (claimed, _) = run(&[(8, "a"), (4, "a"), (6, "b")], &[], &[]);
        assert_eq!(claimed, [8, 4, 6]);
        let (claimed, _) = run(&[(8, "a"), (6, "b")], &[(4, "a", false)], &[]);
        assert_eq!(claimed, [6]);
    }

    /// Plans a claim of `candidates` `(id, object, key, priority)` whose keys also hold the
    /// events `others` `(id, object, key, priority, waiting)`; `before` as for [`plan`].
    fn run_objects(
        candidates: &[(i64, &str, &str, i32)],
        others: &[(i64, &str, &str, i32, bool)],
        before: &[(i64, i64)],
    ) -> Plan {
        let events: Vec<Event> = candidates
            .iter()
            .map(|&(id, object, key, priority)| Event {
                object_name: object.into(),
                priority,
                ..event(id, key)
            })
            .collect();
        let keys = Keys::of(&events);
        let key_index = |o: &str, k: &str| {
            keys.ranges
                .iter()
                .position(|r| r.object_name == o && r.object_key == k)
                .expect("a candidate's key or its object's empty key")
        };
        let mut neighbours: Vec<Neighbour> = events
            .iter()
            .map(|e| Neighbour {
                key: key_index(&e.object_name, &e.object_key),
                event_id: e.event_id,
                priority: e.priority,
                waiting: false,
            })
            .collect();
        neighbours.extend(
            others
                .iter()
                .map(|&(id, o, k, priority, waiting)| Neighbour {
                    key: key_index(o, k),
                    event_id: id,
                    priority,
                    waiting,
                }),
        );
        plan(&events, &keys, &neighbours, &[], before)
    }

    fn claimed(plan: &Plan, candidates: &[(i64, &str, &str, i32)]) -> Vec<i64> {
        plan.claim.iter().map(|&i| candidates[i].0).collect()
    }

    #[test]
    fn a_candidate_behind_a_lower_priority_inherits_its_keys_events() {
        // Key a's 1 and 2 wait at priority 5; its 3 is urgent (0). Without them 3 is not
        // claimed, and the plan asks for 1 to 3 of key a.
        let candidates = [(3, "T", "a", 0), (4, "T", "b", 0)];
        let plan = run_objects(
            &candidates,
            &[(1, "T", "a", 5, false), (2, "T", "a", 5, false)],
            &[],
        );
        assert_eq!(claimed(&plan, &candidates), [4]);
        assert_eq!(
            plan.inherit,
            [Inherit {
                object_name: "T".into(),
                object_key: "a".into(),
                from: 1,
                last: 3
            }]
        );
        // Of the same priority, the earlier event is another poller's: nothing to inherit.
        let plan = run_objects(&candidates, &[(1, "T", "a", 0, false)], &[]);
        assert!(plan.inherit.is_empty());
        // With them inherited, the whole run is claimed.
        let candidates = [
            (3, "T", "a", 0),
            (4, "T", "b", 0),
            (1, "T", "a", 5),
            (2, "T", "a", 5),
        ];
        let plan = run_objects(&candidates, &[], &[]);
        assert_eq!(claimed(&plan, &candidates), [3, 4, 1, 2]);
        assert!(plan.inherit.is_empty());
    }

    #[test]
    fn keys_interleaved_behind_lower_priorities_are_inherited_once_each() {
        // Keys a and b each wait at priority 5 (1 and 2); their urgent events alternate. Each
        // key's run is asked for once: a run asked for twice came back twice from the store,
        // and its events were claimed, delivered and archived twice in one batch.
        let candidates = [
            (3, "T", "a", 0),
            (4, "T", "b", 0),
            (5, "T", "a", 0),
            (6, "T", "b", 0),
        ];
        let plan = run_objects(
            &candidates,
            &[(1, "T", "a", 5, false), (2, "T", "b", 5, false)],
            &[],
        );
        let runs: Vec<(&str, i64, i64)> = plan
            .inherit
            .iter()
            .map(|r| (r.object_key.as_str(), r.from, r.last))
            .collect();
        assert_eq!(runs, [("a", 1, 5), ("b", 2, 6)]);
    }

    /// An event table in memory, looked up as the stores do: `(id, key, priority, held
    /// behind)` rows of the object `Thing`, all ready; `doubling`, every inherited event
    /// returned twice.
    struct Table {
        rows: Vec<(i64, &'static str, i32, Option<i64>)>,
        doubling: bool,
    }

    impl Lookups for Table {
        type Error = ();

        fn neighbours(&mut self, keys: &Keys, ids: &[i64]) -> Result<Found, ()> {
            let mut found = Vec::new();
            for (k, range) in keys.ranges.iter().enumerate() {
                found.extend(
                    self.rows
                        .iter()
                        .filter(|r| r.1 == range.object_key && r.0 <= range.last && r.3.is_none())
                        .map(|r| Neighbour {
                            key: k,
                            event_id: r.0,
                            priority: r.2,
                            waiting: false,
                        }),
                );
            }
            let waiters = ids
                .iter()
                .filter_map(|&id| {
                    let first = self.rows.iter().filter(|r| r.3 == Some(id)).map(|r| r.0);
                    Some((id, first.min()?))
                })
                .collect();
            Ok((found, waiters))
        }

        fn before(&mut self, _: &[(&str, i64)]) -> Result<Vec<(i64, i64)>, ()> {
            Ok(Vec::new())
        }

        fn inherit(&mut self, runs: &[Inherit]) -> Result<Vec<Event>, ()> {
            let mut events = Vec::new();
            for run in runs {
                for r in &self.rows {
                    if r.1 == run.object_key
                        && (run.from..=run.last).contains(&r.0)
                        && r.3.is_none()
                    {
                        let e = Event {
                            priority: r.2,
                            ..event(r.0, r.1)
                        };
                        if self.doubling {
                            events.push(e.clone());
                        }
                        events.push(e);
                    }
                }
            }
            Ok(events)
        }
    }

    /// What a claim of the table's events `candidates` takes, in id order.
    fn decided(table: &mut Table, candidates: &[i64]) -> Vec<i64> {
        let events = candidates
            .iter()
            .map(|&id| {
                let r = table.rows.iter().find(|r| r.0 == id).unwrap();
                Event {
                    priority: r.2,
                    ..event(r.0, r.1)
                }
            })
            .collect();
        let (events, plan) = decide(table, events, 100).unwrap();
        let mut claimed: Vec<i64> = take(events, &plan).iter().map(|e| e.event_id).collect();
        claimed.sort_unstable();
        claimed
    }

    #[test]
    fn an_event_found_twice_is_claimed_once() {
        let mut table = Table {
            rows: vec![(1, "a", 5, None), (2, "a", 0, None), (3, "a", 0, None)],
            doubling: true,
        };
        assert_eq!(decided(&mut table, &[2, 3]), [1, 2, 3]);
    }

    #[test]
    fn an_inherited_event_keeps_the_events_held_behind_it_first() {
        // 1 was retried and 2 is held behind it; 3 and the urgent 4 came after. A claim of 4
        // inherits 1 and 3: 1 is claimed, but 3 and 4 wait for 2, which 1's delivery releases.
        // (The soak with urgent events saw 3 and 4 delivered before 2.)
        let mut table = Table {
            rows: vec![
                (1, "a", 5, None),
                (2, "a", 5, Some(1)),
                (3, "a", 5, None),
                (4, "a", 0, None),
            ],
            doubling: false,
        };
        assert_eq!(decided(&mut table, &[4]), [1]);
    }

    #[test]
    fn a_truncate_orders_its_objects_events_around_it() {
        // 1 (key a) before the truncate 2: 1 is claimed, 2 waits for a later batch, and 3
        // (key b, after it) waits for 2. Another object goes on.
        let candidates = [
            (1, "T", "a", 0),
            (2, "T", "", 0),
            (3, "T", "b", 0),
            (4, "U", "x", 0),
        ];
        let plan = run_objects(&candidates, &[], &[]);
        assert_eq!(claimed(&plan, &candidates), [1, 4]);
        // Alone of its object, the truncate is claimed; what follows waits.
        let candidates = [(2, "T", "", 0), (3, "T", "b", 0)];
        assert_eq!(
            claimed(&run_objects(&candidates, &[], &[]), &candidates),
            [2]
        );
        // An earlier event of the object still to be delivered elsewhere: it waits too.
        assert!(claimed(&run_objects(&candidates, &[], &[(2, 1)]), &candidates).is_empty());
        // A truncate not among the candidates (another poller's) stops every later key...
        let candidates = [(3, "T", "b", 0), (5, "T", "c", 0), (1, "T", "z", 0)];
        let plan = run_objects(&candidates, &[(2, "T", "", 0, false)], &[]);
        assert_eq!(claimed(&plan, &candidates), [1]);
        assert!(plan.hold.is_empty());
        // ...and holds them behind it while it waits for a retry.
        let plan = run_objects(&candidates, &[(2, "T", "", 0, true)], &[]);
        assert_eq!(claimed(&plan, &candidates), [1]);
        assert_eq!(plan.hold, [(3, 2), (5, 2)]);
    }
}
