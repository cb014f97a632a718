//! Consistent global snapshots for groups of [actix](https://docs.rs/actix) actors.
#![warn(missing_docs)]

pub mod error;
pub mod protocol;
pub mod shell;
pub mod snapshot;

pub use error::{BuildError, DecodeError, SnapshotError, SpawnError};
pub use protocol::NodeId;
pub use shell::*;
pub use snapshot::GlobalSnapshot;
