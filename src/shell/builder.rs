//! [`GroupBuilder`]: a group's options, the nodes and links known before it starts, and the
//! types it can restore; then [`start`](GroupBuilder::start) it fresh or
//! [`restore`](GroupBuilder::restore) it from a snapshot. Both are all-or-nothing: if any
//! constructor panics, nothing of the group is left running.
//!
//! Declaring nodes up front is a convenience for groups whose shape is known (a ring, a bank
//! with its branches): their mailboxes exist from [`node`](GroupBuilder::node) on, so typed
//! links ([`Out`]) and entries ([`Ingress`]) can be handed to constructors, and declared nodes
//! get the ids 0, 1, 2, … in order. Nodes spawned later join the same way any node does.
//!
//! A restore rebuilds every node of the snapshot: declared nodes by name, the others by the
//! type tag recorded with them, through [`restorable`](GroupBuilder::restorable). In-flight
//! messages are put back into their receivers' mailboxes before any actor runs; message types
//! are known from each actor type's `#[snapshot(messages(..))]`, or through
//! [`accepts`](GroupBuilder::accepts). Replies in flight are not put back: the futures that
//! waited for them are gone.
//!
//! ```
//! use actix::prelude::*;
//! use actix_snapshot::{Out, Snapshot, SnapshotGroup};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Message, Serialize, Deserialize)]
//! #[rtype(result = "()")]
//! struct Transfer { amount: u64 }
//!
//! /// "Send this much to your peer", from outside.
//! #[derive(Message, Serialize, Deserialize)]
//! #[rtype(result = "()")]
//! struct Order(u64);
//!
//! #[derive(Snapshot)]
//! #[snapshot(state = balance, messages(Transfer, Order))]
//! struct Branch { balance: u64, peer: Out<Transfer> }
//! impl Actor for Branch { type Context = Context<Self>; }
//! impl Handler<Transfer> for Branch {
//!     type Result = ();
//!     fn handle(&mut self, t: Transfer, _ctx: &mut Context<Self>) { self.balance += t.amount; }
//! }
//! impl Handler<Order> for Branch {
//!     type Result = ();
//!     fn handle(&mut self, Order(amount): Order, _ctx: &mut Context<Self>) {
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
//! let orders = b.ingress::<Order, _>("orders", x);
//! b.actor(x, move |restored| Branch { balance: restored.unwrap_or(100), peer: x_to_y });
//! b.actor(y, move |restored| Branch { balance: restored.unwrap_or(100), peer: y_to_x });
//! let group = b.start().unwrap();
//!
//! for _ in 0..10 { orders.send(Order(7)).unwrap(); }
//! let snap = group.snapshot().await.unwrap();
//! let money: u64 = snap.states::<Branch>().unwrap().sum::<u64>()
//!     + snap.in_flight::<Transfer>().unwrap().map(|t| t.amount).sum::<u64>();
//! assert_eq!(money, 200);
//! group.shutdown();
//! # }
//! ```

use std::any::Any;
use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};

use actix::{Arbiter, ArbiterHandle};

use crate::error::{BuildError, DecodeError, SpawnError};
use crate::protocol::{NodeCore, NodeId, RoundTracker};
use actix::Handler;

use crate::shell::actor::{
    Ctor, Messages, Placement, Prepared, Replay, Snapshottable, StartReport, replay, start_node,
};
use crate::shell::envelope::{
    Envelope, NodeMessage, REPLY_TAG, Resolved, message_tag, with_resolver,
};
use crate::shell::group::SnapshotGroup;
use crate::shell::handles::{Ingress, Out};
use crate::shell::runtime::{
    IngressInfo, Join, NodeHandle, Place, Rec, RecMsg, Shared, SnapshotOptions,
};
use crate::snapshot::{GlobalSnapshot, NodeSnapshot};

