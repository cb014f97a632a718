//! The collector: starts rounds, gathers every node's [`LocalRecord`], and assembles the
//! [`GlobalSnapshot`] — or fails the round on timeout, a stopped node, or a node's failure.
//!
//! One collector actor runs per group, on the arbiter that started the group. Each round
//! has a tracing span `snapshot_round{round}` with events when it starts, as each node
//! reports (debug), and when it completes (duration, bytes, in-flight count) or fails.
//! The same figures are kept in [`SnapshotStats`], readable without tracing through
//! [`SnapshotGroup::stats`](crate::SnapshotGroup::stats).
//!
//! ```
//! # use actix_snapshot::{SnapshotGroup, Snapshottable, Receive, SnapCtx};
//! # struct Idle;
//! # impl Snapshottable for Idle { type State = (); fn snapshot_state(&self) {} }
//! # #[actix::main] async fn main() {
//! let mut b = SnapshotGroup::builder();
//! let n = b.node::<Idle>("n");
//! b.actor(n, |_| Idle);
//! let group = b.start().unwrap();
//! group.snapshot().await.unwrap();
//! let stats = group.stats();
//! assert_eq!((stats.started, stats.completed), (1, 1));
//! # group.shutdown(); }
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix::{Actor, AsyncContext, Context, Handler, Recipient, SpawnHandle};
use futures::channel::oneshot;
use petgraph::visit::{Bfs, Walker};

use crate::NodeId;
use crate::actor::{Control, Recorded};
use crate::error::SnapshotError;
use crate::group::Topology;
use crate::protocol::{LocalRecord, RoundId};
use crate::snapshot::{ChannelSnapshot, GlobalSnapshot, IngressSnapshot, NodeSnapshot};

/// Which nodes the initiator asks to record first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Initiation {
    /// Every node records at once; markers only close channels. Fastest, and the default.
    #[default]
    AllNodes,
    /// The classic form: one node records and its markers spread the round. Nodes that the
    /// given node cannot reach through channels are started directly too, or the round
    /// could never reach them.
    Node(NodeId),
}

/// Options of one snapshot round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct SnapshotOptions {
    /// How the round starts.
    pub initiation: Initiation,
    /// How long the collector waits for every node before it aborts the round.
    pub timeout: Duration,
}

impl Default for SnapshotOptions {
    fn default() -> Self {
        SnapshotOptions {
            initiation: Initiation::AllNodes,
            timeout: Duration::from_secs(10),
        }
    }
}

impl SnapshotOptions {
    /// Options with the given initiation.
    pub fn initiation(mut self, initiation: Initiation) -> Self {
        self.initiation = initiation;
        self
    }

    /// Options with the given timeout.
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
    /// Rounds aborted on timeout.
    pub timed_out: u64,
    /// Rounds failed for another reason (a stopped node, a node's failure).
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
}

pub(crate) type Reply = oneshot::Sender<Result<GlobalSnapshot, SnapshotError>>;

/// A request to start a round.
pub(crate) struct StartRound {
    pub(crate) options: SnapshotOptions,
    pub(crate) reply: Reply,
}

impl actix::Message for StartRound {
    type Result = ();
}

/// What a node tells the collector about a round.
pub(crate) enum Report {
    Done {
        node: NodeId,
        record: LocalRecord<Recorded, Vec<u8>>,
    },
    Failed {
        node: NodeId,
        round: RoundId,
        reason: String,
    },
}

impl actix::Message for Report {
    type Result = ();
}

/// A node's actor is gone (stopped or panicked).
pub(crate) struct NodeGone(pub(crate) NodeId);

impl actix::Message for NodeGone {
    type Result = ();
}

struct Pending {
    reply: Reply,
    reports: Vec<Option<LocalRecord<Recorded, Vec<u8>>>>,
    missing: usize,
    started: Instant,
    taken_at_ms: u64,
    timeout: Duration,
    timer: SpawnHandle,
    span: tracing::Span,
}

pub(crate) struct Collector {
    topo: Arc<Topology>,
    nodes: Vec<Recipient<Control>>,
    gone: Vec<bool>,
    next_round: RoundId,
    pending: HashMap<RoundId, Pending>,
    stats: Arc<Mutex<SnapshotStats>>,
}

