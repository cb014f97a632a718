//! Snapshots checked against vector clocks kept by the test's own actors.
//!
//! Nothing here trusts the library's bookkeeping. Each test actor keeps a vector clock
//! (Fidge/Mattern): every local event ticks its own entry, every message carries the
//! sender's clock, every receive merges it. The actor logs each event it performs — with
//! its index (= its own clock entry after the event), its clock and the message — into a
//! test-side log. Its snapshot state includes its clock, so the *cut event* of node `i`
//! in a snapshot is `c_i = state_i.vc[i]`: the number of events `i` had performed when the
//! library recorded it. After the traffic has stopped, every snapshot is checked against
//! the complete logs:
//!
//! (a) the cut is consistent: `state_i.vc[j] <= c_j` for every pair, and every message
//!     received inside the cut (receive index `<= c_i`) was sent inside it (its send index,
//!     the sender's entry of the clock it carries, is `<= c_j`, and is the index the
//!     sender logged for it);
//! (b) each channel's recorded messages are exactly the messages sent inside the cut and
//!     received outside it, in send order, equal field by field;
//! (c) each node's recorded state equals the state the test rebuilds by replaying the node's
//!     log up to its cut event, and each ingress offset equals the number of ingress events
//!     inside the cut.
//!
//! It runs on rings, full meshes and random graphs with cycles, on one and several
//! arbiters, with overlapping rounds of both initiation modes. A last test feeds the
//! checker doctored snapshots to show that it does reject a wrong cut.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use actix_snapshot::{
    GlobalSnapshot, Initiation, NodeId, Out, Receive, SnapCtx, SnapshotGroup, SnapshotOptions,
    Snapshottable,
};
use futures::future::join_all;
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

/// A message between test actors. `vc` is the sender's clock right after the send event,
/// so `vc[from]` is the send event's index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct VcMsg {
    from: u32,
    /// The sender's count of messages on this channel before this one.
    seq: u64,
    vc: Vec<u64>,
    payload: u64,
}

/// Commands from the test, through one ingress per node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
enum Ctl {
    /// Put this many tokens into circulation.
    Kick(u32),
    /// From now on keep every token received instead of passing it on.
    Drain,
}

/// A test actor's state, as recorded in snapshots.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct VcState {
    /// Vector clock; `vc[me]` counts this node's events.
    vc: Vec<u64>,
    /// Order-sensitive fold of everything received.
    digest: u64,
    /// Per target: messages sent.
    sent: BTreeMap<u32, u64>,
    /// Per source: messages received.
    received: BTreeMap<u32, u64>,
    /// Tokens kept after `Drain`.
    held: u64,
    /// Ingress messages handled.
    ingress: u64,
    draining: bool,
}

impl VcState {
    fn new(n: usize) -> Self {
        VcState {
            vc: vec![0; n],
            digest: 0,
            sent: BTreeMap::new(),
            received: BTreeMap::new(),
            held: 0,
            ingress: 0,
            draining: false,
        }
    }
}

/// One logged event.
#[derive(Debug, Clone)]
enum Ev {
    Send { to: u32, msg: VcMsg },
    Recv { msg: VcMsg },
    Ingress(Ctl),
}

#[derive(Debug, Clone)]
struct Logged {
    /// Index of the event on its node, from 1.
    idx: u64,
    /// The node's clock right after the event.
    vc: Vec<u64>,
    ev: Ev,
}

type Log = Arc<Mutex<Vec<Logged>>>;

fn lock(log: &Log) -> std::sync::MutexGuard<'_, Vec<Logged>> {
    log.lock().unwrap_or_else(PoisonError::into_inner)
}

fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x
}

/// Folds a received message into a digest; shared by the actor and the replay.
fn fold(digest: u64, msg: &VcMsg) -> u64 {
    digest
        .wrapping_mul(31)
        .wrapping_add(msg.payload ^ (u64::from(msg.from) << 48))
}

