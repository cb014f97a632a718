//! Deadlock detection: the wait-for graph logic on hand-made waits, and dining
//! philosophers live. A reported deadlock is checked against the actors' own states and
//! against the system's liveness (nobody eats any more), not against the detector; the
//! ordered variant, which cannot deadlock, must never be reported.

#[path = "../examples/dining/mod.rs"]
mod dining;

use std::collections::BTreeSet;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use actix::{Actor, ActorContext, Context, Handler, Message};
use actix_snapshot::deadlock::{WaitForGraph, find_deadlocks};
use actix_snapshot::snapshot::PathSnapshot;
use actix_snapshot::{GlobalSnapshot, NodeId, Snapshot, SnapshotGroup};
use dining::{Fork, Order, Phase, Philosopher, Timing, fork_name, phil_name};
use proptest::prelude::*;

// ---------------------------------------------------------------------------------------
// Graph logic on a real snapshot whose waits and in-flight messages are set by hand.

/// The message of the mesh's links (an actix message, so a newtype of `u8`).
#[derive(Message, serde::Serialize, serde::Deserialize)]
#[rtype(result = "()")]
struct Byte(u8);

#[derive(Snapshot)]
#[snapshot(state_type = (), state_fn = Self::state, messages(Byte))]
struct Idle;
impl Idle {
    fn state(&self) {}
}
impl Actor for Idle {
    type Context = Context<Self>;
}
impl Handler<Byte> for Idle {
    type Result = ();
    fn handle(&mut self, _: Byte, _ctx: &mut Context<Self>) {}
}

const MESH: usize = 6;

/// A snapshot of an idle full mesh of `MESH` nodes `n0..n5` with ids 0..5 (one link each way
/// per pair, nothing in flight, nobody waiting).
fn idle_mesh() -> GlobalSnapshot {
    static SNAP: OnceLock<GlobalSnapshot> = OnceLock::new();
    SNAP.get_or_init(|| {
        std::thread::spawn(|| {
            actix::System::new().block_on(async {
                let mut b = SnapshotGroup::builder();
                let nodes: Vec<_> = (0..MESH).map(|i| b.node::<Idle>(format!("n{i}"))).collect();
                for &f in &nodes {
                    for &t in &nodes {
                        if f.id() != t.id() {
                            let _out = b.channel::<Byte, _, _>(f, t);
                        }
                    }
                }
                for &n in &nodes {
                    b.actor(n, |_| Idle);
                }
                let group = b.start().expect("valid topology");
                let snap = group.snapshot().await.expect("round completes");
                group.shutdown();
                snap
            })
        })
        .join()
        .expect("snapshot thread")
    })
    .clone()
}

/// `k` in-flight messages from `from` to `to`, as a snapshot file would hold them (a
/// `PathSnapshot` is not constructible outside the crate; it is read like any snapshot data).
fn path(from: u32, to: u32, k: usize) -> PathSnapshot {
    serde_json::from_value(serde_json::json!({
        "from": from,
        "to": to,
        "message_type": "Byte",
        "messages": vec![[0x07]; k],
    }))
    .expect("a path")
}

/// `waits`: (waiter, waited for); `in_flight`: (from, to, messages). Node ids are those of
/// `n0..n5`.
fn scenario(waits: &[(u32, u32)], in_flight: &[(u32, u32, usize)]) -> GlobalSnapshot {
    sparse_scenario(waits, in_flight, &BTreeSet::new())
}

/// [`scenario`], then the nodes in `gone` removed, as if they had left the group before the
/// cut: their ids are not reused, so the others keep theirs (sparse ids). Their waits go
/// with them, waits on them stay (the detector must ignore those), messages in flight to
/// them go (a path's receiver is in the snapshot), messages in flight from them stay.
fn sparse_scenario(
    waits: &[(u32, u32)],
    in_flight: &[(u32, u32, usize)],
    gone: &BTreeSet<u32>,
) -> GlobalSnapshot {
    let mut snap = idle_mesh();
    for &(i, j) in waits {
        let node = snap
            .nodes
            .iter_mut()
            .find(|n| n.id == NodeId(u64::from(i)))
            .expect("mesh node");
        node.waits_for.push(NodeId(u64::from(j)));
    }
    for &(f, t, k) in in_flight {
        if !gone.contains(&t) {
            snap.paths.push(path(f, t, k));
        }
    }
    snap.paths.sort_by_key(|p| (p.from, p.to));
    snap.nodes.retain(|n| !gone.contains(&(n.id.0 as u32)));
    snap
}

