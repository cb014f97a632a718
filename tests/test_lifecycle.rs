//! Lifecycle and membership of dynamic groups on real actix: restoring nodes spawned at run
//! time (with addresses in their states and in messages in flight), typed refusals, names,
//! shutdown, the cap on concurrent rounds, memory after many aborted rounds, and what a
//! timeout names. Everything is observed from outside the library: actors count their own
//! constructions, drops, handled messages and recordings in a shared [`Census`]; a timer
//! guard held by each node's actix context tells when that context is gone (a node that
//! stopped leaves a tombstone in the runtime, not an actor); the arbiter each actor was built
//! on is asked whether it still runs.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::ArbiterHandle;
use actix::prelude::*;
use actix_snapshot::{
    BuildError, DecodeError, GlobalSnapshot, GroupBuilder, Ingress, NodeAddr, NodeContext, NodeId,
    Snapshot, SnapshotError, SnapshotGroup, SnapshotOptions, Snapshottable, SpawnError,
};
use futures::FutureExt;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

/// The memory test measures the whole process, so it runs alone; the other tests run
/// together. A two-flag gate rather than a lock, so that no guard is held across an await.
static RUNNING: AtomicUsize = AtomicUsize::new(0);
static ALONE: AtomicBool = AtomicBool::new(false);

/// Held by a test that may run with others.
struct Together;
impl Drop for Together {
    fn drop(&mut self) {
        RUNNING.fetch_sub(1, SeqCst);
    }
}

async fn together() -> Together {
    loop {
        if !ALONE.load(SeqCst) {
            RUNNING.fetch_add(1, SeqCst);
            if !ALONE.load(SeqCst) {
                return Together;
            }
            RUNNING.fetch_sub(1, SeqCst);
        }
        actix::clock::sleep(Duration::from_millis(2)).await;
    }
}

/// Held by the test that runs alone.
struct Alone;
impl Drop for Alone {
    fn drop(&mut self) {
        ALONE.store(false, SeqCst);
    }
}

async fn alone() -> Alone {
    while ALONE.compare_exchange(false, true, SeqCst, SeqCst).is_err() {
        actix::clock::sleep(Duration::from_millis(2)).await;
    }
    let guard = Alone;
    while RUNNING.load(SeqCst) != 0 {
        actix::clock::sleep(Duration::from_millis(2)).await;
    }
    guard
}

// ---------------------------------------------------------------------------------------------
// A probe actor and its census.

/// What the actors of one test did, counted by the actors themselves.
#[derive(Default)]
struct Census {
    /// User actors constructed.
    made: AtomicUsize,
    /// User actors dropped.
    dropped: AtomicUsize,
    /// Timer guards installed (one per node whose actor started).
    timers: AtomicUsize,
    /// Timer guards dropped: the node's actix context is gone (it stopped, or was shut down).
    timers_dropped: AtomicUsize,
    /// Messages handled.
    handled: AtomicUsize,
    /// Of those, commands from outside the group (`HubCmd`).
    commands: AtomicUsize,
    /// `snapshot_state` calls.
    recorded: AtomicUsize,
    /// The arbiter each actor was constructed on.
    arbiters: Mutex<Vec<ArbiterHandle>>,
    /// What `spawn_node` returned in handlers.
    spawned: Mutex<Vec<Result<NodeId, SpawnError>>>,
}

impl Census {
    fn new() -> Arc<Census> {
        Arc::new(Census::default())
    }
    fn made(&self) -> usize {
        self.made.load(SeqCst)
    }
    fn dropped(&self) -> usize {
        self.dropped.load(SeqCst)
    }
    fn handled(&self) -> usize {
        self.handled.load(SeqCst)
    }
    fn timers(&self) -> (usize, usize) {
        (self.timers.load(SeqCst), self.timers_dropped.load(SeqCst))
    }
    fn arbiters(&self) -> Vec<ArbiterHandle> {
        self.arbiters.lock().unwrap().clone()
    }
}

/// Dropped with the timer that holds it, that is with its node's actix actor.
struct TimerGuard(Arc<Census>);
impl Drop for TimerGuard {
    fn drop(&mut self) {
        self.0.timers_dropped.fetch_add(1, SeqCst);
    }
}

#[derive(Snapshot)]
#[snapshot(state_type = u64, state_fn = Probe::state, messages(Cmd))]
struct Probe {
    census: Arc<Census>,
    count: u64,
}

fn probe(census: &Arc<Census>) -> impl FnOnce() -> Probe + Send + 'static {
    let census = Arc::clone(census);
    move || Probe::new(census)
}

impl Probe {
    fn new(census: Arc<Census>) -> Probe {
        census.made.fetch_add(1, SeqCst);
        census
            .arbiters
            .lock()
            .unwrap()
            .push(actix::Arbiter::current());
        Probe { census, count: 0 }
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.census.dropped.fetch_add(1, SeqCst);
    }
}

/// Commands from outside (never in flight, so they need not decode).
#[derive(Message, Serialize, Deserialize)]
#[rtype(result = "()")]
enum Cmd {
    Bump,
    Stop,
    Panic,
    /// Spawn a child with that name from the handler.
    Spawn(String),
    /// Spawn a child whose constructor panics.
    SpawnBad(String),
    /// Block this node's thread until the gate opens (at most 60 s).
    Block(#[serde(skip)] Option<Arc<Gate>>),
}

impl Probe {
    fn state(&self) -> u64 {
        self.census.recorded.fetch_add(1, SeqCst);
        self.count
    }
}

impl Actor for Probe {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Context<Self>) {
        guard_timer(&self.census, ctx);
    }
}

