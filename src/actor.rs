//! The actor shell: the traits users implement and [`SnapshotActor<A>`], the real actix
//! actor that wraps a user's actor `A` around a [`NodeCore`](crate::protocol::NodeCore).
//!
//! An actix actor has one mailbox, its messages carry no sender and there is no hook into
//! the mailbox, so the library owns the actor type: users implement [`Snapshottable`] (what
//! goes into a snapshot) and [`Receive<M>`] (instead of `actix::Handler<M>`), and the group
//! runs each of their actors inside a `SnapshotActor`. The wrapper turns mailbox traffic
//! into protocol inputs, carries out the protocol's actions (send markers, report to the
//! collector) and hands application messages to the user's actor.
//!
//! ```
//! use actix_snapshot::{NodeId, Out, Receive, SnapCtx, Snapshottable};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize)]
//! struct Ping(u32);
//!
//! struct Counter { count: u64, reply: Out<Ping> }
//!
//! impl Snapshottable for Counter {
//!     type State = u64;
//!     fn snapshot_state(&self) -> u64 { self.count }
//! }
//!
//! impl Receive<Ping> for Counter {
//!     fn receive(&mut self, ping: Ping, _ctx: &mut SnapCtx<Self>) {
//!         self.count += 1;
//!         if ping.0 > 0 {
//!             self.reply.send(Ping(ping.0 - 1));
//!         }
//!     }
//! }
//! ```

use std::sync::Arc;
use std::time::Duration;

use actix::{Actor, ActorContext, AsyncContext, Context, Handler, Recipient, SpawnHandle};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::NodeId;
use crate::channel::{MarkerSink, Wire, WireKind};
use crate::collector::{NodeGone, Report};
use crate::protocol::{Action, NodeCore, RoundId};

/// An actor whose state can be recorded in a snapshot.
pub trait Snapshottable: Sized + Unpin + 'static {
    /// What goes into a snapshot for this actor, and what it is rebuilt from after a restore.
    type State: Serialize + DeserializeOwned + Send + 'static;

    /// Version of [`State`](Self::State)'s shape, stored with every recorded state. Raise it
    /// when the shape changes; a restore from another version then fails with a clear error
    /// unless [`upgrade_state`](Self::upgrade_state) handles it.
    const STATE_VERSION: u32 = 1;

    /// The actor's state now. Called by the protocol when this node records a round, between
    /// two messages, on the actor's thread.
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

    /// Called once when the actor starts, before it handles any message. Timers started
    /// here through [`SnapCtx`] are safe to send from.
    fn on_start(&mut self, ctx: &mut SnapCtx<Self>) {
        let _ = ctx;
    }
}

/// A message type an actor in a group can receive; what users write instead of
/// `actix::Handler<M>`.
///
/// `receive` runs to completion before the next message or marker is handled, so every
/// state change and every [`Out::send`](crate::Out::send) it makes fall on one side of any
/// cut. Work moved into a future (`ctx.spawn`, an `async` block) is not part of the state.
pub trait Receive<M>: Snapshottable {
    /// Handles one message.
    fn receive(&mut self, msg: M, ctx: &mut SnapCtx<Self>);
}

/// The messages a group carries: encoded with MessagePack when a channel is recorded,
/// decoded for typed views and restores. Implemented for every type that fits.
pub trait Payload: Serialize + DeserializeOwned + Send + 'static {}
impl<T: Serialize + DeserializeOwned + Send + 'static> Payload for T {}

/// What a node is, for its handlers.
#[derive(Debug, Clone)]
pub(crate) struct NodeMeta {
    pub(crate) id: NodeId,
    pub(crate) name: Arc<str>,
}

/// The context of a user's actor inside a group: its identity, stopping, and timers that run
/// as atomic steps of the actor (like a message).
pub struct SnapCtx<'a, A: Snapshottable> {
    ctx: &'a mut Context<SnapshotActor<A>>,
    meta: &'a NodeMeta,
}

impl<'a, A: Snapshottable> SnapCtx<'a, A> {
    /// This node's id.
    pub fn node(&self) -> NodeId {
        self.meta.id
    }

