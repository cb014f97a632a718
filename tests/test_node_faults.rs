//! Nodes that go away in unusual ways, found by an independent review of the dynamic core:
//! each of these once made every later round time out, or a snapshot wrong. Each test
//! asserts the behaviour the design asks for.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use actix::ActorContext;
use actix_snapshot::{
    NodeAddr, Receive, SnapCtx, SnapshotError, SnapshotGroup, SnapshotOptions, Snapshottable,
};
use serde::{Deserialize, Serialize};

fn quick() -> SnapshotOptions {
    SnapshotOptions::default().timeout(Duration::from_secs(3))
}

#[derive(Serialize, Deserialize, Debug)]
enum BMsg {
    Kill,
    Ping,
}

struct B;
impl Snapshottable for B {
    type State = u32;
    fn snapshot_state(&self) -> u32 {
        0
    }
}
impl Receive<BMsg> for B {
    fn receive(&mut self, m: BMsg, ctx: &mut SnapCtx<Self>) {
        if let BMsg::Kill = m {
            ctx.actix().stop(); // the raw actix stop, not SnapCtx::stop
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Go;
#[derive(Serialize, Deserialize)]
struct Target(NodeAddr<B>);

struct A {
    b: Option<NodeAddr<B>>,
}
impl Snapshottable for A {
    type State = u32;
    fn snapshot_state(&self) -> u32 {
        0
    }
}
impl Receive<Target> for A {
    fn receive(&mut self, t: Target, _ctx: &mut SnapCtx<Self>) {
        self.b = Some(t.0);
    }
}
impl Receive<Go> for A {
    fn receive(&mut self, _: Go, _ctx: &mut SnapCtx<Self>) {
        if let Some(b) = &self.b {
            b.send(BMsg::Kill);
            b.send(BMsg::Ping); // queued behind the stop: counted, must not be lost
        }
    }
}

#[actix::test]
async fn a_raw_actix_stop_leaves_the_group_and_later_rounds_complete() {
    let group = SnapshotGroup::new().unwrap();
    let b = group.spawn("b", || B).unwrap();
    let a = group.spawn("a", || A { b: None }).unwrap();
    a.send(Target(b.clone()));
    a.send(Go);
    actix_rt::time::sleep(Duration::from_millis(50)).await;
    assert!(!b.is_alive());
    for _ in 0..3 {
        let snap = group.snapshot_with(quick()).await.expect("round completes");
        assert!(snap.node("b").is_err(), "b left the group");
        assert_eq!(
            snap.in_flight_count(),
            0,
            "a message to a gone node is not in flight"
        );
    }
    group.shutdown();
}

struct D;
impl Snapshottable for D {
    type State = u32;
    fn snapshot_state(&self) -> u32 {
        0
    }
}
impl Receive<BMsg> for D {
    fn receive(&mut self, _m: BMsg, _ctx: &mut SnapCtx<Self>) {}
}
#[derive(Serialize, Deserialize)]
struct TargetD(NodeAddr<D>);
struct A2 {
    d: Option<NodeAddr<D>>,
}
impl Snapshottable for A2 {
    type State = u32;
    fn snapshot_state(&self) -> u32 {
        0
    }
}
impl Receive<TargetD> for A2 {
    fn receive(&mut self, t: TargetD, _ctx: &mut SnapCtx<Self>) {
        t.0.send(BMsg::Ping);
        self.d = Some(t.0);
    }
}

#[actix::test]
async fn a_constructor_panic_on_another_arbiter_loses_nothing() {
    let mut builder = SnapshotGroup::builder();
    builder.arbiters(2);
    let group = builder.start().unwrap();
    let a = group.spawn_on(0, "a", || A2 { d: None }).unwrap();
    let d = group
        .spawn_on(1, "d", || -> D {
            std::thread::sleep(Duration::from_millis(200));
            panic!("constructor fails")
        })
        .unwrap();
    a.send(TargetD(d.clone())); // a sends to d before d's constructor has run: counted
    actix_rt::time::sleep(Duration::from_millis(400)).await;
    assert!(!d.is_alive());
    for _ in 0..2 {
        let snap = group.snapshot_with(quick()).await.expect("round completes");
        assert!(snap.node("d").is_err());
        assert!(snap.node("a").is_ok());
    }
    group.shutdown();
}

static PANIC_STATE: AtomicBool = AtomicBool::new(true);
struct P;
impl Snapshottable for P {
    type State = u32;
    fn snapshot_state(&self) -> u32 {
        if PANIC_STATE.swap(false, Ordering::SeqCst) {
            panic!("state panics")
        }
        0
    }
}
impl Receive<BMsg> for P {
    fn receive(&mut self, _m: BMsg, _ctx: &mut SnapCtx<Self>) {}
}

#[actix::test]
async fn a_panic_while_recording_fails_that_round_on_that_node() {
    let group = SnapshotGroup::new().unwrap();
    let p = group.spawn("p", || P).unwrap();
    let _a = group.spawn("a", || A { b: None }).unwrap();
    // A long timeout: the failure must come from the node, not from the clock.
    let long = SnapshotOptions::default().timeout(Duration::from_secs(60));
    let started = std::time::Instant::now();
    match group.snapshot_with(long).await {
        Err(SnapshotError::NodeFailed { node, reason, .. }) => {
            assert_eq!(node, "p");
            assert!(reason.contains("state panics"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(30));
    // The node is still there and the next round records it.
    assert!(p.is_alive());
    let snap = group.snapshot_with(quick()).await.expect("next round");
    assert!(snap.node("p").is_ok());
    group.shutdown();
}

#[derive(Serialize, Deserialize)]
struct SpawnBad;
#[derive(Serialize, Deserialize)]
struct SpawnGood;
struct Parent {
    err: Option<String>,
}
impl Snapshottable for Parent {
    type State = Option<String>;
    fn snapshot_state(&self) -> Option<String> {
        self.err.clone()
    }
}
impl Receive<SpawnBad> for Parent {
    fn receive(&mut self, _: SpawnBad, ctx: &mut SnapCtx<Self>) {
        let r = ctx.spawn("child", || -> D { panic!("bad child constructor") });
        self.err = r.err().map(|e| e.to_string());
    }
}
impl Receive<SpawnGood> for Parent {
    fn receive(&mut self, _: SpawnGood, ctx: &mut SnapCtx<Self>) {
        ctx.spawn("kid", || D).unwrap(); // nobody ever sends to the kid
    }
}

#[actix::test]
async fn a_child_whose_constructor_panics_fails_no_round() {
    let group = SnapshotGroup::new().unwrap();
    let p = group.spawn("p", || Parent { err: None }).unwrap();
    actix_rt::time::sleep(Duration::from_millis(20)).await;
    p.send(SpawnBad); // queued before the round's start
    let snap = group.snapshot_with(quick()).await.expect("round completes");
    let err = snap
        .state::<Parent>("p")
        .unwrap()
        .expect("the parent saw the error");
    assert!(err.contains("bad child constructor"), "{err}");
    assert!(snap.node("child").is_err());
    group.shutdown();
}

#[actix::test]
async fn a_child_spawned_while_a_round_is_open_is_in_it() {
    let group = SnapshotGroup::new().unwrap();
    let p = group.spawn("p", || Parent { err: None }).unwrap();
    actix_rt::time::sleep(Duration::from_millis(20)).await;
    p.send(SpawnGood); // queued before the round's start: the kid is a member of it
    let snap = group.snapshot_with(quick()).await.expect("round completes");
    let names: Vec<&str> = snap.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, vec!["p", "kid"]);
    group.shutdown();
}

#[derive(Serialize, Deserialize)]
struct Split;
#[derive(Serialize, Deserialize)]
struct Nap;
struct Bank {
    balance: u64,
    group: Option<SnapshotGroup>,
}
impl Snapshottable for Bank {
    type State = u64;
    fn snapshot_state(&self) -> u64 {
        self.balance
    }
}
impl Receive<Split> for Bank {
    fn receive(&mut self, _: Split, _ctx: &mut SnapCtx<Self>) {
        let half = self.balance / 2;
        self.balance -= half;
        if let Some(g) = &self.group {
            g.spawn("d", move || Bank {
                balance: half,
                group: None,
            })
            .expect("spawned");
        }
    }
}
impl Receive<Nap> for Bank {
    fn receive(&mut self, _: Nap, _ctx: &mut SnapCtx<Self>) {
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[actix::test]
async fn group_spawn_inside_a_handler_is_a_child_and_money_is_conserved() {
    let mut b = SnapshotGroup::builder();
    b.arbiters(2);
    let group = b.start().unwrap();
    let g = group.clone();
    let p = group
        .spawn_on(0, "p", move || Bank {
            balance: 100,
            group: Some(g),
        })
        .unwrap();
    let q = group
        .spawn_on(1, "q", || Bank {
            balance: 0,
            group: None,
        })
        .unwrap();
    actix_rt::time::sleep(Duration::from_millis(20)).await;
    q.send(Nap); // q busy: the round stays open after p records
    let g = group.clone();
    let round = actix_rt::spawn(async move {
        g.snapshot_with(SnapshotOptions::default().timeout(Duration::from_secs(5)))
            .await
    });
    actix_rt::time::sleep(Duration::from_millis(50)).await;
    p.send(Split); // after p's cut: the new node must not be in this round
    let snap = round.await.unwrap().expect("round completes");
    let total: u64 = snap.states::<Bank>().unwrap().sum();
    assert_eq!(total, 100, "{:?}", snap.states_named::<Bank>());
    let later = group.snapshot_with(quick()).await.expect("later round");
    assert_eq!(later.states::<Bank>().unwrap().sum::<u64>(), 100);
    assert!(later.node("d").is_ok());
    drop(p);
    drop(q);
    drop(group); // the last handles: everything stops
}

#[actix::test]
async fn a_timeout_reports_the_rounds_own_deadline() {
    let mut b = SnapshotGroup::builder();
    b.arbiters(1);
    let group = b.start().unwrap();
    let q = group
        .spawn("q", || Bank {
            balance: 0,
            group: None,
        })
        .unwrap();
    q.send(Nap);
    actix_rt::time::sleep(Duration::from_millis(20)).await;
    let short = Duration::from_millis(50);
    match group
        .snapshot_with(SnapshotOptions::default().timeout(short))
        .await
    {
        Err(SnapshotError::Timeout {
            waited, missing, ..
        }) => {
            assert_eq!(waited, short);
            assert_eq!(missing, vec!["q".to_string()]);
        }
        other => panic!("{other:?}"),
    }
    group.shutdown();
}

#[derive(Serialize, Deserialize)]
struct SendToKid;
struct Leaker {
    group: SnapshotGroup,
}
impl Snapshottable for Leaker {
    type State = ();
    fn snapshot_state(&self) {}
}
impl Receive<SendToKid> for Leaker {
    fn receive(&mut self, _: SendToKid, _ctx: &mut SnapCtx<Self>) {
        // The kid's address comes from the group's registry, not from a message.
        if let Some(kid) = self.group.addr::<D>("kid") {
            kid.send(BMsg::Ping);
        }
    }
}
impl Receive<Nap> for Leaker {
    fn receive(&mut self, _: Nap, _ctx: &mut SnapCtx<Self>) {
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[actix::test]
async fn a_message_through_an_address_from_outside_the_groups_messages_fails_the_round() {
    let mut b = SnapshotGroup::builder();
    b.arbiters(2);
    let group = b.start().unwrap();
    let p = group.spawn_on(0, "p", || Parent { err: None }).unwrap();
    let g = group.clone();
    let a = group.spawn_on(1, "a", move || Leaker { group: g }).unwrap();
    actix_rt::time::sleep(Duration::from_millis(20)).await;
    a.send(Nap); // a is busy: it records the round late
    a.send(SendToKid); // ... and before that, sends to the kid
    let g = group.clone();
    let round = actix_rt::spawn(async move {
        g.snapshot_with(SnapshotOptions::default().timeout(Duration::from_secs(5)))
            .await
    });
    actix_rt::time::sleep(Duration::from_millis(50)).await;
    p.send(SpawnGood); // p recorded the round already: the kid is not in it
    match round.await.unwrap() {
        Err(SnapshotError::UntrackedAddress {
            receiver, sender, ..
        }) => {
            assert_eq!((receiver.as_str(), sender.as_str()), ("kid", "a"));
        }
        other => panic!("the round must not complete without the kid's message: {other:?}"),
    }
    // Later rounds are whole again.
    let snap = group.snapshot_with(quick()).await.expect("next round");
    assert!(snap.node("kid").is_ok());
    group.shutdown();
}
