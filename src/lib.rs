//! Consistent global snapshots for groups of [actix](https://docs.rs/actix) actors.
#![warn(missing_docs)]

pub mod checkpoint;
pub mod deadlock;
pub mod error;
#[cfg(feature = "cli")]
pub mod inspect;
pub mod monitor;
pub mod protocol;
pub mod shell;
pub mod snapshot;

pub use checkpoint::{
    CheckpointConfig, CheckpointError, CheckpointHandle, CheckpointReport, CheckpointStore,
    Checkpointer, FsStore,
};
pub use deadlock::{Deadlock, WaitForGraph, find_deadlocks};
pub use error::{BuildError, DecodeError, SnapshotError, SpawnError};
pub use monitor::{Monitor, MonitorEvent, Violation, ViolationReport};
pub use protocol::NodeId;
pub use shell::*;
pub use snapshot::GlobalSnapshot;
