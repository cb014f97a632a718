//! A simulated world for the snapshot protocol's two pure state machines, [`NodeCore`] and
//! [`RoundTracker`], shared by the exhaustive model check (`tests/test_model.rs`) and the
//! protocol-level property test (`tests/test_protocol_proptest.rs`). No actix, no threads,
//! no clocks: the test decides what happens next.
//!
//! # What is simulated
//!
//! - **Nodes.** Each node is a [`NodeCore`] plus a tiny application: a set of *tokens* (unique
//!   ids) it holds. The application can send a token it holds to a node id that exists (alive,
//!   or a tombstone; which ids it may address: [`Addresses`]), stamped with the sender's color
//!   and followed by `handle_sent(1)`; it adds every token delivered to it. It always parts
//!   with its smallest token: tokens are all alike to the protocol, so choosing among them
//!   would only multiply states. The state a round records for a node ([`AppState`]) is its
//!   token set; a recorded message ([`Msg`]) is the token with its hop number (the
//!   how-many-th send of that token it is), so every message is unique.
//! - **The network** between nodes is an unordered, non-duplicating set of messages in
//!   transit: any of them may be delivered next (tokens are unique, so a map keyed by token
//!   is that multiset).
//! - **Notes** (a node's [`NodeOutput`]s) travel to the tracker in one FIFO queue per node,
//!   as the protocol requires; the heads of different queues are delivered in any order
//!   ([`Notes::Queued`]). [`Notes::Immediate`] hands them over within the step that emits them,
//!   as the actix shell does: fewer interleavings, for larger bounds.
//! - **Start messages** (from [`TrackerOutput::StartAll`], sent to every live node, and
//!   [`TrackerOutput::StartNode`]) are an unordered set of `(round, node)`. A start that can no
//!   longer have an effect (to a tombstone, or of a round the node already recorded) is
//!   delivered at once, and checked to have none: delivering it later could change nothing but
//!   the number of interleavings.
//! - **The tracker** is fed synchronously: every tracker input is followed by handling all its
//!   outputs (as the actix shell does under its lock). Registration is synchronous with the
//!   spawn step: `register_child(id, parent.color())` inside the parent's step,
//!   `register_outside(id)` for a node spawned from outside. Rounds start at one fixed
//!   `Instant` with a 1 s timeout; a timeout is `handle_timeout` 2 s later.
//! - **Events** ([`Action`]): start a round (up to the concurrency cap), abort a round, time out
//!   every open round, deliver a start, deliver a message, deliver a note, send a token, spawn a
//!   child from inside a node's step (optionally handing it the parent's smallest token),
//!   spawn a node from outside, stop a node (the tokens it holds are destroyed), panic a node
//!   (likewise). Every kind of event has a budget ([`Config`]) so the state space is finite.
//! - The tracker's `Closed` hint is applied the way the shell does it: right before a node
//!   handles a message of a lower color, it learns the latest watermark.
//!
//! # Ghost data: the ground truth
//!
//! Nothing here asks the tracker whether it is right. The world keeps its own account of what
//! happened, and checks every [`CompletedRound`] against it when the tracker emits it:
//!
//! - Per node: `born` (the rounds `<= born` were cut before the node existed: for a child,
//!   the rounds its parent had recorded at the spawn; for an outside spawn, the rounds before
//!   the first one still open, or all started rounds if none is open),
//!   `cut` (the rounds `<= cut` it has cut, observed as the moments its core's epoch moves, with
//!   the token set it held at that moment), `died` (its `cut` when it stopped or panicked: the
//!   later rounds it died before cutting). For round `r` a node is a *member* iff
//!   `born < r <= cut` — it existed at its cut.
//! - Per message: the sender's `cut` when it was sent (`gs`: it was sent before the sender's cut
//!   of every round `> gs`), kept apart from the color the shell stamped (a broken shell may
//!   stamp a wrong one). At delivery, with the receiver's `cut` `gd`: rounds in `gs+1..=gd` had
//!   it *crossing* the cut (sent before, received after); rounds in `gd+1..=gs` had it received
//!   before the receiver's cut but sent after the sender's (*backwards*: never allowed).
//! - Per token: its fate once destroyed (held by a node that stopped/panicked, or dropped by a
//!   tombstone).
//!
//! [`World::check_completed`] then verifies, for a completed round `r`:
//! 1. **Consistent cut** ([`Check::Cut`]): the records are exactly the members, once each;
//!    no live non-member still owed a record; each record holds the state the node had at its
//!    cut of `r`; no message crossed the cut backwards.
//! 2. **In flight exactly once** ([`Check::InFlight`]): the recorded in-flight messages are
//!    exactly the messages sent before their sender's cut and not received before their
//!    receiver's, for member receivers (none to non-members), each once.
//! 3. **Conservation** ([`Check::Conservation`]): the members' recorded tokens plus the
//!    in-flight tokens are every token that existed at the cut, each exactly once. A token is
//!    gone if its holder died before its cut, or if at the cut it was travelling to a node that
//!    had already died before its cut (it is dropped on arrival).
//!
//! Failures are checked too ([`Check::Failure`]): a round fails only if it was aborted, timed
//! out, or a member panicked before recording it; and a round that a member panicked owing
//! never completes. [`Check::Closed`] covers "closed stays closed": no round is closed twice,
//! no `Closed` hint names an open round, a round start is never refused below the cap.
//! [`World::structure`] checks, after every step, that nothing outlives its round: the
//! tracker's open rounds are exactly those the ghost account has not seen close, all above its
//! `closed_through`, within the cap; it keeps exactly the members not known to be gone; no
//! node keeps undrained outputs (a [`NodeCore`] has no per-round memory at all); a tombstone
//! never records again.
//!
//! # Broken shells
//!
//! [`Shell`] selects how the simulated shell drives the machines; every variant but
//! [`Shell::Correct`] is a deliberate bug, to show the checks can fail.
#![allow(dead_code)]

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use actix_snapshot::protocol::{
    CompletedRound, Life, NodeCore, NodeId, NodeOutput, RoundFailure, RoundId, RoundTracker,
    TrackerConfig, TrackerOutput,
};