    /// This node's name.
    pub fn name(&self) -> &str {
        &self.meta.name
    }

    /// Stops this actor after the current message. Snapshot rounds that still need this
    /// node then fail with [`SnapshotError::NodeStopped`](crate::SnapshotError::NodeStopped).
    pub fn stop(&mut self) {
        self.ctx.stop();
    }

    /// Runs `f` on the actor once, after `delay`. `f` is one atomic step of the actor, like a
    /// message: it may change state and send on the actor's [`Out`](crate::Out)s.
    pub fn run_later<F>(&mut self, delay: Duration, f: F) -> SpawnHandle
    where
        F: FnOnce(&mut A, &mut SnapCtx<A>) + 'static,
    {
        self.ctx.run_later(delay, move |w, ctx| {
            let mut sc = SnapCtx { ctx, meta: &w.meta };
            f(&mut w.actor, &mut sc);
        })
    }

    /// Runs `f` on the actor every `every`, each call one atomic step like a message.
    pub fn run_interval<F>(&mut self, every: Duration, mut f: F) -> SpawnHandle
    where
        F: FnMut(&mut A, &mut SnapCtx<A>) + 'static,
    {
        self.ctx.run_interval(every, move |w, ctx| {
            let mut sc = SnapCtx { ctx, meta: &w.meta };
            f(&mut w.actor, &mut sc);
        })
    }

    /// Cancels a timer started with [`run_later`](Self::run_later) or
    /// [`run_interval`](Self::run_interval).
    pub fn cancel(&mut self, handle: SpawnHandle) -> bool {
        self.ctx.cancel_future(handle)
    }

    /// The underlying actix context, for what this type does not offer. Work spawned on it
    /// as a future is outside the snapshot guarantee (see the crate docs' limits).
    pub fn actix(&mut self) -> &mut Context<SnapshotActor<A>> {
        self.ctx
    }
}

/// The recorded state of a node, before the collector assembles a snapshot.
#[derive(Debug, Clone)]
pub(crate) struct Recorded {
    pub(crate) state: Vec<u8>,
    pub(crate) waits_for: Vec<NodeId>,
}

/// Control messages from the collector to a node.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Control {
    Start(RoundId),
    Abort(RoundId),
}

impl actix::Message for Control {
    type Result = ();
}

/// How many messages a node handles before it lets other tasks of its arbiter run.
const YIELD_EVERY: u32 = 4096;

/// Initial capacity of the buffer a recorded message is encoded into.
const ENCODE_HINT: usize = 32;

/// The actix actor a group runs for each node: the user's actor `A` plus the node's
/// protocol state. Users meet it only as the type behind [`SnapCtx::actix`].
pub struct SnapshotActor<A: Snapshottable> {
    actor: A,
    core: NodeCore<Recorded, Vec<u8>>,
    meta: NodeMeta,
    outgoing: Vec<Box<dyn MarkerSink>>,
    collector: Recipient<Report>,
    gone: Recipient<NodeGone>,
    /// Messages handled since this actor last gave its thread away.
    handled_in_a_row: u32,
}

impl<A: Snapshottable> SnapshotActor<A> {
    pub(crate) fn new(
        actor: A,
        core: NodeCore<Recorded, Vec<u8>>,
        meta: NodeMeta,
        outgoing: Vec<Box<dyn MarkerSink>>,
        collector: Recipient<Report>,
        gone: Recipient<NodeGone>,
    ) -> Self {
        SnapshotActor {
            actor,
            core,
            meta,
            outgoing,
            collector,
            gone,
            handled_in_a_row: 0,
        }
    }

    /// actix drains a mailbox without yielding while it has messages, so an actor fed
    /// without pause (a self-loop channel, a flood of ingress) would starve every other
    /// actor on its arbiter, the collector and the timers included. Every
    /// [`YIELD_EVERY`] messages the wrapper gives its thread away once.
    #[inline]
    fn count_and_maybe_yield(&mut self, ctx: &mut Context<Self>) {
        self.handled_in_a_row += 1;
        if self.handled_in_a_row >= YIELD_EVERY {
            self.handled_in_a_row = 0;
            ctx.wait(actix::fut::wrap_future(actix_rt::task::yield_now()));
        }
    }