fn names(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn two_nodes_waiting_for_each_other_deadlock() {
    let d = find_deadlocks(&scenario(&[(0, 1), (1, 0)], &[]));
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].nodes, names(&["n0", "n1"]));
    assert_eq!(d[0].cycle, names(&["n0", "n1"]));
    assert_eq!(d[0].to_string(), "n0 -> n1 -> n0");
}

#[test]
fn a_wait_satisfied_by_an_in_flight_message_is_not_a_deadlock() {
    // n1 -> n0 carries a message: n0's wait on n1 will be satisfied.
    let snap = scenario(&[(0, 1), (1, 0)], &[(1, 0, 1)]);
    let g = WaitForGraph::from_snapshot(&snap);
    assert!(g.deadlocks().is_empty());
    let waits = g.waits();
    let w01 = waits
        .iter()
        .find(|(a, b, _)| (*a, *b) == ("n0", "n1"))
        .unwrap();
    let w10 = waits
        .iter()
        .find(|(a, b, _)| (*a, *b) == ("n1", "n0"))
        .unwrap();
    assert!(w01.2.is_satisfied() && w01.2.in_flight == 1);
    assert!(!w10.2.is_satisfied());
    let dot = g.to_dot();
    assert!(dot.contains("style=dashed"), "{dot}");
    assert!(!dot.contains("color=red"), "{dot}");
}

#[test]
fn only_a_message_from_the_waited_for_node_to_the_waiter_counts() {
    // Wrong direction (n0 -> n1 satisfies n1's wait, which exists too: no deadlock) ...
    assert!(find_deadlocks(&scenario(&[(0, 1), (1, 0)], &[(0, 1, 2)])).is_empty());
    // ... but a message from a third node, or on the reverse of an absent wait, does not.
    let d = find_deadlocks(&scenario(&[(0, 1), (1, 0)], &[(2, 0, 3), (0, 2, 1)]));
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].nodes, names(&["n0", "n1"]));
}

#[test]
fn chains_are_not_deadlocks_cycles_of_any_length_are() {
    assert!(find_deadlocks(&scenario(&[(0, 1), (1, 2), (2, 3)], &[])).is_empty());
    let d = find_deadlocks(&scenario(&[(0, 1), (1, 2), (2, 3), (3, 0), (4, 0)], &[]));
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].nodes, names(&["n0", "n1", "n2", "n3"])); // n4 waits on it, is not in it
    assert_eq!(d[0].cycle, names(&["n0", "n1", "n2", "n3"]));
    // Breaking any one edge of the cycle with an in-flight message breaks the deadlock.
    for (waiter, on) in [(0, 1), (1, 2), (2, 3), (3, 0)] {
        let snap = scenario(&[(0, 1), (1, 2), (2, 3), (3, 0)], &[(on, waiter, 1)]);
        assert!(find_deadlocks(&snap).is_empty(), "{waiter} -> {on}");
    }
}

#[test]
fn self_waits_separate_components_and_shortest_cycles() {
    let d = find_deadlocks(&scenario(&[(5, 5), (1, 2), (2, 1), (3, 3)], &[]));
    let got: Vec<_> = d
        .iter()
        .map(|d| (d.nodes.clone(), d.cycle.clone()))
        .collect();
    assert_eq!(
        got,
        vec![
            (names(&["n1", "n2"]), names(&["n1", "n2"])),
            (names(&["n3"]), names(&["n3"])),
            (names(&["n5"]), names(&["n5"])),
        ]
    );
    // One component, two cycles through n0; the reported one is the shortest.
    let d = find_deadlocks(&scenario(&[(0, 1), (1, 2), (2, 0), (0, 2)], &[]));
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].nodes, names(&["n0", "n1", "n2"]));
    assert_eq!(d[0].cycle, names(&["n0", "n2"]));
}

#[test]
fn duplicate_and_unknown_waits_are_harmless() {
    let mut snap = scenario(&[(0, 1), (0, 1), (1, 0)], &[]);
    snap.nodes[2].waits_for.push(NodeId(99));
    snap.nodes[3].waits_for.push(NodeId(u64::MAX));
    let g = WaitForGraph::from_snapshot(&snap);
    assert_eq!(g.waits().len(), 2);
    assert_eq!(g.deadlocks().len(), 1);
}