impl Handler<Cmd> for Probe {
    type Result = ();
    fn handle(&mut self, cmd: Cmd, ctx: &mut Context<Self>) {
        self.census.handled.fetch_add(1, SeqCst);
        match cmd {
            Cmd::Bump => self.count += 1,
            Cmd::Stop => ctx.stop(),
            Cmd::Panic => panic!("the test asked this probe to panic"),
            Cmd::Spawn(name) => {
                let r = ctx.spawn_node(name, probe(&self.census)).map(|a| a.id());
                self.census.spawned.lock().unwrap().push(r);
            }
            Cmd::SpawnBad(name) => {
                let r = ctx
                    .spawn_node(name, || -> Probe { panic!("a child constructor panics") })
                    .map(|a| a.id());
                self.census.spawned.lock().unwrap().push(r);
            }
            Cmd::Block(gate) => {
                let gate = gate.expect("sent from this process");
                gate.entered.store(true, SeqCst);
                let t0 = Instant::now();
                while !gate.open.load(SeqCst) && t0.elapsed() < Duration::from_secs(60) {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
    }
}

/// Blocks a node's thread (see [`Cmd::Block`]) until opened.
#[derive(Default)]
struct Gate {
    /// The node is blocked.
    entered: AtomicBool,
    open: AtomicBool,
}

impl Gate {
    fn new() -> Arc<Gate> {
        Arc::new(Gate::default())
    }
    fn entered(&self) -> bool {
        self.entered.load(SeqCst)
    }
    fn open(&self) {
        self.open.store(true, SeqCst);
    }
}

/// Waits (yielding to the test's arbiter) until `cond` holds, at most 10 s.
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !cond() {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "never happened: {what}"
        );
        actix::clock::sleep(Duration::from_millis(5)).await;
    }
}

/// Whether an arbiter still takes work (a stopped arbiter's thread has dropped its queue).
fn runs(arbiter: &ArbiterHandle) -> bool {
    arbiter.spawn_fn(|| {})
}

fn names(snap: &GlobalSnapshot) -> Vec<&str> {
    snap.nodes.iter().map(|n| n.name.as_str()).collect()
}

fn ids(snap: &GlobalSnapshot) -> Vec<(u64, &str)> {
    snap.nodes
        .iter()
        .map(|n| (n.id.0, n.name.as_str()))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// A dynamic group with addresses in states and messages: a declared hub (the group's entry
// point, fed through an ingress), kids spawned by the hub from its handler and from outside.

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
struct HubState {
    kids: Vec<NodeAddr<Kid>>,
    /// Who sent each pong, in arrival order.
    pongs: Vec<NodeId>,
}

#[derive(Snapshot)]
#[snapshot(state = st, messages(HubCmd, Pong))]
struct Hub {
    st: HubState,
    census: Arc<Census>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
struct KidState {
    parent: Option<NodeAddr<Hub>>,
    friend: Option<NodeAddr<Kid>>,
    pings: u64,
}

#[derive(Snapshot)]
#[snapshot(state = st, messages(Intro, Welcome, Ping, KidCmd))]
struct Kid {
    st: KidState,
    census: Arc<Census>,
}

/// Counts a construction of a hub or kid the way a probe does.
fn born(census: &Arc<Census>) -> Arc<Census> {
    census.made.fetch_add(1, SeqCst);
    census
        .arbiters
        .lock()
        .unwrap()
        .push(actix::Arbiter::current());
    Arc::clone(census)
}

impl Drop for Hub {
    fn drop(&mut self) {
        self.census.dropped.fetch_add(1, SeqCst);
    }
}

impl Drop for Kid {
    fn drop(&mut self) {
        self.census.dropped.fetch_add(1, SeqCst);
    }
}

/// Installs a node's timer guard: a timer of the node's actix context that holds it.
fn guard_timer<A: Snapshottable>(census: &Arc<Census>, ctx: &mut Context<A>) {
    census.timers.fetch_add(1, SeqCst);
    let guard = TimerGuard(Arc::clone(census));
    ctx.run_interval(Duration::from_secs(3600), move |_, _| {
        let _ = &guard;
    });
}

#[derive(Debug, Message, Serialize, Deserialize)]
#[rtype(result = "()")]
enum HubCmd {
    Adopt(NodeAddr<Kid>),
    SpawnKid(String),
    /// Each kid gets the address of the next one as its friend.
    IntroduceAll,
    PingKids,
    Tell(usize, KidCmd),
}

/// Kid to hub.
#[derive(Debug, Message, Serialize, Deserialize)]
#[rtype(result = "()")]
struct Pong {
    from: NodeAddr<Kid>,
}

/// Hub to kid: your friend.
#[derive(Debug, Message, Serialize, Deserialize)]
#[rtype(result = "()")]
struct Intro(NodeAddr<Kid>);

/// Hub to kid: I am your parent.
#[derive(Debug, Message, Serialize, Deserialize)]
#[rtype(result = "()")]
struct Welcome(NodeAddr<Hub>);

#[derive(Debug, Message, Serialize, Deserialize)]
#[rtype(result = "()")]
struct Ping;

#[derive(Debug, Message, Serialize, Deserialize)]
#[rtype(result = "()")]
enum KidCmd {
    PingFriend,
    PongParent,
    Leave,
}

impl Actor for Hub {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Context<Self>) {
        guard_timer(&self.census, ctx);
    }
}

impl Handler<HubCmd> for Hub {
    type Result = ();
    fn handle(&mut self, cmd: HubCmd, ctx: &mut Context<Self>) {
        self.census.handled.fetch_add(1, SeqCst);
        self.census.commands.fetch_add(1, SeqCst);
        match cmd {
            HubCmd::Adopt(kid) => {
                kid.do_send(Welcome(ctx.node_addr().unwrap()));
                self.st.kids.push(kid);
            }
            HubCmd::SpawnKid(name) => {
                let me = ctx.node_addr().unwrap();
                let census = Arc::clone(&self.census);
                let kid = ctx
                    .spawn_node(name, move || Kid {
                        st: KidState {
                            parent: Some(me),
                            ..KidState::default()
                        },
                        census: born(&census),
                    })
                    .expect("a fresh name");
                self.st.kids.push(kid);
            }
            HubCmd::IntroduceAll => {
                let n = self.st.kids.len();
                for i in 0..n {
                    let friend = self.st.kids[(i + 1) % n].clone();
                    self.st.kids[i].do_send(Intro(friend));
                }
            }
            HubCmd::PingKids => {
                for k in &self.st.kids {
                    k.do_send(Ping);
                }
            }
            HubCmd::Tell(i, cmd) => self.st.kids[i].do_send(cmd),
        }
    }
}

impl Handler<Pong> for Hub {
    type Result = ();
    fn handle(&mut self, p: Pong, _ctx: &mut Context<Self>) {
        self.census.handled.fetch_add(1, SeqCst);
        self.st.pongs.push(p.from.id());
    }
}

impl Actor for Kid {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Context<Self>) {
        guard_timer(&self.census, ctx);
    }
}

impl Handler<Intro> for Kid {
    type Result = ();
    fn handle(&mut self, Intro(friend): Intro, _ctx: &mut Context<Self>) {
        self.census.handled.fetch_add(1, SeqCst);
        self.st.friend = Some(friend);
    }
}

impl Handler<Welcome> for Kid {
    type Result = ();
    fn handle(&mut self, Welcome(parent): Welcome, _ctx: &mut Context<Self>) {
        self.st.parent = Some(parent);
    }
}

impl Handler<Ping> for Kid {
    type Result = ();
    fn handle(&mut self, _: Ping, _ctx: &mut Context<Self>) {
        self.census.handled.fetch_add(1, SeqCst);
        self.st.pings += 1;
    }
}

impl Handler<KidCmd> for Kid {
    type Result = ();
    fn handle(&mut self, cmd: KidCmd, ctx: &mut Context<Self>) {
        match cmd {
            KidCmd::PingFriend => {
                if let Some(f) = &self.st.friend {
                    f.do_send(Ping);
                }
            }
            KidCmd::PongParent => {
                if let Some(p) = &self.st.parent {
                    p.do_send(Pong {
                        from: ctx.node_addr().unwrap(),
                    });
                }
            }
            KidCmd::Leave => ctx.stop(),
        }
    }
}

fn orphan(census: &Arc<Census>) -> impl FnOnce() -> Kid + Send + 'static {
    let census = Arc::clone(census);
    move || Kid {
        st: KidState::default(),
        census: born(&census),
    }
}

