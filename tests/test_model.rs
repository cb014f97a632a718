//! Exhaustive model checking of the per-node marker protocol
//! ([`actix_snapshot::protocol::NodeCore`]) with stateright.
//!
//! The model (see `tests/sim/mod.rs`) is a small network of `NodeCore`s joined by FIFO
//! channels. Its actions are every event that can happen next: deliver the head of any
//! channel, let a node's application send a token on one of its channels, inject a token from
//! outside, or let the start of a round reach one of its initiators. The checker explores
//! every interleaving of these. Rounds: one started by a single node (plus the nodes it cannot
//! reach, like the collector does) and one started at all nodes, overlapping in every way.
//!
//! Properties, checked against the applications' own books (their recorded states):
//! - always: no node reports a failure;
//! - always: every round that all nodes completed is a consistent cut (per channel the
//!   recorded tokens are exactly those sent before the sender's cut and received after the
//!   receiver's, tokens are conserved, ingress offsets match);
//! - always: when nothing can happen any more, every round has completed; and eventually
//!   every round completes;
//! - sometimes: a completed round recorded a token in flight (so the cut check is not vacuous).
//!
//! A model with a deliberately broken shell (markers sent after the next token) must violate
//! the cut property: that shows the check can fail.
//!
//! `MODEL_BIG=1` gives the applications more sends and injections (much larger state spaces).

mod sim;

use std::time::Instant;

use sim::{Init, Setup, Shell, Step, Topo, World, check_completed};
use stateright::{Checker, Model, Property};

struct SnapModel {
    setup: Setup,
    initial: u64,
}

impl SnapModel {
    fn new(setup: Setup) -> SnapModel {
        let initial = setup.tokens.iter().sum();
        SnapModel { setup, initial }
    }

    fn topo(&self) -> &Topo {
        &self.setup.topo
    }
}

impl Model for SnapModel {
    type State = World;
    type Action = Step;

    fn init_states(&self) -> Vec<World> {
        vec![World::new(&self.setup)]
    }

    fn actions(&self, state: &World, actions: &mut Vec<Step>) {
        state.enabled(self.topo(), actions);
    }

    fn next_state(&self, last: &World, action: Step) -> Option<World> {
        let mut next = last.clone();
        next.apply(self.topo(), action);
        Some(next)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always("no node fails a round", |_, s: &World| {
                s.failures.is_empty()
            }),
            Property::always(
                "every completed round is a consistent cut",
                |m: &SnapModel, s: &World| check_completed(s, m.topo(), m.initial).is_ok(),
            ),
            Property::always(
                "when nothing can happen, every round has completed",
                |m: &SnapModel, s: &World| !s.quiescent(m.topo()) || s.all_complete(),
            ),
            Property::eventually("every round completes", |_, s: &World| s.all_complete()),
            Property::sometimes(
                "a completed round records a token in flight",
                |m: &SnapModel, s: &World| {
                    s.completed().any(|(_, recs)| {
                        sim::check_round(m.topo(), &recs, m.initial)
                            .map(|i| i.in_flight > 0)
                            .unwrap_or(false)
                    })
                },
            ),
        ]
    }
}

fn big() -> bool {
    std::env::var("MODEL_BIG").is_ok_and(|v| v != "0")
}

/// Checks `setup` exhaustively, asserts every property, prints and returns the number of
/// unique states explored.
fn check(name: &str, setup: Setup) -> usize {
    let t0 = Instant::now();
    let checker = SnapModel::new(setup).checker().spawn_bfs().join();
    checker.assert_properties();
    let states = checker.unique_state_count();
    println!(
        "model {name}: {states} unique states ({} generated, max depth {}) in {:.2?}",
        checker.state_count(),
        checker.max_depth(),
        t0.elapsed()
    );
    states
}

fn setup(
    n: usize,
    edges: &[(usize, usize)],
    tokens: Vec<u64>,
    sends: Vec<u32>,
    injects: Vec<u32>,
    rounds: Vec<Init>,
) -> Setup {
    Setup {
        topo: Topo::new(n, edges),
        tokens,
        sends,
        injects,
        rounds,
        shell: Shell::Correct,
    }
}

#[test]
fn two_nodes_bidirectional() {
    let s = if big() { 3 } else { 2 };
    let states = check(
        "2 nodes, 0<->1",
        setup(
            2,
            &[(0, 1), (1, 0)],
            vec![1, 1],
            vec![s, s],
            vec![1, 0],
            vec![Init::Node(0), Init::AllNodes],
        ),
    );
    assert!(states > 1_000, "explored only {states} states");
}

#[test]
fn three_node_ring() {
    let s = if big() { 2 } else { 1 };
    let states = check(
        "3-ring 0->1->2->0",
        setup(
            3,
            &[(0, 1), (1, 2), (2, 0)],
            vec![1, 1, 0],
            vec![s, s, s],
            vec![0, 0, 1],
            vec![Init::Node(1), Init::AllNodes],
        ),
    );
    assert!(states > 1_000, "explored only {states} states");
}

#[test]
fn three_nodes_one_without_incoming_channels() {
    // n2 only sends (to n0); n0 <-> n1. A round started at n0 cannot reach n2 by markers,
    // so n2 is started directly, as the collector does.
    let s = if big() { 2 } else { 1 };
    let states = check(
        "3 nodes, 0<->1, 2->0",
        setup(
            3,
            &[(0, 1), (1, 0), (2, 0)],
            vec![1, 0, 1],
            vec![s, s, s],
            if big() { vec![0, 1, 0] } else { vec![0, 0, 0] },
            vec![Init::Node(0), Init::AllNodes],
        ),
    );
    assert!(states > 1_000, "explored only {states} states");
}

#[test]
fn two_nodes_with_a_self_loop() {
    // n0 -> n0 (a channel to itself), n0 <-> n1.
    let s = if big() { 3 } else { 2 };
    let states = check(
        "2 nodes, 0->0, 0<->1",
        setup(
            2,
            &[(0, 0), (0, 1), (1, 0)],
            vec![1, 1],
            vec![s, 1],
            vec![0, 0],
            vec![Init::Node(1), Init::AllNodes],
        ),
    );
    assert!(states > 1_000, "explored only {states} states");
}

#[test]
fn broken_shell_is_caught() {
    // Same two-node system, but the shell lets one token overtake its markers: the checker
    // must find a round whose cut is not consistent.
    let mut s = setup(
        2,
        &[(0, 1), (1, 0)],
        vec![1, 1],
        vec![2, 2],
        vec![0, 0],
        vec![Init::AllNodes],
    );
    s.shell = Shell::LateMarkers;
    let checker = SnapModel::new(s).checker().spawn_bfs().join();
    let path = checker
        .discovery("every completed round is a consistent cut")
        .expect("the broken shell produces an inconsistent cut");
    println!(
        "broken shell: counterexample of {} steps found among {} states",
        path.into_actions().len(),
        checker.unique_state_count()
    );
}
