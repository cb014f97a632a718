//! Typed handles on nodes: [`NodeRecipient<M>`] (one message type, any actor type — what
//! actix's `Recipient<M>` is to `Addr<A>`), [`Out<M>`] (a declared link owned by its sending
//! node) and [`Ingress<M>`] (a named source from outside the group, whose offsets snapshots
//! record).
//!
//! ```
//! use actix_snapshot::{NodeRecipient, Receive, SnapCtx, SnapshotGroup, Snapshottable};
//!
//! struct Sink { got: u64 }
//! impl Snapshottable for Sink {
//!     type State = u64;
//!     fn snapshot_state(&self) -> u64 { self.got }
//! }
//! impl Receive<u64> for Sink {
//!     fn receive(&mut self, n: u64, _ctx: &mut SnapCtx<Self>) { self.got += n; }
//! }
//!
//! # #[actix::main] async fn main() {
//! let group = SnapshotGroup::new().unwrap();
//! let sink = group.spawn("sink", || Sink { got: 0 }).unwrap();
//! let to_sink: NodeRecipient<u64> = sink.recipient();
//! let feed = group.ingress::<u64, _>("feed", &sink).unwrap();
//! feed.send(3).unwrap();
//! to_sink.send(4);
//! let snap = group.snapshot().await.unwrap();
//! assert_eq!(snap.state::<Sink>("sink").unwrap(), 7);
//! assert_eq!(snap.ingress_offset("feed").unwrap(), 1);
//! group.shutdown();
//! # }
//! ```

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};

use crate::protocol::NodeId;
use crate::shell::actor::{NodeAddr, Payload, Receive};
use crate::shell::envelope::{Envelope, Kind, NodeMeta};

/// Sends one message type to one node; what [`NodeRecipient`] holds.
trait SendTo<M>: Send + Sync {
    fn send_to(&self, msg: M);
    fn meta(&self) -> &NodeMeta;
    fn outside(&self, source: u32, msg: M);
}

impl<A, M> SendTo<M> for NodeAddr<A>
where
    A: Receive<M>,
    M: Payload,
{
    fn send_to(&self, msg: M) {
        self.send(msg)
    }

    fn meta(&self) -> &NodeMeta {
        self.node_meta()
    }

    fn outside(&self, source: u32, msg: M) {
        if let Some(addr) = self.actix_addr() {
            addr.do_send(Envelope(Kind::Outside {
                source: Some(source),
                msg,
            }));
        }
    }
}

impl<A: crate::Snapshottable> NodeAddr<A> {
    /// A handle that sends only `M` to this node, whatever the node's actor type.
    pub fn recipient<M>(&self) -> NodeRecipient<M>
    where
        A: Receive<M>,
        M: Payload,
    {
        NodeRecipient(Arc::new(self.clone()))
    }
}

/// A typed handle for one message type to one node, whatever the node's actor type: what
/// actix's `Recipient<M>` is to `Addr<A>`. Cheap to clone.
pub struct NodeRecipient<M: Payload>(Arc<dyn SendTo<M>>);

impl<M: Payload> Clone for NodeRecipient<M> {
    fn clone(&self) -> Self {
        NodeRecipient(Arc::clone(&self.0))
    }
}

impl<M: Payload> std::fmt::Debug for NodeRecipient<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeRecipient")
            .field("id", &self.0.meta().id)
            .finish()
    }
}

impl<M: Payload> NodeRecipient<M> {
    /// Sends `msg`, as [`NodeAddr::send`].
    #[inline]
    pub fn send(&self, msg: M) {
        self.0.send_to(msg)
    }

    /// The receiving node.
    pub fn target(&self) -> NodeId {
        self.0.meta().id
    }

    /// Whether the receiving node's actor still runs.
    pub fn is_alive(&self) -> bool {
        self.0.meta().alive.load(Ordering::Acquire)
    }
}

/// A typed one-way link from one node to another, as the first edition's channels: a
/// [`NodeRecipient`] made by [`GroupBuilder::channel`](crate::GroupBuilder::channel) and owned
/// by the sending node's actor.
pub struct Out<M: Payload> {
    to: NodeRecipient<M>,
    sent: u64,
}

impl<M: Payload> std::fmt::Debug for Out<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Out")
            .field("target", &self.target())
            .field("sent", &self.sent)
            .finish()
    }
}

impl<M: Payload> Out<M> {
    pub(crate) fn new(to: NodeRecipient<M>) -> Self {
        Out { to, sent: 0 }
    }

    /// Sends `msg` to the receiving node.
    #[inline]
    pub fn send(&mut self, msg: M) {
        self.to.send(msg);
        self.sent += 1;
    }

    /// The receiving node.
    pub fn target(&self) -> NodeId {
        self.to.target()
    }

    /// How many messages this end has sent since it was made.
    pub fn sent(&self) -> u64 {
        self.sent
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

/// A named source of messages from outside the group into one node. Its messages are
/// numbered; a snapshot records how many of them the node had handled at its cut, so the
/// source can resend from there after a restore, like a stream processor's source offsets.
///
/// Cheap to clone; clones share one sequence, and a send takes a short lock so that offsets
/// and mailbox order agree when clones send from several threads.
pub struct Ingress<M: Payload> {
    inner: Arc<IngressInner<M>>,
}

struct IngressInner<M: Payload> {
    to: Arc<dyn SendTo<M>>,
    source: u32,
    next: Mutex<u64>,
}

impl<M: Payload> Clone for Ingress<M> {
    fn clone(&self) -> Self {
        Ingress {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<M: Payload> std::fmt::Debug for Ingress<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ingress")
            .field("source", &self.inner.source)
            .field("next_offset", &self.next_offset())
            .finish()
    }
}

impl<M: Payload> Ingress<M> {
    pub(crate) fn new(to: NodeRecipient<M>, source: u32, next: u64) -> Self {
        Ingress {
            inner: Arc::new(IngressInner {
                to: to.0,
                source,
                next: Mutex::new(next),
            }),
        }
    }

    /// Sends `msg` into the group; returns its offset (0-based sequence number).
    ///
    /// # Errors
    /// [`IngressClosed`], with the message, when the receiving node has stopped.
    pub fn send(&self, msg: M) -> Result<u64, IngressClosed<M>> {
        let mut next = self
            .inner
            .next
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if !self.inner.to.meta().alive.load(Ordering::Acquire) {
            return Err(IngressClosed(msg));
        }
        let seq = *next;
        self.inner.to.outside(self.inner.source, msg);
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

    /// The receiving node.
    pub fn target(&self) -> NodeId {
        self.inner.to.meta().id
    }

    pub(crate) fn set_next(&self, n: u64) {
        *self
            .inner
            .next
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = n;
    }
}
