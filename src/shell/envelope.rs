//! What travels between nodes and what a send knows: the *send stamp* of the running handler
//! (node, group, epoch) kept in a thread-local, the [`Envelope`] that carries a message's
//! color, and the resolver that turns recorded node ids back into addresses during a restore.
//!
//! While the shell runs one of a node's handlers (a message, a timer step), it puts the
//! node's stamp in a thread-local. A send through any address reads it: inside a handler of
//! the same group the message is a node-to-node message with the sender's color and is
//! counted; anywhere else (`main`, an HTTP handler, another group) it is an input from outside
//! the group. So an address can be sent in messages, stored in maps and cloned at will: what
//! decides how a send counts is *where* it runs.
//!
//! ```
//! // A message sent from outside any node is an input from outside the group.
//! use actix::prelude::*;
//! use actix_snapshot::{Snapshot, SnapshotGroup};
//!
//! #[derive(Message, serde::Serialize, serde::Deserialize)]
//! #[rtype(result = "()")]
//! struct Add(u32);
//!
//! #[derive(Snapshot)]
//! #[snapshot(state = seen, messages(Add))]
//! struct Echo { seen: u32 }
//! impl Actor for Echo { type Context = Context<Self>; }
//! impl Handler<Add> for Echo {
//!     type Result = ();
//!     fn handle(&mut self, n: Add, _ctx: &mut Context<Self>) { self.seen += n.0; }
//! }
//!
//! # #[actix::main] async fn main() {
//! let group = SnapshotGroup::new().unwrap();
//! let echo = group.spawn("echo", || Echo { seen: 0 }).unwrap();
//! echo.do_send(Add(5));
//! let snap = group.snapshot().await.unwrap();
//! assert_eq!(snap.state::<Echo>("echo").unwrap(), 5);
//! assert_eq!(snap.node("echo").unwrap().external, 1);
//! group.shutdown();
//! # }
//! ```

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use actix::dev::OneshotSender;

use crate::protocol::{NodeId, RoundId};
use crate::shell::runtime::{Absorbed, Control, RecMsg, dropped};
use crate::snapshot::short_type_name;

/// Who is sending, while a node's handler runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp {
    pub(crate) group: u64,
    pub(crate) from: NodeId,
    pub(crate) color: RoundId,
}

thread_local! {
    static STAMP: Cell<Option<Stamp>> = const { Cell::new(None) };
    static SENT: Cell<u64> = const { Cell::new(0) };
}

/// Makes `stamp` the current sender; returns what it replaced (for [`restore_stamp`]).
pub(crate) fn set_stamp(stamp: Option<Stamp>) -> (Option<Stamp>, u64) {
    (
        STAMP.with(|s| s.replace(stamp)),
        SENT.with(|s| s.replace(0)),
    )
}

/// Puts back what [`set_stamp`] replaced; returns the sends counted meanwhile.
pub(crate) fn restore_stamp(prev: (Option<Stamp>, u64)) -> u64 {
    STAMP.with(|s| s.set(prev.0));
    SENT.with(|s| s.replace(prev.1))
}

/// The sends counted since the last call (or since the stamp was set).
#[inline]
pub(crate) fn take_sent() -> u64 {
    SENT.with(|s| s.replace(0))
}

/// The current stamp's color changed (its node recorded).
#[inline]
pub(crate) fn recolor(color: RoundId) {
    STAMP.with(|s| {
        if let Some(mut st) = s.get() {
            st.color = color;
            s.set(Some(st));
        }
    });
}

/// The stamp for a send to a node of `group` now: `Some` inside a handler of that group.
#[inline]
pub(crate) fn stamp_for(group: u64) -> Option<Stamp> {
    STAMP.with(|s| s.get()).filter(|s| s.group == group)
}

#[inline]
pub(crate) fn count_send() {
    SENT.with(|s| s.set(s.get() + 1));
}

/// The message types a group carries: an actix [`Message`](actix::Message) whose value and
/// result can be recorded (MessagePack through serde) and sent between threads. Implemented
/// for every type that fits.
pub trait NodeMessage: actix::Message<Result: Payload> + Payload {}
impl<M> NodeMessage for M where M: actix::Message<Result: Payload> + Payload {}

/// What can be recorded in a snapshot: encoded with MessagePack when recorded in flight,
/// decoded for typed views and restores. Implemented for every type that fits.
pub trait Payload: serde::Serialize + serde::de::DeserializeOwned + Send + 'static {}
impl<T: serde::Serialize + serde::de::DeserializeOwned + Send + 'static> Payload for T {}

/// The tag under which a reply in flight is recorded. Replies are not replayed by a restore
/// (the future that waited for one is gone); the tag tells readers what they are.
pub const REPLY_TAG: &str = "actix_snapshot::Reply";

/// Initial capacity of the buffer a recorded message is encoded into.
const ENCODE_HINT: usize = 32;

/// An in-flight message, encoded (a panicking `Serialize` fails the round, nothing else).
pub(crate) fn encode<M: serde::Serialize>(msg: &M, tag: &'static str) -> Result<RecMsg, String> {
    let bytes = catch_unwind(AssertUnwindSafe(|| {
        let mut bytes = Vec::with_capacity(ENCODE_HINT.max(2 * size_of::<M>()));
        rmp_serde::encode::write_named(&mut bytes, msg).map_err(|e| e.to_string())?;
        Ok::<_, String>(bytes)
    }))
    .map_err(|p| format!("encoding a message panicked: {}", panic_message(&*p)))??;
    Ok(RecMsg { tag, bytes })
}

