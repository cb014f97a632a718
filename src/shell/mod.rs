//! The actix shell: carries what the [protocol](crate::protocol) machines emit between actix
//! actors. Nothing in it decides when to record or what counts as in flight.
//!
//! | module      | what                                                                      |
//! |-------------|---------------------------------------------------------------------------|
//! | `runtime`   | the tracker behind a lock, live nodes and tombstones, waiters, shutdown   |
//! | `envelope`  | send stamps, [`Envelope`], replies, the address resolver used by restores |
//! | `cell`      | a node's protocol state beside its actor; which node runs now             |
//! | `actor`     | [`Snapshottable`], the node task, the functions derived handlers call     |
//! | `request`   | [`Request`], [`RequestActFuture`]: request/response between nodes        |
//! | `handles`   | [`NodeAddr`], [`NodeRecipient`], [`Out`], [`Ingress`]                     |
//! | `group`     | [`SnapshotGroup`], the running group                                      |
//! | `builder`   | [`GroupBuilder`]: options, declared nodes, start and restore              |
//!
//! Each module uses only those above it in this table.
//!
//! ```
//! use actix_snapshot::shell::{SnapshotGroup, SnapshotOptions};
//! # #[actix::main] async fn main() {
//! let group = SnapshotGroup::new().unwrap();
//! assert!(group.is_empty());
//! group.shutdown();
//! # }
//! ```

pub mod actor;
pub mod builder;
mod cell;
pub mod envelope;
pub mod group;
pub mod handles;
pub mod request;
pub mod runtime;

pub use actor::{Messages, Snapshottable};
pub use builder::{GroupBuilder, NodeRef};
pub use envelope::{Envelope, NodeMessage, Payload, REPLY_TAG};
pub use group::SnapshotGroup;
pub use handles::{Ingress, IngressClosed, NodeAddr, NodeContext, NodeRecipient, Out};
pub use request::{Request, RequestActFuture, RequestError};
pub use runtime::{SnapshotOptions, SnapshotStats};
