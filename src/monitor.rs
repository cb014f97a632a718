//! Invariant monitoring: run checks on every snapshot of a live group.
//!
//! A [`Monitor`] takes a snapshot of a running [`SnapshotGroup`] every `every` (one round at
//! a time, never overlapping its own rounds), runs each check on it, and reports:
//!
//! - a **violation** when a check returns `Err(Violation)`: a [`ViolationReport`] with the
//!   check's name, the snapshot id, how many snapshots the monitor had checked so far, and
//!   the offending [`GlobalSnapshot`] itself for inspection (optionally also written to a
//!   directory, see [`MonitorBuilder::store_violations_in`]);
//! - a **snapshot failure** when a round does not complete (a timeout, a node that panicked
//!   before it recorded): a [`MonitorEvent::SnapshotFailed`]. A failed round is not a
//!   violation; the monitor carries on with the next one. A node that stops is no failure:
//!   it has left the group, and later snapshots (and checks) simply do not hold it.
//!
//! Reports arrive three ways, use any: a bounded futures channel ([`Monitor::events`], a
//! `Stream`), a callback ([`MonitorBuilder::on_event`]), and `tracing` events (`error` for a
//! violation, `warn` for a failed round, `debug` for each checked snapshot). Counters are
//! in [`Monitor::stats`].
//!
//! Because a snapshot is a consistent cut, a check sees the group as it could have been at
//! one instant: money in accounts plus money in flight is exact, never "half a transfer".
//!
//! The monitor runs as a task on the arbiter that starts it (`actix::spawn`); the checks run
//! there too, so keep them quick. A check that panics counts as violated (its message is
//! the panic's) and the monitor goes on. Dropping the [`Monitor`] (or
//! [`Monitor::stop`]) stops it; a round it had started still completes in the group.
//!
//! ```
//! use std::time::Duration;
//! use actix::prelude::*;
//! use actix_snapshot::{Out, Snapshot, SnapshotGroup};
//! use actix_snapshot::monitor::{Monitor, Violation};
//! use futures::StreamExt;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Message, Serialize, Deserialize)]
//! #[rtype(result = "()")]
//! struct Transfer { amount: u64 }
//!
//! #[derive(Snapshot)]
//! #[snapshot(state = balance, messages(Transfer))]
//! struct Branch { balance: u64, peer: Out<Transfer> }
//! impl Actor for Branch { type Context = Context<Self>; }
//! impl Handler<Transfer> for Branch {
//!     type Result = ();
//!     fn handle(&mut self, t: Transfer, _ctx: &mut Context<Self>) {
//!         self.balance += t.amount;
//!         let half = self.balance / 2;
//!         self.balance -= half;
//!         self.peer.send(Transfer { amount: half });
//!     }
//! }
//!
//! fn money_conserved(snap: &actix_snapshot::GlobalSnapshot) -> Result<(), Violation> {
//!     let total = snap.states::<Branch>().map_err(Violation::from)?.sum::<u64>()
//!         + snap.in_flight::<Transfer>().map_err(Violation::from)?.map(|t| t.amount).sum::<u64>();
//!     if total == 1000 { Ok(()) } else { Err(Violation::new(format!("total is {total}"))) }
//! }
//!
//! # #[actix::main] async fn main() {
//! let mut b = SnapshotGroup::builder();
//! let (x, y) = (b.node::<Branch>("x"), b.node::<Branch>("y"));
//! let (x_to_y, y_to_x) = (b.channel(x, y), b.channel(y, x));
//! let kick = b.ingress::<Transfer, _>("kick", x);
//! b.actor(x, move |s| Branch { balance: s.unwrap_or(500), peer: x_to_y });
//! b.actor(y, move |s| Branch { balance: s.unwrap_or(500), peer: y_to_x });
//! let group = b.start().unwrap();
//! kick.send(Transfer { amount: 0 }).unwrap();
//!
//! let mut monitor = Monitor::builder(group.clone())
//!     .every(Duration::from_millis(5))
//!     .check("money conserved", money_conserved)
//!     .start()
//!     .unwrap();
//! let mut events = monitor.events().unwrap();
//! while monitor.stats().checked < 10 {
//!     actix::clock::sleep(Duration::from_millis(5)).await;
//! }
//! monitor.stop();
//! assert_eq!(monitor.stats().violations, 0);
//! assert!(events.next().await.is_none()); // stream ends once the monitor stopped
//! group.shutdown();
//! # }
//! ```

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::channel::mpsc;
use futures::future::{AbortHandle, Abortable};

