//! The checkpoint coordinator on running token networks: checkpoints land in the store on
//! the interval, retention keeps the newest N, every written checkpoint is consistent (checked
//! against the actors' own books) and restorable, and repeated failures stop it with an error.
//! Membership: a node that stops leaves the group and the checkpoints after it, without
//! failing any; a node that panics fails the round it owed, and the rounds after it succeed
//! without it; a dynamic group's checkpoints follow its members and restore with their ids.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_snapshot::checkpoint::{
    CheckpointConfig, CheckpointEntry, CheckpointError, CheckpointReport, CheckpointStore,
    Checkpointer, FsStore, file_name,
};
use actix_snapshot::{
    GlobalSnapshot, NodeAddr, NodeContext, NodeId, Snapshot, SnapshotError, SnapshotGroup,
};
use common::*;
use futures::StreamExt;
use serde::{Deserialize, Serialize};

fn inject(net: &Net, per_node: u64) {
    for (i, ing) in net.inject.iter().enumerate() {
        for k in 0..per_node {
            ing.send(Inject {
                id: i as u64 * 1_000_000 + k,
                hops: u32::MAX,
            })
            .expect("running");
        }
    }
}

#[actix::test]
async fn interval_checkpoints_land_in_the_store_and_retention_keeps_n() {
    let n = 4;
    let edges = mesh(n);
    let net = start(n, &edges, 2);
    inject(&net, 20);
    let dir = tempfile::tempdir().unwrap();
    let store = FsStore::create(dir.path()).unwrap();
    let hooked = Arc::new(Mutex::new(Vec::new()));
    let h = Arc::clone(&hooked);
    let hook_edges = edges.clone();
    let (tx, mut reports) = futures::channel::mpsc::unbounded::<CheckpointReport>();
    let started = Instant::now();
    let handle = Checkpointer::new(
        net.group.clone(),
        store.clone(),
        CheckpointConfig::default()
            .interval(Duration::from_millis(25))
            .retain(3),
    )
    .on_snapshot(move |snap| {
        // The hook sees each snapshot before it is written; check it independently.
        verify(snap, n, &hook_edges);
        h.lock().unwrap().push(snap.id);
    })
    .on_checkpoint(move |r| {
        let _ = tx.unbounded_send(r.clone());
    })
    .start()
    .unwrap();

    let mut got = Vec::new();
    while got.len() < 6 {
        got.push(reports.next().await.expect("coordinator running"));
    }
    let stats = handle.stop_and_join().await.expect("stops cleanly");
    let elapsed = started.elapsed();
    net.group.shutdown();

    // Interval: the first round waits one interval, then one per interval at most.
    assert!(
        elapsed >= Duration::from_millis(25 * 6),
        "6 checkpoints at 25 ms took only {elapsed:?}"
    );
    assert!(stats.completed >= 6 && stats.failed == 0, "{stats:?}");
    let ids: Vec<u64> = got.iter().map(|r| r.id).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids increase: {ids:?}");
    for r in &got {
        assert!(r.bytes > 0 && r.duration >= r.snapshot_duration);
        assert_eq!(r.path, dir.path().join(file_name(r.id)));
    }
    // Every snapshot went through the hook first.
    let hooked = hooked.lock().unwrap().clone();
    assert!(
        ids.iter().all(|id| hooked.contains(id)),
        "{hooked:?} vs {ids:?}"
    );

    // Exactly the newest three files remain, read with std::fs.
    let last = stats.last.clone().expect("a last report");
    let mut on_disk: Vec<String> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    on_disk.sort();
    let expected: Vec<String> = (last.id - 2..=last.id).map(file_name).collect();
    assert_eq!(on_disk, expected);
    // Each is complete, consistent with the actors' books, and its size is what was reported.
    for id in last.id - 2..=last.id {
        let snap = store.load(id).unwrap();
        verify(&snap, n, &edges);
        if let Some(r) = got.iter().find(|r| r.id == id) {
            assert_eq!(r.bytes, fs::metadata(store.path_of(id)).unwrap().len());
        }
    }

    // And the newest restores.
    let latest = store.latest_valid().unwrap();
    assert_eq!(latest.entry.id, last.id);
    let mut b = SnapshotGroup::builder();
    declare(&mut b, n, &edges);
    let group = b.restore(&latest.snapshot).expect("restores");
    let again = group.snapshot().await.unwrap();
    let (_, before) = verify(&latest.snapshot, n, &edges);
    let (_, after) = verify(&again, n, &edges);
    assert_eq!(before, after, "same tokens after the restore");
    group.shutdown();
}

