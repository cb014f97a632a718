//! The per-node Chandy–Lamport marker protocol as a pure state machine.
//!
//! [`NodeCore`] knows nothing about actix, threads, clocks or encodings. It is driven by
//! inputs and hands back [`Action`]s, in the style of `quinn-proto`'s `Connection`:
//!
//! | input                               | meaning                                             |
//! |-------------------------------------|-----------------------------------------------------|
//! | [`NodeCore::start`]                 | the initiator asks this node to record round `r`    |
//! | [`NodeCore::on_marker`]             | marker `r` arrived on incoming channel `c`          |
//! | [`NodeCore::on_message`]            | an application message arrived on channel `c`       |
//! | [`NodeCore::on_ingress`]            | a message from outside the group was delivered     |
//! | [`NodeCore::abort`]                 | the collector gave up on round `r`                  |
//!
//! | output ([`NodeCore::poll`])         | what the shell must do                              |
//! |-------------------------------------|-----------------------------------------------------|
//! | [`Action::SendMarkers`]             | send marker `r` on every outgoing channel, now      |
//! | [`Action::Complete`]                | send this node's [`LocalRecord`] to the collector   |
//! | [`Action::Failed`]                  | tell the collector round `r` failed here            |
//!
//! Recording the node's own state is a pull: the inputs that may start a recording take a
//! closure that produces the state (`S`), and the message input takes a closure that encodes
//! the message (`P`) only when some round records that channel. So the common case — no
//! snapshot running — costs one counter increment and one comparison per message.
//!
//! The shell must process the actions returned by `poll` before it feeds the next input;
//! in particular [`Action::SendMarkers`] must go out before any message the node sends
//! afterwards, which is what makes the recorded cut consistent.
//!
//! ```
//! use actix_snapshot::protocol::{Action, NodeCore};
//!
//! // A node with one incoming channel (index 0) and no ingress.
//! let mut node: NodeCore<&str, u32> = NodeCore::new(1, 0);
//! node.start(7, || Ok("my state"));
//! assert!(matches!(node.poll(), Some(Action::SendMarkers { round: 7 })));
//!
//! // Message 42 arrives before the marker of round 7: it was in flight, so it is recorded.
//! node.on_message(0, || Ok(42));
//! node.on_marker(0, 7, 1, || Ok("unused: already recorded"));
//! match node.poll() {
//!     Some(Action::Complete(rec)) => {
//!         assert_eq!(rec.state, "my state");
//!         assert_eq!(rec.channels[0].messages, vec![42]);
//!     }
//!     other => panic!("unexpected {other:?}"),
//! }
//! assert!(node.poll().is_none());
//! ```

use std::collections::{BTreeMap, VecDeque};

/// Identifier of a snapshot round. Rounds are numbered by the collector, from 1 upwards.
pub type RoundId = u64;

/// How many finished or aborted rounds a node remembers, to ignore their late markers.
const REMEMBERED_ROUNDS: usize = 256;

/// What one incoming channel contributed to one round on this node.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ChannelRecord<P> {
    /// Messages delivered on this channel before the node recorded its state.
    pub delivered: u64,
    /// Messages the sender had sent on this channel before it sent the marker
    /// (carried by the marker).
    pub sent: u64,
    /// Messages received after the state was recorded and before the marker: the
    /// channel's state in this round, in arrival order.
    pub messages: Vec<P>,
}

/// One node's share of a round: its state, its incoming channels and ingress offsets.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LocalRecord<S, P> {
    /// The round this record belongs to.
    pub round: RoundId,
    /// The node's state, as produced by the closure passed to the input that recorded it.
    pub state: S,
    /// One entry per incoming channel, by incoming index.
    pub channels: Vec<ChannelRecord<P>>,
    /// Per ingress (by index): how many ingress messages were delivered before the state was
    /// recorded.
    pub ingress: Vec<u64>,
}

/// Why the protocol cannot complete a round on this node.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Failure {
    /// The shell could not produce the node's state (for example an encoding error).
    State(String),
    /// The shell could not encode a message that had to be recorded.
    Message {
        /// Incoming channel index.
        channel: usize,
        /// What went wrong.
        reason: String,
    },
    /// The channel did not behave as a FIFO channel: the marker says `sent` messages preceded
    /// it, but `delivered + recorded` were seen. An `Out` used outside its actor does this.
    NotFifo {
        /// Incoming channel index.
        channel: usize,
        /// Count carried by the marker.
        sent: u64,
        /// Count seen by this node.
        seen: u64,
    },
    /// A second marker of the same round arrived on one channel.
    DuplicateMarker {
        /// Incoming channel index.
        channel: usize,
    },
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::State(r) => write!(f, "could not record state: {r}"),
            Failure::Message { channel, reason } => {
                write!(
                    f,
                    "could not record a message of incoming channel {channel}: {reason}"
                )
            }
            Failure::NotFifo {
                channel,
                sent,
                seen,
            } => write!(
                f,
                "incoming channel {channel} is not FIFO: marker follows {sent} messages, {seen} arrived"
            ),
            Failure::DuplicateMarker { channel } => {
                write!(f, "two markers of one round on incoming channel {channel}")
            }
        }
    }
}