use crate::error::{DecodeError, SnapshotError};
use crate::shell::{SnapshotGroup, SnapshotOptions};
use crate::snapshot::GlobalSnapshot;

/// What a check returns when its invariant does not hold: a message for the report.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Violation {
    /// What is wrong, for people.
    pub message: String,
}

impl Violation {
    /// A violation with this message.
    pub fn new(message: impl Into<String>) -> Self {
        Violation {
            message: message.into(),
        }
    }
}

impl From<DecodeError> for Violation {
    /// A snapshot that does not decode as the check expects also fails the check.
    fn from(e: DecodeError) -> Self {
        Violation::new(format!("snapshot does not decode: {e}"))
    }
}

/// One violated check on one snapshot.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ViolationReport {
    /// The name the check was registered with.
    pub check: String,
    /// Id of the offending snapshot (its round in the group).
    pub snapshot_id: u64,
    /// How many snapshots this monitor had checked, this one included (1 for the first).
    pub checked: u64,
    /// What the check said.
    pub violation: Violation,
    /// The offending snapshot, for inspection or to store.
    pub snapshot: Arc<GlobalSnapshot>,
    /// Where the snapshot was written, if the monitor stores violations and the write worked.
    pub saved_to: Option<PathBuf>,
    /// Why writing the snapshot failed, if it did.
    pub save_error: Option<String>,
}

/// What a monitor reports.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum MonitorEvent {
    /// A check failed on a snapshot.
    Violation(ViolationReport),
    /// A snapshot round did not complete. Not a violation; the monitor goes on.
    SnapshotFailed {
        /// How many rounds this monitor had started, this one included.
        attempt: u64,
        /// Why the round failed.
        error: SnapshotError,
    },
}

/// Counters of a monitor.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MonitorStats {
    /// Snapshot rounds started.
    pub rounds: u64,
    /// Snapshots taken and checked.
    pub checked: u64,
    /// Violations found (one per failing check per snapshot).
    pub violations: u64,
    /// Rounds that failed (timeout, panicked node, ...).
    pub snapshot_failures: u64,
    /// Events not put on the channel because it was full (callback and tracing still saw them).
    pub events_dropped: u64,
    /// Id of the last snapshot checked.
    pub last_snapshot: Option<u64>,
    /// Id of the first snapshot with a violation.
    pub first_violation: Option<u64>,
    /// Whether the monitor's task is still running.
    pub running: bool,
}

/// A monitor cannot start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MonitorError {
    /// [`Monitor`] runs as a task on the current actix arbiter; there is none on this thread.
    #[error("no actix arbiter is running on this thread")]
    NoArbiter,
    /// The directory for offending snapshots cannot be created.
    #[error("cannot create the directory {path:?} for violating snapshots: {source}")]
    StoreDir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

type Check = Box<dyn Fn(&GlobalSnapshot) -> Result<(), Violation>>;
type Callback = Box<dyn FnMut(&MonitorEvent)>;

/// Configures a [`Monitor`]; made by [`Monitor::builder`].
pub struct MonitorBuilder {
    group: SnapshotGroup,
    every: Duration,
    checks: Vec<(String, Check)>,
    on_event: Option<Callback>,
    store_dir: Option<PathBuf>,
    stop_on_violation: bool,
    options: Option<SnapshotOptions>,
    capacity: usize,
}

impl fmt::Debug for MonitorBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MonitorBuilder")
            .field("every", &self.every)
            .field(
                "checks",
                &self.checks.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .field("store_dir", &self.store_dir)
            .field("stop_on_violation", &self.stop_on_violation)
            .finish()
    }
}

impl MonitorBuilder {
    /// Time from the start of one round to the start of the next (default 100 ms). A round
    /// that takes longer delays the next; rounds of one monitor never overlap.
    pub fn every(mut self, every: Duration) -> Self {
        self.every = every;
        self
    }

    /// Adds a check, run on every snapshot; `name` appears in its reports.
    pub fn check(
        mut self,
        name: impl Into<String>,
        check: impl Fn(&GlobalSnapshot) -> Result<(), Violation> + 'static,
    ) -> Self {
        self.checks.push((name.into(), Box::new(check)));
        self
    }

    /// Calls `f` with every event, on the monitor's task, before it goes on the channel.
    pub fn on_event(mut self, f: impl FnMut(&MonitorEvent) + 'static) -> Self {
        self.on_event = Some(Box::new(f));
        self
    }

