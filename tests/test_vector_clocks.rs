//! Snapshots checked against vector clocks kept by the test's own actors, in groups whose
//! membership changes while they run.
//!
//! Nothing here trusts the library's bookkeeping. Every process keeps a vector clock
//! (Fidge/Mattern): the test actors, and the test itself (the *driver*, entry [`DRIVER`]),
//! which spawns nodes and sends them commands. Every local event ticks the process's own
//! entry, every message carries the sender's clock, every receive merges it. A node spawned
//! by a node starts from its parent's clock at the spawn event; a node spawned by the driver
//! starts from the driver's clock at the spawn. Each node logs every event it performs —
//! its index (= its own clock entry after the event), its clock and what happened — into a
//! test-side log. Its snapshot state includes its clock, so the *cut event* of node `k` in a
//! snapshot is `c_k = state_k.vc[k]`. The driver also notes, for every round, the log
//! lengths just before it starts the round (`lo`) and just after the round's result arrived
//! (`hi`), and its own clock at both moments.
//!
//! After the traffic has stopped, every snapshot is checked against the complete logs:
//!
//! (a) **the cut is consistent, membership included.** The cut is closed under
//!     happened-before: starting from the recorded clocks, the driver's clock at the round's
//!     start and the `lo` lengths, every event some event of the cut depends on must be in
//!     the cut. For a node *in* the snapshot that means nothing beyond its recorded event
//!     (and its recorded event is not after its own stop). A node *not* in the snapshot must
//!     have either none of its events in the cut — it did not exist yet: its spawn (by the
//!     driver, or by its parent's event) is outside the cut — or all of them, ending with its
//!     stop: it had left. A node that existed at the cut and had not stopped must be there.
//!     Nothing in the cut may come after the round's result (`hi`).
//! (b) **the in-flight messages are exactly right:** per path (sender, receiver), the
//!     messages sent inside the cut to a node of the snapshot and received outside its cut,
//!     in arrival order (delivered ones by receive index, then those that reached the node
//!     after it stopped, which no log orders), equal field by field. FIFO is not assumed
//!     anywhere. Nothing is in flight to a node that is not in the snapshot.
//! (c) **each recorded state equals a replay** of its node's own log up to its cut event;
//!     the node's recorded counters (`sent`, `received`, `external`) and its ingress offset
//!     equal the counts of those events in the same prefix.
//!
//! Groups: declared rings, meshes and random graphs with cycles (typed `Out` channels), and
//! dynamic groups where nodes are spawned from outside and as children from handlers (and
//! then take part in the traffic), stop during the run, learn addresses from messages, and
//! receive from several threads at once: nodes on different arbiters sharing
//! `NodeRecipient` clones of one target, plus *pumps* — `NodeRecipient` clones used from
//! arbiters outside the group — injecting tokens. Rounds overlap, and some membership changes
//! happen while rounds are running. A last test feeds the checker doctored snapshots to show
//! that it rejects each kind of wrong snapshot.
//!
//! `VC_RUNS` (or else `PROPTEST_CASES`) sets how many random dynamic runs
//! `random_dynamic_groups` makes (default 4); `VC_SEED` its first seed.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use actix::{Actor, ActorContext, Context, Handler, Message};
use actix_snapshot::{
    GlobalSnapshot, Ingress, NodeAddr, NodeContext, NodeId, NodeRecipient, Out, Snapshot,
    SnapshotGroup,
};
use futures::future::join_all;
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

/// The test's own number for a node (its name is `n<tid>`), independent of the library's ids.
type Tid = u32;

/// The driver's entry in vector clocks.
const DRIVER: Tid = u32::MAX;

/// A vector clock: process -> number of its events known.
type Clock = BTreeMap<Tid, u64>;

fn merge(into: &mut Clock, from: &Clock) {
    for (&p, &v) in from {
        let e = into.entry(p).or_insert(0);
        *e = (*e).max(v);
    }
}

fn at(c: &Clock, p: Tid) -> u64 {
    c.get(&p).copied().unwrap_or(0)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x
}

/// A message between test nodes. `vc` is the sender's clock right after the send event, so
/// `vc[from]` is the send event's index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Message)]
#[rtype(result = "()")]
struct VcMsg {
    from: Tid,
    /// The sender's count of node messages sent before this one (to anyone).
    seq: u64,
    vc: Clock,
    payload: u64,
    /// A peer of the sender the receiver may now send to.
    intro: Option<Tid>,
}

/// Commands from outside the group: from the driver (with its clock) or from a pump.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Message)]
#[rtype(result = "()")]
struct Cmd {
    vc: Option<Clock>,
    /// Sent through the node's named ingress (else as an unnamed outside input).
    via_ingress: bool,
    ctl: Ctl,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
enum Ctl {
    /// Put this many tokens into circulation.
    Kick(u32),
    /// From now on keep every token received instead of passing it on.
    Drain,
    /// Add this node to the peers.
    Meet(Tid),
    /// Spawn a child node with this number (as one step of this node).
    Spawn(Tid),
    /// Leave the group.
    Stop,
    /// Block this node's thread for that many milliseconds.
    Stall(u64),
    /// Send this many tokens to this peer (kept if it is no peer).
    KickTo(Tid, u32),
}

/// A test node's state, as recorded in snapshots.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
struct VcState {
    vc: Clock,
    /// Order-sensitive fold of everything received.
    digest: u64,
    /// Node messages sent, to anyone.
    seq: u64,
    sent: BTreeMap<Tid, u64>,
    received: BTreeMap<Tid, u64>,
    /// Tokens kept (draining, or no peer to pass them to).
    held: u64,
    /// Commands handled from the named ingress / from unnamed outside senders.
    ingress: u64,
    external: u64,
    draining: bool,
    peers: Vec<Tid>,
    children: u32,
}

/// One logged event.
#[derive(Debug, Clone)]
enum Ev {
    /// The node's first event, in its constructor.
    Born {
        init: Clock,
        peers: Vec<Tid>,
    },
    Send {
        to: Tid,
        msg: VcMsg,
    },
    Recv {
        msg: VcMsg,
    },
    Cmd(Cmd),
}

#[derive(Debug, Clone)]
struct Logged {
    /// Index of the event on its node, from 1.
    idx: u64,
    /// The node's clock right after the event.
    vc: Clock,
    ev: Ev,
}

fn is_stop(e: &Logged) -> bool {
    matches!(&e.ev, Ev::Cmd(Cmd { ctl: Ctl::Stop, .. }))
}

type Log = Arc<Mutex<Vec<Logged>>>;

/// What the test shares with its nodes: their logs and addresses, by test number.
#[derive(Default)]
struct Harness {
    logs: Mutex<BTreeMap<Tid, Log>>,
    addrs: Mutex<BTreeMap<Tid, NodeAddr<VcNode>>>,
    ids: Mutex<BTreeMap<Tid, NodeId>>,
}

impl Harness {
    fn new_log(&self, t: Tid) -> Log {
        let log: Log = Arc::default();
        lock(&self.logs).insert(t, Arc::clone(&log));
        log
    }

    fn log(&self, t: Tid) -> Log {
        Arc::clone(&lock(&self.logs)[&t])
    }

    fn addr(&self, t: Tid) -> Option<NodeAddr<VcNode>> {
        lock(&self.addrs).get(&t).cloned()
    }

    fn register(&self, t: Tid, addr: NodeAddr<VcNode>) {
        lock(&self.ids).insert(t, addr.id());
        lock(&self.addrs).insert(t, addr);
    }

    fn lengths(&self) -> BTreeMap<Tid, u64> {
        lock(&self.logs)
            .iter()
            .map(|(&t, l)| (t, lock(l).len() as u64))
            .collect()
    }

