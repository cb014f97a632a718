//! The traits users implement ([`Snapshottable`], [`Receive<M>`]) and [`NodeActor<A>`], the
//! actix actor that runs a user's actor inside a group: it turns mailbox traffic into
//! [`NodeCore`] inputs, stamps what the handlers send, hands the core's notes to the tracker,
//! and turns a stop or a panic into a tombstone that keeps counting what still arrives.
//!
//! ```
//! use actix_snapshot::{NodeAddr, Receive, SnapCtx, Snapshottable};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize)]
//! struct Ping(u32);
//!
//! struct Counter { count: u64, peer: Option<NodeAddr<Counter>> }
//!
//! impl Snapshottable for Counter {
//!     type State = u64;
//!     fn snapshot_state(&self) -> u64 { self.count }
//! }
//!
//! impl Receive<Ping> for Counter {
//!     fn receive(&mut self, ping: Ping, ctx: &mut SnapCtx<Self>) {
//!         self.count += 1;
//!         match (&self.peer, ping.0) {
//!             (_, 0) => ctx.stop(),                        // this node leaves the group
//!             (Some(peer), n) => peer.send(Ping(n - 1)),   // colored and counted
//!             (None, _) => {}
//!         }
//!     }
//! }
//! ```

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use actix::dev::channel::{AddressReceiver, channel as mailbox};
use actix::{Actor, ActorContext, Addr, AsyncContext, Context, Handler, SpawnHandle};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::SpawnError;
use crate::protocol::{Life, NodeCore, NodeId, RoundId};
use crate::shell::envelope::{
    Envelope, Kind, NodeMeta, Stamp, count_send, resolve, stamp_for, unresolved, with_stamp,
};
use crate::shell::runtime::{Control, Join, NodeHandle, NodeRecord, Rec, RecMsg, Shared};
use crate::snapshot::{StateType, short_type_name};

/// An actor whose state can be recorded in a snapshot.
pub trait Snapshottable: Sized + Unpin + 'static {
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

    /// Called once when the actor starts, before it handles any message, as one step of the
    /// actor (what it sends is counted).
    fn on_start(&mut self, ctx: &mut SnapCtx<Self>) {
        let _ = ctx;
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

/// A message type a node can receive; what users write instead of `actix::Handler<M>`.
///
/// `receive` runs to completion before the next message is handled, so every state change
/// and every send it makes fall on one side of any cut. Work moved into a future
/// (`ctx.actix().spawn(..)`, an `async` block) is outside the snapshot guarantee.
pub trait Receive<M>: Snapshottable {
    /// Handles one message.
    fn receive(&mut self, msg: M, ctx: &mut SnapCtx<Self>);
}

/// The messages a group carries: encoded with MessagePack when recorded in flight, decoded for
/// typed views and restores. Implemented for every type that fits.
pub trait Payload: Serialize + DeserializeOwned + Send + 'static {}
impl<T: Serialize + DeserializeOwned + Send + 'static> Payload for T {}

/// The context of a user's actor inside a group: identity, its own address, children,
/// stopping, and timers that run as steps of the actor (like a message).
pub struct SnapCtx<'a, A: Snapshottable> {
    ctx: &'a mut Context<NodeActor<A>>,
    meta: &'a Arc<NodeMeta>,
    shared: &'a Arc<Shared>,
    color: RoundId,
    stop: &'a mut bool,
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

    /// This node's own address (to hand to other nodes in messages).
    pub fn addr(&mut self) -> NodeAddr<A> {
        NodeAddr::new(Arc::clone(self.meta), self.ctx.address())
    }

    /// Stops this node after the current step. It leaves the group: later snapshots do not
    /// hold it, and what is still sent to it is counted and dropped.
    pub fn stop(&mut self) {
        *self.stop = true;
    }

    /// Spawns a child node on this node's arbiter; its constructor runs before this returns.
    /// The child belongs to every round this node has not recorded yet, and to every later
    /// one.
    ///
    /// # Errors
    /// [`SpawnError::DuplicateName`] when a live node has that name,
    /// [`SpawnError::ConstructorPanicked`] when `ctor` panics, [`SpawnError::GroupStopped`].
    pub fn spawn<B: Snapshottable>(
        &mut self,
        name: impl Into<String>,
        ctor: impl FnOnce() -> B + Send + 'static,
    ) -> Result<NodeAddr<B>, SpawnError> {
        launch(
            self.shared,
            Arc::from(name.into()),
            Join::Child(self.color),
            Box::new(ctor),
            Placement::Here,
        )
    }

    /// Runs `f` on the actor once, after `delay`, as one step of the actor (like a message).
    pub fn run_later<F>(&mut self, delay: Duration, f: F) -> SpawnHandle
    where
        F: FnOnce(&mut A, &mut SnapCtx<A>) + 'static,
    {
        self.ctx
            .run_later(delay, move |w, ctx| w.step(ctx, move |a, sc| f(a, sc)))
    }

    /// Runs `f` on the actor every `every`, each call one step of the actor.
    pub fn run_interval<F>(&mut self, every: Duration, mut f: F) -> SpawnHandle
    where
        F: FnMut(&mut A, &mut SnapCtx<A>) + 'static,
    {
        self.ctx
            .run_interval(every, move |w, ctx| w.step(ctx, |a, sc| f(a, sc)))
    }

    /// Cancels a timer started with [`run_later`](Self::run_later) or
    /// [`run_interval`](Self::run_interval).
    pub fn cancel(&mut self, handle: SpawnHandle) -> bool {
        self.ctx.cancel_future(handle)
    }

    /// The underlying actix context, for what this type does not offer. Work spawned on it
    /// as a future is outside the snapshot guarantee; stopping through it is the same as
    /// [`stop`](Self::stop).
    pub fn actix(&mut self) -> &mut Context<NodeActor<A>> {
        self.ctx
    }
}

