//! The `actix-snapshot` command-line inspector (binary `src/bin/actix-snapshot.rs`), as a
//! library module so that its commands can be tested without a process.
//!
//! ```text
//! actix-snapshot list DIR            # checkpoints in DIR: id, size, valid or why not
//! actix-snapshot inspect FILE        # nodes, paths (in-flight counts), ingress offsets
//! actix-snapshot inspect FILE --json # the whole snapshot as JSON, states and messages decoded
//! actix-snapshot verify FILE|DIR     # checksum and version; exit code 1 if any file is bad
//! actix-snapshot graph FILE          # wait-for graph: waits, deadlocks (crate::deadlock)
//! actix-snapshot graph FILE --dot    # the same graph as Graphviz DOT
//! ```
//!
//! States and messages are MessagePack, which describes itself, so `--json` shows them
//! without the Rust types (through `rmpv`). Exit codes: 0 success, 1 an invalid snapshot
//! file, 2 an I/O or usage error. Errors go to stderr; nothing panics on bad input.
//!
//! ```
//! use actix_snapshot::GlobalSnapshot;
//! use actix_snapshot::inspect::{Cli, run};
//! use clap::Parser;
//!
//! let dir = tempfile::tempdir().unwrap();
//! let file = dir.path().join("chk-00000000000000000001.snap");
//! std::fs::write(&file, GlobalSnapshot::default().to_bytes()).unwrap();
//!
//! let mut out = Vec::new();
//! let cli = Cli::parse_from(["actix-snapshot", "verify", file.to_str().unwrap()]);
//! run(&cli, &mut out).unwrap();
//! assert!(String::from_utf8(out).unwrap().starts_with("ok"));
//!
//! std::fs::write(&file, b"ACTXSNAP").unwrap();           // truncated
//! let err = run(&cli, &mut Vec::new()).unwrap_err();
//! assert_eq!(err.exit_code(), 1);
//! ```

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};
use serde_json::{Value as Json, json};

use crate::checkpoint::{CheckpointError, CheckpointStore, FsStore};
use crate::error::DecodeError;
use crate::snapshot::{CHECKSUM_LEN, FORMAT_VERSION, GlobalSnapshot};

/// Command line of the inspector.
#[derive(Debug, Parser)]
#[command(
    name = "actix-snapshot",
    version,
    about = "Inspect and verify actix-snapshot checkpoint files"
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The inspector's subcommands.
#[derive(Debug, Subcommand)]
#[non_exhaustive]
pub enum Command {
    /// List the checkpoints of a directory: id, size, valid or invalid with the reason.
    List {
        /// The checkpoint directory.
        dir: PathBuf,
    },
    /// Show a snapshot file: nodes with type, state size and message counters, in-flight
    /// messages per path (sender, receiver, message type), ingress offsets.
    Inspect {
        /// The snapshot file.
        file: PathBuf,
        /// Print the whole snapshot as JSON, states and messages decoded.
        #[arg(long)]
        json: bool,
    },
    /// Check a snapshot file, or every checkpoint of a directory (magic, format version,
    /// length, checksum, body); exits with 1 if any is invalid.
    Verify {
        /// A snapshot file or a checkpoint directory.
        path: PathBuf,
    },
    /// Show the wait-for graph of a snapshot file: every recorded wait, whether an
    /// in-flight message satisfies it, and the deadlocks (the rule is documented in
    /// `actix_snapshot::deadlock`).
    Graph {
        /// The snapshot file.
        file: PathBuf,
        /// Print the graph as Graphviz DOT instead (satisfied waits dashed, deadlocks red).
        #[arg(long)]
        dot: bool,
    },
    // Further subcommands go here, with a branch in `run`.
}

/// Why an inspector command failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InspectError {
    /// A file or directory cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// A snapshot file is invalid.
    #[error("{}: {source}", path.display())]
    Decode {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        source: DecodeError,
    },
    /// A checkpoint directory cannot be used.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// `verify` found invalid files.
    #[error("{bad} of {total} checkpoint file(s) are invalid")]
    Invalid {
        /// Invalid files.
        bad: usize,
        /// Files checked.
        total: usize,
    },
    /// Output could not be written (e.g. a closed pipe).
    #[error("cannot write output: {0}")]
    Output(#[from] io::Error),
    /// The JSON output could not be encoded.
    #[error("cannot encode JSON: {0}")]
    Json(String),
}