    fn last_is_stop(&self, t: Tid) -> bool {
        lock(&self.log(t)).last().is_some_and(is_stop)
    }
}

// ---------------------------------------------------------------------------------------
// The test node.
// ---------------------------------------------------------------------------------------

/// How a node reaches a peer: a declared channel, or a recipient made from an address.
enum Link {
    Out(Out<VcMsg>),
    To(NodeRecipient<VcMsg>),
}

impl Link {
    fn send(&mut self, msg: VcMsg) {
        match self {
            Link::Out(o) => o.send(msg),
            Link::To(r) => r.do_send(msg),
        }
    }
}

#[derive(Snapshot)]
#[snapshot(state = st, messages(VcMsg, Cmd))]
struct VcNode {
    me: Tid,
    st: VcState,
    /// Parallel to `st.peers`.
    links: Vec<Link>,
    log: Log,
    h: Arc<Harness>,
}

/// Folds a received message into a digest; shared by the node and the replay.
fn fold(digest: u64, msg: &VcMsg) -> u64 {
    digest
        .wrapping_mul(31)
        .wrapping_add(msg.payload ^ (u64::from(msg.from) << 40) ^ msg.seq)
}

/// Whether a node keeps a token instead of passing it on.
fn holds(st: &VcState) -> bool {
    st.draining || st.peers.is_empty()
}

/// What a received message does to the state (besides clock and logging); shared by the
/// node and the replay. Returns whether the message introduced a new peer.
fn apply_recv(st: &mut VcState, me: Tid, msg: &VcMsg) -> Option<Tid> {
    *st.received.entry(msg.from).or_insert(0) += 1;
    st.digest = fold(st.digest, msg);
    let new_peer = msg.intro.filter(|&t| t != me && !st.peers.contains(&t));
    if let Some(t) = new_peer {
        st.peers.push(t);
    }
    if holds(st) {
        st.held += 1;
    }
    new_peer
}

/// What a command does to the state (besides clock and logging); shared by the node and the
/// replay. Returns a peer that is new.
fn apply_cmd(st: &mut VcState, me: Tid, cmd: &Cmd) -> Option<Tid> {
    if cmd.via_ingress {
        st.ingress += 1;
    } else {
        st.external += 1;
    }
    match cmd.ctl {
        Ctl::Kick(n) => {
            if holds(st) {
                st.held += u64::from(n);
            }
            None
        }
        Ctl::Drain => {
            st.draining = true;
            None
        }
        Ctl::Meet(t) if t != me && !st.peers.contains(&t) => {
            st.peers.push(t);
            Some(t)
        }
        Ctl::Meet(_) => None,
        Ctl::Spawn(c) => {
            st.peers.push(c);
            st.children += 1;
            None
        }
        Ctl::KickTo(t, n) => {
            if holds(st) || !st.peers.contains(&t) {
                st.held += u64::from(n);
            }
            None
        }
        Ctl::Stop | Ctl::Stall(_) => None,
    }
}

impl VcNode {
    /// A node's first event: its clock starts from `init` (its creator's clock at the spawn).
    fn born(me: Tid, init: Clock, peers: Vec<Tid>, links: Vec<Link>, h: Arc<Harness>) -> Self {
        let log = h.log(me);
        let mut node = VcNode {
            me,
            st: VcState {
                vc: init.clone(),
                peers: peers.clone(),
                ..VcState::default()
            },
            links,
            log,
            h,
        };
        let idx = node.tick();
        node.record(idx, Ev::Born { init, peers });
        node
    }

    /// A new local event: tick the own clock entry, return the event's index.
    fn tick(&mut self) -> u64 {
        let e = self.st.vc.entry(self.me).or_insert(0);
        *e += 1;
        *e
    }

    fn record(&self, idx: u64, ev: Ev) {
        lock(&self.log).push(Logged {
            idx,
            vc: self.st.vc.clone(),
            ev,
        });
    }

    fn link_to(&self, t: Tid) -> Link {
        let addr = self
            .h
            .addr(t)
            .expect("peers are registered before they are known");
        Link::To(addr.recipient())
    }

    /// A send event: one token to peer `pick` (or one picked from the digest).
    fn send_token(&mut self, pick: Option<usize>) {
        let idx = self.tick();
        let n = self.st.peers.len();
        let k = pick.unwrap_or_else(|| (mix(self.st.digest ^ idx) % n as u64) as usize);
        let to = self.st.peers[k];
        let intro =
            (n >= 2 && matches!(self.links[k], Link::To(_)) && mix(idx ^ 0x5bd1).is_multiple_of(4))
                .then(|| self.st.peers[(k + 1) % n]);
        let msg = VcMsg {
            from: self.me,
            seq: self.st.seq,
            vc: self.st.vc.clone(),
            payload: mix(self.st.digest.wrapping_add(idx)),
            intro,
        };
        self.st.seq += 1;
        *self.st.sent.entry(to).or_insert(0) += 1;
        self.record(
            idx,
            Ev::Send {
                to,
                msg: msg.clone(),
            },
        );
        self.links[k].send(msg);
    }
}

impl Actor for VcNode {
    type Context = Context<Self>;
}

impl Handler<VcMsg> for VcNode {
    type Result = ();
    fn handle(&mut self, msg: VcMsg, _ctx: &mut Context<Self>) {
        merge(&mut self.st.vc, &msg.vc);
        let idx = self.tick();
        if let Some(t) = apply_recv(&mut self.st, self.me, &msg) {
            let link = self.link_to(t);
            self.links.push(link);
        }
        let hold = holds(&self.st);
        self.record(idx, Ev::Recv { msg });
        if !hold {
            self.send_token(None);
        }
    }
}

impl Handler<Cmd> for VcNode {
    type Result = ();
    fn handle(&mut self, cmd: Cmd, ctx: &mut Context<Self>) {
        if let Some(vc) = &cmd.vc {
            merge(&mut self.st.vc, vc);
        }
        let idx = self.tick();
        if let Some(t) = apply_cmd(&mut self.st, self.me, &cmd) {
            let link = self.link_to(t);
            self.links.push(link);
        }
        let ctl = cmd.ctl.clone();
        self.record(idx, Ev::Cmd(cmd));
        match ctl {
            Ctl::Kick(n) if !holds(&self.st) => {
                for _ in 0..n {
                    self.send_token(None);
                }
            }
            Ctl::KickTo(t, n) if !holds(&self.st) => {
                if let Some(k) = self.st.peers.iter().position(|&p| p == t) {
                    for _ in 0..n {
                        self.send_token(Some(k));
                    }
                }
            }
            Ctl::Kick(_) | Ctl::KickTo(..) | Ctl::Drain | Ctl::Meet(_) => {}
            Ctl::Spawn(c) => {
                // The child starts from this event's clock, knows this node and up to two of
                // its peers, and gets a token at once.
                let init = self.st.vc.clone();
                let mut peers = vec![self.me];
                peers.extend(self.st.peers.iter().copied().filter(|&p| p != c).take(2));
                let me = ctx.node_addr().expect("a handler runs inside its node");
                let mut links = vec![Link::To(me.recipient())];
                links.extend(peers[1..].iter().map(|&p| self.link_to(p)));
                let h = Arc::clone(&self.h);
                let child = ctx
                    .spawn_node(format!("n{c}"), move || {
                        VcNode::born(c, init, peers, links, h)
                    })
                    .expect("the child spawns");
                self.links.push(Link::To(child.recipient()));
                self.h.register(c, child);
                if !holds(&self.st) {
                    self.send_token(Some(self.st.peers.len() - 1));
                }
            }
            Ctl::Stop => ctx.stop(),
            Ctl::Stall(ms) => std::thread::sleep(Duration::from_millis(ms)),
        }
    }
}

// ---------------------------------------------------------------------------------------
// The driver: starts groups, changes their membership, takes rounds, notes what it saw.
// ---------------------------------------------------------------------------------------

/// A completed round and what the driver knew around it.
#[derive(Clone)]
struct RoundRec {
    snap: GlobalSnapshot,
    /// Log lengths read just before the round started.
    lo: BTreeMap<Tid, u64>,
    /// Log lengths read just after its result arrived.
    hi: BTreeMap<Tid, u64>,
    /// The driver's event count at the round's start and when its result arrived.
    d_start: u64,
    d_end: u64,
}

/// Outside senders on arbiters of their own: each injects a token into a random live node
/// every `every`, through a `NodeRecipient` clone.
struct Pumps {
    stop: Arc<AtomicBool>,
    arbiters: Vec<actix::Arbiter>,
}

impl Pumps {
    fn start(n: usize, h: &Arc<Harness>, seed: u64, every: Duration) -> Pumps {
        let stop = Arc::new(AtomicBool::new(false));
        let arbiters = (0..n)
            .map(|p| {
                let arbiter = actix::Arbiter::new();
                let (h, stop) = (Arc::clone(h), Arc::clone(&stop));
                let mut rng = SmallRng::seed_from_u64(seed ^ ((p as u64 + 1) * 0x9E37));
                arbiter.spawn(async move {
                    let mut to: BTreeMap<Tid, NodeRecipient<Cmd>> = BTreeMap::new();
                    while !stop.load(Ordering::Acquire) {
                        let live: Vec<(Tid, NodeAddr<VcNode>)> = lock(&h.addrs)
                            .iter()
                            .filter(|(_, a)| a.is_alive())
                            .map(|(&t, a)| (t, a.clone()))
                            .collect();
                        if !live.is_empty() {
                            let (t, addr) = &live[rng.random_range(0..live.len())];
                            let rcp = to.entry(*t).or_insert_with(|| addr.recipient());
                            rcp.do_send(Cmd {
                                vc: None,
                                via_ingress: false,
                                ctl: Ctl::Kick(1),
                            });
                        }
                        actix_rt::time::sleep(every).await;
                    }
                });
                arbiter
            })
            .collect();
        Pumps { stop, arbiters }
    }

