//! [`NodeCore`]: one node's side of the protocol — its epoch, its counters, and what it must
//! tell the round tracker. Its memory is a few counters, whatever the number of rounds: a
//! node keeps no per-round buffers (in-flight copies go to the tracker at once), so nothing
//! can pile up on a node when rounds are aborted.
//!
//! | input                                   | meaning                                             |
//! |-----------------------------------------|-----------------------------------------------------|
//! | [`NodeCore::handle_start`]              | the tracker asks this node to record round `r`      |
//! | [`NodeCore::handle_message`]            | a message of color `c` from another node arrived    |
//! | [`NodeCore::handle_catch_up`]           | record up to `c` before receiving a message of color `c` |
//! | [`NodeCore::handle_sent`]               | a handler sent `n` messages to other nodes          |
//! | [`NodeCore::handle_ingress`]            | a message from outside the group arrived            |
//! | [`NodeCore::handle_stop`]               | the node stops: it becomes a tombstone              |
//! | [`NodeCore::handle_panic`]              | the node's actor panicked: it becomes a tombstone   |
//! | [`NodeCore::handle_closed_through`]     | every round up to `w` is finished (optional hint)   |
//!
//! | output ([`NodeCore::poll`])             | what the shell must do                              |
//! |-----------------------------------------|-----------------------------------------------------|
//! | [`NodeOutput::Record`]                  | hand the node's record of a range of rounds to the tracker |
//! | [`NodeOutput::Late`]                    | hand a late (in-flight) or dropped message to the tracker  |
//! | [`NodeOutput::Left`] / [`NodeOutput::Panicked`] | tell the tracker the node is gone, with its counters |
//!
//! The shell must stamp every message a handler sends with [`NodeCore::color`] and report the
//! count with [`NodeCore::handle_sent`] before it feeds the next input; outputs reach the
//! tracker in the order `poll` returns them.
//!
//! ```
//! use actix_snapshot::protocol::{NodeCore, NodeId, NodeOutput};
//!
//! let mut node: NodeCore<&str, u32> = NodeCore::new(0);
//! // A message of color 3 arrives: its sender had recorded round 3, so this node records
//! // rounds 1..=3 before the message is delivered (the message is not part of those rounds).
//! assert!(node.handle_message(3, NodeId(9), || Ok(7), || Ok("before")));
//! match node.poll() {
//!     Some(NodeOutput::Record(rec)) => {
//!         assert_eq!((rec.first, rec.last), (1, 3));
//!         assert_eq!(rec.state, Ok("before"));
//!         assert_eq!(rec.received, 0);
//!     }
//!     other => panic!("unexpected {other:?}"),
//! }
//! assert_eq!(node.color(), 3);
//! ```

use std::collections::VecDeque;

use super::{NodeId, RoundId};

/// Whether a node's actor is still there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Life {
    /// Running: messages are delivered.
    Alive,
    /// Stopped on purpose: a tombstone that counts (and, where needed, records) what still
    /// arrives, and delivers nothing.
    Stopped,
    /// The actor panicked: a tombstone, as for [`Life::Stopped`].
    Panicked,
}

/// A node's record of the rounds `first..=last`, all taken at one point between two messages.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Record<S> {
    /// First round recorded (the node's previous epoch plus one).
    pub first: RoundId,
    /// Last round recorded: the node's epoch from now on.
    pub last: RoundId,
    /// The node's state, or why it could not be recorded (the rounds then fail).
    pub state: Result<S, String>,
    /// Messages this node had sent to other nodes before the cut (since it joined or since
    /// the group was restored).
    pub sent: u64,
    /// Messages from other nodes this node had received before the cut.
    pub received: u64,
    /// Per ingress source (by the shell's id): messages delivered before the cut.
    pub ingress: Vec<(u32, u64)>,
    /// Messages from outside the group without a named source delivered before the cut.
    pub external: u64,
}

/// A message that reached a node after the node's cut of some round that the message's sender
/// had not recorded when it sent it: in flight in those rounds (or, where this node is not a
/// member, dropped). The tracker sorts out which rounds.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Late<P> {
    /// Sender.
    pub from: NodeId,
    /// The message's color: its sender's epoch when it was sent.
    pub color: RoundId,
    /// The receiver is a member of the rounds after this one.
    pub joined: RoundId,
    /// The receiver's epoch when the message arrived.
    pub epoch: RoundId,
    /// Whether the receiver is alive (a tombstone drops what arrives).
    pub alive: bool,
    /// The encoded message, present when some round in `max(color, joined)+1..=epoch` may
    /// still be open (the receiver recorded those rounds as a member).
    pub payload: Option<Result<P, String>>,
}