static GROUP_UIDS: AtomicU64 = AtomicU64::new(1 << 32);

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
    /// The node's id in its group (declared nodes are numbered from 0).
    pub fn id(&self) -> NodeId {
        self.id
    }
}

/// The part of a declared or restored node that depends on its actor type.
trait AnyNode {
    fn as_any(&mut self) -> &mut dyn Any;
    fn id(&self) -> NodeId;
    fn name(&self) -> Arc<str>;
    fn type_tag(&self) -> &'static str;
    fn has_ctor(&self) -> bool;
    /// The group arbiter the node was declared on, if any.
    fn arbiter(&self) -> Option<usize>;
    fn resolved(&self) -> Resolved;
    fn handle(&self) -> Box<dyn NodeHandle>;
    /// The node had left before the snapshot being restored: it starts as a tombstone.
    fn mark_gone(&mut self);
    /// Decodes (and upgrades) the node's state from a snapshot.
    fn prepare(&mut self, snap: &NodeSnapshot) -> Result<(), BuildError>;
    fn launch(
        self: Box<Self>,
        shared: &Arc<Shared>,
        core: NodeCore<Rec, RecMsg>,
        report: StartReport,
    ) -> Result<(), SpawnError>;
}

enum TypedCtor<A: Snapshottable> {
    Declared(Box<dyn FnOnce(Option<A::State>) -> A + Send>),
    Restorable(Arc<dyn Fn(A::State) -> A + Send + Sync>),
}

struct TypedNode<A: Snapshottable> {
    prepared: Prepared<A>,
    ctor: Option<TypedCtor<A>>,
    state: Option<A::State>,
    arbiter: Option<usize>,
    gone: bool,
}

impl<A: Snapshottable> AnyNode for TypedNode<A> {
    fn as_any(&mut self) -> &mut dyn Any {
        self
    }

    fn id(&self) -> NodeId {
        self.prepared.meta.id
    }

    fn name(&self) -> Arc<str> {
        Arc::clone(&self.prepared.meta.name)
    }

    fn type_tag(&self) -> &'static str {
        A::type_tag()
    }

    fn has_ctor(&self) -> bool {
        self.ctor.is_some()
    }

    fn arbiter(&self) -> Option<usize> {
        self.arbiter
    }

    fn resolved(&self) -> Resolved {
        Resolved {
            meta: Arc::clone(&self.prepared.meta),
            addr: Box::new(self.prepared.addr.clone()),
        }
    }

    fn handle(&self) -> Box<dyn NodeHandle> {
        self.prepared.handle()
    }

    fn mark_gone(&mut self) {
        self.ctor = None;
        self.gone = true;
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

    fn launch(
        self: Box<Self>,
        shared: &Arc<Shared>,
        core: NodeCore<Rec, RecMsg>,
        report: StartReport,
    ) -> Result<(), SpawnError> {
        let TypedNode {
            prepared,
            ctor,
            state,
            arbiter,
            gone,
        } = *self;
        let name = prepared.meta.name.to_string();
        let ctor: Option<Ctor<A>> = match (ctor, state) {
            _ if gone => None,
            (Some(TypedCtor::Declared(f)), state) => Some(Box::new(move || f(state))),
            (Some(TypedCtor::Restorable(f)), Some(state)) => Some(Box::new(move || f(state))),
            _ => {
                return Err(SpawnError::ConstructorPanicked {
                    node: name,
                    reason: "no constructor or no state to construct from".into(),
                });
            }
        };
        start_node(
            shared,
            prepared,
            core,
            ctor,
            Placement::Group(arbiter),
            Some(report),
        )
    }
}

/// Decodes one recorded message and puts it into a node's mailbox (type-erased: the node's
/// `Addr<NodeActor<A>>` comes as `&dyn Any`).
type MakeNode = Arc<dyn Fn(NodeId, u64, Arc<str>) -> Box<dyn AnyNode>>;

struct IngressDecl {
    info: IngressInfo,
    set_next: Box<dyn Fn(u64)>,
}