#[test]
fn sparse_ids_name_the_right_nodes() {
    // n0 and n2 left: the snapshot holds ids 1, 3, 4, 5 at positions 0..4.
    let gone: BTreeSet<u32> = [0, 2].into();
    let snap = sparse_scenario(
        &[(1, 3), (3, 1), (4, 2), (5, 4), (4, 5), (1, 0)],
        &[(4, 5, 1), (2, 4, 2), (0, 1, 1)],
        &gone,
    );
    let ids: Vec<u64> = snap.nodes.iter().map(|n| n.id.0).collect();
    assert_eq!(ids, [1, 3, 4, 5]);
    let g = WaitForGraph::from_snapshot(&snap);
    // Waits on the gone nodes are no edges; messages from them satisfy nothing.
    let mut waits: Vec<(String, String, usize)> = g
        .waits()
        .into_iter()
        .map(|(a, b, w)| (a.to_string(), b.to_string(), w.in_flight))
        .collect();
    waits.sort();
    let expected: Vec<(String, String, usize)> = [
        ("n1", "n3", 0),
        ("n3", "n1", 0),
        ("n4", "n5", 0),
        ("n5", "n4", 1),
    ]
    .iter()
    .map(|&(a, b, k)| (a.to_string(), b.to_string(), k))
    .collect();
    assert_eq!(waits, expected);
    let d = g.deadlocks();
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].nodes, names(&["n1", "n3"]));
    assert_eq!(d[0].cycle, names(&["n1", "n3"]));
    // Graph node i is snapshot node i, with its id.
    for (i, n) in snap.nodes.iter().enumerate() {
        let idx = petgraph::graph::NodeIndex::new(i);
        assert_eq!(g.node_id(idx), Some(n.id));
        assert_eq!(g.graph()[idx], n.name);
    }
}

/// Waits for the nodes it is told to; leaves when told to.
#[derive(Snapshot)]
#[snapshot(state = on, waits_for = Self::waits, messages(W))]
struct Waiter {
    on: Vec<NodeId>,
}
impl Waiter {
    fn waits(&self) -> Vec<NodeId> {
        self.on.clone()
    }
}
impl Actor for Waiter {
    type Context = Context<Self>;
}
#[derive(Message, serde::Serialize, serde::Deserialize)]
#[rtype(result = "()")]
enum W {
    WaitOn(NodeId),
    Bye,
}
impl Handler<W> for Waiter {
    type Result = ();
    fn handle(&mut self, w: W, ctx: &mut Context<Self>) {
        match w {
            W::WaitOn(id) => self.on.push(id),
            W::Bye => ctx.stop(),
        }
    }
}

#[actix::test]
async fn a_dynamic_group_with_departed_nodes_is_read_by_id() {
    let group = SnapshotGroup::new().unwrap();
    let w: Vec<_> = (0..5)
        .map(|i| {
            group
                .spawn(format!("w{i}"), || Waiter { on: Vec::new() })
                .unwrap()
        })
        .collect();
    w[1].do_send(W::Bye);
    w[3].do_send(W::Bye);
    // w0 and w4 wait for each other; w2 waits for w1 and w3, which have left.
    w[0].do_send(W::WaitOn(w[4].id()));
    w[4].do_send(W::WaitOn(w[0].id()));
    w[2].do_send(W::WaitOn(w[1].id()));
    w[2].do_send(W::WaitOn(w[3].id()));
    let snap = loop {
        let snap = group.snapshot().await.unwrap();
        let told: usize = snap.states::<Waiter>().unwrap().map(|s| s.len()).sum();
        if told == 4 {
            break snap;
        }
    };
    group.shutdown();
    let ids: Vec<u64> = snap.nodes.iter().map(|n| n.id.0).collect();
    assert_eq!(ids, [0, 2, 4]);
    // By the actors' own states: w0 and w4 wait on each other, nothing is in flight.
    assert_eq!(snap.state::<Waiter>("w0").unwrap(), [w[4].id()]);
    assert_eq!(snap.state::<Waiter>("w4").unwrap(), [w[0].id()]);
    assert_eq!(snap.in_flight_count(), 0);
    let g = WaitForGraph::from_snapshot(&snap);
    assert_eq!(g.waits().len(), 2, "waits on departed nodes are no edges");
    let d = g.deadlocks();
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].nodes, names(&["w0", "w4"]));
    assert_eq!(d[0].to_string(), "w0 -> w4 -> w0");
}