/// Declares the hub on `b`; its constructor counts into `census`.
fn declare_hub(b: &mut GroupBuilder, census: &Arc<Census>) -> Ingress<HubCmd> {
    let hub = b.node::<Hub>("hub");
    let ctl = b.ingress::<HubCmd, _>("ctl", hub);
    let census = Arc::clone(census);
    b.actor(hub, move |st| Hub {
        st: st.unwrap_or_default(),
        census: born(&census),
    });
    ctl
}

/// A hub as a build of the program that does not take `Pong` would declare it: the hub's tag
/// and state, but `Pong` is not among its messages, so a restore cannot put one back.
#[derive(Snapshot)]
#[snapshot(tag = "Hub", state = st)]
struct HubWithoutPong {
    st: HubState,
    #[allow(dead_code)]
    census: Arc<Census>,
}

impl Actor for HubWithoutPong {
    type Context = Context<Self>;
}

/// A kid as a build of the program that does not take `Intro` would rebuild it: the kid's tag
/// and state, but `Intro` is not among its messages.
#[derive(Snapshot)]
#[snapshot(tag = "Kid", state = st)]
struct KidWithoutIntro {
    st: KidState,
    #[allow(dead_code)]
    census: Arc<Census>,
}

impl Actor for KidWithoutIntro {
    type Context = Context<Self>;
}

/// Declares the hub on `b` as [`declare_hub`] does, as a [`HubWithoutPong`].
fn declare_hub_without_pong(b: &mut GroupBuilder, census: &Arc<Census>) {
    let hub = b.node::<HubWithoutPong>("hub");
    let census = Arc::clone(census);
    b.actor(hub, move |st| HubWithoutPong {
        st: st.unwrap_or_default(),
        census: born(&census),
    });
}

/// Registers how a restore of the hub group rebuilds its kids. The message types a node type
/// takes come with it; `skip` takes away what it names: "Kid" registers no kid type, "Intro"
/// registers a kid type that does not take `Intro` ([`KidWithoutIntro`]).
fn restorable_kids(b: &mut GroupBuilder, census: &Arc<Census>, skip: &[&str]) {
    if skip.contains(&"Kid") {
        return;
    }
    let census = Arc::clone(census);
    if skip.contains(&"Intro") {
        b.restorable::<KidWithoutIntro>(move |st| KidWithoutIntro {
            st,
            census: born(&census),
        });
    } else {
        b.restorable::<Kid>(move |st| Kid {
            st,
            census: born(&census),
        });
    }
}

