//! A token network for tests: nodes pass uniquely numbered tokens along channels. Each
//! actor keeps its own books (what it sent and received on each channel, which tokens it
//! holds), so a snapshot can be checked against what the test knows, not against the
//! library's bookkeeping.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use actix::prelude::*;
use actix_snapshot::{GlobalSnapshot, GroupBuilder, Ingress, NodeId, Out, Snapshot, SnapshotGroup};
use serde::{Deserialize, Serialize};

/// A token on a channel. `seq` is the sender's own count on that channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Message)]
#[rtype(result = "()")]
pub struct Tok {
    pub id: u64,
    pub hops_left: u32,
    pub from: u32,
    pub seq: u64,
}

/// A command from outside: inject token `id` with that many hops.
#[derive(Debug, Clone, Serialize, Deserialize, Message)]
#[rtype(result = "()")]
pub struct Inject {
    pub id: u64,
    pub hops: u32,
}

/// Stop the receiving actor.
#[derive(Debug, Clone, Serialize, Deserialize, Message)]
#[rtype(result = "()")]
pub struct Halt;

/// Block the receiving actor's thread for that many milliseconds.
#[derive(Debug, Clone, Serialize, Deserialize, Message)]
#[rtype(result = "()")]
pub struct Stall(pub u64);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct NodeBooks {
    /// Per target node: tokens sent to it.
    pub sent: BTreeMap<u32, u64>,
    /// Per source node: tokens received from it.
    pub received: BTreeMap<u32, u64>,
    /// Tokens that finished their hops here.
    pub held: BTreeSet<u64>,
    /// Tokens injected here from outside.
    pub injected: BTreeSet<u64>,
    /// Messages of any kind handled.
    pub handled: u64,
}

#[derive(Snapshot)]
#[snapshot(state = books, messages(Tok, Inject, Halt, Stall))]
pub struct TokNode {
    pub me: u32,
    pub outs: Vec<Out<Tok>>,
    pub books: NodeBooks,
    next_out: usize,
}

impl TokNode {
    fn forward(&mut self, id: u64, hops_left: u32) {
        if hops_left == 0 || self.outs.is_empty() {
            self.books.held.insert(id);
            return;
        }
        let k = (self.next_out + id as usize) % self.outs.len();
        self.next_out = self.next_out.wrapping_add(1);
        let out = &mut self.outs[k];
        let target = out.target().0 as u32;
        let seq = self.books.sent.entry(target).or_insert(0);
        out.send(Tok {
            id,
            hops_left: hops_left - 1,
            from: self.me,
            seq: *seq,
        });
        *seq += 1;
    }
}

impl Actor for TokNode {
    type Context = Context<Self>;
}

impl Handler<Tok> for TokNode {
    type Result = ();
    fn handle(&mut self, t: Tok, _ctx: &mut Context<Self>) {
        self.books.handled += 1;
        let r = self.books.received.entry(t.from).or_insert(0);
        assert_eq!(
            *r, t.seq,
            "FIFO broken on channel {} -> {}",
            t.from, self.me
        );
        *r += 1;
        self.forward(t.id, t.hops_left);
    }
}

impl Handler<Inject> for TokNode {
    type Result = ();
    fn handle(&mut self, i: Inject, _ctx: &mut Context<Self>) {
        self.books.handled += 1;
        self.books.injected.insert(i.id);
        self.forward(i.id, i.hops);
    }
}