/// Independent oracle: nodes on a cycle of unsatisfied waits, by transitive closure.
fn on_a_cycle(
    n: usize,
    waits: &BTreeSet<(u32, u32)>,
    in_flight: &[(u32, u32, usize)],
) -> Vec<bool> {
    let satisfied = |i: u32, j: u32| in_flight.iter().any(|&(f, t, k)| f == j && t == i && k > 0);
    let mut reach = vec![vec![false; n]; n];
    for &(i, j) in waits {
        if !satisfied(i, j) {
            reach[i as usize][j as usize] = true;
        }
    }
    for k in 0..n {
        for i in 0..n {
            for j in 0..n {
                if reach[i][k] && reach[k][j] {
                    reach[i][j] = true;
                }
            }
        }
    }
    (0..n).map(|v| reach[v][v]).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn detector_agrees_with_transitive_closure(
        waits in proptest::collection::btree_set((0..MESH as u32, 0..MESH as u32), 0..14),
        in_flight in proptest::collection::vec((0..MESH as u32, 0..MESH as u32, 1..3usize), 0..6),
        gone in proptest::collection::btree_set(0..MESH as u32, 0..3),
    ) {
        let in_flight: Vec<_> = in_flight.into_iter().filter(|(f, t, _)| f != t).collect();
        let w: Vec<_> = waits.iter().copied().collect();
        let snap = sparse_scenario(&w, &in_flight, &gone);
        let deadlocks = find_deadlocks(&snap);
        // The oracle sees only the nodes still there (by their original ids).
        let present: BTreeSet<(u32, u32)> = waits
            .iter()
            .copied()
            .filter(|(i, j)| !gone.contains(i) && !gone.contains(j))
            .collect();
        let expected = on_a_cycle(MESH, &present, &in_flight);
        let mut reported = vec![false; MESH];
        let id = |name: &str| name[1..].parse::<u32>().unwrap();
        let mut lowest = Vec::new();
        for d in &deadlocks {
            for name in &d.nodes {
                prop_assert!(!reported[id(name) as usize], "node in two deadlocks");
                reported[id(name) as usize] = true;
            }
            let ids: Vec<u32> = d.nodes.iter().map(|s| id(s)).collect();
            prop_assert!(ids.windows(2).all(|w| w[0] < w[1]), "nodes in id order");
            lowest.push(ids[0]);
            // The cycle is elementary, inside the component, made of unsatisfied waits, and
            // starts at the component's lowest id.
            let cyc: Vec<u32> = d.cycle.iter().map(|s| id(s)).collect();
            prop_assert!(!cyc.is_empty());
            prop_assert_eq!(cyc[0], ids[0]);
            prop_assert_eq!(cyc.iter().collect::<BTreeSet<_>>().len(), cyc.len());
            for (k, &a) in cyc.iter().enumerate() {
                let b = cyc[(k + 1) % cyc.len()];
                let name = format!("n{}", a);
                prop_assert!(d.nodes.contains(&name));
                prop_assert!(present.contains(&(a, b)), "no wait {} -> {}", a, b);
                prop_assert!(!in_flight.iter().any(|&(f, t, _)| f == b && t == a));
            }
        }
        prop_assert!(lowest.windows(2).all(|w| w[0] < w[1]), "deadlocks by lowest id");
        prop_assert_eq!(reported, expected);
    }
}

// ---------------------------------------------------------------------------------------
// Dining philosophers, live.

const N: u32 = 5;

/// Checks, from the actors' own states only, that `snap` shows the full left-first
/// deadlock: every philosopher holds its left fork and waits for its right one, which its
/// neighbour holds, and nothing is on its way.
fn assert_stuck_by_the_books(snap: &GlobalSnapshot) {
    for i in 0..N {
        let (left, right) = (i, (i + 1) % N);
        let p = snap.state::<Philosopher>(&phil_name(i)).unwrap();
        assert_eq!(p.phase, Phase::Waiting(right), "P{i}");
        assert_eq!(p.holding, vec![left], "P{i}");
        let f = snap.state::<Fork>(&fork_name(right)).unwrap();
        assert_eq!(
            f.holder,
            Some(right),
            "F{right} is held by its right-hand philosopher"
        );
        assert!(f.queue.contains(&i), "P{i} queued at F{right}");
    }
    assert_eq!(snap.in_flight::<dining::Granted>().unwrap().len(), 0);
    assert_eq!(snap.in_flight::<dining::ToFork>().unwrap().len(), 0);
}

