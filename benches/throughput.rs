//! What the library costs: message throughput of plain actix against the same workload run
//! through a group (the same actors made nodes with `#[derive(Snapshot)]`, sending over
//! `Out<M>` links), with no snapshot running and while messages are being recorded; and how
//! fast a snapshot encodes and decodes. (The `wrapped_*` variant names date from the first
//! edition, whose nodes ran inside a wrapper actor; they are kept so that results compare.)
//!
//! Run with `cargo bench --bench throughput` (add `-- --quick` for a shorter run). Besides
//! criterion's own report, the bench prints each variant's throughput as a ratio against
//! plain actix measured in the same run, and writes them to
//! `$CARGO_TARGET_DIR/bench-results/throughput.json` (default `target/`).
//!
//! Workloads (see `benches/workload/mod.rs`; every variant of one workload runs the same
//! actors' logic on the same number of arbiter threads, the harness and the snapshot
//! tracker's waiters on the main thread):
//!
//! - `ring8_a1`, `ring100_a1`, `ring100_a2`: actors in a ring on one or two arbiters; 8
//!   actors with 64 tokens of 1,600 hops (102,464 messages per iteration), or 100 actors with
//!   1,000 tokens of 100 hops (101,000). Variants: `plain_actix` (`Addr::do_send`),
//!   `wrapped_idle` (no snapshot), `wrapped_continuous` (snapshots back to back: a round is
//!   open nearly all the time, so messages change color and late ones are recorded).
//! - `fan_in` (one arbiter): 8 producers each send a burst of 12,800 messages to one sink
//!   (102,400 per iteration). Variants: `plain_actix`, `wrapped_idle`, `wrapped_recording`:
//!   each iteration holds a round open on purpose so that the sink records *every* message
//!   of the iteration (a blocker node holds the arbiter while the bursts and then the round's
//!   start messages are queued: the sink records first, each producer sends its whole burst
//!   before it records; see `SnapNet::start`); each round's recorded count is checked
//!   against the messages sent. The time is measured from the moment the blocker lets go.
//!   (The first edition held the round with one-node initiation at the sink and a blocked
//!   marker path; initiation is gone, every round starts at all nodes.)
//! - `snapshot_format`: `GlobalSnapshot::to_bytes` / `from_bytes` and the typed views
//!   `states::<A>()` / `in_flight::<M>()` on a snapshot of a 100-actor ring with 10,000
//!   tokens circulating (throughput in bytes for the format, in states / messages decoded
//!   for the views).
//!
//! JSON fields (one object per variant): `bench`, `variant`, `messages`, `seconds`,
//! `msgs_per_s`, `ratio_vs_plain` (this variant's msgs/s over `plain_actix` of the same
//! workload), `rounds` (snapshot rounds completed while measuring), `recorded_msgs`
//! (in-flight messages those rounds recorded).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use actix::SystemRunner;
use actix_snapshot::{GlobalSnapshot, NodeId, SnapshotOptions};
use criterion::{BenchmarkGroup, Criterion, Throughput, measurement::WallTime};

mod workload;
use workload::{Finish, Hold, PlainNet, SNode, Shape, SnapNet, Tok};

/// A ring workload: actors, tokens, hops per token, arbiters, criterion group name.
#[derive(Clone, Copy)]
struct RingSpec {
    n: usize,
    tokens: u64,
    hops: u64,
    arbiters: usize,
    name: &'static str,
}

impl RingSpec {
    fn msgs(&self) -> u64 {
        self.tokens * (self.hops + 1)
    }
}

const RINGS: [RingSpec; 3] = [
    RingSpec {
        n: 8,
        tokens: 64,
        hops: 1_600,
        arbiters: 1,
        name: "ring8_a1",
    },
    RingSpec {
        n: 100,
        tokens: 1_000,
        hops: 100,
        arbiters: 1,
        name: "ring100_a1",
    },
    RingSpec {
        n: 100,
        tokens: 1_000,
        hops: 100,
        arbiters: 2,
        name: "ring100_a2",
    },
];

