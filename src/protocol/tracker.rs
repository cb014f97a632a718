//! [`RoundTracker`]: the group's side of the protocol — round numbering, membership, counting,
//! timeouts and assembly of completed rounds.
//!
//! For each open round the tracker keeps two numbers: `pending`, the members that still owe a
//! record, and `balance`, messages sent before the senders' cuts minus messages received
//! before the receivers' cuts minus in-flight copies and drops seen so far. A round is complete
//! when both are zero. Memory is O(live nodes + open rounds × their content): a closed round
//! leaves nothing behind, and late reports of it are ignored.
//!
//! | input                                      | meaning                                         |
//! |--------------------------------------------|-------------------------------------------------|
//! | [`RoundTracker::register_outside`]         | a node spawned from outside the group joins     |
//! | [`RoundTracker::register_child`]           | a node spawned by a node joins                  |
//! | [`RoundTracker::handle_start`]             | start a round now, with a deadline              |
//! | [`RoundTracker::handle_record`]            | a node's [`Record`]                             |
//! | [`RoundTracker::handle_late`]              | a node's [`Late`] message                       |
//! | [`RoundTracker::handle_left`] / [`handle_panicked`](RoundTracker::handle_panicked) | a node is gone |
//! | [`RoundTracker::handle_abort`]             | give up on a round                              |
//! | [`RoundTracker::handle_timeout`]           | the time is now `now`                           |
//!
//! | output ([`RoundTracker::poll`])            | what the shell must do                          |
//! |--------------------------------------------|-------------------------------------------------|
//! | [`TrackerOutput::StartAll`]                | ask every live node to record the round         |
//! | [`TrackerOutput::StartNode`]               | ask one (new) node to record the round          |
//! | [`TrackerOutput::Completed`]               | hand the [`CompletedRound`] to whoever waits    |
//! | [`TrackerOutput::Failed`]                  | tell whoever waits why the round failed         |
//! | [`TrackerOutput::Closed`]                  | rounds up to `through` are finished (a hint for nodes) |
//!
//! Notes from one node must reach the tracker in the order the node emitted them; notes of
//! different nodes, and messages between nodes, may be reordered in any way.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use super::node::{Late, NodeOutput, Record};
use super::{NodeId, RoundId};

/// Settings of a [`RoundTracker`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TrackerConfig {
    /// Rounds that may be open at once; [`RoundTracker::handle_start`] refuses more.
    pub max_concurrent: usize,
    /// The number of the first round (after a restore: the snapshot's round plus one).
    pub first_round: RoundId,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        TrackerConfig {
            max_concurrent: 16,
            first_round: 1,
        }
    }
}

/// Why a round failed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RoundFailure {
    /// The deadline passed. `missing` are the members that had not reported; `unaccounted`
    /// counts messages sent before the cut whose arrival was never reported (lost in transit,
    /// or still queued behind a busy node).
    Timeout {
        /// Members without a record, by id.
        missing: Vec<NodeId>,
        /// In-flight messages not yet seen.
        unaccounted: i64,
    },
    /// A node could not record its state or a message.
    NodeFailed {
        /// The node.
        node: NodeId,
        /// What went wrong.
        reason: String,
    },
    /// A member panicked before it recorded the round.
    NodePanicked {
        /// The node.
        node: NodeId,
        /// The panic message.
        reason: String,
    },
    /// More messages were reported in flight than were sent: a message was counted twice
    /// (a bug, or a message duplicated in transit).
    Unbalanced {
        /// How many too many.
        excess: i64,
    },
    /// [`RoundTracker::handle_abort`] was called.
    Aborted,
    /// `receiver` got a message that `sender` sent before its cut of the round, but `receiver`
    /// is not a member of the round (it was born after its parent's cut): `sender` must have
    /// learned its address outside the group's messages (a shared map, the group's registry).
    /// The message belongs nowhere in the cut, so the round cannot be trusted.
    UntrackedAddress {
        /// The node that got the message.
        receiver: NodeId,
        /// The node that sent it.
        sender: NodeId,
    },
}

/// Why a round cannot start.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum StartError {
    /// As many rounds as [`TrackerConfig::max_concurrent`] are already open.
    TooManyRounds {
        /// The limit.
        limit: usize,
    },
    /// Round numbers are used up (`u64::MAX` rounds).
    Exhausted,
}

