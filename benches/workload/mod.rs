//! The workload both benches share: the same token-forwarding actors written twice, once as
//! plain actix actors (`Addr::do_send`, the baseline) and once as group nodes (actix actors
//! with `#[derive(Snapshot)]`, started by the group and sending over `Out<M>` links declared
//! on a `GroupBuilder`), wired in the same shapes and placed on the same number of arbiters,
//! so that every figure can be reported as a ratio against a baseline measured in the same
//! run. Both kinds share the forwarding logic ([`Router`]) and differ only in how they send.
//!
//! - Shapes ([`Shape`]): `ring` (i -> i+1), `mesh` (every node to every other), `star` (hub 0
//!   to every leaf and back), `fan-in` (nodes 1.. send to sink 0).
//! - A [`Tok`] carries a hop budget: a node that receives it counts it, and forwards it on its
//!   next outgoing channel (round-robin) with one hop less, or reports it finished
//!   ([`Finish`]) when the budget is spent. [`FOREVER`] tokens circulate until the group is
//!   shut down: that is how the latency harness keeps `load` messages in flight.
//! - A [`Burst`] makes a fan-in producer send that many one-hop tokens to the sink.
//! - Every node counts what it handled in its own counter; the harness sums them to get
//!   application throughput.
//! - The plain actors also implement a stop-the-world snapshot ([`Stw`]): on a global flag
//!   they park the tokens they receive; the coordinator waits until every token is parked
//!   (every mailbox empty of application messages), reads every state, then resumes.
#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use actix::dev::channel::channel as mailbox;
use actix::{Actor, Addr, Arbiter, Context, Handler, Message, MessageResult};
use actix_snapshot::{GroupBuilder, Ingress, NodeRef, Out, Snapshot, SnapshotGroup};
use futures::channel::oneshot;
use serde::{Deserialize, Serialize};

/// Hop budget of a token that circulates until shutdown.
pub const FOREVER: u64 = u64::MAX;

/// An application message: a token with an id and a hop budget.
#[derive(Debug, Clone, Serialize, Deserialize, Message)]
#[rtype(result = "()")]
pub struct Tok {
    /// Token id.
    pub id: u64,
    /// Hops left; [`FOREVER`] never runs out.
    pub hops: u64,
}

/// Makes a fan-in producer send `count` one-hop tokens to its first outgoing channel.
#[derive(Debug, Clone, Serialize, Deserialize, Message)]
#[rtype(result = "()")]
pub struct Burst {
    /// How many tokens.
    pub count: u64,
}

/// Makes a group node block its arbiter thread until its gate opens (holds a round's start
/// back at every node of that arbiter).
#[derive(Debug, Clone, Serialize, Deserialize, Message)]
#[rtype(result = "()")]
pub struct Hold;

/// The shape of a workload's channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// i -> i+1 (mod n).
    Ring,
    /// Every node to every other node.
    Mesh,
    /// Hub 0 to every leaf, every leaf to the hub.
    Star,
    /// Nodes 1.. to sink 0.
    FanIn,
}

impl Shape {
    /// Name used in output.
    pub fn name(self) -> &'static str {
        match self {
            Shape::Ring => "ring",
            Shape::Mesh => "mesh",
            Shape::Star => "star",
            Shape::FanIn => "fan-in",
        }
    }

    /// Outgoing neighbours of each of `n` nodes.
    pub fn outs(self, n: usize) -> Vec<Vec<usize>> {
        (0..n)
            .map(|i| match self {
                Shape::Ring if n > 1 => vec![(i + 1) % n],
                Shape::Ring => vec![],
                Shape::Mesh => (0..n).filter(|&j| j != i).collect(),
                Shape::Star if i == 0 => (1..n).collect(),
                Shape::Star => vec![0],
                Shape::FanIn if i == 0 => vec![],
                Shape::FanIn => vec![0],
            })
            .collect()
    }

    /// Number of channels of `n` nodes in this shape.
    pub fn channels(self, n: usize) -> usize {
        match self {
            Shape::Ring if n > 1 => n,
            Shape::Ring => 0,
            Shape::Mesh => n * n.saturating_sub(1),
            Shape::Star => 2 * n.saturating_sub(1),
            Shape::FanIn => n.saturating_sub(1),
        }
    }
}

/// Fires a oneshot when a given number of tokens has finished.
#[derive(Default)]
pub struct Finish {
    remaining: AtomicU64,
    tx: Mutex<Option<oneshot::Sender<()>>>,
}