const FAN_PRODUCERS: usize = 8;
const FAN_BURST: u64 = 12_800;
const FAN_MSGS: u64 = FAN_PRODUCERS as u64 * FAN_BURST;

#[derive(Default, Clone)]
struct Tally {
    messages: u64,
    time: Duration,
    rounds: u64,
    recorded: u64,
}

static TALLY: Mutex<BTreeMap<(&'static str, &'static str), Tally>> = Mutex::new(BTreeMap::new());

fn tally(bench: &'static str, variant: &'static str, f: impl FnOnce(&mut Tally)) {
    let mut t = TALLY.lock().unwrap_or_else(PoisonError::into_inner);
    f(t.entry((bench, variant)).or_default());
}

/// Runs `iters` iterations of `one` (which returns the time of its workload), tallies them.
fn timed<F: FnMut() -> Duration>(
    bench: &'static str,
    variant: &'static str,
    msgs: u64,
    iters: u64,
    mut one: F,
) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        total += one();
    }
    tally(bench, variant, |t| {
        t.messages += msgs * iters;
        t.time += total;
    });
    total
}

// The round / snapshot loop is spawned inside `block_on` and its handle awaited later,
// while the timed workload runs: returning the handle from the async block is the point.
#[allow(clippy::async_yields_async)]
fn ring(g: &mut BenchmarkGroup<'_, WallTime>, sys: &SystemRunner, spec: RingSpec) {
    let (bench, msgs) = (spec.name, spec.msgs());
    let finish = Arc::new(Finish::default());
    let plain = sys.block_on(async {
        PlainNet::start(Shape::Ring, spec.n, spec.arbiters, finish.clone(), false)
    });
    g.bench_function("plain_actix", |b| {
        b.iter_custom(|iters| {
            timed(bench, "plain_actix", msgs, iters, || {
                sys.block_on(async {
                    let t0 = Instant::now();
                    let done = finish.arm(spec.tokens);
                    plain.inject(spec.tokens, spec.hops);
                    let _ = done.await;
                    t0.elapsed()
                })
            })
        })
    });
    plain.shutdown();

    let net = sys.block_on(async {
        SnapNet::start(
            Shape::Ring,
            spec.n,
            spec.arbiters,
            finish.clone(),
            false,
            false,
        )
    });
    let run = |net: &SnapNet| {
        sys.block_on(async {
            let t0 = Instant::now();
            let done = finish.arm(spec.tokens);
            net.inject(spec.tokens, spec.hops);
            let _ = done.await;
            t0.elapsed()
        })
    };
    g.bench_function("wrapped_idle", |b| {
        b.iter_custom(|iters| timed(bench, "wrapped_idle", msgs, iters, || run(&net)))
    });
    g.bench_function("wrapped_continuous", |b| {
        b.iter_custom(|iters| {
            let stop = Arc::new(AtomicBool::new(false));
            let (rounds, recorded) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
            let looper = {
                let (group, stop) = (net.group.clone(), Arc::clone(&stop));
                let (rounds, recorded) = (Arc::clone(&rounds), Arc::clone(&recorded));
                sys.block_on(async move {
                    actix::spawn(async move {
                        while !stop.load(Ordering::SeqCst) {
                            if let Ok(s) = group.snapshot().await {
                                rounds.fetch_add(1, Ordering::Relaxed);
                                recorded.fetch_add(s.in_flight_count() as u64, Ordering::Relaxed);
                            }
                        }
                    })
                })
            };
            let t = timed(bench, "wrapped_continuous", msgs, iters, || run(&net));
            stop.store(true, Ordering::SeqCst);
            let _ = sys.block_on(looper);
            tally(bench, "wrapped_continuous", |t| {
                t.rounds += rounds.load(Ordering::Relaxed);
                t.recorded += recorded.load(Ordering::Relaxed);
            });
            t
        })
    });
    net.shutdown();
}

