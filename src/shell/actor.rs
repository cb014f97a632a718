//! The actix side of a node: [`Snapshottable`] (what `#[derive(Snapshot)]` implements), the
//! task that runs a node's actix context with the node current (`NodeTask`), and the two
//! functions the derived handlers call: [`deliver`](crate::__private::deliver) around the
//! actor's own `Handler<M>`, and [`control`](crate::__private::control) for the library's
//! control messages.
//!
//! A node's actor is a plain actix actor running in a `Context<Self>`: its handlers, hooks,
//! timers and futures stay as they are. What changes is who starts it (the group, so that
//! its context runs inside a task the library polls) and how it is addressed
//! ([`NodeAddr`](crate::NodeAddr) instead of `Addr`).
//!
//! ```
//! use actix::prelude::*;
//! use actix_snapshot::{NodeAddr, Snapshot, SnapshotGroup};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Message, Serialize, Deserialize)]
//! #[rtype(result = "u64")]
//! struct Ping(u32);
//!
//! #[derive(Snapshot)]
//! #[snapshot(state = count, messages(Ping))]
//! struct Counter { count: u64, peer: Option<NodeAddr<Counter>> }
//!
//! impl Actor for Counter { type Context = Context<Self>; }
//!
//! impl Handler<Ping> for Counter {
//!     type Result = u64;
//!     fn handle(&mut self, ping: Ping, ctx: &mut Context<Self>) -> u64 {
//!         self.count += 1;
//!         match (&self.peer, ping.0) {
//!             (_, 0) => ctx.stop(),                          // this node leaves the group
//!             (Some(peer), n) => peer.do_send(Ping(n - 1)),  // colored and counted
//!             (None, _) => {}
//!         }
//!         self.count
//!     }
//! }
//!
//! # #[actix::main] async fn main() {
//! let group = SnapshotGroup::new().unwrap();
//! let b = group.spawn("b", || Counter { count: 0, peer: None }).unwrap();
//! let a = group.spawn("a", move || Counter { count: 0, peer: Some(b) }).unwrap();
//! assert_eq!(a.send(Ping(5)).await.unwrap(), 1);   // request/response from outside
//! let snap = group.snapshot().await.unwrap();
//! assert_eq!(snap.state::<Counter>("a").unwrap(), 1);
//! group.shutdown();
//! # }
//! ```

use std::future::Future;
use std::marker::PhantomData;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;

use actix::dev::channel::{AddressReceiver, channel as mailbox};
use actix::dev::{ContextFut, MessageResponse};
use actix::{Actor, ActorContext, Addr, AsyncContext, Context, Handler};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::DecodeError;
use crate::protocol::{NodeCore, NodeId, RoundId};
use crate::shell::cell::{NodeCell, Owed, Scope, current};
use crate::shell::envelope::{
    Envelope, Kind, NodeMessage, NodeMeta, encode, message_tag, panic_message,
};
use crate::shell::runtime::{Control, NodeRecord, Rec, RecMsg, Shared};
use crate::snapshot::{StateType, short_type_name};

/// An actor whose state can be recorded in a snapshot.
pub trait Snapshottable:
    Actor<Context = Context<Self>> + Handler<Control> + Unpin + 'static
{
    /// What goes into a snapshot for this actor, and what it is rebuilt from after a restore.
    type State: Serialize + DeserializeOwned + Send + 'static;

    /// Version of [`State`](Self::State)'s shape, stored with every recorded state. Raise it
    /// when the shape changes; a restore from another version then fails with a clear error
    /// unless [`upgrade_state`](Self::upgrade_state) handles it.
    const STATE_VERSION: u32 = 1;

    /// The stable name of this actor type in snapshot files. By default the type's own name
    /// without its module path; override it to keep old snapshots readable after a rename.
    fn type_tag() -> &'static str {
        short_type_name(std::any::type_name::<Self>())
    }

    /// The actor's state now. Called when this node records a round, between two messages,
    /// on the actor's thread.
    fn snapshot_state(&self) -> Self::State;

    /// Nodes this actor is waiting for right now (for deadlock detection); none by default.
    fn waits_for(&self) -> Vec<NodeId> {
        Vec::new()
    }

    /// Turns a state recorded with an older [`STATE_VERSION`](Self::STATE_VERSION) into the
    /// current one. `state` is the recorded MessagePack encoding. The default refuses.
    fn upgrade_state(version: u32, state: &[u8]) -> Result<Self::State, String> {
        let _ = state;
        Err(format!(
            "no upgrade from state version {version} to {}",
            Self::STATE_VERSION
        ))
    }

    /// Registers the message types this actor receives through the library, so that a
    /// restore can put recorded in-flight messages back. `#[derive(Snapshot)]` writes it from
    /// `messages(..)`; by hand, call `reg.add::<M>()` for each.
    fn register_messages(reg: &mut Messages<Self>) {
        let _ = reg;
    }
}

