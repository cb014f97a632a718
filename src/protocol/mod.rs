//! The snapshot protocol as two pure state machines: no actix, no threads, no clocks, no I/O.
//!
//! This is where the algorithm lives; the actix shell ([`crate::shell`]) only carries what these
//! machines emit. The protocol is Lai–Yang's colored snapshots with Mattern's counting
//! (Lai & Yang 1987; Mattern 1993), which needs neither FIFO channels nor a topology declared in
//! advance, and lets nodes join and leave at any moment:
//!
//! - **Rounds and epochs.** The [`RoundTracker`] numbers rounds 1, 2, 3 … A [`NodeCore`] keeps
//!   its *epoch*, the highest round it has recorded. Recording round `r` records every round in
//!   `epoch+1..=r` at the same point, so epochs only grow and no round is ever recorded twice.
//! - **Colors.** Every message between nodes carries its sender's epoch (its *color*). A
//!   message of color `c` delivered at a node of epoch `e`:
//!   `c > e` makes the node record `e+1..=c` first (an implicit marker);
//!   `c < e` was sent before the sender's cut of rounds `c+1..=e` and arrives after the
//!   receiver's: it is *in flight* in those rounds, and a copy goes to the tracker ([`Late`]).
//! - **Counting.** At its cut a node reports how many messages it had sent and received in
//!   total. Over the members of a round, `Σ sent − Σ received` messages were in flight; the
//!   round is complete when every member reported and that many in-flight copies arrived.
//! - **Membership.** A node spawned by a node inherits its parent's epoch; a node spawned from
//!   outside joins every round still open. A node that stops before recording `r` is not in
//!   `r`, but its counters are; what is sent to it afterwards is counted as dropped by its
//!   *tombstone*, which keeps receiving. A node that panics fails the rounds it owed a record.
//!
//! The machines follow `quinn-proto`'s shape: `handle_*` methods are inputs, `poll` returns
//! outputs, time is an input ([`RoundTracker::handle_timeout`]).
//!
//! ```
//! use actix_snapshot::protocol::{NodeCore, NodeId, NodeOutput, RoundTracker, TrackerOutput, TrackerConfig};
//! use std::time::{Duration, Instant};
//!
//! let now = Instant::now();
//! let mut tracker: RoundTracker<&str, u32> = RoundTracker::new(TrackerConfig::default());
//! let (a, b) = (NodeId(0), NodeId(1));
//! let mut na: NodeCore<&str, u32> = NodeCore::new(tracker.register_outside(a).unwrap());
//! let mut nb: NodeCore<&str, u32> = NodeCore::new(tracker.register_outside(b).unwrap());
//!
//! // `a` sends one message to `b` (color 0), then a round starts.
//! let color = na.color();
//! na.handle_sent(1);
//! let r = tracker.handle_start(now, Duration::from_secs(1)).unwrap();
//! assert!(matches!(tracker.poll(), Some(TrackerOutput::StartAll { round: 1 })));
//!
//! // Both nodes record; `b` has not received the message yet.
//! for (id, node, state) in [(a, &mut na, "a"), (b, &mut nb, "b")] {
//!     node.handle_start(r, || Ok(state));
//!     while let Some(note) = node.poll() {
//!         tracker.handle_note(id, note);
//!     }
//! }
//! assert!(tracker.poll().is_none(), "one message is still unaccounted for");
//!
//! // The message arrives after b's cut: it was in flight, and its copy completes the round.
//! let deliver = nb.handle_message(color, a, || Ok(42), || Ok("unused"));
//! assert!(deliver);
//! while let Some(note) = nb.poll() {
//!     assert!(matches!(note, NodeOutput::Late(_)));
//!     tracker.handle_note(b, note);
//! }
//! match tracker.poll() {
//!     Some(TrackerOutput::Completed(snap)) => {
//!         assert_eq!(snap.records.len(), 2);
//!         assert_eq!(snap.in_flight, vec![(a, b, 42)]);
//!     }
//!     other => panic!("unexpected {other:?}"),
//! }
//! ```

mod node;
mod tracker;

pub use node::{Late, Life, NodeCore, NodeOutput, Record};
pub use tracker::{
    CompletedRound, RoundFailure, RoundTracker, StartError, TrackerConfig, TrackerOutput,
};

use serde::{Deserialize, Serialize};

/// Identifier of a snapshot round (and of a node's epoch). Rounds are numbered from 1; epoch 0
/// means "no round recorded yet".
pub type RoundId = u64;

/// The id of a node in its group. Ids are never reused within a group's lifetime (a restored
/// group keeps the ids of its snapshot).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NodeId(pub u64);

impl NodeId {
    /// The id as an index, for groups whose ids are dense (a group built with
    /// [`GroupBuilder`](crate::GroupBuilder) numbers its declared nodes from 0).
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl std::fmt::Display for NodeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}