fn fan_in(g: &mut BenchmarkGroup<'_, WallTime>, sys: &SystemRunner) {
    let finish = Arc::new(Finish::default());
    let n = FAN_PRODUCERS + 1;
    let plain = sys.block_on(async { PlainNet::start(Shape::FanIn, n, 1, finish.clone(), false) });
    g.bench_function("plain_actix", |b| {
        b.iter_custom(|iters| {
            timed("fan_in", "plain_actix", FAN_MSGS, iters, || {
                sys.block_on(async {
                    let t0 = Instant::now();
                    let done = finish.arm(FAN_MSGS);
                    for a in &plain.addrs[1..] {
                        a.do_send(workload::Burst { count: FAN_BURST });
                    }
                    let _ = done.await;
                    t0.elapsed()
                })
            })
        })
    });
    plain.shutdown();

    let run = |net: &SnapNet| {
        sys.block_on(async {
            let t0 = Instant::now();
            let done = finish.arm(FAN_MSGS);
            for p in &net.bursts {
                p.send(workload::Burst { count: FAN_BURST })
                    .expect("producer runs");
            }
            let _ = done.await;
            t0.elapsed()
        })
    };
    let net =
        sys.block_on(async { SnapNet::start(Shape::FanIn, n, 1, finish.clone(), false, false) });
    g.bench_function("wrapped_idle", |b| {
        b.iter_custom(|iters| timed("fan_in", "wrapped_idle", FAN_MSGS, iters, || run(&net)))
    });
    net.shutdown();

    let net =
        sys.block_on(async { SnapNet::start(Shape::FanIn, n, 1, finish.clone(), true, false) });
    let hb = net.holdback.as_ref().expect("hold-back parts");
    let opts = SnapshotOptions::default().timeout(Duration::from_secs(600));
    // One held round: returns the time from the gate opening to the last token handled, and
    // the round's snapshot.
    let held = || {
        hb.gate.store(false, Ordering::SeqCst);
        hb.sink_recorded.store(false, Ordering::SeqCst);
        hb.hold.send(Hold).expect("blocker runs");
        while !hb.holding.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_micros(50));
        }
        // The arbiter is blocked: bursts, then the round's starts, are queued in that order.
        let done = finish.arm(FAN_MSGS);
        for p in &net.bursts {
            p.send(workload::Burst { count: FAN_BURST })
                .expect("producer runs");
        }
        let group = net.group.clone();
        sys.block_on(async move {
            let mut round = Box::pin(async move { group.snapshot_with(opts).await });
            // The first poll starts the round (queues its start messages) and cannot finish
            // it: no node can record while the arbiter is blocked.
            assert!(futures::poll!(round.as_mut()).is_pending());
            let t0 = Instant::now();
            hb.gate.store(true, Ordering::SeqCst);
            let _ = done.await;
            let t = t0.elapsed();
            (t, round.await.expect("held round completes once released"))
        })
    };
    g.bench_function("wrapped_recording", |b| {
        b.iter_custom(|iters| {
            let mut recorded = 0;
            let t = timed("fan_in", "wrapped_recording", FAN_MSGS, iters, || {
                let (t, snap) = held();
                assert!(hb.sink_recorded.load(Ordering::SeqCst), "the sink recorded");
                assert_eq!(
                    snap.in_flight_count() as u64,
                    FAN_MSGS,
                    "the held round must record every message sent while it was open"
                );
                assert!(
                    snap.paths
                        .iter()
                        .all(|p| p.to == NodeId(0) && p.from != NodeId(0)),
                    "every recorded message goes from a producer to the sink"
                );
                recorded += snap.in_flight_count() as u64;
                t
            });
            tally("fan_in", "wrapped_recording", |t| {
                t.rounds += iters;
                t.recorded += recorded;
            });
            t
        })
    });
    net.shutdown();
}

