//! Deadlock detection on a consistent snapshot: the wait-for graph and its cycles.
//!
//! An actor tells what it waits for through `#[snapshot(waits_for = path)]` on its
//! `#[derive(Snapshot)]` ([`Snapshottable::waits_for`](crate::Snapshottable::waits_for));
//! each snapshot records the
//! list per node ([`NodeSnapshot::waits_for`](crate::snapshot::NodeSnapshot::waits_for)).
//! [`WaitForGraph::from_snapshot`] turns one snapshot into a graph with an edge
//! `i -> j` for each node `j` that node `i` waits for, and [`WaitForGraph::deadlocks`]
//! returns its cycles.
//!
//! # What a wait means, and when it is satisfied
//!
//! `waits_for` returning `j` means: *this actor will not make progress until it receives a
//! message from node `j`* (an AND wait: every node listed must send something). Waits on
//! things outside the group (ingress, timers) must not be reported.
//!
//! A wait `i -> j` is **satisfied** in a snapshot if the snapshot holds at least one message
//! in flight from `j` to `i` (a [`PathSnapshot`](crate::snapshot::PathSnapshot) with
//! `from == j` and `to == i`, any message type). That message will be delivered to `i`, so
//! `i` is not stuck on `j` at this cut, whatever the message says.
//! Satisfied waits are kept in the graph (and drawn dashed by [`WaitForGraph::to_dot`]) but
//! do not count for deadlocks.
//!
//! A **deadlock** is a strongly connected component of the unsatisfied waits that holds a
//! cycle (two or more nodes, or one node waiting for itself): every node in it waits for
//! another node of it, none has a message on its way from the node it waits for, so none
//! can ever move. Because the snapshot is a consistent cut and a deadlock, once reached,
//! stays (a stable property), a deadlock found in a snapshot is real — provided the actors
//! report waits as defined above. The rule errs on the safe side: a message in flight from
//! `j` that does not in fact release `i` hides the deadlock from this snapshot, and a later
//! snapshot (taken once the message was delivered) finds it.
//!
//! Nodes are named by their [`NodeId`]s, which are sparse in a group where nodes come and
//! go: the graph has one node per node of the snapshot, in id order, and a wait on a node
//! the snapshot does not hold (one that had left the group at the cut) is not an edge — such
//! a node can never be part of a cycle of the snapshot.
//!
//! The strongly connected components come from `petgraph::algo::tarjan_scc`; each deadlock
//! also carries one elementary cycle through it (a shortest path back to its first node,
//! found with `petgraph::algo::astar`).
//!
//! To watch a running group for deadlocks, hand [`no_deadlock`] to a
//! [`Monitor`](crate::monitor::Monitor) as a check.
//!
//! ```
//! use actix::prelude::*;
//! use actix_snapshot::{NodeId, Snapshot, SnapshotGroup};
//! use actix_snapshot::deadlock::WaitForGraph;
//! use serde::{Deserialize, Serialize};
//!
//! /// "Wait for node `.0`".
//! #[derive(Message, Serialize, Deserialize)]
//! #[rtype(result = "()")]
//! struct WaitOn(u64);
//!
//! /// Waits for the node it was told to wait for.
//! #[derive(Snapshot)]
//! #[snapshot(state_type = (), state_fn = Self::state, waits_for = Self::waits, messages(WaitOn))]
//! struct Waiter { on: Option<NodeId> }
//! impl Waiter {
//!     fn state(&self) {}
//!     fn waits(&self) -> Vec<NodeId> { self.on.into_iter().collect() }
//! }
//! impl Actor for Waiter { type Context = Context<Self>; }
//! impl Handler<WaitOn> for Waiter {
//!     type Result = ();
//!     fn handle(&mut self, on: WaitOn, _ctx: &mut Context<Self>) { self.on = Some(NodeId(on.0)); }
//! }
//!
//! # #[actix::main] async fn main() {
//! let mut b = SnapshotGroup::builder();
//! let (x, y, z) = (b.node::<Waiter>("x"), b.node::<Waiter>("y"), b.node::<Waiter>("z"));
//! let (tx, ty) = (b.ingress::<WaitOn, _>("tx", x), b.ingress::<WaitOn, _>("ty", y));
//! for n in [x, y, z] { b.actor(n, |_| Waiter { on: None }); }
//! let group = b.start().unwrap();
//! tx.send(WaitOn(y.id().0)).unwrap();   // x waits for y
//! ty.send(WaitOn(x.id().0)).unwrap();   // y waits for x: a deadlock
//! let snap = loop {                     // until both messages were handled
//!     let snap = group.snapshot().await.unwrap();
//!     if snap.ingress_offset("ty").unwrap() == 1 && snap.ingress_offset("tx").unwrap() == 1 {
//!         break snap;
//!     }
//! };
//! let graph = WaitForGraph::from_snapshot(&snap);
//! let deadlocks = graph.deadlocks();
//! assert_eq!(deadlocks.len(), 1);
//! assert_eq!(deadlocks[0].nodes, ["x", "y"]);
//! assert_eq!(deadlocks[0].cycle, ["x", "y"]);  // x -> y -> x
//! assert!(graph.to_dot().contains("digraph"));
//! group.shutdown();
//! # }
//! ```

