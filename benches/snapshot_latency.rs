//! Load harness: how long a snapshot takes while the system is busy, what periodic snapshots
//! cost the application, and how that compares with a stop-the-world snapshot and with a
//! lower bound, all measured in one run (the machine may be shared and noisy: every figure
//! that matters is a ratio against a baseline measured next to it).
//!
//! ```text
//! cargo bench --bench snapshot_latency -- --quick     # representative subset, < 2 min on 2 cores
//! cargo bench --bench snapshot_latency                # full matrix: 72 configurations, 8 skipped
//! cargo bench --bench snapshot_latency -- mesh-100    # only configurations whose name contains this
//! ```
//!
//! # Configurations
//!
//! Topology `ring`, `mesh` (full mesh) or `star` (hub and leaves, both directions); 10, 100
//! or 1000 actors; 0, 1k, 10k or 100k tokens circulating (each node forwards every token it
//! receives to its next outgoing channel, round-robin, so `load` messages are always in
//! flight); one arbiter (`a1`) or one per core (`aN`). Every round starts at all nodes (the
//! first edition's one-node initiation, `Initiation::Node`, is gone with its configurations;
//! names keep their `-all-` segment so they compare with earlier results). A full mesh of
//! 1000 actors has 999,000 links (a million mailbox senders, declared one by one): it is
//! listed as skipped. The actors are those of `benches/workload/mod.rs`.
//!
//! For each configuration, both versions of the actors run side by side and take turns,
//! `reps` times (3, also in quick mode); the side not being measured has parked its tokens (application-level
//! pause, see `Stw` in the workload), so it is idle:
//!
//! 1. **plain actix**: the same actors written as plain actix actors on the same number of
//!    arbiters with `max(load, 1000)` tokens: messages per second over a window.
//! 2. **stop-the-world** on plain actix with `load` tokens (a separate set of actors when
//!    `load` < 1000), every 100 ms: stop all forwarding, wait until every token is parked (every
//!    mailbox empty), read every actor's state (`send` + await), resume. Pause per snapshot
//!    and throughput over the window.
//! 3. **ours**: the group with `load` tokens, first without snapshots, then with a snapshot
//!    every 100 ms (latency = from the `snapshot_with` call to the assembled
//!    `GlobalSnapshot` in the caller's hands).
//!
//! Throughputs are the median over the reps; ratios are the median over the reps of
//! windows measured next to each other (so slow drifts of a shared machine cancel out).
//! Each is given per wall-clock second and per CPU second of this process (Linux
//! `/proc/self/task/*/schedstat`): CPU-normalised figures do not move when other programs
//! take the cores, but cannot see idle time, so for pauses the wall-clock ratio is the one
//! that counts.
//!
//! **Lower bound** of a round's latency: a round starts by queuing one start message at every
//! node, and a node records at the first start or newer-colored message it handles; both
//! are queued behind every message already in its mailbox when the round started, and every
//! circulating message is in some mailbox. So the round cannot end before `actors` start
//! messages and `load` queued messages have been handled:
//! `lower_bound_us = (actors + load) / plain_msgs_per_s_best`, at the best rate plain actix
//! handled messages in this topology in this run. It ignores the tracker (it assembles the
//! snapshot); at load 0 the plain rate is measured with 1000 tokens, which flatters the bound
//! (an idle system does not pipeline). (The first edition's bound counted one marker per
//! channel, `channels + load`; the second edition sends no markers.)
//!
//! # Output
//!
//! One JSON object per configuration in `$CARGO_TARGET_DIR/bench-results/latency/<name>.json`
//! (default `target/`), all of them in `bench-results/snapshot_latency.json`, and a plot of
//! p50 latency (ours, solid) and stop-the-world pause (dashed) against load per topology in
//! `bench-results/latency.svg`. Fields:
//!
//! | field | meaning |
//! |---|---|
//! | `name` | `<topology>-<actors>-L<load>-all-a<arbiters>` |
//! | `topology`, `actors`, `channels`, `load`, `arbiters` | the configuration (`channels`: links of the shape) |
//! | `initiation` | always `all` (kept for comparison with first-edition files) |
//! | `quick`, `reps` | whether `--quick` windows were used; turns per side |
//! | `skipped` | why the configuration did not run, or `null` |
//! | `rounds`, `errors` | snapshot rounds completed / failed in the periodic phases |
//! | `latency_p50_us`, `latency_p99_us`, `latency_max_us`, `latency_mean_us` | snapshot latency (hdrhistogram) |
//! | `recorded_bytes_mean` | payload bytes (states + messages) per snapshot, mean |
//! | `in_flight_mean` | in-flight messages recorded per snapshot, mean |
//! | `plain_msgs_per_s`, `plain_msgs_per_s_best`, `plain_load` | plain actix throughput (median, best window) and the load it ran at |
//! | `wrapped_msgs_per_s` | ours, no snapshot running |
//! | `wrapper_ratio` | ours without snapshots over plain actix |
//! | `snapshot_msgs_per_s` | ours, a snapshot every 100 ms |
//! | `snapshot_throughput_ratio` | ours with snapshots every 100 ms over ours without |
//! | `snapshot_vs_plain_ratio` | ours with snapshots every 100 ms over plain actix |
//! | `lower_bound_us` | `(actors + load) / plain_msgs_per_s_best`, in µs |
//! | `latency_over_bound` | `latency_p50_us / lower_bound_us` |
//! | `stw_rounds`, `stw_pause_p50_us`, `stw_pause_p99_us`, `stw_pause_max_us` | stop-the-world pauses |
//! | `stw_state_bytes_mean` | bytes read per stop-the-world snapshot, mean |
//! | `stw_msgs_per_s` | plain actix with a stop-the-world snapshot every 100 ms |
//! | `stw_throughput_ratio` | that over plain actix without (the application's lost throughput) |
//! | `*_msgs_per_cpu_s`, `*_ratio_cpu` | the same per CPU second |
//!
//! Throughput figures and ratios are `null` at load 0 (nothing to divide).
//!
//! `cargo test --benches` runs this target without `--bench`: one tiny configuration in a
//! debug build, written under `bench-results/smoke/` so that it never overwrites real figures.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::clock::sleep;
use actix_snapshot::SnapshotOptions;
use hdrhistogram::Histogram;
use serde_json::{Value, json};