    /// Writes each offending snapshot to `dir` with a [`FsStore`](crate::checkpoint::FsStore)
    /// (file `chk-<snapshot id>.snap`, crash-safely: temporary file, fsync, rename, fsync of
    /// the directory), so `actix-snapshot list|inspect|graph` read it like a checkpoint. The
    /// directory is created if needed. The write blocks the monitor's task while it runs.
    pub fn store_violations_in(mut self, dir: impl Into<PathBuf>) -> Self {
        self.store_dir = Some(dir.into());
        self
    }

    /// Stops the monitor after the first snapshot with a violation (default: go on).
    pub fn stop_on_violation(mut self, stop: bool) -> Self {
        self.stop_on_violation = stop;
        self
    }

    /// Options for the monitor's rounds (default: the group's).
    pub fn snapshot_options(mut self, options: SnapshotOptions) -> Self {
        self.options = Some(options);
        self
    }

    /// How many events the channel of [`Monitor::events`] holds before further events are
    /// dropped from it (default 64). Dropped events are counted in
    /// [`MonitorStats::events_dropped`].
    pub fn channel_capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity;
        self
    }

    /// Starts the monitor as a task on the current arbiter.
    ///
    /// # Errors
    /// [`MonitorError::NoArbiter`] outside a running actix arbiter;
    /// [`MonitorError::StoreDir`] if the store directory cannot be created.
    pub fn start(self) -> Result<Monitor, MonitorError> {
        if actix::Arbiter::try_current().is_none() {
            return Err(MonitorError::NoArbiter);
        }
        if let Some(dir) = &self.store_dir {
            std::fs::create_dir_all(dir).map_err(|source| MonitorError::StoreDir {
                path: dir.clone(),
                source,
            })?;
        }
        // futures' bounded channel holds `buffer + senders` messages; one sender here.
        let (tx, rx) = mpsc::channel(self.capacity.saturating_sub(1));
        let stats = Arc::new(Mutex::new(MonitorStats {
            running: true,
            ..MonitorStats::default()
        }));
        let (abort, registration) = AbortHandle::new_pair();
        let task = Task {
            group: self.group,
            every: self.every,
            checks: self.checks,
            on_event: self.on_event,
            store_dir: self.store_dir,
            stop_on_violation: self.stop_on_violation,
            options: self.options,
            tx,
            stats: stats.clone(),
        };
        let done = stats.clone();
        actix::spawn(async move {
            let _ = Abortable::new(task.run(), registration).await;
            done.lock().unwrap_or_else(PoisonError::into_inner).running = false;
        });
        tracing::info!(every_ms = self.every.as_millis() as u64, "monitor started");
        Ok(Monitor {
            stats,
            events: Some(rx),
            abort,
        })
    }
}

/// A running monitor. Dropping it stops the monitor. See the [module docs](self).
#[derive(Debug)]
pub struct Monitor {
    stats: Arc<Mutex<MonitorStats>>,
    events: Option<mpsc::Receiver<MonitorEvent>>,
    abort: AbortHandle,
}

impl Monitor {
    /// A monitor that snapshots `group` every `every` and runs `check` on each snapshot;
    /// shorthand for [`Monitor::builder`] with one check named `"check"`.
    ///
    /// # Errors
    /// As [`MonitorBuilder::start`].
    pub fn start(
        group: SnapshotGroup,
        every: Duration,
        check: impl Fn(&GlobalSnapshot) -> Result<(), Violation> + 'static,
    ) -> Result<Monitor, MonitorError> {
        Monitor::builder(group)
            .every(every)
            .check("check", check)
            .start()
    }

    /// A builder for a monitor of `group`.
    pub fn builder(group: SnapshotGroup) -> MonitorBuilder {
        MonitorBuilder {
            group,
            every: Duration::from_millis(100),
            checks: Vec::new(),
            on_event: None,
            store_dir: None,
            stop_on_violation: false,
            options: None,
            capacity: 64,
        }
    }

    /// The stream of events (violations, failed rounds). Can be taken once; `None` after.
    /// The stream ends when the monitor stops.
    pub fn events(&mut self) -> Option<mpsc::Receiver<MonitorEvent>> {
        self.events.take()
    }