use std::collections::HashMap;
use std::fmt;

use petgraph::dot::{Config, Dot};
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::EdgeRef;

use crate::NodeId;
use crate::monitor::Violation;
use crate::snapshot::GlobalSnapshot;

/// One wait in the graph: an edge `waiter -> waited_for`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wait {
    /// Messages in flight from the waited-for node to the waiter at the cut, of any message
    /// type. More than zero means the wait is satisfied.
    pub in_flight: usize,
}

impl Wait {
    /// Whether an in-flight message will satisfy this wait (see the [module docs](self)).
    pub fn is_satisfied(&self) -> bool {
        self.in_flight > 0
    }
}

impl fmt::Display for Wait {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_satisfied() {
            write!(f, "{} in flight", self.in_flight)
        } else {
            Ok(())
        }
    }
}

/// A set of nodes that wait for each other in a cycle, none with a message on its way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deadlock {
    /// The nodes of the strongly connected component, in node-id order.
    pub nodes: Vec<String>,
    /// One elementary cycle through the component, starting at its lowest node id:
    /// `cycle[0]` waits for `cycle[1]`, ..., the last waits for `cycle[0]`.
    pub cycle: Vec<String>,
}

impl fmt::Display for Deadlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for name in &self.cycle {
            write!(f, "{name} -> ")?;
        }
        match self.cycle.first() {
            Some(first) => write!(f, "{first}")?,
            None => write!(f, "(empty)")?,
        }
        if self.nodes.len() > self.cycle.len() {
            write!(f, " (component: {})", self.nodes.join(", "))?;
        }
        Ok(())
    }
}

/// The wait-for graph of one snapshot. Nodes are the snapshot's nodes in id order (weights:
/// their names), edges the recorded waits.
#[derive(Debug, Clone)]
pub struct WaitForGraph {
    graph: DiGraph<String, Wait>,
    /// The node id of each graph node, by index.
    ids: Vec<NodeId>,
}

impl WaitForGraph {
    /// Builds the graph from a snapshot: one graph node per snapshot node (in the snapshot's
    /// order, which is by id), one edge per distinct recorded wait, with the number of
    /// messages in flight the other way. Waits on ids the snapshot does not hold are ignored.
    pub fn from_snapshot(snap: &GlobalSnapshot) -> Self {
        let mut graph = DiGraph::with_capacity(snap.nodes.len(), 0);
        let mut index: HashMap<NodeId, NodeIndex> = HashMap::with_capacity(snap.nodes.len());
        for node in &snap.nodes {
            index.insert(node.id, graph.add_node(node.name.clone()));
        }
        let mut in_flight: HashMap<(NodeId, NodeId), usize> = HashMap::new();
        for p in &snap.paths {
            *in_flight.entry((p.from, p.to)).or_default() += p.messages.len();
        }
        for node in &snap.nodes {
            let waiter = index[&node.id];
            let mut targets: Vec<(NodeId, NodeIndex)> = node
                .waits_for
                .iter()
                .filter_map(|j| index.get(j).map(|&t| (*j, t)))
                .collect();
            targets.sort();
            targets.dedup();
            for (j, target) in targets {
                let wait = Wait {
                    in_flight: in_flight.get(&(j, node.id)).copied().unwrap_or(0),
                };
                graph.add_edge(waiter, target, wait);
            }
        }
        WaitForGraph {
            graph,
            ids: snap.nodes.iter().map(|n| n.id).collect(),
        }
    }

    /// The underlying petgraph graph. Graph node `i` is the snapshot's `nodes[i]`, whose id
    /// is [`node_id(i)`](Self::node_id).
    pub fn graph(&self) -> &DiGraph<String, Wait> {
        &self.graph
    }

    /// The node id of graph node `index`.
    pub fn node_id(&self, index: NodeIndex) -> Option<NodeId> {
        self.ids.get(index.index()).copied()
    }

    /// Every recorded wait as `(waiter, waited-for, wait)`, by waiter.
    pub fn waits(&self) -> Vec<(&str, &str, Wait)> {
        self.graph
            .edge_references()
            .map(|e| {
                (
                    self.graph[e.source()].as_str(),
                    self.graph[e.target()].as_str(),
                    *e.weight(),
                )
            })
            .collect()
    }

