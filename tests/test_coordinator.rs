//! The checkpoint coordinator on running token networks: checkpoints land in the store on
//! the interval, retention keeps the newest N, every written checkpoint is consistent (checked
//! against the actors' own books) and restorable, and repeated failures stop it with an error.

mod common;

use std::fs;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_snapshot::checkpoint::{
    CheckpointConfig, CheckpointEntry, CheckpointError, CheckpointReport, CheckpointStore,
    Checkpointer, FsStore, file_name,
};
use actix_snapshot::{SnapshotError, SnapshotGroup};
use common::*;
use futures::StreamExt;

fn inject(net: &Net, per_node: u64) {
    for (i, ing) in net.inject.iter().enumerate() {
        for k in 0..per_node {
            ing.send(Inject {
                id: i as u64 * 1_000_000 + k,
                hops: u32::MAX,
            })
            .expect("running");
        }
    }
}

#[actix::test]
async fn interval_checkpoints_land_in_the_store_and_retention_keeps_n() {
    let n = 4;
    let edges = mesh(n);
    let net = start(n, &edges, 2);
    inject(&net, 20);
    let dir = tempfile::tempdir().unwrap();
    let store = FsStore::create(dir.path()).unwrap();
    let hooked = Arc::new(Mutex::new(Vec::new()));
    let h = Arc::clone(&hooked);
    let hook_edges = edges.clone();
    let (tx, mut reports) = futures::channel::mpsc::unbounded::<CheckpointReport>();
    let started = Instant::now();
    let handle = Checkpointer::new(
        net.group.clone(),
        store.clone(),
        CheckpointConfig::default()
            .interval(Duration::from_millis(25))
            .retain(3),
    )
    .on_snapshot(move |snap| {
        // The hook sees each snapshot before it is written; check it independently.
        verify(snap, n, &hook_edges);
        h.lock().unwrap().push(snap.id);
    })
    .on_checkpoint(move |r| {
        let _ = tx.unbounded_send(r.clone());
    })
    .start()
    .unwrap();

    let mut got = Vec::new();
    while got.len() < 6 {
        got.push(reports.next().await.expect("coordinator running"));
    }
    let stats = handle.stop_and_join().await.expect("stops cleanly");
    let elapsed = started.elapsed();
    net.group.shutdown();

    // Interval: the first round waits one interval, then one per interval at most.
    assert!(
        elapsed >= Duration::from_millis(25 * 6),
        "6 checkpoints at 25 ms took only {elapsed:?}"
    );
    assert!(stats.completed >= 6 && stats.failed == 0, "{stats:?}");
    let ids: Vec<u64> = got.iter().map(|r| r.id).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids increase: {ids:?}");
    for r in &got {
        assert!(r.bytes > 0 && r.duration >= r.snapshot_duration);
        assert_eq!(r.path, dir.path().join(file_name(r.id)));
    }
    // Every snapshot went through the hook first.
    let hooked = hooked.lock().unwrap().clone();
    assert!(
        ids.iter().all(|id| hooked.contains(id)),
        "{hooked:?} vs {ids:?}"
    );

    // Exactly the newest three files remain, read with std::fs.
    let last = stats.last.clone().expect("a last report");
    let mut on_disk: Vec<String> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    on_disk.sort();
    let expected: Vec<String> = (last.id - 2..=last.id).map(file_name).collect();
    assert_eq!(on_disk, expected);
    // Each is complete, consistent with the actors' books, and its size is what was reported.
    for id in last.id - 2..=last.id {
        let snap = store.load(id).unwrap();
        verify(&snap, n, &edges);
        if let Some(r) = got.iter().find(|r| r.id == id) {
            assert_eq!(r.bytes, fs::metadata(store.path_of(id)).unwrap().len());
        }
    }

    // And the newest restores.
    let latest = store.latest_valid().unwrap();
    assert_eq!(latest.entry.id, last.id);
    let mut b = SnapshotGroup::builder();
    declare(&mut b, n, &edges);
    let group = b.restore(&latest.snapshot).expect("restores");
    let again = group.snapshot().await.unwrap();
    let (_, before) = verify(&latest.snapshot, n, &edges);
    let (_, after) = verify(&again, n, &edges);
    assert_eq!(before, after, "same tokens after the restore");
    group.shutdown();
}