/// Checks a snapshot of a token network in which node `gone` had stopped before the cut,
/// against the surviving actors' own books (the gone node's books left with it):
/// - the gone node is not in the snapshot, nor is any path or ingress to it;
/// - on a link between survivors, the recorded tokens are exactly those its sender counted as
///   sent and its receiver had not counted as received, in send order;
/// - on a link from the gone node, the recorded tokens follow on from what the receiver had
///   received from it, in send order (the sender's count is gone);
/// - no token is in two places, and every token found was injected (at a survivor);
/// - each survivor's totals of sent and received node-to-node messages are those of its books;
/// - each survivor's ingress offset is the number of injections in its books.
///
/// Returns the number of tokens in flight.
fn verify_without(snap: &GlobalSnapshot, n: usize, edges: &[(u32, u32)], gone: u32) -> usize {
    assert!(snap.node(&format!("n{gone}")).is_err(), "n{gone} left");
    let books: BTreeMap<u32, NodeBooks> = (0..n as u32)
        .filter(|&i| i != gone)
        .map(|i| (i, snap.state::<TokNode>(&format!("n{i}")).unwrap()))
        .collect();
    assert_eq!(
        snap.nodes.iter().map(|n| n.id).collect::<Vec<_>>(),
        books
            .keys()
            .map(|&i| NodeId(u64::from(i)))
            .collect::<Vec<_>>(),
        "survivors keep their ids"
    );
    assert!(snap.paths.iter().all(|p| p.to != NodeId(u64::from(gone))));
    assert!(snap.ingress.iter().all(|i| i.to != NodeId(u64::from(gone))));
    for p in &snap.paths {
        let link = (p.from.0 as u32, p.to.0 as u32);
        assert!(edges.contains(&link), "in flight off the links: {link:?}");
    }
    let mut seen: BTreeMap<u64, usize> = BTreeMap::new();
    let mut in_flight = 0;
    for &(f, t) in edges.iter().filter(|&&(_, t)| t != gone) {
        let toks: Vec<Tok> = snap
            .path_messages_by_id(NodeId(u64::from(f)), NodeId(u64::from(t)))
            .unwrap();
        let recv = books[&t].received.get(&f).copied().unwrap_or(0);
        let seqs: Vec<u64> = toks.iter().map(|t| t.seq).collect();
        let end = if f == gone {
            recv + toks.len() as u64
        } else {
            books[&f].sent.get(&t).copied().unwrap_or(0)
        };
        assert_eq!(seqs, (recv..end).collect::<Vec<_>>(), "link n{f} -> n{t}");
        for tok in &toks {
            assert_eq!(tok.from, f);
            *seen.entry(tok.id).or_default() += 1;
        }
        in_flight += toks.len();
    }
    for b in books.values() {
        for id in &b.held {
            *seen.entry(*id).or_default() += 1;
        }
    }
    assert!(seen.values().all(|&c| c == 1), "a token in two places");
    let injected: BTreeSet<u64> = books.values().flat_map(|b| b.injected.clone()).collect();
    assert!(
        seen.keys().all(|id| injected.contains(id)),
        "a token invented"
    );
    for (i, b) in &books {
        let node = snap.node(&format!("n{i}")).unwrap();
        assert_eq!(node.sent, b.sent.values().sum::<u64>(), "n{i} sent");
        assert_eq!(
            node.received,
            b.received.values().sum::<u64>(),
            "n{i} received"
        );
        assert_eq!(
            snap.ingress_offset(&format!("inject{i}")).unwrap(),
            b.injected.len() as u64
        );
    }
    in_flight
}