fn meals(snap: &GlobalSnapshot) -> Vec<u64> {
    (0..N)
        .map(|i| snap.state::<Philosopher>(&phil_name(i)).unwrap().meals)
        .collect()
}

const DEADLOCK_SEEDS: u64 = 8;

#[actix::test]
async fn left_first_philosophers_deadlock_and_it_is_detected() {
    let mut snapshots_total = 0;
    for seed in 0..DEADLOCK_SEEDS {
        let group = dining::start(N, Order::LeftFirst, seed, Timing::default(), 2);
        let started = Instant::now();
        let (snap, deadlocks) = loop {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "seed {seed}: no deadlock detected in 20 s"
            );
            actix::clock::sleep(Duration::from_millis(2)).await;
            let snap = group.snapshot().await.expect("round completes");
            snapshots_total += 1;
            let d = find_deadlocks(&snap);
            if !d.is_empty() {
                break (snap, d);
            }
        };
        // The report: one deadlock with every philosopher and fork, P0 -> F1 -> P1 -> ...
        assert_eq!(deadlocks.len(), 1, "seed {seed}");
        let expected_cycle: Vec<String> = (0..N)
            .flat_map(|i| [phil_name(i), fork_name((i + 1) % N)])
            .collect();
        assert_eq!(deadlocks[0].cycle, expected_cycle, "seed {seed}");
        assert_eq!(deadlocks[0].nodes.len(), 2 * N as usize);
        // It is real, by the actors' own books ...
        assert_stuck_by_the_books(&snap);
        // ... and nothing moves any more: nobody eats, the same deadlock stays.
        actix::clock::sleep(Duration::from_millis(50)).await;
        let later = group.snapshot().await.expect("round completes");
        assert_eq!(meals(&later), meals(&snap), "seed {seed}: somebody ate");
        assert_eq!(find_deadlocks(&later), deadlocks);
        assert!(
            WaitForGraph::from_snapshot(&later)
                .to_dot()
                .contains("color=red")
        );
        group.shutdown();
    }
    assert!(snapshots_total >= DEADLOCK_SEEDS);
}

/// Seeds and snapshots per seed for the no-false-positive test.
const ORDERED_SEEDS: u64 = 200;
const SNAPSHOTS_PER_SEED: u32 = 10;

#[actix::test]
async fn ordered_philosophers_are_never_reported() {
    // Busy philosophers: short thinking, so forks are contended and waits are frequent.
    let timing = Timing {
        think: (0, 1),
        reach: (0, 2),
        eat: (0, 1),
    };
    let (mut with_waits, mut satisfied, mut checked) = (0u64, 0u64, 0u64);
    for seed in 0..ORDERED_SEEDS {
        let group = dining::start(N, Order::Ordered, seed, timing, 2);
        let mut first_meals = None;
        let mut last = None;
        for _ in 0..SNAPSHOTS_PER_SEED {
            actix::clock::sleep(Duration::from_millis(1)).await;
            let snap = group.snapshot().await.expect("round completes");
            let graph = WaitForGraph::from_snapshot(&snap);
            let deadlocks = graph.deadlocks();
            assert!(
                deadlocks.is_empty(),
                "seed {seed}: false positive {deadlocks:?}\n{}",
                graph.to_dot()
            );
            let waits = graph.waits();
            with_waits += u64::from(!waits.is_empty());
            satisfied += waits.iter().filter(|w| w.2.is_satisfied()).count() as u64;
            checked += 1;
            first_meals.get_or_insert_with(|| meals(&snap).iter().sum::<u64>());
            last = Some(snap);
        }
        // Independent of the detector: the system makes progress.
        let last = last.expect("snapshots taken");
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut eaten = meals(&last).iter().sum::<u64>();
        while eaten <= first_meals.unwrap_or(0) && Instant::now() < deadline {
            actix::clock::sleep(Duration::from_millis(5)).await;
            eaten = meals(&group.snapshot().await.unwrap()).iter().sum();
        }
        assert!(eaten > first_meals.unwrap_or(0), "seed {seed}: no progress");
        group.shutdown();
    }
    assert_eq!(checked, ORDERED_SEEDS * SNAPSHOTS_PER_SEED as u64);
    // The detector had real graphs to look at, including waits satisfied in flight.
    assert!(
        with_waits > checked / 4,
        "{with_waits} of {checked} snapshots had waits"
    );
    assert!(
        satisfied > 0,
        "no wait was ever satisfied by an in-flight message"
    );
    eprintln!(
        "ordered: {ORDERED_SEEDS} seeds, {checked} snapshots, {with_waits} with waits, \
         {satisfied} waits satisfied in flight, no deadlock reported"
    );
}

