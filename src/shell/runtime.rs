//! The state a group's nodes and handles share: the [`RoundTracker`] behind one lock, the
//! registry of live nodes, waiters for rounds, and the code that carries the tracker's outputs
//! (start messages to nodes, results to waiters). Nothing here knows a user's actor type.
//!
//! Notes from a node reach the tracker synchronously, under the lock, from the node's own
//! thread, in the order the node emitted them — the order the protocol asks for. A child's
//! registration happens inside its parent's handler, so it precedes every later note of the
//! parent.
//!
//! What users see of it: [`SnapshotOptions`] and [`SnapshotStats`].
//!
//! ```
//! use std::time::Duration;
//! use actix_snapshot::{SnapshotGroup, SnapshotOptions};
//!
//! # #[actix::main] async fn main() {
//! let group = SnapshotGroup::new().unwrap();
//! let quick = SnapshotOptions::default().timeout(Duration::from_millis(500));
//! let snap = group.snapshot_with(quick).await.unwrap();    // an empty group: no node to wait for
//! assert!(snap.nodes.is_empty());
//! let stats = group.stats();
//! assert_eq!((stats.started, stats.completed, stats.in_progress), (1, 1, 0));
//! group.shutdown();
//! # }
//! ```

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix::ArbiterHandle;
use futures::channel::oneshot;
use serde_bytes::ByteBuf;

use crate::error::{SnapshotError, SpawnError};
use crate::protocol::{
    CompletedRound, NodeCore, NodeId, NodeOutput, RoundFailure, RoundId, RoundTracker, StartError,
    TrackerConfig, TrackerOutput,
};
use crate::snapshot::{GlobalSnapshot, IngressSnapshot, NodeSnapshot, PathSnapshot};

/// A node's recorded state, shared by every round one record covers.
#[derive(Debug)]
pub(crate) struct NodeRecord {
    pub(crate) name: Arc<str>,
    pub(crate) type_tag: &'static str,
    pub(crate) version: u32,
    pub(crate) state: Vec<u8>,
    pub(crate) waits_for: Vec<NodeId>,
}

pub(crate) type Rec = Arc<NodeRecord>;

/// A recorded in-flight message: its type's tag and its MessagePack encoding.
#[derive(Debug, Clone)]
pub(crate) struct RecMsg {
    pub(crate) tag: &'static str,
    pub(crate) bytes: Vec<u8>,
}

pub(crate) type Output = NodeOutput<Rec, RecMsg>;

/// A message received by a node outside its handlers (a reply whose future was dropped or
/// ran elsewhere): it still counts, through the node's mailbox or, once the node is gone, its
/// tombstone.
pub struct Absorbed {
    pub(crate) group: u64,
    pub(crate) to: NodeId,
    pub(crate) from: NodeId,
    pub(crate) color: RoundId,
    pub(crate) payload: Option<Result<RecMsg, String>>,
}

impl Drop for Absorbed {
    fn drop(&mut self) {
        if let Some(payload) = self.payload.take() {
            dropped(self.group, self.to, self.from, self.color, || payload);
        }
    }
}

/// Control messages from the library to a node.
#[doc(hidden)]
pub enum Control {
    /// Record round `r` (unless done already).
    Start(RoundId),
    /// The group shuts down: stop.
    Shutdown,
    /// A message of this color waits to be received outside a handler: record up to it.
    CatchUp(RoundId),
    /// A message received outside a handler.
    Absorb(Absorbed),
}

impl actix::Message for Control {
    type Result = ();
}

/// Settings of a group's rounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotOptions {
    /// How long a round may take before it fails with
    /// [`SnapshotError::Timeout`].
    pub timeout: Duration,
}

impl Default for SnapshotOptions {
    fn default() -> Self {
        SnapshotOptions {
            timeout: Duration::from_secs(10),
        }
    }
}