#[actix::test]
async fn a_stopped_node_leaves_and_later_checkpoints_succeed_without_it() {
    let n = 4;
    let edges = mesh(n);
    let net = start(n, &edges, 2);
    let survivors = [0usize, 2, 3];
    let mut next_id = 0u64;
    let mut inject_batch = |net: &Net, k: u64| {
        for &i in &survivors {
            for _ in 0..k {
                net.inject[i]
                    .send(Inject {
                        id: next_id,
                        hops: u32::MAX,
                    })
                    .expect("running");
                next_id += 1;
            }
        }
    };
    inject_batch(&net, 10);
    let dir = tempfile::tempdir().unwrap();
    let store = FsStore::create(dir.path()).unwrap();
    let snaps = Arc::new(Mutex::new(Vec::<GlobalSnapshot>::new()));
    let hooked = Arc::clone(&snaps);
    let handle = Checkpointer::new(
        net.group.clone(),
        store.clone(),
        CheckpointConfig::default()
            .interval(Duration::from_millis(10))
            .timeout(Duration::from_secs(5))
            .tolerable_failures(0)
            .retain(1000),
    )
    .on_snapshot(move |snap| hooked.lock().unwrap().push(snap.clone()))
    .start()
    .unwrap();
    while handle.stats().completed < 3 {
        actix::clock::sleep(Duration::from_millis(5)).await;
    }
    net.halt[1].send(Halt).unwrap();
    // Keep tokens coming (those sent to n1 from now on are dropped) until enough
    // checkpoints without n1 were written.
    let without = |snaps: &Arc<Mutex<Vec<GlobalSnapshot>>>| {
        snaps
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.node("n1").is_err())
            .count()
    };
    // ... and until one of them caught tokens in flight (so the check below is not vacuous).
    let moving_without = |snaps: &Arc<Mutex<Vec<GlobalSnapshot>>>| {
        snaps
            .lock()
            .unwrap()
            .iter()
            .any(|s| s.node("n1").is_err() && s.in_flight_count() > 0)
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while without(&snaps) < 8 || !moving_without(&snaps) {
        assert!(Instant::now() < deadline, "{:?}", handle.stats());
        inject_batch(&net, 3);
        actix::clock::sleep(Duration::from_millis(5)).await;
    }
    let stats = handle.stop_and_join().await.expect("no round failed");
    let group_stats = net.group.stats();
    net.group.shutdown();
    assert_eq!(stats.failed, 0, "{stats:?}");
    assert_eq!((group_stats.failed, group_stats.timed_out), (0, 0));

    // Each checkpoint is consistent by the books: with n1 until it left, without it after,
    // never with it again.
    let snaps = snaps.lock().unwrap().clone();
    let first_without = snaps.iter().position(|s| s.node("n1").is_err()).unwrap();
    assert!(first_without >= 3);
    let (mut moving_after, mut from_gone) = (0, 0);
    for (k, snap) in snaps.iter().enumerate() {
        if k < first_without {
            verify(snap, n, &edges);
        } else {
            moving_after += verify_without(snap, n, &edges, 1);
            from_gone += snap.paths.iter().filter(|p| p.from == NodeId(1)).count();
            assert_eq!(snap.next_node_id, n as u64);
        }
    }
    assert!(snaps.windows(2).all(|w| w[0].id < w[1].id));
    assert!(
        moving_after > 0,
        "the checkpoints after the stop had tokens in flight"
    );
    eprintln!(
        "stop: {} checkpoints, the first without n1 is #{}; {moving_after} tokens in flight \
         after, {from_gone} path(s) from n1 after it left",
        snaps.len(),
        first_without + 1
    );
    // What is on disk is what the hook saw; the newest does not hold n1.
    let latest = store.latest_valid().unwrap();
    assert_eq!(&latest.snapshot, snaps.last().unwrap());
    assert_eq!(store.list().unwrap().len(), snaps.len());
}

