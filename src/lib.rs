//! Consistent global snapshots for groups of [actix](https://docs.rs/actix) actors that change
//! while they run.
//!
//! While a group of actors keeps running, [`SnapshotGroup::snapshot`] records the state of
//! every actor in the group *and every message in flight between them* at one consistent cut.
//! Use a snapshot to check invariants (no money created or lost), to find deadlocks in the
//! wait-for graph, or as a checkpoint to restart from ([`GroupBuilder::restore`]).
//!
//! A node is a plain actix actor: it keeps its `impl Handler<M>` blocks, its `Context<Self>`,
//! `started`/`stopping`, timers and `send(..).await`. Adopting takes `#[derive(Snapshot)]`
//! (which state to record, which messages it takes) and [`NodeAddr`] in place of `Addr`.
//! Nodes join and leave at any moment — spawned from outside ([`SnapshotGroup::spawn`]) or by
//! another node ([`NodeContext::spawn_node`]), stopped (`ctx.stop()`) or crashed — and any
//! node can send to any node whose address it holds; addresses travel in messages and states.
//! Nothing is declared before start, and delivery order is not assumed.
//!
//! # Concepts
//!
//! - A **node** is one of your actors inside a group. `#[derive(Snapshot)]` implements
//!   [`Snapshottable`] (what its snapshot state is) and the handlers through which the library
//!   sees each message (`Handler<Envelope<M>>`, around your own `Handler<M>`). The group runs
//!   the node's actix context inside a task of its own, so everything the actor does —
//!   handlers, hooks, timers, the continuations of its futures — counts as the node's.
//! - A **round** is one snapshot. The protocol (module [`protocol`]) is Lai–Yang's colored
//!   snapshots with Mattern's counting: every message carries its sender's epoch; a node
//!   records when asked or when a message from a later epoch arrives; messages from an earlier
//!   epoch that arrive after the cut are in flight and copied; each node reports how many
//!   messages it sent and received, so the round knows when every in-flight message is in.
//!   A request and its reply ([`NodeAddr::send`], [`Request`]) are two such messages.
//! - A **snapshot** ([`GlobalSnapshot`]) holds encoded states and in-flight messages with typed
//!   views and a checksummed file format.
//!
//! # Example
//!
//! ```
//! use actix::prelude::*;
//! use actix_snapshot::{NodeAddr, Snapshot, SnapshotGroup};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Message, Serialize, Deserialize)]
//! #[rtype(result = "()")]
//! struct Transfer { amount: u64 }
//!
//! /// Introduces a peer (addresses travel in messages).
//! #[derive(Message, Serialize, Deserialize)]
//! #[rtype(result = "()")]
//! struct Meet(NodeAddr<Branch>);
//!
//! /// A bank branch: it keeps a balance and passes half of what it gets to its peer.
//! #[derive(Snapshot)]
//! #[snapshot(state = balance, messages(Transfer, Meet))]   // what goes into a snapshot
//! struct Branch { balance: u64, peer: Option<NodeAddr<Branch>> }
//!
//! impl Actor for Branch { type Context = Context<Self>; }
//!
//! impl Handler<Transfer> for Branch {
//!     type Result = ();
//!     fn handle(&mut self, t: Transfer, _ctx: &mut Context<Self>) {
//!         self.balance += t.amount;
//!         let half = self.balance / 2;
//!         if let (Some(peer), true) = (&self.peer, half > 0) {
//!             self.balance -= half;
//!             peer.do_send(Transfer { amount: half });    // colored and counted
//!         }
//!     }
//! }
//!
//! impl Handler<Meet> for Branch {
//!     type Result = ();
//!     fn handle(&mut self, m: Meet, _ctx: &mut Context<Self>) { self.peer = Some(m.0); }
//! }
//!
//! #[actix::main]
//! async fn main() {
//!     let group = SnapshotGroup::new().expect("inside an actix System");
//!     let x = group.spawn("x", || Branch { balance: 500, peer: None }).unwrap();
//!     let y = group.spawn("y", || Branch { balance: 500, peer: None }).unwrap();
//!     x.do_send(Meet(y.clone()));
//!     y.do_send(Meet(x.clone()));
//!     x.do_send(Transfer { amount: 0 });                 // money now circulates x <-> y
//!
//!     let snap = group.snapshot().await.expect("round completes");
//!     let in_branches: u64 = snap.states::<Branch>().unwrap().sum();
//!     let in_flight: u64 = snap.in_flight::<Transfer>().unwrap().map(|t| t.amount).sum();
//!     assert_eq!(in_branches + in_flight, 1000);          // nothing lost, nothing doubled
//!
//!     let bytes = snap.to_bytes();                        // magic, version, body, CRC-32
//!     assert_eq!(actix_snapshot::GlobalSnapshot::from_bytes(&bytes).unwrap(), snap);
//!     group.shutdown();
//! }
//! ```
//!
//! # Where things are
//!
//! | module        | what                                                                   |
//! |---------------|------------------------------------------------------------------------|
//! | [`protocol`]  | the protocol: two pure state machines, node and round tracker (no actix) |
//! | [`shell`]     | the actix shell: the node task, the group, addresses, requests         |
//! | [`snapshot`]  | `GlobalSnapshot`: data, typed views, file format                       |
//! | [`error`]     | error types                                                            |
//!
//! # Limits
//!
//! - A send counts as a node-to-node message only when it runs as part of the node: in its
//!   context's task (handlers, `started`/`stopping`, timers, futures spawned on its context).
//!   A send from anywhere else — `main`, an HTTP handler, a future given to `actix::spawn` —
//!   is an input from outside the group: counted at the receiver, not part of any sender's
//!   state. Work held inside an unfinished future (a value taken out of the state and not yet
//!   sent) is in no state.
//! - Actors outside the group and raw actix messages that bypass the library are outside the
//!   guarantee.
//! - A node that stops leaves the group: later snapshots do not hold it, and what is sent to it
//!   afterwards is counted and dropped by its *tombstone*, a small record that lives as long as
//!   someone holds its address. A node whose actor panics fails the rounds it owed a record.
//! - A snapshot is held in memory; its size is the states plus the in-flight messages.

