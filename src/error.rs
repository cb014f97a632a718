//! Error types.
//!
//! Four families, so that a caller matches only what can happen where it stands:
//!
//! - [`SpawnError`]: a node cannot join a running group.
//! - [`BuildError`]: what was declared on a [`GroupBuilder`](crate::GroupBuilder) cannot start,
//!   or a snapshot cannot be restored.
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

use crate::protocol::{NodeId, RoundId};

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
    ForeignNode(NodeId),
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
    /// The snapshot holds a node or message type nothing was registered for.
    #[error("cannot restore from snapshot: {0}")]
    UnknownType(String),
    /// A node's constructor panicked; nothing of the group was started.
    #[error("the constructor of node {node:?} panicked: {reason}")]
    ConstructorPanicked {
        /// The node.
        node: String,
        /// The panic message.
        reason: String,
    },
    /// A node could not join (see [`SpawnError`]).
    #[error(transparent)]
    Spawn(#[from] SpawnError),
}

/// A node cannot join a running group.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SpawnError {
    /// A live node of the group already has this name.
    #[error("a live node is already called {0:?}")]
    DuplicateName(String),
    /// The group was shut down.
    #[error("the group is shut down")]
    GroupStopped,
    /// Called from outside every node's task (a child can only be spawned by a node).
    #[error("not called from a node of a group")]
    NotInNode,
    /// The node's constructor panicked. Reported at once when the constructor runs on the
    /// caller's thread; a node placed on another arbiter cannot report it to the caller: it
    /// leaves the group (it never had a state) and its address reports it not alive.
    #[error("the constructor of node {node:?} panicked: {reason}")]
    ConstructorPanicked {
        /// The node.
        node: String,
        /// The panic message.
        reason: String,
    },
}

/// A snapshot round did not complete.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SnapshotError {
    /// The round did not complete within its timeout: some members did not report (stuck, or
    /// busy for too long), or messages sent before the cut were never seen arriving. Nothing
    /// of the round is kept anywhere.
    #[error(
        "snapshot round {round} timed out after {waited:?}; no record from {missing:?}, {unaccounted} in-flight message(s) unaccounted for"
    )]
    Timeout {
        /// The round.
        round: RoundId,
        /// How long the round was given.
        waited: Duration,
        /// Names of the members that had not recorded the round.
        missing: Vec<String>,
        /// Messages sent before the cut whose arrival was never reported.
        unaccounted: i64,
    },
    /// A member's actor panicked before it recorded the round.
    #[error("snapshot round {round} failed: node {node:?} panicked: {reason}")]
    NodePanicked {
        /// The round.
        round: RoundId,
        /// The node's name.
        node: String,
        /// The panic message.
        reason: String,
    },
    /// A node could not take part (its state or a message could not be encoded).
    #[error("snapshot round {round} failed on node {node:?}: {reason}")]
    NodeFailed {
        /// The round.
        round: RoundId,
        /// The node's name.
        node: String,
        /// What went wrong.
        reason: String,
    },
    /// More in-flight messages were seen than were sent (a message duplicated in transit).
    #[error("snapshot round {round} failed: {excess} more message(s) in flight than were sent")]
    Unbalanced {
        /// The round.
        round: RoundId,
        /// How many too many.
        excess: i64,
    },
    /// `receiver` got a message that `sender` sent before its cut of the round, but `receiver`
    /// was born after that cut (a child spawned after its parent recorded the round): `sender`
    /// had its address from outside the group's messages (a shared map,
    /// [`SnapshotGroup::addr`](crate::SnapshotGroup::addr) inside a handler). Such a message
    /// belongs nowhere in the cut, so the round fails instead of being silently wrong; pass
    /// addresses in messages to keep rounds whole.
    #[error(
        "snapshot round {round} failed: {receiver:?} got a message that {sender:?} sent before its cut, but was not part of the round (its address reached {sender:?} outside the group's messages)"
    )]
    UntrackedAddress {
        /// The round.
        round: RoundId,
        /// The node that got the message.
        receiver: String,
        /// The node that sent it.
        sender: String,
    },
    /// The round was aborted.
    #[error("snapshot round {round} was aborted")]
    Aborted {
        /// The round.
        round: RoundId,
    },
    /// As many rounds as the group allows are already in progress.
    #[error("{limit} snapshot rounds are already in progress")]
    TooManyRounds {
        /// The limit ([`GroupBuilder::max_concurrent_rounds`](crate::GroupBuilder::max_concurrent_rounds)).
        limit: usize,
    },
    /// The group was shut down.
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