/// An output of [`NodeCore`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Action<S, P> {
    /// The state was recorded for `round`: send its marker on every outgoing channel before
    /// sending anything else.
    SendMarkers {
        /// The round.
        round: RoundId,
    },
    /// Every incoming channel delivered the marker: the node's share is complete.
    Complete(LocalRecord<S, P>),
    /// The round cannot complete on this node; its buffers are already freed.
    Failed {
        /// The round.
        round: RoundId,
        /// Why.
        failure: Failure,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ChanState<P> {
    delivered: u64,
    /// `Some(sent)` once the marker arrived.
    marker: Option<u64>,
    messages: Vec<P>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Round<S, P> {
    state: S,
    channels: Vec<ChanState<P>>,
    ingress: Vec<u64>,
    /// Channels whose marker has not arrived yet.
    open: usize,
}

/// The marker protocol of one node. `S` is the recorded node state, `P` a recorded message.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NodeCore<S, P> {
    delivered: Vec<u64>,
    /// Per incoming channel: how many active rounds record it.
    recording: Vec<u32>,
    ingress: Vec<u64>,
    rounds: BTreeMap<RoundId, Round<S, P>>,
    /// Rounds this node is done with: finished (`None`) or aborted with `Some(markers still
    /// expected per channel)`. Late markers of these rounds are ignored.
    done: BTreeMap<RoundId, Option<Vec<bool>>>,
    actions: VecDeque<Action<S, P>>,
}

impl<S, P: Clone> NodeCore<S, P> {
    /// A node with `incoming` incoming channels (indices `0..incoming`) and `ingress`
    /// ingress handles (indices `0..ingress`).
    pub fn new(incoming: usize, ingress: usize) -> Self {
        Self::resume(vec![0; incoming], vec![0; ingress])
    }

    /// A node that continues from counters recorded in a snapshot: messages already
    /// delivered per incoming channel and per ingress.
    pub fn resume(delivered: Vec<u64>, ingress: Vec<u64>) -> Self {
        let n = delivered.len();
        NodeCore {
            delivered,
            recording: vec![0; n],
            ingress,
            rounds: BTreeMap::new(),
            done: BTreeMap::new(),
            actions: VecDeque::new(),
        }
    }

    /// Number of incoming channels.
    pub fn incoming(&self) -> usize {
        self.delivered.len()
    }

    /// Messages delivered so far on incoming channel `c`.
    pub fn delivered(&self, c: usize) -> u64 {
        self.delivered[c]
    }

    /// Rounds in progress on this node.
    pub fn active_rounds(&self) -> impl Iterator<Item = RoundId> + '_ {
        self.rounds.keys().copied()
    }

    /// Whether round `r` has recorded this node's state and is still waiting for markers.
    pub fn is_active(&self, r: RoundId) -> bool {
        self.rounds.contains_key(&r)
    }

    /// Whether some active round records incoming channel `c` right now.
    #[inline]
    pub fn is_recording(&self, c: usize) -> bool {
        self.recording[c] > 0
    }

    /// The initiator asks this node to record round `r`. Ignored when the node already
    /// recorded `r` (a marker came first) or is done with it.
    pub fn start(&mut self, r: RoundId, state: impl FnOnce() -> Result<S, String>) {
        if self.rounds.contains_key(&r) || self.done.contains_key(&r) {
            return;
        }
        self.record(r, None, state);
    }

    /// Marker of round `r` arrived on incoming channel `c`; the sender had sent `sent`
    /// messages on `c` before it. `state` is called when this marker makes the node record.
    pub fn on_marker(
        &mut self,
        c: usize,
        r: RoundId,
        sent: u64,
        state: impl FnOnce() -> Result<S, String>,
    ) {
        // `rounds` and `done` never share a round; the active case is the common one.
        let Some(round) = self.rounds.get_mut(&r) else {
            if let Some(entry) = self.done.get_mut(&r) {
                if let Some(expect) = entry {
                    expect[c] = false;
                    if expect.iter().all(|e| !e) {
                        self.done.insert(r, None);
                    }
                }
            } else {
                self.record(r, Some((c, sent)), state);
            }
            return;
        };
        let ch = &mut round.channels[c];
        if ch.marker.is_some() {
            self.fail(r, Failure::DuplicateMarker { channel: c });
            return;
        }
        ch.marker = Some(sent);
        self.recording[c] -= 1;
        round.open -= 1;
        let seen = ch.delivered + ch.messages.len() as u64;
        if seen != sent {
            self.fail(
                r,
                Failure::NotFifo {
                    channel: c,
                    sent,
                    seen,
                },
            );
            return;
        }
        if round.open == 0 {
            self.finish(r);
        }
    }

    /// An application message arrived on incoming channel `c`. `encode` is called once, and
    /// only when some round records `c`; its result is appended to each such round.
    #[inline]
    pub fn on_message(&mut self, c: usize, encode: impl FnOnce() -> Result<P, String>) {
        self.delivered[c] += 1;
        if self.recording[c] == 0 {
            return;
        }
        match encode() {
            Ok(p) => {
                // Usually one round records `c`: it gets `p` itself, only earlier ones a copy.
                let mut open = self
                    .rounds
                    .values_mut()
                    .map(|round| &mut round.channels[c])
                    .filter(|ch| ch.marker.is_none())
                    .peekable();
                while let Some(ch) = open.next() {
                    if open.peek().is_none() {
                        ch.messages.push(p);
                        break;
                    }
                    ch.messages.push(p.clone());
                }
            }
            Err(reason) => {
                let hit: Vec<RoundId> = self
                    .rounds
                    .iter()
                    .filter(|(_, round)| round.channels[c].marker.is_none())
                    .map(|(r, _)| *r)
                    .collect();
                for r in hit {
                    self.fail(
                        r,
                        Failure::Message {
                            channel: c,
                            reason: reason.clone(),
                        },
                    );
                }
            }
        }
    }

    /// A message from ingress `i` (from outside the group) was delivered.
    #[inline]
    pub fn on_ingress(&mut self, i: usize) {
        self.ingress[i] += 1;
    }

    /// Messages delivered so far from ingress `i`.
    pub fn ingress_delivered(&self, i: usize) -> u64 {
        self.ingress[i]
    }

    /// The collector gave up on round `r`: drop its buffers and ignore its late markers.
    pub fn abort(&mut self, r: RoundId) {
        if let Some(round) = self.rounds.remove(&r) {
            let expect = self.release(&round);
            self.remember(r, expect);
        } else if !self.done.contains_key(&r) {
            // Never heard of it: markers of `r` may still come on every channel.
            let expect = vec![true; self.incoming()];
            self.remember(r, Some(expect).filter(|e| e.iter().any(|x| *x)));
        }
    }

    /// The next action for the shell, if any.
    pub fn poll(&mut self) -> Option<Action<S, P>> {
        self.actions.pop_front()
    }

    fn record(
        &mut self,
        r: RoundId,
        first_marker: Option<(usize, u64)>,
        state: impl FnOnce() -> Result<S, String>,
    ) {
        let state = match state() {
            Ok(s) => s,
            Err(reason) => {
                // The markers still go out so that peers are not left waiting on us for
                // this round; the collector aborts it everywhere anyway.
                let mut expect = vec![true; self.incoming()];
                if let Some((c, _)) = first_marker {
                    expect[c] = false;
                }
                self.remember(r, Some(expect).filter(|e| e.iter().any(|x| *x)));
                self.actions.push_back(Action::SendMarkers { round: r });
                self.actions.push_back(Action::Failed {
                    round: r,
                    failure: Failure::State(reason),
                });
                return;
            }
        };
        let mut channels: Vec<ChanState<P>> = self
            .delivered
            .iter()
            .map(|&d| ChanState {
                delivered: d,
                marker: None,
                messages: Vec::new(),
            })
            .collect();
        let mut open = channels.len();
        let mut bad = None;
        if let Some((c, sent)) = first_marker {
            channels[c].marker = Some(sent);
            open -= 1;
            if channels[c].delivered != sent {
                bad = Some(Failure::NotFifo {
                    channel: c,
                    sent,
                    seen: channels[c].delivered,
                });
            }
        }
        for (c, ch) in channels.iter().enumerate() {
            if ch.marker.is_none() {
                self.recording[c] += 1;
            }
        }
        self.rounds.insert(
            r,
            Round {
                state,
                channels,
                ingress: self.ingress.clone(),
                open,
            },
        );
        self.actions.push_back(Action::SendMarkers { round: r });
        if let Some(failure) = bad {
            self.fail(r, failure);
        } else if open == 0 {
            self.finish(r);
        }
    }

    fn finish(&mut self, r: RoundId) {
        let Some(round) = self.rounds.remove(&r) else {
            return;
        };
        self.remember(r, None);
        let channels = round
            .channels
            .into_iter()
            .map(|ch| ChannelRecord {
                delivered: ch.delivered,
                sent: ch.marker.unwrap_or(ch.delivered),
                messages: ch.messages,
            })
            .collect();
        self.actions.push_back(Action::Complete(LocalRecord {
            round: r,
            state: round.state,
            channels,
            ingress: round.ingress,
        }));
    }

    fn fail(&mut self, r: RoundId, failure: Failure) {
        if let Some(round) = self.rounds.remove(&r) {
            let expect = self.release(&round);
            self.remember(r, expect);
        }
        self.actions.push_back(Action::Failed { round: r, failure });
    }

    /// Stops recording for a removed round; returns the channels whose marker is still due.
    fn release(&mut self, round: &Round<S, P>) -> Option<Vec<bool>> {
        let mut expect = vec![false; round.channels.len()];
        for (c, ch) in round.channels.iter().enumerate() {
            if ch.marker.is_none() {
                self.recording[c] -= 1;
                expect[c] = true;
            }
        }
        Some(expect).filter(|e| e.iter().any(|x| *x))
    }

    fn remember(&mut self, r: RoundId, expect: Option<Vec<bool>>) {
        self.done.insert(r, expect);
        while self.done.len() > REMEMBERED_ROUNDS {
            self.done.pop_first();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Core = NodeCore<&'static str, u32>;

    fn drain(n: &mut Core) -> Vec<Action<&'static str, u32>> {
        std::iter::from_fn(|| n.poll()).collect()
    }

    fn complete<'a>(a: &'a Action<&'static str, u32>) -> &'a LocalRecord<&'static str, u32> {
        match a {
            Action::Complete(rec) => rec,
            other => panic!("expected Complete, got {other:?}"),
        }
    }

    #[test]
    fn node_without_incoming_channels_completes_on_start() {
        let mut n = Core::new(0, 0);
        n.start(1, || Ok("s"));
        let acts = drain(&mut n);
        assert_eq!(acts[0], Action::SendMarkers { round: 1 });
        assert_eq!(complete(&acts[1]).state, "s");
        assert_eq!(acts.len(), 2);
    }

    #[test]
    fn first_marker_records_state_and_its_channel_is_empty() {
        let mut n = Core::new(2, 0);
        n.on_message(0, || Ok(1));
        n.on_marker(0, 3, 1, || Ok("after one"));
        assert_eq!(drain(&mut n), vec![Action::SendMarkers { round: 3 }]);
        assert!(!n.is_recording(0));
        assert!(n.is_recording(1));
        n.on_message(0, || panic!("channel 0 is not recording"));
        n.on_message(1, || Ok(10));
        n.on_message(1, || Ok(11));
        n.on_marker(1, 3, 2, || panic!("already recorded"));
        let acts = drain(&mut n);
        let rec = complete(&acts[0]);
        assert_eq!(rec.state, "after one");
        assert_eq!(rec.channels[0].messages, Vec::<u32>::new());
        assert_eq!(rec.channels[0].delivered, 1);
        assert_eq!(rec.channels[1].messages, vec![10, 11]);
        assert_eq!(rec.channels[1].delivered, 0);
        assert_eq!(rec.channels[1].sent, 2);
        assert!(!n.is_recording(1));
    }

    #[test]
    fn start_after_marker_is_ignored_and_start_twice_records_once() {
        let mut n = Core::new(1, 0);
        n.start(1, || Ok("a"));
        n.start(1, || panic!("recorded twice"));
        assert_eq!(drain(&mut n), vec![Action::SendMarkers { round: 1 }]);
        n.on_marker(0, 1, 0, || panic!("recorded twice"));
        assert_eq!(complete(&drain(&mut n)[0]).state, "a");
        n.start(1, || panic!("finished round restarted"));
        assert!(drain(&mut n).is_empty());
    }

    #[test]
    fn overlapping_rounds_share_messages() {
        let mut n = Core::new(1, 0);
        n.start(1, || Ok("r1"));
        n.on_message(0, || Ok(1));
        n.start(2, || Ok("r2"));
        n.on_message(0, || Ok(2));
        n.on_marker(0, 1, 2, || panic!());
        n.on_message(0, || Ok(3));
        n.on_marker(0, 2, 3, || panic!());
        let acts = drain(&mut n);
        let recs: Vec<_> = acts
            .iter()
            .filter_map(|a| match a {
                Action::Complete(r) => Some(r),
                _ => None,
            })
            .collect();
        assert_eq!(recs[0].round, 1);
        assert_eq!(recs[0].channels[0].messages, vec![1, 2]);
        assert_eq!(recs[1].round, 2);
        assert_eq!(recs[1].channels[0].messages, vec![2, 3]);
        assert!(!n.is_recording(0));
    }

    #[test]
    fn abort_frees_buffers_and_ignores_late_markers() {
        let mut n = Core::new(2, 0);
        n.start(5, || Ok("x"));
        n.on_message(0, || Ok(1));
        n.abort(5);
        assert!(!n.is_recording(0) && !n.is_recording(1));
        assert!(!n.is_active(5));
        n.on_message(0, || panic!("aborted round still records"));
        n.on_marker(0, 5, 2, || panic!("late marker restarted an aborted round"));
        n.on_marker(1, 5, 0, || panic!("late marker restarted an aborted round"));
        assert_eq!(drain(&mut n), vec![Action::SendMarkers { round: 5 }]);
    }

    #[test]
    fn abort_of_unknown_round_blocks_its_markers() {
        let mut n = Core::new(1, 0);
        n.abort(9);
        n.on_marker(0, 9, 0, || panic!("marker of an aborted round recorded"));
        assert!(drain(&mut n).is_empty());
    }

    #[test]
    fn non_fifo_channel_is_detected() {
        let mut n = Core::new(1, 0);
        n.start(1, || Ok("s"));
        n.on_message(0, || Ok(1));
        // The sender claims two messages preceded the marker, only one arrived.
        n.on_marker(0, 1, 2, || panic!());
        let acts = drain(&mut n);
        assert_eq!(
            acts[1],
            Action::Failed {
                round: 1,
                failure: Failure::NotFifo {
                    channel: 0,
                    sent: 2,
                    seen: 1
                }
            }
        );
        assert!(!n.is_recording(0));
    }

    #[test]
    fn state_error_fails_round_but_sends_markers() {
        let mut n = Core::new(1, 0);
        n.start(1, || Err("boom".into()));
        let acts = drain(&mut n);
        assert_eq!(acts[0], Action::SendMarkers { round: 1 });
        assert!(matches!(
            acts[1],
            Action::Failed {
                round: 1,
                failure: Failure::State(_)
            }
        ));
        assert!(!n.is_recording(0));
        n.on_marker(0, 1, 0, || panic!());
        assert!(drain(&mut n).is_empty());
    }

    #[test]
    fn message_encode_error_fails_only_recording_rounds() {
        let mut n = Core::new(2, 0);
        n.start(1, || Ok("s"));
        n.on_marker(0, 1, 0, || panic!());
        drain(&mut n);
        n.on_message(0, || Err("not encodable".into())); // channel 0 is closed: no encode
        assert!(drain(&mut n).is_empty());
        n.on_message(1, || Err("not encodable".into()));
        let acts = drain(&mut n);
        assert!(matches!(
            acts[0],
            Action::Failed {
                round: 1,
                failure: Failure::Message { channel: 1, .. }
            }
        ));
    }

    #[test]
    fn ingress_offsets_are_taken_at_record_time() {
        let mut n = Core::new(0, 2);
        n.on_ingress(0);
        n.on_ingress(0);
        n.on_ingress(1);
        n.start(1, || Ok("s"));
        n.on_ingress(1);
        let acts = drain(&mut n);
        assert_eq!(complete(&acts[1]).ingress, vec![2, 1]);
        assert_eq!(n.ingress_delivered(1), 2);
    }

    #[test]
    fn duplicate_marker_fails_round() {
        let mut n = Core::new(2, 0);
        n.on_marker(0, 1, 0, || Ok("s"));
        n.on_marker(0, 1, 0, || panic!());
        let acts = drain(&mut n);
        assert!(matches!(
            acts[1],
            Action::Failed {
                failure: Failure::DuplicateMarker { channel: 0 },
                ..
            }
        ));
    }

    #[test]
    fn remembered_rounds_are_bounded() {
        let mut n = Core::new(1, 0);
        for r in 0..(REMEMBERED_ROUNDS as u64 * 3) {
            n.abort(r);
        }
        assert!(n.done.len() <= REMEMBERED_ROUNDS);
    }
}