struct VcNode {
    me: usize,
    outs: Vec<Out<VcMsg>>,
    st: VcState,
    log: Log,
}

impl VcNode {
    /// A new local event: tick the own clock entry, return the event's index.
    fn tick(&mut self) -> u64 {
        self.st.vc[self.me] += 1;
        self.st.vc[self.me]
    }

    fn record(&self, idx: u64, ev: Ev) {
        lock(&self.log).push(Logged {
            idx,
            vc: self.st.vc.clone(),
            ev,
        });
    }

    /// A send event: one token to an out channel picked from the digest.
    fn send_token(&mut self) {
        let idx = self.tick();
        let k = (mix(self.st.digest ^ idx) % self.outs.len() as u64) as usize;
        let to = self.outs[k].target().0;
        let seq = self.st.sent.entry(to).or_insert(0);
        let msg = VcMsg {
            from: self.me as u32,
            seq: *seq,
            vc: self.st.vc.clone(),
            payload: mix(self.st.digest.wrapping_add(idx)),
        };
        *seq += 1;
        self.record(
            idx,
            Ev::Send {
                to,
                msg: msg.clone(),
            },
        );
        self.outs[k].send(msg);
    }
}

impl Snapshottable for VcNode {
    type State = VcState;
    fn snapshot_state(&self) -> VcState {
        self.st.clone()
    }
}

impl Receive<VcMsg> for VcNode {
    fn receive(&mut self, msg: VcMsg, _ctx: &mut SnapCtx<Self>) {
        for (mine, theirs) in self.st.vc.iter_mut().zip(&msg.vc) {
            *mine = (*mine).max(*theirs);
        }
        let idx = self.tick();
        let r = self.st.received.entry(msg.from).or_insert(0);
        assert_eq!(*r, msg.seq, "FIFO broken on {} -> {}", msg.from, self.me);
        *r += 1;
        self.st.digest = fold(self.st.digest, &msg);
        if self.st.draining {
            self.st.held += 1;
        }
        let draining = self.st.draining;
        self.record(idx, Ev::Recv { msg });
        if !draining {
            self.send_token();
        }
    }
}

