//! [`GlobalSnapshot`]: what a completed round holds, its typed views and its file format.
//!
//! A snapshot holds, for one round:
//!
//! - every member node's state, encoded with MessagePack (`rmp-serde`, field names kept), the
//!   stable tag of its actor type ([`StateType::type_tag`]) and the type's state version;
//! - every message in flight at the cut — sent before its sender's cut, received after its
//!   receiver's — grouped by path (sender, receiver, message type), in arrival order;
//! - every named ingress source's offset: how many of its messages the receiving node had
//!   handled at its cut (a source replays from there after a restore).
//!
//! Nodes are identified by [`NodeId`]; ids are sparse in a group where nodes come and go, so
//! `nodes` is sorted by id and looked up by binary search. A path's sender may be a node that
//! had already stopped at the cut (its message was still travelling); its receiver is always a
//! node of the snapshot.
//!
//! Nothing is decoded until asked: [`GlobalSnapshot::states`], [`GlobalSnapshot::state`],
//! [`GlobalSnapshot::in_flight`] and [`GlobalSnapshot::path_messages`] decode on demand and
//! check the recorded type tag first.
//!
//! # File format
//!
//! ```text
//! offset  size  field
//! 0       8     magic  "ACTXSNAP"
//! 8       2     format version, little endian (currently 2)
//! 10      2     flags, 0
//! 12      8     body length N, little endian
//! 20      N     body: the GlobalSnapshot as MessagePack
//! 20+N    4     CRC-32 (IEEE) of bytes 0 .. 20+N, little endian
//! ```
//!
//! [`GlobalSnapshot::from_bytes`] checks each of these and returns a [`DecodeError`] naming
//! the first that fails; it never panics, whatever the input.
//!
//! ```
//! use actix_snapshot::{DecodeError, GlobalSnapshot};
//!
//! let snap = GlobalSnapshot::default();
//! let bytes = snap.to_bytes();
//! assert_eq!(GlobalSnapshot::from_bytes(&bytes).unwrap(), snap);
//!
//! let mut corrupt = bytes.clone();
//! let last = corrupt.len() - 5;
//! corrupt[last] ^= 0x40; // flip one bit of the body
//! assert!(matches!(
//!     GlobalSnapshot::from_bytes(&corrupt),
//!     Err(DecodeError::Checksum { .. })
//! ));
//! assert!(matches!(
//!     GlobalSnapshot::from_bytes(&bytes[..bytes.len() - 1]),
//!     Err(DecodeError::Truncated { .. })
//! ));
//! ```

use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_bytes::ByteBuf;

use crate::error::DecodeError;
use crate::protocol::NodeId;

/// The first eight bytes of every snapshot file.
pub const MAGIC: [u8; 8] = *b"ACTXSNAP";
/// The format version this build writes and reads.
pub const FORMAT_VERSION: u16 = 2;
/// Size of the fixed header before the body.
pub const HEADER_LEN: usize = 20;
/// Size of the checksum after the body.
pub const CHECKSUM_LEN: usize = 4;

/// The stable name of a Rust type in snapshot files: the type's own name without its module
/// path (`bank::Branch` becomes `Branch`). A generic type keeps its full name.
pub fn short_type_name(full: &'static str) -> &'static str {
    if full.contains('<') {
        return full;
    }
    full.rsplit("::").next().unwrap_or(full)
}

/// What a snapshot knows of an actor type: its state type, stable tag and state version.
/// Implemented for every [`Snapshottable`](crate::Snapshottable) actor; typed views take it.
pub trait StateType {
    /// The recorded state.
    type State: DeserializeOwned;
    /// The tag recorded with each of this type's nodes.
    fn type_tag() -> &'static str;
    /// The version of the state's shape.
    fn state_version() -> u32;
}

/// One node's share of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct NodeSnapshot {
    /// The node's id in its group.
    pub id: NodeId,
    /// The node's name, unique among the group's live nodes.
    pub name: String,
    /// The stable tag of the node's actor type.
    pub actor_type: String,
    /// The actor type's state version when recorded.
    pub state_version: u32,
    /// The state, MessagePack-encoded.
    pub state: ByteBuf,
    /// Nodes this node reported waiting for (see
    /// [`Snapshottable::waits_for`](crate::Snapshottable::waits_for)).
    pub waits_for: Vec<NodeId>,
    /// Messages from other nodes it had received at its cut (since it started or was
    /// restored).
    pub received: u64,
    /// Messages to other nodes it had sent at its cut.
    pub sent: u64,
    /// Messages from unnamed senders outside the group it had handled at its cut.
    pub external: u64,
}

