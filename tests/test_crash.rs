//! Crash recovery, end to end: the bank example (`examples/bank.rs`) runs as a child process
//! with `--checkpoint-dir`, is killed with SIGKILL at random moments — some of them while a
//! checkpoint file is being written — and restarted with `--restore`, again and again.
//!
//! After every kill the checkpoint directory is checked independently of the library's
//! coordinator: every file under a checkpoint name must be complete and valid (writes are
//! atomic), and every one must hold all branches, each knowing the address of every branch
//! (recorded as node ids), with the money and the tokens of the bank conserved — added up
//! here from the raw MessagePack states and in-flight transfers, without the example's
//! types. Every restarted run must say it
//! restored the checkpoint found here, and its own auditor must never see a wrong total.
//!
//! `CRASH_ITERATIONS` (default 20) sets the number of kills, `CRASH_SEED` the random seed.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use actix_snapshot::checkpoint::{CheckpointStore, FsStore, TEMP_PREFIX, parse_file_name};
use actix_snapshot::{DecodeError, GlobalSnapshot, NodeId};
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use serde::Deserialize;

const BRANCHES: u64 = 6;
const BALANCE: u64 = 1_000_000;
const TOKENS: u64 = 8;

/// A branch's state as the bank records it (only the fields checked here).
#[derive(Deserialize)]
struct BranchState {
    balance: u64,
    sent: u64,
    received: u64,
    parked: u64,
    /// The addresses of every branch, recorded as node ids.
    branches: Vec<u64>,
}

/// A transfer in flight.
#[derive(Deserialize)]
struct Transfer {
    amount: u64,
}

fn bank_exe() -> PathBuf {
    // target/<profile>/deps/test_crash-<hash> -> target/<profile>/examples/bank
    let exe = std::env::current_exe().expect("test binary path");
    let profile = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>");
    let bank = profile.join("examples").join("bank");
    assert!(
        bank.exists(),
        "{} missing: `cargo test` builds the examples (or run `cargo build --example bank`)",
        bank.display()
    );
    bank
}

fn spawn_bank(ck: &Path, log: &Path, restore: bool, seconds: f64, seed: u64) -> Child {
    let mut cmd = Command::new(bank_exe());
    cmd.args([
        "--branches",
        &BRANCHES.to_string(),
        "--balance",
        &BALANCE.to_string(),
        "--tokens",
        &TOKENS.to_string(),
        "--threads",
        "2",
        "--seconds",
        &seconds.to_string(),
        "--snapshot-every-ms",
        "40",
        "--seed",
        &seed.to_string(),
        "--checkpoint-every-ms",
        "15",
        "--checkpoint-dir",
    ])
    .arg(ck)
    .stdin(Stdio::null())
    .stdout(File::create(log).expect("log file"))
    .stderr(File::create(log.with_extension("err")).expect("log file"));
    if restore {
        cmd.arg("--restore");
    }
    if seconds < 10.0 {
        cmd.arg("--json");
    }
    cmd.spawn().expect("bank starts")
}

fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8], what: &str) -> T {
    rmp_serde::from_slice(bytes).unwrap_or_else(|e| panic!("{what} does not decode: {e}"))
}

/// Checks one checkpoint on its own: every branch there and knowing every other one; money,
/// tokens and transfers conserved.
fn check_checkpoint(snap: &GlobalSnapshot, path: &Path) {
    let at = path.display();
    let n = BRANCHES as usize;
    assert_eq!(snap.nodes.len(), n, "{at}: all branches");
    let ids: Vec<u64> = (0..BRANCHES).collect();
    let (mut money, mut parked, mut sent, mut received) = (0u64, 0u64, 0u64, 0u64);
    for (i, node) in snap.nodes.iter().enumerate() {
        assert_eq!(node.name, format!("branch-{i}"), "{at}");
        assert_eq!(node.id, NodeId(i as u64), "{at}: {}", node.name);
        assert_eq!(node.actor_type, "Branch", "{at}");
        let s: BranchState = decode(&node.state, &node.name);
        assert_eq!(s.branches, ids, "{at}: {} knows every branch", node.name);
        money += s.balance;
        parked += s.parked;
        sent += s.sent;
        received += s.received;
    }
    let mut in_flight = 0u64;
    for p in &snap.paths {
        assert_eq!(p.message_type, "Transfer", "{at}");
        assert!(
            p.from != p.to && p.from.0 < BRANCHES && p.to.0 < BRANCHES,
            "{at}: transfers from {} to {}",
            p.from,
            p.to
        );
        for m in &p.messages {
            money += decode::<Transfer>(m, "transfer").amount;
            in_flight += 1;
        }
    }
    assert_eq!(money, BRANCHES * BALANCE, "{at}: money conserved");
    assert_eq!(
        parked + in_flight,
        BRANCHES * TOKENS,
        "{at}: tokens conserved"
    );
    assert_eq!(received + in_flight, sent, "{at}: transfers accounted for");
}

/// After a kill: every file under a checkpoint name is complete and valid; the newest is
/// consistent. Returns (newest id, its size, whether a temporary file was left behind).
fn check_dir(ck: &Path) -> Option<(u64, u64, bool)> {
    let mut newest: Option<(u64, u64)> = None;
    let mut temp_left = false;
    for entry in fs::read_dir(ck).ok()? {
        let entry = entry.expect("dir entry");
        let name = entry.file_name().into_string().expect("utf-8 name");
        if name.starts_with(TEMP_PREFIX) {
            temp_left = true;
            continue;
        }
        let Some(id) = parse_file_name(&name) else {
            panic!("unexpected file {name}");
        };
        let bytes = fs::read(entry.path()).expect("readable");
        let snap = GlobalSnapshot::from_bytes(&bytes).unwrap_or_else(|e: DecodeError| {
            panic!("{name}: a checkpoint under its final name is invalid: {e}")
        });
        assert_eq!(snap.id, id, "{name}");
        check_checkpoint(&snap, &entry.path());
        if newest.is_none_or(|(n, _)| id > n) {
            newest = Some((id, bytes.len() as u64));
        }
    }
    newest.map(|(id, size)| (id, size, temp_left))
}