impl Receive<Ctl> for VcNode {
    fn receive(&mut self, ctl: Ctl, _ctx: &mut SnapCtx<Self>) {
        let idx = self.tick();
        self.st.ingress += 1;
        if ctl == Ctl::Drain {
            self.st.draining = true;
        }
        self.record(idx, Ev::Ingress(ctl.clone()));
        if let Ctl::Kick(n) = ctl {
            for _ in 0..n {
                self.send_token();
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Topologies and running.
// ---------------------------------------------------------------------------------------

fn ring(n: usize) -> Vec<(u32, u32)> {
    (0..n as u32).map(|i| (i, (i + 1) % n as u32)).collect()
}

fn mesh(n: usize) -> Vec<(u32, u32)> {
    let n = n as u32;
    (0..n)
        .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
        .collect()
}

/// A random directed graph with cycles: a ring through a random order of the nodes (so
/// every node can reach every other and has an outgoing edge), plus random extra edges.
fn random_graph(n: usize, seed: u64) -> Vec<(u32, u32)> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut order: Vec<u32> = (0..n as u32).collect();
    for i in (1..n).rev() {
        order.swap(i, rng.random_range(0..=i));
    }
    let mut edges: BTreeSet<(u32, u32)> = (0..n).map(|i| (order[i], order[(i + 1) % n])).collect();
    for i in 0..n as u32 {
        for j in 0..n as u32 {
            if i != j && rng.random_range(0..100) < 25 {
                edges.insert((i, j));
            }
        }
    }
    edges.into_iter().collect()
}

struct Net {
    group: SnapshotGroup,
    ctl: Vec<actix_snapshot::Ingress<Ctl>>,
    logs: Vec<Log>,
    edges: Vec<(u32, u32)>,
    n: usize,
}

fn start(n: usize, edges: &[(u32, u32)], arbiters: usize) -> Net {
    let mut b = SnapshotGroup::builder();
    b.arbiters(arbiters);
    let nodes: Vec<_> = (0..n).map(|i| b.node::<VcNode>(format!("n{i}"))).collect();
    let mut outs: Vec<Vec<Out<VcMsg>>> = (0..n).map(|_| Vec::new()).collect();
    for &(f, t) in edges {
        outs[f as usize].push(b.channel(nodes[f as usize], nodes[t as usize]));
    }
    assert!(
        outs.iter().all(|o| !o.is_empty()),
        "every node needs an out edge"
    );
    let ctl = nodes
        .iter()
        .enumerate()
        .map(|(i, &r)| b.ingress::<Ctl, _>(format!("ctl{i}"), r))
        .collect();
    let logs: Vec<Log> = (0..n).map(|_| Arc::new(Mutex::new(Vec::new()))).collect();
    for (i, (r, outs)) in nodes.into_iter().zip(outs).enumerate() {
        let log = Arc::clone(&logs[i]);
        b.actor(r, move |st: Option<VcState>| VcNode {
            me: i,
            outs,
            st: st.unwrap_or_else(|| VcState::new(n)),
            log,
        });
    }
    Net {
        group: b.start().expect("valid topology"),
        ctl,
        logs,
        edges: edges.to_vec(),
        n,
    }
}

/// Runs traffic, takes `batches` batches of `overlap` concurrent rounds (initiation
/// alternating between all nodes and one node), drains the network, waits until every
/// message has been received, and returns the snapshots and the complete logs.
async fn run(net: &Net, tokens: u32, batches: usize, overlap: usize) -> Vec<GlobalSnapshot> {
    for c in &net.ctl {
        c.send(Ctl::Kick(tokens)).expect("node running");
    }
    let mut snaps = Vec::new();
    let mut k = 0u32;
    let mut rounds = |count: usize| {
        let futs: Vec<_> = (0..count)
            .map(|_| {
                k += 1;
                let initiation = if k.is_multiple_of(2) {
                    Initiation::AllNodes
                } else {
                    Initiation::Node(NodeId(k % net.n as u32))
                };
                net.group
                    .snapshot_with(SnapshotOptions::default().initiation(initiation))
            })
            .collect();
        join_all(futs)
    };
    for _ in 0..batches {
        for s in rounds(overlap).await {
            snaps.push(s.expect("round completes"));
        }
        actix::clock::sleep(Duration::from_millis(3)).await;
    }
    // Drain while rounds run: nodes stop passing tokens on at different moments.
    for c in &net.ctl {
        c.send(Ctl::Drain).expect("node running");
    }
    for s in rounds(overlap).await {
        snaps.push(s.expect("round completes"));
    }
    wait_quiet(net).await;
    // One more round at rest: nothing may be in flight.
    let last = net.group.snapshot().await.expect("round completes");
    assert_eq!(last.in_flight_count(), 0, "in flight after quiescence");
    snaps.push(last);
    snaps
}

/// Waits until every node has drained and every message sent has been received.
async fn wait_quiet(net: &Net) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        // Once every node has logged its Drain, nobody sends any more: the send count is
        // final, and the network is quiet when the receive count reaches it.
        let drained = net.logs.iter().all(|l| {
            lock(l)
                .iter()
                .any(|e| matches!(e.ev, Ev::Ingress(Ctl::Drain)))
        });
        if drained {
            let count = |f: fn(&Ev) -> bool| -> usize {
                net.logs
                    .iter()
                    .map(|l| lock(l).iter().filter(|e| f(&e.ev)).count())
                    .sum()
            };
            let sends = count(|e| matches!(e, Ev::Send { .. }));
            let recvs = count(|e| matches!(e, Ev::Recv { .. }));
            if sends == recvs {
                return;
            }
        }
        assert!(Instant::now() < deadline, "network did not quiesce");
        actix::clock::sleep(Duration::from_millis(5)).await;
    }
}

// ---------------------------------------------------------------------------------------
// The checker.
// ---------------------------------------------------------------------------------------

/// Where one message went: its send and receive event indices.
#[derive(Debug, Clone)]
struct Delivery {
    send_idx: u64,
    recv_idx: u64,
    msg: VcMsg,
}

/// The complete history of a finished run, indexed for checking.
struct History {
    n: usize,
    logs: Vec<Vec<Logged>>,
    /// Per channel (from, to): its messages in send order.
    channels: BTreeMap<(u32, u32), Vec<Delivery>>,
}

impl History {
    /// Indexes the logs; checks that they are well formed (indices 1, 2, 3, ... per node,
    /// every message received exactly once, in FIFO order, with the clock it was sent with).
    fn new(net: &Net) -> Self {
        let logs: Vec<Vec<Logged>> = net.logs.iter().map(|l| lock(l).clone()).collect();
        let mut channels: BTreeMap<(u32, u32), Vec<Delivery>> = BTreeMap::new();
        for (i, log) in logs.iter().enumerate() {
            for (k, e) in log.iter().enumerate() {
                assert_eq!(e.idx, k as u64 + 1, "n{i}: event indices");
                assert_eq!(e.vc[i], e.idx, "n{i}: own clock entry is the event index");
                if let Ev::Send { to, msg } = &e.ev {
                    assert_eq!(&msg.vc, &e.vc, "n{i}: a message carries the send clock");
                    let ch = channels.entry((i as u32, *to)).or_default();
                    assert_eq!(msg.seq, ch.len() as u64, "n{i} -> n{to}: send numbering");
                    ch.push(Delivery {
                        send_idx: e.idx,
                        recv_idx: u64::MAX,
                        msg: msg.clone(),
                    });
                }
            }
        }
        for (i, log) in logs.iter().enumerate() {
            let mut last: BTreeMap<u32, u64> = BTreeMap::new();
            for e in log {
                if let Ev::Recv { msg } = &e.ev {
                    let d = channels
                        .get_mut(&(msg.from, i as u32))
                        .and_then(|c| c.get_mut(msg.seq as usize))
                        .unwrap_or_else(|| panic!("n{i} received a message never sent"));
                    assert_eq!(&d.msg, msg, "received as sent");
                    assert_eq!(d.recv_idx, u64::MAX, "received twice");
                    d.recv_idx = e.idx;
                    let prev = last.insert(msg.from, msg.seq);
                    assert_eq!(prev.map_or(0, |p| p + 1), msg.seq, "FIFO");
                }
            }
        }
        for ((f, t), ch) in &channels {
            assert!(
                ch.iter().all(|d| d.recv_idx != u64::MAX),
                "n{f} -> n{t}: a message was never received"
            );
        }
        History {
            n: net.n,
            logs,
            channels,
        }
    }

