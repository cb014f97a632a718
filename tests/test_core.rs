//! End-to-end behaviour of snapshot rounds on token networks. Every snapshot is checked
//! against the actors' own books (see `common::verify`), not against the library.
//!
//! Every round starts at all nodes (the second edition has no one-node initiation); colors
//! carry it to messages in flight. A node that stops leaves the group and later rounds go on
//! without it; a node that panics fails only the rounds it owed a record.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use actix::prelude::*;
use actix_snapshot::{
    BuildError, GlobalSnapshot, NodeId, Out, Snapshot, SnapshotError, SnapshotGroup,
    SnapshotOptions,
};
use common::*;
use futures::future::join_all;
use serde::{Deserialize, Serialize};

const FOREVER: u32 = u32::MAX;

async fn settle() {
    actix::clock::sleep(Duration::from_millis(20)).await;
}

fn inject_tokens(net: &Net, per_node: u64, hops: u32) {
    for (i, ing) in net.inject.iter().enumerate() {
        for k in 0..per_node {
            ing.send(Inject {
                id: i as u64 * 1_000_000 + k,
                hops,
            })
            .expect("node running");
        }
    }
}

#[actix::test]
async fn two_nodes_capture_in_flight_tokens_exactly_once() {
    let net = start(2, &[(0, 1), (1, 0)], 0);
    inject_tokens(&net, 20, FOREVER);
    let mut in_flight_seen = 0;
    for _ in 0..20 {
        let snap = net.group.snapshot().await.expect("round completes");
        let (in_flight, tokens) = verify(&snap, net.n, &net.edges);
        in_flight_seen += in_flight;
        assert!(tokens <= 40);
        settle().await;
    }
    // Tokens circulate forever, so some must have been caught on the wire.
    assert!(
        in_flight_seen > 0,
        "no snapshot recorded an in-flight token"
    );
    net.group.shutdown();
}

#[actix::test]
async fn ring_on_several_arbiters() {
    let n = 7;
    let net = start(n, &ring(n), 3);
    inject_tokens(&net, 10, FOREVER);
    let mut total_in_flight = 0;
    for _ in 0..15 {
        let snap = net.group.snapshot().await.expect("round completes");
        total_in_flight += verify(&snap, n, &net.edges).0;
        settle().await;
    }
    assert!(total_in_flight > 0);
    net.group.shutdown();
}

#[actix::test]
async fn full_mesh_on_several_arbiters() {
    let n = 5;
    let net = start(n, &mesh(n), 2);
    inject_tokens(&net, 8, FOREVER);
    let mut ids = Vec::new();
    for _ in 0..20 {
        let snap = net.group.snapshot().await.expect("round completes");
        verify(&snap, n, &net.edges);
        ids.push(snap.id);
        settle().await;
    }
    assert_eq!(
        ids,
        (1..=20).collect::<Vec<_>>(),
        "rounds are numbered 1, 2, 3 …"
    );
    net.group.shutdown();
}

#[actix::test]
async fn nodes_without_incoming_links_are_recorded() {
    // n0 -> n1 -> n2, and n3 -> n2: no message ever reaches n3, whose record comes from the
    // round's start alone (the first edition's one-node markers could not reach it).
    let edges = [(0, 1), (1, 2), (3, 2)];
    let net = start(4, &edges, 0);
    inject_tokens(&net, 5, 2);
    let opts = SnapshotOptions::default().timeout(Duration::from_secs(5));
    let snap = net
        .group
        .snapshot_with(opts)
        .await
        .expect("round completes");
    assert_eq!(ids(&snap), (0..4).map(NodeId).collect::<Vec<_>>());
    verify(&snap, 4, &edges);
    net.group.shutdown();
}

#[actix::test]
async fn finite_traffic_ends_with_every_token_held_and_nothing_in_flight() {
    let n = 6;
    let net = start(n, &mesh(n), 2);
    inject_tokens(&net, 30, 25);
    // Wait until the books show every token at rest.
    let mut last = None;
    for _ in 0..200 {
        let snap = net.group.snapshot().await.expect("round completes");
        let (in_flight, tokens) = verify(&snap, n, &net.edges);
        if in_flight == 0 && tokens == 180 {
            let held: usize = (0..n)
                .map(|i| snap.state::<TokNode>(&format!("n{i}")).unwrap().held.len())
                .sum();
            last = Some(held);
            break;
        }
        settle().await;
    }
    assert_eq!(last, Some(180), "tokens did not come to rest");
    net.group.shutdown();
}

