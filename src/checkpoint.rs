//! Checkpoints: snapshots kept on disk, taken on a schedule, for rollback recovery.
//!
//! Two parts:
//!
//! - A [`CheckpointStore`] keeps encoded [`GlobalSnapshot`]s under their id. The default,
//!   [`FsStore`], writes one file per checkpoint (`chk-{id:020}.snap`) crash-safely: into a
//!   temporary file in the same directory, `write_all`, `fsync` of the file, `rename` to the
//!   final name, `fsync` of the directory. A crash or a full disk therefore never leaves a
//!   partial file under a checkpoint's name; a failed write removes its temporary file and
//!   leaves the earlier checkpoints as they were. Format version and checksum are those of
//!   [`GlobalSnapshot::to_bytes`]. [`CheckpointStore::latest_valid`] reads the newest
//!   checkpoint first and skips a truncated, corrupt or unreadable one in favour of the one
//!   before — never silently: every skipped file is returned with its typed error and logged
//!   as a `tracing` warning.
//! - A [`Checkpointer`] takes rounds through [`SnapshotGroup::snapshot_with`] on an interval
//!   and writes each completed snapshot to the store, then keeps only the newest N. Its
//!   settings ([`CheckpointConfig`]) follow the usual checkpoint coordinators: interval,
//!   per-round timeout, minimum pause between rounds, maximum concurrent rounds, tolerable
//!   consecutive failures, retention. Hooks see every completed snapshot
//!   ([`Checkpointer::on_snapshot`], e.g. to check invariants) and every written checkpoint
//!   ([`Checkpointer::on_checkpoint`], a [`CheckpointReport`] with id, duration, bytes).
//!   Hooks, encoding and file writes all run on a dedicated writer thread, never on an
//!   actor's thread, so writing a checkpoint does not block the actors.
//!
//! Each checkpoint holds whoever is in the group at its cut. A node that stops leaves the
//! group: the checkpoints after it do not hold it, and checkpointing goes on. A node whose
//! actor panics fails the round it owed a record ([`SnapshotError::NodePanicked`], one
//! failure for the coordinator); the rounds after it succeed without the node.
//!
//! To recover, build the same group again (declared nodes, and
//! [`restorable`](crate::GroupBuilder::restorable) for nodes spawned at run time) and hand the
//! newest valid checkpoint to [`GroupBuilder::restore`](crate::GroupBuilder::restore).
//!
//! ```
//! use std::time::Duration;
//! use actix_snapshot::checkpoint::{CheckpointConfig, CheckpointStore, Checkpointer, FsStore};
//! use actix::prelude::*;
//! use actix_snapshot::{Snapshot, SnapshotGroup};
//! use serde::{Deserialize, Serialize};
//!
//! /// "Add this much".
//! #[derive(Message, Serialize, Deserialize)]
//! #[rtype(result = "()")]
//! struct Add(u64);
//!
//! /// Counts what it was told to add.
//! #[derive(Snapshot)]
//! #[snapshot(state = total, messages(Add))]
//! struct Counter { total: u64 }
//! impl Actor for Counter { type Context = Context<Self>; }
//! impl Handler<Add> for Counter {
//!     type Result = ();
//!     fn handle(&mut self, n: Add, _ctx: &mut Context<Self>) { self.total += n.0; }
//! }
//!
//! # #[actix::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let store = FsStore::create(dir.path())?;
//!
//! let mut b = SnapshotGroup::builder();
//! let c = b.node::<Counter>("counter");
//! let input = b.ingress::<Add, _>("input", c);
//! b.actor(c, |restored| Counter { total: restored.unwrap_or(0) });
//! let group = b.start()?;
//! input.send(Add(40))?;
//! input.send(Add(2))?;
//!
//! // A checkpoint every 20 ms; keep the newest 2.
//! let (tx, mut reports) = futures::channel::mpsc::unbounded();
//! let handle = Checkpointer::new(
//!     group.clone(),
//!     store.clone(),
//!     CheckpointConfig::default().interval(Duration::from_millis(20)).retain(2),
//! )
//! .on_checkpoint(move |report| { let _ = tx.unbounded_send(report.clone()); })
//! .start()?;
//! use futures::StreamExt;
//! let report = reports.next().await.expect("a checkpoint is written");
//! assert!(report.bytes > 0);
//! let stats = handle.stop_and_join().await?;
//! assert!(stats.completed >= 1);
//! group.shutdown();
//!
//! // Recover: same topology, newest valid checkpoint.
//! let latest = store.latest_valid()?;
//! assert!(latest.skipped.is_empty());
//! let mut b = SnapshotGroup::builder();
//! let c = b.node::<Counter>("counter");
//! let input = b.ingress::<Add, _>("input", c);
//! b.actor(c, |restored| Counter { total: restored.unwrap_or(0) });
//! let group = b.restore(&latest.snapshot)?;
//! assert_eq!(input.next_offset(), 2);           // both inputs were handled before the cut
//! let again = group.snapshot().await?;
//! assert_eq!(again.state::<Counter>("counter")?, 42);
//! # group.shutdown();
//! # Ok(()) }
//! ```

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::time::{Duration, Instant};

