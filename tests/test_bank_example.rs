//! Smoke test of `examples/bank.rs`: run the built example for a short while and check the
//! JSON summary it prints as its last line. The example checks every snapshot's books
//! itself and exits non-zero on a wrong one; this test also checks the figures it reports.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The target directory's profile folder (`<target>/debug`): integration tests run from
/// `<target>/debug/deps/`, examples are built into `<target>/debug/examples/`.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    exe.ancestors()
        .find(|p| p.file_name().is_some_and(|n| n == "deps"))
        .and_then(Path::parent)
        .expect("test binary lives in <target>/<profile>/deps")
        .to_path_buf()
}

/// The bank example's binary; builds it if this test runs without the examples
/// (for example `cargo test --test test_bank_example`).
fn bank_binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(find_or_build).clone()
}

fn find_or_build() -> PathBuf {
    let dir = profile_dir();
    let bin = dir
        .join("examples")
        .join(format!("bank{}", std::env::consts::EXE_SUFFIX));
    if !bin.exists() {
        let target = dir.parent().expect("profile dir has a parent");
        let status = Command::new(env!("CARGO"))
            .args(["build", "--example", "bank"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("CARGO_TARGET_DIR", target)
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building the bank example failed");
    }
    assert!(bin.exists(), "no bank example at {}", bin.display());
    bin
}

fn run_bank(args: &[&str]) -> serde_json::Value {
    let out = Command::new(bank_binary())
        .args(args)
        .output()
        .expect("the bank example runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "bank exited with {}\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let last = stdout.lines().last().expect("some output");
    serde_json::from_str(last).unwrap_or_else(|e| panic!("last line is not JSON ({e}): {last}"))
}

fn field(v: &serde_json::Value, name: &str) -> u64 {
    v[name]
        .as_u64()
        .unwrap_or_else(|| panic!("no integer {name:?} in {v}"))
}

#[test]
fn bank_snapshots_always_balance_under_load() {
    let v = run_bank(&[
        "--seconds",
        "2",
        "--branches",
        "4",
        "--threads",
        "2",
        "--snapshot-every-ms",
        "50",
        "--json",
    ]);
    let snapshots = field(&v, "snapshots");
    assert!(snapshots > 0, "no snapshot taken: {v}");
    assert_eq!(field(&v, "consistent"), snapshots, "{v}");
    assert_eq!(field(&v, "snapshot_errors"), 0, "{v}");
    assert!(field(&v, "transfers") > 0, "no transfer made: {v}");
    assert_eq!(field(&v, "initial_total"), 4 * 1_000_000, "{v}");
    assert!(field(&v, "naive_readings") > 0, "{v}");
}

#[test]
fn bank_with_a_rate_limit_stays_near_it() {
    let v = run_bank(&[
        "--seconds",
        "1.5",
        "--branches",
        "3",
        "--rate",
        "400",
        "--snapshot-every-ms",
        "100",
        "--json",
    ]);
    let snapshots = field(&v, "snapshots");
    assert!(snapshots > 0, "{v}");
    assert_eq!(field(&v, "consistent"), snapshots, "{v}");
    let transfers = field(&v, "transfers");
    // 400/s for about 1.5 s: about 600. The limiter allows short bursts only, so twice
    // that is out of bounds; a slow machine may do fewer, so only the upper bound is firm.
    assert!(
        (1..=1_200).contains(&transfers),
        "{transfers} transfers at 400/s for 1.5 s: {v}"
    );
}
