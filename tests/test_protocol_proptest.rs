//! Property test of the snapshot protocol's pure machines ([`NodeCore`] + [`RoundTracker`])
//! under random interleavings: the world of `tests/sim/mod.rs` (read its module docs), larger
//! than the exhaustive model of `tests/test_model.rs` can afford — 2 to 8 initial nodes, up to
//! 8 tokens, up to 60 sends, up to 6 rounds with a cap of 1 to 3 concurrent ones, up to 3 child
//! spawns and 3 outside spawns, 2 stops, 1 panic, 2 aborts/timeouts, queued notes.
//!
//! [`NodeCore`]: actix_snapshot::protocol::NodeCore
//! [`RoundTracker`]: actix_snapshot::protocol::RoundTracker
//!
//! A case is a configuration plus a list of choices: each choice picks one of the events
//! enabled at that point (a delivery of any message, start or note; a send; a spawn; a stop; a
//! round start; an abort …). When the choices run out, the world *settles*: only deliveries
//! happen (the first one enabled each time), until none is left. After every step the same
//! ghost checks as the model's run (every completed round is a consistent cut, holds each
//! in-flight message exactly once, conserves the tokens; failures only for a reason; closed
//! rounds stay closed; the tracker's memory matches the live rounds and nodes); once settled,
//! no round may be open (no round hangs).
//!
//! Addresses travel in the group's messages ([`Addresses::Causal`]); with addresses leaked
//! through the environment (`leaked_child_addresses`) a round that a leaked message would make
//! wrong fails with `UntrackedAddress` instead, and that failure is accepted nowhere else.
//!
//! Controls: the same property with a broken shell (stale colors; children registered with
//! epoch 0; in-flight copies dropped) must fail, and proptest shrinks it to a short trace.
//!
//! `PROPTEST_CASES=<n>` sets the number of cases (default 256). The test prints how many
//! completed rounds were checked.

mod sim;

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, TestCaseError, TestError, TestRunner};
use sim::{Action, Addresses, Config, Notes, Outcome, Shell, Why, World};

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

/// A configuration and the choices that drive it.
#[derive(Debug, Clone)]
struct Case {
    cfg: Config,
    choices: Vec<u16>,
}

fn case(shell: Shell, addresses: Addresses) -> impl Strategy<Value = Case> {
    (2usize..=8, 1usize..=8).prop_flat_map(move |(nodes, tokens)| {
        (
            vec(0..nodes as u8, tokens),
            (0u8..=60, 0u8..=3, 0u8..=3, 0u8..=2, 0u8..=1),
            (1u8..=6, 1usize..=3, 0u8..=2, any::<bool>()),
            vec(any::<u16>(), 0..600),
        )
            .prop_map(
                move |(
                    holders,
                    (sends, child_spawns, outside_spawns, stops, panics),
                    (rounds, max_concurrent, aborts, gift),
                    choices,
                )| {
                    let mut cfg = Config::new(nodes, tokens);
                    cfg.tokens = holders;
                    cfg.max_nodes = nodes + (child_spawns + outside_spawns) as usize;
                    cfg.sends = sends;
                    cfg.child_spawns = child_spawns;
                    cfg.outside_spawns = outside_spawns;
                    cfg.stops = stops;
                    cfg.panics = panics;
                    cfg.rounds = rounds;
                    cfg.max_concurrent = max_concurrent;
                    cfg.aborts = aborts;
                    cfg.gift = gift;
                    cfg.addresses = addresses;
                    cfg.notes = Notes::Queued;
                    cfg.shell = shell;
                    Case { cfg, choices }
                },
            )
    })
}

/// What one case saw.
#[derive(Debug, Default)]
struct Stats {
    steps: u64,
    completed: u64,
    with_flight: u64,
    with_child: u64,
    after_stop: u64,
    failed_panic: u64,
    failed_abort: u64,
}

fn fail(cfg: &Config, taken: &[Action], why: &str) -> TestCaseError {
    TestCaseError::fail(format!(
        "{why}\n{cfg:?}\n{} steps:\n{}",
        taken.len(),
        sim::trace(cfg, taken)
    ))
}

/// The enabled action choice `k` picks. Aborts and timeouts get one chance in 16 (when
/// anything else is possible), so that most rounds have time to complete.
fn pick(k: u16, enabled: &[Action]) -> Action {
    let (give_up, rest): (Vec<Action>, Vec<Action>) = enabled.iter().partition(|a| a.is_give_up());
    let k = k as usize;
    if !give_up.is_empty() && (rest.is_empty() || k.is_multiple_of(16)) {
        give_up[k / 16 % give_up.len()]
    } else {
        rest[k % rest.len()]
    }
}

