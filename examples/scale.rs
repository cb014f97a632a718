//! # How far does one group go? A million idle nodes, one snapshot.
//!
//! ```text
//! cargo run --release --example scale -- --actors 1000000 --json
//! cargo run --release --example scale -- --actors 100000 --arbiters 4
//! ```
//!
//! A server with one actor per connection or per session has many actors that do nothing most
//! of the time. This example asks what such actors cost in a [`SnapshotGroup`], against the
//! same number of plain actix actors, and how long a consistent snapshot of all of them takes.
//!
//! ## What it does, step by step
//!
//! 1. **Plain actix, the baseline.** `--arbiters` arbiters (default 2) are started and
//!    `--actors` trivial actors (a `u32` each, nothing else) are started on them round-robin
//!    with `Actor::start_in_arbiter`. The example keeps one `Addr` per actor (an actix actor
//!    with no address left stops; a group keeps one handle per node in its registry, so this
//!    is the like-for-like baseline). Each actor's `started` hook counts up an atomic; the
//!    phase ends when the count reaches `--actors`, i.e. when every actor has really started
//!    on its arbiter, not when the last start was merely queued.
//! 2. **The group.** A [`SnapshotGroup`] with its own `--arbiters` arbiters; `--actors` idle
//!    nodes are spawned into it from outside, with [`SnapshotGroup::spawn_on`], round-robin
//!    over the group's arbiters. Each node is a plain actix actor made a node with
//!    `#[derive(Snapshot)]`; its state is its index; its `Actor::started` hook counts up
//!    another atomic, and the phase ends when every node has started. The plain actors from
//!    step 1 stay alive meanwhile, so that the group's memory is not served from memory the
//!    baseline freed.
//! 3. **The floor.** One message to every plain actor, timed until each has handled it: any
//!    operation that touches every actor once costs at least this much in actix, and a
//!    snapshot does more (a start message to every node, a record back from each).
//! 4. **Snapshots.** Two snapshots of the whole group, one after the other, each timed from
//!    the [`SnapshotGroup::snapshot`] call to the [`GlobalSnapshot`] in hand, and split into
//!    phases from the outside: the end of the call's first poll (the round is open and a
//!    start message is queued at every node), the moment the last node's state was taken
//!    (the nodes' state function, `Idle::record`, counts), and the snapshot in hand (the
//!    rest is the group assembling the snapshot). The first snapshot is checked: it must
//!    hold exactly `--actors` nodes, and decoding their states must give every index
//!    `0..actors` exactly once (the snapshot is checked against what the nodes were built
//!    with, not against the library's own counters). It is also encoded to the file format
//!    and decoded again, timed.
//! 5. **Shutdown**, timed: the group (until every node's actor has been dropped), then the
//!    plain actors' arbiters.
//!
//! Every phase is given in wall time and in CPU time of the whole process (`/proc/self/stat`,
//! 10 ms ticks): on a shared machine wall times stretch, CPU times say how much work a phase
//! was.
//!
//! ## How memory is measured
//!
//! Resident set size, `VmRSS` in `/proc/self/status` (Linux; the figures are 0 elsewhere),
//! read before and after each spawning phase: `bytes_per_actor` is the growth of VmRSS over
//! step 2 divided by `--actors`, `plain_bytes_per_actor` the same over step 1. RSS counts
//! pages touched, so it includes everything the phase left allocated (mailboxes, actor
//! contexts, the arbiters' task slots, the group's registry, the names) and the allocator's
//! slack, and excludes memory reserved but never touched. It is taken before any snapshot:
//! what a node keeps after taking part in a snapshot is not in it (freed snapshot memory
//! stays in the allocator's pools, so RSS cannot tell the two apart afterwards). `rss_mb` is
//! VmRSS after the snapshots (both sets of actors alive), `peak_rss_mb` is `VmHWM`, the
//! highest VmRSS of the run.
//!
//! ## What to expect
//!
//! One run of the first edition (nodes inside a wrapper actor) with `--actors 1000000` on a
//! shared 2-core machine (load ~4 from other work):
//! 28 s wall for the whole run, peak RSS 3.2 GB (both sets of actors plus two snapshots).
//! Plain actix: started in 2.1 s, 1013 bytes per actor, one message to each in 1.1 s. The
//! group: started in 6.1 s, 1389 bytes per node; snapshots in 5.6 s and 4.1 s (the start is
//! queued at every node after 0.7-0.8 s, the last state is taken after 3.0-4.2 s, the rest is
//! assembly), 1,000,000 nodes each, a 103 MB file.
//!
//! ## Output
//!
//! Progress on stderr, then a summary on stdout; with `--json`, one JSON line:
//!
//! | field | meaning |
//! |---|---|
//! | `actors`, `arbiters` | the command line |
//! | `spawn_ms`, `spawn_cpu_ms` | step 2, until every node started |
//! | `spawn_calls_ms` | the `spawn_on` loop alone |
//! | `plain_spawn_ms`, `plain_spawn_cpu_ms` | step 1 |
//! | `bytes_per_actor`, `plain_bytes_per_actor` | RSS growth over step 2, step 1, per actor |
//! | `plain_broadcast_ms`, `plain_broadcast_cpu_ms` | step 3 |
//! | `snapshot_ms`, `snapshot_cpu_ms` | first snapshot, call to snapshot in hand |
//! | `snapshot_start_ms`, `snapshot_last_state_ms` | its phases, from the call |
//! | `snapshot2_*` | the same for the second snapshot |
//! | `snapshot_nodes` | nodes in the first snapshot (checked: equals `actors`) |
//! | `snapshot_payload_bytes`, `file_bytes` | recorded states; the encoded file |
//! | `check_ms`, `encode_ms`, `decode_ms` | checking every state; `to_bytes`; `from_bytes` |
//! | `rss_mb`, `peak_rss_mb` | VmRSS after the snapshots; VmHWM |
//! | `group_shutdown_ms`, `group_shutdown_cpu_ms`, `plain_shutdown_ms` | step 5 |
//! | `wall_ms` | the whole run |

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use actix::{Actor, Addr, Arbiter, Context, Handler, Message};
use actix_snapshot::{GlobalSnapshot, Snapshot, SnapshotGroup, SnapshotOptions};
use clap::Parser;