/// Declares a group's options, nodes known up front and restorable types, then starts it.
/// See the [module docs](self).
pub struct GroupBuilder {
    uid: u64,
    nodes: Vec<Box<dyn AnyNode>>,
    names: std::collections::HashSet<Arc<str>>,
    ingress: Vec<IngressDecl>,
    restorable: HashMap<&'static str, MakeNode>,
    replays: HashMap<(&'static str, &'static str), Replay>,
    arbiters: usize,
    options: SnapshotOptions,
    max_concurrent: usize,
    errors: Vec<BuildError>,
}

impl Default for GroupBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl GroupBuilder {
    /// An empty builder: no arbiters of its own, default options.
    pub fn new() -> Self {
        GroupBuilder {
            uid: GROUP_UIDS.fetch_add(1, Ordering::Relaxed),
            nodes: Vec::new(),
            names: std::collections::HashSet::new(),
            ingress: Vec::new(),
            restorable: HashMap::new(),
            replays: HashMap::new(),
            arbiters: 0,
            options: SnapshotOptions::default(),
            max_concurrent: 16,
            errors: Vec::new(),
        }
    }

    /// Runs the group's nodes on `n` arbiters (threads) of its own, placed round-robin. With
    /// `0` (the default) every node runs on the arbiter that starts the group.
    pub fn arbiters(&mut self, n: usize) -> &mut Self {
        self.arbiters = n;
        self
    }

    /// Options for every round (timeout).
    pub fn snapshot_options(&mut self, options: SnapshotOptions) -> &mut Self {
        self.options = options;
        self
    }

    /// How many rounds may be in progress at once (default 16); more fail with
    /// [`SnapshotError::TooManyRounds`](crate::SnapshotError::TooManyRounds).
    pub fn max_concurrent_rounds(&mut self, n: usize) -> &mut Self {
        self.max_concurrent = n.max(1);
        self
    }

    /// Declares a node running actor type `A`, placed round-robin. Its constructor is given
    /// with [`actor`](Self::actor).
    pub fn node<A: Snapshottable>(&mut self, name: impl Into<String>) -> NodeRef<A> {
        self.declare(name.into(), None)
    }

    /// Declares a node on the group's arbiter number `arbiter`. Starting or restoring fails
    /// with [`BuildError::NoSuchArbiter`] when the group has no such arbiter.
    pub fn node_on<A: Snapshottable>(
        &mut self,
        name: impl Into<String>,
        arbiter: usize,
    ) -> NodeRef<A> {
        self.declare(name.into(), Some(arbiter))
    }

    fn declare<A: Snapshottable>(&mut self, name: String, arbiter: Option<usize>) -> NodeRef<A> {
        self.accepts_declared::<A>();
        let id = NodeId(self.nodes.len() as u64);
        let name: Arc<str> = Arc::from(name);
        if !self.names.insert(Arc::clone(&name)) {
            self.errors
                .push(BuildError::DuplicateNode(name.to_string()));
        }
        self.nodes.push(Box::new(TypedNode::<A> {
            prepared: Prepared::new(id, self.uid, name),
            ctor: None,
            state: None,
            arbiter,
            gone: false,
        }));
        NodeRef {
            id,
            builder: self.uid,
            _actor: PhantomData,
        }
    }

    fn typed<A: Snapshottable>(&mut self, node: NodeRef<A>) -> Option<&mut TypedNode<A>> {
        if node.builder != self.uid {
            self.errors.push(BuildError::ForeignNode(node.id));
            return None;
        }
        self.nodes
            .get_mut(node.id.index())?
            .as_any()
            .downcast_mut::<TypedNode<A>>()
    }