#[actix::test]
async fn a_stopped_node_fails_rounds_until_the_limit_stops_the_coordinator() {
    let net = start(3, &ring(3), 2);
    let dir = tempfile::tempdir().unwrap();
    let store = FsStore::create(dir.path()).unwrap();
    let handle = Checkpointer::new(
        net.group.clone(),
        store.clone(),
        CheckpointConfig::default()
            .interval(Duration::from_millis(10))
            .tolerable_failures(2),
    )
    .start()
    .unwrap();
    // Let a few checkpoints succeed first.
    while handle.stats().completed < 2 {
        actix::clock::sleep(Duration::from_millis(5)).await;
    }
    net.halt[1].send(Halt).unwrap();
    let err = handle.join().await.expect_err("stops with an error");
    net.group.shutdown();
    match err {
        CheckpointError::TooManyFailures { failures, last } => {
            assert_eq!(
                failures, 3,
                "tolerable 2: the third failure in a row stops it"
            );
            match *last {
                CheckpointError::Snapshot(SnapshotError::NodeStopped { stopped, .. }) => {
                    assert_eq!(stopped, vec!["n1".to_string()])
                }
                other => panic!("expected NodeStopped, got {other:?}"),
            }
        }
        other => panic!("expected TooManyFailures, got {other:?}"),
    }
    assert!(store.list().unwrap().len() >= 2, "earlier checkpoints kept");
    assert!(store.latest_valid().unwrap().skipped.is_empty());
}

#[actix::test]
async fn a_stuck_node_times_rounds_out_until_the_limit() {
    let net = start(3, &ring(3), 3);
    let dir = tempfile::tempdir().unwrap();
    let store = FsStore::create(dir.path()).unwrap();
    net.stall[2].send(Stall(1500)).unwrap();
    let started = Instant::now();
    let handle = Checkpointer::new(
        net.group.clone(),
        store.clone(),
        CheckpointConfig::default()
            .interval(Duration::from_millis(10))
            .timeout(Duration::from_millis(60))
            .tolerable_failures(1),
    )
    .start()
    .unwrap();
    let err = handle.join().await.expect_err("stops with an error");
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "before the stall ends"
    );
    match err {
        CheckpointError::TooManyFailures { failures: 2, last } => match *last {
            CheckpointError::Snapshot(SnapshotError::Timeout { missing, .. }) => {
                // n2 is stuck; n0 waits for n2's marker on the ring channel n2 -> n0.
                assert_eq!(missing, vec!["n0".to_string(), "n2".to_string()])
            }
            other => panic!("expected a timeout, got {other:?}"),
        },
        other => panic!("expected TooManyFailures, got {other:?}"),
    }
    assert!(store.list().unwrap().is_empty(), "nothing written");
    net.group.shutdown();
}

#[actix::test]
async fn write_failures_count_too() {
    let net = start(2, &ring(2), 0);
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("store");
    let store = FsStore::create(&sub).unwrap();
    fs::remove_dir(&sub).unwrap();
    fs::write(&sub, b"a file where the directory was").unwrap();
    let handle = Checkpointer::new(
        net.group.clone(),
        store,
        CheckpointConfig::default()
            .interval(Duration::from_millis(5))
            .tolerable_failures(0),
    )
    .start()
    .unwrap();
    match handle.join().await {
        Err(CheckpointError::TooManyFailures { failures: 1, last }) => {
            assert!(
                matches!(*last, CheckpointError::Io { op: "create", .. }),
                "{last:?}"
            )
        }
        other => panic!("expected a write failure, got {other:?}"),
    }
    net.group.shutdown();
}