#[actix::test]
async fn actors_that_received_nothing_keep_their_initial_state() {
    // n2 has no incoming link and no traffic; n3 is isolated.
    let edges = [(0, 1), (1, 0), (2, 0)];
    let net = start(4, &edges, 0);
    inject_tokens_only(&net, 0, 10);
    let snap = net.group.snapshot().await.expect("round completes");
    verify(&snap, 4, &edges);
    assert_eq!(
        snap.state::<TokNode>("n2").unwrap(),
        NodeBooks::default(),
        "a node that received nothing"
    );
    assert_eq!(snap.state::<TokNode>("n3").unwrap(), NodeBooks::default());
    assert!(snap.path_messages::<Tok>("n2", "n0").unwrap().is_empty());
    let quiet = [NodeId(2), NodeId(3)];
    assert!(
        snap.paths
            .iter()
            .all(|p| !quiet.contains(&p.from) && !quiet.contains(&p.to)),
        "no path from or to a silent node: {:?}",
        snap.paths
    );
    for name in ["n2", "n3"] {
        let node = snap.node(name).unwrap();
        assert_eq!(
            (node.sent, node.received, node.external),
            (0, 0, 0),
            "{name}"
        );
    }
    net.group.shutdown();
}

fn inject_tokens_only(net: &Net, node: usize, count: u64) {
    for k in 0..count {
        net.inject[node]
            .send(Inject {
                id: k,
                hops: FOREVER,
            })
            .unwrap();
    }
}

#[actix::test]
async fn overlapping_rounds_are_each_consistent() {
    let n = 5;
    let net = start(n, &mesh(n), 2);
    inject_tokens(&net, 10, FOREVER);
    for _ in 0..5 {
        let rounds = (0..6).map(|_| net.group.snapshot());
        let snaps = join_all(rounds).await;
        let mut ids = Vec::new();
        for s in snaps {
            let s = s.expect("round completes");
            verify(&s, n, &net.edges);
            ids.push(s.id);
        }
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 6, "each round has its own id");
    }
    let st = net.group.stats();
    assert_eq!(st.completed, 30);
    assert_eq!(st.in_progress, 0);
    net.group.shutdown();
}