/// Ids in a dynamic group: hub 0 (declared), loner 1 (spawned from outside), kid-a 2 and
/// kid-b 3 (spawned by the hub), ghost 4 (spawned from outside, stopped before the cut).
const HUB: NodeId = NodeId(0);
const LONER: NodeId = NodeId(1);
const KID_A: NodeId = NodeId(2);
const KID_B: NodeId = NodeId(3);

/// Runs the hub group on the test's own arbiter (so each mailbox's order is decided here) and
/// returns a snapshot with addresses in states and in messages in flight:
/// - in flight hub -> each kid: `Intro(next kid)` (sent before the hub's cut, arriving after
///   the kid's);
/// - in flight loner -> hub: `Pong { from: loner }`.
async fn hub_snapshot() -> GlobalSnapshot {
    let census = Census::new();
    let mut b = SnapshotGroup::builder();
    let ctl = declare_hub(&mut b, &census);
    let group = b.start().unwrap();
    let loner = group.spawn("loner", orphan(&census)).unwrap();
    ctl.send(HubCmd::Adopt(loner.clone())).unwrap();
    ctl.send(HubCmd::SpawnKid("kid-a".into())).unwrap();
    ctl.send(HubCmd::SpawnKid("kid-b".into())).unwrap();
    // The first round sees the loner adopted and the kids born (the hub's Welcome to the
    // loner is in flight in it, so it is delivered before the round completes).
    group.snapshot().await.unwrap();
    let settled = group.snapshot().await.unwrap();
    assert_eq!(
        ids(&settled),
        [(0, "hub"), (1, "loner"), (2, "kid-a"), (3, "kid-b")]
    );
    let ghost = group.spawn("ghost", orphan(&census)).unwrap();
    assert_eq!(ghost.id(), NodeId(4));
    ghost.do_send(KidCmd::Leave);
    eventually("ghost stops", || !ghost.is_alive()).await;

    // The hub handles IntroduceAll before the round's start; each kid gets the start first.
    // The loner pongs before its start; the hub gets the pong after its own.
    ctl.send(HubCmd::IntroduceAll).unwrap();
    loner.do_send(KidCmd::PongParent);
    let snap = group.snapshot().await.unwrap();
    group.shutdown();

    assert_eq!(
        ids(&snap),
        [(0, "hub"), (1, "loner"), (2, "kid-a"), (3, "kid-b")],
        "ghost left"
    );
    assert_eq!(snap.next_node_id, 5, "ghost's id stays used");
    let hub = snap.state::<Hub>("hub").unwrap();
    let kid_ids: Vec<NodeId> = hub.kids.iter().map(NodeAddr::id).collect();
    assert_eq!(kid_ids, [LONER, KID_A, KID_B]);
    assert!(hub.pongs.is_empty());
    for name in ["loner", "kid-a", "kid-b"] {
        let k = snap.state::<Kid>(name).unwrap();
        assert_eq!(
            k.parent.as_ref().map(NodeAddr::id),
            Some(HUB),
            "{name}'s parent"
        );
        assert_eq!(k.friend, None, "{name} not introduced yet");
    }
    // In flight, with the addresses they carry (decoded outside a restore: ids only).
    for (to, friend) in [(LONER, KID_A), (KID_A, KID_B), (KID_B, LONER)] {
        let intro: Vec<Intro> = snap.path_messages_by_id(HUB, to).unwrap();
        assert_eq!(intro.len(), 1, "one Intro in flight to {to}");
        assert_eq!(intro[0].0.id(), friend);
    }
    let pong: Vec<Pong> = snap.path_messages("loner", "hub").unwrap();
    assert_eq!(pong.len(), 1);
    assert_eq!(pong[0].from.id(), LONER);
    assert_eq!(snap.in_flight_count(), 4);
    snap
}

/// Takes snapshots until `done` holds for one with nothing in flight.
async fn settled(group: &SnapshotGroup, done: impl Fn(&GlobalSnapshot) -> bool) -> GlobalSnapshot {
    for _ in 0..400 {
        let s = group.snapshot().await.expect("round completes");
        if s.in_flight_count() == 0 && done(&s) {
            return s;
        }
        actix::clock::sleep(Duration::from_millis(5)).await;
    }
    panic!("the group did not settle");
}