/// The messages in flight on one path (sender, receiver, message type) at the cut.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PathSnapshot {
    /// Sending node (possibly one that had stopped at the cut).
    pub from: NodeId,
    /// Receiving node, a node of the snapshot.
    pub to: NodeId,
    /// The stable tag of the messages' type.
    pub message_type: String,
    /// The messages, each MessagePack-encoded, in the order they arrived.
    pub messages: Vec<ByteBuf>,
}

/// One ingress source's share of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct IngressSnapshot {
    /// The ingress id in its group.
    pub id: u32,
    /// Its name, unique in its group.
    pub name: String,
    /// Receiving node.
    pub to: NodeId,
    /// The stable tag of its messages' type.
    pub message_type: String,
    /// Messages of this ingress that the receiver had handled at its cut. After a restore,
    /// the source resends from message number `offset` (0-based).
    pub offset: u64,
}

/// A consistent global snapshot: the state of every node of a group at one consistent cut and
/// every message in flight between them. See the [module docs](self).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct GlobalSnapshot {
    /// The round that produced it; increasing within a group.
    pub id: u64,
    /// When the round started, in milliseconds since the Unix epoch.
    pub taken_at_ms: u64,
    /// Member nodes, sorted by id.
    pub nodes: Vec<NodeSnapshot>,
    /// In-flight messages, by path; paths sorted by (from, to, type).
    pub paths: Vec<PathSnapshot>,
    /// Ingress sources whose receiving node is in the snapshot, by id.
    pub ingress: Vec<IngressSnapshot>,
    /// The id the group would give its next node (a restored group continues from here).
    pub next_node_id: u64,
}

fn decode_value<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T, DecodeError> {
    rmp_serde::from_slice(bytes).map_err(|e| DecodeError::Value {
        what: what.to_string(),
        ty: std::any::type_name::<T>().to_string(),
        reason: e.to_string(),
    })
}

impl GlobalSnapshot {
    /// The node called `name`.
    pub fn node(&self, name: &str) -> Result<&NodeSnapshot, DecodeError> {
        self.nodes
            .iter()
            .find(|n| n.name == name)
            .ok_or_else(|| DecodeError::NotFound {
                kind: "node",
                name: name.to_string(),
            })
    }

    /// Node `id`, if the snapshot has it.
    pub fn node_by_id(&self, id: NodeId) -> Option<&NodeSnapshot> {
        self.nodes
            .binary_search_by_key(&id, |n| n.id)
            .ok()
            .map(|i| &self.nodes[i])
    }

    /// The name of node `id`, if the snapshot has it.
    pub fn node_name(&self, id: NodeId) -> Option<&str> {
        self.node_by_id(id).map(|n| n.name.as_str())
    }

    /// The decoded state of node `name`, which must run actor type `A`.
    pub fn state<A: StateType>(&self, name: &str) -> Result<A::State, DecodeError> {
        let node = self.node(name)?;
        check_tag(&format!("node {name:?}"), A::type_tag(), &node.actor_type)?;
        decode_value(&format!("state of node {name:?}"), &node.state)
    }