/// A token's id. Tokens are unique and never duplicated by the application.
pub type Token = u8;

/// A set of tokens (a bit set: cheap to clone and hash, which matters to the model checker).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct Tokens(pub u64);

impl Tokens {
    /// Adds `t`.
    pub fn insert(&mut self, t: Token) {
        self.0 |= 1 << t;
    }

    /// Removes `t`.
    pub fn remove(&mut self, t: Token) {
        self.0 &= !(1 << t);
    }

    /// Whether `t` is in the set.
    pub fn contains(self, t: Token) -> bool {
        self.0 & (1 << t) != 0
    }

    /// The smallest token in the set.
    pub fn first(self) -> Option<Token> {
        (self.0 != 0).then(|| self.0.trailing_zeros() as Token)
    }

    /// The tokens, smallest first.
    pub fn iter(self) -> impl Iterator<Item = Token> {
        (0..64).filter(move |&t| self.contains(t))
    }
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

/// A recorded message: a token and its hop number (the how-many-th send of that token).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Msg {
    /// The token carried.
    pub token: Token,
    /// How many times the token had been sent before this send.
    pub hop: u8,
}

/// The state a round records for a node.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AppState {
    /// The node that recorded it (checked against the id the tracker files it under).
    pub node: u8,
    /// The tokens it held.
    pub held: Tokens,
    /// The node's epoch before this recording (the record covers the rounds after it).
    pub prior: RoundId,
}

/// How the simulated shell drives the machines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Shell {
    /// As the protocol requires.
    Correct,
    /// Bug: stamps sends with the node's color from before its last recording.
    StaleColor,
    /// Bug: registers every child with epoch 0 instead of its parent's color.
    ChildEpochZero,
    /// Bug: drops the in-flight copies (late notes with a payload) of live nodes.
    SkipLateCopy,
}

/// Which node ids a node's application may send to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Addresses {
    /// Any node that exists, at any time: addresses leak through the environment (a shared
    /// registry, a global map), outside the group's messages.
    Global,
    /// Addresses travel only in the group's own messages: a node can address a child only once
    /// it has recorded every round the child was born after. (A message carrying the child's
    /// address is sent after the parent's spawn, so its color is at least the child's epoch,
    /// and receiving it moves the receiver's epoch that far.)
    Causal,
}

/// How a node's notes reach the tracker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Notes {
    /// Through the node's FIFO queue, delivered whenever the model chooses (the heads of
    /// different nodes' queues in any order): what the protocol allows.
    Queued,
    /// At once, in the same step (what the actix shell does: it hands the notes over under
    /// the tracker's lock at the end of each step). A subset of [`Notes::Queued`]'s behaviours,
    /// for larger bounds.
    Immediate,
}

/// Bounds and choices of one simulated world.
#[derive(Debug, Clone)]
pub struct Config {
    /// Nodes present at the start (registered from outside before anything happens).
    pub initial_nodes: usize,
    /// Per token, the initial node holding it.
    pub tokens: Vec<u8>,
    /// Nodes there may ever be (initial + spawned).
    pub max_nodes: usize,
    /// Token sends, in total.
    pub sends: u8,
    /// Spawns of a child from inside a node's step.
    pub child_spawns: u8,
    /// Spawns from outside the group.
    pub outside_spawns: u8,
    /// Stops.
    pub stops: u8,
    /// Panics.
    pub panics: u8,
    /// Rounds that may be started, in total.
    pub rounds: u8,
    /// The tracker's cap on concurrent rounds.
    pub max_concurrent: usize,
    /// Aborts of one round, or timeouts of all open rounds, in total.
    pub aborts: u8,
    /// Whether a spawning parent may hand one of its tokens to the child.
    pub gift: bool,
    /// Which ids a node may send to.
    pub addresses: Addresses,
    /// How notes reach the tracker.
    pub notes: Notes,
    /// The shell (correct, or a broken variant).
    pub shell: Shell,
    /// The only `Instant` the machines ever see (rounds start at it; a timeout is later).
    pub now: Instant,
}

impl Config {
    /// A world of `nodes` static nodes, token `i` at node `i % nodes`, nothing else.
    pub fn new(nodes: usize, tokens: usize) -> Config {
        Config {
            initial_nodes: nodes,
            tokens: (0..tokens).map(|i| (i % nodes) as u8).collect(),
            max_nodes: nodes,
            sends: 0,
            child_spawns: 0,
            outside_spawns: 0,
            stops: 0,
            panics: 0,
            rounds: 1,
            max_concurrent: 2,
            aborts: 0,
            gift: false,
            addresses: Addresses::Global,
            notes: Notes::Queued,
            shell: Shell::Correct,
            now: Instant::now(),
        }
    }
}

/// One event of the simulated world.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// The tracker starts a round.
    StartRound,
    /// The tracker gives up on an open round.
    Abort(RoundId),
    /// Time passes every open round's deadline.
    Timeout,
    /// The tracker's request to record `round` reaches `node`.
    Start {
        /// Round.
        round: RoundId,
        /// Node.
        node: u8,
    },
    /// A node's application sends a token it holds.
    Send {
        /// Sender.
        from: u8,
        /// Receiver (any existing node, alive or not).
        to: u8,
        /// The token.
        token: Token,
    },
    /// The message carrying this token is delivered.
    Deliver(Token),
    /// The oldest note of this node reaches the tracker.
    Note(u8),
    /// A node spawns a child inside its step, optionally handing it a token.
    SpawnChild {
        /// The parent.
        parent: u8,
        /// A token moved from the parent to the child.
        gift: Option<Token>,
    },
    /// A node is spawned from outside the group.
    SpawnOutside,
    /// A node stops; the tokens it holds are destroyed.
    Stop(u8),
    /// A node panics; the tokens it holds are destroyed.
    Panic(u8),
}

