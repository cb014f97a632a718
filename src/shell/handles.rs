//! Typed handles on nodes: [`NodeRecipient<M>`] (one message type, any actor type — what
//! actix's `Recipient<M>` is to `Addr<A>`), [`Out<M>`] (a declared link owned by its sending
//! node) and [`Ingress<M>`] (a named source from outside the group, whose offsets snapshots
//! record).
//!
//! ```
//! use actix::prelude::*;
//! use actix_snapshot::{NodeRecipient, Snapshot, SnapshotGroup};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Message, Serialize, Deserialize)]
//! #[rtype(result = "()")]
//! struct Add(u64);
//!
//! #[derive(Snapshot)]
//! #[snapshot(state = got, messages(Add))]
//! struct Sink { got: u64 }
//! impl Actor for Sink { type Context = Context<Self>; }
//! impl Handler<Add> for Sink {
//!     type Result = ();
//!     fn handle(&mut self, n: Add, _ctx: &mut Context<Self>) { self.got += n.0; }
//! }
//!
//! # #[actix::main] async fn main() {
//! let group = SnapshotGroup::new().unwrap();
//! let sink = group.spawn("sink", || Sink { got: 0 }).unwrap();
//! let to_sink: NodeRecipient<Add> = sink.recipient();
//! let feed = group.ingress::<Add, _>("feed", &sink).unwrap();
//! feed.send(Add(3)).unwrap();
//! to_sink.do_send(Add(4));
//! let snap = group.snapshot().await.unwrap();
//! assert_eq!(snap.state::<Sink>("sink").unwrap(), 7);
//! assert_eq!(snap.ingress_offset("feed").unwrap(), 1);
//! group.shutdown();
//! # }
//! ```

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};

use actix::{Addr, Handler};

use crate::error::SpawnError;
use crate::protocol::{NodeCore, NodeId};
use crate::shell::actor::{Ctor, Placement, Prepared, Snapshottable, start_node};
use crate::shell::cell::current;
use crate::shell::envelope::{
    Envelope, Kind, NodeMessage, NodeMeta, ReplyRoute, count_send, resolve, stamp_for, unresolved,
};
use crate::shell::request::{Request, RequestError};
use crate::shell::runtime::{Join, NodeHandle, Shared};

/// Sends one message type to one node; what [`NodeRecipient`] holds.
/// The address of a node of a group, in place of actix's `Addr<A>`: send it messages from
/// anywhere, clone it, put it in messages and states. Where a send runs decides how it
/// counts (see [`envelope`](crate::shell::envelope)).
///
/// In a snapshot an address is recorded as the node's id; it is resolved again when the group
/// is restored.
pub struct NodeAddr<A: Snapshottable> {
    meta: Arc<NodeMeta>,
    addr: Option<Addr<A>>,
}

impl<A: Snapshottable> Clone for NodeAddr<A> {
    fn clone(&self) -> Self {
        NodeAddr {
            meta: Arc::clone(&self.meta),
            addr: self.addr.clone(),
        }
    }
}

impl<A: Snapshottable> std::fmt::Debug for NodeAddr<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeAddr")
            .field("id", &self.meta.id)
            .field("name", &self.meta.name)
            .finish()
    }
}

impl<A: Snapshottable> PartialEq for NodeAddr<A> {
    fn eq(&self, other: &Self) -> bool {
        self.meta.id == other.meta.id && self.meta.group == other.meta.group
    }
}
impl<A: Snapshottable> Eq for NodeAddr<A> {}

impl<A: Snapshottable> std::hash::Hash for NodeAddr<A> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.meta.id.hash(state);
    }
}

impl<A: Snapshottable> NodeAddr<A> {
    pub(crate) fn new(meta: Arc<NodeMeta>, addr: Addr<A>) -> Self {
        NodeAddr {
            meta,
            addr: Some(addr),
        }
    }

    /// The address of the node running now, if it is an `A` (from inside its handlers,
    /// hooks and timers: what to hand to other nodes in messages).
    pub fn current(ctx: &actix::Context<A>) -> Option<Self> {
        use actix::AsyncContext;
        let cell = current()?;
        Some(NodeAddr::new(Arc::clone(&cell.meta), ctx.address()))
    }

    /// The node's id in its group.
    pub fn id(&self) -> NodeId {
        self.meta.id
    }

    /// The node's name in its group.
    pub fn name(&self) -> &str {
        &self.meta.name
    }

    /// Whether the node's actor still runs (false once it stopped or panicked).
    pub fn is_alive(&self) -> bool {
        self.addr.is_some() && self.meta.alive.load(Ordering::Acquire)
    }

    /// Sends `msg` without waiting for a reply, like actix's `Addr::do_send`. Never blocks
    /// and never fails: a message to a node that has stopped is counted and dropped, as actix
    /// drops messages to a stopped actor.
    #[inline]
    pub fn do_send<M>(&self, msg: M)
    where
        A: Handler<Envelope<M>>,
        M: NodeMessage,
    {
        let Some(addr) = &self.addr else { return };
        let (group, to) = (self.meta.group, self.meta.id);
        match stamp_for(group) {
            Some(s) => {
                addr.do_send(Envelope {
                    group,
                    to,
                    kind: Some(Kind::Node {
                        from: s.from,
                        color: s.color,
                        msg,
                        reply: None,
                    }),
                });
                count_send();
            }
            None => addr.do_send(Envelope {
                group,
                to,
                kind: Some(Kind::Outside {
                    source: None,
                    msg,
                    reply: None,
                }),
            }),
        }
    }

