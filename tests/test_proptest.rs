//! Property tests on real actix groups: every snapshot is a consistent cut, whatever the
//! topology, the traffic and the overlap of rounds.
//!
//! `actix_groups_snapshot_consistent_cuts` runs real groups of actors (`tests/common`'s token
//! network, whose actors keep their own books) with random topologies of 2–12 nodes (random
//! directed link sets: cycles, self-loops, nodes without incoming or outgoing links), random
//! token traffic (random hop counts, some circulating forever, some injected while the rounds
//! run), 0–2 extra arbiters, and 1–3 waves of 1–5 overlapping rounds (every round starts at
//! all nodes; the second edition has no one-node initiation). Each case runs in its own actix
//! `System`; each snapshot is checked by `common::verify` against the actors' books: per link,
//! the recorded tokens are exactly those sent and not yet received, in send order (`Out`
//! sends from one handler thread are FIFO); every token is in exactly one place; ingress
//! offsets match the injections in the books.
//!
//! Topologies and workloads are generated as plain data, so failures shrink to small cases.
//! The pure protocol under random interleavings is checked in `test_protocol_proptest.rs`.
//! `PROPTEST_CASES=<n>` sets the number of cases (default 64).

mod common;

use std::collections::BTreeSet;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use actix_snapshot::SnapshotOptions;
use common::{Inject, verify};
use futures::future::join_all;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestError, TestRunner};

fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn config(default_cases: u32) -> Config {
    Config {
        cases: cases(default_cases),
        // Failures are reported with their minimal input in the panic message.
        failure_persistence: None,
        ..Config::default()
    }
}

/// Runs `test` over `strategy`; on failure panics with the shrunk input.
fn run<S: Strategy>(
    name: &str,
    config: Config,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) where
    S::Value: std::fmt::Debug,
{
    let mut runner = TestRunner::new(config);
    match runner.run(&strategy, test) {
        Ok(()) => {}
        Err(TestError::Fail(reason, minimal)) => {
            panic!("{name}: {reason}\nminimal failing case: {minimal:#?}")
        }
        Err(e) => panic!("{name}: {e}"),
    }
}

/// Directed links without duplicates (self-loops allowed), in generation order.
fn dedup_edges<T: Copy + Ord>(edges: Vec<(T, T)>) -> Vec<(T, T)> {
    let mut seen = BTreeSet::new();
    edges.into_iter().filter(|e| seen.insert(*e)).collect()
}

/// Hops of a token: a few, or forever.
fn hops() -> impl Strategy<Value = u32> {
    prop_oneof![3 => 0u32..30, 1 => Just(u32::MAX)]
}

/// Rounds started together, while more tokens are injected.
#[derive(Debug, Clone)]
struct Wave {
    /// How many rounds are started together (1–5).
    rounds: usize,
    /// Tokens (node, hops) injected while this wave's rounds run.
    late: Vec<(usize, u32)>,
}

#[derive(Debug, Clone)]
struct GroupCase {
    n: usize,
    edges: Vec<(u32, u32)>,
    /// Tokens (node, hops) injected before the first wave.
    early: Vec<(usize, u32)>,
    /// Waves of overlapping rounds, one after the other.
    waves: Vec<Wave>,
    arbiters: usize,
    /// Shifts token ids, which changes how tokens are routed.
    seed: u64,
}

fn group_case() -> impl Strategy<Value = GroupCase> {
    (2usize..=12)
        .prop_flat_map(|n| {
            let wave = (1usize..=5, vec((0..n, hops()), 0..=12))
                .prop_map(|(rounds, late)| Wave { rounds, late });
            (
                Just(n),
                vec((0..n as u32, 0..n as u32), 0..=2 * n + 2),
                vec((0..n, hops()), 0..=24),
                vec(wave, 1..=3),
                0usize..=2,
                0u64..1000,
            )
        })
        .prop_map(|(n, edges, early, waves, arbiters, seed)| {
            // Self-loops with endless tokens are kept: a node task yields its arbiter every
            // 4096 messages, so such a node cannot starve the others (it did before).
            let edges = dedup_edges(edges);
            GroupCase {
                n,
                edges,
                early,
                waves,
                arbiters,
                seed,
            }
        })
}

static GROUP_CASES: AtomicU64 = AtomicU64::new(0);
static GROUP_SNAPSHOTS: AtomicU64 = AtomicU64::new(0);
static GROUP_IN_FLIGHT: AtomicU64 = AtomicU64::new(0);
/// Coverage of the passing cases: [a node without incoming links, a node without outgoing
/// links, a self-loop, a cycle through two or more nodes, a wave of overlapping rounds].
static GROUP_SHAPES: [AtomicU64; 5] = [const { AtomicU64::new(0) }; 5];