/// Command line.
#[derive(Parser, Debug)]
#[command(about = "Spawn many idle nodes into a group, snapshot them, compare with plain actix")]
struct Args {
    /// How many actors (and nodes).
    #[arg(long, default_value_t = 100_000)]
    actors: usize,
    /// Arbiters (threads) for the group, and as many for the plain actors.
    #[arg(long, default_value_t = 2)]
    arbiters: usize,
    /// Print one final JSON line on stdout.
    #[arg(long)]
    json: bool,
    /// Timeout of each snapshot round, in seconds.
    #[arg(long, default_value_t = 600)]
    timeout_s: u64,
}

/// Nodes that have run `started`.
static NODES_STARTED: AtomicUsize = AtomicUsize::new(0);
/// Plain actors that have run `started`.
static PLAIN_STARTED: AtomicUsize = AtomicUsize::new(0);
/// Plain actors that have handled a [`Ping`].
static PLAIN_PINGED: AtomicUsize = AtomicUsize::new(0);
/// States taken for the current snapshot, and when the last one was taken (nanoseconds since
/// [`epoch`]): lets the example split a snapshot's latency into phases from the outside.
static RECORDED: AtomicUsize = AtomicUsize::new(0);
static LAST_RECORD_NS: AtomicU64 = AtomicU64::new(0);
/// How many states make a complete snapshot.
static EXPECTED: AtomicUsize = AtomicUsize::new(usize::MAX);
/// Nodes whose actor has been dropped (after the group's shutdown).
static NODES_DROPPED: AtomicUsize = AtomicUsize::new(0);

/// A fixed instant all phase times are measured from.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// An idle node: it never gets a message. Its state is its index, so that a snapshot can be
/// checked against what the nodes were built with.
#[derive(Snapshot)]
#[snapshot(state_type = u32, state_fn = Self::record)]
struct Idle {
    index: u32,
}

impl Idle {
    /// The state recorded at a cut; counts the records so that the example can tell when
    /// the last node of a round took its state.
    fn record(&self) -> u32 {
        if RECORDED.fetch_add(1, Ordering::AcqRel) + 1 == EXPECTED.load(Ordering::Acquire) {
            LAST_RECORD_NS.store(epoch().elapsed().as_nanos() as u64, Ordering::Release);
        }
        self.index
    }
}

impl Actor for Idle {
    type Context = Context<Self>;