    /// Stops every pump and waits until none can send any more.
    fn stop(self) {
        self.stop.store(true, Ordering::Release);
        for a in self.arbiters {
            a.stop();
            let _ = a.join();
        }
    }
}

struct Driver {
    h: Arc<Harness>,
    group: SnapshotGroup,
    /// The driver's own event count (its clock entry).
    d: u64,
    next_tid: Tid,
    /// Named ingress of the nodes that have one.
    ingress: BTreeMap<Tid, Ingress<Cmd>>,
    /// Nodes the driver spawned, and the driver event that spawned them.
    spawned: BTreeMap<Tid, u64>,
    /// Nodes not told to stop.
    live: BTreeSet<Tid>,
    /// Nodes told to stop.
    stopping: BTreeSet<Tid>,
    rounds: Vec<RoundRec>,
    /// The driver's event count when the first round started.
    first_round: Option<u64>,
    rng: SmallRng,
}

impl Driver {
    fn new(h: Arc<Harness>, group: SnapshotGroup, seed: u64) -> Self {
        Driver {
            h,
            group,
            d: 0,
            next_tid: 0,
            ingress: BTreeMap::new(),
            spawned: BTreeMap::new(),
            live: BTreeSet::new(),
            stopping: BTreeSet::new(),
            rounds: Vec::new(),
            first_round: None,
            rng: SmallRng::seed_from_u64(seed),
        }
    }

    fn tick(&mut self) -> u64 {
        self.d += 1;
        self.d
    }

    fn clock(&self) -> Clock {
        Clock::from([(DRIVER, self.d)])
    }

    /// Sends a command (a driver event): through the node's ingress if it has one.
    fn send(&mut self, t: Tid, ctl: Ctl) {
        self.tick();
        let mut cmd = Cmd {
            vc: Some(self.clock()),
            via_ingress: false,
            ctl,
        };
        if let Some(ingress) = self.ingress.get(&t) {
            cmd.via_ingress = true;
            let _ = ingress.send(cmd);
        } else if let Some(addr) = self.h.addr(t) {
            addr.do_send(cmd);
        }
    }

    /// Spawns a node from outside (a driver event); it has a named ingress and no peers.
    fn spawn_outside(&mut self) -> Tid {
        let t = self.next_tid;
        self.next_tid += 1;
        let spawned_at = self.tick();
        self.h.new_log(t);
        let (init, h) = (self.clock(), Arc::clone(&self.h));
        let addr = self
            .group
            .spawn(format!("n{t}"), move || {
                VcNode::born(t, init, Vec::new(), Vec::new(), h)
            })
            .expect("spawns");
        self.h.register(t, addr.clone());
        let ingress = self
            .group
            .ingress::<Cmd, _>(format!("ctl-{t}"), &addr)
            .expect("ingress");
        self.ingress.insert(t, ingress);
        self.spawned.insert(t, spawned_at);
        self.live.insert(t);
        t
    }

    /// Tells `parent` to spawn a child; returns the child's number.
    fn spawn_child(&mut self, parent: Tid) -> Tid {
        let c = self.next_tid;
        self.next_tid += 1;
        self.h.new_log(c);
        self.send(parent, Ctl::Spawn(c));
        self.live.insert(c);
        c
    }

    fn stop(&mut self, t: Tid) {
        self.send(t, Ctl::Stop);
        self.live.remove(&t);
        self.stopping.insert(t);
    }

    /// Live nodes the driver can address now (a child is addressable once its parent
    /// spawned it).
    fn addressable(&self) -> Vec<Tid> {
        self.live
            .iter()
            .copied()
            .filter(|&t| self.ingress.contains_key(&t) || self.h.addr(t).is_some())
            .collect()
    }

    fn pick(&mut self) -> Option<Tid> {
        let v = self.addressable();
        (!v.is_empty()).then(|| v[self.rng.random_range(0..v.len())])
    }

    async fn until(&self, what: &str, mut cond: impl FnMut(&Self) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !cond(self) {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            actix::clock::sleep(Duration::from_millis(1)).await;
        }
    }

    async fn wait_stopped(&self, t: Tid) {
        self.until("a node to stop", |d| d.h.last_is_stop(t)).await;
    }

    async fn wait_addressable(&self, t: Tid) {
        self.until("a node to be addressable", |d| {
            d.ingress.contains_key(&t) || d.h.addr(t).is_some()
        })
        .await;
    }

    /// Takes `overlap` concurrent rounds; `during` runs (as driver events) after every round
    /// has started and before any result is awaited.
    async fn rounds(&mut self, overlap: usize, during: impl FnOnce(&mut Self)) {
        let lo = self.h.lengths();
        let d_start = self.tick();
        self.first_round.get_or_insert(d_start);
        let group = self.group.clone();
        let mut all = pin!(join_all((0..overlap).map(|_| group.snapshot())));
        // One poll starts every round.
        let first = futures::poll!(all.as_mut());
        during(self);
        let results = match first {
            std::task::Poll::Ready(r) => r,
            std::task::Poll::Pending => all.await,
        };
        let hi = self.h.lengths();
        for r in results {
            self.rounds.push(RoundRec {
                snap: r.expect("round completes"),
                lo: lo.clone(),
                hi: hi.clone(),
                d_start,
                d_end: self.d,
            });
        }
    }

