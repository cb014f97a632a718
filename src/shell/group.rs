//! [`SnapshotGroup`]: a running group of nodes. Spawn nodes into it at any time, from outside
//! ([`SnapshotGroup::spawn`]) or from a node ([`NodeContext::spawn_node`](crate::NodeContext)),
//! take snapshots of whoever is in it, read stats, shut it down.
//!
//! ```
//! use actix::prelude::*;
//! use actix_snapshot::{NodeAddr, Snapshot, SnapshotGroup};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Message, Serialize, Deserialize)]
//! #[rtype(result = "()")]
//! enum Line { Text(String), Bye }
//!
//! /// A session actor, one per connection in a real server.
//! #[derive(Snapshot)]
//! #[snapshot(state = lines, messages(Line))]
//! struct Session { lines: u32 }
//! impl Actor for Session { type Context = Context<Self>; }
//! impl Handler<Line> for Session {
//!     type Result = ();
//!     fn handle(&mut self, line: Line, ctx: &mut Context<Self>) {
//!         match line {
//!             Line::Text(_) => self.lines += 1,
//!             Line::Bye => ctx.stop(),                 // leaves the group
//!         }
//!     }
//! }
//!
//! # #[actix::main] async fn main() {
//! let group = SnapshotGroup::new().unwrap();
//! let a: NodeAddr<Session> = group.spawn("a", || Session { lines: 0 }).unwrap();
//! let b = group.spawn("b", || Session { lines: 0 }).unwrap();
//! a.do_send(Line::Text("hello".into()));
//! b.do_send(Line::Bye);
//! let snap = group.snapshot().await.unwrap();
//! assert_eq!(snap.state::<Session>("a").unwrap(), 1);
//! assert!(snap.node("b").is_err(), "b had left at the cut");
//! group.shutdown();
//! # }
//! ```

use std::sync::Arc;
use std::time::Instant;

use crate::error::{SnapshotError, SpawnError};
use crate::protocol::NodeId;
use actix::Handler;

use crate::shell::actor::{Ctor, Placement, Snapshottable};
use crate::shell::envelope::{Envelope, NodeMessage, stamp_for};
use crate::shell::handles::{Ingress, NodeAddr, launch};
use crate::shell::runtime::{IngressInfo, Join, Shared, SnapshotOptions, SnapshotStats};
use crate::snapshot::{GlobalSnapshot, short_type_name};

/// A running group of nodes. Cheap to clone; when the last clone is dropped the group shuts
/// down, as with [`shutdown`](Self::shutdown).
#[derive(Clone)]
pub struct SnapshotGroup {
    handle: Arc<Handle>,
}

struct Handle {
    shared: Arc<Shared>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.shutdown();
    }
}

impl std::fmt::Debug for SnapshotGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotGroup")
            .field("nodes", &self.len())
            .finish()
    }
}

impl SnapshotGroup {
    pub(crate) fn from_shared(shared: Arc<Shared>) -> Self {
        SnapshotGroup {
            handle: Arc::new(Handle { shared }),
        }
    }

    fn shared(&self) -> &Arc<Shared> {
        &self.handle.shared
    }

    /// Spawns a node from outside the group, on the group's next arbiter (round-robin; the
    /// caller's own arbiter for a group without arbiters of its own). The node belongs to
    /// every round still open and every later one.
    ///
    /// `ctor` runs on the node's arbiter. When that is the caller's thread it runs before this
    /// returns, and a panic is returned as [`SpawnError::ConstructorPanicked`]; on another
    /// thread a panicking constructor leaves a tombstone (the node is never alive).
    ///
    /// # Errors
    /// [`SpawnError::DuplicateName`] when a live node has that name;
    /// [`SpawnError::GroupStopped`] after shutdown.
    ///
    /// Called from a step of one of the group's nodes, it spawns a child of that node (as
    /// [`SnapCtx::spawn`](crate::SnapCtx::spawn) does, but placed on the group's arbiters).
    pub fn spawn<A: Snapshottable>(
        &self,
        name: impl Into<String>,
        ctor: impl FnOnce() -> A + Send + 'static,
    ) -> Result<NodeAddr<A>, SpawnError> {
        self.spawn_placed(Placement::Group(None), name.into(), Box::new(ctor))
    }

    /// Spawns a node here and now: as a child when this runs inside a step of one of the
    /// group's nodes, from outside otherwise.
    fn spawn_placed<A: Snapshottable>(
        &self,
        placement: Placement,
        name: String,
        ctor: Ctor<A>,
    ) -> Result<NodeAddr<A>, SpawnError> {
        // Inside one of this group's nodes: a child, on the parent's arbiter (its constructor
        // runs before this returns), unless an arbiter was named.
        let (join, placement) = match (stamp_for(self.shared().uid), placement) {
            (Some(stamp), Placement::Group(None)) => (Join::Child(stamp.color), Placement::Here),
            (Some(stamp), p) => (Join::Child(stamp.color), p),
            (None, p) => (Join::Outside(None), p),
        };
        launch(self.shared(), Arc::from(name), join, ctor, placement)
    }