use futures::channel::oneshot;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};

use crate::error::{DecodeError, SnapshotError};
use crate::shell::{SnapshotGroup, SnapshotOptions};
use crate::snapshot::GlobalSnapshot;

/// Start of every checkpoint file name.
pub const FILE_PREFIX: &str = "chk-";
/// End of every checkpoint file name.
pub const FILE_SUFFIX: &str = ".snap";
/// Start of the temporary files a [`FsStore`] writes before renaming them.
pub const TEMP_PREFIX: &str = ".chk-";
const TEMP_MARK: &str = ".tmp-";
const ID_DIGITS: usize = 20;

/// The file name of checkpoint `id`: `chk-{id:020}.snap`, so names sort like ids.
pub fn file_name(id: u64) -> String {
    format!("{FILE_PREFIX}{id:0width$}{FILE_SUFFIX}", width = ID_DIGITS)
}

/// The checkpoint id a file name stands for, if it is a checkpoint file name.
pub fn parse_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix(FILE_PREFIX)?.strip_suffix(FILE_SUFFIX)?;
    if digits.len() != ID_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Whether `name` is a temporary file left by a [`FsStore`] write.
fn is_temp_name(name: &str) -> bool {
    name.starts_with(TEMP_PREFIX) && name.contains(TEMP_MARK)
}

/// Why a checkpoint could not be saved, listed, loaded or taken.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// A file operation failed.
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        /// What was being done ("create", "write", "fsync", "rename", "read", ...).
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// A checkpoint's bytes are not a valid snapshot (truncated, corrupt, wrong version).
    #[error("checkpoint {} is invalid: {source}", path.display())]
    Decode {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        source: DecodeError,
    },
    /// A checkpoint holds a snapshot with another id than its name says.
    #[error("checkpoint {} holds snapshot {found}, but its name says {expected}", path.display())]
    IdMismatch {
        /// The file.
        path: PathBuf,
        /// Id from the name.
        expected: u64,
        /// Id inside.
        found: u64,
    },
    /// The store holds no checkpoint at all.
    #[error("no checkpoint in {}", dir.display())]
    NoCheckpoint {
        /// The store's directory.
        dir: PathBuf,
    },
    /// The store holds checkpoints, but none is valid.
    #[error("no valid checkpoint in {}: all {} skipped (newest: {})", dir.display(), skipped.len(),
        skipped.first().map(|s| s.error.to_string()).unwrap_or_default())]
    NoValidCheckpoint {
        /// The store's directory.
        dir: PathBuf,
        /// Every checkpoint, newest first, with why it was skipped.
        skipped: Vec<Skipped>,
    },
    /// No checkpoint with that id.
    #[error("no checkpoint {id} in {}", dir.display())]
    NotFound {
        /// The store's directory.
        dir: PathBuf,
        /// The id asked for.
        id: u64,
    },
    /// The snapshot round failed.
    #[error("snapshot round failed: {0}")]
    Snapshot(#[from] SnapshotError),
    /// Writing a checkpoint took longer than the round timeout.
    #[error("writing checkpoint {id} took longer than {timeout:?}")]
    WriteTimeout {
        /// The checkpoint.
        id: u64,
        /// The limit.
        timeout: Duration,
    },
    /// The writer thread is gone (a store method panicked).
    #[error("the checkpoint writer thread is gone")]
    WriterGone,
    /// The coordinator's task was dropped before it finished (its actix System stopped).
    #[error("the checkpoint coordinator was dropped before it finished")]
    CoordinatorGone,
    /// Too many rounds failed in a row; the coordinator stopped.
    #[error("checkpointing stopped after {failures} consecutive failures; last: {last}")]
    TooManyFailures {
        /// Consecutive failures.
        failures: u32,
        /// The last failure.
        last: Box<CheckpointError>,
    },
    /// The coordinator was started outside a running actix `System`.
    #[error("no actix System is running on this thread")]
    NoSystem,
    /// A [`CheckpointConfig`] value is out of range.
    #[error("invalid checkpoint configuration: {0}")]
    Config(String),
}

