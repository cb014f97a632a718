//! Building and running a group: [`GroupBuilder`] declares nodes, channels and ingress
//! handles, wires every mailbox before any actor runs, then starts the group fresh
//! ([`GroupBuilder::start`]) or from a snapshot ([`GroupBuilder::restore`]).
//! [`SnapshotGroup`] is the running group: take snapshots, read stats, shut down.
//!
//! Mailboxes exist from [`GroupBuilder::node`] on (actix lets a mailbox be made before its
//! actor), so [`Out`] ends can be handed to constructors, and a restore can put every
//! recorded in-flight message back into its mailbox before any actor sends anything.
//!
//! A group can spread its nodes over several arbiters (threads) with
//! [`GroupBuilder::arbiters`]; FIFO per channel holds across them because each channel has
//! one sender, on one thread, using `do_send`.
//!
//! ```
//! use actix_snapshot::{Out, Receive, SnapCtx, SnapshotGroup, Snapshottable};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize)]
//! struct Transfer { amount: u64 }
//!
//! struct Branch { balance: u64, peer: Out<Transfer> }
//!
//! impl Snapshottable for Branch {
//!     type State = u64;
//!     fn snapshot_state(&self) -> u64 { self.balance }
//! }
//! impl Receive<Transfer> for Branch {
//!     fn receive(&mut self, t: Transfer, _ctx: &mut SnapCtx<Self>) { self.balance += t.amount; }
//! }
//! impl Receive<u64> for Branch {             // "send this much to your peer", from outside
//!     fn receive(&mut self, amount: u64, _ctx: &mut SnapCtx<Self>) {
//!         let amount = amount.min(self.balance);
//!         self.balance -= amount;
//!         self.peer.send(Transfer { amount });
//!     }
//! }
//!
//! # #[actix::main] async fn main() {
//! let mut b = SnapshotGroup::builder();
//! b.arbiters(2);                              // two threads; nodes are placed round-robin
//! let (x, y) = (b.node::<Branch>("x"), b.node::<Branch>("y"));
//! let (x_to_y, y_to_x) = (b.channel(x, y), b.channel(y, x));
//! let orders = b.ingress::<u64, _>("orders", x);
//! b.actor(x, move |restored| Branch { balance: restored.unwrap_or(100), peer: x_to_y });
//! b.actor(y, move |restored| Branch { balance: restored.unwrap_or(100), peer: y_to_x });
//! let group = b.start().unwrap();
//!
//! for _ in 0..10 { orders.send(7).unwrap(); }
//! let snap = group.snapshot().await.unwrap();
//! let money: u64 = snap.states::<Branch>().unwrap().sum::<u64>()
//!     + snap.in_flight::<Transfer>().unwrap().map(|t| t.amount).sum::<u64>();
//! assert_eq!(money, 200);
//! group.shutdown();
//! # }
//! ```

use std::any::Any;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use actix::dev::channel::{AddressReceiver, channel as mailbox};
use actix::{Actor, Addr, Arbiter, ArbiterHandle, Context, Recipient};
use futures::channel::oneshot;
use petgraph::graphmap::DiGraphMap;

use crate::NodeId;
use crate::actor::{Control, NodeMeta, Payload, Receive, Recorded, SnapshotActor, Snapshottable};
use crate::channel::{Ingress, MarkerSink, MarkerTx, Out, Wire, WireKind};
use crate::collector::{Collector, SnapshotOptions, SnapshotStats, StartRound};
use crate::error::{BuildError, DecodeError, SnapshotError};
use crate::protocol::NodeCore;
use crate::snapshot::{GlobalSnapshot, NodeSnapshot};

/// Mailbox capacity used for `send`; `do_send`, which the group uses, ignores it.
const MAILBOX_CAPACITY: usize = 16;

static BUILDER_IDS: AtomicU64 = AtomicU64::new(1);