impl Action {
    /// Whether the action is one of the "give up" actions (abort, timeout).
    pub fn is_give_up(self) -> bool {
        matches!(self, Action::Abort(_) | Action::Timeout)
    }

    /// Whether the action only lets the system make progress on what already happened
    /// (deliveries of messages, starts and notes), as opposed to a new event.
    pub fn is_delivery(self) -> bool {
        matches!(
            self,
            Action::Deliver(_) | Action::Start { .. } | Action::Note(_)
        )
    }
}

/// How a node came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Origin {
    /// Present from the start.
    Initial,
    /// Spawned by a node.
    Child,
    /// Spawned from outside.
    Outside,
}

/// The model's own account of a node.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NodeGhost {
    /// Rounds `<= born` were cut before the node existed.
    pub born: RoundId,
    /// Rounds `<= cut` have been cut by this node (or before it was born).
    pub cut: RoundId,
    /// `cut` at the node's death, if dead.
    pub died: Option<RoundId>,
    /// Whether it died by a panic.
    pub panicked: bool,
    /// How it came to be.
    pub origin: Origin,
    /// Whether a round was open when it was spawned.
    pub amid_round: bool,
    /// Whether its `Left`/`Panicked` note reached the tracker.
    pub gone_noted: bool,
}

/// Where a node stands in a round `r`, by the ghost data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// Born after the cut (`r <= born`).
    NotBorn,
    /// Existed at its cut: a member.
    Member,
    /// Died before its cut (its death is its cut): not a member.
    DeadBeforeCut,
    /// Alive and has not cut `r` yet.
    Owes,
}

/// A simulated node.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Node {
    /// The protocol's node machine.
    pub core: NodeCore<AppState, Msg>,
    /// The application: tokens held.
    pub held: Tokens,
    /// Notes on their way to the tracker, oldest first.
    pub notes: VecDeque<NodeOutput<AppState, Msg>>,
    /// The color before the node's last recording (used by [`Shell::StaleColor`]).
    pub stale: RoundId,
    /// Ground truth.
    pub ghost: NodeGhost,
}

impl Node {
    fn new(epoch: RoundId, born: RoundId, origin: Origin) -> Node {
        Node {
            core: NodeCore::new(epoch),
            held: Tokens::default(),
            notes: VecDeque::new(),
            stale: epoch,
            ghost: NodeGhost {
                born,
                cut: born,
                died: None,
                panicked: false,
                origin,
                amid_round: false,
                gone_noted: false,
            },
        }
    }

    /// Whether the node's actor is running.
    pub fn alive(&self) -> bool {
        self.core.life() == Life::Alive
    }

    /// Where the node stands in round `r`.
    pub fn standing(&self, r: RoundId) -> Standing {
        let g = &self.ghost;
        if r <= g.born {
            Standing::NotBorn
        } else if r <= g.cut {
            Standing::Member
        } else if g.died.is_some() {
            Standing::DeadBeforeCut
        } else {
            Standing::Owes
        }
    }
}

/// A message between nodes, in transit.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Transit {
    /// Sender.
    pub from: u8,
    /// Receiver.
    pub to: u8,
    /// The color the shell stamped.
    pub color: RoundId,
    /// The token's hop number.
    pub hop: u8,
    /// Ghost: the sender's cut when it sent (the message is before its cut of rounds `> gs`).
    pub gs: RoundId,
}

/// How a token was destroyed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fate {
    /// Held by this node when it stopped or panicked.
    DiedWith(u8),
    /// Dropped by this node's tombstone; sent when the sender's cut was `gs`.
    Dropped {
        /// The tombstone.
        at: u8,
        /// The sender's cut at the send.
        gs: RoundId,
    },
}

/// Properties of a completed round, kept so that `sometimes` properties can see them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Seen {
    /// At least one message in flight.
    pub flight: bool,
    /// A member was spawned by a node.
    pub child: bool,
    /// A member was spawned from outside while a round was open.
    pub outsider: bool,
    /// A node stopped before its cut (it is not a member).
    pub stopped: bool,
    /// A message to a tombstone was in flight (the tombstone recorded it as a member).
    pub to_tombstone: bool,
}

/// Why a round failed (legitimately).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Why {
    /// Aborted.
    Aborted,
    /// Timed out.
    Timeout,
    /// A member panicked before recording it.
    Panic,
    /// A message reached a node born after the cut through an address that travelled outside
    /// the group's messages ([`Addresses::Global`] only).
    Leak,
    /// Any failure the checks reject.
    Wrong,
}

/// What became of a round.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Started, not finished.
    Open,
    /// Completed.
    Completed(Seen),
    /// Failed.
    Failed(Why),
}

/// The model's own account of a round. Everything but the outcome is dropped when the round
/// closes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RoundGhost {
    /// What became of it.
    pub outcome: Outcome,
    /// Per node that cut it: the tokens it held at its cut.
    pub cuts: BTreeMap<u8, Tokens>,
    /// Messages delivered after their receiver's cut and sent before their sender's.
    pub crossing: BTreeSet<(Msg, u8, u8)>,
    /// Messages delivered to a live node before its cut, sent after their sender's cut.
    pub backwards: BTreeSet<(Msg, u8, u8)>,
    /// A member panicked before recording it (it must not complete).
    pub must_fail: Option<u8>,
    /// Aborted by [`Action::Abort`].
    pub aborted: bool,
    /// Timed out by [`Action::Timeout`].
    pub timed_out: bool,
}

impl RoundGhost {
    fn open() -> RoundGhost {
        RoundGhost {
            outcome: Outcome::Open,
            cuts: BTreeMap::new(),
            crossing: BTreeSet::new(),
            backwards: BTreeSet::new(),
            must_fail: None,
            aborted: false,
            timed_out: false,
        }
    }

    fn close(&mut self, outcome: Outcome) {
        *self = RoundGhost {
            outcome,
            ..RoundGhost::open()
        };
    }

