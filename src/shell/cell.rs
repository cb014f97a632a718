//! A node's protocol side while its actix actor runs: the [`NodeCore`] and what goes with it,
//! kept beside the actor (not inside it), and the thread-local that says which node is
//! running now.
//!
//! The library runs each node's actix context inside a task of its own (`NodeTask`, in
//! [`actor`](super::actor)). Around every poll of that task the node is *current*: its send
//! stamp is set, so everything the actor does while it runs — handlers, `started`/`stopping`,
//! timers, the continuations of its futures — sends colored, counted messages. Work outside
//! the task (a future given to `actix::spawn`, another thread) is not the node's.
//!
//! Replies a node owes to requests from other nodes are forwarded from here as soon as they
//! are produced (at once for a handler with a plain result, when its future completes for
//! one that returns a future), and always before the node records, so that a reply produced
//! before a cut is counted before it.
//!
//! ```
//! // Everything runs as part of the node: a timer's sends count as the node's.
//! use std::time::Duration;
//! use actix::prelude::*;
//! use actix_snapshot::{NodeAddr, Snapshot, SnapshotGroup};
//!
//! #[derive(Message, serde::Serialize, serde::Deserialize)]
//! #[rtype(result = "()")]
//! struct Tick;
//!
//! #[derive(Snapshot)]
//! #[snapshot(state = ticks, messages(Tick))]
//! struct Clock { ticks: u64, peer: Option<NodeAddr<Clock>> }
//! impl Actor for Clock {
//!     type Context = Context<Self>;
//!     fn started(&mut self, ctx: &mut Context<Self>) {
//!         ctx.run_interval(Duration::from_millis(1), |act, _ctx| {
//!             if let Some(peer) = &act.peer { peer.do_send(Tick); }
//!         });
//!     }
//! }
//! impl Handler<Tick> for Clock {
//!     type Result = ();
//!     fn handle(&mut self, _: Tick, _: &mut Context<Self>) { self.ticks += 1; }
//! }
//!
//! # #[actix::main] async fn main() {
//! let group = SnapshotGroup::new().unwrap();
//! let b = group.spawn("b", || Clock { ticks: 0, peer: None }).unwrap();
//! group.spawn("a", move || Clock { ticks: 0, peer: Some(b) }).unwrap();
//! actix_rt::time::sleep(Duration::from_millis(20)).await;
//! let snap = group.snapshot().await.unwrap();
//! let a = snap.node("a").unwrap();
//! let b = snap.node("b").unwrap();
//! // Every tick a sent was received by b or is in flight: nothing counted as outside input.
//! assert_eq!(a.sent, b.received + snap.in_flight_count() as u64);
//! assert_eq!(b.external, 0);
//! group.shutdown();
//! # }
//! ```

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::task::Context as TaskContext;

use crate::protocol::{NodeCore, NodeId};
use crate::shell::envelope::{
    NodeMeta, Payload, Reply, ReplyRoute, Stamp, count_send, recolor, restore_stamp, set_stamp,
    take_sent,
};
use crate::shell::runtime::{Control, Rec, RecMsg, Shared};

/// A node's protocol state beside its running actor.
pub(crate) struct NodeCell {
    pub(crate) core: RefCell<NodeCore<Rec, RecMsg>>,
    pub(crate) meta: Arc<NodeMeta>,
    pub(crate) shared: Arc<Shared>,
    /// The node's own control address (replies received outside its handlers go there).
    pub(crate) home: actix::Recipient<Control>,
    /// Replies this node owes that its handlers have not produced yet.
    pending: RefCell<Vec<Box<dyn PendingReply>>>,
    /// The group shut this node down: its departure is not news to anyone.
    pub(crate) shut_down: Cell<bool>,
    /// Messages handled since the node last gave its thread away.
    pub(crate) handled_in_a_row: Cell<u32>,
}

thread_local! {
    static CURRENT: RefCell<Option<Rc<NodeCell>>> = const { RefCell::new(None) };
}

/// The node running on this thread now, if any.
pub(crate) fn current() -> Option<Rc<NodeCell>> {
    CURRENT.with(|c| c.borrow().clone())
}

/// While alive, `cell` is the current node: its stamp is set and what it sends is counted.
pub(crate) struct Scope {
    prev_cell: Option<Rc<NodeCell>>,
    prev_stamp: (Option<Stamp>, u64),
    cell: Rc<NodeCell>,
}