impl CheckpointError {
    fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> CheckpointError + 'a {
        move |source| CheckpointError::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }

    /// The decode error, when this is a [`CheckpointError::Decode`].
    pub fn decode_error(&self) -> Option<&DecodeError> {
        match self {
            CheckpointError::Decode { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// A checkpoint skipped by [`CheckpointStore::latest_valid`], and why.
#[derive(Debug)]
pub struct Skipped {
    /// The checkpoint's id (from its name).
    pub id: u64,
    /// Where it is.
    pub path: PathBuf,
    /// Why it was skipped: [`CheckpointError::Decode`] for a truncated or corrupt file,
    /// [`CheckpointError::Io`] for an unreadable one, [`CheckpointError::IdMismatch`].
    pub error: CheckpointError,
}

/// One checkpoint in a store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointEntry {
    /// The snapshot id it is stored under.
    pub id: u64,
    /// Where it is.
    pub path: PathBuf,
    /// Its size in bytes.
    pub size: u64,
}

/// What [`CheckpointStore::latest_valid`] found.
#[derive(Debug)]
pub struct Latest {
    /// The newest checkpoint that decodes.
    pub snapshot: GlobalSnapshot,
    /// Where it is.
    pub entry: CheckpointEntry,
    /// Newer checkpoints that were skipped, newest first, each with its error.
    pub skipped: Vec<Skipped>,
}

/// Where checkpoints are kept: encoded [`GlobalSnapshot`]s under their id.
///
/// Implementations write atomically: after [`save`](Self::save) returns, the checkpoint is
/// durable and complete; after a failure or a crash, the store holds either the complete
/// checkpoint or nothing under its id. Methods are called from the coordinator's writer
/// thread and may block.
pub trait CheckpointStore: Send + Sync + 'static {
    /// Stores `bytes` (the output of [`GlobalSnapshot::to_bytes`]) as checkpoint `id`,
    /// replacing any checkpoint with that id.
    fn save(&self, id: u64, bytes: &[u8]) -> Result<CheckpointEntry, CheckpointError>;

    /// Every checkpoint, oldest (lowest id) first. Includes ones that would not decode.
    fn list(&self) -> Result<Vec<CheckpointEntry>, CheckpointError>;

    /// The stored bytes of checkpoint `id`, unchecked.
    fn read(&self, id: u64) -> Result<Vec<u8>, CheckpointError>;

    /// Removes checkpoint `id`.
    fn delete(&self, id: u64) -> Result<(), CheckpointError>;

    /// The directory (or other location) of the store, for messages.
    fn location(&self) -> &Path;

    /// Where checkpoint `id` is or would be, for messages.
    fn path_of(&self, id: u64) -> PathBuf;

    /// Encodes and stores `snapshot` under its id.
    fn save_snapshot(&self, snapshot: &GlobalSnapshot) -> Result<CheckpointEntry, CheckpointError> {
        self.save(snapshot.id, &snapshot.to_bytes())
    }

    /// Loads and checks checkpoint `id` (magic, version, length, checksum, body, and that
    /// the snapshot inside has that id).
    fn load(&self, id: u64) -> Result<GlobalSnapshot, CheckpointError> {
        let bytes = self.read(id)?;
        let path = self.path_of(id);
        let snap =
            GlobalSnapshot::from_bytes(&bytes).map_err(|source| CheckpointError::Decode {
                path: path.clone(),
                source,
            })?;
        if snap.id != id {
            return Err(CheckpointError::IdMismatch {
                path,
                expected: id,
                found: snap.id,
            });
        }
        Ok(snap)
    }

    /// The newest checkpoint that loads, reading newest first. Every newer one that does
    /// not load (truncated, corrupt, unreadable) is skipped, logged as a warning and listed
    /// in [`Latest::skipped`].
    ///
    /// # Errors
    /// [`CheckpointError::NoCheckpoint`] for an empty store,
    /// [`CheckpointError::NoValidCheckpoint`] when every checkpoint was skipped, or the
    /// error of listing the store.
    fn latest_valid(&self) -> Result<Latest, CheckpointError> {
        let entries = self.list()?;
        if entries.is_empty() {
            return Err(CheckpointError::NoCheckpoint {
                dir: self.location().to_path_buf(),
            });
        }
        let mut skipped = Vec::new();
        for entry in entries.into_iter().rev() {
            match self.load(entry.id) {
                Ok(snapshot) => {
                    return Ok(Latest {
                        snapshot,
                        entry,
                        skipped,
                    });
                }
                Err(error) => {
                    tracing::warn!(
                        id = entry.id,
                        path = %entry.path.display(),
                        %error,
                        "skipping invalid checkpoint"
                    );
                    skipped.push(Skipped {
                        id: entry.id,
                        path: entry.path,
                        error,
                    });
                }
            }
        }
        Err(CheckpointError::NoValidCheckpoint {
            dir: self.location().to_path_buf(),
            skipped,
        })
    }

    /// Keeps the newest `keep` checkpoints and removes the others; returns the removed ids.
    /// Tries every removal; the first error is returned after the others were tried.
    fn retain(&self, keep: usize) -> Result<Vec<u64>, CheckpointError> {
        let entries = self.list()?;
        let excess = entries.len().saturating_sub(keep);
        let mut removed = Vec::new();
        let mut first_err = None;
        for e in entries.into_iter().take(excess) {
            match self.delete(e.id) {
                Ok(()) => removed.push(e.id),
                Err(err) => {
                    first_err.get_or_insert(err);
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(removed),
        }
    }
}

impl<S: CheckpointStore + ?Sized> CheckpointStore for Arc<S> {
    fn save(&self, id: u64, bytes: &[u8]) -> Result<CheckpointEntry, CheckpointError> {
        (**self).save(id, bytes)
    }
    fn list(&self) -> Result<Vec<CheckpointEntry>, CheckpointError> {
        (**self).list()
    }
    fn read(&self, id: u64) -> Result<Vec<u8>, CheckpointError> {
        (**self).read(id)
    }
    fn delete(&self, id: u64) -> Result<(), CheckpointError> {
        (**self).delete(id)
    }
    fn location(&self) -> &Path {
        (**self).location()
    }
    fn path_of(&self, id: u64) -> PathBuf {
        (**self).path_of(id)
    }
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// The default [`CheckpointStore`]: one file per checkpoint in a directory, written
/// crash-safely (temporary file, `fsync`, `rename`, `fsync` of the directory).
///
/// One writer per directory: [`FsStore::create`] removes temporary files left by an earlier
/// crashed writer.
#[derive(Debug, Clone)]
pub struct FsStore {
    dir: PathBuf,
}

impl FsStore {
    /// A store in `dir`, created (with its parents) if missing. Removes temporary files
    /// left in it by a writer that crashed.
    ///
    /// # Errors
    /// [`CheckpointError::Io`] when the directory cannot be created or read.
    pub fn create(dir: impl Into<PathBuf>) -> Result<Self, CheckpointError> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(CheckpointError::io("create directory", &dir))?;
        let store = FsStore { dir };
        store.open_check()?;
        for entry in fs::read_dir(&store.dir)
            .map_err(CheckpointError::io("read directory", &store.dir))?
            .flatten()
        {
            let name = entry.file_name();
            if name.to_str().is_some_and(is_temp_name) {
                let path = entry.path();
                match fs::remove_file(&path) {
                    Ok(()) => {
                        tracing::info!(path = %path.display(), "removed stale temporary checkpoint file")
                    }
                    Err(e) => {
                        tracing::warn!(path = %path.display(), error = %e, "cannot remove stale temporary checkpoint file")
                    }
                }
            }
        }
        Ok(store)
    }

    /// A store in the existing directory `dir`; nothing is created or removed.
    ///
    /// # Errors
    /// [`CheckpointError::Io`] when `dir` is missing or not a directory.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, CheckpointError> {
        let store = FsStore { dir: dir.into() };
        store.open_check()?;
        Ok(store)
    }

    fn open_check(&self) -> Result<(), CheckpointError> {
        let meta = fs::metadata(&self.dir).map_err(CheckpointError::io("open", &self.dir))?;
        if !meta.is_dir() {
            return Err(CheckpointError::Io {
                op: "open",
                path: self.dir.clone(),
                source: io::Error::new(io::ErrorKind::NotADirectory, "not a directory"),
            });
        }
        Ok(())
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Makes a rename or removal in the directory durable. Directories can be opened and
    /// synced on Unix only; elsewhere this does nothing.
    fn sync_dir(&self) -> Result<(), CheckpointError> {
        #[cfg(unix)]
        {
            File::open(&self.dir)
                .and_then(|d| d.sync_all())
                .map_err(CheckpointError::io("fsync directory", &self.dir))
        }
        #[cfg(not(unix))]
        {
            Ok(())
        }
    }

    fn write_temp(&self, tmp: &Path, bytes: &[u8]) -> Result<(), CheckpointError> {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(tmp)
            .map_err(CheckpointError::io("create", tmp))?;
        f.write_all(bytes)
            .map_err(CheckpointError::io("write", tmp))?;
        f.sync_all().map_err(CheckpointError::io("fsync", tmp))
    }
}

impl CheckpointStore for FsStore {
    fn save(&self, id: u64, bytes: &[u8]) -> Result<CheckpointEntry, CheckpointError> {
        let path = self.path_of(id);
        let tmp = self.dir.join(format!(
            "{TEMP_PREFIX}{id:0width$}{FILE_SUFFIX}{TEMP_MARK}{}-{}",
            std::process::id(),
            TEMP_COUNTER.fetch_add(1, Ordering::Relaxed),
            width = ID_DIGITS
        ));
        let written = self
            .write_temp(&tmp, bytes)
            .and_then(|()| fs::rename(&tmp, &path).map_err(CheckpointError::io("rename", &tmp)));
        if let Err(e) = written {
            // Nothing may stay behind under any name; the earlier checkpoints are untouched.
            if let Err(rm) = fs::remove_file(&tmp)
                && rm.kind() != io::ErrorKind::NotFound
            {
                tracing::warn!(path = %tmp.display(), error = %rm, "cannot remove temporary checkpoint file");
            }
            return Err(e);
        }
        self.sync_dir()?;
        Ok(CheckpointEntry {
            id,
            path,
            size: bytes.len() as u64,
        })
    }

    fn list(&self) -> Result<Vec<CheckpointEntry>, CheckpointError> {
        let mut out = Vec::new();
        for entry in
            fs::read_dir(&self.dir).map_err(CheckpointError::io("read directory", &self.dir))?
        {
            let entry = entry.map_err(CheckpointError::io("read directory", &self.dir))?;
            let Some(id) = entry.file_name().to_str().and_then(parse_file_name) else {
                continue;
            };
            let path = entry.path();
            // A file removed since read_dir (retention elsewhere) is simply not listed.
            let size = match fs::metadata(&path) {
                Ok(m) => m.len(),
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(source) => {
                    return Err(CheckpointError::Io {
                        op: "stat",
                        path,
                        source,
                    });
                }
            };
            out.push(CheckpointEntry { id, path, size });
        }
        out.sort_by_key(|e| e.id);
        Ok(out)
    }

    fn read(&self, id: u64) -> Result<Vec<u8>, CheckpointError> {
        let path = self.path_of(id);
        fs::read(&path).map_err(|source| {
            if source.kind() == io::ErrorKind::NotFound {
                CheckpointError::NotFound {
                    dir: self.dir.clone(),
                    id,
                }
            } else {
                CheckpointError::Io {
                    op: "read",
                    path,
                    source,
                }
            }
        })
    }

    fn delete(&self, id: u64) -> Result<(), CheckpointError> {
        let path = self.path_of(id);
        match fs::remove_file(&path) {
            Ok(()) => self.sync_dir(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(CheckpointError::NotFound {
                dir: self.dir.clone(),
                id,
            }),
            Err(source) => Err(CheckpointError::Io {
                op: "remove",
                path,
                source,
            }),
        }
    }

    fn location(&self) -> &Path {
        &self.dir
    }

    fn path_of(&self, id: u64) -> PathBuf {
        self.dir.join(file_name(id))
    }
}

/// Settings of a [`Checkpointer`]. Defaults:
///
/// | setting              | default  | meaning                                                  |
/// |----------------------|----------|----------------------------------------------------------|
/// | `interval`           | 10 s     | a round starts this long after the previous one started  |
/// | `timeout`            | 30 s     | limit for a round's snapshot, and again for its write    |
/// | `min_pause`          | 0        | least time between the end of a round and the next start |
/// | `max_concurrent`     | 1        | rounds (snapshot + write) in progress at once            |
/// | `tolerable_failures` | 3        | consecutive failed rounds tolerated; one more stops it   |
/// | `retain`             | 3        | checkpoints kept in the store, newest first              |
///
/// The first round starts one `interval` after [`Checkpointer::start`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CheckpointConfig {
    /// Time between the starts of two rounds.
    pub interval: Duration,
    /// Limit for a round's snapshot (its [`SnapshotOptions::timeout`]), and again for its
    /// write.
    pub timeout: Duration,
    /// Least time between the end of a round (completed or failed) and the next start.
    pub min_pause: Duration,
    /// Rounds in progress at once, from start until written; at least 1. Their snapshot
    /// rounds overlap; their writes queue on the one writer thread. The group's own limit
    /// ([`GroupBuilder::max_concurrent_rounds`](crate::GroupBuilder::max_concurrent_rounds))
    /// also applies: a round above it fails with [`SnapshotError::TooManyRounds`].
    pub max_concurrent: usize,
    /// Failed rounds in a row that are tolerated; the next failure stops the coordinator
    /// with [`CheckpointError::TooManyFailures`]. 0 stops it at the first failure.
    pub tolerable_failures: u32,
    /// Checkpoints kept in the store; older ones are removed after each write. At least 1.
    pub retain: usize,
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        CheckpointConfig {
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(30),
            min_pause: Duration::ZERO,
            max_concurrent: 1,
            tolerable_failures: 3,
            retain: 3,
        }
    }
}

impl CheckpointConfig {
    /// With the given interval.
    pub fn interval(mut self, d: Duration) -> Self {
        self.interval = d;
        self
    }
    /// With the given per-round timeout.
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = d;
        self
    }
    /// With the given minimum pause between rounds.
    pub fn min_pause(mut self, d: Duration) -> Self {
        self.min_pause = d;
        self
    }
    /// With the given maximum of concurrent rounds.
    pub fn max_concurrent(mut self, n: usize) -> Self {
        self.max_concurrent = n;
        self
    }
    /// With the given number of tolerable consecutive failures.
    pub fn tolerable_failures(mut self, n: u32) -> Self {
        self.tolerable_failures = n;
        self
    }
    /// Keeping the newest `n` checkpoints.
    pub fn retain(mut self, n: usize) -> Self {
        self.retain = n;
        self
    }

    fn validate(&self) -> Result<(), CheckpointError> {
        let bad = |m: &str| Err(CheckpointError::Config(m.to_string()));
        if self.interval.is_zero() {
            return bad("interval must be above zero");
        }
        if self.timeout.is_zero() {
            return bad("timeout must be above zero");
        }
        if self.max_concurrent == 0 {
            return bad("max_concurrent must be at least 1");
        }
        if self.retain == 0 {
            return bad("retain must be at least 1");
        }
        Ok(())
    }
}

/// A checkpoint written by a [`Checkpointer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointReport {
    /// The snapshot's id.
    pub id: u64,
    /// Where it was written.
    pub path: PathBuf,
    /// Size of the written checkpoint, in bytes.
    pub bytes: u64,
    /// From the start of the round until the checkpoint was durable.
    pub duration: Duration,
    /// The snapshot round's part of `duration`.
    pub snapshot_duration: Duration,
    /// The hooks', encoding's and write's part of `duration`.
    pub write_duration: Duration,
    /// In-flight messages recorded.
    pub in_flight: usize,
    /// Checkpoints removed by retention after this one was written.
    pub removed: Vec<u64>,
}