impl InspectError {
    /// The process exit code for this error: 1 for an invalid snapshot, 2 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            InspectError::Decode { .. } | InspectError::Invalid { .. } => 1,
            InspectError::Checkpoint(CheckpointError::Decode { .. })
            | InspectError::Checkpoint(CheckpointError::NoValidCheckpoint { .. }) => 1,
            _ => 2,
        }
    }
}

/// Runs one command, writing its output to `out`.
///
/// # Errors
/// An [`InspectError`]; [`InspectError::exit_code`] gives the process exit code.
pub fn run(cli: &Cli, out: &mut dyn Write) -> Result<(), InspectError> {
    match &cli.command {
        Command::List { dir } => list(dir, out),
        Command::Inspect { file, json } => {
            let (snap, bytes) = read_snapshot(file)?;
            if *json {
                let doc = snapshot_json(&snap, file, &bytes);
                let text = serde_json::to_string_pretty(&doc)
                    .map_err(|e| InspectError::Json(e.to_string()))?;
                writeln!(out, "{text}")?;
                Ok(())
            } else {
                inspect_text(&snap, file, &bytes, out)
            }
        }
        Command::Verify { path } => verify(path, out),
        Command::Graph { file, dot } => graph(file, *dot, out),
    }
}

/// `graph FILE [--dot]`: the wait-for graph of a snapshot file.
fn graph(file: &Path, dot: bool, out: &mut dyn Write) -> Result<(), InspectError> {
    let (snap, _) = read_snapshot(file)?;
    let graph = crate::deadlock::WaitForGraph::from_snapshot(&snap);
    if dot {
        write!(out, "{}", graph.to_dot())?;
        return Ok(());
    }
    let waits = graph.waits();
    writeln!(
        out,
        "snapshot {}: {} nodes, {} waits",
        snap.id,
        snap.nodes.len(),
        waits.len()
    )?;
    for (waiter, on, w) in &waits {
        if w.is_satisfied() {
            writeln!(out, "  {waiter} -> {on}  (satisfied: {w})")?;
        } else {
            writeln!(out, "  {waiter} -> {on}")?;
        }
    }
    let deadlocks = graph.deadlocks();
    if deadlocks.is_empty() {
        writeln!(out, "no deadlock")?;
    }
    for d in &deadlocks {
        writeln!(out, "DEADLOCK: {d}")?;
    }
    Ok(())
}