impl Scope {
    pub(crate) fn enter(cell: &Rc<NodeCell>) -> Scope {
        let stamp = Stamp {
            group: cell.meta.group,
            from: cell.meta.id,
            color: cell.core.borrow().color(),
        };
        Scope {
            prev_cell: CURRENT.with(|c| c.replace(Some(Rc::clone(cell)))),
            prev_stamp: set_stamp(Some(stamp)),
            cell: Rc::clone(cell),
        }
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        let prev = std::mem::take(&mut self.prev_stamp);
        let sent = restore_stamp(prev);
        if let Ok(mut core) = self.cell.core.try_borrow_mut() {
            core.handle_sent(sent);
        }
        CURRENT.with(|c| *c.borrow_mut() = self.prev_cell.take());
    }
}

impl NodeCell {
    pub(crate) fn new(
        core: NodeCore<Rec, RecMsg>,
        meta: Arc<NodeMeta>,
        shared: Arc<Shared>,
        home: actix::Recipient<Control>,
    ) -> Self {
        NodeCell {
            core: RefCell::new(core),
            meta,
            shared,
            home,
            pending: RefCell::new(Vec::new()),
            shut_down: Cell::new(false),
            handled_in_a_row: Cell::new(0),
        }
    }

    /// Feeds one input to the core (which may record): counts what was sent before it and
    /// forwards replies already produced, first, so that both fall before a cut the input
    /// makes; then recolors the stamp and hands the core's notes to the tracker.
    pub(crate) fn input<R>(&self, f: impl FnOnce(&mut NodeCore<Rec, RecMsg>) -> R) -> R {
        if !self.pending.borrow().is_empty() {
            self.forward_replies(None);
        }
        let mut core = self.core.borrow_mut();
        core.handle_sent(take_sent());
        let before = core.color();
        let out = f(&mut core);
        if core.color() != before {
            recolor(core.color());
        }
        if core.has_output() {
            let core = &mut *core;
            self.shared.notes(self.meta.id, || core.poll(), None);
        }
        out
    }

    /// Hands the core's notes (if any) to the tracker.
    pub(crate) fn flush(&self) {
        let mut core = self.core.borrow_mut();
        core.handle_sent(take_sent());
        if core.has_output() {
            let core = &mut *core;
            self.shared.notes(self.meta.id, || core.poll(), None);
        }
    }

    /// A reply this node owes, to forward once its handler produces it.
    pub(crate) fn owe(&self, reply: Box<dyn PendingReply>) {
        self.pending.borrow_mut().push(reply);
    }

    /// Forwards every reply produced so far; with `cx`, registers to be woken for the rest.
    pub(crate) fn forward_replies(&self, mut cx: Option<&mut TaskContext<'_>>) {
        let mut pending = std::mem::take(&mut *self.pending.borrow_mut());
        pending.retain_mut(|p| !p.forward(cx.as_deref_mut()));
        let mut slot = self.pending.borrow_mut();
        pending.append(&mut slot);
        *slot = pending;
    }
}

/// A reply a node owes: forwarded (colored and counted as the node's message) once produced.
pub(crate) trait PendingReply {
    /// Forwards the reply if it was produced; true when done (forwarded, or never coming).
    fn forward(&mut self, cx: Option<&mut TaskContext<'_>>) -> bool;
}

/// The reply of one handler call, on its way from the handler's result to the requester.
pub(crate) struct Owed<R: Payload> {
    pub(crate) rx: tokio::sync::oneshot::Receiver<R>,
    pub(crate) route: Option<ReplyRoute<R>>,
    pub(crate) group: u64,
    pub(crate) from: NodeId,
}

impl<R: Payload> PendingReply for Owed<R> {
    fn forward(&mut self, cx: Option<&mut TaskContext<'_>>) -> bool {
        use std::future::Future;
        use std::task::Poll;
        let got = match cx {
            Some(cx) => match std::pin::Pin::new(&mut self.rx).poll(cx) {
                Poll::Ready(r) => r.ok(),
                Poll::Pending => return false,
            },
            None => match self.rx.try_recv() {
                Ok(v) => Some(v),
                Err(tokio::sync::oneshot::error::TryRecvError::Empty) => return false,
                Err(tokio::sync::oneshot::error::TryRecvError::Closed) => None,
            },
        };
        if let (Some(value), Some(route)) = (got, self.route.take()) {
            send_reply(route, value, self.group, self.from);
        }
        true
    }
}

/// Sends `value` to the requester as a message of the current node (colored with its stamp,
/// counted); a requester that stopped waiting does not count it.
pub(crate) fn send_reply<R: Payload>(route: ReplyRoute<R>, value: R, group: u64, from: NodeId) {
    let color = crate::shell::envelope::stamp_for(group).map_or(0, |s| s.color);
    let reply = Reply {
        group,
        to: route.requester,
        from,
        color,
        value: Some(value),
        home: route.home,
    };
    match route.tx.send(reply) {
        Ok(()) => count_send(),
        Err(mut reply) => {
            // Nobody waits: the reply never left, so it is not a message.
            reply.value = None;
        }
    }
}