    fn record(actor: &A) -> impl FnOnce() -> Result<Recorded, String> + '_ {
        move || {
            let state = rmp_serde::to_vec_named(&actor.snapshot_state())
                .map_err(|e| format!("encoding {}::State: {e}", std::any::type_name::<A>()))?;
            Ok(Recorded {
                state,
                waits_for: actor.waits_for(),
            })
        }
    }

    /// Carries out the protocol's actions, in order.
    fn drain(&mut self) {
        while let Some(action) = self.core.poll() {
            match action {
                Action::SendMarkers { round } => {
                    for out in &self.outgoing {
                        out.send_marker(round);
                    }
                }
                Action::Complete(record) => {
                    tracing::debug!(node = %self.meta.name, round = record.round, "node recorded");
                    self.collector.do_send(Report::Done {
                        node: self.meta.id,
                        record,
                    });
                }
                Action::Failed { round, failure } => {
                    tracing::warn!(node = %self.meta.name, round, %failure, "round failed on node");
                    self.collector.do_send(Report::Failed {
                        node: self.meta.id,
                        round,
                        reason: failure.to_string(),
                    });
                }
            }
        }
    }

    fn deliver<M>(&mut self, msg: M, ctx: &mut Context<Self>)
    where
        A: Receive<M>,
    {
        let mut sc = SnapCtx {
            ctx,
            meta: &self.meta,
        };
        self.actor.receive(msg, &mut sc);
    }
}

impl<A: Snapshottable> Actor for SnapshotActor<A> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let mut sc = SnapCtx {
            ctx,
            meta: &self.meta,
        };
        self.actor.on_start(&mut sc);
    }
}

impl<A: Snapshottable> Drop for SnapshotActor<A> {
    fn drop(&mut self) {
        // Runs when the actor stops and when its arbiter unwinds from a panic: either way
        // the collector must stop waiting for this node.
        self.gone.do_send(NodeGone(self.meta.id));
    }
}

impl<A, M> Handler<Wire<M>> for SnapshotActor<A>
where
    A: Receive<M>,
    M: Payload,
{
    type Result = ();

    fn handle(&mut self, wire: Wire<M>, ctx: &mut Context<Self>) {
        match wire.0 {
            WireKind::Data { slot, seq, msg } => {
                if seq != self.core.delivered(slot as usize) {
                    // Only an Out used outside its actor can do this; the next marker on
                    // this channel fails its round. Say where it happened.
                    tracing::warn!(node = %self.meta.name, slot, seq,
                        expected = self.core.delivered(slot as usize), "message out of order");
                }
                // Only a recorded channel can produce an action (a failed encoding): with
                // no snapshot running, skip the action queue.
                let recording = self.core.is_recording(slot as usize);
                self.core.on_message(slot as usize, || {
                    // Sized up front: growing from empty costs two or three reallocations
                    // per recorded message.
                    let mut buf = Vec::with_capacity(ENCODE_HINT.max(2 * size_of::<M>()));
                    rmp_serde::encode::write_named(&mut buf, &msg).map_err(|e| e.to_string())?;
                    Ok(buf)
                });
                if recording {
                    self.drain();
                }
                self.deliver(msg, ctx);
                self.count_and_maybe_yield(ctx);
            }
            WireKind::Marker { slot, round, sent } => {
                self.core
                    .on_marker(slot as usize, round, sent, Self::record(&self.actor));
                self.drain();
            }
            WireKind::Ingress { slot, seq, msg } => {
                debug_assert_eq!(seq, self.core.ingress_delivered(slot as usize));
                self.core.on_ingress(slot as usize);
                self.deliver(msg, ctx);
                self.count_and_maybe_yield(ctx);
            }
        }
    }
}

impl<A: Snapshottable> Handler<Control> for SnapshotActor<A> {
    type Result = ();

    fn handle(&mut self, c: Control, _ctx: &mut Context<Self>) {
        match c {
            Control::Start(r) => {
                self.core.start(r, Self::record(&self.actor));
                self.drain();
            }
            Control::Abort(r) => self.core.abort(r),
        }
    }
}