/// An output of [`NodeCore`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum NodeOutput<S, P> {
    /// The node recorded rounds `first..=last`.
    Record(Record<S>),
    /// A message arrived late, or at a tombstone.
    Late(Late<P>),
    /// The node stopped, at this epoch, with these counters.
    Left {
        /// Its epoch when it stopped: it is a member of no round after this.
        epoch: RoundId,
        /// Messages it had sent to other nodes.
        sent: u64,
        /// Messages from other nodes it had received.
        received: u64,
    },
    /// The node's actor panicked, at this epoch, with these counters.
    Panicked {
        /// Its epoch when it panicked: the open rounds after it fail.
        epoch: RoundId,
        /// Messages it had sent to other nodes.
        sent: u64,
        /// Messages from other nodes it had received.
        received: u64,
        /// The panic message.
        reason: String,
    },
}

/// One node's protocol state. `S` is a recorded state, `P` a recorded message.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NodeCore<S, P> {
    joined: RoundId,
    epoch: RoundId,
    sent: u64,
    received: u64,
    ingress: Vec<(u32, u64)>,
    external: u64,
    closed_through: RoundId,
    life: Life,
    out: VecDeque<NodeOutput<S, P>>,
}

impl<S, P> NodeCore<S, P> {
    /// A node that joins with epoch `epoch` (the value the tracker's `register_*` returned):
    /// it is a member of the rounds after `epoch`.
    pub fn new(epoch: RoundId) -> Self {
        NodeCore {
            joined: epoch,
            epoch,
            sent: 0,
            received: 0,
            ingress: Vec::new(),
            external: 0,
            closed_through: 0,
            life: Life::Alive,
            out: VecDeque::new(),
        }
    }

    /// A node restored from a snapshot taken at round `epoch`, whose ingress sources had
    /// delivered these counts (so offsets continue).
    pub fn resume(epoch: RoundId, ingress: Vec<(u32, u64)>, external: u64) -> Self {
        NodeCore {
            ingress,
            external,
            ..Self::new(epoch)
        }
    }

    /// The color to stamp on a message sent now: this node's epoch.
    #[inline]
    pub fn color(&self) -> RoundId {
        self.epoch
    }

    /// The highest round this node has recorded.
    pub fn epoch(&self) -> RoundId {
        self.epoch
    }

    /// The node is a member of the rounds after this one.
    pub fn joined(&self) -> RoundId {
        self.joined
    }

    /// Whether the node's actor is still there.
    pub fn life(&self) -> Life {
        self.life
    }

    /// Messages sent to other nodes so far.
    pub fn sent(&self) -> u64 {
        self.sent
    }

    /// Messages received from other nodes so far (delivered, or dropped by the tombstone).
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Messages delivered so far from the ingress source `source`.
    pub fn ingress_delivered(&self, source: u32) -> u64 {
        self.ingress
            .iter()
            .find(|(s, _)| *s == source)
            .map_or(0, |(_, n)| *n)
    }

    /// The tracker asks this node to record round `r`. Ignored when the node already recorded
    /// `r` (a message of color `r` or higher came first), when `r` is known to be finished
    /// already (it timed out while the start waited behind a busy node: the node's next record
    /// covers it with every other round it skipped, instead of one record per aborted round),
    /// or on a tombstone.
    pub fn handle_start(&mut self, r: RoundId, state: impl FnOnce() -> Result<S, String>) {
        if self.life == Life::Alive && r > self.epoch && r > self.closed_through {
            self.record(r, state);
        }
    }

    /// A message of color `color` from node `from` arrived. Returns whether the shell must
    /// deliver it to the actor (false on a tombstone).
    ///
    /// `state` is called when the message makes the node record (before delivery, so the
    /// message is not in the recorded state); `encode` is called when the message must be
    /// copied to the tracker as in flight.
    #[inline]
    pub fn handle_message(
        &mut self,
        color: RoundId,
        from: NodeId,
        encode: impl FnOnce() -> Result<P, String>,
        state: impl FnOnce() -> Result<S, String>,
    ) -> bool {
        let alive = self.life == Life::Alive;
        self.handle_catch_up(color, state);
        // A live node reports only what some open round may still need; a tombstone reports
        // everything, because what it drops also counts in rounds not started yet.
        if color < self.epoch && self.epoch > self.closed_through || !alive {
            let member_from = color.max(self.joined);
            let payload =
                (member_from < self.epoch && self.epoch > self.closed_through).then(encode);
            self.out.push_back(NodeOutput::Late(Late {
                from,
                color,
                joined: self.joined,
                epoch: self.epoch,
                alive,
                payload,
            }));
        }
        self.received = self.received.wrapping_add(1);
        alive
    }