    /// The graph of the unsatisfied waits only (same node indices).
    fn blocking(&self) -> DiGraph<(), ()> {
        self.graph
            .filter_map(|_, _| Some(()), |_, w| (!w.is_satisfied()).then_some(()))
    }

    /// The deadlocks: cyclic strongly connected components of the unsatisfied waits, ordered
    /// by their lowest node id. Empty if there is none.
    pub fn deadlocks(&self) -> Vec<Deadlock> {
        let blocking = self.blocking();
        let mut found: Vec<Vec<NodeIndex>> = petgraph::algo::tarjan_scc(&blocking)
            .into_iter()
            .filter(|scc| scc.len() > 1 || blocking.contains_edge(scc[0], scc[0]))
            .map(|mut scc| {
                scc.sort();
                scc
            })
            .collect();
        found.sort();
        found
            .into_iter()
            .map(|scc| {
                let cycle = self.cycle_through(&blocking, scc[0]);
                Deadlock {
                    nodes: scc.iter().map(|&i| self.graph[i].clone()).collect(),
                    cycle: cycle.into_iter().map(|i| self.graph[i].clone()).collect(),
                }
            })
            .collect()
    }

    /// An elementary cycle through `start`, which lies on a cycle of `blocking`: the
    /// shortest way back to `start` over its successors.
    fn cycle_through(&self, blocking: &DiGraph<(), ()>, start: NodeIndex) -> Vec<NodeIndex> {
        if blocking.contains_edge(start, start) {
            return vec![start];
        }
        let mut best: Option<Vec<NodeIndex>> = None;
        for next in blocking.neighbors(start) {
            let path = petgraph::algo::astar(blocking, next, |n| n == start, |_| 1usize, |_| 0);
            if let Some((_, path)) = path {
                // `path` runs next ..= start; the cycle is start, next, ..., (before start).
                let mut cycle = Vec::with_capacity(path.len());
                cycle.push(start);
                cycle.extend(path.iter().copied().filter(|&n| n != start));
                if best.as_ref().is_none_or(|b| cycle.len() < b.len()) {
                    best = Some(cycle);
                }
            }
        }
        best.unwrap_or_else(|| vec![start])
    }

    /// Whether any deadlock exists.
    pub fn has_deadlock(&self) -> bool {
        !self.deadlocks().is_empty()
    }

    /// The graph in Graphviz DOT. Unsatisfied waits are solid edges, satisfied ones dashed
    /// and labelled with their in-flight count; nodes in a deadlock are red.
    pub fn to_dot(&self) -> String {
        let mut stuck = vec![false; self.graph.node_count()];
        let blocking = self.blocking();
        for scc in petgraph::algo::tarjan_scc(&blocking) {
            if scc.len() > 1 || blocking.contains_edge(scc[0], scc[0]) {
                for i in scc {
                    stuck[i.index()] = true;
                }
            }
        }
        let edge_attrs = |_, e: petgraph::graph::EdgeReference<'_, Wait>| {
            let w = e.weight();
            if w.is_satisfied() {
                format!("style=dashed, label=\"{w}\"")
            } else if stuck[e.source().index()] && stuck[e.target().index()] {
                "color=red, penwidth=2".to_string()
            } else {
                String::new()
            }
        };
        let node_attrs = |_, (i, _): (NodeIndex, &String)| {
            if stuck[i.index()] {
                "color=red, fontcolor=red".to_string()
            } else {
                String::new()
            }
        };
        format!(
            "{}",
            Dot::with_attr_getters(
                &self.graph,
                &[Config::EdgeNoLabel],
                &edge_attrs,
                &node_attrs
            )
        )
    }
}

/// The deadlocks of a snapshot: shorthand for
/// `WaitForGraph::from_snapshot(snap).deadlocks()`.
pub fn find_deadlocks(snap: &GlobalSnapshot) -> Vec<Deadlock> {
    WaitForGraph::from_snapshot(snap).deadlocks()
}

/// A [`Monitor`](crate::monitor::Monitor) check that fails when a snapshot holds a deadlock;
/// the violation's message lists the cycles.
///
/// ```
/// # use std::time::Duration;
/// # use actix_snapshot::{SnapshotGroup, monitor::Monitor};
/// # fn f(group: SnapshotGroup) {
/// let monitor = Monitor::builder(group)
///     .every(Duration::from_millis(50))
///     .check("no deadlock", actix_snapshot::deadlock::no_deadlock)
///     .start();
/// # }
/// ```
pub fn no_deadlock(snap: &GlobalSnapshot) -> Result<(), Violation> {
    let found = find_deadlocks(snap);
    if found.is_empty() {
        return Ok(());
    }
    let cycles: Vec<String> = found.iter().map(|d| d.to_string()).collect();
    Err(Violation::new(format!(
        "{} deadlock(s): {}",
        found.len(),
        cycles.join("; ")
    )))
}