impl SnapshotOptions {
    /// These options with another timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

/// Counters and figures of a group's snapshot rounds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SnapshotStats {
    /// Rounds started.
    pub started: u64,
    /// Rounds completed.
    pub completed: u64,
    /// Rounds that failed on timeout.
    pub timed_out: u64,
    /// Rounds that failed for another reason (a panic, a failure to encode).
    pub failed: u64,
    /// Rounds in progress now.
    pub in_progress: u64,
    /// Id of the last completed round.
    pub last_round: Option<RoundId>,
    /// Duration of the last completed round, from start to assembled snapshot.
    pub last_duration: Duration,
    /// Longest completed round so far.
    pub max_duration: Duration,
    /// Sum of the durations of all completed rounds.
    pub total_duration: Duration,
    /// Recorded payload bytes (states and messages) of the last completed round.
    pub last_bytes: u64,
    /// In-flight messages recorded by the last completed round.
    pub last_in_flight: u64,
    /// Live nodes now.
    pub nodes: u64,
}

/// A completed round on its way to its waiter, which assembles the snapshot on its own task
/// (not on the arbiter of the node whose record completed the round).
pub(crate) struct Done {
    round: CompletedRound<Rec, RecMsg>,
    ingress: Vec<(u32, String, NodeId, &'static str)>,
    next_node_id: u64,
}

pub(crate) type Outcome = Result<Done, SnapshotError>;
pub(crate) type Reply = oneshot::Sender<Outcome>;

/// What the group keeps of a live node: a typed address behind a type-erased handle.
pub(crate) trait NodeHandle: Send {
    /// Sends a control message to the node.
    fn control(&self, c: Control);
    /// The node's typed address (a `NodeAddr<A>`), for lookups by type.
    fn as_any(&self) -> &dyn std::any::Any;
}

pub(crate) struct LiveNode {
    pub(crate) handle: Box<dyn NodeHandle>,
    pub(crate) name: Arc<str>,
}

pub(crate) struct IngressInfo {
    pub(crate) name: String,
    pub(crate) to: NodeId,
    pub(crate) message_type: &'static str,
}

/// How a node joins.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Join {
    /// Spawned from outside the group (with a fixed id for a declared node).
    Outside(Option<NodeId>),
    /// Spawned by a node at this epoch, from its handler.
    Child(RoundId),
    /// Restored from the snapshot of this round, with this id.
    Restored(RoundId, NodeId),
}

pub(crate) struct State {
    pub(crate) tracker: RoundTracker<Rec, RecMsg>,
    pub(crate) nodes: HashMap<NodeId, LiveNode>,
    pub(crate) names: HashMap<Arc<str>, NodeId>,
    /// Nodes that left: their cores count (and, where a round needs it, copy) what still
    /// reaches them.
    tombstones: HashMap<NodeId, NodeCore<Rec, RecMsg>>,
    pub(crate) next_id: u64,
    pub(crate) ingress: Vec<IngressInfo>,
    waiters: HashMap<RoundId, (Reply, Duration)>,
    /// Names of nodes that left after recording rounds that may still be open, with their
    /// epoch: a new node under such a name must not be in those rounds too.
    freed: HashMap<Arc<str>, RoundId>,
    pub(crate) stats: SnapshotStats,
    pub(crate) stopped: bool,
}

/// A round's result on its way to its waiter, assembled outside the lock.
enum Finished {
    Done {
        reply: Option<Reply>,
        round: CompletedRound<Rec, RecMsg>,
        ingress: Vec<(u32, String, NodeId, &'static str)>,
        next_node_id: u64,
    },
    Failed {
        reply: Option<Reply>,
        error: SnapshotError,
    },
}

/// What a group's handles and nodes share.
pub(crate) struct Shared {
    pub(crate) uid: u64,
    pub(crate) options: SnapshotOptions,
    /// Every round up to this one is finished (a hint for nodes, read without the lock).
    pub(crate) closed: AtomicU64,
    /// The group was shut down (read without the lock; the lock's `stopped` is the truth).
    stopped: AtomicBool,
    state: Mutex<State>,
    pub(crate) home: Place,
    pub(crate) arbiters: Vec<Place>,
    next_arbiter: AtomicU64,
}

/// An arbiter and the thread it runs on.
#[derive(Debug, Clone)]
pub(crate) struct Place {
    pub(crate) arbiter: ArbiterHandle,
    pub(crate) thread: std::thread::ThreadId,
}

impl Shared {
    pub(crate) fn new(
        uid: u64,
        options: SnapshotOptions,
        tracker: RoundTracker<Rec, RecMsg>,
        next_id: u64,
        home: Place,
        arbiters: Vec<Place>,
    ) -> Self {
        let closed = tracker.closed_through();
        Shared {
            uid,
            options,
            closed: AtomicU64::new(closed),
            stopped: AtomicBool::new(false),
            state: Mutex::new(State {
                tracker,
                nodes: HashMap::new(),
                names: HashMap::new(),
                tombstones: HashMap::new(),
                next_id,
                ingress: Vec::new(),
                waiters: HashMap::new(),
                freed: HashMap::new(),
                stats: SnapshotStats::default(),
                stopped: false,
            }),
            home,
            arbiters,
            next_arbiter: AtomicU64::new(0),
        }
    }