impl Finish {
    /// Expects `n` finished tokens; the receiver fires on the last.
    pub fn arm(&self, n: u64) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        *self.tx.lock().unwrap_or_else(PoisonError::into_inner) = Some(tx);
        self.remaining.store(n, Ordering::SeqCst);
        rx
    }

    fn one_done(&self) {
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1
            && let Some(tx) = self
                .tx
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take()
        {
            let _ = tx.send(());
        }
    }
}

/// The forwarding logic both actor kinds share.
struct Router {
    handled: Arc<AtomicU64>,
    rr: usize,
    finish: Arc<Finish>,
}

impl Router {
    fn new(handled: Arc<AtomicU64>, finish: Arc<Finish>) -> Self {
        Router {
            handled,
            rr: 0,
            finish,
        }
    }

    /// Counts `tok`; returns the outgoing index and the token to forward, if any.
    #[inline]
    fn step(&mut self, tok: Tok, nouts: usize) -> Option<(usize, Tok)> {
        // One writer per counter: a plain load + store is enough.
        let h = self.handled.load(Ordering::Relaxed);
        self.handled.store(h + 1, Ordering::Relaxed);
        if tok.hops == 0 || nouts == 0 {
            self.finish.one_done();
            return None;
        }
        let k = self.rr % nouts;
        self.rr = self.rr.wrapping_add(1);
        let hops = if tok.hops == FOREVER {
            FOREVER
        } else {
            tok.hops - 1
        };
        Some((k, Tok { id: tok.id, hops }))
    }
}

/// What a group node records.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeState {
    /// Messages handled.
    pub handled: u64,
    /// Round-robin position.
    pub rr: u64,
}

/// The group version of a node: a plain actix actor made a node by the derive.
#[derive(Snapshot)]
#[snapshot(state_type = NodeState, state_fn = Self::state, messages(Tok, Burst, Hold))]
pub struct SNode {
    outs: Vec<Out<Tok>>,
    router: Router,
    /// Set when the node records a state (lets a bench wait until a round is open here).
    recorded: Option<Arc<AtomicBool>>,
    /// Gate a [`Hold`] waits on, and the flag it raises once it blocks.
    gate: Option<(Arc<AtomicBool>, Arc<AtomicBool>)>,
    /// Parking switch (see [`Stw`]); tokens with id [`RESUME_ID`] flush the parked ones.
    stw: Option<Arc<Stw>>,
    parked: Vec<Tok>,
}

impl Actor for SNode {
    type Context = Context<Self>;
}

impl SNode {
    /// The recorded state (called when the node records a round).
    fn state(&self) -> NodeState {
        if let Some(r) = &self.recorded {
            r.store(true, Ordering::SeqCst);
        }
        NodeState {
            handled: self.router.handled.load(Ordering::Relaxed),
            rr: self.router.rr as u64,
        }
    }
}

impl Handler<Tok> for SNode {
    type Result = ();
    #[inline]
    fn handle(&mut self, tok: Tok, _ctx: &mut Context<Self>) {
        if let Some(stw) = &self.stw {
            if tok.id == RESUME_ID {
                let parked = std::mem::take(&mut self.parked);
                stw.unparked(parked.len());
                for tok in parked {
                    if let Some((k, t)) = self.router.step(tok, self.outs.len()) {
                        self.outs[k].send(t);
                    }
                }
                return;
            }
            if stw.paused() {
                self.parked.push(tok);
                stw.park_one();
                return;
            }
        }
        if let Some((k, t)) = self.router.step(tok, self.outs.len()) {
            self.outs[k].send(t);
        }
    }
}

impl Handler<Burst> for SNode {
    type Result = ();
    fn handle(&mut self, b: Burst, _ctx: &mut Context<Self>) {
        if let Some(out) = self.outs.first_mut() {
            for id in 0..b.count {
                out.send(Tok { id, hops: 0 });
            }
        }
    }
}

impl Handler<Hold> for SNode {
    type Result = ();
    fn handle(&mut self, _: Hold, _ctx: &mut Context<Self>) {
        if let Some((gate, holding)) = &self.gate {
            holding.store(true, Ordering::SeqCst);
            while !gate.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_micros(200));
            }
            holding.store(false, Ordering::SeqCst);
        }
    }
}

/// A running group of [`SNode`]s.
pub struct SnapNet {
    /// The group.
    pub group: SnapshotGroup,
    /// Per node: a token ingress (not for fan-in).
    pub toks: Vec<Ingress<Tok>>,
    /// Per producer (fan-in only; index 0 is producer 1): a burst ingress.
    pub bursts: Vec<Ingress<Burst>>,
    /// Per node: handled counter.
    pub counters: Vec<Arc<AtomicU64>>,
    /// Application channels.
    pub channels: usize,
    /// Hold-back parts, when asked for: the blocker's ingress, its gate and flags.
    pub holdback: Option<Holdback>,
    stw: Arc<Stw>,
}

