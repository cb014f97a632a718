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
//! // A message sent from outside any handler is an input from outside the group.
//! use actix_snapshot::{Receive, SnapCtx, SnapshotGroup, Snapshottable};
//!
//! struct Echo { seen: u32 }
//! impl Snapshottable for Echo {
//!     type State = u32;
//!     fn snapshot_state(&self) -> u32 { self.seen }
//! }
//! impl Receive<u32> for Echo {
//!     fn receive(&mut self, n: u32, _ctx: &mut SnapCtx<Self>) { self.seen += n; }
//! }
//!
//! # #[actix::main] async fn main() {
//! let group = SnapshotGroup::new().unwrap();
//! let echo = group.spawn("echo", || Echo { seen: 0 }).unwrap();
//! echo.send(5);
//! let snap = group.snapshot().await.unwrap();
//! assert_eq!(snap.state::<Echo>("echo").unwrap(), 5);
//! assert_eq!(snap.node("echo").unwrap().external, 1);
//! group.shutdown();
//! # }
//! ```

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use crate::protocol::{NodeId, RoundId};

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

/// Runs `f` with `stamp` as the current sender; returns its result and how many node-to-node
/// messages it sent. Restores the previous stamp afterwards, also when `f` unwinds.
pub(crate) fn with_stamp<R>(stamp: Stamp, f: impl FnOnce() -> R) -> (R, u64) {
    struct Restore(Option<Stamp>, u64);
    impl Drop for Restore {
        fn drop(&mut self) {
            STAMP.with(|s| s.set(self.0));
            SENT.with(|s| s.set(self.1));
        }
    }
    let prev = Restore(
        STAMP.with(|s| s.replace(Some(stamp))),
        SENT.with(|s| s.replace(0)),
    );
    let out = f();
    let sent = SENT.with(|s| s.get());
    drop(prev);
    (out, sent)
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

/// What travels through a node's mailbox. Opaque: only the library builds one, so nothing
/// outside it can forge a color.
#[derive(Debug)]
pub struct Envelope<M>(pub(crate) Kind<M>);

#[derive(Debug)]
pub(crate) enum Kind<M> {
    /// From another node of the group.
    Node {
        from: NodeId,
        color: RoundId,
        msg: M,
    },
    /// From outside the group: a named ingress source, or `None` for any other sender.
    Outside { source: Option<u32>, msg: M },
}

impl<M: Send + 'static> actix::Message for Envelope<M> {
    type Result = ();
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
