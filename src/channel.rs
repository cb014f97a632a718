//! Channel ends: [`Out<M>`] between nodes of a group, [`Ingress<M>`] from outside it.
//!
//! Chandy–Lamport needs FIFO channels. In actix, `do_send` from one sender into one mailbox
//! is FIFO; `send(..).await` is not (a parked send can be overtaken, a dropped future loses
//! its message). So an [`Out<M>`] is one-way, uses `do_send` underneath, numbers what it
//! sends, and is not `Clone`: one channel has one sender. Markers of a channel travel the
//! same way as its data ([`Wire<M>`]), so a marker never overtakes a message sent before it.
//!
//! An `Out<M>` is `Send` so it can reach its actor's arbiter, but it must then be used only
//! from that actor's handlers ([`Receive::receive`](crate::Receive::receive), timers run
//! through [`SnapCtx`](crate::SnapCtx)). Sending from another thread or task would race the
//! markers; the receiver detects the resulting gap and fails the round
//! ([`SnapshotError::NodeFailed`](crate::SnapshotError::NodeFailed)).
//!
//! An [`Ingress<M>`] feeds a node from outside the group (`main`, an HTTP handler, a test).
//! Its messages are numbered too; a snapshot records, per ingress, how many the node had
//! handled when it recorded its state, so a source can replay from that offset after a
//! restore — like a stream processor's source offsets.
//!
//! ```
//! use actix_snapshot::{Out, Receive, SnapCtx, SnapshotGroup, Snapshottable};
//!
//! struct Relay { next: Option<Out<u32>>, seen: u32 }
//! impl Snapshottable for Relay {
//!     type State = u32;
//!     fn snapshot_state(&self) -> u32 { self.seen }
//! }
//! impl Receive<u32> for Relay {
//!     fn receive(&mut self, hops: u32, _ctx: &mut SnapCtx<Self>) {
//!         self.seen += 1;
//!         if let (Some(next), true) = (self.next.as_mut(), hops > 0) {
//!             next.send(hops - 1);
//!         }
//!     }
//! }
//!
//! # #[actix::main] async fn main() {
//! let mut b = SnapshotGroup::builder();
//! let (x, y) = (b.node::<Relay>("x"), b.node::<Relay>("y"));
//! let x_to_y = b.channel::<u32, _, _>(x, y);
//! let input = b.ingress::<u32, _>("input", x);
//! b.actor(x, move |seen| Relay { next: Some(x_to_y), seen: seen.unwrap_or(0) });
//! b.actor(y, |seen| Relay { next: None, seen: seen.unwrap_or(0) });
//! let group = b.start().unwrap();
//! input.send(1).unwrap();
//! let snap = group.snapshot().await.unwrap();
//! assert_eq!(snap.ingress_offset("input").unwrap(), 1);
//! # group.shutdown(); }
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use actix::Recipient;

use crate::NodeId;
use crate::protocol::RoundId;

/// What travels through a group's mailboxes: data, markers and ingress messages of one
/// message type. Opaque: only [`Out`] and [`Ingress`] build one, so nothing outside the
/// library can forge a marker.
#[derive(Debug)]
pub struct Wire<M>(pub(crate) WireKind<M>);

#[derive(Debug)]
pub(crate) enum WireKind<M> {
    /// An application message on a channel.
    Data {
        /// The channel's index among the receiver's incoming channels.
        slot: u32,
        /// Sequence number on the channel, from 0.
        seq: u64,
        /// The message.
        msg: M,
    },
    /// A marker of a snapshot round.
    Marker {
        /// The channel's index among the receiver's incoming channels.
        slot: u32,
        /// The round.
        round: RoundId,
        /// How many data messages preceded this marker on the channel.
        sent: u64,
    },
    /// A message from outside the group.
    Ingress {
        /// The ingress index among the receiver's ingress handles.
        slot: u32,
        /// Sequence number on the ingress, from 0.
        seq: u64,
        /// The message.
        msg: M,
    },
}

impl<M: Send + 'static> actix::Message for Wire<M> {
    type Result = ();
}

/// The sending end of a FIFO channel from one node of a group to another.
///
/// Created by [`GroupBuilder::channel`](crate::GroupBuilder::channel) and moved into the
/// sending node's actor by its constructor. See the [module docs](self) for the rules.
pub struct Out<M: Send + 'static> {
    to: Recipient<Wire<M>>,
    slot: u32,
    target: NodeId,
    seq: Arc<AtomicU64>,
}