/// The parts of a fan-in group that hold a round open (see [`SnapNet::start`]).
pub struct Holdback {
    /// Feeds [`Hold`] to the blocker.
    pub hold: Ingress<Hold>,
    /// Opens the blocker.
    pub gate: Arc<AtomicBool>,
    /// Set while the blocker blocks its arbiter.
    pub holding: Arc<AtomicBool>,
    /// Set when the sink recorded its state.
    pub sink_recorded: Arc<AtomicBool>,
}

impl SnapNet {
    /// Starts `n` nodes in `shape` on `arbiters` arbiters (round-robin). Must run inside an
    /// actix system.
    ///
    /// With `holdback` (fan-in on one arbiter only) a blocker node is added on the same
    /// arbiter. It holds a round open so that the sink records *every* message the producers
    /// send while the round is open (every round starts at all nodes, and a node records at
    /// the first start or newer-colored message it handles, so the shape of the hold is in
    /// the order of the mailboxes):
    ///
    /// 1. [`Hold`] blocks the arbiter (wait for [`Holdback::holding`]);
    /// 2. the producers get their [`Burst`]s: queued, not handled;
    /// 3. a round starts: its start message is queued behind the burst at each producer, and
    ///    alone in the sink's empty mailbox;
    /// 4. the gate opens: the sink records before it handles any token (its start is first in
    ///    its mailbox), each producer sends its whole burst with the old color and records
    ///    afterwards, so every token of the burst arrives at the sink after its cut and is
    ///    recorded in flight; the round completes when the last of them has arrived.
    ///
    /// With `pausable` the nodes can park their tokens ([`SnapNet::hold`]) so that the
    /// harness can measure another set of actors on an idle machine.
    pub fn start(
        shape: Shape,
        n: usize,
        arbiters: usize,
        finish: Arc<Finish>,
        holdback: bool,
        pausable: bool,
    ) -> SnapNet {
        let arbiters = arbiters.max(1);
        let stw_ctl = Arc::new(Stw::default());
        let mut b = GroupBuilder::new();
        b.arbiters(arbiters);
        let nodes: Vec<NodeRef<SNode>> = (0..n)
            .map(|i| b.node_on::<SNode>(format!("n{i}"), i % arbiters))
            .collect();
        let outs = shape.outs(n);
        let mut out_ends: Vec<Vec<Out<Tok>>> = (0..n).map(|_| Vec::new()).collect();
        for (i, targets) in outs.iter().enumerate() {
            for &j in targets {
                out_ends[i].push(b.channel(nodes[i], nodes[j]));
            }
        }
        let mut toks = Vec::new();
        let mut bursts = Vec::new();
        for (i, &node) in nodes.iter().enumerate() {
            if shape == Shape::FanIn {
                if i > 0 {
                    bursts.push(b.ingress::<Burst, _>(format!("burst{i}"), node));
                }
            } else {
                toks.push(b.ingress::<Tok, _>(format!("tok{i}"), node));
            }
        }
        let hb = if holdback && n > 1 {
            assert_eq!(arbiters, 1, "hold-back needs every node on one arbiter");
            let blocker = b.node_on::<SNode>("blocker", 0);
            let hold = b.ingress::<Hold, _>("hold", blocker);
            let gate = Arc::new(AtomicBool::new(false));
            let holding = Arc::new(AtomicBool::new(false));
            let parts = (Arc::clone(&gate), Arc::clone(&holding));
            let f = Arc::clone(&finish);
            b.actor(blocker, move |_| SNode {
                outs: Vec::new(),
                router: Router::new(Arc::new(AtomicU64::new(0)), f),
                recorded: None,
                gate: Some(parts),
                stw: None,
                parked: Vec::new(),
            });
            Some(Holdback {
                hold,
                gate,
                holding,
                sink_recorded: Arc::new(AtomicBool::new(false)),
            })
        } else {
            None
        };
        let counters: Vec<Arc<AtomicU64>> = (0..n).map(|_| Arc::new(AtomicU64::new(0))).collect();
        for (i, (node, outs)) in nodes.iter().zip(out_ends).enumerate() {
            let handled = Arc::clone(&counters[i]);
            let f = Arc::clone(&finish);
            let recorded = hb
                .as_ref()
                .filter(|_| i == 0)
                .map(|h| Arc::clone(&h.sink_recorded));
            let stw = pausable.then(|| Arc::clone(&stw_ctl));
            b.actor(*node, move |_| SNode {
                outs,
                router: Router::new(handled, f),
                recorded,
                gate: None,
                stw,
                parked: Vec::new(),
            });
        }
        let group = b.start().expect("bench topology is valid");
        SnapNet {
            group,
            toks,
            bursts,
            counters,
            channels: shape.channels(n),
            holdback: hb,
            stw: stw_ctl,
        }
    }