    /// The monitor's counters now.
    pub fn stats(&self) -> MonitorStats {
        self.stats
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Whether the monitor still runs.
    pub fn is_running(&self) -> bool {
        self.stats().running && !self.abort.is_aborted()
    }

    /// Stops the monitor (at its next await point; a check in progress finishes first).
    pub fn stop(&self) {
        self.abort.abort();
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        self.abort.abort();
    }
}

struct Task {
    group: SnapshotGroup,
    every: Duration,
    checks: Vec<(String, Check)>,
    on_event: Option<Callback>,
    store_dir: Option<PathBuf>,
    stop_on_violation: bool,
    options: Option<SnapshotOptions>,
    tx: mpsc::Sender<MonitorEvent>,
    stats: Arc<Mutex<MonitorStats>>,
}

impl Task {
    fn stats(&self) -> std::sync::MutexGuard<'_, MonitorStats> {
        self.stats.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn run(mut self) {
        loop {
            let started = actix::clock::Instant::now();
            let attempt = {
                let mut st = self.stats();
                st.rounds += 1;
                st.rounds
            };
            let result = match self.options {
                Some(o) => self.group.snapshot_with(o).await,
                None => self.group.snapshot().await,
            };
            match result {
                Ok(snap) => {
                    if self.check(snap) && self.stop_on_violation {
                        tracing::info!("monitor stops after a violation");
                        return;
                    }
                }
                Err(SnapshotError::GroupStopped) => {
                    tracing::info!("monitor stops: the group is gone");
                    return;
                }
                Err(error) => {
                    tracing::warn!(attempt, %error, "monitor: snapshot round failed");
                    self.stats().snapshot_failures += 1;
                    self.emit(MonitorEvent::SnapshotFailed { attempt, error });
                }
            }
            actix::clock::sleep_until(started + self.every).await;
        }
    }

    /// Runs every check on `snap`; true if any failed.
    fn check(&mut self, snap: GlobalSnapshot) -> bool {
        let checked = {
            let mut st = self.stats();
            st.checked += 1;
            st.last_snapshot = Some(snap.id);
            st.checked
        };
        let failures: Vec<(String, Violation)> = self
            .checks
            .iter()
            .filter_map(|(name, check)| run_check(check, &snap).err().map(|v| (name.clone(), v)))
            .collect();
        tracing::debug!(
            snapshot = snap.id,
            checked,
            violations = failures.len(),
            "monitor checked a snapshot"
        );
        if failures.is_empty() {
            return false;
        }
        let (saved_to, save_error) = match &self.store_dir {
            Some(dir) => match store(dir, &snap) {
                Ok(p) => (Some(p), None),
                Err(e) => {
                    tracing::warn!(snapshot = snap.id, error = %e, "monitor: cannot store violating snapshot");
                    (None, Some(e.to_string()))
                }
            },
            None => (None, None),
        };
        let snapshot = Arc::new(snap);
        for (check, violation) in failures {
            tracing::error!(
                check = %check,
                snapshot = snapshot.id,
                checked,
                violation = %violation,
                saved_to = ?saved_to,
                "invariant violated"
            );
            {
                let mut st = self.stats();
                st.violations += 1;
                st.first_violation.get_or_insert(snapshot.id);
            }
            self.emit(MonitorEvent::Violation(ViolationReport {
                check,
                snapshot_id: snapshot.id,
                checked,
                violation,
                snapshot: snapshot.clone(),
                saved_to: saved_to.clone(),
                save_error: save_error.clone(),
            }));
        }
        true
    }

    fn emit(&mut self, event: MonitorEvent) {
        if let Some(cb) = &mut self.on_event {
            cb(&event);
        }
        if let Err(e) = self.tx.try_send(event) {
            // A closed channel means nobody listens: not worth counting.
            if e.is_full() {
                self.stats().events_dropped += 1;
            }
        }
    }
}

/// Runs one check; a check that panics fails with the panic's message (the monitor goes on).
fn run_check(check: &Check, snap: &GlobalSnapshot) -> Result<(), Violation> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(snap))).unwrap_or_else(|p| {
        let msg = p
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "non-string panic payload".to_string());
        Err(Violation::new(format!("check panicked: {msg}")))
    })
}

/// Writes `snap` into `dir` through an [`FsStore`](crate::checkpoint::FsStore) (temporary
/// file, fsync, rename, fsync of the directory); returns the final path.
fn store(dir: &Path, snap: &GlobalSnapshot) -> Result<PathBuf, crate::checkpoint::CheckpointError> {
    use crate::checkpoint::{CheckpointStore, FsStore};
    Ok(FsStore::create(dir)?.save(snap.id, &snap.to_bytes())?.path)
}