impl<M: Send + 'static> std::fmt::Debug for Out<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Out")
            .field("target", &self.target)
            .field("sent", &self.sent())
            .finish()
    }
}

impl<M: Send + 'static> Out<M> {
    pub(crate) fn new(
        to: Recipient<Wire<M>>,
        slot: u32,
        target: NodeId,
        seq: Arc<AtomicU64>,
    ) -> Self {
        Out {
            to,
            slot,
            target,
            seq,
        }
    }

    /// Sends `msg` to the channel's receiver, after everything sent on this channel before.
    ///
    /// Never blocks. A message to a stopped node is dropped, as with actix's `do_send`.
    #[inline]
    pub fn send(&mut self, msg: M) {
        let seq = self.seq.load(Ordering::Relaxed);
        self.to.do_send(Wire(WireKind::Data {
            slot: self.slot,
            seq,
            msg,
        }));
        self.seq.store(seq + 1, Ordering::Relaxed);
    }

    /// The receiving node.
    pub fn target(&self) -> NodeId {
        self.target
    }

    /// How many messages were sent on this channel (including before a restore).
    pub fn sent(&self) -> u64 {
        self.seq.load(Ordering::Relaxed)
    }
}

/// The wrapper's handle on an outgoing channel: sends markers the way [`Out`] sends data.
pub(crate) trait MarkerSink: Send {
    fn send_marker(&self, round: RoundId);
}

pub(crate) struct MarkerTx<M: Send + 'static> {
    pub(crate) to: Recipient<Wire<M>>,
    pub(crate) slot: u32,
    pub(crate) seq: Arc<AtomicU64>,
}

impl<M: Send + 'static> MarkerSink for MarkerTx<M> {
    fn send_marker(&self, round: RoundId) {
        self.to.do_send(Wire(WireKind::Marker {
            slot: self.slot,
            round,
            sent: self.seq.load(Ordering::Relaxed),
        }));
    }
}

/// The node an [`Ingress`] feeds has stopped; the message is given back.
#[derive(Clone, PartialEq, Eq)]
pub struct IngressClosed<M>(pub M);

impl<M> std::fmt::Debug for IngressClosed<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IngressClosed(..)")
    }
}

impl<M> std::fmt::Display for IngressClosed<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the node behind this ingress has stopped")
    }
}

impl<M> std::error::Error for IngressClosed<M> {}

impl<M> IngressClosed<M> {
    /// The message that was not sent.
    pub fn into_inner(self) -> M {
        self.0
    }
}

/// A handle that feeds messages from outside the group into one node.
///
/// Cheap to clone; clones share one sequence, and a send takes a short lock so that
/// sequence numbers and mailbox order agree even when clones send from several threads.
pub struct Ingress<M: Send + 'static> {
    inner: Arc<IngressInner<M>>,
}

struct IngressInner<M: Send + 'static> {
    to: Recipient<Wire<M>>,
    slot: u32,
    next: Arc<Mutex<u64>>,
}

impl<M: Send + 'static> Clone for Ingress<M> {
    fn clone(&self) -> Self {
        Ingress {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<M: Send + 'static> std::fmt::Debug for Ingress<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ingress")
            .field("next_offset", &self.next_offset())
            .finish()
    }
}

impl<M: Send + 'static> Ingress<M> {
    pub(crate) fn new(to: Recipient<Wire<M>>, slot: u32, next: Arc<Mutex<u64>>) -> Self {
        Ingress {
            inner: Arc::new(IngressInner { to, slot, next }),
        }
    }

    /// Sends `msg` into the group; returns its offset (0-based sequence number).
    ///
    /// # Errors
    /// [`IngressClosed`], with the message, when the receiving node has stopped.
    pub fn send(&self, msg: M) -> Result<u64, IngressClosed<M>> {
        if !self.inner.to.connected() {
            return Err(IngressClosed(msg));
        }
        let mut next = self
            .inner
            .next
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let seq = *next;
        self.inner.to.do_send(Wire(WireKind::Ingress {
            slot: self.inner.slot,
            seq,
            msg,
        }));
        *next = seq + 1;
        Ok(seq)
    }

    /// The offset the next message will get. After a restore, this is the offset recorded
    /// in the snapshot: the source should resend from here.
    pub fn next_offset(&self) -> u64 {
        *self
            .inner
            .next
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}