    pub(crate) fn tracker_config(max_concurrent: usize) -> TrackerConfig {
        TrackerConfig {
            max_concurrent: max_concurrent.max(1),
            ..TrackerConfig::default()
        }
    }

    /// Whether the group was shut down.
    pub(crate) fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The arbiter for a node spawned from outside: the next one round-robin, or the home
    /// arbiter when the group has none of its own.
    pub(crate) fn pick_arbiter(&self, index: Option<usize>) -> Place {
        if self.arbiters.is_empty() {
            return self.home.clone();
        }
        let i = match index {
            Some(i) => i % self.arbiters.len(),
            None => {
                self.next_arbiter.fetch_add(1, Ordering::Relaxed) as usize % self.arbiters.len()
            }
        };
        self.arbiters[i].clone()
    }

    /// Registers a node: a unique name, an id, its epoch; sends it the start of any open round.
    /// `make` builds the node's handle once its id is known, and something for the caller.
    pub(crate) fn register<R>(
        &self,
        name: Arc<str>,
        join: Join,
        make: impl FnOnce(NodeId) -> (Box<dyn NodeHandle>, R),
    ) -> Result<(NodeId, RoundId, R), SpawnError> {
        let mut st = self.lock();
        if st.stopped {
            return Err(SpawnError::GroupStopped);
        }
        if st.names.contains_key(&name) {
            return Err(SpawnError::DuplicateName(name.to_string()));
        }
        let freed = st.freed.get(&name).copied().unwrap_or(0);
        let (id, epoch) = match join {
            Join::Restored(round, id) => (id, st.tracker.register_restored(id, round)),
            Join::Outside(_) | Join::Child(_) => {
                let id = match join {
                    Join::Outside(Some(id)) => id,
                    _ => NodeId(st.next_id),
                };
                let epoch = match join {
                    // A child belongs to every round its parent has not recorded; if a node of
                    // the same name recorded one of them before leaving, the name is taken
                    // there.
                    Join::Child(e) if freed > e => {
                        return Err(SpawnError::DuplicateName(name.to_string()));
                    }
                    Join::Child(e) => st.tracker.register_child(id, e),
                    _ => st.tracker.register_outside_after(id, freed),
                };
                let Some(epoch) = epoch else {
                    return Err(SpawnError::DuplicateName(name.to_string()));
                };
                (id, epoch)
            }
        };
        st.next_id = st.next_id.max(id.0 + 1);
        st.names.insert(Arc::clone(&name), id);
        let (handle, out) = make(id);
        st.nodes.insert(id, LiveNode { handle, name });
        st.stats.nodes = st.nodes.len() as u64;
        let finished = self.process(&mut st);
        drop(st);
        finish(finished);
        Ok((id, epoch, out))
    }

    /// A node's notes, in order. `tombstone` is the node's core when the notes include its
    /// departure: it goes on counting what still reaches the node.
    pub(crate) fn notes(
        &self,
        id: NodeId,
        mut next: impl FnMut() -> Option<Output>,
        tombstone: Option<NodeCore<Rec, RecMsg>>,
    ) {
        let mut st = self.lock();
        let mut gone = None;
        while let Some(note) = next() {
            if let NodeOutput::Left { epoch, .. } | NodeOutput::Panicked { epoch, .. } = &note {
                gone = Some(*epoch);
            }
            st.tracker.handle_note(id, note);
        }
        // The departure's failures name the node: process them while it is still known.
        let mut finished = self.process(&mut st);
        if let Some(epoch) = gone {
            if let Some(node) = st.nodes.remove(&id) {
                st.names.remove(&node.name);
                if epoch > st.tracker.closed_through() {
                    st.freed.insert(node.name, epoch);
                }
            }
            st.stats.nodes = st.nodes.len() as u64;
        }
        if let Some(core) = tombstone.filter(|_| !st.stopped) {
            st.tombstones.insert(id, core);
        }
        finished.extend(self.process(&mut st));
        drop(st);
        finish(finished);
    }