    /// A typed link from `from` to `to` carrying `M`: an [`Out<M>`] to move into `from`'s
    /// actor. Also lets a restore put `M` messages back into `to`'s mailbox.
    pub fn channel<M: NodeMessage, A: Snapshottable, B: Snapshottable + Handler<Envelope<M>>>(
        &mut self,
        from: NodeRef<A>,
        to: NodeRef<B>,
    ) -> Out<M> {
        if from.builder != self.uid {
            self.errors.push(BuildError::ForeignNode(from.id));
        }
        self.accepts::<B, M>();
        let to_addr = self.typed(to).map(|n| n.prepared.node_addr());
        match to_addr {
            Some(addr) => Out::new(addr.recipient()),
            None => Out::new(
                Prepared::<B>::new(to.id, 0, Arc::from("?"))
                    .node_addr()
                    .recipient(),
            ),
        }
    }

    /// A named source of `M` messages from outside the group into `to` (see [`Ingress`]).
    pub fn ingress<M: NodeMessage, B: Snapshottable + Handler<Envelope<M>>>(
        &mut self,
        name: impl Into<String>,
        to: NodeRef<B>,
    ) -> Ingress<M> {
        let name = name.into();
        if self.ingress.iter().any(|i| i.info.name == name) {
            self.errors.push(BuildError::DuplicateIngress(name.clone()));
        }
        let source = self.ingress.len() as u32;
        let addr = self
            .typed(to)
            .map(|n| n.prepared.node_addr())
            .unwrap_or_else(|| Prepared::<B>::new(to.id, 0, Arc::from("?")).node_addr());
        let ingress = Ingress::new(addr.recipient(), source, 0);
        let handle = ingress.clone();
        self.ingress.push(IngressDecl {
            info: IngressInfo {
                name,
                to: to.id,
                message_type: message_tag::<M>(),
            },
            set_next: Box::new(move |n| handle.set_next(n)),
        });
        ingress
    }

    /// Gives the constructor of a declared node. It runs on the node's arbiter and gets the
    /// node's recorded state when the group is restored, `None` when it starts fresh.
    pub fn actor<A: Snapshottable>(
        &mut self,
        node: NodeRef<A>,
        ctor: impl FnOnce(Option<A::State>) -> A + Send + 'static,
    ) -> &mut Self {
        let name = self
            .nodes
            .get(node.id.index())
            .map(|n| n.name().to_string());
        if let Some(n) = self.typed(node) {
            if n.ctor.is_some() {
                let name = name.unwrap_or_default();
                self.errors.push(BuildError::DuplicateActor(name));
            } else {
                n.ctor = Some(TypedCtor::Declared(Box::new(ctor)));
            }
        }
        self
    }

    /// How to rebuild a node of type `A` that was spawned at run time, from its recorded
    /// state, when a snapshot is restored.
    pub fn restorable<A: Snapshottable>(
        &mut self,
        ctor: impl Fn(A::State) -> A + Send + Sync + 'static,
    ) -> &mut Self {
        let ctor: Arc<dyn Fn(A::State) -> A + Send + Sync> = Arc::new(ctor);
        let make: MakeNode = Arc::new(move |id, uid, name| {
            Box::new(TypedNode::<A> {
                prepared: Prepared::new(id, uid, name),
                ctor: Some(TypedCtor::Restorable(Arc::clone(&ctor))),
                state: None,
                arbiter: None,
                gone: false,
            }) as Box<dyn AnyNode>
        });
        self.restorable.insert(A::type_tag(), make);
        self.accepts_declared::<A>();
        self
    }

    /// Lets a restore put messages of type `M` in flight to nodes of type `A` back into their
    /// mailboxes. Declared links ([`channel`](Self::channel)) do this on their own.
    pub fn accepts<A: Snapshottable + Handler<Envelope<M>>, M: NodeMessage>(
        &mut self,
    ) -> &mut Self {
        self.replays
            .insert((A::type_tag(), message_tag::<M>()), replay::<A, M>());
        self
    }

    /// Registers the message types `A` declares (`#[snapshot(messages(..))]`), for replays.
    fn accepts_declared<A: Snapshottable>(&mut self) {
        for (tag, replay) in Messages::<A>::of().replays {
            self.replays.entry((A::type_tag(), tag)).or_insert(replay);
        }
    }