    /// A message of color `color` is about to be received where the node's state cannot be
    /// recorded (a reply awaited in a future): the node records every round up to `color`
    /// now, as [`handle_message`](Self::handle_message) would before delivering it. The
    /// message itself is then received with `handle_message`, which finds nothing to record.
    pub fn handle_catch_up(&mut self, color: RoundId, state: impl FnOnce() -> Result<S, String>) {
        if self.life == Life::Alive && color > self.epoch {
            self.record(color, state);
        }
    }

    /// A handler of this node sent `n` messages to other nodes, each stamped with
    /// [`color`](Self::color).
    #[inline]
    pub fn handle_sent(&mut self, n: u64) {
        self.sent = self.sent.wrapping_add(n);
    }

    /// A message from outside the group arrived, from the named source `source` (`None`: an
    /// unnamed external sender). Returns whether to deliver it (false on a tombstone).
    pub fn handle_ingress(&mut self, source: Option<u32>) -> bool {
        if self.life != Life::Alive {
            return false;
        }
        match source {
            None => self.external = self.external.wrapping_add(1),
            Some(s) => match self.ingress.iter_mut().find(|(id, _)| *id == s) {
                Some((_, n)) => *n = n.wrapping_add(1),
                None => self.ingress.push((s, 1)),
            },
        }
        true
    }

    /// The node's actor stops. From now on the node is a tombstone: a member of no later
    /// round, counting what still arrives.
    pub fn handle_stop(&mut self) {
        if self.life == Life::Alive {
            self.life = Life::Stopped;
            self.out.push_back(NodeOutput::Left {
                epoch: self.epoch,
                sent: self.sent,
                received: self.received,
            });
        }
    }

    /// The node's actor panicked with `reason`: the rounds it still owed a record fail.
    pub fn handle_panic(&mut self, reason: String) {
        if self.life == Life::Alive {
            self.life = Life::Panicked;
            self.out.push_back(NodeOutput::Panicked {
                epoch: self.epoch,
                sent: self.sent,
                received: self.received,
                reason,
            });
        }
    }

    /// Every round up to `w` is finished: late messages that only such rounds could need are
    /// no longer copied. A hint that saves traffic; the protocol is correct without it.
    pub fn handle_closed_through(&mut self, w: RoundId) {
        self.closed_through = self.closed_through.max(w);
    }

    /// Whether [`poll`](Self::poll) has something.
    #[inline]
    pub fn has_output(&self) -> bool {
        !self.out.is_empty()
    }

    /// The next output, in order.
    pub fn poll(&mut self) -> Option<NodeOutput<S, P>> {
        let next = self.out.pop_front();
        if next.is_none() && self.out.capacity() > 0 {
            // Outputs are rare (a record per round, a note per late message); a drained queue
            // gives its buffer back, so an idle node costs its counters only.
            self.out = VecDeque::new();
        }
        next
    }