/// Which of the `GROUP_SHAPES` features case `c` has.
fn shapes(c: &GroupCase) -> [bool; 5] {
    let has_in = |i: u32| c.edges.iter().any(|&(_, t)| t == i);
    let has_out = |i: u32| c.edges.iter().any(|&(f, _)| f == i);
    let mut g = petgraph::graph::DiGraph::<(), ()>::new();
    let nodes: Vec<_> = (0..c.n).map(|_| g.add_node(())).collect();
    for &(f, t) in c.edges.iter().filter(|(f, t)| f != t) {
        g.add_edge(nodes[f as usize], nodes[t as usize], ());
    }
    [
        (0..c.n as u32).any(|i| !has_in(i)),
        (0..c.n as u32).any(|i| !has_out(i)),
        c.edges.iter().any(|(f, t)| f == t),
        petgraph::algo::is_cyclic_directed(&g),
        c.waves.iter().any(|w| w.rounds >= 2),
    ]
}

fn panic_text(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "panic".to_string())
}

fn run_group_case(c: GroupCase) -> Result<(), TestCaseError> {
    actix::System::new().block_on(async move {
        let net = common::start(c.n, &c.edges, c.arbiters);
        let mut next_id = c.seed * 10_000;
        let mut inject = |node: usize, hops: u32| {
            next_id += 1;
            net.inject[node].send(Inject { id: next_id, hops }).is_ok()
        };
        for &(node, hops) in &c.early {
            prop_assert!(inject(node, hops), "node not running");
        }
        let mut snaps = Vec::new();
        for wave in &c.waves {
            let rounds = (0..wave.rounds).map(|_| {
                // Cases finish in milliseconds; a round that needs seconds is stuck.
                let opts = SnapshotOptions::default().timeout(Duration::from_secs(2));
                net.group.snapshot_with(opts)
            });
            let feeder = async {
                for &(node, hops) in &wave.late {
                    inject(node, hops);
                    actix::clock::sleep(Duration::from_micros(100)).await;
                }
            };
            let (done, ()) = futures::join!(join_all(rounds), feeder);
            snaps.extend(done);
        }
        // Check outside the System's tasks; a failed check must still shut the group down.
        let checked = catch_unwind(AssertUnwindSafe(|| {
            let mut ids = BTreeSet::new();
            let mut in_flight = 0;
            for (k, s) in snaps.iter().enumerate() {
                let s = s
                    .as_ref()
                    .unwrap_or_else(|e| panic!("round {k} failed: {e}"));
                in_flight += verify(s, c.n, &c.edges).0;
                assert!(ids.insert(s.id), "two rounds share id {}", s.id);
            }
            in_flight
        }));
        let stats = net.group.stats();
        net.group.shutdown();
        let in_flight = checked.map_err(|p| TestCaseError::fail(panic_text(p)))?;
        prop_assert_eq!(stats.completed, snaps.len() as u64);
        prop_assert_eq!(stats.in_progress, 0);
        GROUP_CASES.fetch_add(1, Relaxed);
        GROUP_SNAPSHOTS.fetch_add(snaps.len() as u64, Relaxed);
        GROUP_IN_FLIGHT.fetch_add(in_flight as u64, Relaxed);
        for (counter, has) in GROUP_SHAPES.iter().zip(shapes(&c)) {
            counter.fetch_add(u64::from(has), Relaxed);
        }
        Ok(())
    })
}

#[test]
fn actix_groups_snapshot_consistent_cuts() {
    let t0 = Instant::now();
    run("actix groups", config(64), group_case(), run_group_case);
    let (cases, snaps, in_flight) = (
        GROUP_CASES.load(Relaxed),
        GROUP_SNAPSHOTS.load(Relaxed),
        GROUP_IN_FLIGHT.load(Relaxed),
    );
    println!(
        "actix groups: {cases} cases, {snaps} snapshots checked, {in_flight} in-flight tokens \
         recorded, in {:.2?}",
        t0.elapsed()
    );
    let shapes: Vec<u64> = GROUP_SHAPES.iter().map(|c| c.load(Relaxed)).collect();
    println!(
        "actix groups coverage: cases with a node without incoming links {}, without \
         outgoing {}, a self-loop {}, a longer cycle {}, overlapping rounds {}",
        shapes[0], shapes[1], shapes[2], shapes[3], shapes[4]
    );
    assert!(snaps >= cases, "every case checks at least one snapshot");
    if cases >= 64 {
        assert!(
            shapes.iter().all(|&k| k > 0),
            "the generator misses a shape: {shapes:?}"
        );
    }
}