mod workload;
use workload::{FOREVER, Finish, PlainNet, Shape, SnapNet};

const PERIOD: Duration = Duration::from_millis(100);
const ROUND_TIMEOUT: Duration = Duration::from_secs(60);
/// Load at which plain throughput is measured when the configuration's load is lower.
const RATE_LOAD: u64 = 1_000;

#[derive(Debug, Clone, Copy)]
struct Config {
    shape: Shape,
    n: usize,
    load: u64,
    arbiters: usize,
}

impl Config {
    fn name(&self) -> String {
        format!(
            "{}-{}-L{}-all-a{}",
            self.shape.name(),
            self.n,
            self.load,
            self.arbiters
        )
    }

    fn skip_reason(&self) -> Option<String> {
        (self.shape == Shape::Mesh && self.n >= 1000).then(|| {
            format!(
                "a full mesh of {} actors has {} links (a mailbox sender each): infeasible here",
                self.n,
                self.shape.channels(self.n)
            )
        })
    }
}

/// Windows of one configuration.
#[derive(Debug, Clone, Copy)]
struct Windows {
    warmup: Duration,
    rate: Duration,
    periodic: Duration,
    min_rounds: u64,
    max_periodic: Duration,
    /// Plain and ours take turns this many times.
    reps: u32,
}