impl Collector {
    pub(crate) fn new(
        topo: Arc<Topology>,
        nodes: Vec<Recipient<Control>>,
        first_round: RoundId,
        stats: Arc<Mutex<SnapshotStats>>,
    ) -> Self {
        let n = nodes.len();
        Collector {
            topo,
            nodes,
            gone: vec![false; n],
            next_round: first_round,
            pending: HashMap::new(),
            stats,
        }
    }

    fn stats(&self) -> std::sync::MutexGuard<'_, SnapshotStats> {
        self.stats.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Nodes to start for `initiation`.
    fn initiators(&self, initiation: Initiation) -> Vec<usize> {
        match initiation {
            Initiation::AllNodes => (0..self.nodes.len()).collect(),
            Initiation::Node(start) => {
                let graph = &self.topo.graph;
                let mut reached = vec![false; self.nodes.len()];
                if start.index() < reached.len() {
                    for n in Bfs::new(graph, start.index()).iter(graph) {
                        reached[n] = true;
                    }
                }
                let mut out = vec![start.index()];
                out.extend((0..reached.len()).filter(|&i| !reached[i]));
                out.retain(|&i| i < self.nodes.len());
                out
            }
        }
    }

    /// Ends round `r` with `result`: tells the nodes to drop it if it failed, updates the
    /// stats, and answers the caller.
    fn finish(
        &mut self,
        r: RoundId,
        result: Result<GlobalSnapshot, SnapshotError>,
        ctx: &mut Context<Self>,
    ) {
        let Some(p) = self.pending.remove(&r) else {
            return;
        };
        ctx.cancel_future(p.timer);
        let _enter = p.span.enter();
        let elapsed = p.started.elapsed();
        {
            let mut st = self.stats();
            st.in_progress = st.in_progress.saturating_sub(1);
            match &result {
                Ok(snap) => {
                    st.completed += 1;
                    st.last_round = Some(r);
                    st.last_duration = elapsed;
                    st.max_duration = st.max_duration.max(elapsed);
                    st.total_duration += elapsed;
                    st.last_bytes = snap.payload_bytes() as u64;
                    st.last_in_flight = snap.in_flight_count() as u64;
                }
                Err(SnapshotError::Timeout { .. }) => st.timed_out += 1,
                Err(_) => st.failed += 1,
            }
        }
        match &result {
            Ok(snap) => tracing::info!(
                duration_us = elapsed.as_micros() as u64,
                bytes = snap.payload_bytes(),
                in_flight = snap.in_flight_count(),
                "snapshot round completed"
            ),
            Err(e) => {
                tracing::warn!(duration_us = elapsed.as_micros() as u64, error = %e, "snapshot round aborted");
                for (i, node) in self.nodes.iter().enumerate() {
                    if !self.gone[i] {
                        node.do_send(Control::Abort(r));
                    }
                }
            }
        }
        // The caller may have stopped waiting; nothing to do then.
        let _ = p.reply.send(result);
    }

    fn assemble(&self, r: RoundId, p: &mut Pending) -> GlobalSnapshot {
        let mut records: Vec<LocalRecord<Recorded, Vec<u8>>> =
            p.reports.iter_mut().filter_map(Option::take).collect();
        let channels = self
            .topo
            .channels
            .iter()
            .enumerate()
            .map(|(id, ch)| {
                let rec = &mut records[ch.to.index()].channels[ch.slot as usize];
                ChannelSnapshot {
                    id: id as u32,
                    from: ch.from,
                    to: ch.to,
                    message_type: ch.message_type.to_string(),
                    sent: rec.sent,
                    delivered: rec.delivered,
                    messages: std::mem::take(&mut rec.messages)
                        .into_iter()
                        .map(serde_bytes::ByteBuf::from)
                        .collect(),
                }
            })
            .collect();
        let ingress = self
            .topo
            .ingress
            .iter()
            .enumerate()
            .map(|(id, ing)| IngressSnapshot {
                id: id as u32,
                name: ing.name.clone(),
                to: ing.to,
                message_type: ing.message_type.to_string(),
                offset: records[ing.to.index()].ingress[ing.slot as usize],
            })
            .collect();
        let nodes = self
            .topo
            .nodes
            .iter()
            .zip(records)
            .enumerate()
            .map(|(i, (info, rec))| NodeSnapshot {
                id: NodeId(i as u32),
                name: info.name.to_string(),
                actor_type: info.actor_type.to_string(),
                state_version: info.state_version,
                state: serde_bytes::ByteBuf::from(rec.state.state),
                waits_for: rec.state.waits_for,
            })
            .collect();
        GlobalSnapshot {
            id: r,
            taken_at_ms: p.taken_at_ms,
            nodes,
            channels,
            ingress,
        }
    }