impl<A: Snapshottable> StateType for A {
    type State = A::State;
    fn type_tag() -> &'static str {
        <A as Snapshottable>::type_tag()
    }
    fn state_version() -> u32 {
        A::STATE_VERSION
    }
}

/// The message types an actor type receives, for restores. See
/// [`Snapshottable::register_messages`].
pub struct Messages<A> {
    pub(crate) replays: Vec<(&'static str, Replay)>,
    _actor: PhantomData<fn() -> A>,
}

impl<A: Snapshottable> Messages<A> {
    pub(crate) fn of() -> Self {
        let mut m = Messages {
            replays: Vec::new(),
            _actor: PhantomData,
        };
        A::register_messages(&mut m);
        m
    }

    /// Registers message type `M`.
    pub fn add<M: NodeMessage>(&mut self)
    where
        A: Handler<Envelope<M>>,
    {
        self.replays.push((message_tag::<M>(), replay::<A, M>()));
    }
}

/// Puts a recorded in-flight message back into a restored node's mailbox: given the node's
/// `Addr<A>` (type-erased), the sender, the round, the receiver and the group, and the
/// message's encoding.
pub(crate) type Replay = Arc<
    dyn Fn(
            &dyn std::any::Any,
            NodeId,
            RoundId,
            NodeId,
            u64,
            &[u8],
        ) -> Result<Box<dyn FnOnce()>, DecodeError>
        + Send
        + Sync,
>;

pub(crate) fn replay<A, M>() -> Replay
where
    A: Snapshottable + Handler<Envelope<M>>,
    M: NodeMessage,
{
    Arc::new(|addr, from, color, to, group, bytes| {
        let msg: M = rmp_serde::from_slice(bytes).map_err(|e| DecodeError::Value {
            what: format!("in-flight message from node {from}"),
            ty: std::any::type_name::<M>().to_string(),
            reason: e.to_string(),
        })?;
        let addr = addr
            .downcast_ref::<Addr<A>>()
            .ok_or_else(|| DecodeError::Body("in-flight message to a node of another type".into()))?
            .clone();
        Ok(Box::new(move || {
            addr.do_send(Envelope {
                group,
                to,
                kind: Some(Kind::Node {
                    from,
                    color,
                    msg,
                    reply: None,
                }),
            });
        }))
    })
}

/// How many messages a node handles before it lets other tasks of its arbiter run.
const YIELD_EVERY: u32 = 4096;

/// Mailbox capacity used by actix's `send`; the library's sends ignore it.
const MAILBOX_CAPACITY: usize = 16;

/// The node's record: its state (and waits) encoded. User code runs here
/// (`snapshot_state`, `waits_for`, `Serialize`); a panic in it fails the round on this node
/// instead of taking the node down.
pub(crate) fn record<A: Snapshottable>(actor: &A, meta: &NodeMeta) -> Result<Rec, String> {
    let (state, waits_for) = catch_unwind(AssertUnwindSafe(|| {
        let state = rmp_serde::to_vec_named(&actor.snapshot_state())
            .map_err(|e| format!("encoding the state of {}: {e}", A::type_tag()))?;
        Ok::<_, String>((state, actor.waits_for()))
    }))
    .map_err(|p| format!("recording the state panicked: {}", panic_message(&*p)))??;
    Ok(Arc::new(NodeRecord {
        name: Arc::clone(&meta.name),
        type_tag: A::type_tag(),
        version: A::STATE_VERSION,
        state,
        waits_for,
    }))
}

/// The node this envelope is for, which must be the one running now.
fn cell_for(group: u64, to: NodeId) -> Option<Rc<NodeCell>> {
    let cell = current().filter(|c| c.meta.group == group && c.meta.id == to);
    if cell.is_none() {
        tracing::error!(node = %to, "a node's message was handled outside the node's task; dropped");
    }
    cell
}

/// What `#[derive(Snapshot)]`'s `Handler<Envelope<M>>` runs: the protocol step for one
/// message (record first if it comes from after a cut, copy it if it is late), then the
/// actor's own `Handler<M>`, then its reply, sent back as a message of this node.
#[doc(hidden)]
pub fn deliver<A, M>(act: &mut A, mut env: Envelope<M>, ctx: &mut Context<A>)
where
    A: Snapshottable + Handler<M>,
    M: NodeMessage,
    <A as Handler<M>>::Result: MessageResponse<A, M>,
{
    let Some(kind) = env.kind.take() else { return };
    let Some(cell) = cell_for(env.group, env.to) else {
        return;
    };
    match kind {
        Kind::Node {
            from,
            color,
            msg,
            reply,
        } => {
            let closed = cell.shared.closed.load(Ordering::Relaxed);
            let meta = &cell.meta;
            let deliver = cell.input(|core| {
                if color < core.color() {
                    core.handle_closed_through(closed);
                }
                core.handle_message(
                    color,
                    from,
                    || encode(&msg, message_tag::<M>()),
                    || record(act, meta),
                )
            });
            if !deliver {
                return;
            }
            let result = <A as Handler<M>>::handle(act, msg, ctx);
            match reply {
                None => result.handle(ctx, None),
                Some(route) => {
                    let (tx, rx) = tokio::sync::oneshot::channel();
                    result.handle(ctx, Some(tx));
                    let mut owed = Owed {
                        rx,
                        route: Some(route),
                        group: env.group,
                        from: env.to,
                    };
                    if !crate::shell::cell::PendingReply::forward(&mut owed, None) {
                        cell.owe(Box::new(owed));
                    }
                }
            }
            maybe_yield(&cell, ctx);
        }
        Kind::Outside { source, msg, reply } => {
            if cell.input(|core| core.handle_ingress(source)) {
                let result = <A as Handler<M>>::handle(act, msg, ctx);
                result.handle(ctx, reply);
                maybe_yield(&cell, ctx);
            }
        }
    }
}

/// actix drains a mailbox without yielding while it has messages, so a node fed without
/// pause would starve every other actor on its arbiter and the group's timers. Every
/// [`YIELD_EVERY`] messages the node gives its thread away once.
#[inline]
fn maybe_yield<A: Snapshottable>(cell: &NodeCell, ctx: &mut Context<A>) {
    let n = cell.handled_in_a_row.get() + 1;
    if n >= YIELD_EVERY {
        cell.handled_in_a_row.set(0);
        ctx.wait(actix::fut::wrap_future(actix_rt::task::yield_now()));
    } else {
        cell.handled_in_a_row.set(n);
    }
}

/// What `#[derive(Snapshot)]`'s `Handler<Control>` runs.
#[doc(hidden)]
pub fn control<A: Snapshottable>(act: &mut A, c: Control, ctx: &mut Context<A>) {
    let Some(cell) = current() else { return };
    let meta = &cell.meta;
    match c {
        Control::Start(r) => {
            // Rounds that finished while this start waited (a busy node) need no record.
            let closed = cell.shared.closed.load(Ordering::Relaxed);
            cell.input(|core| {
                core.handle_closed_through(closed);
                core.handle_start(r, || record(act, meta));
            });
        }
        Control::CatchUp(r) => {
            cell.input(|core| core.handle_catch_up(r, || record(act, meta)));
        }
        Control::Absorb(mut a) => {
            let Some(payload) = a.payload.take() else {
                return;
            };
            cell.input(|core| {
                core.handle_message(a.color, a.from, || payload, || record(act, meta))
            });
        }
        Control::Shutdown => {
            cell.shut_down.set(true);
            ctx.stop();
        }
    }
}

/// The task that runs a node's actix context: the node is current while it is polled, and
/// when the context ends (the actor stopped, or panicked) the node leaves the group and its
/// core becomes a tombstone *before* the mailbox goes away, so that every message still
/// queued or sent later is counted.
struct NodeTask<A: Snapshottable> {
    fut: Option<ContextFut<A, Context<A>>>,
    /// The context and actor before the first poll: actix runs `started` even when a context
    /// that never ran is dropped, so the context is made only when the node really starts.
    unstarted: Option<(Context<A>, A)>,
    cell: Rc<NodeCell>,
}

impl<A: Snapshottable> Future for NodeTask<A> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<()> {
        let this = &mut *self;
        if this.cell.shared.is_stopped() && this.fut.is_none() {
            // Shut down before it ran: its actor is dropped without having started.
            this.cell.shut_down.set(true);
            this.cell.meta.alive.store(false, Ordering::Release);
            if let Some(unstarted) = this.unstarted.take() {
                let _ = catch_unwind(AssertUnwindSafe(move || drop(unstarted)));
            }
            return Poll::Ready(());
        }
        if let Some((ctx, actor)) = this.unstarted.take() {
            this.fut = Some(ctx.into_future(actor));
        }
        let Some(fut) = this.fut.as_mut() else {
            return Poll::Ready(());
        };
        if this.cell.shared.is_stopped() {
            // The group was shut down (a start or restore that failed on another node's
            // constructor, an explicit shutdown): the node handles nothing more, not even
            // what is already in its mailbox (a restore's in-flight messages).
            this.cell.shut_down.set(true);
            this.finish(None);
            return Poll::Ready(());
        }
        let scope = Scope::enter(&this.cell);
        let polled = catch_unwind(AssertUnwindSafe(|| {
            let r = Pin::new(fut).poll(cx);
            this.cell.forward_replies(Some(cx));
            r
        }));
        drop(scope);
        match polled {
            Ok(Poll::Pending) => {
                this.cell.flush();
                Poll::Pending
            }
            Ok(Poll::Ready(())) => {
                this.finish(None);
                Poll::Ready(())
            }
            Err(p) => {
                this.finish(Some(panic_message(&*p)));
                Poll::Ready(())
            }
        }
    }
}