    /// Sends `msg` and returns a future of the handler's result, like actix's `Addr::send`.
    /// From a node's handler, use it as `addr.send(m).into_actor(self)` (see
    /// [`Request`]). The request never hangs: it fails with [`RequestError::Stopped`] when
    /// the node stops or its group shuts down first.
    pub fn send<M>(&self, msg: M) -> Request<M::Result>
    where
        A: Handler<Envelope<M>>,
        M: NodeMessage,
    {
        let Some(addr) = &self.addr else {
            return Request::failed(RequestError::Unresolved);
        };
        let (group, to) = (self.meta.group, self.meta.id);
        let home = current().filter(|c| c.meta.group == group);
        match (stamp_for(group), home) {
            (Some(s), Some(home)) => {
                let (tx, rx) = tokio::sync::oneshot::channel();
                addr.do_send(Envelope {
                    group,
                    to,
                    kind: Some(Kind::Node {
                        from: s.from,
                        color: s.color,
                        msg,
                        reply: Some(ReplyRoute {
                            tx,
                            requester: s.from,
                            home: home.home.clone(),
                        }),
                    }),
                });
                count_send();
                Request::node(rx, s.from, group)
            }
            _ => {
                let (tx, rx) = tokio::sync::oneshot::channel();
                addr.do_send(Envelope {
                    group,
                    to,
                    kind: Some(Kind::Outside {
                        source: None,
                        msg,
                        reply: Some(tx),
                    }),
                });
                Request::outside(rx)
            }
        }
    }

    /// A handle that sends only `M` to this node, whatever the node's actor type (what
    /// actix's `Recipient<M>` is to `Addr<A>`).
    pub fn recipient<M>(&self) -> NodeRecipient<M>
    where
        A: Handler<Envelope<M>>,
        M: NodeMessage,
    {
        NodeRecipient(Arc::new(self.clone()))
    }
}

impl<A: Snapshottable> serde::Serialize for NodeAddr<A> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.meta.id.0)
    }
}

impl<'de, A: Snapshottable> serde::Deserialize<'de> for NodeAddr<A> {
    /// Resolves the recorded id against the group being restored. Outside a restore (a typed
    /// view of a snapshot, say) the address is *unresolved*: it knows its id, and sends to it
    /// go nowhere.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let id = NodeId(u64::deserialize(d)?);
        Ok(match resolve::<Addr<A>>(id) {
            Some((meta, addr)) => NodeAddr {
                meta,
                addr: Some(addr),
            },
            None => NodeAddr {
                meta: unresolved(id),
                addr: None,
            },
        })
    }
}