    /// Stops the traffic: every live node drains (rounds run meanwhile), every message to a
    /// node that has not stopped is received; a last round at rest must hold nothing in
    /// flight.
    async fn finish(&mut self, overlap: usize) {
        for t in self.live.clone() {
            self.wait_addressable(t).await;
        }
        for t in self.live.clone() {
            self.send(t, Ctl::Drain);
        }
        self.rounds(overlap, |_| {}).await;
        let stopping = self.stopping.clone();
        for &t in &stopping {
            self.wait_stopped(t).await;
        }
        let live = self.live.clone();
        self.until("the network to quiesce", |d| {
            let logs: Vec<Vec<Logged>> =
                lock(&d.h.logs).values().map(|l| lock(l).clone()).collect();
            let drained = live.iter().all(|t| {
                lock(&d.h.log(*t)).iter().any(|e| {
                    matches!(
                        &e.ev,
                        Ev::Cmd(Cmd {
                            ctl: Ctl::Drain,
                            ..
                        })
                    )
                })
            });
            if !drained {
                return false;
            }
            // Once every live node has drained nobody sends any more; the network is quiet
            // when every message to a node that has not stopped has been received.
            let mut sent = 0;
            let mut received = 0;
            for log in &logs {
                for e in log {
                    match &e.ev {
                        Ev::Send { to, .. } if !stopping.contains(to) => sent += 1,
                        Ev::Recv { .. } => received += 1,
                        _ => {}
                    }
                }
            }
            let received_by_stopped: usize = stopping
                .iter()
                .map(|t| {
                    lock(&d.h.log(*t))
                        .iter()
                        .filter(|e| matches!(e.ev, Ev::Recv { .. }))
                        .count()
                })
                .sum();
            sent == received - received_by_stopped
        })
        .await;
        self.rounds(1, |_| {}).await;
        let last = &self.rounds.last().expect("a round").snap;
        assert_eq!(last.in_flight_count(), 0, "in flight after quiescence");
        self.group.shutdown();
    }

    fn history(&self) -> History {
        History::new(
            &self.h,
            &self.spawned,
            &self.ingress,
            self.first_round.unwrap_or(0),
        )
    }
}

// ---------------------------------------------------------------------------------------
// Declared topologies (typed `Out` channels from the builder).
// ---------------------------------------------------------------------------------------

fn ring(n: usize) -> Vec<(Tid, Tid)> {
    (0..n as Tid).map(|i| (i, (i + 1) % n as Tid)).collect()
}

fn mesh(n: usize) -> Vec<(Tid, Tid)> {
    let n = n as Tid;
    (0..n)
        .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
        .collect()
}

/// A random directed graph with cycles: a ring through a random order of the nodes (so
/// every node can reach every other and has an outgoing edge), plus random extra edges.
fn random_graph(n: usize, seed: u64) -> Vec<(Tid, Tid)> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut order: Vec<Tid> = (0..n as Tid).collect();
    for i in (1..n).rev() {
        order.swap(i, rng.random_range(0..=i));
    }
    let mut edges: BTreeSet<(Tid, Tid)> = (0..n).map(|i| (order[i], order[(i + 1) % n])).collect();
    for i in 0..n as Tid {
        for j in 0..n as Tid {
            if i != j && rng.random_range(0..100) < 25 {
                edges.insert((i, j));
            }
        }
    }
    edges.into_iter().collect()
}

/// A group declared with the builder: `n` nodes, one `Out` per edge, one ingress each.
fn start_declared(n: usize, edges: &[(Tid, Tid)], arbiters: usize) -> Driver {
    let h = Arc::new(Harness::default());
    let mut b = SnapshotGroup::builder();
    b.arbiters(arbiters);
    let nodes: Vec<_> = (0..n).map(|i| b.node::<VcNode>(format!("n{i}"))).collect();
    let mut outs: Vec<Vec<(Tid, Out<VcMsg>)>> = (0..n).map(|_| Vec::new()).collect();
    for &(f, t) in edges {
        outs[f as usize].push((t, b.channel(nodes[f as usize], nodes[t as usize])));
    }
    assert!(
        outs.iter().all(|o| !o.is_empty()),
        "every node needs an out edge"
    );
    let ingress: Vec<Ingress<Cmd>> = nodes
        .iter()
        .enumerate()
        .map(|(i, &r)| b.ingress::<Cmd, _>(format!("ctl-{i}"), r))
        .collect();
    let mut spawned = BTreeMap::new();
    let mut d = 0;
    for (i, (r, outs)) in nodes.iter().zip(outs).enumerate() {
        let t = i as Tid;
        d += 1;
        spawned.insert(t, d);
        h.new_log(t);
        lock(&h.ids).insert(t, r.id());
        let init = Clock::from([(DRIVER, d)]);
        let hh = Arc::clone(&h);
        b.actor(*r, move |_restored| {
            let (peers, links) = outs.into_iter().map(|(t, o)| (t, Link::Out(o))).unzip();
            VcNode::born(t, init, peers, links, hh)
        });
    }
    let group = b.start().expect("valid topology");
    let mut driver = Driver::new(h, group, 0);
    driver.d = d;
    driver.next_tid = n as Tid;
    driver.spawned = spawned;
    driver.ingress = ingress
        .into_iter()
        .enumerate()
        .map(|(i, g)| (i as Tid, g))
        .collect();
    driver.live = (0..n as Tid).collect();
    driver
}

/// Runs traffic on a declared group with overlapping rounds, drains it, checks every
/// snapshot.
async fn declared(name: &str, n: usize, edges: Vec<(Tid, Tid)>, arbiters: usize) -> Tally {
    let mut d = start_declared(n, &edges, arbiters);
    for t in 0..n as Tid {
        d.send(t, Ctl::Kick(3));
    }
    for _ in 0..8 {
        d.rounds(4, |_| {}).await;
        actix::clock::sleep(Duration::from_millis(3)).await;
    }
    d.finish(4).await;
    let tally = d
        .history()
        .check_all(&d.rounds)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    eprintln!("{name}: {tally}");
    // The checks must not be vacuous: traffic ran while rounds ran.
    assert!(
        tally.in_flight > 0,
        "{name}: no snapshot caught a message in flight"
    );
    tally
}

// ---------------------------------------------------------------------------------------
// Dynamic groups.
// ---------------------------------------------------------------------------------------

/// The shape of a random dynamic run.
#[derive(Debug, Clone)]
struct Plan {
    seed: u64,
    arbiters: usize,
    initial: usize,
    pumps: usize,
    batches: usize,
    overlap: usize,
}

impl Plan {
    fn random(seed: u64) -> Plan {
        let mut rng = SmallRng::seed_from_u64(seed);
        Plan {
            seed,
            arbiters: rng.random_range(0..=3),
            initial: rng.random_range(3..=6),
            pumps: rng.random_range(0..=2),
            batches: rng.random_range(5..=9),
            overlap: rng.random_range(1..=4),
        }
    }
}

/// A membership change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    Nothing,
    SpawnOutside,
    SpawnChild,
    Stop,
}

fn random_change(rng: &mut SmallRng) -> Change {
    match rng.random_range(0..10) {
        0..=2 => Change::SpawnOutside,
        3..=5 => Change::SpawnChild,
        6..=7 => Change::Stop,
        _ => Change::Nothing,
    }
}

impl Driver {
    /// Starts an empty group and spawns `n` nodes from outside, each introduced to the next
    /// one and to a random other one, each given `tokens`.
    fn start_dynamic(arbiters: usize, n: usize, tokens: u32, seed: u64) -> Driver {
        let mut b = SnapshotGroup::builder();
        b.arbiters(arbiters);
        let group = b.start().expect("starts");
        let mut d = Driver::new(Arc::new(Harness::default()), group, seed);
        let ts: Vec<Tid> = (0..n).map(|_| d.spawn_outside()).collect();
        for (i, &t) in ts.iter().enumerate() {
            d.send(t, Ctl::Meet(ts[(i + 1) % n]));
            let other = ts[d.rng.random_range(0..n)];
            d.send(t, Ctl::Meet(other));
        }
        for &t in &ts {
            d.send(t, Ctl::Kick(tokens));
        }
        d
    }

    /// Carries out a membership change (as driver events); returns a node to wait for
    /// (a child to exist, a node to have stopped) before the next rounds, if `wait`.
    fn change(&mut self, c: Change) -> Option<(Tid, Change)> {
        match c {
            Change::Nothing => None,
            Change::SpawnOutside => {
                let t = self.spawn_outside();
                let peers = self.addressable();
                for _ in 0..2 {
                    let p = peers[self.rng.random_range(0..peers.len())];
                    self.send(t, Ctl::Meet(p));
                    self.send(p, Ctl::Meet(t));
                }
                self.send(t, Ctl::Kick(1));
                Some((t, c))
            }
            Change::SpawnChild => {
                let p = self.pick()?;
                Some((self.spawn_child(p), c))
            }
            Change::Stop => {
                if self.addressable().len() <= 3 {
                    return None;
                }
                let t = self.pick()?;
                self.stop(t);
                Some((t, c))
            }
        }
    }