    /// The decoded states of every node running actor type `A`, in id order, with names.
    pub fn states_named<A: StateType>(&self) -> Result<Vec<(&str, A::State)>, DecodeError> {
        let tag = A::type_tag();
        self.nodes
            .iter()
            .filter(|n| n.actor_type == tag)
            .map(|n| {
                decode_value(&format!("state of node {:?}", n.name), &n.state)
                    .map(|s| (n.name.as_str(), s))
            })
            .collect()
    }

    /// The decoded states of every node running actor type `A`, in id order.
    ///
    /// ```
    /// # use actix_snapshot::{GlobalSnapshot, Snapshot};
    /// # #[derive(Snapshot)]
    /// # #[snapshot(state = balance)]
    /// # struct Branch { balance: u64 }
    /// # impl actix::Actor for Branch { type Context = actix::Context<Self>; }
    /// # fn f(snap: &GlobalSnapshot) -> Result<(), actix_snapshot::DecodeError> {
    /// let total: u64 = snap.states::<Branch>()?.sum();
    /// # Ok(()) }
    /// ```
    pub fn states<A: StateType>(
        &self,
    ) -> Result<impl ExactSizeIterator<Item = A::State> + use<A>, DecodeError> {
        Ok(self
            .states_named::<A>()?
            .into_iter()
            .map(|(_, s)| s)
            .collect::<Vec<_>>()
            .into_iter())
    }

    /// The decoded in-flight messages of type `M` on every path, path by path, each path in
    /// arrival order.
    pub fn in_flight<M: DeserializeOwned>(
        &self,
    ) -> Result<impl ExactSizeIterator<Item = M> + use<M>, DecodeError> {
        let tag = short_type_name(std::any::type_name::<M>());
        let mut out = Vec::new();
        for p in self.paths.iter().filter(|p| p.message_type == tag) {
            for m in &p.messages {
                out.push(decode_value(&self.path_label(p), m)?);
            }
        }
        Ok(out.into_iter())
    }

    /// The decoded in-flight messages of type `M` from node `from` to node `to` (by name), in
    /// arrival order; empty when none was in flight.
    pub fn path_messages<M: DeserializeOwned>(
        &self,
        from: &str,
        to: &str,
    ) -> Result<Vec<M>, DecodeError> {
        let (f, t) = (self.node(from)?.id, self.node(to)?.id);
        self.path_messages_by_id(f, t)
    }

    /// The decoded in-flight messages of type `M` from node `from` to node `to`, in arrival
    /// order; empty when none was in flight.
    pub fn path_messages_by_id<M: DeserializeOwned>(
        &self,
        from: NodeId,
        to: NodeId,
    ) -> Result<Vec<M>, DecodeError> {
        let tag = short_type_name(std::any::type_name::<M>());
        let mut out = Vec::new();
        for p in self
            .paths
            .iter()
            .filter(|p| p.from == from && p.to == to && p.message_type == tag)
        {
            let label = self.path_label(p);
            for m in &p.messages {
                out.push(decode_value(&label, m)?);
            }
        }
        Ok(out)
    }

    /// Total number of in-flight messages recorded, over all paths.
    pub fn in_flight_count(&self) -> usize {
        self.paths.iter().map(|c| c.messages.len()).sum()
    }

    /// Bytes of recorded state and message payload (without framing).
    pub fn payload_bytes(&self) -> usize {
        self.nodes.iter().map(|n| n.state.len()).sum::<usize>()
            + self
                .paths
                .iter()
                .flat_map(|c| c.messages.iter())
                .map(|m| m.len())
                .sum::<usize>()
    }

    /// The ingress offset recorded for the ingress called `name`.
    pub fn ingress_offset(&self, name: &str) -> Result<u64, DecodeError> {
        self.ingress
            .iter()
            .find(|i| i.name == name)
            .map(|i| i.offset)
            .ok_or_else(|| DecodeError::NotFound {
                kind: "ingress",
                name: name.to_string(),
            })
    }

    fn path_label(&self, p: &PathSnapshot) -> String {
        let name = |id: NodeId| {
            self.node_name(id)
                .map_or_else(|| format!("#{id}"), str::to_string)
        };
        format!("path {} -> {}", name(p.from), name(p.to))
    }