#[actix::test]
async fn min_pause_spaces_the_rounds() {
    let net = start(2, &ring(2), 0);
    let dir = tempfile::tempdir().unwrap();
    let store = FsStore::create(dir.path()).unwrap();
    let ends = Arc::new(Mutex::new(Vec::<Instant>::new()));
    let e = Arc::clone(&ends);
    let handle = Checkpointer::new(
        net.group.clone(),
        store,
        CheckpointConfig::default()
            .interval(Duration::from_millis(1))
            .min_pause(Duration::from_millis(60))
            .retain(10),
    )
    .on_checkpoint(move |_| e.lock().unwrap().push(Instant::now()))
    .start()
    .unwrap();
    actix::clock::sleep(Duration::from_millis(400)).await;
    let stats = handle.stop_and_join().await.unwrap();
    net.group.shutdown();
    let ends = ends.lock().unwrap().clone();
    assert!(ends.len() >= 2, "some rounds ran: {stats:?}");
    // One round at a time, each starting at least 60 ms after the previous one ended.
    assert!(stats.completed <= 400 / 60 + 1, "{stats:?}");
    for w in ends.windows(2) {
        assert!(
            w[1] - w[0] >= Duration::from_millis(60),
            "{:?}",
            w[1] - w[0]
        );
    }
}

#[actix::test]
async fn bad_configurations_are_refused() {
    let net = start(1, &[], 0);
    let dir = tempfile::tempdir().unwrap();
    for cfg in [
        CheckpointConfig::default().retain(0),
        CheckpointConfig::default().max_concurrent(0),
        CheckpointConfig::default().interval(Duration::ZERO),
        CheckpointConfig::default().timeout(Duration::ZERO),
    ] {
        let r = Checkpointer::new(
            net.group.clone(),
            FsStore::create(dir.path()).unwrap(),
            cfg.clone(),
        )
        .start();
        assert!(matches!(r, Err(CheckpointError::Config(_))), "{cfg:?}");
    }
    net.group.shutdown();
}

/// A store that takes its time to write: wraps a [`FsStore`].
struct SlowStore(FsStore, Duration);

impl CheckpointStore for SlowStore {
    fn save(&self, id: u64, bytes: &[u8]) -> Result<CheckpointEntry, CheckpointError> {
        std::thread::sleep(self.1);
        self.0.save(id, bytes)
    }
    fn list(&self) -> Result<Vec<CheckpointEntry>, CheckpointError> {
        self.0.list()
    }
    fn read(&self, id: u64) -> Result<Vec<u8>, CheckpointError> {
        self.0.read(id)
    }
    fn delete(&self, id: u64) -> Result<(), CheckpointError> {
        self.0.delete(id)
    }
    fn location(&self) -> &std::path::Path {
        self.0.location()
    }
    fn path_of(&self, id: u64) -> std::path::PathBuf {
        self.0.path_of(id)
    }
}

/// Most rounds seen in progress at once while checkpointing into a slow store.
async fn peak_concurrency(max_concurrent: usize) -> u64 {
    let net = start(2, &ring(2), 0);
    let dir = tempfile::tempdir().unwrap();
    let store = SlowStore(
        FsStore::create(dir.path()).unwrap(),
        Duration::from_millis(40),
    );
    let handle = Checkpointer::new(
        net.group.clone(),
        store,
        CheckpointConfig::default()
            .interval(Duration::from_millis(5))
            .max_concurrent(max_concurrent)
            .retain(50),
    )
    .start()
    .unwrap();
    let mut peak = 0;
    let until = Instant::now() + Duration::from_millis(400);
    while Instant::now() < until {
        let st = handle.stats();
        peak = peak.max(st.started - st.completed - st.failed);
        actix::clock::sleep(Duration::from_millis(2)).await;
    }
    let stats = handle.stop_and_join().await.unwrap();
    net.group.shutdown();
    assert_eq!(stats.failed, 0);
    assert!(stats.completed >= 3, "{stats:?}");
    peak
}

#[actix::test]
async fn max_concurrent_bounds_the_rounds_in_progress() {
    assert_eq!(peak_concurrency(1).await, 1);
    let peak = peak_concurrency(3).await;
    assert!(peak > 1 && peak <= 3, "peak {peak}");
}
