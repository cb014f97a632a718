//! Consistent global snapshots for groups of [actix](https://docs.rs/actix) actors.
//!
//! `actix-snapshot` implements the Chandy–Lamport marker algorithm for actix: while a group
//! of actors keeps running, [`SnapshotGroup::snapshot`] records the state of every actor
//! *and every message in flight between them* at one consistent cut. Use a snapshot to
//! check invariants (no money created or lost), to find deadlocks in the wait-for graph,
//! or as a checkpoint to restart from ([`GroupBuilder::restore`]).
//!
//! # Concepts
//!
//! - A **node** is one of your actors inside a [`SnapshotGroup`]. You implement
//!   [`Snapshottable`] (what its snapshot state is) and [`Receive<M>`] for each message type
//!   (instead of `actix::Handler<M>`). The library runs it inside [`SnapshotActor`].
//! - A **channel** is a typed one-way FIFO link between two nodes; its sending end is an
//!   [`Out<M>`], owned by the sending actor. Messages from outside the group enter through
//!   an [`Ingress<M>`], whose offsets are recorded.
//! - The topology is declared on a [`GroupBuilder`] before any actor runs; then
//!   [`GroupBuilder::start`] (or [`GroupBuilder::restore`]) starts it, on one or several
//!   arbiters.
//! - A **round** records every node once and every channel's in-flight messages, and yields a
//!   [`GlobalSnapshot`] with typed views and a checksummed file format.
//!
//! # Example
//!
//! ```
//! use actix_snapshot::{Out, Receive, SnapCtx, SnapshotGroup, Snapshottable};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize)]
//! struct Transfer { amount: u64 }
//!
//! /// A bank branch: it keeps a balance and passes half of each transfer on.
//! struct Branch { balance: u64, peer: Out<Transfer> }
//!
//! impl Snapshottable for Branch {
//!     type State = u64;                               // what goes into the snapshot
//!     fn snapshot_state(&self) -> u64 { self.balance }
//! }
//!
//! impl Receive<Transfer> for Branch {                 // instead of actix::Handler
//!     fn receive(&mut self, t: Transfer, _ctx: &mut SnapCtx<Self>) {
//!         self.balance += t.amount;
//!         let half = self.balance / 2;
//!         if half > 0 {
//!             self.balance -= half;
//!             self.peer.send(Transfer { amount: half });
//!         }
//!     }
//! }
//!
//! #[actix::main]
//! async fn main() {
//!     let mut b = SnapshotGroup::builder();
//!     let (x, y) = (b.node::<Branch>("x"), b.node::<Branch>("y"));
//!     let (x_to_y, y_to_x) = (b.channel(x, y), b.channel(y, x));
//!     let kick = b.ingress::<Transfer, _>("kick", x);
//!     b.actor(x, move |state| Branch { balance: state.unwrap_or(500), peer: x_to_y });
//!     b.actor(y, move |state| Branch { balance: state.unwrap_or(500), peer: y_to_x });
//!     let group = b.start().expect("valid topology");
//!
//!     kick.send(Transfer { amount: 0 }).unwrap();      // money now circulates x <-> y
//!     let snap = group.snapshot().await.expect("round completes");
//!
//!     let in_branches: u64 = snap.states::<Branch>().unwrap().sum();
//!     let in_flight: u64 = snap.in_flight::<Transfer>().unwrap().map(|t| t.amount).sum();
//!     assert_eq!(in_branches + in_flight, 1000);       // nothing lost, nothing doubled
//!
//!     let bytes = snap.to_bytes();                     // magic, version, body, CRC-32
//!     assert_eq!(actix_snapshot::GlobalSnapshot::from_bytes(&bytes).unwrap(), snap);
//!     group.shutdown();
//! }
//! ```
//!
//! # Where things are
//!
//! | module          | what                                                              |
//! |-----------------|-------------------------------------------------------------------|
//! | [`protocol`]    | the per-node marker protocol, a pure state machine (no actix)     |
//! | [`actor`]       | the traits you implement and the actor shell around the protocol  |
//! | [`channel`]     | `Out<M>` and `Ingress<M>`, the FIFO channel ends                  |
//! | [`group`]       | the builder and the running group                                 |
//! | [`collector`]   | round start, timeout, assembly; options and stats                 |
//! | [`snapshot`]    | `GlobalSnapshot`, typed views, file format                        |
//! | [`error`]       | error types                                                       |
//!
//! # Limits
//!
//! - FIFO holds only for [`Out::send`] used from the owning actor's handlers and timers (see
//!   [`SnapCtx::run_later`]). Work held inside an unfinished future is in no state. Actors
//!   outside the group, `send().await` and `SyncArbiter` are outside the guarantee.
//! - The topology is fixed when the group starts.
//! - A node that stops or panics fails every round that still needs it
//!   ([`SnapshotError::NodeStopped`]); a node stuck in a handler fails the round on timeout.
//! - A snapshot is held in memory; its size is the states plus the in-flight messages.

#![warn(missing_docs)]

pub mod actor;
pub mod channel;
pub mod checkpoint;
pub mod collector;
pub mod deadlock;
pub mod error;
pub mod group;
#[cfg(feature = "cli")]
pub mod inspect;
pub mod monitor;
pub mod protocol;
pub mod snapshot;

pub use actor::{Payload, Receive, SnapCtx, SnapshotActor, Snapshottable};
pub use channel::{Ingress, IngressClosed, Out};
pub use checkpoint::{
    CheckpointConfig, CheckpointError, CheckpointHandle, CheckpointReport, CheckpointStore,
    Checkpointer, FsStore,
};
pub use collector::{Initiation, SnapshotOptions, SnapshotStats};
pub use deadlock::{Deadlock, WaitForGraph, find_deadlocks};
pub use error::{BuildError, DecodeError, SnapshotError};
pub use group::{GroupBuilder, NodeRef, SnapshotGroup};
pub use monitor::{Monitor, MonitorEvent, Violation, ViolationReport};
pub use snapshot::GlobalSnapshot;

use serde::{Deserialize, Serialize};

/// The id of a node in its group: its position in declaration order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NodeId(pub u32);

impl NodeId {
    /// The id as an index into per-node vectors.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl std::fmt::Display for NodeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}