const QUICK: Windows = Windows {
    warmup: Duration::from_millis(80),
    rate: Duration::from_millis(200),
    periodic: Duration::from_millis(400),
    min_rounds: 3,
    max_periodic: Duration::from_millis(1500),
    reps: 3,
};

const FULL: Windows = Windows {
    warmup: Duration::from_millis(200),
    rate: Duration::from_millis(500),
    periodic: Duration::from_secs(1),
    min_rounds: 8,
    max_periodic: Duration::from_secs(8),
    reps: 3,
};

fn quick_matrix(cores: usize) -> Vec<Config> {
    let c = |shape, n, load, arbiters| Config {
        shape,
        n,
        load,
        arbiters,
    };
    let mut v = Vec::new();
    // Latency against load, per topology, 100 actors, one arbiter per core (includes the
    // idle mesh-100 target).
    for shape in [Shape::Ring, Shape::Mesh, Shape::Star] {
        for load in [0, 1_000, 10_000, 100_000] {
            v.push(c(shape, 100, load, cores));
        }
    }
    // Target: 1000-actor ring with 10k circulating. (The first edition's one-node
    // configurations, mesh-100-L0-one and ring-100-L10000-one, are gone with
    // `Initiation::Node`.)
    v.push(c(Shape::Ring, 1000, 10_000, cores));
    // One arbiter against one per core.
    v.push(c(Shape::Ring, 100, 10_000, 1));
    // Sizes.
    v.push(c(Shape::Ring, 10, 10_000, cores));
    v.push(c(Shape::Star, 1000, 10_000, cores));
    v
}

fn full_matrix(cores: usize) -> Vec<Config> {
    let mut v = Vec::new();
    for shape in [Shape::Ring, Shape::Mesh, Shape::Star] {
        for n in [10, 100, 1000] {
            for load in [0, 1_000, 10_000, 100_000] {
                for arbiters in [1, cores] {
                    v.push(Config {
                        shape,
                        n,
                        load,
                        arbiters,
                    });
                }
            }
        }
    }
    v.dedup_by_key(|c| c.name());
    v
}

fn hist() -> Histogram<u64> {
    Histogram::new(3).expect("3 significant figures is valid")
}

fn us(d: Duration) -> u64 {
    d.as_micros().max(1) as u64
}

/// CPU time used so far by all threads of this process (Linux `schedstat`), if readable.
fn cpu_now() -> Option<Duration> {
    let mut total = 0u64;
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let path = task.ok()?.path().join("schedstat");
        // A thread may exit between listing and reading: skip it.
        let Ok(text) = std::fs::read_to_string(path) else {
            continue;
        };
        total += text.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(Duration::from_nanos(total))
}

/// Messages handled, wall time and CPU time of one measurement window.
#[derive(Debug, Clone, Copy)]
struct Acc {
    msgs: u64,
    wall: Duration,
    cpu: Option<Duration>,
}

impl Acc {
    fn start(handled: &impl Fn() -> u64) -> (u64, Instant, Option<Duration>) {
        (handled(), Instant::now(), cpu_now())
    }

    fn since(handled: &impl Fn() -> u64, (c0, t0, cpu0): (u64, Instant, Option<Duration>)) -> Acc {
        let cpu = cpu0.zip(cpu_now()).map(|(a, b)| b.saturating_sub(a));
        Acc {
            msgs: handled() - c0,
            wall: t0.elapsed(),
            cpu,
        }
    }

    /// Messages per wall-clock second.
    fn rate(&self) -> f64 {
        self.msgs as f64 / self.wall.as_secs_f64().max(1e-9)
    }

    /// Messages per CPU second of this process: robust to other tenants of the machine,
    /// blind to idle time.
    fn cpu_rate(&self) -> Option<f64> {
        self.cpu
            .filter(|c| !c.is_zero())
            .map(|c| self.msgs as f64 / c.as_secs_f64())
    }
}

