//! Dining philosophers on actix-snapshot, for `examples/deadlock.rs` and
//! `tests/test_deadlock.rs`.
//!
//! Philosophers `P0..Pn` and forks `F0..Fn` are nodes; each fork is a tiny lock manager.
//! Philosopher `i` needs forks `i` (left) and `i+1 mod n` (right): it thinks, asks for its
//! first fork, holds it a moment, asks for the second, eats, releases both, and again.
//!
//! - `Order::LeftFirst`: everybody takes the left fork first. When all philosophers hold
//!   their left fork at once, the system is stuck for ever: a real deadlock.
//! - `Order::Ordered`: forks are taken in increasing index (resource ordering); this can
//!   never deadlock.
//!
//! Waits reported through `#[snapshot(waits_for = ..)]`:
//! - a philosopher that asked for a fork and has not been granted it waits for that fork;
//! - a fork with philosophers queued waits for its holder (to release it).
//!
//! Each actor keeps its own books (phase, forks held, meals, queue), so a test can check a
//! reported deadlock against the actors' states, independently of the wait-for graph.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::time::Duration;

use actix::{Actor, AsyncContext, Context, Handler, Message};
use actix_snapshot::{NodeId, Out, Snapshot, SnapshotGroup};
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

/// In which order philosophers take their forks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Left fork first: deadlocks sooner or later.
    LeftFirst,
    /// Lower-numbered fork first: never deadlocks.
    Ordered,
}

/// Philosopher to fork.
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "()")]
pub enum ToFork {
    /// Philosopher `phil` asks for the fork.
    Acquire { phil: u32 },
    /// Philosopher `phil` puts the fork back.
    Release { phil: u32 },
}

/// Fork to philosopher: the fork is yours.
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "()")]
pub struct Granted {
    pub fork: u32,
}

/// What a philosopher is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    Thinking,
    /// Asked for this fork, not granted yet.
    Waiting(u32),
    /// Holds its first fork, about to ask for the second.
    Reaching,
    Eating,
}

/// A philosopher's books.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhilState {
    pub phase: Phase,
    /// Forks held, in the order granted.
    pub holding: Vec<u32>,
    pub meals: u64,
}

/// Timings in milliseconds (ranges are inclusive).
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub think: (u64, u64),
    pub reach: (u64, u64),
    pub eat: (u64, u64),
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            think: (0, 4),
            reach: (0, 3),
            eat: (0, 2),
        }
    }
}

#[derive(Snapshot)]
#[snapshot(state = state, waits_for = Self::waits, messages(Granted))]
pub struct Philosopher {
    me: u32,
    /// Forks in the order this philosopher takes them, with their node ids and channels.
    first: (u32, NodeId),
    second: (u32, NodeId),
    to_first: Out<ToFork>,
    to_second: Out<ToFork>,
    state: PhilState,
    rng: SmallRng,
    timing: Timing,
}

fn pause(rng: &mut SmallRng, (lo, hi): (u64, u64)) -> Duration {
    Duration::from_millis(rng.random_range(lo..=hi))
}

impl Philosopher {
    fn think(&mut self, ctx: &mut Context<Self>) {
        self.state.phase = Phase::Thinking;
        let d = pause(&mut self.rng, self.timing.think);
        ctx.run_later(d, |p, _| {
            p.state.phase = Phase::Waiting(p.first.0);
            p.to_first.send(ToFork::Acquire { phil: p.me });
        });
    }

    fn waits(&self) -> Vec<NodeId> {
        match self.state.phase {
            Phase::Waiting(f) if f == self.first.0 => vec![self.first.1],
            Phase::Waiting(_) => vec![self.second.1],
            _ => Vec::new(),
        }
    }
}

impl Actor for Philosopher {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Context<Self>) {
        self.think(ctx);
    }
}

impl Handler<Granted> for Philosopher {
    type Result = ();
    fn handle(&mut self, g: Granted, ctx: &mut Context<Self>) {
        self.state.holding.push(g.fork);
        if g.fork == self.first.0 {
            self.state.phase = Phase::Reaching;
            let d = pause(&mut self.rng, self.timing.reach);
            ctx.run_later(d, |p, _| {
                p.state.phase = Phase::Waiting(p.second.0);
                p.to_second.send(ToFork::Acquire { phil: p.me });
            });
        } else {
            self.state.phase = Phase::Eating;
            let d = pause(&mut self.rng, self.timing.eat);
            ctx.run_later(d, |p, ctx| {
                p.state.meals += 1;
                p.state.holding.clear();
                p.to_second.send(ToFork::Release { phil: p.me });
                p.to_first.send(ToFork::Release { phil: p.me });
                p.think(ctx);
            });
        }
    }
}