#[actix::test]
async fn a_monitor_with_no_deadlock_catches_the_deadlock_and_only_it() {
    use actix_snapshot::deadlock::no_deadlock;
    use actix_snapshot::monitor::{Monitor, MonitorEvent};
    use futures::StreamExt;

    // Left-first: the monitor reports the deadlock; the snapshot it hands back is stuck.
    let group = dining::start(N, Order::LeftFirst, 42, Timing::default(), 2);
    let mut monitor = Monitor::builder(group.clone())
        .every(Duration::from_millis(2))
        .check("no deadlock", no_deadlock)
        .stop_on_violation(true)
        .start()
        .expect("monitor starts");
    let mut events = monitor.events().unwrap();
    let event = actix::clock::timeout(Duration::from_secs(20), events.next())
        .await
        .expect("a deadlock within 20 s");
    let Some(MonitorEvent::Violation(report)) = event else {
        panic!("expected a violation, got {event:?}");
    };
    assert!(
        report.violation.message.contains("P0 -> F1 -> P1"),
        "{}",
        report.violation.message
    );
    assert_stuck_by_the_books(&report.snapshot);
    group.shutdown();

    // Ordered: hundreds of snapshots, no report.
    let timing = Timing {
        think: (0, 1),
        reach: (0, 2),
        eat: (0, 1),
    };
    let group = dining::start(N, Order::Ordered, 42, timing, 2);
    let monitor = Monitor::builder(group.clone())
        .every(Duration::from_millis(1))
        .check("no deadlock", no_deadlock)
        .start()
        .expect("monitor starts");
    while monitor.stats().checked < 300 {
        actix::clock::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(monitor.stats().violations, 0);
    group.shutdown();
}

#[cfg(feature = "cli")]
#[test]
fn inspector_graph_command_prints_waits_deadlocks_and_dot() {
    use actix_snapshot::inspect::{Cli, run};
    use clap::Parser;

    // n0 <-> n1 deadlocked; n2 waits for n3, which has a message on its way to n2.
    let snap = scenario(&[(0, 1), (1, 0), (2, 3)], &[(3, 2, 1)]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("waits.snap");
    std::fs::write(&file, snap.to_bytes()).unwrap();
    let path = file.to_str().unwrap();

    let mut out = Vec::new();
    run(
        &Cli::parse_from(["actix-snapshot", "graph", path]),
        &mut out,
    )
    .unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("3 waits"), "{text}");
    assert!(
        text.contains("n2 -> n3  (satisfied: 1 in flight)"),
        "{text}"
    );
    assert!(text.contains("DEADLOCK: n0 -> n1 -> n0"), "{text}");
    assert!(!text.contains("no deadlock"), "{text}");

    let mut out = Vec::new();
    run(
        &Cli::parse_from(["actix-snapshot", "graph", path, "--dot"]),
        &mut out,
    )
    .unwrap();
    let dot = String::from_utf8(out).unwrap();
    assert_eq!(dot, WaitForGraph::from_snapshot(&snap).to_dot());
    assert!(dot.starts_with("digraph"), "{dot}");

    // A corrupt file is an error with exit code 1, not a panic.
    std::fs::write(&file, &snap.to_bytes()[..30]).unwrap();
    let err = run(
        &Cli::parse_from(["actix-snapshot", "graph", path]),
        &mut Vec::new(),
    )
    .unwrap_err();
    assert_eq!(err.exit_code(), 1);
}