/// Messages handled by `handled` over `dur`.
async fn window(handled: impl Fn() -> u64, dur: Duration) -> Acc {
    let s = Acc::start(&handled);
    sleep(dur).await;
    Acc::since(&handled, s)
}

/// Median of the finite values, if any.
fn median(v: impl Iterator<Item = f64>) -> Option<f64> {
    let mut v: Vec<f64> = v.filter(|x| x.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => None,
        n if n % 2 == 1 => Some(v[n / 2]),
        n => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

/// Median over reps of `f(a[i]) / f(b[i])`: windows measured next to each other are
/// compared, so slow drifts of a shared machine cancel out.
fn paired(a: &[Acc], b: &[Acc], f: impl Fn(&Acc) -> Option<f64>) -> Option<f64> {
    median(
        a.iter()
            .zip(b)
            .filter_map(|(x, y)| f(x).zip(f(y)).and_then(|(x, y)| ratio(x, y))),
    )
}

fn ratio(a: f64, b: f64) -> Option<f64> {
    (b > 0.0 && a.is_finite()).then(|| a / b)
}

/// Runs `step` every [`PERIOD`] for the periodic window (at least `min_rounds`, at most
/// `max_periodic`); returns what was handled over the phase and what each step returned.
async fn periodic<T, F, Fut>(w: Windows, handled: impl Fn() -> u64, step: F) -> (Acc, Vec<T>)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let s = Acc::start(&handled);
    let t0 = s.1;
    let mut next = t0;
    let mut results = Vec::new();
    loop {
        let el = t0.elapsed();
        if (el >= w.periodic && results.len() as u64 >= w.min_rounds) || el >= w.max_periodic {
            break;
        }
        let now = Instant::now();
        if next > now {
            sleep(next - now).await;
        }
        next = Instant::now().max(next) + PERIOD;
        results.push(step().await);
    }
    (Acc::since(&handled, s), results)
}

async fn run(cfg: Config, w: Windows, quick: bool) -> Value {
    let name = cfg.name();
    let channels = cfg.shape.channels(cfg.n);
    let mut out = json!({
        "name": name,
        "topology": cfg.shape.name(),
        "actors": cfg.n,
        "channels": channels,
        "load": cfg.load,
        "initiation": "all",
        "arbiters": cfg.arbiters,
        "quick": quick,
        "skipped": null,
    });
    if let Some(reason) = cfg.skip_reason() {
        out["skipped"] = json!(reason);
        return out;
    }
    let finish = Arc::new(Finish::default());
    let plain_load = cfg.load.max(RATE_LOAD);
    let plain = PlainNet::start(cfg.shape, cfg.n, cfg.arbiters, finish.clone(), true);
    plain.inject(plain_load, FOREVER);
    // Below RATE_LOAD the stop-the-world baseline runs on its own actors with `load` tokens,
    // parked while not measured.
    let own_stw = if plain_load != cfg.load {
        let p = PlainNet::start(cfg.shape, cfg.n, cfg.arbiters, finish.clone(), true);
        p.inject(cfg.load, FOREVER);
        p.hold(cfg.load).await;
        Some(p)
    } else {
        None
    };
    let net = SnapNet::start(cfg.shape, cfg.n, cfg.arbiters, finish.clone(), false, true);
    net.inject(cfg.load, FOREVER);
    net.hold(cfg.load).await;
    let opts = SnapshotOptions::default().timeout(ROUND_TIMEOUT);

    // One measurement window per rep and kind.
    let (mut plain_w, mut stw_w, mut wrapped_w, mut snap_w) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut stw = Vec::new();
    let mut results = Vec::new();
    // Plain and ours take turns, `reps` times; the one not measured has its tokens parked.
    for rep in 0..w.reps {
        // Plain actix: throughput, then stop-the-world every PERIOD.
        sleep(w.warmup).await;
        plain_w.push(window(|| plain.handled(), w.rate).await);
        if let Some(p) = &own_stw {
            plain.hold(plain_load).await;
            p.release().await;
            sleep(w.warmup).await;
        }
        let stw_net = own_stw.as_ref().unwrap_or(&plain);
        let (acc, mut r) = periodic(
            w,
            || stw_net.handled(),
            move || async move { stw_net.stop_the_world(cfg.load).await },
        )
        .await;
        stw_w.push(acc);
        stw.append(&mut r);
        match &own_stw {
            Some(p) => p.hold(cfg.load).await,
            None => plain.hold(plain_load).await,
        }

        // Ours: throughput without snapshots, then a snapshot every PERIOD.
        net.release();
        sleep(w.warmup).await;
        wrapped_w.push(window(|| net.handled(), w.rate).await);
        let g = &net.group;
        let (acc, mut r) = periodic(
            w,
            || net.handled(),
            move || async move {
                let t0 = Instant::now();
                g.snapshot_with(opts)
                    .await
                    .map(|s| (t0.elapsed(), s.payload_bytes(), s.in_flight_count()))
            },
        )
        .await;
        snap_w.push(acc);
        results.append(&mut r);
        net.hold(cfg.load).await;
        if rep + 1 < w.reps {
            plain.release().await;
        }
    }
    plain.shutdown();
    if let Some(p) = own_stw {
        p.shutdown();
    }
    net.shutdown();
    // Let the stopped arbiters' threads wind down before the next configuration.
    sleep(Duration::from_millis(50)).await;

    let mut stw_pause = hist();
    for (pause, _) in &stw {
        stw_pause.record(us(*pause)).expect("histogram grows");
    }
    let stw_rounds = stw.len() as u64;
    let stw_bytes: usize = stw.iter().map(|(_, b)| b).sum();
    let mut lat = hist();
    let (mut bytes, mut in_flight, mut errors) = (0usize, 0usize, 0u64);
    for r in results {
        match r {
            Ok((d, b, f)) => {
                lat.record(us(d)).expect("histogram grows");
                bytes += b;
                in_flight += f;
            }
            Err(e) => {
                errors += 1;
                eprintln!("{name}: round failed: {e}");
            }
        }
    }
    let wall = |a: &Acc| Some(a.rate());
    let cpu = |a: &Acc| a.cpu_rate();
    let plain_rate = median(plain_w.iter().filter_map(wall));
    // The bound uses the best plain window: the smaller bound, the safer.
    let plain_best = plain_w.iter().map(Acc::rate).fold(0.0, f64::max);
    let wrapped_rate = median(wrapped_w.iter().filter_map(wall));
    let snap_rate = median(snap_w.iter().filter_map(wall));
    let stw_rate = median(stw_w.iter().filter_map(wall));
    let rounds = lat.len();
    let mean = |total: usize, n: u64| (n > 0).then(|| total as f64 / n as f64);
    let loaded = cfg.load > 0;
    let bound_us = (cfg.n as f64 + cfg.load as f64) / plain_best * 1e6;
    let p50 = (rounds > 0).then(|| lat.value_at_quantile(0.5));
    out["rounds"] = json!(rounds);
    out["errors"] = json!(errors);
    out["latency_p50_us"] = json!(p50);
    out["latency_p99_us"] = json!((rounds > 0).then(|| lat.value_at_quantile(0.99)));
    out["latency_max_us"] = json!((rounds > 0).then(|| lat.max()));
    out["latency_mean_us"] = json!((rounds > 0).then(|| lat.mean()));
    out["recorded_bytes_mean"] = json!(mean(bytes, rounds));
    out["in_flight_mean"] = json!(mean(in_flight, rounds));
    let loaded_only = |v: Option<f64>| v.filter(|_| loaded);
    out["plain_msgs_per_s"] = json!(plain_rate);
    out["plain_msgs_per_s_best"] = json!(plain_best);
    out["plain_load"] = json!(plain_load);
    out["wrapped_msgs_per_s"] = json!(loaded_only(wrapped_rate));
    out["wrapper_ratio"] = json!(loaded_only(paired(&wrapped_w, &plain_w, wall)));
    out["snapshot_msgs_per_s"] = json!(loaded_only(snap_rate));
    out["snapshot_throughput_ratio"] = json!(loaded_only(paired(&snap_w, &wrapped_w, wall)));
    out["snapshot_vs_plain_ratio"] = json!(loaded_only(paired(&snap_w, &plain_w, wall)));
    out["lower_bound_us"] = json!(bound_us.is_finite().then_some(bound_us));
    out["latency_over_bound"] = json!(p50.and_then(|p| ratio(p as f64, bound_us)));
    out["stw_rounds"] = json!(stw_rounds);
    out["stw_pause_p50_us"] = json!((stw_rounds > 0).then(|| stw_pause.value_at_quantile(0.5)));
    out["stw_pause_p99_us"] = json!((stw_rounds > 0).then(|| stw_pause.value_at_quantile(0.99)));
    out["stw_pause_max_us"] = json!((stw_rounds > 0).then(|| stw_pause.max()));
    out["stw_state_bytes_mean"] = json!(mean(stw_bytes, stw_rounds));
    out["stw_msgs_per_s"] = json!(loaded_only(stw_rate));
    out["stw_throughput_ratio"] = json!(loaded_only(paired(&stw_w, &plain_w, wall)));
    out["plain_msgs_per_cpu_s"] = json!(median(plain_w.iter().filter_map(cpu)));
    out["wrapped_msgs_per_cpu_s"] = json!(loaded_only(median(wrapped_w.iter().filter_map(cpu))));
    out["snapshot_msgs_per_cpu_s"] = json!(loaded_only(median(snap_w.iter().filter_map(cpu))));
    out["stw_msgs_per_cpu_s"] = json!(loaded_only(median(stw_w.iter().filter_map(cpu))));
    out["wrapper_ratio_cpu"] = json!(loaded_only(paired(&wrapped_w, &plain_w, cpu)));
    out["snapshot_throughput_ratio_cpu"] = json!(loaded_only(paired(&snap_w, &wrapped_w, cpu)));
    out["stw_throughput_ratio_cpu"] = json!(loaded_only(paired(&stw_w, &plain_w, cpu)));
    out["reps"] = json!(w.reps);
    out
}

fn fmt_ms(v: &Value) -> String {
    v.as_f64()
        .map_or("-".into(), |us| format!("{:.2}", us / 1000.0))
}

fn fmt_ratio(v: &Value) -> String {
    v.as_f64().map_or("-".into(), |r| format!("{r:.2}x"))
}

const COLUMNS: [(&str, usize); 16] = [
    ("configuration", 24),
    ("rounds", 6),
    ("p50 ms", 8),
    ("p99 ms", 8),
    ("max ms", 8),
    ("bound ms", 8),
    ("p50/bnd", 8),
    ("inflight", 8),
    ("KB", 7),
    ("wrap/pl", 7),
    ("cpu", 6),
    ("snap/wr", 7),
    ("cpu", 6),
    ("stw p50", 8),
    ("stw p99", 8),
    ("stw/pl", 6),
];

fn print_cells(cells: &[String]) {
    let line: Vec<String> = cells
        .iter()
        .zip(COLUMNS)
        .enumerate()
        .map(|(i, (c, (_, w)))| {
            if i == 0 {
                format!("{c:<w$}")
            } else {
                format!("{c:>w$}")
            }
        })
        .collect();
    println!("{}", line.join(" "));
}

fn print_header() {
    print_cells(&COLUMNS.map(|(h, _)| h.to_string()));
}

fn print_row(r: &Value) {
    let name = r["name"].as_str().unwrap_or("?");
    if let Some(s) = r["skipped"].as_str() {
        println!("{name:<24} skipped: {s}");
        return;
    }
    let num = |v: &Value, div: f64| v.as_f64().map_or("-".into(), |x| format!("{:.0}", x / div));
    print_cells(&[
        name.to_string(),
        r["rounds"].to_string(),
        fmt_ms(&r["latency_p50_us"]),
        fmt_ms(&r["latency_p99_us"]),
        fmt_ms(&r["latency_max_us"]),
        fmt_ms(&r["lower_bound_us"]),
        fmt_ratio(&r["latency_over_bound"]),
        num(&r["in_flight_mean"], 1.0),
        num(&r["recorded_bytes_mean"], 1000.0),
        fmt_ratio(&r["wrapper_ratio"]),
        fmt_ratio(&r["wrapper_ratio_cpu"]),
        fmt_ratio(&r["snapshot_throughput_ratio"]),
        fmt_ratio(&r["snapshot_throughput_ratio_cpu"]),
        fmt_ms(&r["stw_pause_p50_us"]),
        fmt_ms(&r["stw_pause_p99_us"]),
        fmt_ratio(&r["stw_throughput_ratio"]),
    ]);
}

/// Writes `body` to `path` through a temporary file, fsync and rename.
fn write_file(path: &Path, body: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(body)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

const LOADS: [u64; 4] = [0, 1_000, 10_000, 100_000];

/// The plot series a configuration belongs to.
fn series_label(r: &Value) -> String {
    format!("{} actors, a{}", r["actors"], r["arbiters"])
}

/// p50 latency (ours) and stop-the-world pause against load, one panel per topology, one
/// line per (actors, arbiters).
fn plot(rows: &[Value], path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    use plotters::prelude::*;
    let root = SVGBackend::new(path, (1500, 520)).into_drawing_area();
    root.fill(&WHITE)?;
    let panels = root.split_evenly((1, 3));
    let ran: Vec<&Value> = rows
        .iter()
        .filter(|r| r["rounds"].as_u64() > Some(0))
        .collect();
    let vals: Vec<f64> = ran
        .iter()
        .flat_map(|r| [&r["latency_p50_us"], &r["stw_pause_p50_us"]])
        .filter_map(|v| v.as_f64())
        .map(|us| us / 1000.0)
        .collect();
    let lo = vals
        .iter()
        .copied()
        .fold(f64::INFINITY, f64::min)
        .max(0.001)
        / 2.0;
    let hi = vals.iter().copied().fold(0.0, f64::max).max(lo * 10.0) * 2.0;
    let palette = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(127, 127, 127),
    ];
    for (panel, topo) in panels.iter().zip(["ring", "mesh", "star"]) {
        let mut chart = ChartBuilder::on(panel)
            .caption(format!("{topo}: snapshot p50 vs load"), ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(55)
            .build_cartesian_2d(-0.2f64..3.2f64, (lo..hi).log_scale())?;
        chart
            .configure_mesh()
            .x_labels(4)
            .x_label_formatter(&|x| {
                let i = x.round() as usize;
                if (x - x.round()).abs() < 0.01 && i < LOADS.len() {
                    format!("{}", LOADS[i])
                } else {
                    String::new()
                }
            })
            .x_desc("messages circulating")
            .y_desc("ms (log)")
            .draw()?;
        let mut series: Vec<String> = ran
            .iter()
            .filter(|r| r["topology"] == topo)
            .map(|r| series_label(r))
            .collect();
        series.sort();
        series.dedup();
        for (k, label) in series.iter().enumerate() {
            let color = palette[k % palette.len()];
            let point = |field: &str| -> Vec<(f64, f64)> {
                let mut pts: Vec<(f64, f64)> = ran
                    .iter()
                    .filter(|r| r["topology"] == topo && series_label(r) == *label)
                    .filter_map(|r| {
                        let i = LOADS.iter().position(|&l| Some(l) == r["load"].as_u64())?;
                        Some((i as f64, r[field].as_f64()? / 1000.0))
                    })
                    .collect();
                pts.sort_by(|a, b| a.0.total_cmp(&b.0));
                pts
            };
            let ours = point("latency_p50_us");
            let stw = point("stw_pause_p50_us");
            chart
                .draw_series(LineSeries::new(ours.clone(), color.stroke_width(2)))?
                .label(format!("{label}: ours p50"))
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 16, y)], color.stroke_width(2))
                });
            chart.draw_series(ours.iter().map(|&p| Circle::new(p, 4, color.filled())))?;
            chart
                .draw_series(DashedLineSeries::new(
                    stw.clone(),
                    6,
                    4,
                    color.stroke_width(1),
                ))?
                .label(format!("{label}: stop-the-world pause"))
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 16, y)], color.stroke_width(1))
                });
            chart.draw_series(stw.iter().map(|&p| Cross::new(p, 4, color.stroke_width(1))))?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .label_font(("sans-serif", 11))
            .position(SeriesLabelPosition::UpperLeft)
            .draw()?;
    }
    root.present()?;
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing (a bench target
    // is run as a test): then one tiny configuration, as criterion does for its benches.
    let smoke = args.iter().any(|a| a == "--test") || !args.iter().any(|a| a == "--bench");
    let filter: Option<&String> = args.iter().find(|a| !a.starts_with("--"));
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());

    let (configs, windows) = if smoke {
        let c = Config {
            shape: Shape::Ring,
            n: 10,
            load: 100,
            arbiters: 1,
        };
        let w = Windows {
            warmup: Duration::from_millis(20),
            rate: Duration::from_millis(50),
            periodic: Duration::from_millis(200),
            min_rounds: 2,
            max_periodic: Duration::from_secs(2),
            reps: 1,
        };
        (vec![c], w)
    } else if quick {
        (quick_matrix(cores), QUICK)
    } else {
        (full_matrix(cores), FULL)
    };
    let configs: Vec<Config> = configs
        .into_iter()
        .filter(|c| filter.is_none_or(|f| c.name().contains(f.as_str())))
        .collect();

    let mut out_dir =
        PathBuf::from(std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into()))
            .join("bench-results");
    if smoke {
        // A smoke run (debug build) must not overwrite the figures of a real run.
        out_dir.push("smoke");
    }
    let rows_dir = out_dir.clone();
    println!(
        "snapshot_latency: {} configurations ({} mode), {} cores; a snapshot every {} ms",
        configs.len(),
        if quick {
            "quick"
        } else if smoke {
            "smoke"
        } else {
            "full"
        },
        cores,
        PERIOD.as_millis()
    );
    print_header();
    let started = Instant::now();
    let rows: Vec<Value> = actix::System::new().block_on(async move {
        let mut rows = Vec::new();
        for cfg in configs {
            let row = run(cfg, windows, quick).await;
            print_row(&row);
            let file = rows_dir
                .join("latency")
                .join(format!("{}.json", cfg.name()));
            let body = serde_json::to_vec_pretty(&row).expect("json");
            if let Err(e) = write_file(&file, &body) {
                eprintln!("could not write {}: {e}", file.display());
            }
            rows.push(row);
        }
        rows
    });
    let all = out_dir.join("snapshot_latency.json");
    let body = serde_json::to_vec_pretty(&rows).expect("json");
    match write_file(&all, &body) {
        Ok(()) => println!("wrote {}", all.display()),
        Err(e) => eprintln!("could not write {}: {e}", all.display()),
    }
    let svg = out_dir.join("latency.svg");
    match plot(&rows, &svg) {
        Ok(()) => println!("wrote {}", svg.display()),
        Err(e) => eprintln!("could not plot {}: {e}", svg.display()),
    }
    println!("done in {:.1} s", started.elapsed().as_secs_f64());
}
