//! Exhaustive model check of the snapshot protocol: the node machine ([`NodeCore`]) and the
//! round tracker ([`RoundTracker`]) together, with stateright.
//!
//! [`NodeCore`]: actix_snapshot::protocol::NodeCore
//! [`RoundTracker`]: actix_snapshot::protocol::RoundTracker
//!
//! The world being explored is `tests/sim/mod.rs` (read its module docs first): nodes running
//! a token-passing application, an unordered network, per-node FIFO note queues to the
//! tracker, unordered start requests, and events — round starts (two may overlap), aborts,
//! timeouts, child spawns inside a node's step, outside spawns, stops, panics. The model is a
//! plain [`Model`] whose actions are every event enabled in a state, so the checker explores
//! every interleaving and every reordering the protocol allows.
//!
//! Properties, judged against the model's own ghost account (never by asking the tracker):
//! - always: every completed round is a consistent cut (members = the nodes that existed at
//!   their cut; each record is the node's state at its cut; nothing received before a cut was
//!   sent after one);
//! - always: every completed round holds every in-flight message exactly once, and none to a
//!   non-member;
//! - always: every completed round conserves the tokens;
//! - always: rounds fail only when aborted, timed out or owed by a panicked node, and a round
//!   owed by a panicked node never completes;
//! - always: closed rounds stay closed and memory stays bounded (the tracker's open rounds are
//!   exactly the rounds not yet completed or failed, all above its watermark, within the cap;
//!   its members are the nodes not known to be gone; no node keeps undrained outputs; no
//!   `Closed` hint names an open round; no round is closed twice);
//! - always: no round hangs (when nothing but an abort or a timeout can happen, no round is
//!   open), and eventually every round is started and closed;
//! - sometimes (so the checks are not vacuous), per configuration: a completed round with a
//!   token in flight, one that includes a child, one with a node that stopped before its cut,
//!   one that includes a node spawned from outside while rounds ran, a round failed after a
//!   panic.
//!
//! Configurations (each a test; every one has two overlapping rounds unless said otherwise):
//!
//! | test | world |
//! |------|-------|
//! | `three_static_nodes_queued_notes` | 3 nodes, 1 token, 2 sends, queued notes |
//! | `three_static_nodes_three_tokens` | 3 nodes, 3 tokens, 2 sends, immediate notes |
//! | `spawn_child_spawn_outside_and_stop_queued_notes` | 1 node, 1 token, 2 sends, a child spawn (maybe handed the token), an outside spawn, a stop; queued notes, one round |
//! | `spawn_child_spawn_outside_and_stop_two_rounds` | the same with two rounds, immediate notes |
//! | `panic_and_abort_queued_notes` | 2 nodes, 1 token, 2 sends, a panic, an abort or a timeout, queued notes |
//! | `panic_and_abort_three_nodes` | 3 nodes, 1 token, 2 sends, a panic, an abort or a timeout, immediate notes |
//! | `leaked_child_address` | 2 nodes, a child spawn, 1 send to any existing id (addresses leaked through the environment), one round |
//!
//! Queued notes explore every order in which notes of different nodes reach the tracker;
//! immediate notes (what the actix shell does) afford more nodes and tokens. A node addresses
//! a child only once it could have learned its address from the group's messages
//! ([`Addresses::Causal`]), except in `leaked_child_address`, which shows that a message sent
//! there through an address leaked outside the group's messages is lost from the snapshot.
//!
//! Addresses that leak through the environment (`leaked_child_address`): a message sent before
//! the sender's cut to a child born after it must fail the round with `UntrackedAddress`
//! (a round must never complete without it), and that failure is accepted nowhere else.
//!
//! Broken shells ([`Shell`]) must be caught (`broken_*`, breadth first, shortest
//! counterexample printed): stale colors and children registered with epoch 0 by the
//! consistency check, dropped in-flight copies by "no round hangs".
//!
//! Each configuration prints its unique state count and time, and any counterexample as a
//! replayed trace. `MODEL_BIG=1` raises the bounds (more nodes, tokens, sends or rounds; depth
//! first; minutes instead of seconds). `custom` (ignored) checks any configuration given by
//! environment variables. Run with
//! `cargo test --release --test test_model -- --nocapture`.