impl<A: Snapshottable> NodeHandle for NodeAddr<A> {
    fn control(&self, c: crate::shell::runtime::Control) {
        if let Some(addr) = &self.addr {
            addr.do_send(c);
        }
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

impl<A: Snapshottable> Prepared<A> {
    pub(crate) fn node_addr(&self) -> NodeAddr<A> {
        NodeAddr::new(Arc::clone(&self.meta), self.addr.clone())
    }

    pub(crate) fn handle(&self) -> Box<dyn NodeHandle> {
        Box::new(self.node_addr())
    }
}

/// Registers a node spawned at run time (from outside, or a child) and starts it. The
/// constructor runs on the node's arbiter; when that is the caller's thread, it runs before
/// this returns and a panic is reported as an error.
pub(crate) fn launch<A: Snapshottable>(
    shared: &Arc<Shared>,
    name: Arc<str>,
    join: Join,
    ctor: Ctor<A>,
    placement: Placement,
) -> Result<NodeAddr<A>, SpawnError> {
    let group = shared.uid;
    let mut prepared = None;
    let (_, epoch, node) = shared.register(Arc::clone(&name), join, |id| {
        let p = Prepared::<A>::new(id, group, name);
        let node = p.node_addr();
        prepared = Some(p);
        (Box::new(node.clone()) as Box<dyn NodeHandle>, node)
    })?;
    let prepared = prepared.ok_or(SpawnError::GroupStopped)?;
    start_node(
        shared,
        prepared,
        NodeCore::new(epoch),
        Some(ctor),
        placement,
        None,
    )?;
    Ok(node)
}

/// What a node's code can ask of its actix context besides actix's own: its identity and
/// address in the group, and spawning child nodes. Implemented for `Context<A>`; outside a
/// node's task (which never happens for a node's own handlers, hooks and timers) the
/// identity is unknown and spawning fails with [`SpawnError::NotInNode`].
pub trait NodeContext<A: Snapshottable> {
    /// This node's id in its group.
    fn node_id(&self) -> Option<NodeId>;
    /// This node's name in its group.
    fn node_name(&self) -> Option<Arc<str>>;
    /// This node's own address, to hand to other nodes in messages.
    fn node_addr(&self) -> Option<NodeAddr<A>>;
    /// Spawns a child node on this node's arbiter; its constructor runs before this returns.
    /// The child belongs to every round this node has not recorded yet, and to every later
    /// one.
    ///
    /// # Errors
    /// [`SpawnError::DuplicateName`] when a live node has that name,
    /// [`SpawnError::ConstructorPanicked`] when `ctor` panics, [`SpawnError::GroupStopped`],
    /// [`SpawnError::NotInNode`].
    fn spawn_node<B: Snapshottable>(
        &mut self,
        name: impl Into<String>,
        ctor: impl FnOnce() -> B + Send + 'static,
    ) -> Result<NodeAddr<B>, SpawnError>;
}

impl<A: Snapshottable> NodeContext<A> for actix::Context<A> {
    fn node_id(&self) -> Option<NodeId> {
        current().map(|c| c.meta.id)
    }

    fn node_name(&self) -> Option<Arc<str>> {
        current().map(|c| Arc::clone(&c.meta.name))
    }

    fn node_addr(&self) -> Option<NodeAddr<A>> {
        NodeAddr::current(self)
    }

    fn spawn_node<B: Snapshottable>(
        &mut self,
        name: impl Into<String>,
        ctor: impl FnOnce() -> B + Send + 'static,
    ) -> Result<NodeAddr<B>, SpawnError> {
        let cell = current().ok_or(SpawnError::NotInNode)?;
        let color = cell.core.borrow().color();
        launch(
            &cell.shared,
            Arc::from(name.into()),
            Join::Child(color),
            Box::new(ctor),
            Placement::Here,
        )
    }
}

/// An address that takes messages of type `M` (a [`NodeAddr<A>`] for some `A`).
trait SendTo<M: NodeMessage>: Send + Sync {
    fn do_send(&self, msg: M);
    fn send(&self, msg: M) -> Request<M::Result>;
    fn meta(&self) -> &NodeMeta;
    fn outside(&self, source: u32, msg: M);
}

impl<A, M> SendTo<M> for NodeAddr<A>
where
    A: Snapshottable + Handler<Envelope<M>>,
    M: NodeMessage,
{
    fn do_send(&self, msg: M) {
        NodeAddr::do_send(self, msg)
    }

    fn send(&self, msg: M) -> Request<M::Result> {
        NodeAddr::send(self, msg)
    }

    fn meta(&self) -> &NodeMeta {
        &self.meta
    }

    fn outside(&self, source: u32, msg: M) {
        if let Some(addr) = &self.addr {
            addr.do_send(Envelope {
                group: self.meta.group,
                to: self.meta.id,
                kind: Some(Kind::Outside {
                    source: Some(source),
                    msg,
                    reply: None,
                }),
            });
        }
    }
}

/// A typed handle for one message type to one node, whatever the node's actor type: what
/// actix's `Recipient<M>` is to `Addr<A>`. Cheap to clone.
pub struct NodeRecipient<M: NodeMessage>(Arc<dyn SendTo<M>>);

impl<M: NodeMessage> Clone for NodeRecipient<M> {
    fn clone(&self) -> Self {
        NodeRecipient(Arc::clone(&self.0))
    }
}

impl<M: NodeMessage> std::fmt::Debug for NodeRecipient<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeRecipient")
            .field("id", &self.0.meta().id)
            .finish()
    }
}

impl<M: NodeMessage> NodeRecipient<M> {
    /// Sends `msg`, as [`NodeAddr::send`].
    #[inline]
    pub fn do_send(&self, msg: M) {
        self.0.do_send(msg)
    }

    /// Sends `msg` and returns the handler's result, like [`NodeAddr::send`].
    pub fn send(&self, msg: M) -> Request<M::Result> {
        self.0.send(msg)
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
pub struct Out<M: NodeMessage> {
    to: NodeRecipient<M>,
    sent: u64,
}

impl<M: NodeMessage> std::fmt::Debug for Out<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Out")
            .field("target", &self.target())
            .field("sent", &self.sent)
            .finish()
    }
}

impl<M: NodeMessage> Out<M> {
    pub(crate) fn new(to: NodeRecipient<M>) -> Self {
        Out { to, sent: 0 }
    }

    /// Sends `msg` to the receiving node.
    #[inline]
    pub fn send(&mut self, msg: M) {
        self.to.do_send(msg);
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
pub struct Ingress<M: NodeMessage> {
    inner: Arc<IngressInner<M>>,
}

struct IngressInner<M: NodeMessage> {
    to: Arc<dyn SendTo<M>>,
    source: u32,
    next: Mutex<u64>,
}

impl<M: NodeMessage> Clone for Ingress<M> {
    fn clone(&self) -> Self {
        Ingress {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<M: NodeMessage> std::fmt::Debug for Ingress<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ingress")
            .field("source", &self.inner.source)
            .field("next_offset", &self.next_offset())
            .finish()
    }
}

impl<M: NodeMessage> Ingress<M> {
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