/// A typed handle on a node declared in a [`GroupBuilder`].
pub struct NodeRef<A> {
    id: NodeId,
    builder: u64,
    _actor: PhantomData<fn() -> A>,
}

impl<A> Clone for NodeRef<A> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<A> Copy for NodeRef<A> {}

impl<A> std::fmt::Debug for NodeRef<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NodeRef({})", self.id.0)
    }
}

impl<A> NodeRef<A> {
    /// The node's id in its group.
    pub fn id(&self) -> NodeId {
        self.id
    }
}

pub(crate) struct NodeInfo {
    pub(crate) name: Arc<str>,
    pub(crate) actor_type: &'static str,
    pub(crate) state_version: u32,
}

pub(crate) struct ChanInfo {
    pub(crate) from: NodeId,
    pub(crate) to: NodeId,
    pub(crate) slot: u32,
    pub(crate) message_type: &'static str,
}

pub(crate) struct IngressInfo {
    pub(crate) name: String,
    pub(crate) to: NodeId,
    pub(crate) slot: u32,
    pub(crate) message_type: &'static str,
}

/// The wiring of a group, fixed when it starts.
pub(crate) struct Topology {
    pub(crate) nodes: Vec<NodeInfo>,
    pub(crate) channels: Vec<ChanInfo>,
    pub(crate) ingress: Vec<IngressInfo>,
    pub(crate) graph: DiGraphMap<usize, ()>,
}

/// Everything a typed node needs to run, handed over at launch.
struct Launch {
    meta: NodeMeta,
    core: NodeCore<Recorded, Vec<u8>>,
    outgoing: Vec<Box<dyn MarkerSink>>,
    collector: Recipient<crate::collector::Report>,
    gone: Recipient<crate::collector::NodeGone>,
}

/// The part of a node that depends on its actor type.
trait AnyNode: Send {
    fn as_any(&mut self) -> &mut dyn Any;
    fn control(&self) -> Recipient<Control>;
    fn has_actor(&self) -> bool;
    /// Decodes (and upgrades) the node's state from a snapshot, before anything starts.
    fn prepare(&mut self, snap: &NodeSnapshot) -> Result<(), BuildError>;
    fn launch(self: Box<Self>, launch: Launch, arbiter: &ArbiterHandle) -> bool;
}

type Ctor<A> = Box<dyn FnOnce(Option<<A as Snapshottable>::State>) -> A + Send>;

struct TypedNode<A: Snapshottable> {
    addr: Addr<SnapshotActor<A>>,
    rx: AddressReceiver<SnapshotActor<A>>,
    ctor: Option<Ctor<A>>,
    state: Option<A::State>,
}

impl<A: Snapshottable> AnyNode for TypedNode<A> {
    fn as_any(&mut self) -> &mut dyn Any {
        self
    }

    fn control(&self) -> Recipient<Control> {
        self.addr.clone().recipient()
    }

    fn has_actor(&self) -> bool {
        self.ctor.is_some()
    }

    fn prepare(&mut self, snap: &NodeSnapshot) -> Result<(), BuildError> {
        let state = if snap.state_version == A::STATE_VERSION {
            rmp_serde::from_slice(&snap.state).map_err(|e| DecodeError::Value {
                what: format!("state of node {:?}", snap.name),
                ty: std::any::type_name::<A::State>().to_string(),
                reason: e.to_string(),
            })?
        } else {
            A::upgrade_state(snap.state_version, &snap.state).map_err(|reason| {
                BuildError::StateVersion {
                    node: snap.name.clone(),
                    actor_type: snap.actor_type.clone(),
                    found: snap.state_version,
                    expected: A::STATE_VERSION,
                    reason,
                }
            })?
        };
        self.state = Some(state);
        Ok(())
    }