    fn started(&mut self, _ctx: &mut Context<Self>) {
        NODES_STARTED.fetch_add(1, Ordering::Relaxed);
    }
}

impl Drop for Idle {
    fn drop(&mut self) {
        NODES_DROPPED.fetch_add(1, Ordering::Relaxed);
    }
}

/// The plain actix counterpart: the same `u32`, nothing else.
struct Plain {
    _index: u32,
}

impl Actor for Plain {
    type Context = Context<Self>;

    fn started(&mut self, _ctx: &mut Context<Self>) {
        PLAIN_STARTED.fetch_add(1, Ordering::Relaxed);
    }
}

/// One message to every plain actor: what touching every actor once costs in actix, the floor
/// under a snapshot (which sends every node a start message and has it report back).
#[derive(Message)]
#[rtype(result = "()")]
struct Ping;

impl Handler<Ping> for Plain {
    type Result = ();

    fn handle(&mut self, _: Ping, _ctx: &mut Context<Self>) {
        PLAIN_PINGED.fetch_add(1, Ordering::Relaxed);
    }
}

/// A field of `/proc/self/status` in bytes (`VmRSS`, `VmHWM`); 0 where unavailable.
fn proc_status_bytes(field: &str) -> u64 {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return 0;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn rss() -> u64 {
    proc_status_bytes("VmRSS")
}

/// CPU time (user + system) used so far by this process, threads that have exited
/// included: fields 14 and 15 of `/proc/self/stat`, in clock ticks (10 ms on Linux with
/// `CLK_TCK` = 100, the usual value). Zero where unavailable. On a shared machine wall times
/// stretch; CPU times say how much work a phase was.
fn cpu() -> Duration {
    const TICK: Duration = Duration::from_millis(10);
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return Duration::ZERO;
    };
    // The command name (field 2) is in parentheses and may hold spaces: count after it.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return Duration::ZERO;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3: utime is field 14, stime field 15.
    let ticks = |i: usize| {
        fields
            .get(i - 3)
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    };
    TICK * (ticks(14) + ticks(15))
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

fn mb(bytes: u64) -> f64 {
    (bytes as f64 / (1 << 20) as f64 * 10.0).round() / 10.0
}

/// A snapshot's latency in phases.
#[derive(Clone, Copy)]
struct Phases {
    /// From the call to the end of its first poll: the round is registered and a start
    /// message is queued for every node.
    start: Duration,
    /// From the call to the moment the last node took its state.
    records: Duration,
    /// From the call to the snapshot in hand.
    total: Duration,
    /// CPU time of the whole process over the same span.
    cpu: Duration,
}

/// Takes a snapshot of `group`, timing its phases; expects `n` nodes.
async fn timed_snapshot(group: &SnapshotGroup, n: usize) -> (GlobalSnapshot, Phases) {
    RECORDED.store(0, Ordering::SeqCst);
    EXPECTED.store(n, Ordering::SeqCst);
    let cpu0 = cpu();
    let t0 = Instant::now();
    let t0_ns = t0.duration_since(epoch()).as_nanos() as u64;
    let mut round = std::pin::pin!(group.snapshot());
    // The first poll starts the round: it registers it and queues a start message at every
    // node. It cannot finish it unless the group is empty.
    let first = futures::poll!(round.as_mut());
    let start = t0.elapsed();
    let snap = match first {
        std::task::Poll::Ready(r) => r,
        std::task::Poll::Pending => round.await,
    }
    .expect("snapshot of the idle group");
    let total = t0.elapsed();
    let cpu = cpu().saturating_sub(cpu0);
    let last = LAST_RECORD_NS.load(Ordering::Acquire);
    let records = Duration::from_nanos(last.saturating_sub(t0_ns)).min(total);
    let phases = Phases {
        start,
        records,
        total,
        cpu,
    };
    (snap, phases)
}

/// Waits (without blocking the caller's arbiter) until `counter` reaches `target`.
async fn until(counter: &AtomicUsize, target: usize) {
    while counter.load(Ordering::Relaxed) < target {
        actix::clock::sleep(Duration::from_millis(1)).await;
    }
}

/// Checks a snapshot against the nodes as they were built: exactly `actors` nodes, and their
/// states are the indices `0..actors`, each once.
fn check(snap: &GlobalSnapshot, actors: usize) -> Result<(), String> {
    if snap.nodes.len() != actors {
        return Err(format!(
            "the snapshot holds {} nodes, not {actors}",
            snap.nodes.len()
        ));
    }
    let mut seen = vec![false; actors];
    for index in snap.states::<Idle>().map_err(|e| e.to_string())? {
        let slot = seen
            .get_mut(index as usize)
            .ok_or_else(|| format!("state {index} is out of range"))?;
        if std::mem::replace(slot, true) {
            return Err(format!("state {index} appears twice"));
        }
    }
    match seen.iter().position(|s| !s) {
        Some(missing) => Err(format!("state {missing} is missing")),
        None => Ok(()),
    }
}

/// Wall and CPU time of one phase.
#[derive(Clone, Copy)]
struct Span {
    wall: Duration,
    cpu: Duration,
}

/// Starts timing a phase; [`Clock::stop`] ends it.
struct Clock {
    wall: Instant,
    cpu: Duration,
}

impl Clock {
    fn start() -> Clock {
        Clock {
            wall: Instant::now(),
            cpu: cpu(),
        }
    }

    /// The span covers both readings of the CPU clock (reading it allocates, and an
    /// allocation right after a large free can pay for the allocator's consolidation).
    fn stop(&self) -> Span {
        let cpu = cpu().saturating_sub(self.cpu);
        Span {
            wall: self.wall.elapsed(),
            cpu,
        }
    }
}

impl std::fmt::Display for Span {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.0} ms (CPU {:.0} ms)", ms(self.wall), ms(self.cpu))
    }
}