    async fn settle(&self, what: Option<(Tid, Change)>) {
        match what {
            Some((t, Change::Stop)) => self.wait_stopped(t).await,
            Some((t, Change::SpawnChild)) => self.wait_addressable(t).await,
            _ => {}
        }
    }
}

/// One random dynamic run: membership changes between rounds (some awaited: a stop seen in
/// the log before the next round starts) and while rounds run.
async fn dynamic_run(plan: &Plan) -> Tally {
    let mut d = Driver::start_dynamic(plan.arbiters, plan.initial, 2, plan.seed);
    let pumps = Pumps::start(plan.pumps, &d.h, plan.seed, Duration::from_millis(1));
    for _ in 0..plan.batches {
        let before = random_change(&mut d.rng);
        let wait = d.rng.random_range(0..2) == 0;
        let what = d.change(before);
        if wait {
            d.settle(what).await;
        }
        let during = random_change(&mut d.rng);
        d.rounds(plan.overlap, |d| {
            d.change(during);
        })
        .await;
        let pause = d.rng.random_range(0..3);
        actix::clock::sleep(Duration::from_millis(pause)).await;
    }
    pumps.stop();
    d.finish(plan.overlap).await;
    d.history()
        .check_all(&d.rounds)
        .unwrap_or_else(|e| panic!("{plan:?}: {e}"))
}

/// A scripted dynamic run that does every kind of change at least once; returns the driver
/// (for the doctored-snapshot test) and the checks' tally.
async fn scripted_run() -> (Driver, Tally) {
    let mut d = Driver::start_dynamic(2, 4, 3, 7);
    let pumps = Pumps::start(2, &d.h, 7, Duration::from_millis(1));
    d.rounds(2, |_| {}).await;
    // A child of n0, awaited: it takes part in the traffic from its birth.
    let c = d.spawn_child(0);
    d.wait_addressable(c).await;
    d.rounds(2, |_| {}).await;
    // A grandchild, spawned while rounds run.
    d.rounds(3, |d| {
        d.spawn_child(c);
    })
    .await;
    // n1 stops; the next rounds start once its stop is in its log: it must not be in them,
    // and what the others still send it must not be in flight.
    d.stop(1);
    d.wait_stopped(1).await;
    d.rounds(2, |_| {}).await;
    actix::clock::sleep(Duration::from_millis(2)).await;
    // A node spawned from outside while rounds run, and a stop while rounds run: the child
    // `c` records the rounds, then stops. Its parent n0, on the same arbiter, is stalled
    // meanwhile, with an order to send `c` five tokens queued before the rounds' start; when
    // it wakes it sends them — before its cut — and they reach `c` after `c` stopped: in
    // flight, though `c` never handles them.
    d.send(0, Ctl::Stall(150));
    d.send(0, Ctl::KickTo(c, 5));
    d.until("n0 to stall", |d| {
        lock(&d.h.log(0)).iter().any(|e| {
            matches!(
                &e.ev,
                Ev::Cmd(Cmd {
                    ctl: Ctl::Stall(_),
                    ..
                })
            )
        })
    })
    .await;
    d.rounds(3, |d| {
        d.change(Change::SpawnOutside);
        d.stop(c);
    })
    .await;
    for _ in 0..4 {
        let ch = random_change(&mut d.rng);
        let what = d.change(ch);
        d.settle(what).await;
        d.rounds(2, |_| {}).await;
        actix::clock::sleep(Duration::from_millis(2)).await;
    }
    pumps.stop();
    d.finish(2).await;
    let tally = d
        .history()
        .check_all(&d.rounds)
        .unwrap_or_else(|e| panic!("scripted run: {e}"));
    (d, tally)
}

// ---------------------------------------------------------------------------------------
// The checker.
// ---------------------------------------------------------------------------------------

/// How a node came to be.
#[derive(Debug, Clone, Copy)]
enum Origin {
    /// Spawned by the driver's event number `at`.
    Driver { at: u64 },
    /// Spawned by `parent`'s event number `at`.
    Child { parent: Tid, at: u64 },
}

struct NodeHist {
    log: Vec<Logged>,
    id: NodeId,
    origin: Origin,
    stopped: bool,
    ingress: Option<String>,
    /// Replayed states by event index (a cache; replays go forward from the nearest one).
    replayed: RefCell<BTreeMap<u64, VcState>>,
}

/// One message's fate.
#[derive(Debug, Clone)]
struct MsgRec {
    to: Tid,
    send_idx: u64,
    /// `None`: never delivered (it reached its receiver after the receiver stopped).
    recv_idx: Option<u64>,
    msg: VcMsg,
}

/// The complete history of a finished run, indexed for checking.
struct History {
    nodes: BTreeMap<Tid, NodeHist>,
    by_id: BTreeMap<NodeId, Tid>,
    /// Every node message, by (sender, sender's seq).
    msgs: BTreeMap<(Tid, u64), MsgRec>,
    /// The driver's event count when the first round started (later spawns are "young").
    first_round: u64,
}

/// What the checks saw, summed over snapshots.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    runs: u64,
    snapshots: u64,
    /// In-flight messages verified.
    in_flight: u64,
    /// ... of which reached their receiver after it had stopped.
    in_flight_undelivered: u64,
    /// Nodes checked present / absent because they had stopped / absent because they did not
    /// exist yet at the cut.
    present: u64,
    gone: u64,
    unborn: u64,
    /// Children present in snapshots.
    children_present: u64,
    /// Snapshots with at least one node that stopped and one that was spawned after the
    /// group started.
    with_membership_change: u64,
    /// Messages never delivered because their receiver had stopped.
    dropped: u64,
    events: u64,
    nodes: u64,
}

impl std::ops::AddAssign for Tally {
    fn add_assign(&mut self, o: Tally) {
        self.runs += o.runs;
        self.snapshots += o.snapshots;
        self.in_flight += o.in_flight;
        self.in_flight_undelivered += o.in_flight_undelivered;
        self.present += o.present;
        self.gone += o.gone;
        self.unborn += o.unborn;
        self.children_present += o.children_present;
        self.with_membership_change += o.with_membership_change;
        self.dropped += o.dropped;
        self.events += o.events;
        self.nodes += o.nodes;
    }
}

impl std::fmt::Display for Tally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} snapshots checked ({} runs, {} nodes, {} events); {} in-flight messages \
             verified ({} reached a stopped receiver); nodes present {} (children {}), absent \
             after stopping {}, absent before existing {}; {} snapshots with a node gone and \
             one spawned; {} messages dropped by stopped receivers",
            self.snapshots,
            self.runs,
            self.nodes,
            self.events,
            self.in_flight,
            self.in_flight_undelivered,
            self.present,
            self.children_present,
            self.gone,
            self.unborn,
            self.with_membership_change,
            self.dropped
        )
    }
}

