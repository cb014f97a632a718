//! [`GlobalSnapshot`]: what a completed round holds, its typed views and its file format.
//!
//! A snapshot holds, for one round:
//!
//! - every node's state, encoded with MessagePack (`rmp-serde`, field names kept), the name
//!   of its actor type and the type's [`STATE_VERSION`](crate::Snapshottable::STATE_VERSION);
//! - every channel's recorded messages — sent before the sender recorded its state, received
//!   after the receiver recorded its own — in order, with the channel's sequence counters;
//! - every ingress handle's offset: how many of its messages the receiving node had handled
//!   when it recorded its state (a source replays from there after a restore).
//!
//! Nothing is decoded until asked: [`GlobalSnapshot::states`], [`GlobalSnapshot::state`],
//! [`GlobalSnapshot::in_flight`] and [`GlobalSnapshot::channel_messages`] decode on demand
//! and check the recorded type name first.
//!
//! # File format
//!
//! ```text
//! offset  size  field
//! 0       8     magic  "ACTXSNAP"
//! 8       2     format version, little endian (currently 1)
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
use crate::{NodeId, Snapshottable};

/// The first eight bytes of every snapshot file.
pub const MAGIC: [u8; 8] = *b"ACTXSNAP";
/// The format version this build writes and reads.
pub const FORMAT_VERSION: u16 = 1;
/// Size of the fixed header before the body.
pub const HEADER_LEN: usize = 20;
/// Size of the checksum after the body.
pub const CHECKSUM_LEN: usize = 4;

/// One node's share of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct NodeSnapshot {
    /// The node's id in its group.
    pub id: NodeId,
    /// The node's name, unique in its group.
    pub name: String,
    /// Rust type name of the node's actor.
    pub actor_type: String,
    /// The actor type's [`STATE_VERSION`](crate::Snapshottable::STATE_VERSION) when recorded.
    pub state_version: u32,
    /// The state, MessagePack-encoded.
    pub state: ByteBuf,
    /// Nodes this node reported waiting for (see
    /// [`Snapshottable::waits_for`](crate::Snapshottable::waits_for)).
    pub waits_for: Vec<NodeId>,
}

/// One channel's share of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ChannelSnapshot {
    /// The channel's id in its group.
    pub id: u32,
    /// Sending node.
    pub from: NodeId,
    /// Receiving node.
    pub to: NodeId,
    /// Rust type name of the channel's messages.
    pub message_type: String,
    /// Messages the sender had sent on this channel when it recorded its state.
    pub sent: u64,
    /// Messages the receiver had handled from this channel when it recorded its state.
    pub delivered: u64,
    /// Messages in flight at the cut (`sent - delivered` of them), in send order,
    /// each MessagePack-encoded.
    pub messages: Vec<ByteBuf>,
}

/// One ingress handle's share of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct IngressSnapshot {
    /// The ingress id in its group.
    pub id: u32,
    /// Its name, unique in its group.
    pub name: String,
    /// Receiving node.
    pub to: NodeId,
    /// Rust type name of its messages.
    pub message_type: String,
    /// Messages of this ingress that the receiver had handled when it recorded its state.
    /// After a restore, the source resends from message number `offset` (0-based).
    pub offset: u64,
}

