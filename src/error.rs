//! Error types.
//!
//! Three families, so that a caller matches only what can happen where it stands:
//!
//! - [`BuildError`]: the topology given to the [`GroupBuilder`](crate::GroupBuilder) is wrong.
//! - [`SnapshotError`]: a snapshot round did not complete.
//! - [`DecodeError`]: bytes or a typed view of a [`GlobalSnapshot`](crate::GlobalSnapshot)
//!   cannot be decoded (truncated, corrupt, wrong version, wrong type).
//!
//! ```
//! use actix_snapshot::{DecodeError, GlobalSnapshot};
//!
//! match GlobalSnapshot::from_bytes(b"not a snapshot") {
//!     Err(DecodeError::BadMagic { .. }) => {}
//!     other => panic!("unexpected {other:?}"),
//! }
//! ```

use std::time::Duration;

use crate::protocol::RoundId;

/// The topology handed to the builder cannot be started.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BuildError {
    /// Two nodes were declared with the same name.
    #[error("node name {0:?} is used twice")]
    DuplicateNode(String),
    /// A node was declared but no constructor was given for it.
    #[error("node {0:?} has no actor: call GroupBuilder::actor for it")]
    MissingActor(String),
    /// Two ingress handles were declared with the same name.
    #[error("ingress name {0:?} is used twice")]
    DuplicateIngress(String),
    /// A node handle from another builder was used.
    #[error("node handle {0:?} belongs to another builder")]
    ForeignNode(crate::NodeId),
    /// A recorded state has a version the actor type cannot upgrade from.
    #[error(
        "node {node:?} ({actor_type}): state version {found} cannot become {expected}: {reason}"
    )]
    StateVersion {
        /// The node.
        node: String,
        /// The actor type recorded.
        actor_type: String,
        /// Version in the snapshot.
        found: u32,
        /// Version of the running code.
        expected: u32,
        /// The upgrade's message.
        reason: String,
    },
    /// A constructor was given twice for one node.
    #[error("node {0:?} was given two actors")]
    DuplicateActor(String),
    /// A placement names an arbiter the group does not have.
    #[error("node {node:?} is placed on arbiter {arbiter}, but the group has {arbiters}")]
    NoSuchArbiter {
        /// The node.
        node: String,
        /// The requested arbiter index.
        arbiter: usize,
        /// How many arbiters the group has.
        arbiters: usize,
    },
    /// The group was started outside a running actix `System`.
    #[error("no actix System is running on this thread")]
    NoSystem,
    /// The snapshot to restore from does not match the topology being built.
    #[error("snapshot does not match the topology: {0}")]
    TopologyMismatch(String),
    /// A state or message of the snapshot to restore from cannot be decoded.
    #[error("cannot restore from snapshot: {0}")]
    Restore(#[from] DecodeError),
}

/// A snapshot round did not complete.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SnapshotError {
    /// Some nodes did not report within the round's timeout (stuck, or busy for too long).
    /// The round's buffers were freed on every node.
    #[error("snapshot round {round} timed out after {waited:?}; no report from {missing:?}")]
    Timeout {
        /// The round.
        round: RoundId,
        /// How long the collector waited.
        waited: Duration,
        /// Names of the nodes that did not report.
        missing: Vec<String>,
    },
    /// Some nodes stopped (or panicked) before reporting; the round cannot complete.
    #[error("snapshot round {round} failed: node(s) {stopped:?} stopped before reporting")]
    NodeStopped {
        /// The round.
        round: RoundId,
        /// Names of the stopped nodes that had not reported.
        stopped: Vec<String>,
    },
    /// A node could not take part (its state or a message could not be encoded, or a
    /// channel was not used FIFO).
    #[error("snapshot round {round} failed on node {node:?}: {reason}")]
    NodeFailed {
        /// The round.
        round: RoundId,
        /// The node's name.
        node: String,
        /// What went wrong.
        reason: String,
    },
    /// The group was shut down (its collector is gone).
    #[error("the snapshot group is no longer running")]
    GroupStopped,
}

/// Bytes or a typed view of a snapshot cannot be decoded.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// Fewer bytes than a header.
    #[error("input is {len} bytes, shorter than the {min}-byte header")]
    TooShort {
        /// Bytes given.
        len: usize,
        /// Header size.
        min: usize,
    },
    /// The input does not start with the snapshot magic.
    #[error("not a snapshot file: magic bytes are {found:02x?}")]
    BadMagic {
        /// The first bytes found.
        found: Vec<u8>,
    },
    /// The file was written by an incompatible format version.
    #[error("snapshot format version {found} is not supported (this build reads {supported})")]
    UnsupportedVersion {
        /// Version in the file.
        found: u16,
        /// Version this build reads.
        supported: u16,
    },
    /// The body is shorter than the header says.
    #[error("snapshot is truncated: header announces {expected} bytes of body, {found} present")]
    Truncated {
        /// Announced length (body plus checksum).
        expected: u64,
        /// Present length.
        found: u64,
    },
    /// More bytes follow the checksum.
    #[error("{0} unexpected bytes after the end of the snapshot")]
    TrailingBytes(u64),
    /// The checksum does not match: the bytes were altered.
    #[error("snapshot checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Checksum {
        /// Checksum stored in the file.
        stored: u32,
        /// Checksum of the bytes read.
        computed: u32,
    },
    /// The body passed the checksum but is not a valid snapshot (written by a buggy writer).
    #[error("snapshot body is malformed: {0}")]
    Body(String),
    /// A node or channel asked for by name or id is not in the snapshot.
    #[error("no {kind} {name:?} in this snapshot")]
    NotFound {
        /// "node" or "channel".
        kind: &'static str,
        /// What was asked for.
        name: String,
    },
    /// The requested Rust type is not the one recorded.
    #[error("{what} holds {found}, not {expected}")]
    TypeMismatch {
        /// The node or channel.
        what: String,
        /// The requested type.
        expected: String,
        /// The recorded type.
        found: String,
    },
    /// The recorded bytes do not decode as the requested type.
    #[error("cannot decode {what} as {ty}: {reason}")]
    Value {
        /// The node or channel.
        what: String,
        /// The requested type.
        ty: String,
        /// The decoder's message.
        reason: String,
    },
}