mod sim;

use std::collections::BTreeSet;
use std::time::Instant;

use sim::{Action, Addresses, Check, Config, Notes, Outcome, Shell, Why, World};
use stateright::{Checker, HasDiscoveries, Model, Property};

const CUT: &str = "every completed round is a consistent cut";
const IN_FLIGHT: &str = "every completed round holds each in-flight message exactly once";
const CONSERVED: &str = "every completed round conserves the tokens";
const FAILURES: &str = "rounds fail only when aborted, timed out or owed by a panicked node";
const CLOSED: &str = "closed rounds stay closed and memory stays bounded";
const NO_HANG: &str = "no round hangs: when only aborts remain, no round is open";
const ALL_CLOSED: &str = "eventually every round is started and closed";

const S_FLIGHT: &str = "a completed round has a token in flight";
const S_CHILD: &str = "a completed round includes a child";
const S_OUTSIDER: &str = "a completed round includes a node spawned from outside meanwhile";
const S_STOP: &str = "a completed round after a stop";
const S_TOMBSTONE: &str = "a completed round has a message to a tombstone in flight";
const S_PANIC: &str = "a round failed after a panic";
const S_LEAK: &str = "a round failed for a message through a leaked address";

struct SnapModel {
    cfg: Config,
    /// The `sometimes` properties this configuration must exhibit.
    sometimes: Vec<&'static str>,
}

impl Model for SnapModel {
    type State = World;
    type Action = Action;

    fn init_states(&self) -> Vec<World> {
        vec![World::new(&self.cfg)]
    }

    fn actions(&self, state: &World, actions: &mut Vec<Action>) {
        state.enabled(&self.cfg, actions);
    }

    fn next_state(&self, last: &World, action: Action) -> Option<World> {
        let mut next = last.clone();
        next.apply(&self.cfg, action);
        Some(next)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        let mut p = vec![
            Property::always(CUT, |_, s: &World| !s.violates(Check::Cut)),
            Property::always(IN_FLIGHT, |_, s: &World| !s.violates(Check::InFlight)),
            Property::always(CONSERVED, |_, s: &World| !s.violates(Check::Conservation)),
            Property::always(FAILURES, |_, s: &World| !s.violates(Check::Failure)),
            Property::always(CLOSED, |m: &SnapModel, s: &World| {
                !s.violates(Check::Closed) && s.structure(&m.cfg).is_ok()
            }),
            Property::always(NO_HANG, |m: &SnapModel, s: &World| {
                !s.errors.is_empty() || !s.quiescent(&m.cfg) || s.open_rounds().next().is_none()
            }),
            // (A world with a violation is terminal; the violation is reported above.)
            Property::eventually(ALL_CLOSED, |_, s: &World| {
                !s.errors.is_empty() || s.left.rounds == 0 && s.open_rounds().next().is_none()
            }),
        ];
        for &name in &self.sometimes {
            let cond: fn(&SnapModel, &World) -> bool = match name {
                S_FLIGHT => |_, s| s.some_completed(|x| x.flight),
                S_CHILD => |_, s| s.some_completed(|x| x.child),
                S_OUTSIDER => |_, s| s.some_completed(|x| x.outsider),
                S_STOP => |_, s| s.some_completed(|x| x.stopped),
                S_TOMBSTONE => |_, s| s.some_completed(|x| x.to_tombstone),
                S_PANIC => |_, s| {
                    s.rounds
                        .iter()
                        .any(|g| g.outcome == Outcome::Failed(Why::Panic))
                },
                S_LEAK => |_, s| {
                    s.rounds
                        .iter()
                        .any(|g| g.outcome == Outcome::Failed(Why::Leak))
                },
                other => panic!("unknown property {other}"),
            };
            p.push(Property::sometimes(name, cond));
        }
        p
    }
}

fn big() -> bool {
    std::env::var("MODEL_BIG").is_ok_and(|v| v != "0")
}

/// Prints a discovery of `property` (if any) with a replayed trace; returns its length.
fn show<C: Checker<SnapModel>>(checker: &C, cfg: &Config, property: &'static str) -> Option<usize> {
    let path = checker.discovery(property)?;
    let actions = path.into_actions();
    println!(
        "  {property}: {} steps\n{}",
        actions.len(),
        sim::trace(cfg, &actions)
    );
    Some(actions.len())
}