impl<A: Snapshottable> NodeTask<A> {
    /// The node's context ended (or panicked with `panic`): it leaves, its core becomes a
    /// tombstone, then its actor and mailbox are dropped.
    fn finish(&mut self, panic: Option<String>) {
        let cell = &self.cell;
        cell.meta.alive.store(false, Ordering::Release);
        if !cell.shut_down.get() {
            let mut core = std::mem::replace(&mut *cell.core.borrow_mut(), NodeCore::new(0));
            match panic {
                Some(reason) => {
                    tracing::warn!(node = %cell.meta.name, %reason, "node panicked; it leaves the group");
                    core.handle_panic(reason);
                }
                None => core.handle_stop(),
            }
            cell.shared.retire(cell.meta.id, core);
        }
        if let Some(fut) = self.fut.take() {
            // The user's Drop (and, after a panic, actix's stopping hooks) may panic too; the
            // node is gone either way.
            let _ = catch_unwind(AssertUnwindSafe(move || drop(fut)));
        }
    }
}

impl<A: Snapshottable> Drop for NodeTask<A> {
    fn drop(&mut self) {
        if let Some(unstarted) = self.unstarted.take() {
            // Never ran (its arbiter went away first): as a node that stopped at once.
            self.cell.meta.alive.store(false, Ordering::Release);
            if !self.cell.shut_down.get() && !self.cell.shared.is_stopped() {
                let core = std::mem::replace(&mut *self.cell.core.borrow_mut(), NodeCore::new(0));
                self.cell.shared.bury(self.cell.meta.id, core);
            }
            let _ = catch_unwind(AssertUnwindSafe(move || drop(unstarted)));
        }
        if self.fut.is_some() {
            // Dropped without finishing: its arbiter went away, or the group was shut down
            // before it ran. Unless the group stopped it, the rounds it owed cannot complete.
            if !self.cell.shut_down.get() && !self.cell.shared.is_stopped() {
                self.finish(Some(
                    "the actor stopped outside the library's control".into(),
                ));
            } else {
                self.cell.shut_down.set(true);
                self.finish(None);
            }
        }
    }
}