    /// The state of node `i` after replaying its first `upto` events, rebuilt by the test.
    fn replay(&self, i: usize, upto: u64) -> VcState {
        let mut st = VcState::new(self.n);
        for e in self.logs[i].iter().take(upto as usize) {
            match &e.ev {
                Ev::Send { to, .. } => {
                    st.vc[i] += 1;
                    *st.sent.entry(*to).or_insert(0) += 1;
                }
                Ev::Recv { msg } => {
                    for (mine, theirs) in st.vc.iter_mut().zip(&msg.vc) {
                        *mine = (*mine).max(*theirs);
                    }
                    st.vc[i] += 1;
                    *st.received.entry(msg.from).or_insert(0) += 1;
                    st.digest = fold(st.digest, msg);
                    if st.draining {
                        st.held += 1;
                    }
                }
                Ev::Ingress(ctl) => {
                    st.vc[i] += 1;
                    st.ingress += 1;
                    if *ctl == Ctl::Drain {
                        st.draining = true;
                    }
                }
            }
            assert_eq!(st.vc, e.vc, "n{i}: replayed clock at event {}", e.idx);
        }
        st
    }

    /// Checks one snapshot; returns the number of in-flight messages it holds.
    fn check(&self, snap: &GlobalSnapshot, edges: &[(u32, u32)]) -> Result<usize, String> {
        let states: Vec<VcState> = (0..self.n)
            .map(|i| snap.state::<VcNode>(&format!("n{i}")))
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())?;
        let cut: Vec<u64> = states.iter().enumerate().map(|(i, s)| s.vc[i]).collect();
        for (i, &c) in cut.iter().enumerate() {
            if c > self.logs[i].len() as u64 {
                return Err(format!(
                    "n{i}: cut at event {c}, but only {} events",
                    self.logs[i].len()
                ));
            }
        }