    /// [`spawn`](Self::spawn) on the group's arbiter number `arbiter` (modulo their count).
    pub fn spawn_on<A: Snapshottable>(
        &self,
        arbiter: usize,
        name: impl Into<String>,
        ctor: impl FnOnce() -> A + Send + 'static,
    ) -> Result<NodeAddr<A>, SpawnError> {
        self.spawn_placed(Placement::Group(Some(arbiter)), name.into(), Box::new(ctor))
    }

    /// A named source of `M` messages from outside the group into node `to`; snapshots
    /// record its offset (see [`Ingress`]).
    ///
    /// # Errors
    /// [`SpawnError::DuplicateName`] when the group already has an ingress of that name;
    /// [`SpawnError::GroupStopped`] after shutdown.
    pub fn ingress<M: NodeMessage, A: Snapshottable + Handler<Envelope<M>>>(
        &self,
        name: impl Into<String>,
        to: &NodeAddr<A>,
    ) -> Result<Ingress<M>, SpawnError> {
        let name = name.into();
        let mut st = self.shared().lock();
        if st.stopped {
            return Err(SpawnError::GroupStopped);
        }
        if st.ingress.iter().any(|i| i.name == name) {
            return Err(SpawnError::DuplicateName(name));
        }
        let source = st.ingress.len() as u32;
        st.ingress.push(IngressInfo {
            name,
            to: to.id(),
            message_type: short_type_name(std::any::type_name::<M>()),
        });
        Ok(Ingress::new(to.recipient(), source, 0))
    }

    /// Takes a snapshot of the group with the group's options: the state of every node in the
    /// group at its cut and every message in flight between them.
    ///
    /// # Errors
    /// See [`SnapshotError`]: a timeout names the nodes that did not record; a node that
    /// panicked before recording fails the round; [`SnapshotError::TooManyRounds`] when the
    /// group's limit of concurrent rounds is reached.
    pub async fn snapshot(&self) -> Result<GlobalSnapshot, SnapshotError> {
        self.snapshot_with(self.shared().options).await
    }

    /// [`snapshot`](Self::snapshot) with other options for this round.
    pub async fn snapshot_with(
        &self,
        options: SnapshotOptions,
    ) -> Result<GlobalSnapshot, SnapshotError> {
        let started = Instant::now();
        let rx = self.shared().start_round(options.timeout)?;
        self.shared().wait(rx, started).await
    }

    /// Counters and figures of the group's rounds.
    pub fn stats(&self) -> SnapshotStats {
        self.shared().stats()
    }

    /// The id of the live node called `name`.
    pub fn node_id(&self, name: &str) -> Option<NodeId> {
        self.shared().lock().names.get(name).copied()
    }

    /// The address of the live node called `name`, if it runs actor type `A` — also for nodes
    /// spawned at run time or rebuilt by a restore.
    pub fn addr<A: Snapshottable>(&self, name: &str) -> Option<NodeAddr<A>> {
        let st = self.shared().lock();
        let id = st.names.get(name)?;
        st.nodes
            .get(id)?
            .handle
            .as_any()
            .downcast_ref::<NodeAddr<A>>()
            .cloned()
    }

    /// The address of live node `id`, if it runs actor type `A`.
    pub fn addr_by_id<A: Snapshottable>(&self, id: NodeId) -> Option<NodeAddr<A>> {
        let st = self.shared().lock();
        st.nodes
            .get(&id)?
            .handle
            .as_any()
            .downcast_ref::<NodeAddr<A>>()
            .cloned()
    }

    /// The names of the live nodes, in id order.
    pub fn node_names(&self) -> Vec<String> {
        let st = self.shared().lock();
        let mut v: Vec<(NodeId, String)> = st
            .nodes
            .iter()
            .map(|(id, n)| (*id, n.name.to_string()))
            .collect();
        v.sort();
        v.into_iter().map(|(_, n)| n).collect()
    }

    /// How many nodes are alive in the group.
    pub fn len(&self) -> usize {
        self.shared().lock().nodes.len()
    }

    /// Whether no node is alive in the group.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Stops everything the group started: its nodes (live ones and tombstones) and the
    /// arbiters it created. Rounds in progress fail with [`SnapshotError::GroupStopped`].
    /// Idempotent.
    pub fn shutdown(&self) {
        self.shared().shutdown();
    }
}