    /// Parks every one of the `load` tokens (needs `pausable` and a token ingress per node):
    /// the actors go idle. Application-level, like [`PlainNet::hold`].
    pub async fn hold(&self, load: u64) {
        self.stw.hold(load).await;
    }

    /// Resumes forwarding: each node gets a [`RESUME_ID`] token through its ingress.
    pub fn release(&self) {
        self.stw.paused.store(false, Ordering::SeqCst);
        for t in &self.toks {
            let _ = t.send(Tok {
                id: RESUME_ID,
                hops: 0,
            });
        }
    }

    /// Puts `count` tokens with `hops` hops into the group, spread over the nodes.
    pub fn inject(&self, count: u64, hops: u64) {
        for id in 0..count {
            let i = id as usize % self.toks.len();
            self.toks[i]
                .send(Tok { id, hops })
                .expect("node is running");
        }
    }

    /// Messages handled so far, over all nodes.
    pub fn handled(&self) -> u64 {
        self.counters
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }

    /// Stops the group's arbiters.
    pub fn shutdown(self) {
        self.group.shutdown();
    }
}

/// Shared switch that parks every token (the stop-the-world baseline, and the harness's way
/// to idle one set of actors while it measures another).
#[derive(Default)]
pub struct Stw {
    paused: AtomicBool,
    /// Tokens parked in nodes right now.
    parked: AtomicU64,
    target: AtomicU64,
    tx: Mutex<Option<oneshot::Sender<()>>>,
}

impl Stw {
    fn park_one(&self) {
        let now = self.parked.fetch_add(1, Ordering::AcqRel) + 1;
        if now == self.target.load(Ordering::Acquire) {
            self.fire();
        }
    }

    fn unparked(&self, n: usize) {
        self.parked.fetch_sub(n as u64, Ordering::AcqRel);
    }

    fn fire(&self) {
        if let Some(tx) = self
            .tx
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            let _ = tx.send(());
        }
    }

    fn paused(&self) -> bool {
        self.paused.load(Ordering::Acquire)
    }

    /// Stops all forwarding and waits until all `load` tokens are parked.
    async fn hold(&self, load: u64) {
        let (tx, rx) = oneshot::channel();
        *self.tx.lock().unwrap_or_else(PoisonError::into_inner) = Some(tx);
        self.target.store(load, Ordering::SeqCst);
        self.paused.store(true, Ordering::SeqCst);
        if self.parked.load(Ordering::SeqCst) == load {
            self.fire();
        }
        let _ = rx.await;
    }
}

/// Token id that tells a group node to forward its parked tokens.
pub const RESUME_ID: u64 = u64::MAX;

/// Read a plain node's state (stop-the-world baseline).
#[derive(Message)]
#[rtype(result = "Vec<u8>")]
pub struct ReadState;

/// Resume a plain node after a stop-the-world pause.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Resume;

/// The plain actix version of a node.
pub struct PNode {
    outs: Vec<Addr<PNode>>,
    router: Router,
    stw: Option<Arc<Stw>>,
    parked: Vec<Tok>,
}

impl Actor for PNode {
    type Context = Context<Self>;
}

impl Handler<Tok> for PNode {
    type Result = ();
    #[inline]
    fn handle(&mut self, tok: Tok, _ctx: &mut Context<Self>) {
        if let Some(stw) = &self.stw
            && stw.paused()
        {
            self.parked.push(tok);
            stw.park_one();
            return;
        }
        if let Some((k, t)) = self.router.step(tok, self.outs.len()) {
            self.outs[k].do_send(t);
        }
    }
}

impl Handler<Burst> for PNode {
    type Result = ();
    fn handle(&mut self, b: Burst, _ctx: &mut Context<Self>) {
        if let Some(out) = self.outs.first() {
            for id in 0..b.count {
                out.do_send(Tok { id, hops: 0 });
            }
        }
    }
}