/// A completed round: the records of its members and the messages in flight at its cut.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CompletedRound<S, P> {
    /// The round.
    pub round: RoundId,
    /// When it started (the `now` given to [`RoundTracker::handle_start`]).
    pub started: Instant,
    /// One record per member, in the order they arrived.
    pub records: Vec<(NodeId, Record<S>)>,
    /// `(sender, receiver, message)` for every message in flight at the cut, in the order
    /// the copies arrived.
    pub in_flight: Vec<(NodeId, NodeId, P)>,
}

/// An output of [`RoundTracker`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TrackerOutput<S, P> {
    /// Ask every live node to record `round`.
    StartAll {
        /// The round.
        round: RoundId,
    },
    /// Ask `node` (which just joined) to record `round` and every round before it.
    StartNode {
        /// The node.
        node: NodeId,
        /// The highest open round.
        round: RoundId,
    },
    /// A round completed.
    Completed(CompletedRound<S, P>),
    /// A round failed; it is forgotten.
    Failed {
        /// The round.
        round: RoundId,
        /// Why.
        failure: RoundFailure,
    },
    /// Every round up to `through` is finished.
    Closed {
        /// The watermark.
        through: RoundId,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Member {
    /// Member of the rounds after this one.
    joined: RoundId,
    /// Highest round it has reported.
    reported: RoundId,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct OpenRound<S, P> {
    started: Instant,
    deadline: Instant,
    pending: u64,
    balance: i64,
    records: Vec<(NodeId, Record<S>)>,
    in_flight: Vec<(NodeId, NodeId, P)>,
}

/// Rounds, membership and counting for one group. `S` is a recorded state, `P` a recorded
/// message; both are cloned when one record or message belongs to several open rounds.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RoundTracker<S, P> {
    config: TrackerConfig,
    next_round: RoundId,
    members: BTreeMap<NodeId, Member>,
    open: BTreeMap<RoundId, OpenRound<S, P>>,
    /// What every round started from now on begins its balance with: the counters of nodes
    /// that are gone (sent − received) minus the messages their tombstones dropped.
    dead_net: i64,
    closed_through: RoundId,
    out: VecDeque<TrackerOutput<S, P>>,
}

/// `sent - received` of one node, as a signed contribution to a balance.
fn net(sent: u64, received: u64) -> i64 {
    sent.wrapping_sub(received) as i64
}

impl<S: Clone, P: Clone> RoundTracker<S, P> {
    /// A tracker with no members and no rounds.
    pub fn new(config: TrackerConfig) -> Self {
        let first = config.first_round.max(1);
        RoundTracker {
            config,
            next_round: first,
            members: BTreeMap::new(),
            open: BTreeMap::new(),
            dead_net: 0,
            closed_through: first - 1,
            out: VecDeque::new(),
        }
    }

    /// A tracker for a group restored from the snapshot of round `round`, in which `in_flight`
    /// messages were in flight: they are put back with color `round` by a sender that is gone.
    pub fn restored(config: TrackerConfig, round: RoundId, in_flight: u64) -> Self {
        let mut t = Self::new(TrackerConfig {
            first_round: round.saturating_add(1),
            ..config
        });
        t.dead_net = net(in_flight, 0);
        t
    }

    /// Registers a node restored from the snapshot of round `round` (the tracker must have
    /// been made by [`restored`](Self::restored) with that round). Returns its epoch.
    pub fn register_restored(&mut self, node: NodeId, round: RoundId) -> RoundId {
        let epoch = round.min(self.next_round - 1);
        self.add_member(node, epoch);
        epoch
    }

    /// A node spawned from outside the group joins: it becomes a member of every open round
    /// and of every later one. Returns its epoch, for [`NodeCore::new`](super::NodeCore::new).
    /// When rounds are open, a [`TrackerOutput::StartNode`] follows.
    ///
    /// Returns `None` when `node` is already a member.
    pub fn register_outside(&mut self, node: NodeId) -> Option<RoundId> {
        self.register_outside_after(node, 0)
    }

    /// [`register_outside`](Self::register_outside), but the node is a member of no round up to
    /// `not_before`: for a node that takes the place of one that recorded those rounds and then
    /// left (a restart under the same name), so that no round holds both.
    pub fn register_outside_after(&mut self, node: NodeId, not_before: RoundId) -> Option<RoundId> {
        if self.members.contains_key(&node) {
            return None;
        }
        let default = match self.open.keys().next() {
            Some(first_open) => first_open - 1,
            None => self.next_round - 1,
        };
        let epoch = default.max(not_before.min(self.next_round - 1));
        self.add_member(node, epoch);
        if let Some((&last_open, _)) = self.open.range(epoch + 1..).next_back() {
            self.out.push_back(TrackerOutput::StartNode {
                node,
                round: last_open,
            });
        }
        Some(epoch)
    }

    /// A node spawned by a node of epoch `parent_epoch`, inside the parent's handler, joins:
    /// it is a member of the rounds its parent had not recorded. Returns its epoch (the
    /// parent's), or `None` when `node` is already a member. When such a round is open (its
    /// start went out before the child existed), a [`TrackerOutput::StartNode`] follows.
    ///
    /// Must reach the tracker before any note the parent emits after the spawn.
    pub fn register_child(&mut self, node: NodeId, parent_epoch: RoundId) -> Option<RoundId> {
        if self.members.contains_key(&node) {
            return None;
        }
        debug_assert!(
            parent_epoch < self.next_round,
            "a parent cannot be ahead of the tracker"
        );
        let epoch = parent_epoch.min(self.next_round - 1);
        self.add_member(node, epoch);
        if let Some((&last_open, _)) = self.open.range(epoch + 1..).next_back() {
            self.out.push_back(TrackerOutput::StartNode {
                node,
                round: last_open,
            });
        }
        Some(epoch)
    }

    fn add_member(&mut self, node: NodeId, epoch: RoundId) {
        self.members.insert(
            node,
            Member {
                joined: epoch,
                reported: epoch,
            },
        );
        for (_, round) in self.open.range_mut(epoch + 1..) {
            round.pending += 1;
        }
    }

    /// Starts a round at `now`, to fail at `now + timeout` unless complete. Emits
    /// [`TrackerOutput::StartAll`] (and [`TrackerOutput::Completed`] at once for a group with
    /// nothing to wait for).
    pub fn handle_start(&mut self, now: Instant, timeout: Duration) -> Result<RoundId, StartError> {
        if self.open.len() >= self.config.max_concurrent {
            return Err(StartError::TooManyRounds {
                limit: self.config.max_concurrent,
            });
        }
        let round = self.next_round;
        self.next_round = round.checked_add(1).ok_or(StartError::Exhausted)?;
        let deadline = now
            .checked_add(timeout)
            .unwrap_or(now + Duration::from_secs(86_400 * 365));
        self.open.insert(
            round,
            OpenRound {
                started: now,
                deadline,
                pending: self.members.len() as u64,
                balance: self.dead_net,
                records: Vec::new(),
                in_flight: Vec::new(),
            },
        );
        self.out.push_back(TrackerOutput::StartAll { round });
        self.check(round);
        Ok(round)
    }

    /// A node's record of rounds `first..=last`. Records of rounds no longer open are ignored,
    /// as is a record from a node that is not a member.
    pub fn handle_record(&mut self, node: NodeId, record: Record<S>) {
        let Some(member) = self.members.get_mut(&node) else {
            return;
        };
        member.reported = member.reported.max(record.last);
        let joined = member.joined;
        let rounds: Vec<RoundId> = self
            .open
            .range(record.first.max(joined + 1)..=record.last)
            .map(|(r, _)| *r)
            .collect();
        let Some((&last, rest)) = rounds.split_last() else {
            return;
        };
        if let Err(reason) = &record.state {
            let reason = reason.clone();
            for r in rounds {
                self.fail(
                    r,
                    RoundFailure::NodeFailed {
                        node,
                        reason: reason.clone(),
                    },
                );
            }
            return;
        }
        let contribution = net(record.sent, record.received);
        for &r in rest.iter() {
            if let Some(round) = self.open.get_mut(&r) {
                debug_assert!(round.pending > 0, "a record nobody owed");
                round.pending = round.pending.saturating_sub(1);
                round.balance = round.balance.wrapping_add(contribution);
                round.records.push((node, record.clone()));
            }
        }
        if let Some(round) = self.open.get_mut(&last) {
            debug_assert!(round.pending > 0, "a record nobody owed");
            round.pending = round.pending.saturating_sub(1);
            round.balance = round.balance.wrapping_add(contribution);
            round.records.push((node, record));
        }
        for r in rounds {
            self.check(r);
        }
    }

    /// One output of node `node`'s [`NodeCore`](super::NodeCore), in the order it was polled:
    /// the usual way to connect the two machines (it calls the matching `handle_*` below).
    pub fn handle_note(&mut self, node: NodeId, note: NodeOutput<S, P>) {
        match note {
            NodeOutput::Record(r) => self.handle_record(node, r),
            NodeOutput::Late(l) => self.handle_late(node, l),
            NodeOutput::Left {
                epoch,
                sent,
                received,
            } => self.handle_left(node, epoch, sent, received),
            NodeOutput::Panicked {
                epoch,
                sent,
                received,
                reason,
            } => self.handle_panicked(node, epoch, sent, received, reason),
        }
    }

    /// Node `receiver` reports a message that arrived late, or at its tombstone.
    pub fn handle_late(&mut self, receiver: NodeId, late: Late<P>) {
        if !late.alive {
            // Every round not started yet counts this message as sent (before its sender's
            // cut) and as gone (dropped by a tombstone): it cancels out of their balance.
            self.dead_net = self.dead_net.wrapping_sub(1);
        }
        let rounds: Vec<RoundId> = self
            .open
            .range(late.color + 1..)
            .map(|(r, _)| *r)
            .filter(|&r| r <= late.joined || r <= late.epoch || !late.alive)
            .collect();
        for r in rounds {
            if r <= late.joined {
                // Sent before the sender's cut to a node that is not a member: only an address
                // that travelled outside the group's messages can do that (an address sent in
                // a message carries a color that moves the receiver past the child's birth).
                self.fail(
                    r,
                    RoundFailure::UntrackedAddress {
                        receiver,
                        sender: late.from,
                    },
                );
                continue;
            }
            let member_copy = r <= late.epoch;
            if member_copy {
                match &late.payload {
                    Some(Ok(p)) => {
                        if let Some(round) = self.open.get_mut(&r) {
                            round.in_flight.push((late.from, receiver, p.clone()));
                        }
                    }
                    Some(Err(reason)) => {
                        self.fail(
                            r,
                            RoundFailure::NodeFailed {
                                node: receiver,
                                reason: reason.clone(),
                            },
                        );
                        continue;
                    }
                    None => {
                        // The node thought every round here was closed, yet this one is open:
                        // the copy is missing, so the round cannot be trusted.
                        self.fail(
                            r,
                            RoundFailure::NodeFailed {
                                node: receiver,
                                reason: "an in-flight message was not copied".into(),
                            },
                        );
                        continue;
                    }
                }
            }
            if let Some(round) = self.open.get_mut(&r) {
                round.balance = round.balance.wrapping_sub(1);
            }
            self.check(r);
        }
    }

    /// Node `node` stopped at epoch `epoch` with these counters: it leaves every open round it
    /// had not recorded, and its counters count in them and in every later round.
    pub fn handle_left(&mut self, node: NodeId, epoch: RoundId, sent: u64, received: u64) {
        if self.members.remove(&node).is_none() {
            return;
        }
        let contribution = net(sent, received);
        self.dead_net = self.dead_net.wrapping_add(contribution);
        let rounds: Vec<RoundId> = self.open.range(epoch + 1..).map(|(r, _)| *r).collect();
        for r in rounds {
            if let Some(round) = self.open.get_mut(&r) {
                debug_assert!(round.pending > 0, "a departure nobody waited for");
                round.pending = round.pending.saturating_sub(1);
                round.balance = round.balance.wrapping_add(contribution);
            }
            self.check(r);
        }
    }

    /// Node `node`'s actor panicked at epoch `epoch`: every open round it had not recorded
    /// fails; later rounds go on without it.
    pub fn handle_panicked(
        &mut self,
        node: NodeId,
        epoch: RoundId,
        sent: u64,
        received: u64,
        reason: String,
    ) {
        if self.members.remove(&node).is_none() {
            return;
        }
        self.dead_net = self.dead_net.wrapping_add(net(sent, received));
        let rounds: Vec<RoundId> = self.open.range(epoch + 1..).map(|(r, _)| *r).collect();
        for r in rounds {
            self.fail(
                r,
                RoundFailure::NodePanicked {
                    node,
                    reason: reason.clone(),
                },
            );
        }
    }

    /// Gives up on `round` (if open).
    pub fn handle_abort(&mut self, round: RoundId) {
        self.fail(round, RoundFailure::Aborted);
    }

    /// Fails every open round whose deadline is at or before `now`, naming the members that
    /// had not reported.
    pub fn handle_timeout(&mut self, now: Instant) {
        let expired: Vec<RoundId> = self
            .open
            .iter()
            .filter(|(_, o)| o.deadline <= now)
            .map(|(r, _)| *r)
            .collect();
        for r in expired {
            let missing = self
                .members
                .iter()
                .filter(|(_, m)| m.joined < r && m.reported < r)
                .map(|(id, _)| *id)
                .collect();
            let unaccounted = self.open.get(&r).map_or(0, |o| o.balance);
            self.fail(
                r,
                RoundFailure::Timeout {
                    missing,
                    unaccounted,
                },
            );
        }
    }

    /// The earliest deadline of an open round: call [`handle_timeout`](Self::handle_timeout)
    /// then.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.open.values().map(|o| o.deadline).min()
    }

    /// The next output.
    pub fn poll(&mut self) -> Option<TrackerOutput<S, P>> {
        self.out.pop_front()
    }

    /// Rounds open now.
    pub fn open_rounds(&self) -> impl Iterator<Item = RoundId> + '_ {
        self.open.keys().copied()
    }

    /// Live members now.
    pub fn members(&self) -> usize {
        self.members.len()
    }

    /// Whether `node` is a live member.
    pub fn is_member(&self, node: NodeId) -> bool {
        self.members.contains_key(&node)
    }

    /// The number the next round will get.
    pub fn next_round(&self) -> RoundId {
        self.next_round
    }

    /// Every round up to this one is finished.
    pub fn closed_through(&self) -> RoundId {
        self.closed_through
    }

    fn check(&mut self, r: RoundId) {
        let Some(round) = self.open.get(&r) else {
            return;
        };
        if round.pending > 0 {
            return;
        }
        if round.balance < 0 {
            let excess = -round.balance;
            self.fail(r, RoundFailure::Unbalanced { excess });
        } else if round.balance == 0 {
            if let Some(round) = self.open.remove(&r) {
                self.out.push_back(TrackerOutput::Completed(CompletedRound {
                    round: r,
                    started: round.started,
                    records: round.records,
                    in_flight: round.in_flight,
                }));
            }
            self.update_closed();
        }
    }

    fn fail(&mut self, r: RoundId, failure: RoundFailure) {
        if self.open.remove(&r).is_some() {
            self.out
                .push_back(TrackerOutput::Failed { round: r, failure });
            self.update_closed();
        }
    }

    fn update_closed(&mut self) {
        let through = match self.open.keys().next() {
            Some(first) => first - 1,
            None => self.next_round - 1,
        };
        if through > self.closed_through {
            self.closed_through = through;
            self.out.push_back(TrackerOutput::Closed { through });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{NodeCore, NodeOutput};

    type Tracker = RoundTracker<&'static str, u32>;
    type Core = NodeCore<&'static str, u32>;

    fn t0() -> Instant {
        Instant::now()
    }

    const SEC: Duration = Duration::from_secs(1);

    /// Feeds every output of `node` to the tracker.
    fn flush(t: &mut Tracker, id: NodeId, node: &mut Core) {
        while let Some(o) = node.poll() {
            t.handle_note(id, o);
        }
    }

    fn outputs(t: &mut Tracker) -> Vec<TrackerOutput<&'static str, u32>> {
        std::iter::from_fn(|| t.poll()).collect()
    }

    fn completed(t: &mut Tracker) -> Vec<CompletedRound<&'static str, u32>> {
        outputs(t)
            .into_iter()
            .filter_map(|o| match o {
                TrackerOutput::Completed(c) => Some(c),
                _ => None,
            })
            .collect()
    }

    fn failures(t: &mut Tracker) -> Vec<(RoundId, RoundFailure)> {
        outputs(t)
            .into_iter()
            .filter_map(|o| match o {
                TrackerOutput::Failed { round, failure } => Some((round, failure)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn empty_group_completes_at_once() {
        let mut t = Tracker::new(TrackerConfig::default());
        assert_eq!(t.handle_start(t0(), SEC), Ok(1));
        let done = completed(&mut t);
        assert_eq!(done.len(), 1);
        assert!(done[0].records.is_empty());
    }

    #[test]
    fn cap_on_concurrent_rounds() {
        let mut t = Tracker::new(TrackerConfig {
            max_concurrent: 2,
            first_round: 1,
        });
        t.register_outside(NodeId(0));
        t.handle_start(t0(), SEC).unwrap();
        t.handle_start(t0(), SEC).unwrap();
        assert_eq!(
            t.handle_start(t0(), SEC),
            Err(StartError::TooManyRounds { limit: 2 })
        );
    }

    #[test]
    fn outside_join_is_member_of_open_rounds_and_is_started() {
        let mut t = Tracker::new(TrackerConfig::default());
        let a = NodeId(0);
        let mut na = Core::new(t.register_outside(a).unwrap());
        let r = t.handle_start(t0(), SEC).unwrap();
        outputs(&mut t);
        let b = NodeId(1);
        let eb = t.register_outside(b).unwrap();
        assert_eq!(eb, r - 1);
        assert_eq!(
            outputs(&mut t),
            vec![TrackerOutput::StartNode { node: b, round: r }]
        );
        let mut nb = Core::new(eb);
        na.handle_start(r, || Ok("a"));
        flush(&mut t, a, &mut na);
        assert!(completed(&mut t).is_empty(), "b owes a record");
        nb.handle_start(r, || Ok("b"));
        flush(&mut t, b, &mut nb);
        assert_eq!(completed(&mut t)[0].records.len(), 2);
    }

    #[test]
    fn child_is_member_of_rounds_its_parent_had_not_recorded() {
        let mut t = Tracker::new(TrackerConfig::default());
        let p = NodeId(0);
        let mut np = Core::new(t.register_outside(p).unwrap());
        let r1 = t.handle_start(t0(), SEC).unwrap();
        let r2 = t.handle_start(t0(), SEC).unwrap();
        np.handle_start(r1, || Ok("p1"));
        flush(&mut t, p, &mut np);
        assert_eq!(completed(&mut t).len(), 1, "round 1 done");
        // The parent (epoch 1) spawns a child: member of round 2 only, and told to record it
        // (round 2's start went out before the child existed).
        let c = NodeId(1);
        let mut nc = Core::new(t.register_child(c, np.color()).unwrap());
        assert_eq!(
            outputs(&mut t),
            vec![TrackerOutput::StartNode { node: c, round: r2 }]
        );
        np.handle_start(r2, || Ok("p2"));
        flush(&mut t, p, &mut np);
        assert!(completed(&mut t).is_empty(), "the child owes round 2");
        nc.handle_start(r2, || Ok("c2"));
        flush(&mut t, c, &mut nc);
        let done = completed(&mut t);
        assert_eq!(done[0].round, r2);
        assert_eq!(done[0].records.len(), 2);
    }

    #[test]
    fn stop_before_recording_leaves_the_round_and_its_messages_still_count() {
        let mut t = Tracker::new(TrackerConfig::default());
        let (a, b) = (NodeId(0), NodeId(1));
        let mut na = Core::new(t.register_outside(a).unwrap());
        let mut nb = Core::new(t.register_outside(b).unwrap());
        let r = t.handle_start(t0(), SEC).unwrap();
        // a sends to b (color 0), then stops before recording.
        let color = na.color();
        na.handle_sent(1);
        na.handle_stop();
        flush(&mut t, a, &mut na);
        nb.handle_start(r, || Ok("b"));
        flush(&mut t, b, &mut nb);
        assert!(completed(&mut t).is_empty(), "a's message is in flight");
        assert!(nb.handle_message(color, a, || Ok(5), || Ok("x")));
        flush(&mut t, b, &mut nb);
        let done = completed(&mut t);
        assert_eq!(done[0].records.len(), 1, "only b is in the round");
        assert_eq!(done[0].in_flight, vec![(a, b, 5)]);
    }

    #[test]
    fn messages_dropped_by_a_tombstone_balance_later_rounds() {
        let mut t = Tracker::new(TrackerConfig::default());
        let (a, b) = (NodeId(0), NodeId(1));
        let mut na = Core::new(t.register_outside(a).unwrap());
        let mut nb = Core::new(t.register_outside(b).unwrap());
        nb.handle_stop();
        flush(&mut t, b, &mut nb);
        // a sends to the stopped b; the round starts before the tombstone sees it.
        let color = na.color();
        na.handle_sent(1);
        let r = t.handle_start(t0(), SEC).unwrap();
        na.handle_start(r, || Ok("a"));
        flush(&mut t, a, &mut na);
        assert!(completed(&mut t).is_empty());
        assert!(!nb.handle_message(color, a, || Ok(1), || Ok("-")));
        flush(&mut t, b, &mut nb);
        let done = completed(&mut t);
        assert_eq!(done.len(), 1);
        assert!(
            done[0].in_flight.is_empty(),
            "a message to a gone node is not in flight"
        );
        // A later round balances too.
        let r2 = t.handle_start(t0(), SEC).unwrap();
        na.handle_start(r2, || Ok("a"));
        flush(&mut t, a, &mut na);
        assert_eq!(completed(&mut t).len(), 1);
    }

    #[test]
    fn panic_fails_only_the_rounds_owed() {
        let mut t = Tracker::new(TrackerConfig::default());
        let (a, b) = (NodeId(0), NodeId(1));
        let mut na = Core::new(t.register_outside(a).unwrap());
        let mut nb = Core::new(t.register_outside(b).unwrap());
        let r1 = t.handle_start(t0(), SEC).unwrap();
        let r2 = t.handle_start(t0(), SEC).unwrap();
        outputs(&mut t);
        nb.handle_start(r1, || Ok("b1"));
        flush(&mut t, b, &mut nb);
        nb.handle_panic("boom".into());
        flush(&mut t, b, &mut nb);
        let f = failures(&mut t);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].0, r2);
        na.handle_start(r2, || Ok("a"));
        flush(&mut t, a, &mut na);
        let done = completed(&mut t);
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].round, r1);
        // Later rounds go on without b.
        let r3 = t.handle_start(t0(), SEC).unwrap();
        na.handle_start(r3, || Ok("a"));
        flush(&mut t, a, &mut na);
        assert_eq!(completed(&mut t).len(), 1);
    }

    #[test]
    fn timeout_names_only_members_without_a_record() {
        let mut t = Tracker::new(TrackerConfig::default());
        let (a, b) = (NodeId(0), NodeId(1));
        let mut na = Core::new(t.register_outside(a).unwrap());
        t.register_outside(b).unwrap();
        let start = t0();
        let r = t.handle_start(start, SEC).unwrap();
        na.handle_sent(2);
        na.handle_start(r, || Ok("a"));
        flush(&mut t, a, &mut na);
        outputs(&mut t);
        t.handle_timeout(start + SEC / 2);
        assert!(failures(&mut t).is_empty());
        assert_eq!(t.poll_timeout(), Some(start + SEC));
        t.handle_timeout(start + SEC);
        assert_eq!(
            failures(&mut t),
            vec![(
                r,
                RoundFailure::Timeout {
                    missing: vec![b],
                    unaccounted: 2
                }
            )]
        );
        // Nothing is left of it: a late record is ignored.
        assert_eq!(t.open_rounds().count(), 0);
        assert_eq!(t.closed_through(), r);
    }

    #[test]
    fn aborted_rounds_leave_nothing_and_are_not_rerecorded() {
        let mut t = Tracker::new(TrackerConfig::default());
        let a = NodeId(0);
        let mut na = Core::new(t.register_outside(a).unwrap());
        for _ in 0..1000 {
            let r = t.handle_start(t0(), SEC).unwrap();
            t.handle_abort(r);
        }
        assert_eq!(t.open_rounds().count(), 0);
        let r = t.handle_start(t0(), SEC).unwrap();
        na.handle_start(r, || Ok("a"));
        match na.poll() {
            Some(NodeOutput::Record(rec)) => {
                // One record covers the 1000 aborted rounds and the open one.
                assert_eq!((rec.first, rec.last), (1, r));
                t.handle_record(a, rec);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(completed(&mut t)[0].records.len(), 1);
    }

    #[test]
    fn an_extra_copy_fails_the_round_as_unbalanced() {
        let mut t = Tracker::new(TrackerConfig::default());
        let (a, b) = (NodeId(0), NodeId(1));
        t.register_outside(a).unwrap();
        let mut nb = Core::new(t.register_outside(b).unwrap());
        let r = t.handle_start(t0(), SEC).unwrap();
        nb.handle_start(r, || Ok("b"));
        flush(&mut t, b, &mut nb);
        // A copy of a message a never counted as sent (a forged color).
        nb.handle_message(0, a, || Ok(1), || Ok("-"));
        flush(&mut t, b, &mut nb);
        t.handle_left(a, 0, 0, 0);
        assert_eq!(
            failures(&mut t),
            vec![(r, RoundFailure::Unbalanced { excess: 1 })]
        );
    }

    #[test]
    fn a_restart_under_the_same_name_is_not_in_the_rounds_its_predecessor_recorded() {
        let mut t = Tracker::new(TrackerConfig::default());
        let (x, y) = (NodeId(0), NodeId(1));
        let mut nx = Core::new(t.register_outside(x).unwrap());
        t.register_outside(y).unwrap();
        let r = t.handle_start(t0(), SEC).unwrap();
        nx.handle_start(r, || Ok("x"));
        flush(&mut t, x, &mut nx);
        nx.handle_stop();
        flush(&mut t, x, &mut nx);
        outputs(&mut t);
        // x recorded r then left; its replacement joins after r.
        let x2 = NodeId(2);
        assert_eq!(t.register_outside_after(x2, nx.epoch()), Some(r));
        assert!(
            outputs(&mut t).is_empty(),
            "no start: the replacement owes nothing in r"
        );
        // Without the bound it would have joined r.
        assert_eq!(t.register_outside(NodeId(3)), Some(r - 1));
    }

    #[test]
    fn restored_nodes_registered_late_are_waited_for() {
        let mut t = Tracker::restored(TrackerConfig::default(), 4, 0);
        let a = NodeId(0);
        let mut na = Core::new(t.register_restored(a, 4));
        let r = t.handle_start(t0(), SEC).unwrap();
        let b = NodeId(1);
        t.register_restored(b, 4);
        na.handle_start(r, || Ok("a"));
        flush(&mut t, a, &mut na);
        assert!(completed(&mut t).is_empty(), "b owes a record");
    }

    #[test]
    fn a_message_to_a_child_through_a_leaked_address_fails_the_round() {
        let mut t = Tracker::new(TrackerConfig::default());
        let (a, p) = (NodeId(0), NodeId(1));
        let mut na = Core::new(t.register_outside(a).unwrap());
        let mut np = Core::new(t.register_outside(p).unwrap());
        let r = t.handle_start(t0(), SEC).unwrap();
        np.handle_start(r, || Ok("p"));
        flush(&mut t, p, &mut np);
        // p spawns c after its cut: c is not in r.
        let c = NodeId(2);
        let mut nc = Core::new(t.register_child(c, np.color()).unwrap());
        outputs(&mut t);
        // a, before its cut, sends to c (an address it could only have from outside).
        let color = na.color();
        na.handle_sent(1);
        na.handle_start(r, || Ok("a"));
        flush(&mut t, a, &mut na);
        nc.handle_message(color, a, || Ok(9), || Ok("-"));
        flush(&mut t, c, &mut nc);
        assert_eq!(
            failures(&mut t),
            vec![(
                r,
                RoundFailure::UntrackedAddress {
                    receiver: c,
                    sender: a
                }
            )]
        );
        // The next round is whole.
        let r2 = t.handle_start(t0(), SEC).unwrap();
        for (id, n) in [(a, &mut na), (p, &mut np), (c, &mut nc)] {
            n.handle_start(r2, || Ok("x"));
            flush(&mut t, id, n);
        }
        assert_eq!(completed(&mut t)[0].records.len(), 3);
    }

    #[test]
    fn restored_in_flight_messages_are_counted() {
        let mut t = Tracker::restored(TrackerConfig::default(), 7, 1);
        let a = NodeId(3);
        let mut na = Core::new(t.register_restored(a, 7));
        let r = t.handle_start(t0(), SEC).unwrap();
        assert_eq!(r, 8);
        na.handle_start(r, || Ok("a"));
        flush(&mut t, a, &mut na);
        assert!(
            completed(&mut t).is_empty(),
            "the restored message is in flight"
        );
        na.handle_message(7, NodeId(1), || Ok(4), || Ok("-"));
        flush(&mut t, a, &mut na);
        assert_eq!(completed(&mut t)[0].in_flight, vec![(NodeId(1), a, 4)]);
    }
}
