//! A simulated network of pure protocol nodes ([`NodeCore`]) for the model checker and the
//! protocol-level property test. No actix: the test decides which message is delivered next.
//!
//! - Channels are FIFO queues of [`Msg`] (a token with its per-channel sequence number, or a
//!   marker carrying the sender's count of tokens sent before it, as the real shell does).
//! - Each node runs a tiny application, [`App`], that keeps its own books: tokens held, tokens
//!   sent per outgoing channel, tokens received per incoming channel, tokens injected from
//!   outside. These books are what a round records as the node's state, and they are the
//!   ground truth [`check_round`] compares the protocol's output with.
//! - A [`Step`] is one event: deliver the head of a channel, a node's application sends a
//!   token, a token is injected from outside, or the collector's start of a round reaches a
//!   node.
//!
//! The shell (what runs [`NodeCore::poll`]'s actions) is [`Shell::Correct`] — markers go out
//! at once — or [`Shell::LateMarkers`], a deliberately broken shell that lets one token
//! overtake the markers, used to show the checks can fail.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use actix_snapshot::protocol::{Action, Failure, LocalRecord, NodeCore, RoundId};

/// How the simulated shell carries out [`Action::SendMarkers`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Shell {
    /// Markers are queued on every outgoing channel immediately (what `SnapshotActor` does).
    Correct,
    /// Bug on purpose: the markers may be held back until after the node's next token send
    /// (and then carry the count including that token), or go out later ([`Step::Flush`]).
    /// Breaks the cut.
    LateMarkers,
}

/// How a round starts, as in `actix_snapshot::Initiation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Init {
    /// Every node is started directly.
    AllNodes,
    /// The node is started, plus every node it cannot reach through channels.
    Node(usize),
}

/// A fixed topology: `n` nodes and directed channels `edges[e] = (from, to)`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Topo {
    pub n: usize,
    pub edges: Vec<(usize, usize)>,
    /// Per edge: its index among the receiver's incoming channels.
    pub slot: Vec<usize>,
    /// Per edge: its index among the sender's outgoing channels.
    pub out_index: Vec<usize>,
    /// Per node: its outgoing edges, in order.
    pub outs: Vec<Vec<usize>>,
    /// Per node: its incoming edges, by slot.
    pub ins: Vec<Vec<usize>>,
}

impl Topo {
    pub fn new(n: usize, edges: &[(usize, usize)]) -> Topo {
        let mut slot = Vec::new();
        let mut out_index = Vec::new();
        let mut outs = vec![Vec::new(); n];
        let mut ins = vec![Vec::new(); n];
        for (e, &(f, t)) in edges.iter().enumerate() {
            assert!(f < n && t < n, "edge {e} ({f} -> {t}) outside 0..{n}");
            slot.push(ins[t].len());
            ins[t].push(e);
            out_index.push(outs[f].len());
            outs[f].push(e);
        }
        Topo {
            n,
            edges: edges.to_vec(),
            slot,
            out_index,
            outs,
            ins,
        }
    }

    /// Nodes the collector starts for `init`: computed here independently of the library.
    pub fn initiators(&self, init: Init) -> Vec<usize> {
        match init {
            Init::AllNodes => (0..self.n).collect(),
            Init::Node(x) => {
                let mut reached = vec![false; self.n];
                let mut todo = vec![x];
                reached[x] = true;
                while let Some(v) = todo.pop() {
                    for &e in &self.outs[v] {
                        let t = self.edges[e].1;
                        if !reached[t] {
                            reached[t] = true;
                            todo.push(t);
                        }
                    }
                }
                let mut out = vec![x];
                out.extend((0..self.n).filter(|&i| !reached[i]));
                out
            }
        }
    }
}

/// A node's application state and its own books; this is what a round records.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct App {
    /// Tokens at this node.
    pub held: u64,
    /// Per outgoing channel (by out index): tokens sent on it.
    pub sent: Vec<u64>,
    /// Per incoming channel (by slot): tokens received on it.
    pub received: Vec<u64>,
    /// Tokens injected here from outside.
    pub injected: u64,
}

/// What travels on a channel.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Msg {
    /// A token; `seq` is its position on the channel.
    Token { seq: u64 },
    /// A marker; `sent` is how many tokens the sender had sent on the channel before it.
    Marker { round: RoundId, sent: u64 },
}

/// One event of the simulated system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Step {
    /// Deliver the head of channel (edge) `e`.
    Deliver(usize),
    /// The start of round `r` reaches node `node`.
    Start(RoundId, usize),
    /// Node `node`'s application sends one token on its outgoing channel `out`.
    Send(usize, usize),
    /// A token from outside arrives at node `node` (through its single ingress).
    Inject(usize),
    /// The broken shell finally sends the markers node `node` owes (never enabled with
    /// [`Shell::Correct`]).
    Flush(usize),
}