#[actix::test]
async fn stuck_actor_times_out_naming_only_it_and_later_rounds_work() {
    let n = 3;
    // One node per arbiter: only n1's thread is blocked.
    let net = start(n, &ring(n), 3);
    inject_tokens(&net, 3, FOREVER);
    net.stall[1].send(Stall(2000)).unwrap();
    settle().await;
    let opts = SnapshotOptions::default().timeout(Duration::from_millis(600));
    let err = net
        .group
        .snapshot_with(opts)
        .await
        .expect_err("n1 is stuck");
    match &err {
        SnapshotError::Timeout { missing, .. } => {
            assert_eq!(missing, &vec!["n1".to_string()], "{err}");
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    // Once n1 is unstuck, the aborted round must not disturb later rounds (the first of
    // them waits for n1 to wake up).
    for _ in 0..5 {
        let snap = net.group.snapshot().await.expect("round completes");
        verify(&snap, n, &net.edges);
    }
    let st = net.group.stats();
    assert_eq!((st.timed_out, st.completed), (1, 5));
    net.group.shutdown();
}

/// What a snapshot taken after n2 left a 3-node mesh holds, checked against the books of the
/// two live nodes. n2 held the tokens `gone_with_n2` (injected with no hops) and forwarded
/// every other token it received while alive. Returns (tokens absorbed by n2's tombstone, what
/// n2 had sent to n0 and n1 in all).
fn verify_after_n2_left(snap: &GlobalSnapshot, gone_with_n2: &BTreeSet<u64>) -> (u64, u64) {
    let names: Vec<&str> = snap.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["n0", "n1"], "n2 left the group");
    assert!(snap.node("n2").is_err());
    assert!(
        snap.ingress_offset("inject2").is_err(),
        "n2's ingress left with it"
    );
    assert!(
        snap.paths.iter().all(|p| p.to != NodeId(2)),
        "nothing is in flight to a node that is gone: {:?}",
        snap.paths
    );
    let books: Vec<NodeBooks> = (0..2)
        .map(|i| snap.state::<TokNode>(&format!("n{i}")).unwrap())
        .collect();
    let mut seen: BTreeMap<u64, usize> = BTreeMap::new();
    // Links between the live nodes: exactly what was sent and not yet received, in order.
    for (f, t) in [(0u32, 1u32), (1, 0)] {
        let toks: Vec<Tok> = snap
            .path_messages(&format!("n{f}"), &format!("n{t}"))
            .unwrap();
        let sent = books[f as usize].sent.get(&t).copied().unwrap_or(0);
        let recv = books[t as usize].received.get(&f).copied().unwrap_or(0);
        let seqs: Vec<u64> = toks.iter().map(|t| t.seq).collect();
        assert_eq!(seqs, (recv..sent).collect::<Vec<_>>(), "link n{f} -> n{t}");
        for tok in toks {
            *seen.entry(tok.id).or_default() += 1;
        }
    }
    // Links from n2: what it sent before it stopped and the receiver had not received yet,
    // right after what the receiver did receive.
    let mut forwarded = 0;
    for t in [0u32, 1] {
        // n2 is not in the snapshot, so the path is looked up by id.
        let toks: Vec<Tok> = snap
            .path_messages_by_id(NodeId(2), NodeId(t as u64))
            .unwrap();
        let recv = books[t as usize].received.get(&2).copied().unwrap_or(0);
        let seqs: Vec<u64> = toks.iter().map(|t| t.seq).collect();
        assert_eq!(
            seqs,
            (recv..recv + toks.len() as u64).collect::<Vec<_>>(),
            "link n2 -> n{t}"
        );
        forwarded += recv + toks.len() as u64;
        for tok in toks {
            assert_eq!(tok.from, 2);
            *seen.entry(tok.id).or_default() += 1;
        }
    }
    for b in &books {
        for id in &b.held {
            *seen.entry(*id).or_default() += 1;
        }
    }
    let dup: Vec<_> = seen.iter().filter(|(_, c)| **c > 1).collect();
    assert!(dup.is_empty(), "tokens in two places: {dup:?}");
    let found: BTreeSet<u64> = seen.keys().copied().collect();
    assert!(
        found.is_disjoint(gone_with_n2),
        "tokens n2 held are gone with it"
    );
    let injected: BTreeSet<u64> = books
        .iter()
        .flat_map(|b| b.injected.iter().copied())
        .collect();
    assert!(found.is_subset(&injected), "tokens invented");
    // Every token sent to n2 that n2 did not forward while alive was dropped by its tombstone.
    let sent_to_n2: u64 = books
        .iter()
        .map(|b| b.sent.get(&2).copied().unwrap_or(0))
        .sum();
    let absorbed = sent_to_n2
        .checked_sub(forwarded)
        .expect("n2 forwarded more than it was sent");
    assert_eq!(
        found.len() as u64,
        injected.len() as u64 - absorbed,
        "every injected token is held, in flight, or was dropped at n2"
    );
    for (i, b) in books.iter().enumerate() {
        assert_eq!(
            snap.ingress_offset(&format!("inject{i}")).unwrap(),
            b.injected.len() as u64
        );
    }
    (absorbed, forwarded)
}

#[actix::test]
async fn a_stopped_node_leaves_and_later_rounds_succeed_without_it() {
    let edges = mesh(3);
    let net = start(3, &edges, 2);
    // n2 holds six tokens of its own; tokens circulate through all three nodes.
    let held_by_n2: BTreeSet<u64> = (900..906).collect();
    for &id in &held_by_n2 {
        net.inject[2].send(Inject { id, hops: 0 }).unwrap();
    }
    for k in 0..20 {
        net.inject[0]
            .send(Inject {
                id: k,
                hops: FOREVER,
            })
            .unwrap();
        net.inject[1]
            .send(Inject {
                id: 1000 + k,
                hops: FOREVER,
            })
            .unwrap();
    }
    let before = net.group.snapshot().await.expect("all three alive");
    verify(&before, 3, &edges);
    assert_eq!(
        before.state::<TokNode>("n2").unwrap().held,
        held_by_n2,
        "n2 holds its own tokens and forwards the others"
    );

    net.halt[2].send(Halt).unwrap();
    let mut closed = false;
    for _ in 0..250 {
        if net.halt[2].send(Halt).is_err() {
            closed = true;
            break;
        }
        settle().await;
    }
    assert!(closed, "n2 did not stop");

    // Rounds go on without n2 while n0 and n1 keep sending to it (its tombstone drops those
    // messages and counts them, so the rounds balance).
    let mut forwarded_by_n2 = None;
    let mut absorbed = 0;
    for k in 0..10u64 {
        for j in 0..4 {
            let id = 5000 + 10 * k + j;
            net.inject[(j % 2) as usize]
                .send(Inject { id, hops: FOREVER })
                .unwrap();
        }
        let snap = net
            .group
            .snapshot()
            .await
            .expect("a stopped node does not fail rounds");
        let (a, f) = verify_after_n2_left(&snap, &held_by_n2);
        assert!(a >= absorbed, "tokens do not come back from n2's tombstone");
        absorbed = a;
        // n2 sends nothing after it stopped: every snapshot sees the same total from it.
        assert_eq!(*forwarded_by_n2.get_or_insert(f), f);
    }
    assert!(absorbed > 0, "some tokens were sent to n2 after it stopped");
    let st = net.group.stats();
    assert_eq!((st.completed, st.failed, st.timed_out), (11, 0, 0));
    assert_eq!(st.nodes, 2);
    net.group.shutdown();
}

/// An actor that panics on `Explode(true)` and counts `Explode(false)`; on `Pass` it sends
/// `Explode(false)` to every peer.
#[derive(Snapshot)]
#[snapshot(state = got, messages(Explode, Pass))]
struct Bomb {
    peers: Vec<Out<Explode>>,
    got: u64,
}

/// Whether the receiving `Bomb` panics (`true`) or counts the message (`false`).
#[derive(Debug, Clone, Serialize, Deserialize, Message)]
#[rtype(result = "()")]
struct Explode(bool);

#[derive(Debug, Clone, Serialize, Deserialize, Message)]
#[rtype(result = "()")]
struct Pass;

impl Actor for Bomb {
    type Context = Context<Self>;
}
impl Handler<Explode> for Bomb {
    type Result = ();
    fn handle(&mut self, Explode(explode): Explode, _ctx: &mut Context<Self>) {
        if explode {
            panic!("the test asked this actor to panic");
        }
        self.got += 1;
    }
}
impl Handler<Pass> for Bomb {
    type Result = ();
    fn handle(&mut self, _: Pass, _ctx: &mut Context<Self>) {
        for p in &mut self.peers {
            p.send(Explode(false));
        }
    }
}

fn bomb() -> Bomb {
    Bomb {
        peers: Vec::new(),
        got: 0,
    }
}

fn names(snap: &GlobalSnapshot) -> Vec<&str> {
    snap.nodes.iter().map(|n| n.name.as_str()).collect()
}

#[actix::test]
async fn a_panicking_node_fails_only_the_rounds_it_owed() {
    // Every node on the test's own arbiter: nothing runs until the test awaits, so the order
    // of each mailbox is decided here.
    let mut b = SnapshotGroup::builder();
    let x = b.node::<Bomb>("bomb");
    let y = b.node::<Bomb>("calm");
    let z = b.node::<Bomb>("bomb2");
    let peers = vec![b.channel(y, x), b.channel(y, z)];
    let fuse = b.ingress::<Explode, _>("fuse", x);
    let fuse2 = b.ingress::<Explode, _>("fuse2", z);
    let pass = b.ingress::<Pass, _>("pass", y);
    let mut xy: Out<Explode> = b.channel(x, y);
    b.actor(x, |_| bomb());
    b.actor(y, move |_| Bomb { peers, got: 0 });
    b.actor(z, |_| bomb());
    let group = b.start().unwrap();
    let first = group.snapshot().await.expect("all alive");
    assert_eq!(names(&first), ["bomb", "calm", "bomb2"]);

    // The fuse is ahead of both rounds' starts in bomb's mailbox: bomb owes both a record
    // and panics first. Both fail, naming it.
    fuse.send(Explode(true)).unwrap();
    let owed = join_all([group.snapshot(), group.snapshot()]).await;
    for (k, r) in owed.into_iter().enumerate() {
        match r {
            Err(SnapshotError::NodePanicked {
                round,
                node,
                reason,
            }) => {
                assert_eq!(round, first.id + 1 + k as u64);
                assert_eq!(node, "bomb");
                assert!(reason.contains("the test asked"), "{reason}");
            }
            other => panic!("expected NodePanicked, got {other:?}"),
        }
    }

    // Later rounds go on without bomb, also while calm sends to bomb's tombstone.
    pass.send(Pass).unwrap();
    xy.send(Explode(false)); // from outside to calm; never a panic
    let mut later = None;
    for _ in 0..100 {
        let s = group.snapshot().await.expect("bomb is gone, not failing");
        assert_eq!(names(&s), ["calm", "bomb2"]);
        let got2 = s.state::<Bomb>("bomb2").unwrap();
        let in_flight2 = s.path_messages::<Explode>("calm", "bomb2").unwrap().len() as u64;
        assert_eq!(got2 + in_flight2, 1, "calm's message to bomb2, once");
        if got2 == 1 && s.state::<Bomb>("calm").unwrap() == 1 {
            later = Some(s);
            break;
        }
        settle().await;
    }
    let later = later.expect("calm's and bomb2's messages were handled");

    // A round bomb2 recorded before panicking does not fail: its start is ahead of the fuse.
    let mut round = Box::pin(group.snapshot());
    assert!(futures::poll!(&mut round).is_pending());
    fuse2.send(Explode(true)).unwrap();
    let recorded = round
        .await
        .expect("bomb2 recorded this round before it panicked");
    assert_eq!(recorded.id, later.id + 1);
    assert_eq!(names(&recorded), ["calm", "bomb2"]);
    assert_eq!(recorded.state::<Bomb>("bomb2").unwrap(), 1);
    let last = group.snapshot().await.expect("bomb2 left");
    assert_eq!(names(&last), ["calm"]);

    let st = group.stats();
    assert_eq!(st.failed, 2, "only the two rounds bomb owed failed");
    assert_eq!(st.nodes, 1);
    group.shutdown();
}

#[actix::test]
async fn builder_errors_are_typed() {
    let mut b = SnapshotGroup::builder();
    let _ = b.node::<Bomb>("a");
    let _ = b.node::<Bomb>("a");
    assert_eq!(
        b.start().unwrap_err(),
        BuildError::DuplicateNode("a".into())
    );

    let mut b = SnapshotGroup::builder();
    let _ = b.node::<Bomb>("lonely");
    assert_eq!(
        b.start().unwrap_err(),
        BuildError::MissingActor("lonely".into())
    );

    let mut b = SnapshotGroup::builder();
    let x = b.node::<Bomb>("x");
    b.actor(x, |_| bomb());
    b.actor(x, |_| bomb());
    assert_eq!(
        b.start().unwrap_err(),
        BuildError::DuplicateActor("x".into())
    );

    let mut b = SnapshotGroup::builder();
    let x = b.node::<Bomb>("x");
    let _i1 = b.ingress::<Explode, _>("in", x);
    let _i2 = b.ingress::<Pass, _>("in", x);
    b.actor(x, |_| bomb());
    assert_eq!(
        b.start().unwrap_err(),
        BuildError::DuplicateIngress("in".into())
    );

    let mut other = SnapshotGroup::builder();
    let foreign = other.node::<Bomb>("f");
    let mut b = SnapshotGroup::builder();
    let mine = b.node::<Bomb>("m");
    let _out: Out<Explode> = b.channel(mine, foreign);
    b.actor(mine, |_| bomb());
    assert!(matches!(b.start(), Err(BuildError::ForeignNode(_))));

    let mut b = SnapshotGroup::builder();
    b.arbiters(1);
    let x = b.node_on::<Bomb>("x", 3);
    b.actor(x, |_| bomb());
    assert_eq!(
        b.start().unwrap_err(),
        BuildError::NoSuchArbiter {
            node: "x".into(),
            arbiter: 3,
            arbiters: 1
        }
    );

    // Without arbiters of its own, arbiter 0 is the caller's.
    let mut b = SnapshotGroup::builder();
    let x = b.node_on::<Bomb>("x", 0);
    b.actor(x, |_| bomb());
    b.start().expect("arbiter 0 is the caller's").shutdown();
}

#[test]
fn starting_outside_a_system_is_an_error() {
    let mut b = SnapshotGroup::builder();
    let x = b.node::<Bomb>("x");
    b.actor(x, |_| bomb());
    assert_eq!(b.start().unwrap_err(), BuildError::NoSystem);
    assert_eq!(SnapshotGroup::new().unwrap_err(), BuildError::NoSystem);
}

#[actix::test]
async fn restore_round_trip_gives_identical_snapshot() {
    let n = 4;
    let edges = mesh(n);
    let net = start(n, &edges, 2);
    inject_tokens(&net, 10, FOREVER);
    settle().await;
    // Take snapshots until one has messages in flight.
    let mut snap = None;
    for _ in 0..50 {
        let s = net.group.snapshot().await.unwrap();
        if s.in_flight_count() > 0 {
            snap = Some(s);
            break;
        }
    }
    let snap = snap.expect("a snapshot with tokens in flight");
    net.group.shutdown();
    verify(&snap, n, &edges);

    // Rebuild the same topology from the snapshot, and snapshot it again before any new
    // traffic can be injected: tokens in flight were put back in the mailboxes and keep
    // circulating, so compare the token sets, the counters and verify consistency again.
    let mut b = SnapshotGroup::builder();
    b.arbiters(2);
    let (inject, _h, _s) = declare(&mut b, n, &edges);
    let group = b.restore(&snap).expect("restore");
    for (i, ing) in inject.iter().enumerate() {
        assert_eq!(
            ing.next_offset(),
            snap.ingress_offset(&format!("inject{i}")).unwrap()
        );
    }
    let again = group.snapshot().await.expect("round completes");
    assert_eq!(
        again.id,
        snap.id + 1,
        "round ids continue after the snapshot"
    );
    assert_eq!(ids(&again), ids(&snap), "node ids kept");
    let (_, tokens_before) = verify(&snap, n, &edges);
    let (_, tokens_after) = verify(&again, n, &edges);
    assert_eq!(tokens_before, tokens_after);
    group.shutdown();
}

#[actix::test]
async fn restore_checks_nodes_not_links() {
    let net = start(3, &ring(3), 0);
    inject_tokens(&net, 4, FOREVER);
    let snap = net.group.snapshot().await.unwrap();
    net.group.shutdown();
    verify(&snap, 3, &ring(3));

    // A node of the snapshot that is neither declared nor restorable.
    let mut b = SnapshotGroup::builder();
    declare(&mut b, 2, &ring(2));
    match b.restore(&snap) {
        Err(BuildError::UnknownType(m)) => {
            assert!(m.contains("\"n2\"") && m.contains("TokNode"), "{m}")
        }
        other => panic!("expected an unknown type, got {other:?}"),
    }

    // A declared node that is not in the snapshot had left before its cut: it comes back as
    // a tombstone, in no later snapshot, and its ingress is closed.
    let mut b = SnapshotGroup::builder();
    let (inject, _h, _s) = declare(&mut b, 4, &ring(3));
    let group = b.restore(&snap).expect("n3 comes back as a tombstone");
    assert!(inject[3].send(Inject { id: 99, hops: 0 }).is_err());
    let again = group.snapshot().await.expect("round completes");
    group.shutdown();
    assert!(again.node("n3").is_err());
    assert_eq!(ids(&again), ids(&snap));
    assert_eq!(verify(&again, 3, &ring(3)).1, verify(&snap, 3, &ring(3)).1);

    // Links are not part of a snapshot: a ring restores into a mesh of the same nodes, the
    // tokens in flight go back to the nodes they were sent to, and the tokens are conserved.
    let mut b = SnapshotGroup::builder();
    declare(&mut b, 3, &mesh(3));
    let group = b.restore(&snap).expect("same nodes, other links");
    let again = group.snapshot().await.expect("round completes");
    group.shutdown();
    let (_, before) = verify(&snap, 3, &ring(3));
    let (_, after) = verify(&again, 3, &mesh(3));
    assert_eq!(before, after);
}

#[actix::test]
async fn a_self_loop_with_endless_traffic_does_not_starve_its_arbiter() {
    // actix drains a mailbox without yielding; a node that keeps feeding itself would
    // otherwise starve the group's timers (same arbiter) and every other node.
    // If the arbiter is starved, no timer of this test can fire either: a watchdog thread
    // turns the hang into a failure.
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = done.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(60));
        if !flag.load(std::sync::atomic::Ordering::SeqCst) {
            eprintln!("self-loop test: the arbiter is starved (no progress in 60 s)");
            std::process::exit(101);
        }
    });
    let edges = [(1, 1), (0, 1)];
    let net = start(2, &edges, 0);
    net.inject[1]
        .send(Inject {
            id: 1,
            hops: FOREVER,
        })
        .unwrap();
    net.inject[0].send(Inject { id: 2, hops: 1 }).unwrap();
    settle().await;
    for _ in 0..5 {
        let snap = actix::clock::timeout(Duration::from_secs(20), net.group.snapshot())
            .await
            .expect("snapshot returned: the arbiter is not starved")
            .expect("round completes");
        let (_, tokens) = verify(&snap, 2, &edges);
        assert_eq!(tokens, 2);
    }
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    net.group.shutdown();
}