    fn expire(&mut self, r: RoundId, ctx: &mut Context<Self>) {
        let Some(p) = self.pending.get(&r) else {
            return;
        };
        let missing = self.missing_names(p);
        let waited = p.timeout;
        self.finish(
            r,
            Err(SnapshotError::Timeout {
                round: r,
                waited,
                missing,
            }),
            ctx,
        );
    }

    fn missing_names(&self, p: &Pending) -> Vec<String> {
        p.reports
            .iter()
            .enumerate()
            .filter(|(_, rep)| rep.is_none())
            .map(|(i, _)| self.topo.nodes[i].name.to_string())
            .collect()
    }
}

impl Actor for Collector {
    type Context = Context<Self>;
}

impl Handler<StartRound> for Collector {
    type Result = ();

    fn handle(&mut self, msg: StartRound, ctx: &mut Context<Self>) {
        let r = self.next_round;
        self.next_round += 1;
        let n = self.nodes.len();
        let span = tracing::info_span!("snapshot_round", round = r);
        let taken_at_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let timer = ctx.run_later(msg.options.timeout, move |act, ctx| act.expire(r, ctx));
        {
            let mut st = self.stats();
            st.started += 1;
            st.in_progress += 1;
        }
        self.pending.insert(
            r,
            Pending {
                reply: msg.reply,
                reports: (0..n).map(|_| None).collect(),
                missing: n,
                started: Instant::now(),
                taken_at_ms,
                timeout: msg.options.timeout,
                timer,
                span: span.clone(),
            },
        );
        let _enter = span.enter();
        tracing::info!(nodes = n, initiation = ?msg.options.initiation, "snapshot round started");
        let stopped: Vec<String> = (0..n)
            .filter(|&i| self.gone[i])
            .map(|i| self.topo.nodes[i].name.to_string())
            .collect();
        if !stopped.is_empty() {
            drop(_enter);
            self.finish(
                r,
                Err(SnapshotError::NodeStopped { round: r, stopped }),
                ctx,
            );
            return;
        }
        if n == 0 {
            drop(_enter);
            if let Some(mut p) = self.pending.remove(&r) {
                let snap = self.assemble(r, &mut p);
                self.pending.insert(r, p);
                self.finish(r, Ok(snap), ctx);
            }
            return;
        }
        for i in self.initiators(msg.options.initiation) {
            self.nodes[i].do_send(Control::Start(r));
        }
    }
}

impl Handler<Report> for Collector {
    type Result = ();

    fn handle(&mut self, msg: Report, ctx: &mut Context<Self>) {
        match msg {
            Report::Done { node, record } => {
                let r = record.round;
                let Some(p) = self.pending.get_mut(&r) else {
                    return; // a round that already failed
                };
                let slot = &mut p.reports[node.index()];
                if slot.is_none() {
                    p.missing -= 1;
                }
                *slot = Some(record);
                if p.missing > 0 {
                    return;
                }
                if let Some(mut p) = self.pending.remove(&r) {
                    let snap = self.assemble(r, &mut p);
                    self.pending.insert(r, p);
                    self.finish(r, Ok(snap), ctx);
                }
            }
            Report::Failed {
                node,
                round,
                reason,
            } => {
                if self.pending.contains_key(&round) {
                    let node = self.topo.nodes[node.index()].name.to_string();
                    self.finish(
                        round,
                        Err(SnapshotError::NodeFailed {
                            round,
                            node,
                            reason,
                        }),
                        ctx,
                    );
                }
            }
        }
    }
}

impl Handler<NodeGone> for Collector {
    type Result = ();

    fn handle(&mut self, NodeGone(node): NodeGone, ctx: &mut Context<Self>) {
        let i = node.index();
        if i >= self.gone.len() {
            return;
        }
        self.gone[i] = true;
        tracing::warn!(node = %self.topo.nodes[i].name, "node stopped");
        let hit: Vec<RoundId> = self
            .pending
            .iter()
            .filter(|(_, p)| p.reports[i].is_none())
            .map(|(r, _)| *r)
            .collect();
        for r in hit {
            let stopped = vec![self.topo.nodes[i].name.to_string()];
            self.finish(
                r,
                Err(SnapshotError::NodeStopped { round: r, stopped }),
                ctx,
            );
        }
    }
}