    /// A message from `from` of color `color` reached node `to` after it left (or was
    /// received outside its handlers and its mailbox was gone): its tombstone counts it.
    pub(crate) fn tombstone_receive(
        &self,
        to: NodeId,
        from: NodeId,
        color: RoundId,
        payload: impl FnOnce() -> Result<RecMsg, String>,
    ) {
        let mut st = self.lock();
        if st.stopped {
            return;
        }
        let State {
            tombstones,
            tracker,
            ..
        } = &mut *st;
        let Some(core) = tombstones.get_mut(&to) else {
            tracing::warn!(node = %to, "a message to a node that is neither live nor a tombstone");
            return;
        };
        core.handle_closed_through(tracker.closed_through());
        core.handle_message(color, from, payload, || Err("the node is gone".into()));
        while let Some(note) = core.poll() {
            tracker.handle_note(to, note);
        }
        let finished = self.process(&mut st);
        drop(st);
        finish(finished);
    }

    /// Makes node `id`, which never ran (a declared node that had left before the snapshot
    /// being restored, a node whose arbiter is gone), a tombstone at once.
    pub(crate) fn bury(&self, id: NodeId, mut core: NodeCore<Rec, RecMsg>) {
        core.handle_stop();
        self.retire(id, core);
    }

    /// Hands a departed node's last notes (its `Left` or `Panicked`) to the tracker and keeps
    /// its core as the node's tombstone.
    pub(crate) fn retire(&self, id: NodeId, mut core: NodeCore<Rec, RecMsg>) {
        let mut notes = Vec::new();
        while let Some(n) = core.poll() {
            notes.push(n);
        }
        let mut notes = notes.into_iter();
        self.notes(id, || notes.next(), Some(core));
    }

    /// Starts a round; the receiver gets its snapshot or why it failed.
    pub(crate) fn start_round(
        self: &Arc<Self>,
        timeout: Duration,
    ) -> Result<oneshot::Receiver<Outcome>, SnapshotError> {
        let (tx, rx) = oneshot::channel();
        let mut st = self.lock();
        if st.stopped {
            return Err(SnapshotError::GroupStopped);
        }
        let round = match st.tracker.handle_start(Instant::now(), timeout) {
            Ok(r) => r,
            Err(StartError::TooManyRounds { limit }) => {
                return Err(SnapshotError::TooManyRounds { limit });
            }
            Err(StartError::Exhausted) => return Err(SnapshotError::GroupStopped),
        };
        st.stats.started += 1;
        st.waiters.insert(round, (tx, timeout));
        let finished = self.process(&mut st);
        drop(st);
        finish(finished);
        tracing::debug!(round, "snapshot round started");
        let shared = Arc::clone(self);
        self.home.arbiter.spawn(async move {
            actix_rt::time::sleep(timeout).await;
            shared.on_timeout();
        });
        Ok(rx)
    }

    fn on_timeout(&self) {
        let mut st = self.lock();
        st.tracker.handle_timeout(Instant::now());
        let finished = self.process(&mut st);
        drop(st);
        finish(finished);
    }

    /// Stops every node the group started, live or tombstone; rounds in progress fail with
    /// [`SnapshotError::GroupStopped`].
    pub(crate) fn shutdown(&self) {
        let mut st = self.lock();
        if st.stopped {
            return;
        }
        st.stopped = true;
        self.stopped.store(true, Ordering::Release);
        for (_, node) in st.nodes.drain() {
            node.handle.control(Control::Shutdown);
        }
        st.names.clear();
        st.tombstones.clear();
        st.waiters.clear();
        st.stats.nodes = 0;
        drop(st);
        if let Ok(mut groups) = GROUPS.lock() {
            groups.remove(&self.uid);
        }
        for a in &self.arbiters {
            a.arbiter.stop();
        }
    }

