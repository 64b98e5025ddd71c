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
//!    that are not held and not in progress under this poller's own token, in event-id order;
//!    and for each candidate, the first event held behind it, if any.
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

/// The distinct keys of a claim's candidates.
#[derive(Debug, Clone)]
pub struct Keys<'a> {
    pub ranges: Vec<KeyRange<'a>>,
    /// For each candidate, the index of its key in `ranges`.
    of: Vec<usize>,
}

impl<'a> Keys<'a> {
    pub fn of(candidates: &'a [Event]) -> Keys<'a> {
        let mut index: HashMap<(&str, &str), usize> = HashMap::new();
        let mut ranges: Vec<KeyRange> = Vec::new();
        let of = candidates
            .iter()
            .map(|e| {
                let i = *index
                    .entry((&e.object_name, &e.object_key))
                    .or_insert_with(|| {
                        ranges.push(KeyRange {
                            object_name: &e.object_name,
                            object_key: &e.object_key,
                            last: e.event_id,
                        });
                        ranges.len() - 1
                    });
                ranges[i].last = ranges[i].last.max(e.event_id);
                i
            })
            .collect();
        Keys { ranges, of }
    }
}

/// An event of a candidate's key found in step 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Neighbour {
    /// Index into [`Keys::ranges`].
    pub key: usize,
    pub event_id: i64,
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
/// candidates that have them, the id of the first event held behind them.
pub fn plan(
    candidates: &[Event],
    keys: &Keys,
    neighbours: &[Neighbour],
    waiters: &[(i64, i64)],
) -> Plan {
    let mut ids: Vec<BTreeSet<i64>> = vec![BTreeSet::new(); keys.ranges.len()];
    for (event, &k) in candidates.iter().zip(&keys.of) {
        ids[k].insert(event.event_id);
    }
    let mut sorted: Vec<Neighbour> = neighbours.to_vec();
    sorted.sort_by_key(|n| (n.key, n.event_id));
    // Per key: the first event that is not a candidate, and why the run stops there.
    let mut stops: Vec<Option<(i64, Stop)>> = vec![None; keys.ranges.len()];
    for n in &sorted {
        if stops[n.key].is_none() && !ids[n.key].contains(&n.event_id) {
            let why = match n.waiting {
                true => Stop::Retry(n.event_id),
                false => Stop::Busy,
            };
            stops[n.key] = Some((n.event_id, why));
        }
    }
    let first_waiter: HashMap<i64, i64> = waiters.iter().copied().collect();
    for (event, &k) in candidates.iter().zip(&keys.of) {
        if let Some(&waiter) = first_waiter.get(&event.event_id) {
            if stops[k].is_none_or(|(at, _)| waiter < at) {
                stops[k] = Some((waiter, Stop::HeldBehind(event.event_id)));
            }
        }
    }
    let mut plan = Plan::default();
    for (i, (event, &k)) in candidates.iter().zip(&keys.of).enumerate() {
        match stops[k] {
            Some((at, why)) if event.event_id > at => match why {
                Stop::Retry(behind) | Stop::HeldBehind(behind) => {
                    plan.hold.push((event.event_id, behind))
                }
                Stop::Busy => {}
            },
            _ => plan.claim.push(i),
        }
    }
    plan
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
                waiting: false,
            })
            .collect();
        neighbours.extend(others.iter().map(|(id, k, waiting)| Neighbour {
            key: key_index(k),
            event_id: *id,
            waiting: *waiting,
        }));
        let plan = plan(&events, &keys, &neighbours, waiters);
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
        assert_eq!(lasts, [("a", 9), ("b", 2)]);
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
}