    fn launch(self: Box<Self>, l: Launch, arbiter: &ArbiterHandle) -> bool {
        let TypedNode {
            rx, ctor, state, ..
        } = *self;
        let Some(ctor) = ctor else { return false };
        arbiter.spawn_fn(move || {
            let actor = ctor(state);
            let wrapper =
                SnapshotActor::new(actor, l.core, l.meta, l.outgoing, l.collector, l.gone);
            Context::with_receiver(rx).run(wrapper);
        })
    }
}

/// Decodes a channel's recorded messages and returns the thunk that enqueues them.
type Replay =
    Box<dyn Fn(&[serde_bytes::ByteBuf], u64) -> Result<Box<dyn FnOnce()>, DecodeError> + Send>;

struct NodeEntry {
    info: NodeInfo,
    incoming: u32,
    ingress: u32,
    outgoing: Vec<Box<dyn MarkerSink>>,
    arbiter: Option<usize>,
    typed: Box<dyn AnyNode>,
}

struct ChanEntry {
    info: ChanInfo,
    seq: Arc<AtomicU64>,
    replay: Replay,
}

struct IngressEntry {
    info: IngressInfo,
    next: Arc<Mutex<u64>>,
}

/// Declares a group's nodes, channels and ingress handles, then starts it.
/// See the [module docs](self) for an example.
pub struct GroupBuilder {
    id: u64,
    nodes: Vec<NodeEntry>,
    channels: Vec<ChanEntry>,
    ingress: Vec<IngressEntry>,
    arbiters: usize,
    options: SnapshotOptions,
    errors: Vec<BuildError>,
}

impl Default for GroupBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl GroupBuilder {
    /// An empty builder. Same as [`SnapshotGroup::builder`].
    pub fn new() -> Self {
        GroupBuilder {
            id: BUILDER_IDS.fetch_add(1, Ordering::Relaxed),
            nodes: Vec::new(),
            channels: Vec::new(),
            ingress: Vec::new(),
            arbiters: 0,
            options: SnapshotOptions::default(),
            errors: Vec::new(),
        }
    }

    /// Runs the group's nodes on `n` new arbiters (threads), placed round-robin unless
    /// [`node_on`](Self::node_on) says otherwise. With 0 (the default) every node runs on
    /// the arbiter that calls [`start`](Self::start).
    pub fn arbiters(&mut self, n: usize) -> &mut Self {
        self.arbiters = n;
        self
    }

    /// Default options of [`SnapshotGroup::snapshot`] (initiation, timeout).
    pub fn snapshot_options(&mut self, options: SnapshotOptions) -> &mut Self {
        self.options = options;
        self
    }

    /// Declares a node called `name` that will run an actor of type `A`. Its mailbox exists
    /// from now on; give its actor with [`actor`](Self::actor).
    pub fn node<A: Snapshottable>(&mut self, name: impl Into<String>) -> NodeRef<A> {
        let name: String = name.into();
        if self.nodes.iter().any(|n| *n.info.name == *name) {
            self.errors.push(BuildError::DuplicateNode(name.clone()));
        }
        let (tx, rx) = mailbox::<SnapshotActor<A>>(MAILBOX_CAPACITY);
        let id = NodeId(self.nodes.len() as u32);
        self.nodes.push(NodeEntry {
            info: NodeInfo {
                name: name.into(),
                actor_type: std::any::type_name::<A>(),
                state_version: A::STATE_VERSION,
            },
            incoming: 0,
            ingress: 0,
            outgoing: Vec::new(),
            arbiter: None,
            typed: Box::new(TypedNode::<A> {
                addr: Addr::new(tx),
                rx,
                ctor: None,
                state: None,
            }),
        });
        NodeRef {
            id,
            builder: self.id,
            _actor: PhantomData,
        }
    }

    /// Declares a node placed on arbiter `arbiter` (an index below
    /// [`arbiters`](Self::arbiters)).
    pub fn node_on<A: Snapshottable>(
        &mut self,
        name: impl Into<String>,
        arbiter: usize,
    ) -> NodeRef<A> {
        let r = self.node(name);
        self.nodes[r.id.index()].arbiter = Some(arbiter);
        r
    }