/// A node's mailbox and identity, made before its actor exists (so that a restore can put
/// messages in it and addresses can point at it).
pub(crate) struct Prepared<A: Snapshottable> {
    pub(crate) meta: Arc<NodeMeta>,
    pub(crate) addr: Addr<A>,
    pub(crate) rx: AddressReceiver<A>,
}

impl<A: Snapshottable> Prepared<A> {
    pub(crate) fn new(id: NodeId, group: u64, name: Arc<str>) -> Self {
        let (tx, rx) = mailbox::<A>(MAILBOX_CAPACITY);
        Prepared {
            meta: Arc::new(NodeMeta {
                id,
                group,
                name,
                alive: AtomicBool::new(true),
            }),
            addr: Addr::new(tx),
            rx,
        }
    }
}

/// Where a new node runs.
pub(crate) enum Placement {
    /// On the caller's arbiter (a child spawned from a handler).
    Here,
    /// On one of the group's arbiters: by index, or the next round-robin.
    Group(Option<usize>),
}

/// How a node starts: its user's actor.
pub(crate) type Ctor<A> = Box<dyn FnOnce() -> A + Send>;

/// What a node's start reports when its constructor ran on another thread.
pub(crate) type StartReport = std::sync::mpsc::Sender<(NodeId, Result<(), String>)>;