    /// Whether the round is still open.
    pub fn is_open(&self) -> bool {
        self.outcome == Outcome::Open
    }
}

/// The property a violation breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Check {
    /// A completed round is not a consistent cut (membership, states, causality).
    Cut,
    /// A completed round's in-flight messages are not exactly the messages in flight.
    InFlight,
    /// A completed round does not conserve the tokens.
    Conservation,
    /// A round failed for no good reason, or completed though it must fail.
    Failure,
    /// A closed round came back, was closed twice, or a hint was wrong.
    Closed,
}

/// Budgets left.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Budget {
    /// Token sends.
    pub sends: u8,
    /// Child spawns.
    pub child_spawns: u8,
    /// Outside spawns.
    pub outside_spawns: u8,
    /// Stops.
    pub stops: u8,
    /// Panics.
    pub panics: u8,
    /// Round starts.
    pub rounds: u8,
    /// Aborts and timeouts.
    pub aborts: u8,
}

/// The whole simulated world: the model's state.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct World {
    /// Whether addresses may leak through the environment ([`Addresses::Global`]): only then
    /// may a round fail with [`RoundFailure::UntrackedAddress`].
    pub leaky: bool,
    /// Nodes by id (ids are dense, never reused).
    pub nodes: Vec<Node>,
    /// The protocol's round tracker.
    pub tracker: RoundTracker<AppState, Msg>,
    /// Messages between nodes in transit, by token.
    pub transit: BTreeMap<Token, Transit>,
    /// Start requests in transit.
    pub starts: BTreeSet<(RoundId, u8)>,
    /// Budgets left.
    pub left: Budget,
    /// The latest `Closed` watermark the tracker emitted.
    pub hint: RoundId,
    /// Ghost: per round (index `r - 1`) its account.
    pub rounds: Vec<RoundGhost>,
    /// Ghost: per token, how many times it was sent.
    pub hops: Vec<u8>,
    /// Ghost: per token, how it was destroyed.
    pub fate: Vec<Option<Fate>>,
    /// Violations found, with an explanation. A world with violations is terminal.
    pub errors: Vec<(Check, String)>,
    /// Whether [`Node::stale`] is kept (only [`Shell::StaleColor`] needs it; elsewhere it
    /// would only multiply states).
    pub track_stale: bool,
}

const TIMEOUT: Duration = Duration::from_secs(1);

impl World {
    /// The initial world of `cfg`: its initial nodes registered from outside, tokens placed.
    pub fn new(cfg: &Config) -> World {
        assert!(cfg.initial_nodes >= 1 && cfg.initial_nodes <= cfg.max_nodes);
        assert!(cfg.max_nodes <= u8::MAX as usize && cfg.tokens.len() <= 64);
        let mut w = World {
            leaky: cfg.addresses == Addresses::Global,
            nodes: Vec::new(),
            tracker: RoundTracker::new(TrackerConfig {
                max_concurrent: cfg.max_concurrent,
                first_round: 1,
            }),
            transit: BTreeMap::new(),
            starts: BTreeSet::new(),
            left: Budget {
                sends: cfg.sends,
                child_spawns: cfg.child_spawns,
                outside_spawns: cfg.outside_spawns,
                stops: cfg.stops,
                panics: cfg.panics,
                rounds: cfg.rounds,
                aborts: cfg.aborts,
            },
            hint: 0,
            rounds: Vec::new(),
            hops: vec![0; cfg.tokens.len()],
            fate: vec![None; cfg.tokens.len()],
            errors: Vec::new(),
            track_stale: cfg.shell == Shell::StaleColor,
        };
        for _ in 0..cfg.initial_nodes {
            w.spawn_outside(Origin::Initial);
        }
        for (t, &holder) in cfg.tokens.iter().enumerate() {
            w.nodes[holder as usize].held.insert(t as Token);
        }
        w
    }

    fn error(&mut self, check: Check, msg: String) {
        self.errors.push((check, msg));
    }

    /// Whether a violation of `check` was found.
    pub fn violates(&self, check: Check) -> bool {
        self.errors.iter().any(|(c, _)| *c == check)
    }

    /// Rounds started so far.
    pub fn started(&self) -> RoundId {
        self.rounds.len() as RoundId
    }

    fn ghost(&self, r: RoundId) -> Option<&RoundGhost> {
        (r >= 1).then(|| self.rounds.get(r as usize - 1)).flatten()
    }

    fn ghost_mut(&mut self, r: RoundId) -> Option<&mut RoundGhost> {
        (r >= 1)
            .then(|| self.rounds.get_mut(r as usize - 1))
            .flatten()
    }