/// Counters of a [`Checkpointer`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CheckpointStats {
    /// Rounds started.
    pub started: u64,
    /// Checkpoints written.
    pub completed: u64,
    /// Rounds that failed (snapshot or write).
    pub failed: u64,
    /// Failures since the last written checkpoint.
    pub consecutive_failures: u32,
    /// The last written checkpoint.
    pub last: Option<CheckpointReport>,
}

type SnapshotHook = Arc<dyn Fn(&GlobalSnapshot) + Send + Sync>;
type ReportHook = Arc<dyn Fn(&CheckpointReport) + Send + Sync>;

/// Takes checkpoints of a [`SnapshotGroup`] on a schedule. See the [module docs](self).
pub struct Checkpointer {
    group: SnapshotGroup,
    store: Arc<dyn CheckpointStore>,
    config: CheckpointConfig,
    snapshot_hooks: Vec<SnapshotHook>,
    report_hooks: Vec<ReportHook>,
}

impl std::fmt::Debug for Checkpointer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpointer")
            .field("store", &self.store.location())
            .field("config", &self.config)
            .finish()
    }
}

impl Checkpointer {
    /// A coordinator for `group` writing into `store`.
    pub fn new(
        group: SnapshotGroup,
        store: impl CheckpointStore,
        config: CheckpointConfig,
    ) -> Self {
        Checkpointer {
            group,
            store: Arc::new(store),
            config,
            snapshot_hooks: Vec::new(),
            report_hooks: Vec::new(),
        }
    }