    fn check(&mut self) -> Result<(), BuildError> {
        if let Some(e) = self.errors.first() {
            return Err(e.clone());
        }
        if let Some(n) = self.nodes.iter().find(|n| !n.has_ctor()) {
            return Err(BuildError::MissingActor(n.name().to_string()));
        }
        // Without arbiters of its own the group runs everything on the caller's arbiter,
        // which `node_on(.., 0)` names.
        for n in &self.nodes {
            if let Some(a) = n.arbiter().filter(|&a| a >= self.arbiters.max(1)) {
                return Err(BuildError::NoSuchArbiter {
                    node: n.name().to_string(),
                    arbiter: a,
                    arbiters: self.arbiters,
                });
            }
        }
        Ok(())
    }

    /// Starts the group: every declared node, with no recorded state.
    ///
    /// # Errors
    /// A [`BuildError`] for a wrong declaration; [`BuildError::ConstructorPanicked`] when a
    /// constructor panics (nothing is left running); [`BuildError::NoSystem`] outside an
    /// actix `System`.
    pub fn start(mut self) -> Result<SnapshotGroup, BuildError> {
        self.check()?;
        let tracker = RoundTracker::new(Shared::tracker_config(self.max_concurrent));
        let next_id = self.nodes.len() as u64;
        let nodes = std::mem::take(&mut self.nodes);
        let launch = nodes
            .into_iter()
            .map(|n| (n, Join::Outside(None), Vec::new(), 0))
            .collect();
        self.run(tracker, next_id, launch, Vec::new())
    }