    /// Makes this group findable by [`dropped`] (messages dropped on any thread).
    pub(crate) fn publish(self: &Arc<Self>) {
        GROUPS
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(self.uid, Arc::downgrade(self));
    }

    /// Carries out the tracker's outputs that need the lock (start messages, stats) and
    /// returns the results to hand to waiters once the lock is released.
    fn process(&self, st: &mut State) -> Vec<Finished> {
        let mut finished = Vec::new();
        while let Some(out) = st.tracker.poll() {
            match out {
                TrackerOutput::StartAll { round } => {
                    for node in st.nodes.values() {
                        node.handle.control(Control::Start(round));
                    }
                }
                TrackerOutput::StartNode { node, round } => {
                    if let Some(n) = st.nodes.get(&node) {
                        n.handle.control(Control::Start(round));
                    }
                }
                TrackerOutput::Closed { through } => {
                    self.closed.store(through, Ordering::Relaxed);
                    st.freed.retain(|_, epoch| *epoch > through);
                }
                TrackerOutput::Completed(round) => {
                    st.stats.completed += 1;
                    let reply = st.waiters.remove(&round.round).map(|(r, _)| r);
                    let ingress = st
                        .ingress
                        .iter()
                        .enumerate()
                        .map(|(i, info)| (i as u32, info.name.clone(), info.to, info.message_type))
                        .collect();
                    finished.push(Finished::Done {
                        reply,
                        round,
                        ingress,
                        next_node_id: st.next_id,
                    });
                }
                TrackerOutput::Failed { round, failure } => {
                    let waiter = st.waiters.remove(&round);
                    let waited = waiter.as_ref().map_or(self.options.timeout, |(_, t)| *t);
                    let name = |id: NodeId| {
                        st.nodes
                            .get(&id)
                            .map_or_else(|| format!("#{id}"), |n| n.name.to_string())
                    };
                    let error = match failure {
                        RoundFailure::Timeout {
                            missing,
                            unaccounted,
                        } => {
                            st.stats.timed_out += 1;
                            SnapshotError::Timeout {
                                round,
                                waited,
                                missing: missing.into_iter().map(name).collect(),
                                unaccounted,
                            }
                        }
                        RoundFailure::NodeFailed { node, reason } => SnapshotError::NodeFailed {
                            round,
                            node: name(node),
                            reason,
                        },
                        RoundFailure::NodePanicked { node, reason } => {
                            SnapshotError::NodePanicked {
                                round,
                                node: name(node),
                                reason,
                            }
                        }
                        RoundFailure::Unbalanced { excess } => {
                            SnapshotError::Unbalanced { round, excess }
                        }
                        RoundFailure::Aborted => SnapshotError::Aborted { round },
                        RoundFailure::UntrackedAddress { receiver, sender } => {
                            SnapshotError::UntrackedAddress {
                                round,
                                receiver: name(receiver),
                                sender: name(sender),
                            }
                        }
                    };
                    if !matches!(error, SnapshotError::Timeout { .. }) {
                        st.stats.failed += 1;
                    }
                    tracing::warn!(round, %error, "snapshot round failed");
                    let reply = waiter.map(|(r, _)| r);
                    finished.push(Finished::Failed { reply, error });
                }
            }
        }
        st.stats.in_progress = st.tracker.open_rounds().count() as u64;
        finished
    }

    /// Records the figures of a completed round.
    fn account(&self, snap: &GlobalSnapshot, took: Duration) {
        let mut st = self.lock();
        let s = &mut st.stats;
        s.last_round = Some(snap.id);
        s.last_duration = took;
        s.max_duration = s.max_duration.max(took);
        s.total_duration += took;
        s.last_bytes = snap.payload_bytes() as u64;
        s.last_in_flight = snap.in_flight_count() as u64;
    }

    pub(crate) fn stats(&self) -> SnapshotStats {
        self.lock().stats.clone()
    }
}

/// Running groups by uid, for messages dropped where only their envelope knows the group.
static GROUPS: Mutex<BTreeMap<u64, std::sync::Weak<Shared>>> = Mutex::new(BTreeMap::new());

/// A message from `from` of color `color` to node `to` of group `group` was dropped before
/// the node handled it (its mailbox is gone): the node's tombstone counts it.
pub(crate) fn dropped(
    group: u64,
    to: NodeId,
    from: NodeId,
    color: RoundId,
    payload: impl FnOnce() -> Result<RecMsg, String>,
) {
    let shared = GROUPS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&group)
        .and_then(std::sync::Weak::upgrade);
    if let Some(shared) = shared {
        shared.tombstone_receive(to, from, color, payload);
    }
}