    fn typed<A: Snapshottable>(&mut self, node: NodeRef<A>) -> Option<&mut TypedNode<A>> {
        if node.builder != self.id {
            return None;
        }
        self.nodes
            .get_mut(node.id.index())?
            .typed
            .as_any()
            .downcast_mut::<TypedNode<A>>()
    }

    fn recipient_of<M: Payload, B: Receive<M>>(
        &mut self,
        to: NodeRef<B>,
    ) -> Option<Recipient<Wire<M>>> {
        match self.typed(to) {
            Some(t) => Some(t.addr.clone().recipient()),
            None => {
                self.errors.push(BuildError::ForeignNode(to.id));
                None
            }
        }
    }

    /// A FIFO channel from `from` to `to` carrying `M`; returns its sending end, to be moved
    /// into `from`'s actor by its constructor.
    pub fn channel<M: Payload, A: Snapshottable, B: Receive<M>>(
        &mut self,
        from: NodeRef<A>,
        to: NodeRef<B>,
    ) -> Out<M> {
        let seq = Arc::new(AtomicU64::new(0));
        let from_ok = from.builder == self.id && from.id.index() < self.nodes.len();
        if !from_ok {
            self.errors.push(BuildError::ForeignNode(from.id));
        }
        let Some(rcpt) = self.recipient_of::<M, B>(to).filter(|_| from_ok) else {
            // Not a node of this group: hand back an end that leads nowhere; start() fails.
            let (tx, _rx) = mailbox::<SnapshotActor<B>>(1);
            return Out::new(Addr::new(tx).recipient(), 0, to.id, seq);
        };
        let receiver = &mut self.nodes[to.id.index()];
        let slot = receiver.incoming;
        receiver.incoming += 1;
        self.nodes[from.id.index()]
            .outgoing
            .push(Box::new(MarkerTx {
                to: rcpt.clone(),
                slot,
                seq: Arc::clone(&seq),
            }));
        let replay_to = rcpt.clone();
        let replay: Replay = Box::new(move |msgs, first_seq| {
            let decoded = msgs
                .iter()
                .map(|m| {
                    rmp_serde::from_slice::<M>(m).map_err(|e| DecodeError::Value {
                        what: "in-flight message".to_string(),
                        ty: std::any::type_name::<M>().to_string(),
                        reason: e.to_string(),
                    })
                })
                .collect::<Result<Vec<M>, _>>()?;
            let to = replay_to.clone();
            Ok(Box::new(move || {
                for (i, msg) in decoded.into_iter().enumerate() {
                    to.do_send(Wire(WireKind::Data {
                        slot,
                        seq: first_seq + i as u64,
                        msg,
                    }));
                }
            }))
        });
        self.channels.push(ChanEntry {
            info: ChanInfo {
                from: from.id,
                to: to.id,
                slot,
                message_type: std::any::type_name::<M>(),
            },
            seq: Arc::clone(&seq),
            replay,
        });
        Out::new(rcpt, slot, to.id, seq)
    }

    /// A handle that feeds `M`s from outside the group into node `to`, named `name` in
    /// snapshots (which record its offset).
    pub fn ingress<M: Payload, B: Receive<M>>(
        &mut self,
        name: impl Into<String>,
        to: NodeRef<B>,
    ) -> Ingress<M> {
        let name = name.into();
        if self.ingress.iter().any(|i| i.info.name == name) {
            self.errors.push(BuildError::DuplicateIngress(name.clone()));
        }
        let next = Arc::new(Mutex::new(0));
        let Some(rcpt) = self.recipient_of::<M, B>(to) else {
            let (tx, _rx) = mailbox::<SnapshotActor<B>>(1);
            return Ingress::new(Addr::new(tx).recipient(), 0, next);
        };
        let receiver = &mut self.nodes[to.id.index()];
        let slot = receiver.ingress;
        receiver.ingress += 1;
        self.ingress.push(IngressEntry {
            info: IngressInfo {
                name,
                to: to.id,
                slot,
                message_type: std::any::type_name::<M>(),
            },
            next: Arc::clone(&next),
        });
        Ingress::new(rcpt, slot, next)
    }