fn has_temp_file(ck: &Path) -> bool {
    fs::read_dir(ck).is_ok_and(|rd| {
        rd.flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with(TEMP_PREFIX))
    })
}

fn kill(child: &mut Child, log: &Path) {
    if let Ok(Some(status)) = child.try_wait() {
        panic!(
            "the bank exited by itself ({status}) before the kill:\n{}\n{}",
            fs::read_to_string(log).unwrap_or_default(),
            fs::read_to_string(log.with_extension("err")).unwrap_or_default()
        );
    }
    child.kill().expect("SIGKILL"); // SIGKILL on Unix
    child.wait().expect("reaped");
}

/// Checks what a run printed: it restored `expected` (when restoring) and its own auditor
/// never saw a wrong total or a failed round. Returns whether the restore line was printed
/// (a kill can come before it, under load).
fn check_log(log: &Path, restored: Option<u64>) -> bool {
    let out = fs::read_to_string(log).expect("log");
    let mut printed = false;
    if let Some(id) = restored
        && let Some(line) = out
            .lines()
            .find(|l| l.starts_with("restored from checkpoint"))
    {
        assert!(
            line.starts_with(&format!("restored from checkpoint {id} ")),
            "expected checkpoint {id}: {line}"
        );
        printed = true;
    }
    for l in out.lines() {
        assert!(
            !l.contains("WRONG") && !l.contains("snapshot failed"),
            "the bank's auditor: {l}"
        );
    }
    printed
}

#[test]
fn the_bank_survives_sigkill_and_resumes_from_its_checkpoints() {
    let iterations: usize = std::env::var("CRASH_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let seed: u64 = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        });
    eprintln!("crash test: {iterations} kills, CRASH_SEED={seed}");
    let mut rng = SmallRng::seed_from_u64(seed);
    let tmp = tempfile::tempdir().unwrap();
    let ck = tmp.path().join("checkpoints");
    let started = Instant::now();
    let mut last_id = 0;
    let (mut restores, mut kills_during_write, mut temp_left_behind) = (0, 0, 0);
    let mut sizes = Vec::new();

    for it in 0..iterations {
        let latest = FsStore::open(&ck)
            .and_then(|s| s.latest_valid())
            .ok()
            .map(|l| l.snapshot.id);
        let log = tmp.path().join(format!("run-{it}.log"));
        let mut child = spawn_bank(&ck, &log, latest.is_some(), 600.0, it as u64);
        if it % 3 == 2 {
            // Kill while a checkpoint is being written: wait for a temporary file.
            std::thread::sleep(Duration::from_millis(rng.random_range(50..200)));
            let deadline = Instant::now() + Duration::from_secs(5);
            let mut hit = false;
            while Instant::now() < deadline {
                if has_temp_file(&ck) {
                    hit = true;
                    break;
                }
                std::thread::yield_now();
            }
            kill(&mut child, &log);
            if hit {
                kills_during_write += 1;
            }
        } else {
            std::thread::sleep(Duration::from_millis(rng.random_range(100..700)));
            kill(&mut child, &log);
        }
        let restored = check_log(&log, latest);
        if restored {
            restores += 1;
        }
        if let Some((id, size, temp)) = check_dir(&ck) {
            assert!(id >= last_id, "checkpoint ids go on: {id} after {last_id}");
            if latest.is_some() && !restored {
                // Killed before the restore was done: it cannot have written anything.
                assert_eq!(Some(id), latest, "no checkpoint before the restore line");
            }
            last_id = id;
            sizes.push(size);
            if temp {
                temp_left_behind += 1;
            }
        }
    }

    // Finally: restore once more and let the bank finish on its own.
    let latest = FsStore::open(&ck)
        .and_then(|s| s.latest_valid())
        .expect("a valid checkpoint after all the kills");
    assert!(latest.skipped.is_empty(), "{:?}", latest.skipped);
    let log = tmp.path().join("final.log");
    let mut final_run = spawn_bank(&ck, &log, true, 0.5, 7);
    let status = final_run.wait().expect("final run");
    let output = fs::read_to_string(&log).unwrap_or_default();
    assert!(
        status.success(),
        "final run: {status}\n{output}\n{}",
        fs::read_to_string(log.with_extension("err")).unwrap_or_default()
    );
    assert!(check_log(&log, Some(latest.snapshot.id)));
    let summary: serde_json::Value = output
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("a JSON summary last:\n{output}"));
    assert_eq!(summary["restored_from"], latest.snapshot.id);
    assert!(
        summary["checkpoints"].as_u64().unwrap_or(0) >= 1,
        "{summary}"
    );
    assert!(summary["snapshots"].as_u64().unwrap_or(0) >= 1, "{summary}");
    assert_eq!(summary["consistent"], summary["snapshots"], "{summary}");
    let (id, _, _) = check_dir(&ck).expect("checkpoints");
    assert!(
        id > latest.snapshot.id,
        "the final run wrote new checkpoints"
    );

    assert!(restores >= iterations / 2, "most runs restored: {restores}");
    let (min, max) = (
        sizes.iter().min().copied().unwrap_or(0),
        sizes.iter().max().copied().unwrap_or(0),
    );
    eprintln!(
        "crash test: {iterations} kills ({kills_during_write} while a temporary checkpoint file \
         existed, {temp_left_behind} left one behind), {restores} restores, newest checkpoint \
         {min}..{max} bytes, {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