impl History {
    /// Indexes the logs and checks that they are well formed: indices 1, 2, 3, ... per node;
    /// a first `Born` event with the clock of the spawn; every message received at most once,
    /// as sent, by its addressee, with its clock merged; every message to a node that did not
    /// stop received.
    fn new(
        h: &Harness,
        spawned: &BTreeMap<Tid, u64>,
        ingress: &BTreeMap<Tid, Ingress<Cmd>>,
        first_round: u64,
    ) -> History {
        let logs: BTreeMap<Tid, Vec<Logged>> = lock(&h.logs)
            .iter()
            .map(|(&t, l)| (t, lock(l).clone()))
            .collect();
        let ids = lock(&h.ids).clone();
        // Children: the parent's Spawn event.
        let mut parents: BTreeMap<Tid, (Tid, u64)> = BTreeMap::new();
        for (&p, log) in &logs {
            for e in log {
                if let Ev::Cmd(Cmd {
                    ctl: Ctl::Spawn(c), ..
                }) = &e.ev
                {
                    assert!(
                        parents.insert(*c, (p, e.idx)).is_none(),
                        "n{c} spawned twice"
                    );
                }
            }
        }
        let mut nodes = BTreeMap::new();
        let mut msgs: BTreeMap<(Tid, u64), MsgRec> = BTreeMap::new();
        for (&t, log) in &logs {
            let origin = match (spawned.get(&t), parents.get(&t)) {
                (Some(&at), None) => Origin::Driver { at },
                (None, Some(&(parent, at))) => Origin::Child { parent, at },
                other => panic!("n{t}: spawned by {other:?}"),
            };
            let Some(first) = log.first() else {
                panic!("n{t}: no event at all");
            };
            let Ev::Born { init, .. } = &first.ev else {
                panic!("n{t}: first event {:?}", first.ev);
            };
            let expected_init = match origin {
                Origin::Driver { at } => Clock::from([(DRIVER, at)]),
                Origin::Child { parent, at } => logs[&parent][at as usize - 1].vc.clone(),
            };
            assert_eq!(
                init, &expected_init,
                "n{t}: starts from its spawner's clock"
            );
            let mut seq = 0;
            for (k, e) in log.iter().enumerate() {
                assert_eq!(e.idx, k as u64 + 1, "n{t}: event indices");
                assert_eq!(
                    at(&e.vc, t),
                    e.idx,
                    "n{t}: own clock entry is the event index"
                );
                assert!(
                    !is_stop(e) || k + 1 == log.len(),
                    "n{t}: events after its stop"
                );
                if let Ev::Send { to, msg } = &e.ev {
                    assert_eq!(msg.from, t);
                    assert_eq!(msg.vc, e.vc, "n{t}: a message carries the send clock");
                    assert_eq!(msg.seq, seq, "n{t}: send numbering");
                    seq += 1;
                    msgs.insert(
                        (t, msg.seq),
                        MsgRec {
                            to: *to,
                            send_idx: e.idx,
                            recv_idx: None,
                            msg: msg.clone(),
                        },
                    );
                }
            }
            let stopped = log.last().is_some_and(is_stop);
            nodes.insert(
                t,
                NodeHist {
                    log: log.clone(),
                    id: *ids.get(&t).unwrap_or_else(|| panic!("n{t}: no id")),
                    origin,
                    stopped,
                    ingress: ingress.contains_key(&t).then(|| format!("ctl-{t}")),
                    replayed: RefCell::default(),
                },
            );
        }
        for (&t, log) in &logs {
            for e in log {
                if let Ev::Recv { msg } = &e.ev {
                    let m = msgs
                        .get_mut(&(msg.from, msg.seq))
                        .unwrap_or_else(|| panic!("n{t} received a message never sent"));
                    assert_eq!(&m.msg, msg, "received as sent");
                    assert_eq!(m.to, t, "received by its addressee");
                    assert!(m.recv_idx.is_none(), "received twice");
                    assert!(
                        msg.vc.iter().all(|(p, v)| at(&e.vc, *p) >= *v),
                        "n{t}: the receive merged the message's clock"
                    );
                    m.recv_idx = Some(e.idx);
                }
            }
        }
        for ((f, s), m) in &msgs {
            assert!(
                m.recv_idx.is_some() || nodes[&m.to].stopped,
                "n{f} #{s} to n{} (which did not stop) was never received",
                m.to
            );
        }
        let by_id = nodes.iter().map(|(&t, n)| (n.id, t)).collect();
        History {
            nodes,
            by_id,
            msgs,
            first_round,
        }
    }

    /// The state of node `t` after its first `upto` events, rebuilt from its log.
    fn replay(&self, t: Tid, upto: u64) -> Result<VcState, String> {
        let node = &self.nodes[&t];
        let mut cache = node.replayed.borrow_mut();
        let (from, mut st) = match cache.range(..=upto).next_back() {
            Some((&k, s)) => (k, s.clone()),
            None => (0, VcState::default()),
        };
        for e in &node.log[from as usize..upto as usize] {
            match &e.ev {
                Ev::Born { init, peers } => {
                    st.vc = init.clone();
                    st.peers = peers.clone();
                }
                Ev::Send { to, .. } => {
                    st.seq += 1;
                    *st.sent.entry(*to).or_insert(0) += 1;
                }
                Ev::Recv { msg } => {
                    merge(&mut st.vc, &msg.vc);
                    apply_recv(&mut st, t, msg);
                }
                Ev::Cmd(cmd) => {
                    if let Some(vc) = &cmd.vc {
                        merge(&mut st.vc, vc);
                    }
                    apply_cmd(&mut st, t, cmd);
                }
            }
            *st.vc.entry(t).or_insert(0) += 1;
            if st.vc != e.vc {
                return Err(format!("n{t}: replayed clock differs at event {}", e.idx));
            }
        }
        cache.insert(upto, st.clone());
        Ok(st)
    }

    fn check_all(&self, rounds: &[RoundRec]) -> Result<Tally, String> {
        let mut tally = Tally {
            runs: 1,
            nodes: self.nodes.len() as u64,
            events: self.nodes.values().map(|n| n.log.len() as u64).sum(),
            dropped: self.msgs.values().filter(|m| m.recv_idx.is_none()).count() as u64,
            ..Tally::default()
        };
        for r in rounds {
            tally += self
                .check(r)
                .map_err(|e| format!("snapshot {}: {e}", r.snap.id))?;
        }
        Ok(tally)
    }

    /// Checks one snapshot; returns what it saw.
    fn check(&self, r: &RoundRec) -> Result<Tally, String> {
        let snap = &r.snap;
        let mut tally = Tally {
            snapshots: 1,
            ..Tally::default()
        };

        // The members and their cut events.
        let mut present: BTreeMap<Tid, (VcState, u64)> = BTreeMap::new();
        for node in &snap.nodes {
            let t: Tid = node
                .name
                .strip_prefix('n')
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| format!("unknown node {:?}", node.name))?;
            let hist = self
                .nodes
                .get(&t)
                .ok_or_else(|| format!("unknown node n{t}"))?;
            if node.id != hist.id || node.actor_type != "VcNode" {
                return Err(format!("n{t}: id {} / type {}", node.id, node.actor_type));
            }
            let st: VcState = snap
                .state::<VcNode>(&node.name)
                .map_err(|e| e.to_string())?;
            let c = at(&st.vc, t);
            if c == 0 || c > hist.log.len() as u64 {
                return Err(format!("n{t}: cut at event {c} of {}", hist.log.len()));
            }
            if is_stop(&hist.log[c as usize - 1]) {
                return Err(format!(
                    "n{t} is in the snapshot with a state after its stop"
                ));
            }
            if present.insert(t, (st, c)).is_some() {
                return Err(format!("n{t} twice"));
            }
        }