/// Starts a registered node: runs its constructor on its arbiter and its actor after it.
/// When the constructor runs on the caller's thread its panic is returned; otherwise it is
/// sent to `report` (if any). Either way the node then leaves at once, as does a node started
/// with no constructor (a declared node that had left before the snapshot being restored).
pub(crate) fn start_node<A: Snapshottable>(
    shared: &Arc<Shared>,
    prepared: Prepared<A>,
    core: NodeCore<Rec, RecMsg>,
    ctor: Option<Ctor<A>>,
    placement: Placement,
    report: Option<StartReport>,
) -> Result<(), crate::SpawnError> {
    let Prepared { meta, rx, addr } = prepared;
    let id = meta.id;
    let Some(ctor) = ctor else {
        // Never runs: a tombstone at once (its mailbox goes; what is sent to it is counted).
        meta.alive.store(false, Ordering::Release);
        shared.bury(id, core);
        drop(rx);
        if let Some(report) = &report {
            let _ = report.send((id, Ok(())));
        }
        return Ok(());
    };
    let arbiter = match placement {
        Placement::Here => None,
        Placement::Group(i) => Some(shared.pick_arbiter(i)),
    };
    let on_this_thread = match &arbiter {
        None => true,
        Some(place) => place.thread == std::thread::current().id(),
    };
    let home = addr.recipient::<Control>();
    let epoch = core.epoch();
    let parts = (core, Arc::clone(&meta), Arc::clone(shared));
    let run = move || -> Result<(), String> {
        let (core, meta, shared) = parts;
        match catch_unwind(AssertUnwindSafe(ctor)) {
            Ok(actor) => {
                let cell = Rc::new(NodeCell::new(core, meta, Arc::clone(&shared), home));
                if shared.is_stopped() {
                    // The group was shut down before this node got to run (a start or restore
                    // that failed on another node's constructor, a spawn right before
                    // shutdown): it handles nothing, not even its mailbox.
                    cell.shut_down.set(true);
                    cell.meta.alive.store(false, Ordering::Release);
                    return Ok(());
                }
                actix_rt::spawn(NodeTask {
                    fut: None,
                    unstarted: Some((Context::with_receiver(rx), actor)),
                    cell,
                });
                Ok(())
            }
            Err(p) => {
                let reason = panic_message(&*p);
                tracing::error!(node = %meta.name, %reason, "node constructor panicked");
                meta.alive.store(false, Ordering::Release);
                // It leaves before the panic is reported (a caller told the node does not
                // exist may spawn another under its name at once, and a round must not wait
                // for it); its tombstone counts what was sent to it.
                shared.bury(meta.id, core);
                drop(rx);
                Err(reason)
            }
        }
    };
    if on_this_thread {
        let result = run();
        if let Some(report) = &report {
            let _ = report.send((id, result.clone()));
        }
        return result.map_err(|reason| crate::SpawnError::ConstructorPanicked {
            node: meta.name.to_string(),
            reason,
        });
    }
    let Some(place) = arbiter else {
        return Ok(());
    };
    let ok = place.arbiter.spawn_fn(move || {
        let result = run();
        if let Some(report) = report {
            let _ = report.send((id, result));
        }
    });
    if ok {
        Ok(())
    } else {
        // The arbiter is gone: the node never runs, so it leaves.
        shared.bury(id, NodeCore::new(epoch));
        Err(crate::SpawnError::GroupStopped)
    }
}