    /// Calls `hook` with every completed snapshot, before it is written, on the writer
    /// thread. A panic in the hook is logged and does not stop checkpointing.
    pub fn on_snapshot(mut self, hook: impl Fn(&GlobalSnapshot) + Send + Sync + 'static) -> Self {
        self.snapshot_hooks.push(Arc::new(hook));
        self
    }

    /// Calls `hook` with the report of every written checkpoint, on the coordinator's task
    /// (keep it short).
    pub fn on_checkpoint(
        mut self,
        hook: impl Fn(&CheckpointReport) + Send + Sync + 'static,
    ) -> Self {
        self.report_hooks.push(Arc::new(hook));
        self
    }

    /// Starts the coordinator as a task on the current actix arbiter and its writer thread.
    ///
    /// # Errors
    /// [`CheckpointError::Config`] for an invalid configuration, [`CheckpointError::NoSystem`]
    /// outside an actix arbiter, [`CheckpointError::Io`] if the writer thread cannot start.
    pub fn start(self) -> Result<CheckpointHandle, CheckpointError> {
        self.config.validate()?;
        if actix::Arbiter::try_current().is_none() {
            return Err(CheckpointError::NoSystem);
        }
        let (jobs, rx) = mpsc::channel::<WriteJob>();
        let store = Arc::clone(&self.store);
        let hooks = self.snapshot_hooks.clone();
        let keep = self.config.retain;
        std::thread::Builder::new()
            .name("actix-snapshot-checkpoint-writer".into())
            .spawn(move || writer_loop(rx, store, hooks, keep))
            .map_err(CheckpointError::io("spawn writer thread", Path::new("-")))?;
        let stats = Arc::new(Mutex::new(CheckpointStats::default()));
        let (stop_tx, stop_rx) = oneshot::channel();
        let (done_tx, done_rx) = oneshot::channel();
        let coord = Coordinator {
            group: self.group,
            config: self.config,
            jobs,
            report_hooks: self.report_hooks,
            stats: Arc::clone(&stats),
        };
        actix::spawn(async move {
            let result = coord.run(stop_rx).await;
            let _ = done_tx.send(result);
        });
        Ok(CheckpointHandle {
            stop: Mutex::new(Some(stop_tx)),
            done: done_rx,
            stats,
        })
    }
}

