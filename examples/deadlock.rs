//! Deadlock detection from live snapshots: dining philosophers.
//!
//! Philosophers and forks (each fork a tiny lock manager) are actors of one group. With
//! the default left-fork-first order they sooner or later all hold their left fork and
//! wait for their right one, for ever. The example snapshots the running group every few
//! milliseconds, builds the wait-for graph of each snapshot, and stops at the first cycle:
//! it prints the cycle and writes the graph as DOT.
//!
//! With `--ordered` (forks taken in increasing index) the system cannot deadlock; the
//! example then runs for `--seconds`, checks every snapshot, and fails if any deadlock is
//! reported (that would be a false positive).
//!
//! ```text
//! cargo run --example deadlock                        # deadlocks; DOT on stdout
//! cargo run --example deadlock -- --dot waits.dot     # DOT to a file
//! cargo run --example deadlock -- --ordered --seconds 3
//! cargo run --example deadlock -- --save stuck.snap    # keep the stuck snapshot, then:
//! cargo run --bin actix-snapshot -- graph stuck.snap    # the inspector reads it back
//! dot -Tsvg waits.dot > waits.svg                     # with Graphviz installed
//! ```

#[path = "dining/mod.rs"]
mod dining;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use actix_snapshot::deadlock::WaitForGraph;
use clap::Parser;
use dining::{Order, Timing};

#[derive(Parser, Debug)]
#[command(about = "Dining philosophers: detect a deadlock from a live snapshot")]
struct Args {
    /// Number of philosophers (and forks).
    #[arg(long, default_value_t = 5)]
    philosophers: u32,
    /// Take forks in increasing index order: never deadlocks.
    #[arg(long)]
    ordered: bool,
    /// Seed of the philosophers' random timings.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Milliseconds between snapshots.
    #[arg(long, default_value_t = 10)]
    every_ms: u64,
    /// Give up (left-first) or stop checking (ordered) after this many seconds.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Write the wait-for graph as DOT to this file instead of stdout.
    #[arg(long)]
    dot: Option<PathBuf>,
    /// Longest think time, in milliseconds (think times are uniform in 0..=this).
    #[arg(long, default_value_t = 20)]
    think_ms: u64,
    /// Longest time between taking the first and asking for the second fork, in ms.
    #[arg(long, default_value_t = 4)]
    reach_ms: u64,
    /// Also write the snapshot in which the deadlock was found to this file
    /// (`GlobalSnapshot::to_bytes`; read it with `actix-snapshot graph FILE`).
    #[arg(long)]
    save: Option<PathBuf>,
    /// Arbiters (threads) to run the actors on; 0 runs them on the main thread.
    #[arg(long, default_value_t = 2)]
    arbiters: usize,
}

#[actix::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    if args.philosophers < 2 {
        eprintln!("need at least two philosophers");
        return ExitCode::FAILURE;
    }
    let order = if args.ordered {
        Order::Ordered
    } else {
        Order::LeftFirst
    };
    let group = dining::start(
        args.philosophers,
        order,
        args.seed,
        Timing {
            think: (0, args.think_ms),
            reach: (0, args.reach_ms),
            ..Timing::default()
        },
        args.arbiters,
    );
    let started = Instant::now();
    let limit = Duration::from_secs_f64(args.seconds.max(0.0));
    let (mut snapshots, mut with_waits, mut satisfied) = (0u64, 0u64, 0u64);
    let code = loop {
        actix::clock::sleep(Duration::from_millis(args.every_ms)).await;
        let snap = match group.snapshot().await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("snapshot failed: {e}");
                continue;
            }
        };
        snapshots += 1;
        let graph = WaitForGraph::from_snapshot(&snap);
        let waits = graph.waits();
        with_waits += u64::from(!waits.is_empty());
        satisfied += waits.iter().filter(|(_, _, w)| w.is_satisfied()).count() as u64;
        let deadlocks = graph.deadlocks();
        if let Some(d) = deadlocks.first() {
            println!(
                "deadlock found in snapshot {} after {:.2} s ({snapshots} snapshots checked):",
                snap.id,
                started.elapsed().as_secs_f64()
            );
            println!("  cycle: {d}");
            if let Some(path) = &args.save {
                match save(path, &snap.to_bytes()) {
                    Ok(()) => println!("  snapshot written to {}", path.display()),
                    Err(e) => {
                        eprintln!("cannot write {}: {e}", path.display());
                        break ExitCode::FAILURE;
                    }
                }
            }
            let dot = graph.to_dot();
            match &args.dot {
                Some(path) => match save(path, dot.as_bytes()) {
                    Ok(()) => println!("  wait-for graph written to {}", path.display()),
                    Err(e) => {
                        eprintln!("cannot write {}: {e}", path.display());
                        break ExitCode::FAILURE;
                    }
                },
                None => print!("{dot}"),
            }
            break if args.ordered {
                eprintln!("BUG: the ordered variant cannot deadlock");
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            };
        }
        if started.elapsed() >= limit {
            println!(
                "no deadlock in {:.2} s: {snapshots} snapshots checked, {with_waits} with waits, \
                 {satisfied} waits satisfied by in-flight messages",
                started.elapsed().as_secs_f64()
            );
            break if args.ordered {
                ExitCode::SUCCESS
            } else {
                eprintln!("the left-first variant did not deadlock in time; try another --seed");
                ExitCode::FAILURE
            };
        }
    };
    group.shutdown();
    code
}

/// Writes `bytes` to `path` crash-safely: a temporary file next to it, fsync, rename.
fn save(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => std::path::Path::new("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    std::fs::File::open(dir)?.sync_all()
}