    /// Rounds started and not closed, by the ghost account.
    pub fn open_rounds(&self) -> impl Iterator<Item = RoundId> + '_ {
        self.rounds
            .iter()
            .enumerate()
            .filter(|(_, g)| g.is_open())
            .map(|(i, _)| i as RoundId + 1)
    }

    /// Completed rounds.
    pub fn completed(&self) -> usize {
        self.rounds
            .iter()
            .filter(|g| matches!(g.outcome, Outcome::Completed(_)))
            .count()
    }

    /// Whether some completed round satisfies `f`.
    pub fn some_completed(&self, f: impl Fn(&Seen) -> bool) -> bool {
        self.rounds.iter().any(|g| match &g.outcome {
            Outcome::Completed(s) => f(s),
            _ => false,
        })
    }

    /// Every event possible now, in a deterministic order. Nothing is possible once a
    /// violation was found.
    pub fn enabled(&self, cfg: &Config, out: &mut Vec<Action>) {
        if !self.errors.is_empty() {
            return;
        }
        let open = self.open_rounds().count();
        if self.left.rounds > 0 && open < cfg.max_concurrent {
            out.push(Action::StartRound);
        }
        if self.left.aborts > 0 && open > 0 {
            out.extend(self.open_rounds().map(Action::Abort));
            out.push(Action::Timeout);
        }
        out.extend(
            self.starts
                .iter()
                .map(|&(round, node)| Action::Start { round, node }),
        );
        out.extend(self.transit.keys().map(|&t| Action::Deliver(t)));
        for (i, n) in self.nodes.iter().enumerate() {
            if !n.notes.is_empty() {
                out.push(Action::Note(i as u8));
            }
        }
        let can_spawn = self.nodes.len() < cfg.max_nodes;
        for (i, n) in self.nodes.iter().enumerate() {
            if !n.alive() {
                continue;
            }
            let from = i as u8;
            // The application always parts with the smallest token it holds: tokens are all
            // alike to the protocol, so choosing among them would only multiply states.
            let first = n.held.first();
            if let Some(token) = first.filter(|_| self.left.sends > 0) {
                for (j, m) in self.nodes.iter().enumerate() {
                    let known = match cfg.addresses {
                        Addresses::Global => true,
                        Addresses::Causal => {
                            m.ghost.origin != Origin::Child || n.ghost.cut >= m.ghost.born
                        }
                    };
                    if known {
                        out.push(Action::Send {
                            from,
                            to: j as u8,
                            token,
                        });
                    }
                }
            }
            if self.left.child_spawns > 0 && can_spawn {
                out.push(Action::SpawnChild {
                    parent: from,
                    gift: None,
                });
                if cfg.gift && first.is_some() {
                    out.push(Action::SpawnChild {
                        parent: from,
                        gift: first,
                    });
                }
            }
            if self.left.stops > 0 {
                out.push(Action::Stop(from));
            }
            if self.left.panics > 0 {
                out.push(Action::Panic(from));
            }
        }
        if self.left.outside_spawns > 0 && can_spawn {
            out.push(Action::SpawnOutside);
        }
    }

    /// Whether nothing but an abort or a timeout can happen.
    pub fn quiescent(&self, cfg: &Config) -> bool {
        let mut v = Vec::new();
        self.enabled(cfg, &mut v);
        v.iter().all(|a| a.is_give_up())
    }

    /// Carries out `action` (which must be enabled) and everything the machines emit.
    pub fn apply(&mut self, cfg: &Config, action: Action) {
        self.step(cfg, action);
        self.settle(cfg);
    }

    /// Delivers at once every start request that can have no effect: to a tombstone, or of a
    /// round the node has already recorded. The protocol ignores these (checked here), so
    /// delivering them later would only multiply the interleavings to explore.
    fn settle(&mut self, cfg: &Config) {
        let void: Vec<(RoundId, u8)> = self
            .starts
            .iter()
            .filter(|&&(r, i)| {
                let n = &self.nodes[i as usize];
                !n.alive() || n.core.epoch() >= r
            })
            .copied()
            .collect();
        for (round, node) in void {
            self.starts.remove(&(round, node));
            let before = self.nodes[node as usize].core.epoch();
            self.record_if(node, |core, state| core.handle_start(round, state));
            let n = &mut self.nodes[node as usize];
            if n.core.epoch() != before || n.core.clone().poll().is_some() {
                self.error(
                    Check::Cut,
                    format!("node {node}: a start of round {round} it had recorded had an effect"),
                );
            }
            self.drain(cfg, node);
        }
    }

    fn step(&mut self, cfg: &Config, action: Action) {
        match action {
            Action::StartRound => {
                self.left.rounds -= 1;
                match self.tracker.handle_start(cfg.now, TIMEOUT) {
                    Ok(r) if r == self.started() + 1 => self.rounds.push(RoundGhost::open()),
                    other => self.error(
                        Check::Closed,
                        format!(
                            "start of round {} with {} open (cap {}) gave {other:?}",
                            self.started() + 1,
                            self.open_rounds().count(),
                            cfg.max_concurrent
                        ),
                    ),
                }
                self.process();
            }
            Action::Abort(r) => {
                self.left.aborts -= 1;
                if let Some(g) = self.ghost_mut(r) {
                    g.aborted = true;
                }
                self.tracker.handle_abort(r);
                self.process();
            }
            Action::Timeout => {
                self.left.aborts -= 1;
                for g in self.rounds.iter_mut().filter(|g| g.is_open()) {
                    g.timed_out = true;
                }
                self.tracker.handle_timeout(cfg.now + 2 * TIMEOUT);
                self.process();
            }
            Action::Start { round, node } => {
                self.starts.remove(&(round, node));
                self.record_if(node, |core, state| core.handle_start(round, state));
                self.drain(cfg, node);
            }
            Action::Send { from, to, token } => self.send(cfg, from, to, token),
            Action::Deliver(token) => self.deliver(cfg, token),
            Action::Note(i) => self.note(i),
            Action::SpawnChild { parent, gift } => {
                self.left.child_spawns -= 1;
                let id = self.nodes.len() as u8;
                let p = &self.nodes[parent as usize];
                let arg = match cfg.shell {
                    Shell::ChildEpochZero => 0,
                    _ => p.core.color(),
                };
                let born = p.ghost.cut;
                let Some(epoch) = self.tracker.register_child(NodeId(id as u64), arg) else {
                    self.error(
                        Check::Cut,
                        format!("register_child of new node {id} refused"),
                    );
                    return;
                };
                let mut child = Node::new(epoch, born, Origin::Child);
                if let Some(t) = gift {
                    self.nodes[parent as usize].held.remove(t);
                    child.held.insert(t);
                }
                self.nodes.push(child);
                self.process();
            }
            Action::SpawnOutside => {
                self.left.outside_spawns -= 1;
                self.spawn_outside(Origin::Outside);
            }
            Action::Stop(i) => {
                self.left.stops -= 1;
                self.die(cfg, i, false);
            }
            Action::Panic(i) => {
                self.left.panics -= 1;
                self.die(cfg, i, true);
            }
        }
    }

    fn spawn_outside(&mut self, origin: Origin) {
        let id = self.nodes.len() as u8;
        // Ghost: it exists at the cut of every round not closed yet.
        let born = self
            .open_rounds()
            .next()
            .map_or(self.started(), |first| first - 1);
        let Some(epoch) = self.tracker.register_outside(NodeId(id as u64)) else {
            self.error(
                Check::Cut,
                format!("register_outside of new node {id} refused"),
            );
            return;
        };
        let mut node = Node::new(epoch, born, origin);
        node.ghost.amid_round = self.open_rounds().next().is_some();
        self.nodes.push(node);
        self.process();
    }

    /// Calls `f` on node `i`'s core with a `state` closure that records the application, and
    /// updates the ghost cut if the core's epoch moved. Returns what `f` returned.
    fn record_if<R>(
        &mut self,
        i: u8,
        f: impl FnOnce(&mut NodeCore<AppState, Msg>, &mut dyn FnMut() -> Result<AppState, String>) -> R,
    ) -> R {
        let n = &mut self.nodes[i as usize];
        let before = n.core.epoch();
        let held = n.held;
        let prior = n.ghost.cut;
        let called = Cell::new(false);
        let mut state = || {
            called.set(true);
            Ok(AppState {
                node: i,
                held,
                prior,
            })
        };
        let result = f(&mut n.core, &mut state);
        let after = n.core.epoch();
        if called.get() != (after > before) || after < before {
            self.error(
                Check::Cut,
                format!(
                    "node {i}: epoch {before} -> {after}, state recorded: {}",
                    called.get()
                ),
            );
        }
        if after > before {
            let n = &mut self.nodes[i as usize];
            if self.track_stale {
                n.stale = before;
            }
            let from = n.ghost.cut.max(before);
            n.ghost.cut = n.ghost.cut.max(after);
            for r in from + 1..=after {
                if let Some(g) = self.ghost_mut(r).filter(|g| g.is_open()) {
                    g.cuts.insert(i, held);
                }
            }
        }
        result
    }

    /// Moves node `i`'s outputs to its note queue (a broken shell may lose some).
    fn drain(&mut self, cfg: &Config, i: u8) {
        let n = &mut self.nodes[i as usize];
        while let Some(o) = n.core.poll() {
            if cfg.shell == Shell::SkipLateCopy
                && matches!(&o, NodeOutput::Late(l) if l.alive && l.payload.is_some())
            {
                continue;
            }
            n.notes.push_back(o);
        }
        if cfg.notes == Notes::Immediate {
            while !self.nodes[i as usize].notes.is_empty() {
                self.note(i);
            }
        }
    }

    fn send(&mut self, cfg: &Config, from: u8, to: u8, token: Token) {
        self.left.sends -= 1;
        let n = &mut self.nodes[from as usize];
        let color = match cfg.shell {
            Shell::StaleColor => n.stale,
            _ => n.core.color(),
        };
        n.held.remove(token);
        n.core.handle_sent(1);
        let gs = n.ghost.cut;
        let hop = self.hops[token as usize];
        self.hops[token as usize] += 1;
        self.transit.insert(
            token,
            Transit {
                from,
                to,
                color,
                hop,
                gs,
            },
        );
    }

    fn deliver(&mut self, cfg: &Config, token: Token) {
        let m = self.transit.remove(&token).expect("enabled delivery");
        let msg = Msg { token, hop: m.hop };
        let d = m.to;
        let alive = self.nodes[d as usize].alive();
        {
            // The shell refreshes the hint before a message of a lower color.
            let hint = self.hint;
            let core = &mut self.nodes[d as usize].core;
            if m.color < core.color() {
                core.handle_closed_through(hint);
            }
        }
        let delivered = self.record_if(d, |core, state| {
            core.handle_message(m.color, NodeId(m.from as u64), || Ok(msg), state)
        });
        if delivered != alive {
            self.error(
                Check::Cut,
                format!("node {d} (alive: {alive}) answered deliver={delivered}"),
            );
        }
        if delivered {
            self.nodes[d as usize].held.insert(token);
        } else {
            self.fate[token as usize] = Some(Fate::Dropped { at: d, gs: m.gs });
        }
        let gd = self.nodes[d as usize].ghost.cut;
        let open: Vec<RoundId> = self.open_rounds().collect();
        for r in open {
            let g = self.ghost_mut(r).expect("open round");
            if m.gs < r && r <= gd {
                g.crossing.insert((msg, m.from, d));
            } else if alive && gd < r && r <= m.gs {
                g.backwards.insert((msg, m.from, d));
            }
        }
        self.drain(cfg, d);
    }

    fn die(&mut self, cfg: &Config, i: u8, panic: bool) {
        let n = &mut self.nodes[i as usize];
        let held = std::mem::take(&mut n.held);
        if panic {
            n.core.handle_panic("boom".into());
        } else {
            n.core.handle_stop();
        }
        n.ghost.died = Some(n.ghost.cut);
        n.ghost.panicked = panic;
        let (born, cut) = (n.ghost.born, n.ghost.cut);
        for t in held.iter() {
            self.fate[t as usize] = Some(Fate::DiedWith(i));
        }
        if panic {
            let owed: Vec<RoundId> = self
                .open_rounds()
                .filter(|&r| born < r && cut < r)
                .collect();
            for r in owed {
                self.ghost_mut(r).expect("open round").must_fail = Some(i);
            }
        }
        self.drain(cfg, i);
    }

    fn note(&mut self, i: u8) {
        let id = NodeId(i as u64);
        let note = self.nodes[i as usize]
            .notes
            .pop_front()
            .expect("enabled note");
        if matches!(note, NodeOutput::Left { .. } | NodeOutput::Panicked { .. }) {
            self.nodes[i as usize].ghost.gone_noted = true;
        }
        self.tracker.handle_note(id, note);
        self.process();
    }

    /// Handles every output of the tracker, as the shell does.
    fn process(&mut self) {
        while let Some(out) = self.tracker.poll() {
            match out {
                TrackerOutput::StartAll { round } => {
                    for (i, n) in self.nodes.iter().enumerate() {
                        if n.alive() {
                            self.starts.insert((round, i as u8));
                        }
                    }
                }
                TrackerOutput::StartNode { node, round } => {
                    if self.nodes[node.index()].alive() {
                        self.starts.insert((round, node.0 as u8));
                    }
                }
                TrackerOutput::Closed { through } => {
                    let still_open: Vec<RoundId> =
                        self.open_rounds().filter(|&r| r <= through).collect();
                    if through > self.started() || !still_open.is_empty() {
                        self.error(
                            Check::Closed,
                            format!(
                                "hint: closed through {through}, but {} started and {still_open:?} open",
                                self.started()
                            ),
                        );
                    }
                    self.hint = self.hint.max(through);
                }
                TrackerOutput::Completed(c) => {
                    let r = c.round;
                    if !self.ghost(r).is_some_and(RoundGhost::is_open) {
                        self.error(
                            Check::Closed,
                            format!("round {r} completed, but it is not open"),
                        );
                        continue;
                    }
                    let seen = self.check_completed(&c);
                    self.ghost_mut(r)
                        .expect("open")
                        .close(Outcome::Completed(seen));
                }
                TrackerOutput::Failed { round, failure } => {
                    let Some(g) = self.ghost(round).filter(|g| g.is_open()) else {
                        self.error(
                            Check::Closed,
                            format!("round {round} failed ({failure:?}), but it is not open"),
                        );
                        continue;
                    };
                    let why = match &failure {
                        RoundFailure::Aborted if g.aborted => Why::Aborted,
                        RoundFailure::Timeout { .. } if g.timed_out => Why::Timeout,
                        RoundFailure::NodePanicked { node, .. }
                            if self.nodes.get(node.index()).is_some_and(|n| {
                                n.ghost.panicked && n.standing(round) == Standing::DeadBeforeCut
                            }) =>
                        {
                            Why::Panic
                        }
                        RoundFailure::UntrackedAddress { receiver, .. }
                            if self.leaky
                                && self
                                    .nodes
                                    .get(receiver.index())
                                    .is_some_and(|n| n.standing(round) == Standing::NotBorn) =>
                        {
                            Why::Leak
                        }
                        _ => Why::Wrong,
                    };
                    if why == Why::Wrong {
                        self.error(
                            Check::Failure,
                            format!("round {round} failed for no good reason: {failure:?}"),
                        );
                    }
                    self.ghost_mut(round)
                        .expect("open")
                        .close(Outcome::Failed(why));
                }
            }
        }
    }

    /// The checks of a completed round against the ghost account (see the module docs).
    fn check_completed(&mut self, c: &CompletedRound<AppState, Msg>) -> Seen {
        let r = c.round;
        let g = self.ghost(r).expect("open round").clone();
        let mut errs: Vec<(Check, String)> = Vec::new();
        let mut seen = Seen {
            flight: !c.in_flight.is_empty(),
            ..Seen::default()
        };

        if let Some(n) = g.must_fail {
            errs.push((
                Check::Failure,
                format!("round {r} completed, though node {n} panicked before recording it"),
            ));
        }

        // 1. Membership and recorded states.
        let standing: Vec<Standing> = self.nodes.iter().map(|n| n.standing(r)).collect();
        let expected: BTreeSet<u8> = (0..self.nodes.len() as u8)
            .filter(|&i| standing[i as usize] == Standing::Member)
            .collect();
        for (i, s) in standing.iter().enumerate() {
            match s {
                Standing::Owes => errs.push((
                    Check::Cut,
                    format!("round {r} completed while live node {i} had not recorded it"),
                )),
                Standing::DeadBeforeCut if !self.nodes[i].ghost.panicked => seen.stopped = true,
                Standing::Member => match self.nodes[i].ghost.origin {
                    Origin::Child => seen.child = true,
                    Origin::Outside if self.nodes[i].ghost.amid_round => seen.outsider = true,
                    _ => {}
                },
                _ => {}
            }
        }
        let mut recorded = BTreeSet::new();
        let mut snapshot_tokens: Vec<Token> = Vec::new();
        for (id, rec) in &c.records {
            let i = id.0 as u8;
            if !recorded.insert(i) {
                errs.push((Check::Cut, format!("round {r}: node {i} recorded twice")));
            }
            if !(rec.first <= r && r <= rec.last) {
                errs.push((
                    Check::Cut,
                    format!(
                        "round {r}: record of node {i} covers {}..={}",
                        rec.first, rec.last
                    ),
                ));
            }
            match &rec.state {
                Ok(s) => {
                    snapshot_tokens.extend(s.held.iter());
                    let want = g.cuts.get(&i);
                    if s.node != i || s.prior >= r || want != Some(&s.held) {
                        errs.push((
                            Check::Cut,
                            format!(
                                "round {r}: node {i}'s record {s:?} is not its state at its cut ({want:?})"
                            ),
                        ));
                    }
                }
                Err(e) => errs.push((Check::Cut, format!("round {r}: node {i} failed: {e}"))),
            }
        }
        if recorded != expected {
            let describe = |set: &BTreeSet<u8>| {
                set.iter()
                    .map(|&i| {
                        let n = &self.nodes[i as usize];
                        format!("{i} ({:?}, {:?})", standing[i as usize], n.ghost)
                    })
                    .collect::<Vec<_>>()
            };
            errs.push((
                Check::Cut,
                format!(
                    "round {r}: members recorded {recorded:?}, existing at their cut {expected:?}; \
                     extra {:?}, missing {:?}",
                    describe(&recorded.difference(&expected).copied().collect()),
                    describe(&expected.difference(&recorded).copied().collect()),
                ),
            ));
        }
        for (msg, from, to) in &g.backwards {
            errs.push((
                Check::Cut,
                format!(
                    "round {r}: {msg:?} from {from} was received by {to} before its cut but sent after {from}'s cut"
                ),
            ));
        }

        // 2. In flight: sent before the sender's cut, received after the receiver's (or not
        // yet), to a member.
        let member = |i: u8| standing[i as usize] == Standing::Member;
        let mut want: Vec<(Msg, u8, u8)> = g
            .crossing
            .iter()
            .filter(|(_, _, to)| member(*to))
            .copied()
            .collect();
        want.extend(
            self.transit
                .iter()
                .filter(|(_, m)| m.gs < r && member(m.to))
                .map(|(&token, m)| (Msg { token, hop: m.hop }, m.from, m.to)),
        );
        want.sort();
        let mut got: Vec<(Msg, u8, u8)> = c
            .in_flight
            .iter()
            .map(|(f, t, msg)| (*msg, f.0 as u8, t.0 as u8))
            .collect();
        got.sort();
        if got != want {
            errs.push((
                Check::InFlight,
                format!("round {r}: in flight {got:?}, expected {want:?}"),
            ));
        }
        seen.to_tombstone = want
            .iter()
            .any(|(_, _, to)| !self.nodes[*to as usize].alive());
        snapshot_tokens.extend(c.in_flight.iter().map(|(_, _, m)| m.token));

        // 3. Conservation: every token that existed at the cut, exactly once.
        let dead_before_cut = |i: u8| standing[i as usize] == Standing::DeadBeforeCut;
        let existed: Vec<Token> = (0..self.fate.len() as Token)
            .filter(|&t| match self.fate[t as usize] {
                Some(Fate::DiedWith(n)) => !dead_before_cut(n),
                Some(Fate::Dropped { at, gs }) => !(dead_before_cut(at) && gs < r),
                None => match self.transit.get(&t) {
                    Some(m) => !(dead_before_cut(m.to) && m.gs < r),
                    None => true,
                },
            })
            .collect();
        snapshot_tokens.sort_unstable();
        if snapshot_tokens != existed {
            let mut detail = String::new();
            for &t in &existed {
                if !snapshot_tokens.contains(&t) {
                    let _ = write!(detail, " token {t} missing ({});", self.whereabouts(t));
                }
            }
            for w in snapshot_tokens.windows(2) {
                if w[0] == w[1] {
                    let _ = write!(detail, " token {} twice;", w[0]);
                }
            }
            for &t in &snapshot_tokens {
                if !existed.contains(&t) {
                    let _ = write!(detail, " token {t} was gone ({});", self.whereabouts(t));
                }
            }
            errs.push((
                Check::Conservation,
                format!(
                    "round {r}: recorded tokens {snapshot_tokens:?}, existing at the cut {existed:?}:{detail}"
                ),
            ));
        }
        self.errors.extend(errs);
        seen
    }

    /// Where a token is now, for error messages.
    pub fn whereabouts(&self, t: Token) -> String {
        if let Some(f) = self.fate[t as usize] {
            return format!("{f:?}");
        }
        if let Some(m) = self.transit.get(&t) {
            return format!("in transit {m:?}");
        }
        match self.nodes.iter().position(|n| n.held.contains(t)) {
            Some(i) => format!("held by node {i} ({:?})", self.nodes[i].ghost),
            None => "nowhere".into(),
        }
    }

    /// Structural invariants that hold after every step ("closed stays closed", bounded
    /// memory). Returns a description of the first one broken.
    pub fn structure(&self, cfg: &Config) -> Result<(), String> {
        let open: Vec<RoundId> = self.tracker.open_rounds().collect();
        let ghost_open: Vec<RoundId> = self.open_rounds().collect();
        if open != ghost_open {
            return Err(format!(
                "tracker has {open:?} open, the model {ghost_open:?}"
            ));
        }
        let closed = self.tracker.closed_through();
        if let Some(&r) = open.iter().find(|&&r| r <= closed) {
            return Err(format!("round {r} open, yet closed through {closed}"));
        }
        if closed < self.hint {
            return Err(format!("closed through {closed} < the hint {}", self.hint));
        }
        let members = self.nodes.iter().filter(|n| !n.ghost.gone_noted).count();
        if self.tracker.members() != members {
            return Err(format!(
                "tracker keeps {} members, {members} nodes are not known to be gone",
                self.tracker.members()
            ));
        }
        if open.len() > cfg.max_concurrent {
            return Err(format!(
                "{} rounds open, cap {}",
                open.len(),
                cfg.max_concurrent
            ));
        }
        for (i, n) in self.nodes.iter().enumerate() {
            if n.core.clone().poll().is_some() {
                return Err(format!("node {i} has undrained outputs"));
            }
            if n.ghost.died.is_some() && n.ghost.died != Some(n.ghost.cut) {
                return Err(format!("node {i} recorded after its death: {:?}", n.ghost));
            }
        }
        Ok(())
    }

    /// A one-line summary, for traces.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        for (i, n) in self.nodes.iter().enumerate() {
            let _ = write!(
                s,
                "n{i}[e{} {:?} held {:?} notes {}] ",
                n.core.epoch(),
                n.core.life(),
                n.held,
                n.notes.len()
            );
        }
        let _ = write!(
            s,
            "transit {:?} starts {:?} rounds {:?}",
            self.transit.keys().collect::<Vec<_>>(),
            self.starts,
            self.rounds.iter().map(|g| g.outcome).collect::<Vec<_>>()
        );
        s
    }
}

/// Formats a sequence of actions from the initial world of `cfg`, replaying it to show the
/// world after each step and the violations at the end.
pub fn trace(cfg: &Config, actions: &[Action]) -> String {
    let mut w = World::new(cfg);
    let mut s = format!("  start: {}\n", w.summary());
    for (k, &a) in actions.iter().enumerate() {
        w.apply(cfg, a);
        let _ = writeln!(s, "  {:>3}. {a:?}\n       -> {}", k + 1, w.summary());
    }
    for (c, e) in &w.errors {
        let _ = writeln!(s, "  VIOLATION {c:?}: {e}");
    }
    if let Err(e) = w.structure(cfg) {
        let _ = writeln!(s, "  STRUCTURE: {e}");
    }
    s
}