/// Explores every state of `cfg`, prints the state count and time, and asserts every
/// property (printing the counterexample traces first).
fn check(name: &str, cfg: Config, sometimes: &[&'static str]) -> usize {
    let t0 = Instant::now();
    let model = SnapModel {
        cfg: cfg.clone(),
        sometimes: sometimes.to_vec(),
    };
    // Breadth first finds the shortest counterexamples; depth first keeps only the current
    // path in memory, which the large (`MODEL_BIG`) state spaces need.
    let builder = model.checker().threads(2);
    if big() {
        verdict(name, &cfg, builder.spawn_dfs().join(), t0)
    } else {
        verdict(name, &cfg, builder.spawn_bfs().join(), t0)
    }
}

/// Prints the state count and any counterexample, then asserts every property.
fn verdict(name: &str, cfg: &Config, checker: impl Checker<SnapModel>, t0: Instant) -> usize {
    let states = checker.unique_state_count();
    println!(
        "model {name}: {states} unique states ({} generated, max depth {}) in {:.2?}",
        checker.state_count(),
        checker.max_depth(),
        t0.elapsed()
    );
    let mut broken = Vec::new();
    for p in [
        CUT, IN_FLIGHT, CONSERVED, FAILURES, CLOSED, NO_HANG, ALL_CLOSED,
    ] {
        if show(&checker, cfg, p).is_some() {
            broken.push(p);
        }
    }
    assert!(broken.is_empty(), "{name}: counterexamples to {broken:?}");
    checker.assert_properties();
    states
}

/// Runs a model that must break `property`; returns the counterexample's length.
fn must_break(name: &str, cfg: Config, property: &'static str) -> usize {
    let t0 = Instant::now();
    let model = SnapModel {
        cfg: cfg.clone(),
        sometimes: Vec::new(),
    };
    let checker = model
        .checker()
        .threads(2)
        .finish_when(HasDiscoveries::AnyOf(BTreeSet::from([property])))
        .spawn_bfs()
        .join();
    println!(
        "broken model {name}: {} unique states in {:.2?}",
        checker.unique_state_count(),
        t0.elapsed()
    );
    show(&checker, &cfg, property)
        .unwrap_or_else(|| panic!("{name}: the broken shell was not caught by: {property}"))
}

/// A configuration: `nodes` initial nodes, `tokens` tokens, `sends` sends, 2 rounds (cap 2).
fn base(nodes: usize, tokens: usize, sends: u8, notes: Notes) -> Config {
    let mut c = Config::new(nodes, tokens);
    c.sends = sends;
    c.rounds = 2;
    c.notes = notes;
    c
}

/// Adds a child spawn (which may hand over a token), an outside spawn and a stop.
fn with_spawns_and_stop(mut c: Config) -> Config {
    c.max_nodes = c.initial_nodes + 2;
    c.child_spawns = 1;
    c.outside_spawns = 1;
    c.stops = 1;
    c.gift = true;
    c.addresses = Addresses::Causal;
    c
}

/// Adds a panic and an abort or a timeout.
fn with_panic_and_abort(mut c: Config) -> Config {
    c.panics = 1;
    c.aborts = 1;
    c
}

#[test]
fn three_static_nodes_queued_notes() {
    let c = if big() {
        base(3, 3, 3, Notes::Queued)
    } else {
        base(3, 1, 2, Notes::Queued)
    };
    check("3 static nodes, queued notes", c, &[S_FLIGHT]);
}

#[test]
fn three_static_nodes_three_tokens() {
    let c = base(3, 3, if big() { 3 } else { 2 }, Notes::Immediate);
    check("3 static nodes, 3 tokens, immediate notes", c, &[S_FLIGHT]);
}

#[test]
fn spawn_child_spawn_outside_and_stop_queued_notes() {
    let mut c = with_spawns_and_stop(base(1, 1, 2, Notes::Queued));
    if !big() {
        c.rounds = 1;
    }
    check(
        "child spawn + outside spawn + stop, queued notes",
        c,
        &[S_FLIGHT, S_CHILD, S_OUTSIDER, S_STOP, S_TOMBSTONE],
    );
}

#[test]
fn spawn_child_spawn_outside_and_stop_two_rounds() {
    let c = if big() {
        with_spawns_and_stop(base(2, 1, 2, Notes::Immediate))
    } else {
        with_spawns_and_stop(base(1, 1, 2, Notes::Immediate))
    };
    check(
        "child spawn + outside spawn + stop, 2 rounds, immediate notes",
        c,
        &[S_FLIGHT, S_CHILD, S_OUTSIDER, S_STOP, S_TOMBSTONE],
    );
}

#[test]
fn panic_and_abort_queued_notes() {
    let c = if big() {
        with_panic_and_abort(base(3, 2, 2, Notes::Queued))
    } else {
        with_panic_and_abort(base(2, 1, 2, Notes::Queued))
    };
    check(
        "panic + abort/timeout, queued notes",
        c,
        &[S_FLIGHT, S_PANIC],
    );
}

#[test]
fn panic_and_abort_three_nodes() {
    let c = with_panic_and_abort(base(3, if big() { 3 } else { 1 }, 2, Notes::Immediate));
    check(
        "panic + abort/timeout, 3 nodes, immediate notes",
        c,
        &[S_FLIGHT, S_PANIC],
    );
}

/// A node may send to a child whose address it got from outside the group's messages (the
/// group's registry: `SnapshotGroup::addr`, or any shared map), before it recorded the round
/// the child was born after. Such a message belongs nowhere in the cut: the round must fail
/// with `UntrackedAddress` (and only for such a message), never complete without it.
#[test]
fn leaked_child_address() {
    let mut c = base(2, 1, 1, Notes::Queued);
    c.rounds = 1;
    c.max_nodes = 3;
    c.child_spawns = 1;
    c.addresses = Addresses::Global;
    check("child address leaked through the environment", c, &[S_LEAK]);
}

#[test]
fn broken_stale_color_is_caught() {
    let mut c = Config::new(2, 2);
    c.sends = 2;
    c.shell = Shell::StaleColor;
    let len = must_break("stale color", c, CUT);
    println!("stale color: counterexample of {len} steps");
}

#[test]
fn broken_child_epoch_zero_is_caught() {
    let mut c = Config::new(1, 1);
    c.max_nodes = 2;
    c.child_spawns = 1;
    c.gift = true;
    c.sends = 1;
    c.shell = Shell::ChildEpochZero;
    let len = must_break("child epoch 0", c, CUT);
    println!("child epoch 0: counterexample of {len} steps");
}

#[test]
fn broken_skipped_late_copy_is_caught() {
    let mut c = Config::new(2, 1);
    c.sends = 1;
    c.shell = Shell::SkipLateCopy;
    let len = must_break("skipped late copy", c, NO_HANG);
    println!("skipped late copy: counterexample of {len} steps");
}

/// Any configuration, from environment variables (defaults in brackets): `N` initial nodes
/// [3], `T` tokens [2], `S` sends [2], `R` rounds [2], `CAP` concurrent rounds [2], `C` child
/// spawns [0], `O` outside spawns [0], `ST` stops [0], `P` panics [0], `A` aborts/timeouts
/// [0], `G=1` gifts, `IMM=1` immediate notes, `GLOBAL=1` global addresses.
/// `cargo test --release --test test_model -- --ignored --nocapture custom`
#[test]
#[ignore]
fn custom() {
    let v = |k: &str, d: u8| std::env::var(k).map_or(d, |x| x.parse().expect("a number"));
    let mut c = Config::new(v("N", 3) as usize, v("T", 2) as usize);
    c.sends = v("S", 2);
    c.rounds = v("R", 2);
    c.max_concurrent = v("CAP", 2) as usize;
    c.child_spawns = v("C", 0);
    c.outside_spawns = v("O", 0);
    c.stops = v("ST", 0);
    c.panics = v("P", 0);
    c.aborts = v("A", 0);
    c.gift = v("G", 0) == 1;
    c.max_nodes = c.initial_nodes + (c.child_spawns + c.outside_spawns) as usize;
    if v("IMM", 0) == 1 {
        c.notes = Notes::Immediate;
    }
    if v("GLOBAL", 0) == 0 {
        c.addresses = Addresses::Causal;
    }
    check("custom", c, &[]);
}