impl Handler<Halt> for TokNode {
    type Result = ();
    fn handle(&mut self, _: Halt, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

impl Handler<Stall> for TokNode {
    type Result = ();
    fn handle(&mut self, Stall(ms): Stall, _ctx: &mut Context<Self>) {
        std::thread::sleep(Duration::from_millis(ms));
    }
}

/// A built token network.
pub struct Net {
    pub group: SnapshotGroup,
    pub inject: Vec<Ingress<Inject>>,
    pub halt: Vec<Ingress<Halt>>,
    pub stall: Vec<Ingress<Stall>>,
    pub edges: Vec<(u32, u32)>,
    pub n: usize,
}

/// Per node: the inject, halt and stall ingress handles.
pub type Handles = (
    Vec<Ingress<Inject>>,
    Vec<Ingress<Halt>>,
    Vec<Ingress<Stall>>,
);

/// Declares a token network with `n` nodes and the given directed edges on `b`.
pub fn declare(b: &mut GroupBuilder, n: usize, edges: &[(u32, u32)]) -> Handles {
    let nodes: Vec<_> = (0..n).map(|i| b.node::<TokNode>(format!("n{i}"))).collect();
    let mut outs: Vec<Vec<Out<Tok>>> = (0..n).map(|_| Vec::new()).collect();
    for &(f, t) in edges {
        outs[f as usize].push(b.channel(nodes[f as usize], nodes[t as usize]));
    }
    let inject = nodes
        .iter()
        .enumerate()
        .map(|(i, &r)| b.ingress::<Inject, _>(format!("inject{i}"), r))
        .collect();
    let halt = nodes
        .iter()
        .enumerate()
        .map(|(i, &r)| b.ingress::<Halt, _>(format!("halt{i}"), r))
        .collect();
    let stall = nodes
        .iter()
        .enumerate()
        .map(|(i, &r)| b.ingress::<Stall, _>(format!("stall{i}"), r))
        .collect();
    for (i, (r, outs)) in nodes.into_iter().zip(outs).enumerate() {
        b.actor(r, move |books: Option<NodeBooks>| TokNode {
            me: i as u32,
            outs,
            books: books.unwrap_or_default(),
            next_out: 0,
        });
    }
    (inject, halt, stall)
}

/// Builds and starts a token network.
pub fn start(n: usize, edges: &[(u32, u32)], arbiters: usize) -> Net {
    let mut b = SnapshotGroup::builder();
    b.arbiters(arbiters);
    let (inject, halt, stall) = declare(&mut b, n, edges);
    let group = b.start().expect("valid topology");
    Net {
        group,
        inject,
        halt,
        stall,
        edges: edges.to_vec(),
        n,
    }
}

pub fn ring(n: usize) -> Vec<(u32, u32)> {
    (0..n as u32).map(|i| (i, (i + 1) % n as u32)).collect()
}

pub fn mesh(n: usize) -> Vec<(u32, u32)> {
    let mut e = Vec::new();
    for i in 0..n as u32 {
        for j in 0..n as u32 {
            if i != j {
                e.push((i, j));
            }
        }
    }
    e
}

/// Checks a snapshot of a token network against the actors' own books:
/// - every link's recorded tokens are exactly those its sender counted as sent and its
///   receiver had not yet counted as received, in send order;
/// - every token injected before the cut (per the nodes' own books) is in exactly one
///   place: held by a node or in flight, and no other token is anywhere;
/// - each node's ingress offset equals the number of injections in its books.
///
/// Returns (in-flight tokens, tokens in the system).
pub fn verify(snap: &GlobalSnapshot, n: usize, edges: &[(u32, u32)]) -> (usize, usize) {
    let books: Vec<NodeBooks> = (0..n)
        .map(|i| {
            snap.state::<TokNode>(&format!("n{i}"))
                .expect("state decodes")
        })
        .collect();
    let mut seen: BTreeMap<u64, usize> = BTreeMap::new();
    let mut in_flight = 0;
    for &(f, t) in edges {
        let toks: Vec<Tok> = snap
            .path_messages(&format!("n{f}"), &format!("n{t}"))
            .expect("path decodes");
        let sent = books[f as usize].sent.get(&t).copied().unwrap_or(0);
        let recv = books[t as usize].received.get(&f).copied().unwrap_or(0);
        assert!(
            recv <= sent,
            "inconsistent cut: n{t} received {recv} from n{f}, which had sent only {sent}"
        );
        let seqs: Vec<u64> = toks.iter().map(|t| t.seq).collect();
        let expected: Vec<u64> = (recv..sent).collect();
        assert_eq!(seqs, expected, "channel n{f} -> n{t}: recorded messages");
        for tok in &toks {
            assert_eq!(tok.from, f);
            *seen.entry(tok.id).or_default() += 1;
        }
        in_flight += toks.len();
    }
    for b in &books {
        for id in &b.held {
            *seen.entry(*id).or_default() += 1;
        }
    }
    let dup: Vec<_> = seen.iter().filter(|(_, c)| **c > 1).collect();
    assert!(dup.is_empty(), "tokens in two places: {dup:?}");
    let found: BTreeSet<u64> = seen.keys().copied().collect();
    let injected: BTreeSet<u64> = books
        .iter()
        .flat_map(|b| b.injected.iter().copied())
        .collect();
    assert_eq!(found, injected, "tokens lost or invented");
    for (i, b) in books.iter().enumerate() {
        assert_eq!(
            snap.ingress_offset(&format!("inject{i}"))
                .expect("ingress recorded"),
            b.injected.len() as u64,
            "ingress offset of n{i}"
        );
    }
    (in_flight, injected.len())
}

/// Which node ids exist in the snapshot, by name order.
pub fn ids(snap: &GlobalSnapshot) -> Vec<NodeId> {
    snap.nodes.iter().map(|n| n.id).collect()
}

/// A real snapshot of an `n`-node token ring with tokens in flight: `per_node` endless tokens
/// are injected at every node, and snapshots are taken until one catches a token on a
/// channel. The snapshot is verified against the actors' books before it is returned.
pub async fn ring_snapshot_in_flight(n: usize, per_node: u64) -> GlobalSnapshot {
    let net = start(n, &ring(n), 0);
    for (i, ing) in net.inject.iter().enumerate() {
        for k in 0..per_node {
            ing.send(Inject {
                id: i as u64 * 1_000 + k,
                hops: u32::MAX,
            })
            .expect("node running");
        }
    }
    for _ in 0..100 {
        let snap = net.group.snapshot().await.expect("round completes");
        if snap.in_flight_count() > 0 {
            net.group.shutdown();
            verify(&snap, n, &ring(n));
            return snap;
        }
    }
    panic!("no snapshot caught a token in flight");
}