/// Runs one case: the choices, then the settling, with the checks after every step.
fn run(case: &Case) -> Result<Stats, TestCaseError> {
    let cfg = &case.cfg;
    let mut w = World::new(cfg);
    let mut taken = Vec::new();
    let mut enabled = Vec::new();
    let mut choices = case.choices.iter();
    loop {
        enabled.clear();
        w.enabled(cfg, &mut enabled);
        let next = match choices.next() {
            Some(&k) if !enabled.is_empty() => pick(k, &enabled),
            _ => match enabled.iter().find(|a| a.is_delivery()) {
                Some(&a) => a,
                None => break,
            },
        };
        taken.push(next);
        w.apply(cfg, next);
        if let Some((check, msg)) = w.errors.first() {
            return Err(fail(cfg, &taken, &format!("{check:?}: {msg}")));
        }
        if let Err(e) = w.structure(cfg) {
            return Err(fail(cfg, &taken, &format!("structure: {e}")));
        }
    }
    let open: Vec<_> = w.open_rounds().collect();
    if !open.is_empty() {
        return Err(fail(
            cfg,
            &taken,
            &format!("rounds {open:?} hang: nothing is left to deliver"),
        ));
    }
    let mut st = Stats {
        steps: taken.len() as u64,
        ..Stats::default()
    };
    for g in &w.rounds {
        match g.outcome {
            Outcome::Completed(seen) => {
                st.completed += 1;
                st.with_flight += seen.flight as u64;
                st.with_child += seen.child as u64;
                st.after_stop += seen.stopped as u64;
            }
            Outcome::Failed(Why::Panic) => st.failed_panic += 1,
            Outcome::Failed(_) => st.failed_abort += 1,
            Outcome::Open => {}
        }
    }
    Ok(st)
}

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(RunnerConfig {
        cases,
        failure_persistence: None,
        max_shrink_iters: 20_000,
        ..RunnerConfig::default()
    })
}

#[test]
fn protocol_checks_hold_under_random_interleavings() {
    let totals: [AtomicU64; 7] = Default::default();
    let result = runner(cases()).run(&case(Shell::Correct, Addresses::Causal), |c| {
        let st = run(&c)?;
        for (t, v) in totals.iter().zip([
            st.steps,
            st.completed,
            st.with_flight,
            st.with_child,
            st.after_stop,
            st.failed_panic,
            st.failed_abort,
        ]) {
            t.fetch_add(v, Relaxed);
        }
        Ok(())
    });
    let [steps, completed, flight, child, stop, panic, abort] = totals.map(|t| t.into_inner());
    println!(
        "{} cases, {steps} steps: {completed} completed rounds checked ({flight} with messages \
         in flight, {child} including a child, {stop} after a stop); failed: {panic} after a \
         panic, {abort} aborted or timed out",
        cases()
    );
    if let Err(e) = result {
        panic!("{e}");
    }
    assert!(completed > 0 && flight > 0, "the checks were vacuous");
}

/// Addresses leaked through the environment (see `leaked_child_address` in
/// `tests/test_model.rs`): a round that would miss a message fails with `UntrackedAddress`
/// instead; every completed round still passes every check.
#[test]
fn leaked_child_addresses() {
    // The schedule that leaks is rare among random ones: more cases than the default.
    let result = runner(cases().max(2_000)).run(&case(Shell::Correct, Addresses::Global), |c| {
        run(&c).map(|_| ())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// Runs the property with a broken shell: it must fail. Prints the shrunk counterexample.
fn must_fail(shell: Shell) {
    let result =
        runner(cases().max(256)).run(&case(shell, Addresses::Causal), |c| run(&c).map(|_| ()));
    match result {
        Err(TestError::Fail(reason, minimal)) => {
            let reason = reason.to_string();
            let steps = reason
                .lines()
                .find_map(|l| l.strip_suffix(" steps:"))
                .unwrap_or("?");
            println!(
                "{shell:?} caught: shrunk to {} initial nodes, {} tokens, {steps} steps\n{reason}",
                minimal.cfg.initial_nodes,
                minimal.cfg.tokens.len()
            );
        }
        other => panic!("the broken shell {shell:?} was not caught: {other:?}"),
    }
}

#[test]
fn broken_stale_color_is_caught() {
    must_fail(Shell::StaleColor);
}

#[test]
fn broken_child_epoch_zero_is_caught() {
    must_fail(Shell::ChildEpochZero);
}

#[test]
fn broken_skipped_late_copy_is_caught() {
    must_fail(Shell::SkipLateCopy);
}