/// A consistent global snapshot: every node's state and every channel's in-flight messages
/// at one consistent cut. See the [module docs](self).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct GlobalSnapshot {
    /// The round that produced it; increasing within a group.
    pub id: u64,
    /// When the round started, in milliseconds since the Unix epoch.
    pub taken_at_ms: u64,
    /// Nodes, by id.
    pub nodes: Vec<NodeSnapshot>,
    /// Channels, by id.
    pub channels: Vec<ChannelSnapshot>,
    /// Ingress handles, by id.
    pub ingress: Vec<IngressSnapshot>,
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

    /// The name of node `id`, if the snapshot has it.
    pub fn node_name(&self, id: NodeId) -> Option<&str> {
        self.nodes.get(id.index()).map(|n| n.name.as_str())
    }

    /// The decoded state of node `name`, which must run actor type `A`.
    pub fn state<A: Snapshottable>(&self, name: &str) -> Result<A::State, DecodeError> {
        let node = self.node(name)?;
        check_type::<A>(&format!("node {name:?}"), &node.actor_type)?;
        decode_value(&format!("state of node {name:?}"), &node.state)
    }

    /// The decoded states of every node running actor type `A`, in node order, with names.
    pub fn states_named<A: Snapshottable>(&self) -> Result<Vec<(&str, A::State)>, DecodeError> {
        let ty = std::any::type_name::<A>();
        self.nodes
            .iter()
            .filter(|n| n.actor_type == ty)
            .map(|n| {
                decode_value(&format!("state of node {:?}", n.name), &n.state)
                    .map(|s| (n.name.as_str(), s))
            })
            .collect()
    }

    /// The decoded states of every node running actor type `A`, in node order.
    ///
    /// ```
    /// # use actix_snapshot::{GlobalSnapshot, Snapshottable};
    /// # struct Branch { balance: u64 }
    /// # impl Snapshottable for Branch {
    /// #     type State = u64;
    /// #     fn snapshot_state(&self) -> u64 { self.balance }
    /// # }
    /// # fn f(snap: &GlobalSnapshot) -> Result<(), actix_snapshot::DecodeError> {
    /// let total: u64 = snap.states::<Branch>()?.sum();
    /// # Ok(()) }
    /// ```
    pub fn states<A: Snapshottable>(
        &self,
    ) -> Result<impl ExactSizeIterator<Item = A::State> + use<A>, DecodeError> {
        Ok(self
            .states_named::<A>()?
            .into_iter()
            .map(|(_, s)| s)
            .collect::<Vec<_>>()
            .into_iter())
    }

    /// The decoded in-flight messages of every channel carrying `M`, channel by channel,
    /// each channel in send order.
    pub fn in_flight<M: DeserializeOwned>(
        &self,
    ) -> Result<impl ExactSizeIterator<Item = M> + use<M>, DecodeError> {
        let ty = std::any::type_name::<M>();
        let mut out = Vec::new();
        for ch in self.channels.iter().filter(|c| c.message_type == ty) {
            for m in &ch.messages {
                out.push(decode_value(&self.channel_label(ch), m)?);
            }
        }
        Ok(out.into_iter())
    }

    /// The decoded in-flight messages of the channel from node `from` to node `to` carrying
    /// `M`, in send order.
    pub fn channel_messages<M: DeserializeOwned>(
        &self,
        from: &str,
        to: &str,
    ) -> Result<Vec<M>, DecodeError> {
        let (f, t) = (self.node(from)?.id, self.node(to)?.id);
        let ty = std::any::type_name::<M>();
        let mut candidates = self
            .channels
            .iter()
            .filter(|c| c.from == f && c.to == t)
            .peekable();
        let Some(first) = candidates.peek().copied() else {
            return Err(DecodeError::NotFound {
                kind: "channel",
                name: format!("{from} -> {to}"),
            });
        };
        let Some(ch) = candidates.find(|c| c.message_type == ty) else {
            return Err(DecodeError::TypeMismatch {
                what: self.channel_label(first),
                expected: ty.to_string(),
                found: first.message_type.clone(),
            });
        };
        let label = self.channel_label(ch);
        ch.messages
            .iter()
            .map(|m| decode_value(&label, m))
            .collect()
    }

    /// Total number of in-flight messages recorded, over all channels.
    pub fn in_flight_count(&self) -> usize {
        self.channels.iter().map(|c| c.messages.len()).sum()
    }

    /// Bytes of recorded state and message payload (without framing).
    pub fn payload_bytes(&self) -> usize {
        self.nodes.iter().map(|n| n.state.len()).sum::<usize>()
            + self
                .channels
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

    fn channel_label(&self, ch: &ChannelSnapshot) -> String {
        format!(
            "channel {} -> {}",
            self.node_name(ch.from).unwrap_or("?"),
            self.node_name(ch.to).unwrap_or("?")
        )
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

    /// Checks the references and counters inside a decoded snapshot.
    fn validate(&self) -> Result<(), DecodeError> {
        let n = self.nodes.len();
        for (i, node) in self.nodes.iter().enumerate() {
            if node.id.index() != i {
                return Err(DecodeError::Body(format!(
                    "node {:?} has id {} at position {i}",
                    node.name, node.id.0
                )));
            }
            if let Some(w) = node.waits_for.iter().find(|w| w.index() >= n) {
                return Err(DecodeError::Body(format!(
                    "node {:?} waits for unknown node {}",
                    node.name, w.0
                )));
            }
        }
        for ch in &self.channels {
            if ch.from.index() >= n || ch.to.index() >= n {
                return Err(DecodeError::Body(format!(
                    "channel {} links unknown nodes",
                    ch.id
                )));
            }
            if ch.delivered.checked_add(ch.messages.len() as u64) != Some(ch.sent) {
                return Err(DecodeError::Body(format!(
                    "channel {}: {} delivered + {} in flight != {} sent",
                    ch.id,
                    ch.delivered,
                    ch.messages.len(),
                    ch.sent
                )));
            }
        }
        if let Some(i) = self.ingress.iter().find(|i| i.to.index() >= n) {
            return Err(DecodeError::Body(format!(
                "ingress {:?} feeds an unknown node",
                i.name
            )));
        }
        Ok(())
    }
}

fn check_type<A>(what: &str, found: &str) -> Result<(), DecodeError> {
    let expected = std::any::type_name::<A>();
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