    /// Gives node `node` its actor: `ctor` receives `None` on a fresh start and the recorded
    /// state on a restore, and runs on the node's arbiter.
    pub fn actor<A: Snapshottable>(
        &mut self,
        node: NodeRef<A>,
        ctor: impl FnOnce(Option<A::State>) -> A + Send + 'static,
    ) -> &mut Self {
        let name = self
            .nodes
            .get(node.id.index())
            .map(|n| n.info.name.to_string());
        match self.typed(node) {
            Some(t) if t.ctor.is_some() => self
                .errors
                .push(BuildError::DuplicateActor(name.unwrap_or_default())),
            Some(t) => t.ctor = Some(Box::new(ctor)),
            None => self.errors.push(BuildError::ForeignNode(node.id)),
        }
        self
    }

    /// Starts every node with a fresh actor.
    ///
    /// # Errors
    /// A [`BuildError`] for a wrong topology (duplicate names, a node without actor, a
    /// foreign node handle, a missing arbiter) or when no actix `System` runs.
    pub fn start(self) -> Result<SnapshotGroup, BuildError> {
        self.launch(None)
    }

    /// Starts every node from `snapshot`: each actor's constructor receives its recorded
    /// state, channel and ingress counters continue from the snapshot, and every recorded
    /// in-flight message is put back into its receiver's mailbox, in order, before any actor
    /// runs. Round ids continue after the snapshot's.
    ///
    /// # Errors
    /// As [`start`](Self::start), plus [`BuildError::TopologyMismatch`] when the snapshot
    /// was taken of another topology, [`BuildError::StateVersion`] for a state version the
    /// actor type cannot upgrade, and [`BuildError::Restore`] for undecodable data.
    /// Nothing has started when an error is returned.
    pub fn restore(self, snapshot: &GlobalSnapshot) -> Result<SnapshotGroup, BuildError> {
        self.launch(Some(snapshot))
    }

    fn check_matches(&self, s: &GlobalSnapshot) -> Result<(), BuildError> {
        let mismatch = |m: String| Err(BuildError::TopologyMismatch(m));
        if s.nodes.len() != self.nodes.len() {
            return mismatch(format!(
                "snapshot has {} nodes, group has {}",
                s.nodes.len(),
                self.nodes.len()
            ));
        }
        for (mine, theirs) in self.nodes.iter().zip(&s.nodes) {
            if *mine.info.name != *theirs.name || mine.info.actor_type != theirs.actor_type {
                return mismatch(format!(
                    "node {} is {:?} ({}) in the snapshot, {:?} ({}) here",
                    theirs.id.0,
                    theirs.name,
                    theirs.actor_type,
                    mine.info.name,
                    mine.info.actor_type
                ));
            }
        }
        if s.channels.len() != self.channels.len() {
            return mismatch(format!(
                "snapshot has {} channels, group has {}",
                s.channels.len(),
                self.channels.len()
            ));
        }
        for (mine, theirs) in self.channels.iter().zip(&s.channels) {
            let m = &mine.info;
            if m.from != theirs.from || m.to != theirs.to || m.message_type != theirs.message_type {
                return mismatch(format!(
                    "channel {} is {} -> {} of {} in the snapshot, {} -> {} of {} here",
                    theirs.id,
                    theirs.from.0,
                    theirs.to.0,
                    theirs.message_type,
                    m.from.0,
                    m.to.0,
                    m.message_type
                ));
            }
        }
        if s.ingress.len() != self.ingress.len() {
            return mismatch(format!(
                "snapshot has {} ingress handles, group has {}",
                s.ingress.len(),
                self.ingress.len()
            ));
        }
        for (mine, theirs) in self.ingress.iter().zip(&s.ingress) {
            let m = &mine.info;
            if m.name != theirs.name || m.to != theirs.to || m.message_type != theirs.message_type {
                return mismatch(format!(
                    "ingress {:?} differs from the snapshot's {:?}",
                    m.name, theirs.name
                ));
            }
        }
        Ok(())
    }