/// The text of a panic's payload.
pub(crate) fn panic_message(p: &(dyn Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_string()
    }
}

/// The tag of message type `M` in snapshot files.
pub(crate) fn message_tag<M>() -> &'static str {
    short_type_name(std::any::type_name::<M>())
}

/// What travels through a node's mailbox. Opaque: only the library builds one, so nothing
/// outside it can forge a color.
///
/// An envelope dropped before its node handled it (the node had stopped, its mailbox went
/// away with queued messages in it) is counted by the node's tombstone: a message from
/// another node is never lost to the count.
pub struct Envelope<M: NodeMessage> {
    pub(crate) group: u64,
    pub(crate) to: NodeId,
    pub(crate) kind: Option<Kind<M>>,
}

pub(crate) enum Kind<M: NodeMessage> {
    /// From another node of the group.
    Node {
        from: NodeId,
        color: RoundId,
        msg: M,
        reply: Option<ReplyRoute<M::Result>>,
    },
    /// From outside the group: a named ingress source, or `None` for any other sender.
    Outside {
        source: Option<u32>,
        msg: M,
        reply: Option<OneshotSender<M::Result>>,
    },
}

impl<M: NodeMessage> std::fmt::Debug for Envelope<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Envelope")
            .field("to", &self.to)
            .field("type", &message_tag::<M>())
            .finish()
    }
}

impl<M: NodeMessage> actix::Message for Envelope<M> {
    type Result = ();
}

impl<M: NodeMessage> Drop for Envelope<M> {
    fn drop(&mut self) {
        if let Some(Kind::Node {
            from, color, msg, ..
        }) = self.kind.take()
        {
            dropped(self.group, self.to, from, color, || {
                encode(&msg, message_tag::<M>())
            });
        }
    }
}

/// Where a reply from one node to another goes: the requester's waiting future, and the
/// requester's control address for a reply whose future is gone or outside the node.
pub(crate) struct ReplyRoute<R: Payload> {
    pub(crate) tx: tokio::sync::oneshot::Sender<Reply<R>>,
    pub(crate) requester: NodeId,
    pub(crate) home: actix::Recipient<Control>,
}

/// A reply between two nodes: a message from `from` to `to` of color `color`. Dropped before
/// it was received (its future was dropped), it is absorbed by the requester.
pub(crate) struct Reply<R: Payload> {
    pub(crate) group: u64,
    pub(crate) to: NodeId,
    pub(crate) from: NodeId,
    pub(crate) color: RoundId,
    pub(crate) value: Option<R>,
    pub(crate) home: actix::Recipient<Control>,
}

impl<R: Payload> Reply<R> {
    /// Takes the value out; the reply is received through the requester's mailbox (as a
    /// [`Control::Absorb`]) instead of by the caller.
    pub(crate) fn absorb(&mut self) -> Option<R> {
        let value = self.value.take()?;
        let absorbed = Absorbed {
            group: self.group,
            to: self.to,
            from: self.from,
            color: self.color,
            payload: Some(encode(&value, REPLY_TAG)),
        };
        self.home.do_send(Control::Absorb(absorbed));
        Some(value)
    }
}

impl<R: Payload> Drop for Reply<R> {
    fn drop(&mut self) {
        self.absorb();
    }
}

/// What addresses share about their node: identity and whether its actor still runs.
#[derive(Debug)]
pub(crate) struct NodeMeta {
    pub(crate) id: NodeId,
    pub(crate) group: u64,
    pub(crate) name: Arc<str>,
    pub(crate) alive: AtomicBool,
}

thread_local! {
    static RESOLVER: RefCell<Option<HashMap<NodeId, Resolved>>> = const { RefCell::new(None) };
}

/// A node an address in a restored state or message can point at: its identity and its
/// actix address (an `Addr<NodeActor<A>>`, type-erased).
pub(crate) struct Resolved {
    pub(crate) meta: Arc<NodeMeta>,
    pub(crate) addr: Box<dyn Any>,
}

/// The node `id` resolves to while a restore decodes, if any: its meta and its type-erased
/// actix address.
pub(crate) fn resolve<T: Clone + 'static>(id: NodeId) -> Option<(Arc<NodeMeta>, T)> {
    RESOLVER.with(|r| {
        let r = r.borrow();
        let node = r.as_ref()?.get(&id)?;
        let addr = node.addr.downcast_ref::<T>()?.clone();
        Some((Arc::clone(&node.meta), addr))
    })
}

/// An identity for an address that resolves to no node.
pub(crate) fn unresolved(id: NodeId) -> Arc<NodeMeta> {
    Arc::new(NodeMeta {
        id,
        group: 0,
        name: Arc::from(format!("#{id}")),
        alive: AtomicBool::new(false),
    })
}

/// Runs `f` (which decodes states and messages of a snapshot being restored) with `nodes` as
/// the nodes that decoded [`NodeAddr`]s resolve to.
pub(crate) fn with_resolver<R>(nodes: HashMap<NodeId, Resolved>, f: impl FnOnce() -> R) -> R {
    struct Clear;
    impl Drop for Clear {
        fn drop(&mut self) {
            RESOLVER.with(|r| r.borrow_mut().take());
        }
    }
    RESOLVER.with(|r| *r.borrow_mut() = Some(nodes));
    let _clear = Clear;
    f()
}