/// A running [`Checkpointer`]. Dropping it stops the coordinator (rounds in progress still
/// finish).
#[derive(Debug)]
pub struct CheckpointHandle {
    stop: Mutex<Option<oneshot::Sender<()>>>,
    done: oneshot::Receiver<Result<CheckpointStats, CheckpointError>>,
    stats: Arc<Mutex<CheckpointStats>>,
}

impl CheckpointHandle {
    /// Asks the coordinator to stop: no new round starts; rounds in progress finish.
    pub fn stop(&self) {
        if let Some(tx) = self
            .stop
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            let _ = tx.send(());
        }
    }

    /// The counters so far.
    pub fn stats(&self) -> CheckpointStats {
        self.stats
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Waits until the coordinator ends: after [`stop`](Self::stop), with the final counters;
    /// or when too many rounds failed in a row, with [`CheckpointError::TooManyFailures`].
    pub async fn join(self) -> Result<CheckpointStats, CheckpointError> {
        let CheckpointHandle { stop, done, .. } = self;
        let result = done.await.unwrap_or(Err(CheckpointError::CoordinatorGone));
        drop(stop);
        result
    }

    /// [`stop`](Self::stop), then [`join`](Self::join).
    pub async fn stop_and_join(self) -> Result<CheckpointStats, CheckpointError> {
        self.stop();
        self.join().await
    }
}