    /// Encodes the snapshot in the file format described in the [module docs](self).
    pub fn to_bytes(&self) -> Vec<u8> {
        // Serializing plain owned data with derived impls into a Vec cannot fail; fall back to
        // an empty body rather than panic if a future field ever makes it fail.
        let body = rmp_serde::to_vec_named(self).unwrap_or_default();
        let mut out = Vec::with_capacity(HEADER_LEN + body.len() + CHECKSUM_LEN);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(&(body.len() as u64).to_le_bytes());
        out.extend_from_slice(&body);
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decodes bytes written by [`to_bytes`](Self::to_bytes), checking magic, version,
    /// length, checksum and the body's internal consistency, in that order.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let magic_part = &bytes[..bytes.len().min(MAGIC.len())];
        if magic_part != &MAGIC[..magic_part.len()] {
            return Err(DecodeError::BadMagic {
                found: magic_part.to_vec(),
            });
        }
        if bytes.len() < HEADER_LEN {
            return Err(DecodeError::TooShort {
                len: bytes.len(),
                min: HEADER_LEN,
            });
        }
        let version = u16::from_le_bytes([bytes[8], bytes[9]]);
        if version != FORMAT_VERSION {
            return Err(DecodeError::UnsupportedVersion {
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        let mut len = [0u8; 8];
        len.copy_from_slice(&bytes[12..20]);
        let body_len = u64::from_le_bytes(len);
        let expected = body_len.saturating_add(CHECKSUM_LEN as u64);
        let found = (bytes.len() - HEADER_LEN) as u64;
        if found < expected {
            return Err(DecodeError::Truncated { expected, found });
        }
        if found > expected {
            return Err(DecodeError::TrailingBytes(found - expected));
        }
        let end = HEADER_LEN + body_len as usize;
        let mut crc = [0u8; 4];
        crc.copy_from_slice(&bytes[end..end + CHECKSUM_LEN]);
        let stored = u32::from_le_bytes(crc);
        let computed = crc32fast::hash(&bytes[..end]);
        if stored != computed {
            return Err(DecodeError::Checksum { stored, computed });
        }
        let snap: GlobalSnapshot = rmp_serde::from_slice(&bytes[HEADER_LEN..end])
            .map_err(|e| DecodeError::Body(e.to_string()))?;
        snap.validate()?;
        Ok(snap)
    }

    /// Checks the references inside a decoded snapshot.
    fn validate(&self) -> Result<(), DecodeError> {
        for w in self.nodes.windows(2) {
            if w[0].id >= w[1].id {
                return Err(DecodeError::Body(format!(
                    "nodes are not sorted by id ({} then {})",
                    w[0].id, w[1].id
                )));
            }
        }
        if let Some(last) = self.nodes.last()
            && last.id.0 >= self.next_node_id
        {
            return Err(DecodeError::Body(format!(
                "node id {} is not below next_node_id {}",
                last.id, self.next_node_id
            )));
        }
        for p in &self.paths {
            if p.from.0 >= self.next_node_id {
                return Err(DecodeError::Body(format!(
                    "in-flight messages from node {}, an id the group never gave out",
                    p.from
                )));
            }
            if self.node_by_id(p.to).is_none() {
                return Err(DecodeError::Body(format!(
                    "in-flight messages to unknown node {}",
                    p.to
                )));
            }
        }
        if let Some(i) = self
            .ingress
            .iter()
            .find(|i| self.node_by_id(i.to).is_none())
        {
            return Err(DecodeError::Body(format!(
                "ingress {:?} feeds an unknown node",
                i.name
            )));
        }
        Ok(())
    }
}

fn check_tag(what: &str, expected: &str, found: &str) -> Result<(), DecodeError> {
    if expected == found {
        Ok(())
    } else {
        Err(DecodeError::TypeMismatch {
            what: what.to_string(),
            expected: expected.to_string(),
            found: found.to_string(),
        })
    }
}