        // (a) The cut, closed under happened-before, with membership.
        let mut p: BTreeMap<Tid, u64> = self.nodes.keys().map(|&t| (t, 0)).collect();
        for (&t, (_, c)) in &present {
            p.insert(t, *c);
        }
        for (&t, &lo) in &r.lo {
            if lo > p[&t] {
                if let Some((_, c)) = present.get(&t) {
                    return Err(format!(
                        "n{t} recorded at event {c}, but its event {lo} happened before the \
                         round started"
                    ));
                }
                p.insert(t, lo);
            }
        }
        let mut pd = r.d_start;
        loop {
            let mut changed = false;
            for (&t, hist) in &self.nodes {
                if present.contains_key(&t) {
                    continue;
                }
                let len = hist.log.len() as u64;
                let pt = p[&t];
                let existed = pt > 0
                    || match hist.origin {
                        Origin::Driver { at } => at <= pd,
                        Origin::Child { parent, at } => at <= p[&parent],
                    };
                if existed && pt < len {
                    // Not in the snapshot, yet it existed at the cut: it must have left
                    // before its cut, and then all of its events are in the cut.
                    if !hist.stopped {
                        return Err(format!(
                            "n{t} is missing: it existed at the cut ({} of its events are in \
                             it, spawned {:?}) and never stopped",
                            pt, hist.origin
                        ));
                    }
                    p.insert(t, len);
                    changed = true;
                }
            }
            for (&t, &pt) in &p.clone() {
                if pt == 0 {
                    continue;
                }
                let vc = match present.get(&t) {
                    Some((st, _)) => &st.vc,
                    None => &self.nodes[&t].log[pt as usize - 1].vc,
                };
                for (&j, &v) in vc {
                    if j == DRIVER {
                        if v > pd {
                            pd = v;
                            changed = true;
                        }
                    } else if v > p[&j] {
                        if let Some((_, c)) = present.get(&j) {
                            return Err(format!(
                                "inconsistent cut: n{t}'s cut depends on event {v} of n{j}, \
                                 whose cut is at event {c}"
                            ));
                        }
                        p.insert(j, v);
                        changed = true;
                    }
                }
            }
            if !changed {
                break;
            }
        }
        if pd > r.d_end {
            return Err(format!(
                "the cut holds driver event {pd}, after the round's result ({})",
                r.d_end
            ));
        }
        for (&t, &pt) in &p {
            let hi = r.hi.get(&t).copied().unwrap_or(0);
            if pt > hi {
                return Err(format!(
                    "the cut holds event {pt} of n{t}, logged after the round's result ({hi})"
                ));
            }
            if !present.contains_key(&t) {
                if pt == 0 {
                    // Count only nodes the driver had already heard of.
                    if r.hi.contains_key(&t) {
                        tally.unborn += 1;
                    }
                } else {
                    tally.gone += 1;
                }
            }
        }
        tally.present = present.len() as u64;
        tally.children_present = present
            .keys()
            .filter(|t| matches!(self.nodes[t].origin, Origin::Child { .. }))
            .count() as u64;
        let young = present.keys().any(|t| match self.nodes[t].origin {
            Origin::Child { .. } => true,
            Origin::Driver { at } => at > self.first_round,
        });
        if tally.gone > 0 && young {
            tally.with_membership_change = 1;
        }

        // (b) In flight: per path, sent inside the cut, received outside it.
        type PathMsgs = (Vec<(u64, VcMsg)>, Vec<VcMsg>);
        let mut expected: BTreeMap<(Tid, Tid), PathMsgs> = BTreeMap::new();
        for ((from, _), m) in &self.msgs {
            let Some((_, c_to)) = present.get(&m.to) else {
                continue;
            };
            if m.send_idx > p[from] {
                continue;
            }
            let path = expected.entry((*from, m.to)).or_default();
            match m.recv_idx {
                Some(i) if i <= *c_to => {}
                Some(i) => path.0.push((i, m.msg.clone())),
                None => path.1.push(m.msg.clone()),
            }
        }
        let mut recorded: BTreeMap<(Tid, Tid), Vec<VcMsg>> = BTreeMap::new();
        for path in &snap.paths {
            let tid = |id: NodeId| {
                self.by_id
                    .get(&id)
                    .copied()
                    .ok_or_else(|| format!("in-flight messages on a path of unknown node {id}"))
            };
            let (f, t) = (tid(path.from)?, tid(path.to)?);
            if !present.contains_key(&t) {
                return Err(format!(
                    "{} message(s) in flight to n{t}, which is not in the snapshot",
                    path.messages.len()
                ));
            }
            if path.message_type != "VcMsg" {
                return Err(format!("n{f} -> n{t}: message type {}", path.message_type));
            }
            let msgs = recorded.entry((f, t)).or_default();
            for bytes in &path.messages {
                let m: VcMsg = rmp_serde::from_slice(bytes).map_err(|e| e.to_string())?;
                if m.from != f {
                    return Err(format!("n{f} -> n{t}: a message from n{}", m.from));
                }
                msgs.push(m);
            }
        }
        let paths: BTreeSet<(Tid, Tid)> = expected
            .iter()
            .filter(|(_, (a, b))| !a.is_empty() || !b.is_empty())
            .map(|(k, _)| *k)
            .chain(recorded.keys().copied())
            .collect();
        for (f, t) in paths {
            let got = recorded.remove(&(f, t)).unwrap_or_default();
            let (mut delivered, mut undelivered) = expected.remove(&(f, t)).unwrap_or_default();
            delivered.sort_by_key(|(i, _)| *i);
            let n_delivered = delivered.len();
            let ok = got.len() == n_delivered + undelivered.len()
                && got[..n_delivered]
                    .iter()
                    .zip(&delivered)
                    .all(|(g, (_, e))| g == e)
                && {
                    let mut rest = got[n_delivered..].to_vec();
                    rest.sort_by_key(|m| m.seq);
                    undelivered.sort_by_key(|m| m.seq);
                    rest == undelivered
                };
            if !ok {
                return Err(format!(
                    "path n{f} -> n{t}: recorded in flight {:?}, expected {:?} then (after the \
                     receiver stopped) {:?}",
                    got.iter().map(|m| m.seq).collect::<Vec<_>>(),
                    delivered.iter().map(|(_, m)| m.seq).collect::<Vec<_>>(),
                    undelivered.iter().map(|m| m.seq).collect::<Vec<_>>()
                ));
            }
            tally.in_flight += got.len() as u64;
            tally.in_flight_undelivered += undelivered.len() as u64;
        }

        // (c) States by replay; counters and ingress offsets by counting.
        let mut ingress_allowed = BTreeSet::new();
        for (&t, (st, c)) in &present {
            let rebuilt = self.replay(t, *c)?;
            if *st != rebuilt {
                return Err(format!(
                    "n{t}: recorded state differs from the replay up to event {c}:\n  \
                     recorded {st:?}\n  replayed {rebuilt:?}"
                ));
            }
            let node = snap.node_by_id(self.nodes[&t].id).ok_or("lost node")?;
            let sent: u64 = rebuilt.sent.values().sum();
            let received: u64 = rebuilt.received.values().sum();
            if (node.sent, node.received, node.external) != (sent, received, rebuilt.external) {
                return Err(format!(
                    "n{t}: recorded sent/received/external {}/{}/{}, the log says {sent}/\
                     {received}/{} up to event {c}",
                    node.sent, node.received, node.external, rebuilt.external
                ));
            }
            if let Some(name) = &self.nodes[&t].ingress {
                // A dynamic node's ingress is made just after its spawn (before the driver's
                // next event): a round that completed in between has no entry for it, and
                // then no ingress message can have been handled inside the cut.
                let offset = snap.ingress_offset(name).ok();
                let made_before_start = match self.nodes[&t].origin {
                    Origin::Driver { at } => at < r.d_start,
                    Origin::Child { .. } => false,
                };
                if offset.unwrap_or(0) != rebuilt.ingress || (offset.is_none() && made_before_start)
                {
                    return Err(format!(
                        "n{t}: ingress offset {offset:?}, {} ingress events in the cut",
                        rebuilt.ingress
                    ));
                }
                ingress_allowed.insert(name.clone());
            }
        }
        if let Some(i) = snap
            .ingress
            .iter()
            .find(|i| !ingress_allowed.contains(&i.name))
        {
            return Err(format!(
                "ingress offset recorded for {:?}, whose node is not in the snapshot",
                i.name
            ));
        }
        Ok(tally)
    }
}

// ---------------------------------------------------------------------------------------
// Tests.
// ---------------------------------------------------------------------------------------

#[actix::test]
async fn ring_one_arbiter() {
    declared("ring(5), 1 thread", 5, ring(5), 0).await;
}