    /// Rebuilds the group from `snapshot`: every node of the snapshot gets its recorded state
    /// (declared nodes by name through their constructors, the others through
    /// [`restorable`](Self::restorable)), every in-flight message is back in its receiver's
    /// mailbox before any actor runs, ingress offsets and round numbers continue.
    ///
    /// # Errors
    /// [`BuildError::TopologyMismatch`] when a declared node has another type or id in the
    /// snapshot (a declared node the snapshot does not hold had left before its cut: it comes
    /// back as a tombstone); [`BuildError::UnknownType`] for a node or message type nothing
    /// was registered for; [`BuildError::StateVersion`] or [`BuildError::Restore`] when a state
    /// or message cannot be decoded; [`BuildError::ConstructorPanicked`]. Nothing is started
    /// unless everything succeeds.
    pub fn restore(mut self, snapshot: &GlobalSnapshot) -> Result<SnapshotGroup, BuildError> {
        self.check()?;
        let declared = std::mem::take(&mut self.nodes);
        let mut by_name: HashMap<Arc<str>, Box<dyn AnyNode>> =
            declared.into_iter().map(|n| (n.name(), n)).collect();
        let mut nodes: Vec<(Box<dyn AnyNode>, &NodeSnapshot)> = Vec::new();
        for snap in &snapshot.nodes {
            let node = match by_name.remove(snap.name.as_str()) {
                Some(n) => {
                    if n.type_tag() != snap.actor_type {
                        return Err(BuildError::TopologyMismatch(format!(
                            "node {:?} runs {} here, {} in the snapshot",
                            snap.name,
                            n.type_tag(),
                            snap.actor_type
                        )));
                    }
                    if n.id() != snap.id {
                        return Err(BuildError::TopologyMismatch(format!(
                            "node {:?} has id {} here, {} in the snapshot",
                            snap.name,
                            n.id(),
                            snap.id
                        )));
                    }
                    n
                }
                None => {
                    let make = self
                        .restorable
                        .get(snap.actor_type.as_str())
                        .ok_or_else(|| {
                            BuildError::UnknownType(format!(
                                "node {:?} runs {}, which was not registered with restorable()",
                                snap.name, snap.actor_type
                            ))
                        })?;
                    make(snap.id, self.uid, Arc::from(snap.name.as_str()))
                }
            };
            nodes.push((node, snap));
        }
        // Declared nodes the snapshot does not hold had left before its cut: they come back as
        // tombstones (what is still sent to them is counted and dropped), under their ids.
        let mut gone: Vec<Box<dyn AnyNode>> = by_name.into_values().collect();
        gone.sort_by_key(|n| n.id());
        for n in &mut gone {
            if let Some(other) = snapshot.node_by_id(n.id()) {
                return Err(BuildError::TopologyMismatch(format!(
                    "declared node {:?} has id {}, which the snapshot gives to {:?}",
                    n.name(),
                    n.id(),
                    other.name
                )));
            }
            n.mark_gone();
        }
        // Decode every state and in-flight message before anything starts; addresses inside
        // them resolve to the nodes being rebuilt.
        let resolver: HashMap<NodeId, Resolved> = nodes
            .iter()
            .map(|(n, s)| (s.id, n.resolved()))
            .chain(gone.iter().map(|n| (n.id(), n.resolved())))
            .collect();
        let addrs: HashMap<NodeId, (Box<dyn Any>, &'static str)> = nodes
            .iter()
            .map(|(n, s)| (s.id, (n.resolved().addr, n.type_tag())))
            .collect();
        let replays = &self.replays;
        let pushes = with_resolver(resolver, || -> Result<_, BuildError> {
            for (node, snap) in nodes.iter_mut() {
                node.prepare(snap)?;
            }
            let mut pushes: Vec<Box<dyn FnOnce()>> = Vec::new();
            for path in &snapshot.paths {
                if path.message_type == REPLY_TAG {
                    // A reply in flight: the future that waited for it is gone.
                    continue;
                }
                let (addr, tag) = addrs.get(&path.to).ok_or_else(|| {
                    BuildError::TopologyMismatch(format!(
                        "in-flight messages to node {}, which is not in the snapshot",
                        path.to
                    ))
                })?;
                let replay = replays
                    .get(&(*tag, path.message_type.as_str()))
                    .ok_or_else(|| {
                        BuildError::UnknownType(format!(
                            "in-flight {} to a {tag} node: register it with accepts()",
                            path.message_type
                        ))
                    })?;
                for m in &path.messages {
                    pushes.push(replay(
                        addr.as_ref(),
                        path.from,
                        snapshot.id,
                        path.to,
                        self.uid,
                        m,
                    )?);
                }
            }
            Ok(pushes)
        })?;
        // Ingress offsets continue, by name.
        let mut offsets: HashMap<NodeId, Vec<(u32, u64)>> = HashMap::new();
        for (source, decl) in self.ingress.iter().enumerate() {
            if let Some(rec) = snapshot.ingress.iter().find(|i| i.name == decl.info.name) {
                (decl.set_next)(rec.offset);
                offsets
                    .entry(decl.info.to)
                    .or_default()
                    .push((source as u32, rec.offset));
            }
        }
        let in_flight = pushes.len() as u64;
        let tracker = RoundTracker::restored(
            Shared::tracker_config(self.max_concurrent),
            snapshot.id,
            in_flight,
        );
        let launch = nodes
            .into_iter()
            .map(|(node, snap)| {
                let ingress = offsets.remove(&snap.id).unwrap_or_default();
                (
                    node,
                    Join::Restored(snapshot.id, snap.id),
                    ingress,
                    snap.external,
                )
            })
            .chain(gone.into_iter().map(|node| {
                let id = node.id();
                (node, Join::Restored(snapshot.id, id), Vec::new(), 0)
            }))
            .collect();
        let next_id = snapshot
            .next_node_id
            .max(snapshot.nodes.last().map_or(0, |n| n.id.0 + 1));
        self.run(tracker, next_id, launch, pushes)
    }

    /// Creates the arbiters and the shared state, registers every node, puts the recorded
    /// messages in their mailboxes, then runs every constructor; all or nothing.
    #[allow(clippy::type_complexity)]
    fn run(
        self,
        tracker: RoundTracker<Rec, RecMsg>,
        next_id: u64,
        nodes: Vec<(Box<dyn AnyNode>, Join, Vec<(u32, u64)>, u64)>,
        pushes: Vec<Box<dyn FnOnce()>>,
    ) -> Result<SnapshotGroup, BuildError> {
        let Some(home) = actix::Arbiter::try_current() else {
            return Err(BuildError::NoSystem);
        };
        let home = Place {
            arbiter: home,
            thread: std::thread::current().id(),
        };
        let arbiters = spawn_arbiters(self.arbiters);
        let shared = Arc::new(Shared::new(
            self.uid,
            self.options,
            tracker,
            next_id,
            home,
            arbiters,
        ));
        shared.publish();
        let group = SnapshotGroup::from_shared(Arc::clone(&shared));
        {
            let mut st = shared.lock();
            st.ingress = self.ingress.into_iter().map(|d| d.info).collect();
        }
        let mut registered = Vec::with_capacity(nodes.len());
        for (node, join, ingress, external) in nodes {
            let join = match join {
                Join::Outside(None) => Join::Outside(Some(node.id())),
                j => j,
            };
            let handle = node.handle();
            let (_, epoch, ()) = shared.register(node.name(), join, move |_| (handle, ()))?;
            let core = match join {
                Join::Restored(..) => NodeCore::resume(epoch, ingress, external),
                _ => NodeCore::new(epoch),
            };
            registered.push((node, core));
        }
        for push in pushes {
            push();
        }
        let (tx, rx) = mpsc::channel();
        let count = registered.len();
        let mut failure = None;
        let names: HashMap<NodeId, String> = registered
            .iter()
            .map(|(n, _)| (n.id(), n.name().to_string()))
            .collect();
        for (node, core) in registered {
            if let Err(e) = node.launch(&shared, core, tx.clone()) {
                failure.get_or_insert(match e {
                    SpawnError::ConstructorPanicked { node, reason } => {
                        BuildError::ConstructorPanicked { node, reason }
                    }
                    other => BuildError::Spawn(other),
                });
            }
        }
        drop(tx);
        if failure.is_none() {
            for _ in 0..count {
                match rx.recv() {
                    Ok((_, Ok(()))) => {}
                    Ok((id, Err(reason))) => {
                        failure = Some(BuildError::ConstructorPanicked {
                            node: names.get(&id).cloned().unwrap_or_else(|| format!("#{id}")),
                            reason,
                        });
                        break;
                    }
                    Err(_) => break,
                }
            }
        }
        match failure {
            Some(e) => {
                group.shutdown();
                Err(e)
            }
            None => Ok(group),
        }
    }
}

impl SnapshotGroup {
    /// An empty group whose nodes run on the caller's arbiter, with default options.
    ///
    /// # Errors
    /// [`BuildError::NoSystem`] outside a running actix `System`.
    pub fn new() -> Result<SnapshotGroup, BuildError> {
        GroupBuilder::new().start()
    }

    /// A builder: options (arbiters, timeout, concurrent rounds), nodes declared before start,
    /// types to restore, then [`start`](GroupBuilder::start) or
    /// [`restore`](GroupBuilder::restore).
    pub fn builder() -> GroupBuilder {
        GroupBuilder::new()
    }
}

/// Starts `n` arbiters and learns the thread each runs on.
fn spawn_arbiters(n: usize) -> Vec<Place> {
    (0..n)
        .filter_map(|_| {
            let arbiter: ArbiterHandle = Arbiter::new().handle();
            let (tx, rx) = mpsc::channel();
            arbiter.spawn_fn(move || {
                let _ = tx.send(std::thread::current().id());
            });
            let thread = rx.recv().ok()?;
            Some(Place { arbiter, thread })
        })
        .collect()
}