impl Handler<ReadState> for PNode {
    type Result = MessageResult<ReadState>;
    fn handle(&mut self, _: ReadState, _ctx: &mut Context<Self>) -> Self::Result {
        let state = (
            NodeState {
                handled: self.router.handled.load(Ordering::Relaxed),
                rr: self.router.rr as u64,
            },
            &self.parked,
        );
        MessageResult(rmp_serde::to_vec_named(&state).unwrap_or_default())
    }
}

impl Handler<Resume> for PNode {
    type Result = ();
    fn handle(&mut self, _: Resume, _ctx: &mut Context<Self>) {
        let parked = std::mem::take(&mut self.parked);
        if let Some(stw) = &self.stw {
            stw.unparked(parked.len());
        }
        for tok in parked {
            if let Some((k, t)) = self.router.step(tok, self.outs.len()) {
                self.outs[k].do_send(t);
            }
        }
    }
}

/// A running set of plain actors.
pub struct PlainNet {
    /// Their addresses.
    pub addrs: Vec<Addr<PNode>>,
    /// Per node: handled counter.
    pub counters: Vec<Arc<AtomicU64>>,
    /// Application channels.
    pub channels: usize,
    stw: Arc<Stw>,
    arbiters: Vec<Arbiter>,
}

impl PlainNet {
    /// Starts `n` plain actors in `shape` on `arbiters` new arbiters (round-robin).
    /// With `stw`, they take part in stop-the-world pauses ([`PlainNet::stop_the_world`]).
    pub fn start(
        shape: Shape,
        n: usize,
        arbiters: usize,
        finish: Arc<Finish>,
        stw: bool,
    ) -> PlainNet {
        let arbs: Vec<Arbiter> = (0..arbiters.max(1)).map(|_| Arbiter::new()).collect();
        let (txs, rxs): (Vec<_>, Vec<_>) = (0..n).map(|_| mailbox::<PNode>(16)).unzip();
        let addrs: Vec<Addr<PNode>> = txs.into_iter().map(Addr::new).collect();
        let outs = shape.outs(n);
        let stw_ctl = Arc::new(Stw::default());
        let counters: Vec<Arc<AtomicU64>> = (0..n).map(|_| Arc::new(AtomicU64::new(0))).collect();
        for (i, rx) in rxs.into_iter().enumerate() {
            let node = PNode {
                outs: outs[i].iter().map(|&j| addrs[j].clone()).collect(),
                router: Router::new(Arc::clone(&counters[i]), Arc::clone(&finish)),
                stw: stw.then(|| Arc::clone(&stw_ctl)),
                parked: Vec::new(),
            };
            arbs[i % arbs.len()].spawn_fn(move || {
                Context::with_receiver(rx).run(node);
            });
        }
        PlainNet {
            addrs,
            counters,
            channels: shape.channels(n),
            stw: stw_ctl,
            arbiters: arbs,
        }
    }

    /// Puts `count` tokens with `hops` hops into the actors, spread over the nodes.
    pub fn inject(&self, count: u64, hops: u64) {
        for id in 0..count {
            self.addrs[id as usize % self.addrs.len()].do_send(Tok { id, hops });
        }
    }

    /// Messages handled so far, over all nodes.
    pub fn handled(&self) -> u64 {
        self.counters
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }

    /// One stop-the-world snapshot of a group with `load` tokens circulating: stop all
    /// forwarding, wait until every token is parked (every mailbox empty of application
    /// messages), read every state, resume. Returns the pause (stop to resume issued) and
    /// the bytes read. Waits for every node to have resumed before returning.
    pub async fn stop_the_world(&self, load: u64) -> (Duration, usize) {
        let t0 = std::time::Instant::now();
        self.stw.hold(load).await;
        let states = futures::future::join_all(self.addrs.iter().map(|a| a.send(ReadState))).await;
        let bytes = states.iter().map(|s| s.as_ref().map_or(0, Vec::len)).sum();
        let resumed = self.release();
        let pause = t0.elapsed();
        resumed.await;
        (pause, bytes)
    }

    /// Parks every one of the `load` tokens: the actors go idle.
    pub async fn hold(&self, load: u64) {
        self.stw.hold(load).await;
    }

    /// Resumes forwarding; the future completes when every actor has resumed.
    pub fn release(&self) -> impl std::future::Future<Output = ()> + use<> {
        self.stw.paused.store(false, Ordering::SeqCst);
        let resumes: Vec<_> = self.addrs.iter().map(|a| a.send(Resume)).collect();
        async move {
            futures::future::join_all(resumes).await;
        }
    }

    /// Stops the arbiters and waits for their threads.
    pub fn shutdown(self) {
        for a in &self.arbiters {
            a.stop();
        }
        for a in self.arbiters {
            let _ = a.join();
        }
    }
}