#[actix::test]
async fn a_restored_dynamic_group_keeps_ids_names_and_working_addresses() {
    let _turn = together().await;
    let snap = hub_snapshot().await;

    let census = Census::new();
    let mut b = SnapshotGroup::builder();
    b.arbiters(2);
    let ctl = declare_hub(&mut b, &census);
    restorable_kids(&mut b, &census, &[]);
    let group = b.restore(&snap).expect("every type is registered");
    assert_eq!(census.made(), 4, "the hub and three kids rebuilt");

    // The in-flight messages were back in the mailboxes before the first round's start.
    let first = group.snapshot().await.unwrap();
    assert_eq!(
        first.id,
        snap.id + 1,
        "round numbers continue after the snapshot"
    );
    assert_eq!(ids(&first), ids(&snap), "ids and names kept");
    assert_eq!(first.in_flight_count(), 0);
    assert_eq!(first.state::<Hub>("hub").unwrap().pongs, [LONER]);
    for (name, friend) in [("loner", KID_A), ("kid-a", KID_B), ("kid-b", LONER)] {
        let k = first.state::<Kid>(name).unwrap();
        assert_eq!(k.friend.as_ref().map(NodeAddr::id), Some(friend), "{name}");
    }

    // Addresses restored from states and from in-flight messages work again: the hub pings
    // every kid through its state, the loner pings its friend (kid-a) through the address
    // that was in flight, kid-a and the loner pong the hub through their parents'.
    ctl.send(HubCmd::PingKids).unwrap();
    ctl.send(HubCmd::Tell(0, KidCmd::PingFriend)).unwrap();
    ctl.send(HubCmd::Tell(1, KidCmd::PongParent)).unwrap();
    ctl.send(HubCmd::Tell(0, KidCmd::PongParent)).unwrap();
    let after = settled(&group, |s| {
        s.state::<Hub>("hub").unwrap().pongs.len() == 3
            && s.states::<Kid>().unwrap().map(|k| k.pings).sum::<u64>() == 4
    })
    .await;
    let pings: Vec<(String, u64)> = after
        .states_named::<Kid>()
        .unwrap()
        .into_iter()
        .map(|(n, k)| (n.to_string(), k.pings))
        .collect();
    assert_eq!(
        pings,
        [
            ("loner".to_string(), 1),
            ("kid-a".to_string(), 2),
            ("kid-b".to_string(), 1)
        ]
    );
    let pongs: BTreeSet<NodeId> = after.state::<Hub>("hub").unwrap().pongs[1..]
        .iter()
        .copied()
        .collect();
    assert_eq!(pongs, BTreeSet::from([LONER, KID_A]));

    // New nodes get fresh ids: not the ghost's (4), which left before the cut.
    let newbie = group.spawn("newbie", orphan(&census)).unwrap();
    assert_eq!(newbie.id(), NodeId(snap.next_node_id));
    assert_eq!(newbie.id(), NodeId(5));
    ctl.send(HubCmd::SpawnKid("kid-c".into())).unwrap();
    newbie.do_send(Ping);
    let last = settled(&group, |s| {
        s.node("kid-c").is_ok() && s.state::<Kid>("newbie").unwrap().pings == 1
    })
    .await;
    assert_eq!(last.node("kid-c").unwrap().id, NodeId(6));
    assert_eq!(last.next_node_id, 7);
    assert!(last.id > after.id);
    group.shutdown();
}

#[actix::test]
async fn restore_refuses_what_it_cannot_rebuild_and_starts_nothing() {
    let _turn = together().await;
    let snap = hub_snapshot().await;

    let attempt = |snap: &GlobalSnapshot, skip: &[&str]| {
        let census = Census::new();
        let mut b = SnapshotGroup::builder();
        b.arbiters(1);
        // Without `Pong`, the hub is one that does not take it.
        if skip.contains(&"Pong") {
            declare_hub_without_pong(&mut b, &census);
        } else {
            let _ctl = declare_hub(&mut b, &census);
        }
        restorable_kids(&mut b, &census, skip);
        let r = b.restore(snap).map(|g| g.shutdown());
        if r.is_err() {
            assert_eq!(census.made(), 0, "no constructor ran");
        }
        r
    };

    match attempt(&snap, &["Kid"]) {
        Err(BuildError::UnknownType(m)) => {
            assert!(m.contains("\"loner\"") && m.contains("Kid"), "{m}")
        }
        other => panic!("expected an unknown node type, got {other:?}"),
    }
    match attempt(&snap, &["Intro"]) {
        Err(BuildError::UnknownType(m)) => assert!(m.contains("Intro"), "{m}"),
        other => panic!("expected an unknown message type, got {other:?}"),
    }
    match attempt(&snap, &["Pong"]) {
        Err(BuildError::UnknownType(m)) => assert!(m.contains("Pong"), "{m}"),
        other => panic!("expected an unknown message type, got {other:?}"),
    }
    // A kid's state that does not decode.
    let mut garbled = snap.clone();
    let kid = garbled
        .nodes
        .iter_mut()
        .find(|n| n.name == "kid-b")
        .unwrap();
    kid.state = serde_bytes::ByteBuf::from(rmp_serde::to_vec_named(&"not a KidState").unwrap());
    match attempt(&garbled, &[]) {
        Err(BuildError::Restore(DecodeError::Value { what, .. })) => {
            assert!(what.contains("kid-b"), "{what}")
        }
        other => panic!("expected a decode error, got {other:?}"),
    }
    // And with everything in order, the same builder restores.
    attempt(&snap, &[]).expect("restores");
}

#[actix::test]
async fn a_panicking_constructor_at_start_leaves_nothing_running() {
    let _turn = together().await;
    for arbiters in [0, 2] {
        let census = Census::new();
        let mut b = SnapshotGroup::builder();
        b.arbiters(arbiters);
        let nodes: Vec<_> = (0..4).map(|i| b.node::<Probe>(format!("p{i}"))).collect();
        let inputs: Vec<Ingress<Cmd>> = nodes
            .iter()
            .enumerate()
            .map(|(i, &n)| b.ingress::<Cmd, _>(format!("in{i}"), n))
            .collect();
        for (i, &n) in nodes.iter().enumerate() {
            let census = Arc::clone(&census);
            b.actor(n, move |_| {
                if i == 2 {
                    panic!("p2 refuses to start");
                }
                Probe::new(census)
            });
        }
        if arbiters == 0 {
            // Queued before the start; on the caller's arbiter nothing runs before start()
            // returns, so these must never be handled either.
            for ing in &inputs {
                ing.send(Cmd::Bump).unwrap();
            }
        }
        match b.start() {
            Err(BuildError::ConstructorPanicked { node, reason }) => {
                assert_eq!(node, "p2");
                assert!(reason.contains("refuses to start"), "{reason}");
            }
            other => panic!("expected ConstructorPanicked, got {other:?}"),
        }
        assert!(census.made() >= 1, "some constructors ran");
        for ing in &inputs {
            let _ = ing.send(Cmd::Bump);
        }
        eventually("every constructed actor is dropped", || {
            census.made() == census.dropped()
        })
        .await;
        eventually("no node's actor is left", || {
            let (t, d) = census.timers();
            t == d
        })
        .await;
        let arbiters_seen = census.arbiters();
        assert_eq!(arbiters_seen.len(), census.made());
        if arbiters == 0 {
            assert!(
                arbiters_seen.iter().all(runs),
                "the caller's arbiter runs on"
            );
        } else {
            eventually("the group's arbiters stop", || {
                !arbiters_seen.iter().any(runs)
            })
            .await;
        }
        actix::clock::sleep(Duration::from_millis(20)).await;
        assert_eq!(census.handled(), 0, "a node handled a message");
    }
}