struct WriteJob {
    snapshot: GlobalSnapshot,
    reply: oneshot::Sender<Result<(CheckpointEntry, Vec<u64>), CheckpointError>>,
}

fn writer_loop(
    jobs: mpsc::Receiver<WriteJob>,
    store: Arc<dyn CheckpointStore>,
    hooks: Vec<SnapshotHook>,
    keep: usize,
) {
    while let Ok(job) = jobs.recv() {
        for hook in &hooks {
            let run = std::panic::AssertUnwindSafe(|| hook(&job.snapshot));
            if std::panic::catch_unwind(run).is_err() {
                tracing::error!(id = job.snapshot.id, "a snapshot hook panicked");
            }
        }
        let result = store.save_snapshot(&job.snapshot).map(|entry| {
            let removed = store.retain(keep).unwrap_or_else(|e| {
                tracing::warn!(error = %e, "checkpoint retention failed");
                Vec::new()
            });
            (entry, removed)
        });
        let _ = job.reply.send(result);
    }
}

struct Coordinator {
    group: SnapshotGroup,
    config: CheckpointConfig,
    jobs: mpsc::Sender<WriteJob>,
    report_hooks: Vec<ReportHook>,
    stats: Arc<Mutex<CheckpointStats>>,
}

impl Coordinator {
    fn stats(&self) -> std::sync::MutexGuard<'_, CheckpointStats> {
        self.stats.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// One round: snapshot, then write on the writer thread.
    fn round(
        &self,
    ) -> impl std::future::Future<Output = Result<CheckpointReport, CheckpointError>> + 'static
    {
        let group = self.group.clone();
        let jobs = self.jobs.clone();
        let timeout = self.config.timeout;
        let options = SnapshotOptions::default().timeout(timeout);
        async move {
            let started = Instant::now();
            let snapshot = group.snapshot_with(options).await?;
            let snapshot_duration = started.elapsed();
            let (id, in_flight) = (snapshot.id, snapshot.in_flight_count());
            let (reply, rx) = oneshot::channel();
            jobs.send(WriteJob { snapshot, reply })
                .map_err(|_| CheckpointError::WriterGone)?;
            let (entry, removed) = match actix::clock::timeout(timeout, rx).await {
                Err(_) => return Err(CheckpointError::WriteTimeout { id, timeout }),
                Ok(Err(_)) => return Err(CheckpointError::WriterGone),
                Ok(Ok(r)) => r?,
            };
            let duration = started.elapsed();
            Ok(CheckpointReport {
                id,
                path: entry.path,
                bytes: entry.size,
                duration,
                snapshot_duration,
                write_duration: duration.saturating_sub(snapshot_duration),
                in_flight,
                removed,
            })
        }
    }