/// The whole simulated system.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct World {
    pub cores: Vec<NodeCore<App, u64>>,
    pub apps: Vec<App>,
    pub chans: Vec<VecDeque<Msg>>,
    /// Round starts not yet delivered: (round, node).
    pub pending_starts: BTreeSet<(RoundId, usize)>,
    /// Per node: token sends its application may still do.
    pub sends_left: Vec<u32>,
    /// Per node: injections still to come.
    pub injects_left: Vec<u32>,
    /// Per round: each node's completed record.
    pub records: BTreeMap<RoundId, Vec<Option<LocalRecord<App, u64>>>>,
    /// Every failure any node reported.
    pub failures: Vec<(usize, RoundId, Failure)>,
    /// Per node: rounds whose markers the broken shell still owes.
    pub owed: Vec<Vec<RoundId>>,
    pub shell: Shell,
}

/// The initial configuration of a simulation.
#[derive(Debug, Clone)]
pub struct Setup {
    pub topo: Topo,
    /// Per node: tokens it holds at the start.
    pub tokens: Vec<u64>,
    /// Per node: how many sends its application may do in total.
    pub sends: Vec<u32>,
    /// Per node: how many tokens arrive from outside.
    pub injects: Vec<u32>,
    /// Rounds, numbered 1.., with their initiation.
    pub rounds: Vec<Init>,
    pub shell: Shell,
}

impl World {
    pub fn new(s: &Setup) -> World {
        let t = &s.topo;
        let mut pending_starts = BTreeSet::new();
        let mut records = BTreeMap::new();
        for (i, &init) in s.rounds.iter().enumerate() {
            let r = i as RoundId + 1;
            for node in t.initiators(init) {
                pending_starts.insert((r, node));
            }
            records.insert(r, vec![None; t.n]);
        }
        World {
            cores: (0..t.n).map(|i| NodeCore::new(t.ins[i].len(), 1)).collect(),
            apps: (0..t.n)
                .map(|i| App {
                    held: s.tokens[i],
                    sent: vec![0; t.outs[i].len()],
                    received: vec![0; t.ins[i].len()],
                    injected: 0,
                })
                .collect(),
            chans: vec![VecDeque::new(); t.edges.len()],
            pending_starts,
            sends_left: s.sends.clone(),
            injects_left: s.injects.clone(),
            records,
            failures: Vec::new(),
            owed: vec![Vec::new(); t.n],
            shell: s.shell,
        }
    }

    /// Every step possible now, in a deterministic order.
    pub fn enabled(&self, t: &Topo, out: &mut Vec<Step>) {
        for (e, q) in self.chans.iter().enumerate() {
            if !q.is_empty() {
                out.push(Step::Deliver(e));
            }
        }
        for &(r, node) in &self.pending_starts {
            out.push(Step::Start(r, node));
        }
        for node in 0..t.n {
            if self.sends_left[node] > 0 && self.apps[node].held > 0 {
                for k in 0..t.outs[node].len() {
                    out.push(Step::Send(node, k));
                }
            }
            if self.injects_left[node] > 0 {
                out.push(Step::Inject(node));
            }
            if !self.owed[node].is_empty() {
                out.push(Step::Flush(node));
            }
        }
    }

    /// Carries out `step` (which must be enabled) and the shell's reaction to it.
    pub fn apply(&mut self, t: &Topo, step: Step) {
        match step {
            Step::Deliver(e) => {
                let node = t.edges[e].1;
                let slot = t.slot[e];
                let msg = self.chans[e].pop_front().expect("step was enabled");
                match msg {
                    Msg::Token { seq } => {
                        self.cores[node].on_message(slot, || Ok(seq));
                        self.drain(t, node);
                        let app = &mut self.apps[node];
                        assert_eq!(app.received[slot], seq, "simulated channel not FIFO");
                        app.received[slot] += 1;
                        app.held += 1;
                    }
                    Msg::Marker { round, sent } => {
                        let app = &self.apps[node];
                        self.cores[node].on_marker(slot, round, sent, || Ok(app.clone()));
                        self.drain(t, node);
                    }
                }
            }
            Step::Start(r, node) => {
                self.pending_starts.remove(&(r, node));
                let app = &self.apps[node];
                self.cores[node].start(r, || Ok(app.clone()));
                self.drain(t, node);
            }
            Step::Send(node, k) => {
                let e = t.outs[node][k];
                let app = &mut self.apps[node];
                app.held -= 1;
                let seq = app.sent[k];
                app.sent[k] += 1;
                self.sends_left[node] -= 1;
                self.chans[e].push_back(Msg::Token { seq });
                // The broken shell only now sends the markers it owes.
                for r in std::mem::take(&mut self.owed[node]) {
                    self.send_markers(t, node, r);
                }
            }
            Step::Flush(node) => {
                for r in std::mem::take(&mut self.owed[node]) {
                    self.send_markers(t, node, r);
                }
            }
            Step::Inject(node) => {
                self.injects_left[node] -= 1;
                self.cores[node].on_ingress(0);
                let app = &mut self.apps[node];
                app.injected += 1;
                app.held += 1;
            }
        }
    }