    fn launch(mut self, restore: Option<&GlobalSnapshot>) -> Result<SnapshotGroup, BuildError> {
        if let Some(e) = self.errors.drain(..).next() {
            return Err(e);
        }
        if let Some(n) = self.nodes.iter().find(|n| !n.typed.has_actor()) {
            return Err(BuildError::MissingActor(n.info.name.to_string()));
        }
        for n in &self.nodes {
            if let Some(a) = n.arbiter.filter(|&a| a >= self.arbiters.max(1)) {
                return Err(BuildError::NoSuchArbiter {
                    node: n.info.name.to_string(),
                    arbiter: a,
                    arbiters: self.arbiters,
                });
            }
        }
        if actix::System::try_current().is_none() {
            return Err(BuildError::NoSystem);
        }

        // Per node, per incoming slot: messages already delivered; per ingress slot: offset.
        let mut delivered: Vec<Vec<u64>> = self
            .nodes
            .iter()
            .map(|n| vec![0; n.incoming as usize])
            .collect();
        let mut ingress_done: Vec<Vec<u64>> = self
            .nodes
            .iter()
            .map(|n| vec![0; n.ingress as usize])
            .collect();
        let mut enqueue: Vec<Box<dyn FnOnce()>> = Vec::new();
        let mut first_round = 1;
        if let Some(s) = restore {
            self.check_matches(s)?;
            // Decode everything first: an error must leave nothing started or enqueued.
            for (node, snap) in self.nodes.iter_mut().zip(&s.nodes) {
                node.typed.prepare(snap)?;
            }
            for (ch, snap) in self.channels.iter().zip(&s.channels) {
                enqueue.push((ch.replay)(&snap.messages, snap.delivered)?);
            }
            for (ch, snap) in self.channels.iter().zip(&s.channels) {
                ch.seq.store(snap.sent, Ordering::Relaxed);
                delivered[ch.info.to.index()][ch.info.slot as usize] = snap.delivered;
            }
            for (ing, snap) in self.ingress.iter().zip(&s.ingress) {
                *ing.next.lock().unwrap_or_else(PoisonError::into_inner) = snap.offset;
                ingress_done[ing.info.to.index()][ing.info.slot as usize] = snap.offset;
            }
            first_round = s.id + 1;
        }
        for thunk in enqueue {
            thunk();
        }

        let mut graph = DiGraphMap::new();
        for i in 0..self.nodes.len() {
            graph.add_node(i);
        }
        for ch in &self.channels {
            graph.add_edge(ch.info.from.index(), ch.info.to.index(), ());
        }
        let controls: Vec<Recipient<Control>> =
            self.nodes.iter().map(|n| n.typed.control()).collect();
        let mut entries = Vec::with_capacity(self.nodes.len());
        let mut infos = Vec::with_capacity(self.nodes.len());
        for n in self.nodes {
            entries.push((n.typed, n.outgoing, n.arbiter, n.info.name.clone()));
            infos.push(n.info);
        }
        let topo = Arc::new(Topology {
            nodes: infos,
            channels: self.channels.into_iter().map(|c| c.info).collect(),
            ingress: self.ingress.into_iter().map(|i| i.info).collect(),
            graph,
        });
        let stats = Arc::new(Mutex::new(SnapshotStats::default()));
        let collector =
            Collector::new(Arc::clone(&topo), controls, first_round, Arc::clone(&stats)).start();

        let arbiters: Vec<Arbiter> = (0..self.arbiters).map(|_| Arbiter::new()).collect();
        let current = Arbiter::current();
        for (i, ((typed, outgoing, placement, name), (delivered, ingress))) in entries
            .into_iter()
            .zip(delivered.into_iter().zip(ingress_done))
            .enumerate()
        {
            let handle = if arbiters.is_empty() {
                current.clone()
            } else {
                arbiters[placement.unwrap_or(i % arbiters.len())].handle()
            };
            let launch = Launch {
                meta: NodeMeta {
                    id: NodeId(i as u32),
                    name,
                },
                core: NodeCore::resume(delivered, ingress),
                outgoing,
                collector: collector.clone().recipient(),
                gone: collector.clone().recipient(),
            };
            if !typed.launch(launch, &handle) {
                return Err(BuildError::NoSystem);
            }
        }
        tracing::info!(
            nodes = topo.nodes.len(),
            channels = topo.channels.len(),
            arbiters = arbiters.len(),
            restored = restore.map(|s| s.id),
            "snapshot group started"
        );
        Ok(SnapshotGroup {
            inner: Arc::new(GroupInner {
                collector,
                topo,
                stats,
                options: self.options,
                arbiters,
            }),
        })
    }
}