    fn record(&mut self, r: RoundId, state: impl FnOnce() -> Result<S, String>) {
        // The state first: if producing it unwinds, the node has not moved on.
        let state = state();
        let first = self.epoch + 1;
        self.epoch = r;
        self.out.push_back(NodeOutput::Record(Record {
            first,
            last: r,
            state,
            sent: self.sent,
            received: self.received,
            ingress: self.ingress.clone(),
            external: self.external,
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Core = NodeCore<&'static str, u32>;

    fn no_state() -> Result<&'static str, String> {
        panic!("state must not be recorded here")
    }

    fn no_encode() -> Result<u32, String> {
        panic!("message must not be encoded here")
    }

    #[test]
    fn start_records_every_round_since_the_epoch_once() {
        let mut n = Core::new(2);
        n.handle_sent(5);
        n.handle_start(6, || Ok("s"));
        match n.poll() {
            Some(NodeOutput::Record(r)) => {
                assert_eq!((r.first, r.last, r.sent, r.received), (3, 6, 5, 0));
            }
            other => panic!("{other:?}"),
        }
        // Lower and equal rounds are already recorded: never again.
        n.handle_start(6, no_state);
        n.handle_start(4, no_state);
        assert!(n.poll().is_none());
        assert_eq!(n.color(), 6);
    }

    #[test]
    fn the_start_of_a_finished_round_records_nothing() {
        let mut n = Core::new(0);
        n.handle_closed_through(5);
        n.handle_start(5, no_state);
        assert!(n.poll().is_none());
        n.handle_start(6, || Ok("s"));
        match n.poll() {
            Some(NodeOutput::Record(r)) => assert_eq!((r.first, r.last), (1, 6)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn message_of_same_color_is_delivered_without_output() {
        let mut n = Core::new(3);
        assert!(n.handle_message(3, NodeId(1), no_encode, no_state));
        assert!(n.poll().is_none());
        assert_eq!(n.received(), 1);
    }

    #[test]
    fn lower_color_is_late_and_copied() {
        let mut n = Core::new(0);
        n.handle_start(4, || Ok("s"));
        assert!(matches!(n.poll(), Some(NodeOutput::Record(_))));
        assert!(n.handle_message(1, NodeId(7), || Ok(99), no_state));
        match n.poll() {
            Some(NodeOutput::Late(l)) => {
                assert_eq!((l.from, l.color, l.epoch, l.alive), (NodeId(7), 1, 4, true));
                assert_eq!(l.payload, Some(Ok(99)));
            }
            other => panic!("{other:?}"),
        }
        // The receipt counts for the rounds this node has not recorded yet.
        assert_eq!(n.received(), 1);
    }

    #[test]
    fn closed_rounds_need_no_copies_on_a_live_node() {
        let mut n = Core::new(0);
        n.handle_start(4, || Ok("s"));
        n.poll();
        n.handle_closed_through(4);
        assert!(n.handle_message(1, NodeId(7), no_encode, no_state));
        assert!(n.poll().is_none());
    }

    #[test]
    fn a_child_drops_nothing_it_is_a_member_of() {
        // A child born at epoch 5 gets a message of color 2 (its address leaked through the
        // environment): rounds 3..=5 are not its own, so no payload, but it is reported.
        let mut n = Core::new(5);
        assert!(n.handle_message(2, NodeId(1), no_encode, no_state));
        match n.poll() {
            Some(NodeOutput::Late(l)) => {
                assert_eq!((l.joined, l.epoch), (5, 5));
                assert_eq!(l.payload, None);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn tombstone_reports_every_arrival_and_delivers_nothing() {
        let mut n = Core::new(0);
        n.handle_sent(3);
        n.handle_message(0, NodeId(2), no_encode, no_state);
        n.handle_stop();
        assert_eq!(
            n.poll(),
            Some(NodeOutput::Left {
                epoch: 0,
                sent: 3,
                received: 1
            })
        );
        // Higher color: no recording on a tombstone, but the drop is reported.
        assert!(!n.handle_message(5, NodeId(2), no_encode, no_state));
        match n.poll() {
            Some(NodeOutput::Late(l)) => {
                assert!(!l.alive);
                assert_eq!(l.payload, None);
            }
            other => panic!("{other:?}"),
        }
        n.handle_start(9, no_state);
        assert!(!n.handle_ingress(None));
        n.handle_stop();
        n.handle_panic("late".into());
        assert!(n.poll().is_none());
    }

    #[test]
    fn tombstone_still_records_for_rounds_it_is_a_member_of() {
        let mut n = Core::new(0);
        n.handle_start(2, || Ok("s"));
        n.poll();
        n.handle_stop();
        n.poll();
        n.handle_message(1, NodeId(3), || Ok(5), no_state);
        match n.poll() {
            Some(NodeOutput::Late(l)) => assert_eq!(l.payload, Some(Ok(5))),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn failed_state_still_moves_the_epoch() {
        let mut n = Core::new(0);
        n.handle_start(1, || Err("boom".into()));
        match n.poll() {
            Some(NodeOutput::Record(r)) => assert_eq!(r.state, Err("boom".into())),
            other => panic!("{other:?}"),
        }
        assert_eq!(n.color(), 1);
    }

    #[test]
    fn ingress_is_counted_per_source_and_recorded() {
        let mut n = Core::new(0);
        assert!(n.handle_ingress(Some(4)));
        assert!(n.handle_ingress(Some(4)));
        assert!(n.handle_ingress(None));
        n.handle_start(1, || Ok("s"));
        match n.poll() {
            Some(NodeOutput::Record(r)) => {
                assert_eq!(r.ingress, vec![(4, 2)]);
                assert_eq!(r.external, 1);
                assert_eq!(r.received, 0, "ingress is not node-to-node traffic");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(n.ingress_delivered(4), 2);
    }

    #[test]
    fn counters_wrap_instead_of_panicking() {
        let mut n = Core::new(0);
        n.handle_sent(u64::MAX);
        n.handle_sent(2);
        assert_eq!(n.sent(), 1);
    }
}