/// Reads and decodes a snapshot file.
///
/// # Errors
/// [`InspectError::Io`] or [`InspectError::Decode`].
pub fn read_snapshot(path: &Path) -> Result<(GlobalSnapshot, Vec<u8>), InspectError> {
    let bytes = std::fs::read(path).map_err(|source| InspectError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let snap = GlobalSnapshot::from_bytes(&bytes).map_err(|source| InspectError::Decode {
        path: path.to_path_buf(),
        source,
    })?;
    Ok((snap, bytes))
}

fn stored_crc(bytes: &[u8]) -> u32 {
    let mut crc = [0u8; CHECKSUM_LEN];
    if bytes.len() >= CHECKSUM_LEN {
        crc.copy_from_slice(&bytes[bytes.len() - CHECKSUM_LEN..]);
    }
    u32::from_le_bytes(crc)
}

fn list(dir: &Path, out: &mut dyn Write) -> Result<(), InspectError> {
    let store = FsStore::open(dir)?;
    let entries = store.list()?;
    if entries.is_empty() {
        writeln!(out, "no checkpoints in {}", dir.display())?;
        return Ok(());
    }
    writeln!(out, "{:>20}  {:>10}  status", "id", "bytes")?;
    for e in entries {
        let status = match store.load(e.id) {
            Ok(s) => format!(
                "valid: {} nodes, {} paths, {} in flight, taken at {} ms",
                s.nodes.len(),
                s.paths.len(),
                s.in_flight_count(),
                s.taken_at_ms
            ),
            Err(CheckpointError::Decode { source, .. }) => format!("invalid: {source}"),
            Err(CheckpointError::Io { source, .. }) => format!("unreadable: {source}"),
            Err(other) => format!("invalid: {other}"),
        };
        writeln!(out, "{:>20}  {:>10}  {status}", e.id, e.size)?;
    }
    Ok(())
}

/// The name of node `id`, or `#id` when the snapshot does not hold it (a path's sender
/// that had left the group at the cut).
fn node_label(snap: &GlobalSnapshot, id: crate::NodeId) -> String {
    snap.node_name(id)
        .map_or_else(|| format!("#{id}"), str::to_string)
}

fn inspect_text(
    snap: &GlobalSnapshot,
    file: &Path,
    bytes: &[u8],
    out: &mut dyn Write,
) -> Result<(), InspectError> {
    let name = |id: crate::NodeId| node_label(snap, id);
    writeln!(out, "file:      {}", file.display())?;
    writeln!(
        out,
        "format:    version {FORMAT_VERSION}, {} bytes, crc32 {:#010x} ok",
        bytes.len(),
        stored_crc(bytes)
    )?;
    writeln!(
        out,
        "snapshot:  id {}, taken at {} ms since the epoch, next node id {}",
        snap.id, snap.taken_at_ms, snap.next_node_id
    )?;
    writeln!(out, "\nnodes ({}):", snap.nodes.len())?;
    writeln!(
        out,
        "  {:>6}  {:<20}  {:<20}  {:>7}  {:>11}  {:>10}  {:>10}  {:>10}  waits for",
        "id", "name", "type", "version", "state bytes", "sent", "received", "external"
    )?;
    for n in &snap.nodes {
        let waits: Vec<String> = n.waits_for.iter().map(|w| name(*w)).collect();
        writeln!(
            out,
            "  {:>6}  {:<20}  {:<20}  {:>7}  {:>11}  {:>10}  {:>10}  {:>10}  {}",
            n.id.0,
            n.name,
            n.actor_type,
            n.state_version,
            n.state.len(),
            n.sent,
            n.received,
            n.external,
            waits.join(", ")
        )?;
    }
    writeln!(
        out,
        "\npaths with messages in flight ({}):",
        snap.paths.len()
    )?;
    writeln!(
        out,
        "  {:<30}  {:<20}  {:>9}  {:>8}",
        "from -> to", "message type", "in flight", "bytes"
    )?;
    for p in &snap.paths {
        let bytes: usize = p.messages.iter().map(|m| m.len()).sum();
        writeln!(
            out,
            "  {:<30}  {:<20}  {:>9}  {:>8}",
            format!("{} -> {}", name(p.from), name(p.to)),
            p.message_type,
            p.messages.len(),
            bytes
        )?;
    }
    writeln!(out, "\ningress ({}):", snap.ingress.len())?;
    writeln!(
        out,
        "  {:>4}  {:<20}  {:<20}  {:<20}  {:>8}",
        "id", "name", "to", "message type", "offset"
    )?;
    for i in &snap.ingress {
        writeln!(
            out,
            "  {:>4}  {:<20}  {:<20}  {:<20}  {:>8}",
            i.id,
            i.name,
            name(i.to),
            i.message_type,
            i.offset
        )?;
    }
    writeln!(
        out,
        "\ntotal: {} in-flight messages, {} payload bytes",
        snap.in_flight_count(),
        snap.payload_bytes()
    )?;
    Ok(())
}

/// A MessagePack value as JSON: maps keep their keys (non-string keys become their JSON
/// text), binary becomes an array of bytes, extension types an object.
pub fn msgpack_to_json(v: &rmpv::Value) -> Json {
    use rmpv::Value as V;
    match v {
        V::Nil => Json::Null,
        V::Boolean(b) => Json::Bool(*b),
        V::Integer(i) => i
            .as_u64()
            .map(Json::from)
            .or_else(|| i.as_i64().map(Json::from))
            .unwrap_or(Json::Null),
        V::F32(f) => serde_json::Number::from_f64(f64::from(*f))
            .map(Json::Number)
            .unwrap_or(Json::Null),
        V::F64(f) => serde_json::Number::from_f64(*f)
            .map(Json::Number)
            .unwrap_or(Json::Null),
        V::String(s) => match s.as_str() {
            Some(s) => Json::String(s.to_string()),
            None => json!({ "invalid_utf8": s.as_bytes() }),
        },
        V::Binary(b) => json!(b),
        V::Array(a) => Json::Array(a.iter().map(msgpack_to_json).collect()),
        V::Map(m) => Json::Object(
            m.iter()
                .map(|(k, v)| {
                    let key = match k {
                        V::String(s) if s.as_str().is_some() => {
                            s.as_str().unwrap_or_default().to_string()
                        }
                        other => msgpack_to_json(other).to_string(),
                    };
                    (key, msgpack_to_json(v))
                })
                .collect(),
        ),
        V::Ext(ty, data) => json!({ "ext_type": ty, "data": data }),
    }
}

/// Decodes one MessagePack value (a state or a message) as JSON; an object with the error
/// if it does not decode.
pub fn decode_msgpack(bytes: &[u8]) -> Json {
    let mut rd = bytes;
    match rmpv::decode::read_value(&mut rd) {
        Ok(v) if rd.is_empty() => msgpack_to_json(&v),
        Ok(_) => json!({ "undecodable": format!("{} trailing bytes", rd.len()) }),
        Err(e) => json!({ "undecodable": e.to_string() }),
    }
}

/// The whole snapshot as JSON, states and messages decoded.
pub fn snapshot_json(snap: &GlobalSnapshot, file: &Path, bytes: &[u8]) -> Json {
    json!({
        "file": file.display().to_string(),
        "format_version": FORMAT_VERSION,
        "file_bytes": bytes.len(),
        "crc32": stored_crc(bytes),
        "id": snap.id,
        "taken_at_ms": snap.taken_at_ms,
        "next_node_id": snap.next_node_id,
        "nodes": snap.nodes.iter().map(|n| json!({
            "id": n.id.0,
            "name": n.name,
            "actor_type": n.actor_type,
            "state_version": n.state_version,
            "state_bytes": n.state.len(),
            "state": decode_msgpack(&n.state),
            "waits_for": n.waits_for.iter().map(|w| w.0).collect::<Vec<_>>(),
            "sent": n.sent,
            "received": n.received,
            "external": n.external,
        })).collect::<Vec<_>>(),
        "paths": snap.paths.iter().map(|p| json!({
            "from": p.from.0,
            "to": p.to.0,
            "from_name": snap.node_name(p.from),
            "to_name": snap.node_name(p.to),
            "message_type": p.message_type,
            "in_flight": p.messages.len(),
            "messages": p.messages.iter().map(|m| decode_msgpack(m)).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "ingress": snap.ingress.iter().map(|i| json!({
            "id": i.id,
            "name": i.name,
            "to": i.to.0,
            "to_name": snap.node_name(i.to),
            "message_type": i.message_type,
            "offset": i.offset,
        })).collect::<Vec<_>>(),
    })
}

fn verify(path: &Path, out: &mut dyn Write) -> Result<(), InspectError> {
    let meta = std::fs::metadata(path).map_err(|source| InspectError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if !meta.is_dir() {
        return match read_snapshot(path) {
            Ok((snap, bytes)) => {
                writeln!(out, "ok {}: {}", path.display(), verified(&snap, &bytes))?;
                Ok(())
            }
            Err(e) => {
                writeln!(out, "BAD {}", e)?;
                Err(e)
            }
        };
    }
    let store = FsStore::open(path)?;
    let entries = store.list()?;
    if entries.is_empty() {
        return Err(CheckpointError::NoCheckpoint {
            dir: path.to_path_buf(),
        }
        .into());
    }
    let total = entries.len();
    let mut bad = 0;
    for e in entries {
        match store
            .read(e.id)
            .and_then(|bytes| store.load(e.id).map(|s| (s, bytes)))
        {
            Ok((snap, bytes)) => {
                writeln!(out, "ok {}: {}", e.path.display(), verified(&snap, &bytes))?;
            }
            Err(err) => {
                bad += 1;
                writeln!(out, "BAD {err}")?;
            }
        }
    }
    if bad > 0 {
        return Err(InspectError::Invalid { bad, total });
    }
    Ok(())
}

fn verified(snap: &GlobalSnapshot, bytes: &[u8]) -> String {
    format!(
        "snapshot {}, format version {FORMAT_VERSION}, {} bytes, crc32 {:#010x}",
        snap.id,
        bytes.len(),
        stored_crc(bytes)
    )
}