struct GroupInner {
    collector: Addr<Collector>,
    topo: Arc<Topology>,
    stats: Arc<Mutex<SnapshotStats>>,
    options: SnapshotOptions,
    arbiters: Vec<Arbiter>,
}

/// A running group of actors that can be snapshotted. Cheap to clone.
#[derive(Clone)]
pub struct SnapshotGroup {
    inner: Arc<GroupInner>,
}

impl std::fmt::Debug for SnapshotGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotGroup")
            .field("nodes", &self.inner.topo.nodes.len())
            .field("channels", &self.inner.topo.channels.len())
            .finish()
    }
}

impl SnapshotGroup {
    /// A builder for a new group.
    pub fn builder() -> GroupBuilder {
        GroupBuilder::new()
    }

    /// Takes a consistent snapshot with the group's default options (all-node initiation,
    /// 10 s timeout unless [`GroupBuilder::snapshot_options`] said otherwise).
    ///
    /// Can be called from any thread or task while the actix `System` runs, and several
    /// times concurrently: rounds overlap safely.
    ///
    /// # Errors
    /// [`SnapshotError`] when the round times out, a node stopped or failed, or the group is
    /// gone. The round's buffers are freed on every node.
    pub async fn snapshot(&self) -> Result<GlobalSnapshot, SnapshotError> {
        self.snapshot_with(self.inner.options).await
    }

    /// Takes a consistent snapshot with the given options.
    ///
    /// # Errors
    /// As [`snapshot`](Self::snapshot).
    pub async fn snapshot_with(
        &self,
        options: SnapshotOptions,
    ) -> Result<GlobalSnapshot, SnapshotError> {
        let (reply, rx) = oneshot::channel();
        self.inner.collector.do_send(StartRound { options, reply });
        rx.await.unwrap_or(Err(SnapshotError::GroupStopped))
    }

    /// Counters and figures of the rounds so far.
    pub fn stats(&self) -> SnapshotStats {
        self.inner
            .stats
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The id of the node called `name`.
    pub fn node_id(&self, name: &str) -> Option<NodeId> {
        self.inner
            .topo
            .nodes
            .iter()
            .position(|n| *n.name == *name)
            .map(|i| NodeId(i as u32))
    }

    /// Node names, by id.
    pub fn node_names(&self) -> Vec<String> {
        self.inner
            .topo
            .nodes
            .iter()
            .map(|n| n.name.to_string())
            .collect()
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.inner.topo.nodes.len()
    }

    /// Whether the group has no node.
    pub fn is_empty(&self) -> bool {
        self.inner.topo.nodes.is_empty()
    }

    /// Stops the arbiters the group created (with their actors). Nodes running on the
    /// caller's arbiter stop with it. Rounds in progress fail.
    pub fn shutdown(&self) {
        for a in &self.inner.arbiters {
            a.stop();
        }
    }
}
