//! The actix shell: carries what the [protocol](crate::protocol) machines emit between actix
//! actors. Nothing in it decides when to record or what counts as in flight.
//!
//! | module      | what                                                                     |
//! |-------------|--------------------------------------------------------------------------|
//! | `runtime`   | the tracker behind a lock, the registry of live nodes, waiters, shutdown |
//! | `envelope`  | send stamps, [`Envelope`], the address resolver used by restores        |
//! | `actor`     | [`Snapshottable`], [`Receive`], [`SnapCtx`], [`NodeActor`], [`NodeAddr`]   |
//! | `handles`   | [`NodeRecipient`], [`Out`], [`Ingress`]                                  |
//! | `group`     | [`SnapshotGroup`], the running group                                     |
//! | `builder`   | [`GroupBuilder`]: options, declared nodes, start and restore             |
//!
//! Each module uses only those above it in this table.

pub mod actor;
pub mod builder;
pub mod envelope;
pub mod group;
pub mod handles;
pub mod runtime;

pub use actor::{NodeActor, NodeAddr, Payload, Receive, SnapCtx, Snapshottable};
pub use builder::{GroupBuilder, NodeRef};
pub use envelope::Envelope;
pub use group::SnapshotGroup;
pub use handles::{Ingress, IngressClosed, NodeRecipient, Out};
pub use runtime::{SnapshotOptions, SnapshotStats};