        // (a) consistency by vector clocks.
        for (i, s) in states.iter().enumerate() {
            for (j, &c) in cut.iter().enumerate() {
                if s.vc[j] > c {
                    return Err(format!(
                        "n{i} knows {} events of n{j}, whose cut is at {c}",
                        s.vc[j]
                    ));
                }
            }
            for e in self.logs[i].iter().take(cut[i] as usize) {
                if let Ev::Recv { msg } = &e.ev {
                    let j = msg.from as usize;
                    let send_idx = msg.vc[j];
                    let logged = self.channels[&(msg.from, i as u32)][msg.seq as usize].send_idx;
                    if send_idx != logged {
                        return Err(format!(
                            "n{j} -> n{i} #{}: clock says {send_idx}, log {logged}",
                            msg.seq
                        ));
                    }
                    if send_idx > cut[j] {
                        return Err(format!(
                            "n{i} received n{j}'s message #{} (sent at event {send_idx}) inside the cut; n{j}'s cut is at {}",
                            msg.seq, cut[j]
                        ));
                    }
                }
            }
        }

        // (b) channel states: sent inside the cut, received outside it, in order.
        let mut in_flight = 0;
        for &(f, t) in edges {
            let recorded: Vec<VcMsg> = snap
                .channel_messages(&format!("n{f}"), &format!("n{t}"))
                .map_err(|e| e.to_string())?;
            let expected: Vec<VcMsg> = self
                .channels
                .get(&(f, t))
                .map(|ch| {
                    ch.iter()
                        .filter(|d| d.send_idx <= cut[f as usize] && d.recv_idx > cut[t as usize])
                        .map(|d| d.msg.clone())
                        .collect()
                })
                .unwrap_or_default();
            if recorded != expected {
                return Err(format!(
                    "channel n{f} -> n{t}: recorded seqs {:?}, expected {:?}",
                    recorded.iter().map(|m| m.seq).collect::<Vec<_>>(),
                    expected.iter().map(|m| m.seq).collect::<Vec<_>>()
                ));
            }
            in_flight += recorded.len();
        }

        // (c) states by replay, and ingress offsets.
        for (i, s) in states.iter().enumerate() {
            let rebuilt = self.replay(i, cut[i]);
            if *s != rebuilt {
                return Err(format!(
                    "n{i}: recorded state differs from the replay up to event {}:\n  recorded {s:?}\n  replayed {rebuilt:?}",
                    cut[i]
                ));
            }
            let ingress_events = self.logs[i]
                .iter()
                .take(cut[i] as usize)
                .filter(|e| matches!(e.ev, Ev::Ingress(_)))
                .count() as u64;
            let offset = snap
                .ingress_offset(&format!("ctl{i}"))
                .map_err(|e| e.to_string())?;
            if offset != ingress_events {
                return Err(format!(
                    "n{i}: ingress offset {offset}, {ingress_events} ingress events in the cut"
                ));
            }
        }
        Ok(in_flight)
    }
}