#![warn(missing_docs)]

pub mod checkpoint;
pub mod deadlock;
pub mod error;
#[cfg(feature = "cli")]
pub mod inspect;
pub mod monitor;
pub mod protocol;
pub mod shell;
pub mod snapshot;

pub use checkpoint::{
    CheckpointConfig, CheckpointError, CheckpointHandle, CheckpointReport, CheckpointStore,
    Checkpointer, FsStore,
};
pub use deadlock::{Deadlock, WaitForGraph, find_deadlocks};
pub use error::{BuildError, DecodeError, SnapshotError, SpawnError};
pub use monitor::{Monitor, MonitorEvent, Violation, ViolationReport};
pub use protocol::NodeId;
pub use shell::{
    Envelope, GroupBuilder, Ingress, IngressClosed, Messages, NodeAddr, NodeContext, NodeMessage,
    NodeRecipient, NodeRef, Out, Payload, REPLY_TAG, Request, RequestActFuture, RequestError,
    SnapshotGroup, SnapshotOptions, SnapshotStats, Snapshottable,
};

/// `#[derive(Snapshot)]`: makes an actix actor a node of a snapshot group. See
/// [`actix_snapshot_derive`] for its attributes.
pub use actix_snapshot_derive::Snapshot;

// Lets the derive's `::actix_snapshot::..` paths resolve inside this crate too.
extern crate self as actix_snapshot;

/// What `#[derive(Snapshot)]` expands to uses these; not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use crate::shell::actor::Messages;
    pub use crate::shell::actor::{control, deliver};
    pub use crate::shell::runtime::Control;
}
pub use snapshot::GlobalSnapshot;