    /// Records a round's outcome; `Err` when the coordinator must stop.
    fn finished(
        &self,
        outcome: Result<CheckpointReport, CheckpointError>,
    ) -> Result<(), CheckpointError> {
        match outcome {
            Ok(report) => {
                tracing::info!(
                    id = report.id,
                    bytes = report.bytes,
                    duration_us = report.duration.as_micros() as u64,
                    snapshot_us = report.snapshot_duration.as_micros() as u64,
                    path = %report.path.display(),
                    "checkpoint written"
                );
                {
                    let mut st = self.stats();
                    st.completed += 1;
                    st.consecutive_failures = 0;
                    st.last = Some(report.clone());
                }
                for hook in &self.report_hooks {
                    hook(&report);
                }
                Ok(())
            }
            Err(error) => {
                let failures = {
                    let mut st = self.stats();
                    st.failed += 1;
                    st.consecutive_failures += 1;
                    st.consecutive_failures
                };
                tracing::warn!(%error, consecutive = failures, "checkpoint failed");
                if failures > self.config.tolerable_failures {
                    tracing::error!(
                        failures,
                        %error,
                        "too many consecutive checkpoint failures; checkpointing stops"
                    );
                    return Err(CheckpointError::TooManyFailures {
                        failures,
                        last: Box::new(error),
                    });
                }
                Ok(())
            }
        }
    }

    async fn run(self, stop: oneshot::Receiver<()>) -> Result<CheckpointStats, CheckpointError> {
        let cfg = self.config.clone();
        let mut stop = stop.fuse();
        let mut rounds = FuturesUnordered::new();
        let mut next_start = Instant::now() + cfg.interval;
        let mut last_end: Option<Instant> = None;
        loop {
            let earliest = match last_end {
                Some(end) => next_start.max(end + cfg.min_pause),
                None => next_start,
            };
            let can_start = rounds.len() < cfg.max_concurrent;
            let wait = earliest.saturating_duration_since(Instant::now());
            let mut timer = if can_start {
                actix::clock::sleep(wait).boxed_local().fuse()
            } else {
                futures::future::pending().boxed_local().fuse()
            };
            futures::select_biased! {
                _ = stop => break,
                outcome = rounds.select_next_some() => {
                    last_end = Some(Instant::now());
                    self.finished(outcome)?;
                }
                _ = timer => {
                    self.stats().started += 1;
                    rounds.push(self.round());
                    next_start = Instant::now() + cfg.interval;
                }
            }
        }
        // Stopped: let the rounds in progress finish and count them.
        while let Some(outcome) = rounds.next().await {
            if let Err(e) = self.finished(outcome) {
                tracing::warn!(error = %e, "checkpoint failed while stopping");
            }
        }
        Ok(self.stats().clone())
    }
}