#[actix::test]
async fn ring_three_arbiters() {
    declared("ring(6), 3 arbiters", 6, ring(6), 3).await;
}

#[actix::test]
async fn mesh_two_arbiters() {
    declared("mesh(5), 2 arbiters", 5, mesh(5), 2).await;
}

#[actix::test]
async fn random_graphs_with_cycles() {
    for (seed, n, arbiters) in [(1, 7, 2), (2, 8, 3), (3, 6, 0)] {
        let edges = random_graph(n, seed);
        let name = format!(
            "random(n={n}, seed={seed}, {} edges), {arbiters} arbiters",
            edges.len()
        );
        declared(&name, n, edges, arbiters).await;
    }
}

/// Every kind of membership change at least once, with traffic from several threads.
#[actix::test]
async fn spawned_children_and_stopped_nodes() {
    let (_, t) = scripted_run().await;
    eprintln!("scripted dynamic run: {t}");
    assert!(t.in_flight > 0, "no snapshot caught a message in flight");
    assert!(t.children_present > 0, "no child in any snapshot");
    assert!(t.gone > 0, "no snapshot without a stopped node");
    assert!(t.unborn > 0, "no snapshot taken before a node existed");
    assert!(t.with_membership_change > 0, "{t}");
    assert!(
        t.in_flight_undelivered > 0,
        "nothing in flight to a node that then stopped"
    );
}

fn env_count(names: &[&str], default: u64) -> u64 {
    names
        .iter()
        .find_map(|n| std::env::var(n).ok()?.parse().ok())
        .unwrap_or(default)
}

/// Random dynamic runs; `VC_RUNS` (or `PROPTEST_CASES`) of them, from seed `VC_SEED`.
#[actix::test]
async fn random_dynamic_groups() {
    let runs = env_count(&["VC_RUNS", "PROPTEST_CASES"], 4);
    let first = env_count(&["VC_SEED"], 1);
    let started = Instant::now();
    let mut total = Tally::default();
    for seed in first..first + runs {
        let plan = Plan::random(seed);
        total += dynamic_run(&plan).await;
    }
    eprintln!(
        "random dynamic groups (seeds {first}..{}): {total}; {:.1} s",
        first + runs,
        started.elapsed().as_secs_f64()
    );
    assert!(total.in_flight > 0, "{total}");
    assert!(total.gone + total.children_present > 0, "{total}");
}

/// The checker is not a rubber stamp: each kind of doctored snapshot is rejected.
#[actix::test]
async fn checker_rejects_doctored_snapshots() {
    let (d, _) = scripted_run().await;
    let history = d.history();
    let rounds = &d.rounds;
    let rejects = |what: &str, r: &RoundRec| -> String {
        match history.check(r) {
            Ok(_) => panic!("{what}: a doctored snapshot was accepted"),
            Err(e) => {
                eprintln!("{what}: rejected: {e}");
                e
            }
        }
    };
    let encode = |st: &VcState| serde_bytes::ByteBuf::from(rmp_serde::to_vec_named(st).unwrap());

    // A snapshot taken while messages were in flight.
    let busy = rounds
        .iter()
        .find(|r| r.snap.in_flight_count() > 1)
        .expect("some snapshot caught messages in flight");
    history.check(busy).expect("the real snapshot passes");

    // A message lost from a path, a message duplicated: (b) fails.
    let mut lost = busy.clone();
    let path = lost
        .snap
        .paths
        .iter_mut()
        .find(|p| !p.messages.is_empty())
        .unwrap();
    path.messages.remove(0);
    let e = rejects("lost message", &lost);
    assert!(e.contains("in flight"), "{e}");
    let mut dup = busy.clone();
    let path = dup
        .snap
        .paths
        .iter_mut()
        .find(|p| !p.messages.is_empty())
        .unwrap();
    let first = path.messages[0].clone();
    path.messages.push(first);
    let e = rejects("duplicated message", &dup);
    assert!(e.contains("in flight"), "{e}");

    // One node's state from after the cut (its last state): rejected.
    let mut late = busy.clone();
    let (i, t) = late
        .snap
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (i, n.name[1..].parse::<Tid>().unwrap()))
        .max_by_key(|(_, t)| history.nodes[t].log.len())
        .unwrap();
    let len = history.nodes[&t].log.len() as u64;
    let upto = if history.nodes[&t].stopped {
        len - 1
    } else {
        len
    };
    late.snap.nodes[i].state = encode(&history.replay(t, upto).unwrap());
    rejects("late state", &late);

    // A state that no prefix of the log produces: (c) fails.
    let mut forged = busy.clone();
    let mut st: VcState = rmp_serde::from_slice(&forged.snap.nodes[0].state).unwrap();
    st.digest ^= 1;
    forged.snap.nodes[0].state = encode(&st);
    let e = rejects("forged state", &forged);
    assert!(e.contains("replay"), "{e}");

    // A node that existed at the cut and never stopped, left out: (a) fails.
    let mut missing = busy.clone();
    let k = missing
        .snap
        .nodes
        .iter()
        .position(|n| !history.nodes[&n.name[1..].parse::<Tid>().unwrap()].stopped)
        .expect("a node that never stopped");
    missing.snap.nodes.remove(k);
    missing.snap.paths.retain(|p| p.to != busy.snap.nodes[k].id);
    missing
        .snap
        .ingress
        .retain(|i| i.to != busy.snap.nodes[k].id);
    let e = rejects("missing node", &missing);
    assert!(e.contains("missing") || e.contains("inconsistent"), "{e}");

    // n1 stopped, and its stop was in its log before these rounds started.
    let n1_len = history.nodes[&1].log.len() as u64;
    let gone = rounds
        .iter()
        .find(|r| r.snap.node("n1").is_err() && r.lo.get(&1) == Some(&n1_len))
        .expect("a round after n1's stop was seen");
    history.check(gone).expect("the real snapshot passes");
    let n1_before = rounds
        .iter()
        .rev()
        .find_map(|r| r.snap.node("n1").ok().cloned())
        .expect("n1 was in an earlier snapshot");

    // The stopped node present (with its last recorded state): (a) fails.
    let mut ghost = gone.clone();
    ghost.snap.nodes.push(n1_before.clone());
    ghost.snap.nodes.sort_by_key(|n| n.id);
    let e = rejects("stopped node present", &ghost);
    assert!(e.contains("n1"), "{e}");

    // A message to the stopped node in flight (one that was really sent to it): (b) fails.
    let to_n1 = history
        .msgs
        .values()
        .find(|m| m.to == 1)
        .expect("a message to n1");
    let mut to_gone = gone.clone();
    let mut path = rounds
        .iter()
        .flat_map(|r| r.snap.paths.iter())
        .next()
        .expect("some path")
        .clone();
    path.from = history.nodes[&to_n1.msg.from].id;
    path.to = n1_before.id;
    path.messages = vec![serde_bytes::ByteBuf::from(
        rmp_serde::to_vec_named(&to_n1.msg).unwrap(),
    )];
    to_gone.snap.paths.push(path);
    let e = rejects("in flight to a stopped node", &to_gone);
    assert!(e.contains("not in the snapshot"), "{e}");

    // A child in a snapshot taken before it existed (with a state from a later one).
    let (early, child) = rounds
        .iter()
        .find_map(|r| {
            let c = history.nodes.iter().find(|(t, n)| {
                matches!(n.origin, Origin::Child { .. })
                    && r.snap.node(&format!("n{t}")).is_err()
                    && !r.hi.contains_key(t)
            })?;
            Some((r, *c.0))
        })
        .expect("a round before a child was spawned");
    let child_later = rounds
        .iter()
        .find_map(|r| r.snap.node(&format!("n{child}")).ok().cloned())
        .expect("the child in a later snapshot");
    let mut unborn = early.clone();
    unborn.snap.nodes.push(child_later);
    unborn.snap.nodes.sort_by_key(|n| n.id);
    rejects("a node before its spawn", &unborn);
}