/// An actor that blocks its thread, then panics, when told to.
#[derive(Snapshot)]
#[snapshot(state_type = (), state_fn = Bomb::no_state, messages(Explode))]
struct Bomb;
impl Bomb {
    fn no_state(&self) {}
}
impl Actor for Bomb {
    type Context = Context<Self>;
}
#[derive(Serialize, Deserialize, Message)]
#[rtype(result = "()")]
struct Explode {
    after_ms: u64,
}
impl Handler<Explode> for Bomb {
    type Result = ();
    fn handle(&mut self, e: Explode, _ctx: &mut Context<Self>) {
        std::thread::sleep(Duration::from_millis(e.after_ms));
        panic!("the bomb went off");
    }
}

#[actix::test]
async fn a_panicked_node_fails_the_round_it_owed_and_later_checkpoints_succeed() {
    // Three token nodes on arbiters 0..3, the bomb alone on arbiter 3: while it blocks its
    // thread, the other nodes record, so a round starts during the block (one interval
    // after the previous one ended) and is owed a record the bomb never makes.
    let n = 3;
    let edges = ring(n);
    let mut b = SnapshotGroup::builder();
    b.arbiters(4);
    let (inject, ..) = declare(&mut b, n, &edges);
    let group = b.start().unwrap();
    let bomb = group.spawn_on(3, "bomb", || Bomb).unwrap();
    for (i, ing) in inject.iter().enumerate() {
        for k in 0..10 {
            ing.send(Inject {
                id: i as u64 * 1000 + k,
                hops: u32::MAX,
            })
            .unwrap();
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let store = FsStore::create(dir.path()).unwrap();
    let config = CheckpointConfig::default()
        .interval(Duration::from_millis(10))
        .timeout(Duration::from_secs(5))
        .tolerable_failures(0)
        .retain(1000);
    let handle = Checkpointer::new(group.clone(), store.clone(), config.clone())
        .on_snapshot(move |snap| {
            verify(snap, n, &ring(n));
            assert!(snap.node("bomb").is_ok());
        })
        .start()
        .unwrap();
    while handle.stats().completed < 2 {
        actix::clock::sleep(Duration::from_millis(5)).await;
    }
    bomb.do_send(Explode { after_ms: 300 });
    let failed_round = match handle.join().await {
        Err(CheckpointError::TooManyFailures { failures: 1, last }) => match *last {
            CheckpointError::Snapshot(SnapshotError::NodePanicked {
                round,
                node,
                reason,
            }) => {
                assert_eq!(node, "bomb");
                assert!(reason.contains("the bomb went off"), "{reason}");
                round
            }
            other => panic!("expected NodePanicked, got {other:?}"),
        },
        other => panic!("expected the panic to fail a round, got {other:?}"),
    };
    assert!(!bomb.is_alive());
    let before: Vec<u64> = store.list().unwrap().iter().map(|e| e.id).collect();
    assert!(before.len() >= 2 && before.iter().all(|&id| id < failed_round));

    // Later rounds go on without the bomb, and conserve every token.
    let handle = Checkpointer::new(group.clone(), store.clone(), config)
        .on_snapshot(move |snap| {
            let (_, tokens) = verify(snap, n, &ring(n));
            assert_eq!(tokens, 3 * 10);
            assert!(snap.node("bomb").is_err());
        })
        .start()
        .unwrap();
    while handle.stats().completed < 3 {
        actix::clock::sleep(Duration::from_millis(5)).await;
    }
    let stats = handle.stop_and_join().await.expect("no round failed");
    assert_eq!(stats.failed, 0);
    let after: Vec<u64> = store
        .list()
        .unwrap()
        .iter()
        .map(|e| e.id)
        .filter(|id| !before.contains(id))
        .collect();
    assert!(after.len() >= 3 && after.iter().all(|&id| id > failed_round));
    assert!(store.list().unwrap().iter().all(|e| e.id != failed_round));
    let g = group.stats();
    assert_eq!((g.failed, g.timed_out), (1, 0), "{g:?}");
    group.shutdown();
}

#[actix::test]
async fn a_stuck_node_times_rounds_out_until_the_limit() {
    let net = start(3, &ring(3), 3);
    let dir = tempfile::tempdir().unwrap();
    let store = FsStore::create(dir.path()).unwrap();
    net.stall[2].send(Stall(1500)).unwrap();
    let started = Instant::now();
    let handle = Checkpointer::new(
        net.group.clone(),
        store.clone(),
        CheckpointConfig::default()
            .interval(Duration::from_millis(10))
            .timeout(Duration::from_millis(60))
            .tolerable_failures(1),
    )
    .start()
    .unwrap();
    let err = handle.join().await.expect_err("stops with an error");
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "before the stall ends"
    );
    match err {
        CheckpointError::TooManyFailures { failures: 2, last } => match *last {
            CheckpointError::Snapshot(SnapshotError::Timeout {
                missing, waited, ..
            }) => {
                // n2 is stuck; every other node was told to record and did.
                assert_eq!(missing, vec!["n2".to_string()]);
                assert_eq!(waited, Duration::from_millis(60));
            }
            other => panic!("expected a timeout, got {other:?}"),
        },
        other => panic!("expected TooManyFailures, got {other:?}"),
    }
    assert!(store.list().unwrap().is_empty(), "nothing written");
    net.group.shutdown();
}

#[actix::test]
async fn write_failures_count_too() {
    let net = start(2, &ring(2), 0);
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("store");
    let store = FsStore::create(&sub).unwrap();
    fs::remove_dir(&sub).unwrap();
    fs::write(&sub, b"a file where the directory was").unwrap();
    let handle = Checkpointer::new(
        net.group.clone(),
        store,
        CheckpointConfig::default()
            .interval(Duration::from_millis(5))
            .tolerable_failures(0),
    )
    .start()
    .unwrap();
    match handle.join().await {
        Err(CheckpointError::TooManyFailures { failures: 1, last }) => {
            assert!(
                matches!(*last, CheckpointError::Io { op: "create", .. }),
                "{last:?}"
            )
        }
        other => panic!("expected a write failure, got {other:?}"),
    }
    net.group.shutdown();
}

#[actix::test]
async fn min_pause_spaces_the_rounds() {
    let net = start(2, &ring(2), 0);
    let dir = tempfile::tempdir().unwrap();
    let store = FsStore::create(dir.path()).unwrap();
    let ends = Arc::new(Mutex::new(Vec::<Instant>::new()));
    let e = Arc::clone(&ends);
    let handle = Checkpointer::new(
        net.group.clone(),
        store,
        CheckpointConfig::default()
            .interval(Duration::from_millis(1))
            .min_pause(Duration::from_millis(60))
            .retain(10),
    )
    .on_checkpoint(move |_| e.lock().unwrap().push(Instant::now()))
    .start()
    .unwrap();
    actix::clock::sleep(Duration::from_millis(400)).await;
    let stats = handle.stop_and_join().await.unwrap();
    net.group.shutdown();
    let ends = ends.lock().unwrap().clone();
    assert!(ends.len() >= 2, "some rounds ran: {stats:?}");
    // One round at a time, each starting at least 60 ms after the previous one ended.
    assert!(stats.completed <= 400 / 60 + 1, "{stats:?}");
    for w in ends.windows(2) {
        assert!(
            w[1] - w[0] >= Duration::from_millis(60),
            "{:?}",
            w[1] - w[0]
        );
    }
}

#[actix::test]
async fn bad_configurations_are_refused() {
    let net = start(1, &[], 0);
    let dir = tempfile::tempdir().unwrap();
    for cfg in [
        CheckpointConfig::default().retain(0),
        CheckpointConfig::default().max_concurrent(0),
        CheckpointConfig::default().interval(Duration::ZERO),
        CheckpointConfig::default().timeout(Duration::ZERO),
    ] {
        let r = Checkpointer::new(
            net.group.clone(),
            FsStore::create(dir.path()).unwrap(),
            cfg.clone(),
        )
        .start();
        assert!(matches!(r, Err(CheckpointError::Config(_))), "{cfg:?}");
    }
    net.group.shutdown();
}

/// A store that takes its time to write: wraps a [`FsStore`].
struct SlowStore(FsStore, Duration);

impl CheckpointStore for SlowStore {
    fn save(&self, id: u64, bytes: &[u8]) -> Result<CheckpointEntry, CheckpointError> {
        std::thread::sleep(self.1);
        self.0.save(id, bytes)
    }
    fn list(&self) -> Result<Vec<CheckpointEntry>, CheckpointError> {
        self.0.list()
    }
    fn read(&self, id: u64) -> Result<Vec<u8>, CheckpointError> {
        self.0.read(id)
    }
    fn delete(&self, id: u64) -> Result<(), CheckpointError> {
        self.0.delete(id)
    }
    fn location(&self) -> &std::path::Path {
        self.0.location()
    }
    fn path_of(&self, id: u64) -> std::path::PathBuf {
        self.0.path_of(id)
    }
}

/// Most rounds seen in progress at once while checkpointing into a slow store.
async fn peak_concurrency(max_concurrent: usize) -> u64 {
    let net = start(2, &ring(2), 0);
    let dir = tempfile::tempdir().unwrap();
    let store = SlowStore(
        FsStore::create(dir.path()).unwrap(),
        Duration::from_millis(40),
    );
    let handle = Checkpointer::new(
        net.group.clone(),
        store,
        CheckpointConfig::default()
            .interval(Duration::from_millis(5))
            .max_concurrent(max_concurrent)
            .retain(50),
    )
    .start()
    .unwrap();
    let mut peak = 0;
    let until = Instant::now() + Duration::from_millis(400);
    while Instant::now() < until {
        let st = handle.stats();
        peak = peak.max(st.started - st.completed - st.failed);
        actix::clock::sleep(Duration::from_millis(2)).await;
    }
    let stats = handle.stop_and_join().await.unwrap();
    net.group.shutdown();
    assert_eq!(stats.failed, 0);
    assert!(stats.completed >= 3, "{stats:?}");
    peak
}

#[actix::test]
async fn max_concurrent_bounds_the_rounds_in_progress() {
    assert_eq!(peak_concurrency(1).await, 1);
    let peak = peak_concurrency(3).await;
    assert!(peak > 1 && peak <= 3, "peak {peak}");
}

// ---------------------------------------------------------------------------------------
// A dynamic group: nodes spawned at run time, one leaving, a child joining; its checkpoints
// restore with sparse ids.

#[derive(Debug, Clone, Serialize, Deserialize)]
struct RelayState {
    held: BTreeSet<u64>,
    /// Addresses are recorded as node ids and resolved again on restore.
    peers: Vec<NodeAddr<Relay>>,
}

#[derive(Snapshot)]
#[snapshot(state = st, messages(Hop, Cmd))]
struct Relay {
    st: RelayState,
}

#[derive(Debug, Clone, Serialize, Deserialize, Message)]
#[rtype(result = "()")]
struct Hop {
    id: u64,
    ttl: u32,
}

#[derive(Serialize, Deserialize, Message)]
#[rtype(result = "()")]
enum Cmd {
    Meet(NodeAddr<Relay>),
    Forget(NodeId),
    /// Hand every held token to the first peer, then stop.
    Leave,
    /// Spawn a child that knows this node, and hand it one token.
    Child(String),
}

impl Actor for Relay {
    type Context = Context<Self>;
}

impl Handler<Hop> for Relay {
    type Result = ();
    fn handle(&mut self, h: Hop, _ctx: &mut Context<Self>) {
        if h.ttl == 0 || self.st.peers.is_empty() {
            self.st.held.insert(h.id);
        } else {
            let k = (h.id + u64::from(h.ttl)) as usize % self.st.peers.len();
            self.st.peers[k].do_send(Hop {
                id: h.id,
                ttl: h.ttl - 1,
            });
        }
    }
}

impl Handler<Cmd> for Relay {
    type Result = ();
    fn handle(&mut self, c: Cmd, ctx: &mut Context<Self>) {
        match c {
            Cmd::Meet(p) => self.st.peers.push(p),
            Cmd::Forget(id) => self.st.peers.retain(|p| p.id() != id),
            Cmd::Leave => {
                for id in std::mem::take(&mut self.st.held) {
                    self.st.peers[0].do_send(Hop { id, ttl: 0 });
                }
                ctx.stop();
            }
            Cmd::Child(name) => {
                let me = ctx.node_addr().expect("a handler runs inside its node");
                let child = ctx
                    .spawn_node(name, move || Relay {
                        st: RelayState {
                            held: BTreeSet::new(),
                            peers: vec![me],
                        },
                    })
                    .expect("child spawns");
                if let Some(id) = self.st.held.pop_first() {
                    child.do_send(Hop { id, ttl: 0 });
                }
                self.st.peers.push(child);
            }
        }
    }
}

fn relay() -> Relay {
    Relay {
        st: RelayState {
            held: BTreeSet::new(),
            peers: Vec::new(),
        },
    }
}

/// Every token of a relay snapshot, held or in flight, sorted.
fn relay_tokens(snap: &GlobalSnapshot) -> Vec<u64> {
    let mut all: Vec<u64> = snap
        .states::<Relay>()
        .unwrap()
        .flat_map(|s| s.held)
        .collect();
    all.extend(snap.in_flight::<Hop>().unwrap().map(|h| h.id));
    all.sort();
    all
}

fn at_rest(snap: &GlobalSnapshot, tokens: u64) -> bool {
    snap.in_flight_count() == 0
        && snap
            .states::<Relay>()
            .unwrap()
            .map(|s| s.held.len() as u64)
            .sum::<u64>()
            == tokens
}

#[actix::test]
async fn checkpoints_of_a_dynamic_group_follow_its_members_and_restore() {
    const TOKENS: u64 = 30;
    let mut b = SnapshotGroup::builder();
    b.arbiters(2);
    let group = b.start().unwrap();
    let a = group.spawn("a", relay).unwrap();
    let bb = group.spawn("b", relay).unwrap();
    let c = group.spawn("c", relay).unwrap();
    for (x, peers) in [(&a, [&bb, &c]), (&bb, [&a, &c]), (&c, [&a, &bb])] {
        for p in peers {
            x.do_send(Cmd::Meet(p.clone()));
        }
    }
    for id in 0..TOKENS {
        a.do_send(Hop { id, ttl: 50 });
    }
    let dir = tempfile::tempdir().unwrap();
    let store = FsStore::create(dir.path()).unwrap();
    let snaps = Arc::new(Mutex::new(Vec::<GlobalSnapshot>::new()));
    let hooked = Arc::clone(&snaps);
    let handle = Checkpointer::new(
        group.clone(),
        store.clone(),
        CheckpointConfig::default()
            .interval(Duration::from_millis(5))
            .tolerable_failures(0)
            .retain(1000),
    )
    .on_snapshot(move |snap| hooked.lock().unwrap().push(snap.clone()))
    .start()
    .unwrap();
    // Until a checkpoint shows every token at rest.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !snaps.lock().unwrap().iter().any(|s| at_rest(s, TOKENS)) {
        assert!(Instant::now() < deadline);
        actix::clock::sleep(Duration::from_millis(5)).await;
    }
    // c leaves (its tokens go to a), a spawns a child d.
    a.do_send(Cmd::Forget(c.id()));
    bb.do_send(Cmd::Forget(c.id()));
    c.do_send(Cmd::Leave);
    a.do_send(Cmd::Child("d".into()));
    let shape = |s: &GlobalSnapshot| s.nodes.iter().map(|n| n.name.clone()).collect::<Vec<_>>();
    while !snaps
        .lock()
        .unwrap()
        .iter()
        .any(|s| shape(s) == ["a", "b", "d"] && at_rest(s, TOKENS))
    {
        assert!(Instant::now() < deadline);
        actix::clock::sleep(Duration::from_millis(5)).await;
    }
    let stats = handle.stop_and_join().await.expect("no round failed");
    assert_eq!(stats.failed, 0);
    group.shutdown();

    // Every checkpoint holds every token exactly once, whoever the members were.
    let snaps = snaps.lock().unwrap().clone();
    let shapes: Vec<Vec<String>> = snaps.iter().map(shape).collect();
    for (s, sh) in snaps.iter().zip(&shapes) {
        assert_eq!(relay_tokens(s), (0..TOKENS).collect::<Vec<_>>(), "{sh:?}");
        assert!(
            [
                &["a", "b", "c"][..],
                &["a", "b"],
                &["a", "b", "c", "d"],
                &["a", "b", "d"]
            ]
            .contains(&sh.iter().map(String::as_str).collect::<Vec<_>>().as_slice()),
            "{sh:?}"
        );
    }
    let latest = store.latest_valid().unwrap().snapshot;
    assert_eq!(&latest, snaps.last().unwrap());
    let ids: Vec<u64> = latest.nodes.iter().map(|n| n.id.0).collect();
    assert_eq!(ids, [0, 1, 3], "c's id 2 is not reused");
    assert_eq!(latest.next_node_id, 4);

    // Restore: a declared (id 0, with an ingress to feed it), b and d rebuilt by type.
    let mut b = SnapshotGroup::builder();
    b.arbiters(2);
    let ra = b.node::<Relay>("a");
    let feed = b.ingress::<Hop, _>("feed", ra);
    b.actor(ra, |st| Relay {
        st: st.expect("restored"),
    });
    // Relay's messages (Hop, Cmd) are registered by its derive; no `accepts` needed.
    b.restorable::<Relay>(|st| Relay { st });
    let group = b.restore(&latest).expect("restores");
    let again = group.snapshot().await.unwrap();
    assert_eq!(shape(&again), ["a", "b", "d"]);
    assert_eq!(relay_tokens(&again), (0..TOKENS).collect::<Vec<_>>());
    for (x, y) in again.nodes.iter().zip(&latest.nodes) {
        assert_eq!(x.id, y.id);
        let (sx, sy): (RelayState, RelayState) = (
            again.state::<Relay>(&x.name).unwrap(),
            latest.state::<Relay>(&y.name).unwrap(),
        );
        assert_eq!(sx.held, sy.held);
        let ids = |s: &RelayState| s.peers.iter().map(|p| p.id()).collect::<Vec<_>>();
        assert_eq!(ids(&sx), ids(&sy));
    }
    // The restored addresses work: new tokens travel a -> b/d and come to rest.
    for id in TOKENS..TOKENS + 10 {
        feed.send(Hop { id, ttl: 7 }).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = group.snapshot().await.unwrap();
        assert_eq!(relay_tokens(&s), (0..TOKENS + 10).collect::<Vec<_>>());
        if at_rest(&s, TOKENS + 10) {
            // a forwarded each new token at least once, to b or d (counted since the restore).
            let received = |n: &str| s.node(n).unwrap().received;
            assert!(received("b") + received("d") >= 10);
            break;
        }
        assert!(Instant::now() < deadline);
        actix::clock::sleep(Duration::from_millis(2)).await;
    }
    let e = group.spawn("e", relay).unwrap();
    assert_eq!(
        e.id(),
        NodeId(4),
        "a restored group continues from next_node_id"
    );
    group.shutdown();
}