    fn send_markers(&mut self, t: &Topo, node: usize, round: RoundId) {
        for (k, &e) in t.outs[node].iter().enumerate() {
            let sent = self.apps[node].sent[k];
            self.chans[e].push_back(Msg::Marker { round, sent });
        }
    }

    fn drain(&mut self, t: &Topo, node: usize) {
        while let Some(a) = self.cores[node].poll() {
            match a {
                Action::SendMarkers { round } => match self.shell {
                    Shell::Correct => self.send_markers(t, node, round),
                    Shell::LateMarkers => self.owed[node].push(round),
                },
                Action::Complete(rec) => {
                    let r = rec.round;
                    let slot = self
                        .records
                        .get_mut(&r)
                        .and_then(|v| v.get_mut(node))
                        .expect("record of a known round");
                    assert!(slot.is_none(), "node {node} completed round {r} twice");
                    *slot = Some(rec);
                }
                Action::Failed { round, failure } => self.failures.push((node, round, failure)),
            }
        }
    }

    /// Total tokens that exist now (initial + injected so far).
    pub fn total_tokens(&self, initial: u64) -> u64 {
        initial + self.apps.iter().map(|a| a.injected).sum::<u64>()
    }

    /// Rounds every node completed, with their records.
    pub fn completed(&self) -> impl Iterator<Item = (RoundId, Vec<&LocalRecord<App, u64>>)> {
        self.records.iter().filter_map(|(r, recs)| {
            recs.iter()
                .map(Option::as_ref)
                .collect::<Option<Vec<_>>>()
                .map(|v| (*r, v))
        })
    }

    /// Whether every round completed on every node.
    pub fn all_complete(&self) -> bool {
        self.records
            .values()
            .all(|recs| recs.iter().all(Option::is_some))
    }

    /// Whether nothing can happen any more.
    pub fn quiescent(&self, t: &Topo) -> bool {
        let mut v = Vec::new();
        self.enabled(t, &mut v);
        v.is_empty()
    }
}

/// What a completed round shows, for statistics.
#[derive(Debug, Default, Clone, Copy)]
pub struct CutInfo {
    pub in_flight: u64,
    pub held: u64,
}

/// Checks that the records of one round form a consistent cut, against the applications'
/// own books (the recorded [`App`] states), not against the protocol's counters:
/// - per channel `f -> t`: the receiver had received at most what the sender had sent, and
///   the recorded messages are exactly the tokens with sequence numbers
///   `received_by_t .. sent_by_f`, in order;
/// - the protocol's own per-channel counters agree with those books;
/// - per node, the recorded ingress offset equals the injections in its recorded books;
/// - tokens are conserved: held in recorded states + recorded in flight = initial tokens +
///   tokens injected before the cut.
pub fn check_round(
    t: &Topo,
    recs: &[&LocalRecord<App, u64>],
    initial_tokens: u64,
) -> Result<CutInfo, String> {
    let mut info = CutInfo::default();
    for (e, &(f, to)) in t.edges.iter().enumerate() {
        let sent = recs[f].state.sent[t.out_index[e]];
        let slot = t.slot[e];
        let received = recs[to].state.received[slot];
        let ch = &recs[to].channels[slot];
        if received > sent {
            return Err(format!(
                "channel {f}->{to}: receiver recorded {received} received, sender only {sent} sent"
            ));
        }
        let expected: Vec<u64> = (received..sent).collect();
        if ch.messages != expected {
            return Err(format!(
                "channel {f}->{to}: recorded {:?}, expected {expected:?}",
                ch.messages
            ));
        }
        if ch.delivered != received || ch.sent != sent {
            return Err(format!(
                "channel {f}->{to}: protocol counters delivered={} sent={} disagree with books {received}/{sent}",
                ch.delivered, ch.sent
            ));
        }
        info.in_flight += ch.messages.len() as u64;
    }
    let mut injected = 0;
    for (i, rec) in recs.iter().enumerate() {
        if rec.ingress != [rec.state.injected] {
            return Err(format!(
                "node {i}: ingress offset {:?}, books say {}",
                rec.ingress, rec.state.injected
            ));
        }
        injected += rec.state.injected;
        info.held += rec.state.held;
    }
    let total = initial_tokens + injected;
    if info.held + info.in_flight != total {
        return Err(format!(
            "tokens not conserved: {} held + {} in flight != {total}",
            info.held, info.in_flight
        ));
    }
    Ok(info)
}

/// Checks every completed round of `w`.
pub fn check_completed(w: &World, t: &Topo, initial_tokens: u64) -> Result<usize, String> {
    let mut n = 0;
    for (r, recs) in w.completed() {
        check_round(t, &recs, initial_tokens).map_err(|e| format!("round {r}: {e}"))?;
        n += 1;
    }
    Ok(n)
}