/// A fork's books.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForkState {
    pub holder: Option<u32>,
    pub queue: VecDeque<u32>,
    pub grants: u64,
}

#[derive(Snapshot)]
#[snapshot(state = state, waits_for = Self::waits, messages(ToFork))]
pub struct Fork {
    /// The two philosophers that use this fork: index, node id, channel to it.
    users: Vec<(u32, NodeId, Out<Granted>)>,
    me: u32,
    state: ForkState,
}

impl Fork {
    fn grant(&mut self, phil: u32) {
        self.state.holder = Some(phil);
        self.state.grants += 1;
        if let Some((_, _, out)) = self.users.iter_mut().find(|(p, _, _)| *p == phil) {
            out.send(Granted { fork: self.me });
        }
    }

    fn waits(&self) -> Vec<NodeId> {
        match self.state.holder {
            Some(h) if !self.state.queue.is_empty() => self
                .users
                .iter()
                .filter(|(p, _, _)| *p == h)
                .map(|(_, id, _)| *id)
                .collect(),
            _ => Vec::new(),
        }
    }
}

impl Actor for Fork {
    type Context = Context<Self>;
}

impl Handler<ToFork> for Fork {
    type Result = ();
    fn handle(&mut self, m: ToFork, _ctx: &mut Context<Self>) {
        match m {
            ToFork::Acquire { phil } => {
                if self.state.holder.is_none() {
                    self.grant(phil);
                } else {
                    self.state.queue.push_back(phil);
                }
            }
            ToFork::Release { phil } => {
                if self.state.holder == Some(phil) {
                    self.state.holder = None;
                    if let Some(next) = self.state.queue.pop_front() {
                        self.grant(next);
                    }
                }
            }
        }
    }
}

/// Node names.
pub fn phil_name(i: u32) -> String {
    format!("P{i}")
}
pub fn fork_name(i: u32) -> String {
    format!("F{i}")
}

/// Starts `n` philosophers and `n` forks on `arbiters` arbiters (0: the current one).
pub fn start(n: u32, order: Order, seed: u64, timing: Timing, arbiters: usize) -> SnapshotGroup {
    assert!(n >= 2, "need at least two philosophers");
    let mut b = SnapshotGroup::builder();
    b.arbiters(arbiters);
    let phils: Vec<_> = (0..n)
        .map(|i| b.node::<Philosopher>(phil_name(i)))
        .collect();
    let forks: Vec<_> = (0..n).map(|i| b.node::<Fork>(fork_name(i))).collect();
    let mut fork_users: Vec<Vec<(u32, NodeId, Out<Granted>)>> =
        (0..n).map(|_| Vec::new()).collect();
    let mut phil_ctor = Vec::new();
    for i in 0..n {
        let (left, right) = (i, (i + 1) % n);
        let (first, second) = match order {
            Order::LeftFirst => (left, right),
            Order::Ordered => (left.min(right), left.max(right)),
        };
        let to_first = b.channel(phils[i as usize], forks[first as usize]);
        let to_second = b.channel(phils[i as usize], forks[second as usize]);
        for f in [first, second] {
            let out = b.channel(forks[f as usize], phils[i as usize]);
            fork_users[f as usize].push((i, phils[i as usize].id(), out));
        }
        phil_ctor.push((
            (first, forks[first as usize].id()),
            (second, forks[second as usize].id()),
            to_first,
            to_second,
        ));
    }
    for (i, (first, second, to_first, to_second)) in phil_ctor.into_iter().enumerate() {
        let rng_seed = seed.wrapping_mul(1_000_003).wrapping_add(i as u64);
        b.actor(phils[i], move |st: Option<PhilState>| Philosopher {
            me: i as u32,
            first,
            second,
            to_first,
            to_second,
            state: st.unwrap_or(PhilState {
                phase: Phase::Thinking,
                holding: Vec::new(),
                meals: 0,
            }),
            rng: SmallRng::seed_from_u64(rng_seed),
            timing,
        });
    }
    for (i, users) in fork_users.into_iter().enumerate() {
        b.actor(forks[i], move |st: Option<ForkState>| Fork {
            users,
            me: i as u32,
            state: st.unwrap_or(ForkState {
                holder: None,
                queue: VecDeque::new(),
                grants: 0,
            }),
        });
    }
    b.start().expect("valid topology")
}