/// The address of a node of a group: send it messages from anywhere, clone it, put it in
/// messages and states. See [`envelope`](crate::shell::envelope) for how a send counts.
///
/// In a snapshot an address is recorded as the node's id; it is resolved again when the group
/// is restored.
pub struct NodeAddr<A: Snapshottable> {
    meta: Arc<NodeMeta>,
    addr: Option<Addr<NodeActor<A>>>,
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
    pub(crate) fn new(meta: Arc<NodeMeta>, addr: Addr<NodeActor<A>>) -> Self {
        NodeAddr {
            meta,
            addr: Some(addr),
        }
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

    /// Sends `msg` to the node. Never blocks and never fails: a message to a node that has
    /// stopped is counted and dropped by its tombstone, as actix drops messages to a stopped
    /// actor.
    #[inline]
    pub fn send<M>(&self, msg: M)
    where
        A: Receive<M>,
        M: Payload,
    {
        let Some(addr) = &self.addr else { return };
        match stamp_for(self.meta.group) {
            Some(s) => {
                // A mailbox that is closed for good (the group was shut down) takes nothing:
                // such a send is not counted.
                if !addr.connected() {
                    return;
                }
                addr.do_send(Envelope(Kind::Node {
                    from: s.from,
                    color: s.color,
                    msg,
                }));
                count_send();
            }
            None => addr.do_send(Envelope(Kind::Outside { source: None, msg })),
        }
    }

    pub(crate) fn actix_addr(&self) -> Option<&Addr<NodeActor<A>>> {
        self.addr.as_ref()
    }

    pub(crate) fn node_meta(&self) -> &NodeMeta {
        &self.meta
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
        Ok(match resolve::<Addr<NodeActor<A>>>(id) {
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

/// How many messages a node handles before it lets other tasks of its arbiter run.
const YIELD_EVERY: u32 = 4096;

/// Initial capacity of the buffer a recorded message is encoded into.
const ENCODE_HINT: usize = 32;

/// Mailbox capacity used by actix's `send`; `do_send`, which the group uses, ignores it.
const MAILBOX_CAPACITY: usize = 16;

/// The actix actor a group runs for each node: the user's actor `A` plus the node's protocol
/// state. Users meet it only as the type behind [`SnapCtx::actix`].
pub struct NodeActor<A: Snapshottable> {
    actor: Option<A>,
    core: NodeCore<Rec, RecMsg>,
    meta: Arc<NodeMeta>,
    shared: Arc<Shared>,
    /// The group shut this node down: its departure is not news to anyone.
    shut_down: bool,
    handled_in_a_row: u32,
}

fn panic_message(p: &(dyn Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_string()
    }
}

/// The node's record: its state (and waits) encoded. User code runs here
/// (`snapshot_state`, `waits_for`, `Serialize`); a panic in it fails the round on this node
/// instead of taking the node down.
fn record<A: Snapshottable>(actor: Option<&A>, meta: &NodeMeta) -> Result<Rec, String> {
    let actor = actor.ok_or("the node's actor is gone")?;
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

/// An in-flight message, encoded (a panicking `Serialize` fails the round, nothing else).
fn encode<M: Payload>(msg: &M) -> Result<RecMsg, String> {
    let bytes = catch_unwind(AssertUnwindSafe(|| {
        let mut bytes = Vec::with_capacity(ENCODE_HINT.max(2 * size_of::<M>()));
        rmp_serde::encode::write_named(&mut bytes, msg).map_err(|e| e.to_string())?;
        Ok::<_, String>(bytes)
    }))
    .map_err(|p| format!("encoding a message panicked: {}", panic_message(&*p)))??;
    Ok(RecMsg {
        tag: short_type_name(std::any::type_name::<M>()),
        bytes,
    })
}

impl<A: Snapshottable> NodeActor<A> {
    /// Runs one step of the user's actor (a message, a timer, `on_start`) with this node's
    /// send stamp, counts what it sent, and turns a panic or a stop into a tombstone.
    fn step(&mut self, ctx: &mut Context<Self>, f: impl FnOnce(&mut A, &mut SnapCtx<A>)) {
        let Some(actor) = self.actor.as_mut() else {
            return;
        };
        let color = self.core.color();
        let stamp = Stamp {
            group: self.meta.group,
            from: self.meta.id,
            color,
        };
        let mut stop = false;
        let (meta, shared) = (&self.meta, &self.shared);
        let (result, sent) = with_stamp(stamp, || {
            catch_unwind(AssertUnwindSafe(|| {
                let mut sc = SnapCtx {
                    ctx,
                    meta,
                    shared,
                    color,
                    stop: &mut stop,
                };
                f(actor, &mut sc)
            }))
        });
        self.core.handle_sent(sent);
        match result {
            Err(p) => self.leave(ctx, Some(panic_message(&*p))),
            Ok(()) if stop => self.leave(ctx, None),
            Ok(()) => {}
        }
    }

    /// The user's actor is gone (stopped, or panicked with `panic`): the node becomes a
    /// tombstone.
    fn leave(&mut self, ctx: &mut Context<Self>, panic: Option<String>) {
        self.meta.alive.store(false, Ordering::Release);
        if let Some(actor) = self.actor.take() {
            // The user's Drop may panic too; the node is gone either way.
            let _ = catch_unwind(AssertUnwindSafe(move || drop(actor)));
        }
        match panic {
            Some(reason) => {
                tracing::warn!(node = %self.meta.name, %reason, "node panicked; it leaves the group");
                self.core.handle_panic(reason);
            }
            None => self.core.handle_stop(),
        }
        let weak = ctx.address().downgrade().recipient::<Control>();
        self.flush(Some(weak));
    }

    /// Hands the core's notes to the tracker.
    fn flush(&mut self, tombstone: Option<actix::WeakRecipient<Control>>) {
        if !self.core.has_output() && tombstone.is_none() {
            return;
        }
        let core = &mut self.core;
        self.shared.notes(self.meta.id, || core.poll(), tombstone);
    }

    /// actix drains a mailbox without yielding while it has messages, so a node fed without
    /// pause would starve every other actor on its arbiter and the group's timers. Every
    /// [`YIELD_EVERY`] messages the node gives its thread away once.
    #[inline]
    fn count_and_maybe_yield(&mut self, ctx: &mut Context<Self>) {
        self.handled_in_a_row += 1;
        if self.handled_in_a_row >= YIELD_EVERY {
            self.handled_in_a_row = 0;
            ctx.wait(actix::fut::wrap_future(actix_rt::task::yield_now()));
        }
    }
}

impl<A: Snapshottable> Actor for NodeActor<A> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // The group was shut down before this actor got to run (a start or restore that
        // failed on another node's constructor, a spawn right before shutdown): it handles
        // nothing, not even the messages already in its mailbox (a restore's in-flight ones).
        if self.shared.is_stopped() {
            self.shut_down = true;
            ctx.stop();
            return;
        }
        if self.actor.is_none() {
            // Its constructor panicked (the node never had a state), or it is a restored
            // tombstone. It leaves at once if it has not yet; its mailbox keeps counting what
            // was sent to it.
            if self.core.life() == Life::Alive {
                self.leave(ctx, None);
            } else {
                let weak = ctx.address().downgrade().recipient::<Control>();
                self.shared.add_tombstone(weak);
            }
            return;
        }
        self.step(ctx, |a, sc| a.on_start(sc));
    }

    fn stopping(&mut self, ctx: &mut Context<Self>) -> actix::Running {
        if self.core.life() == Life::Alive && !self.shut_down {
            // Stopped through the raw actix context: the node leaves as with `SnapCtx::stop`,
            // and its mailbox lives on as a tombstone, so nothing sent to it goes uncounted.
            self.leave(ctx, None);
            return actix::Running::Continue;
        }
        actix::Running::Stop
    }
}

impl<A: Snapshottable> Drop for NodeActor<A> {
    fn drop(&mut self) {
        // However the node's actor ended (stopped, panicked, shut down with its group), its
        // addresses see a node that is no longer alive.
        self.meta.alive.store(false, Ordering::Release);
        if self.core.life() == Life::Alive && !self.shut_down {
            // Gone without stopping (its arbiter went away, `Context::terminate`): the rounds
            // it owed cannot complete, and what was queued in its mailbox is lost, so rounds
            // after this may time out with unaccounted messages.
            self.core
                .handle_panic("the actor stopped outside the library's control".into());
            self.flush(None);
        }
    }
}

impl<A, M> Handler<Envelope<M>> for NodeActor<A>
where
    A: Receive<M>,
    M: Payload,
{
    type Result = ();

    fn handle(&mut self, env: Envelope<M>, ctx: &mut Context<Self>) {
        match env.0 {
            Kind::Node { from, color, msg } => {
                let epoch = self.core.color();
                if color < epoch {
                    self.core
                        .handle_closed_through(self.shared.closed.load(Ordering::Relaxed));
                }
                let (actor, meta) = (self.actor.as_ref(), &self.meta);
                let deliver =
                    self.core
                        .handle_message(color, from, || encode(&msg), || record(actor, meta));
                if color != epoch || !deliver {
                    self.flush(None);
                }
                if deliver {
                    self.step(ctx, move |a, sc| a.receive(msg, sc));
                    self.count_and_maybe_yield(ctx);
                }
            }
            Kind::Outside { source, msg } => {
                if self.core.handle_ingress(source) {
                    self.step(ctx, move |a, sc| a.receive(msg, sc));
                    self.count_and_maybe_yield(ctx);
                }
            }
        }
    }
}

impl<A: Snapshottable> Handler<Control> for NodeActor<A> {
    type Result = ();

    fn handle(&mut self, c: Control, ctx: &mut Context<Self>) {
        match c {
            Control::Start(r) => {
                // Rounds that finished while this start waited (a busy node) need no record.
                self.core
                    .handle_closed_through(self.shared.closed.load(Ordering::Relaxed));
                let (actor, meta) = (self.actor.as_ref(), &self.meta);
                self.core.handle_start(r, || record(actor, meta));
                self.flush(None);
            }
            Control::Shutdown => {
                self.shut_down = true;
                ctx.stop();
            }
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

/// How a node starts: its user's actor, and what its core resumes from.
pub(crate) type Ctor<A> = Box<dyn FnOnce() -> A + Send>;

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
    let (tx, rx) = mailbox::<NodeActor<A>>(MAILBOX_CAPACITY);
    let addr = Addr::new(tx);
    let group = shared.uid;
    let (_, epoch, node) = shared.register(Arc::clone(&name), join, move |id| {
        let meta = Arc::new(NodeMeta {
            id,
            group,
            name,
            alive: AtomicBool::new(true),
        });
        let node = NodeAddr::new(meta, addr);
        (Box::new(node.clone()) as Box<dyn NodeHandle>, node)
    })?;
    let prepared = Prepared {
        meta: Arc::clone(&node.meta),
        addr: node.addr.clone().ok_or(SpawnError::GroupStopped)?,
        rx,
    };
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

impl<A: Snapshottable> NodeHandle for NodeAddr<A> {
    fn control(&self, c: Control) {
        if let Some(addr) = &self.addr {
            addr.do_send(c);
        }
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// A node's mailbox and identity, made before its actor exists (so that a restore can put
/// messages in it and addresses can point at it).
pub(crate) struct Prepared<A: Snapshottable> {
    pub(crate) meta: Arc<NodeMeta>,
    pub(crate) addr: Addr<NodeActor<A>>,
    pub(crate) rx: AddressReceiver<NodeActor<A>>,
}

impl<A: Snapshottable> Prepared<A> {
    pub(crate) fn new(id: NodeId, group: u64, name: Arc<str>) -> Self {
        let (tx, rx) = mailbox::<NodeActor<A>>(MAILBOX_CAPACITY);
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

    pub(crate) fn node_addr(&self) -> NodeAddr<A> {
        NodeAddr::new(Arc::clone(&self.meta), self.addr.clone())
    }

    pub(crate) fn handle(&self) -> Box<dyn NodeHandle> {
        Box::new(self.node_addr())
    }
}

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
) -> Result<(), SpawnError> {
    let Prepared { meta, rx, .. } = prepared;
    let arbiter = match placement {
        Placement::Here => None,
        Placement::Group(i) => Some(shared.pick_arbiter(i)),
    };
    let on_this_thread = match &arbiter {
        None => true,
        Some(place) => place.thread == std::thread::current().id(),
    };
    let epoch = core.epoch();
    let parts = (core, Arc::clone(&meta), Arc::clone(shared));
    let run = move || -> Result<(), String> {
        let (core, meta, shared) = parts;
        let mut node = NodeActor::<A> {
            actor: None,
            core,
            meta,
            shared,
            shut_down: false,
            handled_in_a_row: 0,
        };
        let Some(ctor) = ctor else {
            // Leaves before anything runs (the caller may wait for this report), then its
            // mailbox runs as a tombstone.
            node.meta.alive.store(false, Ordering::Release);
            node.core.handle_stop();
            node.flush(None);
            actix::Context::with_receiver(rx).run(node);
            return Ok(());
        };
        match catch_unwind(AssertUnwindSafe(ctor)) {
            Ok(actor) => {
                node.actor = Some(actor);
                actix::Context::with_receiver(rx).run(node);
                Ok(())
            }
            Err(p) => {
                let reason = panic_message(&*p);
                tracing::error!(node = %node.meta.name, %reason, "node constructor panicked");
                node.meta.alive.store(false, Ordering::Release);
                // It leaves before the panic is reported (a caller told the node does not
                // exist may spawn another under its name at once, and a round must not wait
                // for it), then its mailbox runs as a tombstone that counts what was sent to
                // it.
                node.core.handle_stop();
                node.flush(None);
                actix::Context::with_receiver(rx).run(node);
                Err(reason)
            }
        }
    };
    let id = meta.id;
    if on_this_thread {
        let result = run();
        if let Some(report) = &report {
            let _ = report.send((id, result.clone()));
        }
        return result.map_err(|reason| SpawnError::ConstructorPanicked {
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
        let mut core = NodeCore::<Rec, RecMsg>::new(epoch);
        core.handle_stop();
        shared.notes(id, || core.poll(), None);
        Err(SpawnError::GroupStopped)
    }
}