fn format(c: &mut Criterion, sys: &SystemRunner) {
    let finish = Arc::new(Finish::default());
    let snap: GlobalSnapshot = sys.block_on(async {
        let net = SnapNet::start(Shape::Ring, 100, 1, finish, false, false);
        net.inject(10_000, workload::FOREVER);
        actix::clock::sleep(Duration::from_millis(100)).await;
        let snap = net.group.snapshot().await.expect("snapshot of the ring");
        net.shutdown();
        snap
    });
    let bytes = snap.to_bytes();
    println!(
        "snapshot_format: {} nodes, {} paths, {} in-flight messages, {} bytes encoded",
        snap.nodes.len(),
        snap.paths.len(),
        snap.in_flight_count(),
        bytes.len()
    );
    let mut g = c.benchmark_group("snapshot_format");
    g.throughput(Throughput::Bytes(bytes.len() as u64));
    g.bench_function("to_bytes", |b| {
        b.iter(|| std::hint::black_box(&snap).to_bytes())
    });
    g.bench_function("from_bytes", |b| {
        b.iter(|| GlobalSnapshot::from_bytes(std::hint::black_box(&bytes)).expect("valid"))
    });
    g.throughput(Throughput::Elements(snap.nodes.len() as u64));
    g.bench_function("states_view", |b| {
        b.iter(|| {
            snap.states::<SNode>()
                .expect("typed view")
                .map(|s| s.handled)
                .sum::<u64>()
        })
    });
    g.throughput(Throughput::Elements(snap.in_flight_count() as u64));
    g.bench_function("in_flight_view", |b| {
        b.iter(|| {
            snap.in_flight::<Tok>()
                .expect("typed view")
                .map(|t| t.id)
                .sum::<u64>()
        })
    });
    g.finish();
}

/// Prints the ratios and writes them to `bench-results/throughput.json` (to
/// `bench-results/smoke/` when not run by `cargo bench`: `cargo test --benches` runs each
/// bench once in a debug build, whose figures must not overwrite real ones).
fn report(smoke: bool) {
    let t = TALLY.lock().unwrap_or_else(PoisonError::into_inner).clone();
    if t.is_empty() {
        return;
    }
    let mut rows = Vec::new();
    println!("\nthroughput against plain actix measured in this run:");
    println!(
        "{:<8} {:<20} {:>14} {:>10} {:>8} {:>14}",
        "bench", "variant", "msgs/s", "ratio", "rounds", "recorded msgs"
    );
    for ((bench, variant), v) in &t {
        let rate = v.messages as f64 / v.time.as_secs_f64().max(1e-12);
        let plain = t
            .get(&(bench, "plain_actix"))
            .map(|p| p.messages as f64 / p.time.as_secs_f64().max(1e-12));
        let ratio = plain.map(|p| rate / p);
        println!(
            "{:<8} {:<20} {:>14.0} {:>10} {:>8} {:>14}",
            bench,
            variant,
            rate,
            ratio.map_or("-".into(), |r| format!("{r:.3}x")),
            v.rounds,
            v.recorded
        );
        rows.push(serde_json::json!({
            "bench": bench,
            "variant": variant,
            "messages": v.messages,
            "seconds": v.time.as_secs_f64(),
            "msgs_per_s": rate,
            "ratio_vs_plain": ratio,
            "rounds": v.rounds,
            "recorded_msgs": v.recorded,
        }));
    }
    let dir = std::path::PathBuf::from(
        std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into()),
    )
    .join("bench-results")
    .join(if smoke { "smoke" } else { "" });
    let path = dir.join("throughput.json");
    let body = serde_json::to_string_pretty(&rows).expect("json");
    match std::fs::create_dir_all(&dir).and_then(|_| std::fs::write(&path, body)) {
        Ok(()) => println!("wrote {}", path.display()),
        Err(e) => eprintln!("could not write {}: {e}", path.display()),
    }
}

fn main() {
    let sys = actix::System::new();
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20)
        .configure_from_args();
    {
        for spec in RINGS {
            let mut g = c.benchmark_group(spec.name);
            g.throughput(Throughput::Elements(spec.msgs()));
            ring(&mut g, &sys, spec);
            g.finish();
        }
    }
    {
        let mut g = c.benchmark_group("fan_in");
        g.throughput(Throughput::Elements(FAN_MSGS));
        fan_in(&mut g, &sys);
        g.finish();
    }
    format(&mut c, &sys);
    c.final_summary();
    report(!std::env::args().any(|a| a == "--bench"));
}