#[actix::main]
async fn main() {
    let args = Args::parse();
    let n = args.actors;
    let arbiters = args.arbiters.max(1);
    assert!(u32::try_from(n).is_ok(), "--actors must fit in a u32");
    let wall = Instant::now();
    let progress = |what: &str| eprintln!("[{:>6.1} s] {what}", wall.elapsed().as_secs_f64());

    // 1. Plain actix: `n` trivial actors round-robin over `arbiters` arbiters.
    let plain_arbiters: Vec<Arbiter> = (0..arbiters).map(|_| Arbiter::new()).collect();
    let rss0 = rss();
    let clock = Clock::start();
    let mut plain: Vec<Addr<Plain>> = Vec::with_capacity(n);
    for i in 0..n {
        let handle = plain_arbiters[i % arbiters].handle();
        let index = i as u32;
        plain.push(Plain::start_in_arbiter(&handle, move |_| Plain {
            _index: index,
        }));
    }
    until(&PLAIN_STARTED, n).await;
    let plain_spawn = clock.stop();
    let rss1 = rss();
    progress(&format!(
        "plain actix: {n} actors started in {plain_spawn}, RSS +{:.1} MB",
        mb(rss1.saturating_sub(rss0))
    ));

    // 2. The group: `n` idle nodes spawned from outside, round-robin over its arbiters.
    let mut builder = SnapshotGroup::builder();
    builder
        .arbiters(arbiters)
        .snapshot_options(SnapshotOptions::default().timeout(Duration::from_secs(args.timeout_s)));
    let group = builder.start().expect("an actix System runs here");
    let rss2 = rss();
    let clock = Clock::start();
    for i in 0..n {
        let index = i as u32;
        group
            .spawn_on(i % arbiters, format!("n{i}"), move || Idle { index })
            .expect("the group runs and names are unique");
    }
    let spawn_calls = clock.stop();
    until(&NODES_STARTED, n).await;
    let spawn = clock.stop();
    let rss3 = rss();
    assert_eq!(group.len(), n, "every node is alive in the group");
    progress(&format!(
        "group: {n} nodes started in {spawn} (spawn_on calls: {spawn_calls}), RSS +{:.1} MB",
        mb(rss3.saturating_sub(rss2))
    ));

    // 3. The floor: one message to every plain actor, until each has handled it.
    let clock = Clock::start();
    for addr in &plain {
        addr.do_send(Ping);
    }
    until(&PLAIN_PINGED, n).await;
    let broadcast = clock.stop();
    progress(&format!(
        "plain actix: one message handled by each of {n} actors in {broadcast}"
    ));

    // 4. Two snapshots; the first is checked, encoded and decoded.
    let (snap, first) = timed_snapshot(&group, n).await;
    progress(&format!(
        "snapshot 1: {} nodes in {:.0} ms (CPU {:.0} ms): start queued at every node after \
         {:.0} ms, last state taken after {:.0} ms",
        snap.nodes.len(),
        ms(first.total),
        ms(first.cpu),
        ms(first.start),
        ms(first.records)
    ));
    let clock = Clock::start();
    if let Err(e) = check(&snap, n) {
        panic!("the snapshot does not match the nodes: {e}");
    }
    let check_time = clock.stop();
    let clock = Clock::start();
    let bytes = snap.to_bytes();
    let encode = clock.stop();
    let clock = Clock::start();
    let decoded = GlobalSnapshot::from_bytes(&bytes).expect("a snapshot decodes");
    let decode = clock.stop();
    assert_eq!(decoded.nodes.len(), n);
    let (snapshot_nodes, payload, file_bytes) =
        (snap.nodes.len(), snap.payload_bytes(), bytes.len());
    drop((decoded, bytes));
    progress(&format!(
        "checked in {check_time}; {file_bytes} bytes encoded in {encode}, decoded in {decode}"
    ));
    let (snap2, second) = timed_snapshot(&group, n).await;
    assert_eq!(snap2.nodes.len(), n, "the second snapshot holds every node");
    progress(&format!(
        "snapshot 2: {:.0} ms (CPU {:.0} ms): start queued after {:.0} ms, last state taken \
         after {:.0} ms",
        ms(second.total),
        ms(second.cpu),
        ms(second.start),
        ms(second.records)
    ));
    let rss_end = rss();
    let clock = Clock::start();
    drop((snap, snap2));
    let drop_snapshots = clock.stop();

    // 5. Shutdown: the group (until every node's actor is dropped), then the plain actors.
    let clock = Clock::start();
    group.shutdown();
    drop(group);
    until(&NODES_DROPPED, n).await;
    let group_shutdown = clock.stop();
    progress(&format!(
        "two snapshots dropped in {drop_snapshots}; group shut down in {group_shutdown}"
    ));
    let clock = Clock::start();
    for a in &plain_arbiters {
        a.stop();
    }
    drop(plain);
    for a in plain_arbiters {
        let _ = a.join();
    }
    let plain_shutdown = clock.stop();
    progress(&format!("plain actors stopped in {plain_shutdown}"));

    let per_actor = |grown: u64| (grown as f64 / n.max(1) as f64).round();
    let summary = serde_json::json!({
        "actors": n,
        "arbiters": arbiters,
        "spawn_ms": ms(spawn.wall),
        "spawn_cpu_ms": ms(spawn.cpu),
        "spawn_calls_ms": ms(spawn_calls.wall),
        "snapshot_ms": ms(first.total),
        "snapshot_cpu_ms": ms(first.cpu),
        "snapshot_start_ms": ms(first.start),
        "snapshot_last_state_ms": ms(first.records),
        "snapshot2_ms": ms(second.total),
        "snapshot2_cpu_ms": ms(second.cpu),
        "snapshot2_start_ms": ms(second.start),
        "snapshot2_last_state_ms": ms(second.records),
        "snapshot_nodes": snapshot_nodes,
        "snapshot_payload_bytes": payload,
        "file_bytes": file_bytes,
        "encode_ms": ms(encode.wall),
        "decode_ms": ms(decode.wall),
        "check_ms": ms(check_time.wall),
        "bytes_per_actor": per_actor(rss3.saturating_sub(rss2)),
        "plain_bytes_per_actor": per_actor(rss1.saturating_sub(rss0)),
        "plain_spawn_ms": ms(plain_spawn.wall),
        "plain_spawn_cpu_ms": ms(plain_spawn.cpu),
        "plain_broadcast_ms": ms(broadcast.wall),
        "plain_broadcast_cpu_ms": ms(broadcast.cpu),
        "rss_mb": mb(rss_end),
        "peak_rss_mb": mb(proc_status_bytes("VmHWM")),
        "group_shutdown_ms": ms(group_shutdown.wall),
        "group_shutdown_cpu_ms": ms(group_shutdown.cpu),
        "plain_shutdown_ms": ms(plain_shutdown.wall),
        "wall_ms": ms(wall.elapsed()),
    });
    progress("done");
    if args.json {
        println!("{summary}");
    } else {
        println!("{}", serde_json::to_string_pretty(&summary).expect("json"));
    }
}