/// Hands results to their waiters (outside the lock).
fn finish(finished: Vec<Finished>) {
    for f in finished {
        match f {
            Finished::Done {
                reply,
                round,
                ingress,
                next_node_id,
            } => {
                if let Some(reply) = reply {
                    let _ = reply.send(Ok(Done {
                        round,
                        ingress,
                        next_node_id,
                    }));
                }
            }
            Finished::Failed { reply, error } => {
                if let Some(reply) = reply {
                    let _ = reply.send(Err(error));
                }
            }
        }
    }
}

impl Shared {
    /// Waits for a round's result, assembles the snapshot and accounts for it.
    pub(crate) async fn wait(
        self: &Arc<Self>,
        rx: oneshot::Receiver<Outcome>,
        started: Instant,
    ) -> Result<GlobalSnapshot, SnapshotError> {
        let done = rx.await.map_err(|_| SnapshotError::GroupStopped)??;
        let snap = assemble(done.round, &done.ingress, done.next_node_id);
        let took = started.elapsed();
        tracing::debug!(
            round = snap.id,
            nodes = snap.nodes.len(),
            in_flight = snap.in_flight_count(),
            ms = took.as_secs_f64() * 1e3,
            "snapshot round completed"
        );
        self.account(&snap, took);
        Ok(snap)
    }
}

/// Builds the [`GlobalSnapshot`] of a completed round.
fn assemble(
    round: CompletedRound<Rec, RecMsg>,
    ingress: &[(u32, String, NodeId, &'static str)],
    next_node_id: u64,
) -> GlobalSnapshot {
    let since_start = round.started.elapsed();
    let taken_at_ms = SystemTime::now()
        .checked_sub(since_start)
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as u64);
    let mut offsets: HashMap<(NodeId, u32), u64> = HashMap::new();
    let mut nodes: Vec<NodeSnapshot> = Vec::with_capacity(round.records.len());
    for (id, rec) in round.records {
        for (source, n) in &rec.ingress {
            offsets.insert((id, *source), *n);
        }
        let Ok(state) = rec.state else { continue };
        let (name, type_tag, version, waits_for, bytes) = match Arc::try_unwrap(state) {
            Ok(r) => (r.name, r.type_tag, r.version, r.waits_for, r.state),
            Err(shared) => (
                Arc::clone(&shared.name),
                shared.type_tag,
                shared.version,
                shared.waits_for.clone(),
                shared.state.clone(),
            ),
        };
        nodes.push(NodeSnapshot {
            id,
            name: name.to_string(),
            actor_type: type_tag.to_string(),
            state_version: version,
            state: ByteBuf::from(bytes),
            waits_for,
            received: rec.received,
            sent: rec.sent,
            external: rec.external,
        });
    }
    nodes.sort_by_key(|n| n.id);
    let mut paths: BTreeMap<(NodeId, NodeId, &'static str), Vec<ByteBuf>> = BTreeMap::new();
    for (from, to, msg) in round.in_flight {
        paths
            .entry((from, to, msg.tag))
            .or_default()
            .push(ByteBuf::from(msg.bytes));
    }
    let paths = paths
        .into_iter()
        .map(|((from, to, tag), messages)| PathSnapshot {
            from,
            to,
            message_type: tag.to_string(),
            messages,
        })
        .collect();
    let ingress = ingress
        .iter()
        .filter(|(_, _, to, _)| nodes.binary_search_by_key(to, |n| n.id).is_ok())
        .map(|(id, name, to, tag)| IngressSnapshot {
            id: *id,
            name: name.clone(),
            to: *to,
            message_type: tag.to_string(),
            offset: offsets.get(&(*to, *id)).copied().unwrap_or(0),
        })
        .collect();
    GlobalSnapshot {
        id: round.round,
        taken_at_ms,
        nodes,
        paths,
        ingress,
        next_node_id,
    }
}