/// Runs one configuration and checks every snapshot; returns how many were checked.
async fn scenario(name: &str, n: usize, edges: Vec<(u32, u32)>, arbiters: usize) -> usize {
    let net = start(n, &edges, arbiters);
    let snaps = run(&net, 3, 8, 4).await;
    let history = History::new(&net);
    let mut in_flight = 0;
    let mut nonempty_cuts = 0;
    for snap in &snaps {
        in_flight += history
            .check(snap, &net.edges)
            .unwrap_or_else(|e| panic!("{name}: snapshot {}: {e}", snap.id));
        let cut: Vec<u64> = snap
            .nodes
            .iter()
            .enumerate()
            .map(|(i, _)| snap.state::<VcNode>(&format!("n{i}")).unwrap().vc[i])
            .collect();
        if cut.iter().any(|&c| c > 0) {
            nonempty_cuts += 1;
        }
    }
    let events: usize = history.logs.iter().map(Vec::len).sum();
    eprintln!(
        "{name}: {} snapshots checked, {in_flight} in-flight messages verified, {events} events logged",
        snaps.len()
    );
    // The checks must not be vacuous: traffic ran while rounds ran.
    assert!(
        in_flight > 0,
        "{name}: no snapshot caught a message in flight"
    );
    assert!(nonempty_cuts > 0, "{name}: every cut was empty");
    net.group.shutdown();
    snaps.len()
}

#[actix::test]
async fn ring_one_arbiter() {
    scenario("ring(5), 1 thread", 5, ring(5), 0).await;
}

#[actix::test]
async fn ring_three_arbiters() {
    scenario("ring(6), 3 arbiters", 6, ring(6), 3).await;
}

#[actix::test]
async fn mesh_one_arbiter() {
    scenario("mesh(4), 1 thread", 4, mesh(4), 0).await;
}

#[actix::test]
async fn mesh_two_arbiters() {
    scenario("mesh(5), 2 arbiters", 5, mesh(5), 2).await;
}

#[actix::test]
async fn random_graphs_with_cycles() {
    let mut total = 0;
    for (seed, n, arbiters) in [(1, 7, 2), (2, 8, 3), (3, 6, 0)] {
        let edges = random_graph(n, seed);
        total += scenario(
            &format!(
                "random(n={n}, seed={seed}, {} edges), {arbiters} arbiters",
                edges.len()
            ),
            n,
            edges,
            arbiters,
        )
        .await;
    }
    assert!(total > 0);
}

/// The checker is not a rubber stamp: doctored snapshots are rejected by the right check.
#[actix::test]
async fn checker_rejects_doctored_snapshots() {
    let n = 4;
    let edges = mesh(n);
    let net = start(n, &edges, 2);
    let snaps = run(&net, 3, 4, 2).await;
    let history = History::new(&net);
    // A snapshot taken while messages were in flight.
    let snap = snaps
        .iter()
        .find(|s| s.in_flight_count() > 0)
        .expect("some snapshot caught messages in flight");
    history
        .check(snap, &edges)
        .expect("the real snapshot passes");

    // A message lost from a channel: (b) fails.
    let mut lost = snap.clone();
    let ch = lost
        .channels
        .iter_mut()
        .find(|c| !c.messages.is_empty())
        .expect("a channel with messages");
    ch.messages.remove(0);
    let err = history.check(&lost, &edges).unwrap_err();
    assert!(err.contains("channel"), "{err}");

    // One node recorded later than the others (its state from a later event): the cut is
    // inconsistent or a channel state is wrong — either way it must be rejected.
    let mut late = snap.clone();
    let i = (0..n)
        .max_by_key(|&i| history.logs[i].len())
        .expect("nodes");
    let later = history.replay(i, history.logs[i].len() as u64);
    *late.nodes[i].state = rmp_serde::to_vec_named(&later).expect("encodes");
    assert!(history.check(&late, &edges).is_err(), "late state accepted");

    // A state that no prefix of the log produces: (c) fails.
    let mut forged = snap.clone();
    let mut st: VcState = snap.state::<VcNode>("n0").expect("decodes");
    st.digest ^= 1;
    *forged.nodes[0].state = rmp_serde::to_vec_named(&st).expect("encodes");
    let err = history.check(&forged, &edges).unwrap_err();
    assert!(err.contains("replay"), "{err}");
    net.group.shutdown();
}