#[actix::test]
async fn a_panicking_constructor_at_restore_leaves_nothing_running() {
    let _turn = together().await;
    let snap = hub_snapshot().await;
    for arbiters in [0, 2] {
        let census = Census::new();
        let mut b = SnapshotGroup::builder();
        b.arbiters(arbiters);
        let ctl = declare_hub(&mut b, &census);
        restorable_kids(&mut b, &census, &["Kid"]);
        let c = Arc::clone(&census);
        b.restorable::<Kid>(move |_| {
            c.arbiters.lock().unwrap().push(actix::Arbiter::current());
            panic!("kids cannot be restored today")
        });
        match b.restore(&snap) {
            Err(BuildError::ConstructorPanicked { node, reason }) => {
                assert!(
                    ["loner", "kid-a", "kid-b"].contains(&node.as_str()),
                    "{node}"
                );
                assert!(reason.contains("cannot be restored"), "{reason}");
            }
            other => panic!("expected ConstructorPanicked, got {other:?}"),
        }
        // The hub's entry point takes nothing any more.
        let _ = ctl.send(HubCmd::PingKids);
        let seen = census.arbiters();
        if arbiters == 0 {
            // On the caller's arbiter every constructor ran before restore() returned, and
            // nothing else: the hub never ran, not even for the Pong the restore had put back
            // in its mailbox.
            assert_eq!(census.made(), 1, "the hub was built");
            assert!(seen.iter().all(runs), "the caller's arbiter runs on");
        } else {
            // The hub's constructor may not even have run on its arbiter before the kids'
            // panics stopped the group; once the arbiters are stopped, nothing more runs.
            assert!(!seen.is_empty());
            eventually("the group's arbiters stop", || !seen.iter().any(runs)).await;
        }
        eventually("the hub, if built, is dropped", || {
            census.dropped() == census.made()
        })
        .await;
        eventually("no node's actix actor is left", || {
            let (t, d) = census.timers();
            t == d
        })
        .await;
        if arbiters == 0 {
            assert_eq!(census.handled(), 0, "the hub handled a message");
            assert_eq!(census.timers(), (0, 0), "the hub never started");
        } else {
            // The hub may have run (and handled the replayed Pong) before the failure was
            // known; what was sent after the restore failed is never handled.
            assert_eq!(census.commands.load(SeqCst), 0, "the hub handled a command");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Names, spawning, a stopped group.

#[actix::test]
async fn names_are_unique_among_live_nodes_and_a_stopped_group_refuses_work() {
    let _turn = together().await;
    let census = Census::new();
    let group = SnapshotGroup::new().unwrap();
    let a = group.spawn("a", probe(&census)).unwrap();
    assert_eq!(
        group.spawn("a", probe(&census)).unwrap_err(),
        SpawnError::DuplicateName("a".into())
    );
    assert_eq!(census.made(), 1, "a refused spawn runs no constructor");
    // From a handler too.
    a.do_send(Cmd::Spawn("a".into()));
    a.do_send(Cmd::Spawn("kid".into()));
    a.do_send(Cmd::Spawn("kid".into()));
    let snap = group.snapshot().await.unwrap();
    assert_eq!(names(&snap), ["a", "kid"]);
    let kid = snap.node("kid").unwrap().id;
    assert_eq!(
        *census.spawned.lock().unwrap(),
        [
            Err(SpawnError::DuplicateName("a".into())),
            Ok(kid),
            Err(SpawnError::DuplicateName("kid".into()))
        ]
    );

    // A name is free again once its node stopped; the new node gets a new id.
    a.do_send(Cmd::Stop);
    eventually("a stops", || !a.is_alive()).await;
    let a2 = group.spawn("a", probe(&census)).unwrap();
    assert!(a2.id() > kid, "ids are never reused");
    a2.do_send(Cmd::Bump);
    let snap = group.snapshot().await.unwrap();
    assert_eq!(snap.node("a").unwrap().id, a2.id());
    assert_eq!(snap.state::<Probe>("a").unwrap(), 1);

    // A round in progress when the group shuts down fails; then nothing is accepted.
    let mut round = Box::pin(group.snapshot());
    assert!(futures::poll!(&mut round).is_pending());
    group.shutdown();
    assert_eq!(round.await.unwrap_err(), SnapshotError::GroupStopped);
    assert_eq!(
        group.spawn("b", probe(&census)).unwrap_err(),
        SpawnError::GroupStopped
    );
    assert_eq!(
        group.snapshot().await.unwrap_err(),
        SnapshotError::GroupStopped
    );
    assert_eq!(
        group.ingress::<Cmd, _>("late", &a2).unwrap_err(),
        SpawnError::GroupStopped
    );
    group.shutdown(); // idempotent
}

#[actix::test]
async fn a_constructor_panicking_on_the_callers_thread_is_an_error_at_once() {
    let _turn = together().await;
    let census = Census::new();
    let group = SnapshotGroup::new().unwrap();
    match group.spawn("boom", || -> Probe { panic!("no boom today") }) {
        Err(SpawnError::ConstructorPanicked { node, reason }) => {
            assert_eq!(node, "boom");
            assert!(reason.contains("no boom today"), "{reason}");
        }
        other => panic!("expected ConstructorPanicked, got {other:?}"),
    }
    // It never joined: rounds do not wait for it, not even one open while it was spawned,
    // and its name is free.
    let p = group.spawn("p", probe(&census)).unwrap();
    let mut round = Box::pin(group.snapshot());
    assert!(futures::poll!(&mut round).is_pending());
    let again = group.spawn("boom", || -> Probe { panic!("still no boom") });
    assert!(
        matches!(again, Err(SpawnError::ConstructorPanicked { .. })),
        "{again:?}"
    );
    let snap = round.await.expect("the failed node owes nothing");
    assert_eq!(names(&snap), ["p"]);
    group
        .spawn("boom", probe(&census))
        .expect("the name is free");
    // A child's constructor runs in its parent's handler: the parent gets the error.
    p.do_send(Cmd::SpawnBad("bad-kid".into()));
    let snap = group.snapshot().await.unwrap();
    assert_eq!(names(&snap), ["p", "boom"]);
    match &census.spawned.lock().unwrap()[..] {
        [Err(SpawnError::ConstructorPanicked { node, reason })] => {
            assert_eq!(node, "bad-kid");
            assert!(reason.contains("child constructor"), "{reason}");
        }
        other => panic!("expected one ConstructorPanicked, got {other:?}"),
    }
    group.shutdown();
}

// ---------------------------------------------------------------------------------------------
// Shutdown.

/// Starts `count` probes, one child, and a quitter that stops (a tombstone whose address the
/// test holds). Returns the live addresses and the quitter's.
async fn populate(
    group: &SnapshotGroup,
    census: &Arc<Census>,
    count: usize,
) -> (Vec<NodeAddr<Probe>>, NodeAddr<Probe>) {
    let live: Vec<_> = (0..count)
        .map(|i| group.spawn(format!("p{i}"), probe(census)).unwrap())
        .collect();
    live[0].do_send(Cmd::Spawn("child".into()));
    let quitter = group.spawn("quitter", probe(census)).unwrap();
    quitter.do_send(Cmd::Stop);
    eventually("quitter stops", || !quitter.is_alive()).await;
    let snap = group.snapshot().await.unwrap();
    let mut want: Vec<String> = (0..count).map(|i| format!("p{i}")).collect();
    want.push("child".into());
    assert_eq!(names(&snap), want);
    // count probes + child + quitter constructed; only the quitter's actor is gone, and with
    // it its actix context (its tombstone is a record in the runtime, with no actor).
    assert_eq!(census.made(), count + 2);
    assert_eq!(census.dropped(), 1);
    assert_eq!(census.timers(), (count + 2, 1));
    (live, quitter)
}

async fn assert_all_stopped(census: &Census, addrs: &[NodeAddr<Probe>]) {
    eventually("every user actor is dropped", || {
        census.dropped() == census.made()
    })
    .await;
    eventually("every node's actix context is gone", || {
        let (t, d) = census.timers();
        t == d
    })
    .await;
    for a in addrs {
        assert!(!a.is_alive(), "{} still alive after shutdown", a.name());
    }
}

#[actix::test]
async fn shutdown_stops_nodes_tombstones_and_the_groups_arbiters() {
    let _turn = together().await;
    let census = Census::new();
    let mut b = SnapshotGroup::builder();
    b.arbiters(2);
    let group = b.start().unwrap();
    let (mut addrs, quitter) = populate(&group, &census, 4).await;
    addrs.push(quitter);
    let arbiters = census.arbiters();
    assert!(arbiters.iter().all(runs));
    group.shutdown();
    assert_all_stopped(&census, &addrs).await;
    eventually("the group's arbiters stop", || !arbiters.iter().any(runs)).await;
    assert!(
        runs(&actix::Arbiter::current()),
        "the caller's arbiter is not the group's to stop"
    );
}

#[actix::test]
async fn shutdown_stops_nodes_on_the_callers_arbiter() {
    let _turn = together().await;
    let census = Census::new();
    let group = SnapshotGroup::new().unwrap();
    let (mut addrs, quitter) = populate(&group, &census, 3).await;
    addrs.push(quitter);
    group.shutdown();
    assert_all_stopped(&census, &addrs).await;
    assert!(
        census.arbiters().iter().all(runs),
        "the caller's arbiter runs on"
    );
}

#[actix::test]
async fn dropping_the_last_group_handle_shuts_the_group_down() {
    let _turn = together().await;
    let census = Census::new();
    let mut b = SnapshotGroup::builder();
    b.arbiters(1);
    let group = b.start().unwrap();
    let (mut addrs, quitter) = populate(&group, &census, 2).await;
    addrs.push(quitter);
    let arbiters = census.arbiters();
    let other = group.clone();
    drop(group);
    actix::clock::sleep(Duration::from_millis(20)).await;
    assert_eq!(census.dropped(), 1, "a clone still holds the group");
    other.snapshot().await.expect("still running");
    drop(other);
    assert_all_stopped(&census, &addrs).await;
    eventually("the group's arbiter stops", || !arbiters.iter().any(runs)).await;
}

// ---------------------------------------------------------------------------------------------
// Rounds: the cap, timeouts, memory.

#[actix::test]
async fn a_third_concurrent_round_is_refused_at_once() {
    let _turn = together().await;
    let census = Census::new();
    let mut b = SnapshotGroup::builder();
    b.arbiters(1).max_concurrent_rounds(2);
    let group = b.start().unwrap();
    let slow = group.spawn("slow", probe(&census)).unwrap();
    let gate = Gate::new();
    slow.do_send(Cmd::Block(Some(Arc::clone(&gate))));
    let mut r1 = Box::pin(group.snapshot());
    let mut r2 = Box::pin(group.snapshot());
    assert!(futures::poll!(&mut r1).is_pending());
    assert!(futures::poll!(&mut r2).is_pending());
    assert_eq!(group.stats().in_progress, 2);
    assert_eq!(
        group.snapshot().now_or_never(),
        Some(Err(SnapshotError::TooManyRounds { limit: 2 })),
        "refused on the spot, not after waiting"
    );
    gate.open();
    let (s1, s2) = (r1.await.unwrap(), r2.await.unwrap());
    assert_eq!((s1.id, s2.id), (1, 2));
    let s3 = group.snapshot().await.expect("room again");
    assert_eq!(s3.id, 3, "the refused round took no number");
    group.shutdown();
}

#[actix::test]
async fn a_timeout_names_only_the_nodes_that_did_not_record() {
    let _turn = together().await;
    let census = Census::new();
    let mut b = SnapshotGroup::builder();
    b.arbiters(2);
    let group = b.start().unwrap();
    // slow and its neighbour share arbiter 0; the others are on arbiter 1.
    let slow = group.spawn_on(0, "slow", probe(&census)).unwrap();
    let _neighbour = group.spawn_on(0, "neighbour", probe(&census)).unwrap();
    let a = group.spawn_on(1, "a", probe(&census)).unwrap();
    let _b = group.spawn_on(1, "b", probe(&census)).unwrap();
    a.do_send(Cmd::Spawn("a-child".into()));
    group.snapshot().await.unwrap();
    let gate = Gate::new();
    slow.do_send(Cmd::Block(Some(Arc::clone(&gate))));
    // Once slow blocks arbiter 0, its neighbour there cannot record either.
    eventually("slow blocks its thread", || gate.entered()).await;
    let err = group
        .snapshot_with(SnapshotOptions::default().timeout(Duration::from_millis(800)))
        .await
        .unwrap_err();
    gate.open();
    match err {
        SnapshotError::Timeout { round, missing, .. } => {
            assert_eq!(round, 2);
            let missing: BTreeSet<String> = missing.into_iter().collect();
            assert_eq!(
                missing,
                BTreeSet::from(["neighbour".to_string(), "slow".to_string()])
            );
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    let snap = group.snapshot().await.expect("slow is back");
    assert_eq!(names(&snap), ["slow", "neighbour", "a", "b", "a-child"]);
    group.shutdown();
}

/// A node whose state is a large blob.
#[derive(Snapshot)]
#[snapshot(state_type = ByteBuf, state_fn = Heavy::state)]
struct Heavy(ByteBuf);
impl Heavy {
    fn state(&self) -> ByteBuf {
        self.0.clone()
    }
}
impl Actor for Heavy {
    type Context = Context<Self>;
}

/// Resident set size of this process, in bytes.
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("Linux /proc");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("statm has a resident field");
    pages * 4096
}

#[actix::test]
async fn aborted_rounds_leave_nothing_behind() {
    let _turn = alone().await;
    let stuck_census = Census::new();
    let mut b = SnapshotGroup::builder();
    b.arbiters(2);
    let group = b.start().unwrap();
    let stuck = group.spawn_on(0, "stuck", probe(&stuck_census)).unwrap();
    // Nodes with a heavy state: if anything of an aborted round's records stayed behind,
    // 300 rounds would keep 300 x 3 x 64 KiB.
    for i in 0..3 {
        group
            .spawn_on(1, format!("ok{i}"), || {
                Heavy(ByteBuf::from(vec![7u8; 64 << 10]))
            })
            .unwrap();
    }
    group.snapshot().await.unwrap();
    assert_eq!(stuck_census.recorded.load(SeqCst), 1);
    let gate = Gate::new();
    stuck.do_send(Cmd::Block(Some(Arc::clone(&gate))));
    let quick = SnapshotOptions::default().timeout(Duration::from_millis(2));
    let timeout = async || match group.snapshot_with(quick).await {
        Err(SnapshotError::Timeout { .. }) => {}
        other => panic!("expected a timeout, got {other:?}"),
    };
    // Warm up (allocator, timers), then measure across 300 aborted rounds.
    for _ in 0..20 {
        timeout().await;
    }
    let before = rss();
    for _ in 0..300 {
        timeout().await;
    }
    let grown = rss().saturating_sub(before);
    eprintln!(
        "RSS {:.1} MB before 300 aborted rounds, grown by {:.2} MB",
        before as f64 / 1e6,
        grown as f64 / 1e6
    );
    assert!(
        grown < 4_000_000,
        "RSS grew by {grown} bytes across 300 aborted rounds"
    );
    let st = group.stats();
    assert_eq!((st.timed_out, st.in_progress), (320, 0));

    gate.open();
    let snap = group.snapshot().await.expect("stuck is back");
    assert_eq!(snap.id, 322, "one round after the 320 aborted ones");
    assert_eq!(names(&snap), ["stuck", "ok0", "ok1", "ok2"]);
    // The stuck node recorded once more, for all the rounds it skipped at once.
    assert_eq!(stuck_census.recorded.load(SeqCst), 2);
    group.shutdown();
}
