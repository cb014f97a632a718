//! Rollback: restoring a group from a snapshot. The actors here only act on commands from
//! outside (ingress), never by themselves, so what a restored group holds can be computed
//! by the test from the snapshot alone and compared with a second snapshot.
//!
//! A snapshot records nodes (id, name, type, state) and messages in flight per path, not the
//! links declared on the builder: a restore is checked against the nodes, and in-flight
//! messages go back to the nodes they were sent to. Node counters (`sent`, `received`) count
//! from the restore on.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use actix::{Actor, Context, Handler, Message};
use actix_snapshot::{
    BuildError, GlobalSnapshot, GroupBuilder, Ingress, Out, Snapshot, SnapshotGroup,
};
use serde::{Deserialize, Serialize};

/// A note passed between ledgers. `seq` is the sender's count on its channel.
#[derive(Debug, Clone, PartialEq, Eq, Message, Serialize, Deserialize)]
#[rtype(result = "()")]
struct Note {
    from: u32,
    seq: u64,
    amount: u64,
}

/// From outside: send `amount` to the next ledger.
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "()")]
struct Pay(u64);

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
struct Books {
    balance: i64,
    /// Every note received, in order: (from, seq).
    received: Vec<(u32, u64)>,
    next_seq: u64,
}

#[derive(Snapshot)]
#[snapshot(state = books, messages(Note, Pay))]
struct Ledger {
    me: u32,
    next: Out<Note>,
    books: Books,
}

impl Actor for Ledger {
    type Context = Context<Self>;
}

impl Handler<Note> for Ledger {
    type Result = ();
    fn handle(&mut self, n: Note, _ctx: &mut Context<Self>) {
        self.books.balance += n.amount as i64;
        self.books.received.push((n.from, n.seq));
    }
}

impl Handler<Pay> for Ledger {
    type Result = ();
    fn handle(&mut self, Pay(amount): Pay, _ctx: &mut Context<Self>) {
        self.books.balance -= amount as i64;
        self.next.send(Note {
            from: self.me,
            seq: self.books.next_seq,
            amount,
        });
        self.books.next_seq += 1;
    }
}

const N: usize = 3;

/// Declares a ring of `N` ledgers, each with a "pay{i}" ingress; `reversed` turns the ring
/// around (same nodes, other channels).
fn declare(b: &mut GroupBuilder, reversed: bool) -> Vec<Ingress<Pay>> {
    let nodes: Vec<_> = (0..N).map(|i| b.node::<Ledger>(format!("l{i}"))).collect();
    let mut outs: Vec<Option<Out<Note>>> = (0..N).map(|_| None).collect();
    for i in 0..N {
        let j = if reversed {
            (i + N - 1) % N
        } else {
            (i + 1) % N
        };
        outs[i] = Some(b.channel(nodes[i], nodes[j]));
    }
    let pay = nodes
        .iter()
        .enumerate()
        .map(|(i, &n)| b.ingress::<Pay, _>(format!("pay{i}"), n))
        .collect();
    for (i, (n, out)) in nodes.into_iter().zip(outs).enumerate() {
        let out = out.expect("declared");
        b.actor(n, move |books| Ledger {
            me: i as u32,
            next: out,
            books: books.unwrap_or_default(),
        });
    }
    pay
}

fn start(arbiters: usize) -> (SnapshotGroup, Vec<Ingress<Pay>>) {
    let mut b = SnapshotGroup::builder();
    b.arbiters(arbiters);
    let pay = declare(&mut b, false);
    (b.start().expect("starts"), pay)
}

fn restore(snap: &GlobalSnapshot, arbiters: usize) -> (SnapshotGroup, Vec<Ingress<Pay>>) {
    let mut b = SnapshotGroup::builder();
    b.arbiters(arbiters);
    let pay = declare(&mut b, false);
    (b.restore(snap).expect("restores"), pay)
}

fn books(snap: &GlobalSnapshot) -> Vec<Books> {
    (0..N)
        .map(|i| snap.state::<Ledger>(&format!("l{i}")).expect("decodes"))
        .collect()
}

fn flood(pay: &[Ingress<Pay>], per_node: u64) {
    for k in 0..per_node {
        for p in pay {
            p.send(Pay(k % 7 + 1)).expect("running");
        }
    }
}

#[actix::test]
async fn quiescent_round_trip_gives_identical_states_and_paths() {
    let (group, pay) = start(2);
    flood(&pay, 200);
    // Wait until nothing is in flight and every payment was handled.
    let mut snap = group.snapshot().await.unwrap();
    for _ in 0..1000 {
        let all_paid = (0..N).all(|i| snap.ingress_offset(&format!("pay{i}")).unwrap() == 200);
        if all_paid && snap.in_flight_count() == 0 {
            break;
        }
        actix::clock::sleep(Duration::from_millis(5)).await;
        snap = group.snapshot().await.unwrap();
    }
    assert_eq!(snap.in_flight_count(), 0, "system settled");
    group.shutdown();
    let before = books(&snap);
    assert!(before.iter().all(|b| b.received.len() == 200));
    // The nodes' counters agree with their books.
    for (i, b) in before.iter().enumerate() {
        let node = snap.node(&format!("l{i}")).unwrap();
        assert_eq!(node.sent, b.next_seq, "l{i} sent");
        assert_eq!(node.received, b.received.len() as u64, "l{i} received");
    }

    let (group, pay) = restore(&snap, 2);
    for (i, p) in pay.iter().enumerate() {
        assert_eq!(
            p.next_offset(),
            snap.ingress_offset(&format!("pay{i}")).unwrap()
        );
    }
    let again = group.snapshot().await.unwrap();
    group.shutdown();
    assert_eq!(again.id, snap.id + 1, "round ids continue");
    assert!(again.paths.is_empty(), "nothing in flight either time");
    assert_eq!(again.ingress, snap.ingress, "ingress offsets identical");
    assert_eq!(again.next_node_id, snap.next_node_id);
    assert_eq!(again.nodes.len(), snap.nodes.len());
    for (a, b) in again.nodes.iter().zip(&snap.nodes) {
        assert_eq!(
            (a.id, &a.name, &a.actor_type, a.state_version, &a.state),
            (b.id, &b.name, &b.actor_type, b.state_version, &b.state),
            "node {} identical",
            b.name
        );
        // Counters count from the restore on: nothing was sent or received since.
        assert_eq!((a.sent, a.received, a.external), (0, 0, b.external));
    }
    assert_eq!(books(&again), before);
}

/// What the ledgers hold once every note in flight in `snap` is delivered, computed from the
/// snapshot alone: each note added once, appended in path order. Checks on the way that each
/// path holds exactly the notes sent and not yet received, in order.
fn after_delivery(snap: &GlobalSnapshot) -> Vec<Books> {
    let before = books(snap);
    let mut expected = before.clone();
    for i in 0..N {
        let to = (i + 1) % N;
        let notes: Vec<Note> = snap
            .path_messages(&format!("l{i}"), &format!("l{to}"))
            .unwrap();
        let seqs: Vec<u64> = notes.iter().map(|n| n.seq).collect();
        let first = before[to]
            .received
            .iter()
            .filter(|(f, _)| *f == i as u32)
            .count() as u64;
        assert_eq!(
            seqs,
            (first..before[i].next_seq).collect::<Vec<_>>(),
            "path l{i} -> l{to} holds exactly the notes sent and not yet received"
        );
        for n in notes {
            expected[to].balance += n.amount as i64;
            expected[to].received.push((n.from, n.seq));
        }
    }
    expected
}

fn total(b: &[Books]) -> i64 {
    b.iter().map(|b| b.balance).sum()
}

/// Notes in flight to ledger `to` in `snap`.
fn in_flight_to(snap: &GlobalSnapshot, to: usize) -> u64 {
    let id = snap.node(&format!("l{to}")).unwrap().id;
    snap.paths
        .iter()
        .filter(|p| p.to == id)
        .map(|p| p.messages.len() as u64)
        .sum()
}

async fn snapshot_with_notes_in_flight() -> GlobalSnapshot {
    for _ in 0..20 {
        let (group, pay) = start(2);
        flood(&pay, 300);
        let snap = group.snapshot().await.unwrap();
        group.shutdown();
        if snap.in_flight_count() > 0 {
            return snap;
        }
    }
    panic!("no snapshot with notes in flight");
}

#[actix::test]
async fn in_flight_notes_are_delivered_exactly_once_in_order_after_restore() {
    let snap = snapshot_with_notes_in_flight().await;
    let before = books(&snap);
    let expected = after_delivery(&snap);
    // Money is conserved at the cut and after.
    let in_flight: i64 = snap
        .in_flight::<Note>()
        .unwrap()
        .map(|n| n.amount as i64)
        .sum();
    assert_eq!(total(&before) + in_flight, 0);
    assert_eq!(total(&expected), 0);

    let (group, _pay) = restore(&snap, 2);
    // The recorded notes sit in the mailboxes ahead of the round's start, so this round
    // sees them delivered.
    let again = group.snapshot().await.unwrap();
    group.shutdown();
    assert_eq!(books(&again), expected);
    assert_eq!(again.in_flight_count(), 0);
    for i in 0..N {
        let node = again.node(&format!("l{i}")).unwrap();
        assert_eq!(node.sent, 0, "l{i}: nothing new sent");
        assert_eq!(
            node.received,
            in_flight_to(&snap, i),
            "l{i}: all delivered, once"
        );
    }
    assert_eq!(again.ingress, snap.ingress);
}

#[actix::test]
async fn recorded_notes_are_in_the_mailboxes_before_any_actor_runs() {
    let snap = snapshot_with_notes_in_flight().await;
    let expected = after_delivery(&snap);
    let (group, pay) = restore(&snap, 2);
    // Payments right after the restore: each ledger's new note travels on a thread of its
    // own, so it could overtake the recorded notes if those were put back after the actors
    // started. They must come after them.
    for p in &pay {
        p.send(Pay(1000)).unwrap();
    }
    let mut settled = None;
    for _ in 0..500 {
        let s = group.snapshot().await.unwrap();
        let done = (0..N)
            .all(|i| s.node(&format!("l{i}")).unwrap().received == in_flight_to(&snap, i) + 1);
        if done && s.in_flight_count() == 0 {
            settled = Some(s);
            break;
        }
        actix::clock::sleep(Duration::from_millis(5)).await;
    }
    group.shutdown();
    let settled = settled.expect("every note delivered");
    let now = books(&settled);
    for to in 0..N {
        let from = (to + N - 1) % N;
        let mut want = expected[to].received.clone();
        want.push((from as u32, expected[from].next_seq));
        assert_eq!(
            now[to].received, want,
            "l{to}: recorded notes first, then the new one"
        );
        assert_eq!(
            now[to].balance, expected[to].balance,
            "l{to} paid 1000, got 1000"
        );
        assert_eq!(now[to].next_seq, expected[to].next_seq + 1);
    }
    for i in 0..N {
        assert_eq!(
            settled.ingress_offset(&format!("pay{i}")).unwrap(),
            snap.ingress_offset(&format!("pay{i}")).unwrap() + 1,
            "offsets continue"
        );
    }
}

#[actix::test]
async fn restore_checks_the_snapshot_against_the_declared_nodes() {
    let snap = snapshot_with_notes_in_flight().await;

    // A node of the snapshot missing from the builder (and not restorable).
    let mut b = SnapshotGroup::builder();
    let nodes: Vec<_> = (0..2).map(|i| b.node::<Ledger>(format!("l{i}"))).collect();
    let o1 = b.channel(nodes[0], nodes[1]);
    let o2 = b.channel(nodes[1], nodes[0]);
    b.actor(nodes[0], move |s| Ledger {
        me: 0,
        next: o1,
        books: s.unwrap_or_default(),
    });
    b.actor(nodes[1], move |s| Ledger {
        me: 1,
        next: o2,
        books: s.unwrap_or_default(),
    });
    match b.restore(&snap) {
        Err(BuildError::UnknownType(m)) => {
            assert!(m.contains("\"l2\"") && m.contains("Ledger"), "{m}")
        }
        other => panic!("expected an unknown type, got {other:?}"),
    }

    // Same nodes, links the other way round: a snapshot holds no links, so this restores,
    // and the notes in flight go back to the nodes they were sent to.
    let mut b = SnapshotGroup::builder();
    declare(&mut b, true);
    let group = b.restore(&snap).expect("links are not part of a snapshot");
    let again = group.snapshot().await.unwrap();
    group.shutdown();
    assert_eq!(books(&again), after_delivery(&snap));

    // A node renamed: not declared under that name, and its type is not restorable.
    let mut renamed = snap.clone();
    renamed.nodes[1].name = "other".into();
    let mut b = SnapshotGroup::builder();
    declare(&mut b, false);
    match b.restore(&renamed) {
        Err(BuildError::UnknownType(m)) => assert!(m.contains("\"other\""), "{m}"),
        other => panic!("expected an unknown type, got {other:?}"),
    }

    // Another actor type under the same name.
    let mut retyped = snap.clone();
    retyped.nodes[0].actor_type = "Other".into();
    let mut b = SnapshotGroup::builder();
    declare(&mut b, false);
    match b.restore(&retyped) {
        Err(BuildError::TopologyMismatch(m)) => {
            assert!(
                m.contains("\"l0\"") && m.contains("Other") && m.contains("Ledger"),
                "{m}"
            )
        }
        other => panic!("expected a topology mismatch, got {other:?}"),
    }

    // Another id under the same name.
    let mut renumbered = snap.clone();
    renumbered.nodes[2].id = actix_snapshot::NodeId(7);
    let mut b = SnapshotGroup::builder();
    declare(&mut b, false);
    match b.restore(&renumbered) {
        Err(BuildError::TopologyMismatch(m)) => assert!(m.contains("\"l2\""), "{m}"),
        other => panic!("expected a topology mismatch, got {other:?}"),
    }

    // A state that does not decode.
    let mut garbled = snap.clone();
    garbled.nodes[2].state = serde_bytes::ByteBuf::from(vec![0xc1]);
    let mut b = SnapshotGroup::builder();
    declare(&mut b, false);
    assert!(matches!(b.restore(&garbled), Err(BuildError::Restore(_))));

    // An in-flight message that does not decode.
    let mut garbled = snap.clone();
    garbled.paths[0].messages[0] = serde_bytes::ByteBuf::from(vec![0xc1]);
    let mut b = SnapshotGroup::builder();
    declare(&mut b, false);
    assert!(matches!(b.restore(&garbled), Err(BuildError::Restore(_))));

    // In-flight messages of a type nothing accepts.
    let mut retyped = snap.clone();
    retyped.paths[0].message_type = "Memo".into();
    let mut b = SnapshotGroup::builder();
    declare(&mut b, false);
    match b.restore(&retyped) {
        Err(BuildError::UnknownType(m)) => assert!(m.contains("Memo"), "{m}"),
        other => panic!("expected an unknown type, got {other:?}"),
    }

    // In-flight messages to a node that is not in the snapshot.
    let mut astray = snap.clone();
    astray.paths[0].to = actix_snapshot::NodeId(9);
    let mut b = SnapshotGroup::builder();
    declare(&mut b, false);
    assert!(matches!(
        b.restore(&astray),
        Err(BuildError::TopologyMismatch(_))
    ));
}

// --- State versions ---------------------------------------------------------------------

/// Version 1 of the wallet state: whole dollars.
#[derive(Serialize, Deserialize)]
struct WalletV1 {
    dollars: u64,
}

/// Version 2: cents and an owner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct WalletV2 {
    cents: u64,
    owner: String,
}

static UPGRADES: AtomicUsize = AtomicUsize::new(0);

/// Cents paid into a wallet.
#[derive(Message, Serialize, Deserialize)]
#[rtype(result = "()")]
struct Cents(u64);

#[derive(Snapshot)]
#[snapshot(
    state_type = WalletV2,
    state_fn = Self::state,
    version = 2,
    upgrade = Self::upgrade,
    messages(Cents)
)]
struct Wallet(WalletV2);

impl Actor for Wallet {
    type Context = Context<Self>;
}

impl Wallet {
    fn state(&self) -> WalletV2 {
        self.0.clone()
    }
    fn upgrade(version: u32, state: &[u8]) -> Result<WalletV2, String> {
        UPGRADES.fetch_add(1, Ordering::SeqCst);
        match version {
            1 => {
                let v1: WalletV1 = rmp_serde::from_slice(state).map_err(|e| e.to_string())?;
                Ok(WalletV2 {
                    cents: v1.dollars * 100,
                    owner: "unknown".into(),
                })
            }
            v => Err(format!("wallet state version {v} is unknown")),
        }
    }
}

impl Handler<Cents> for Wallet {
    type Result = ();
    fn handle(&mut self, Cents(cents): Cents, _ctx: &mut Context<Self>) {
        self.0.cents += cents;
    }
}

fn wallet_builder() -> GroupBuilder {
    let mut b = SnapshotGroup::builder();
    let w = b.node::<Wallet>("w");
    b.actor(w, |s| {
        Wallet(s.unwrap_or(WalletV2 {
            cents: 5,
            owner: "ann".into(),
        }))
    });
    b
}

/// A snapshot of the wallet group, rewritten as if taken by version `version` of the code
/// with `state` as the recorded state.
async fn wallet_snapshot_as(version: u32, state: Vec<u8>) -> GlobalSnapshot {
    let group = wallet_builder().start().unwrap();
    let mut snap = group.snapshot().await.unwrap();
    group.shutdown();
    assert_eq!(snap.nodes[0].state_version, 2);
    snap.nodes[0].state_version = version;
    snap.nodes[0].state = serde_bytes::ByteBuf::from(state);
    snap
}

#[actix::test]
async fn an_old_state_version_is_upgraded_on_restore() {
    let v1 = rmp_serde::to_vec_named(&WalletV1 { dollars: 7 }).unwrap();
    let snap = wallet_snapshot_as(1, v1).await;
    let calls = UPGRADES.load(Ordering::SeqCst);
    let group = wallet_builder().restore(&snap).expect("v1 upgrades to v2");
    assert!(
        UPGRADES.load(Ordering::SeqCst) > calls,
        "the upgrade hook was called"
    );
    let again = group.snapshot().await.unwrap();
    group.shutdown();
    assert_eq!(again.nodes[0].state_version, 2);
    assert_eq!(
        again.state::<Wallet>("w").unwrap(),
        WalletV2 {
            cents: 700,
            owner: "unknown".into()
        }
    );
}

#[actix::test]
async fn an_unknown_state_version_is_a_named_error() {
    for version in [0, 3] {
        let snap = wallet_snapshot_as(version, vec![0x90]).await;
        match wallet_builder().restore(&snap) {
            Err(e @ BuildError::StateVersion { .. }) => {
                let BuildError::StateVersion {
                    node,
                    actor_type,
                    found,
                    expected,
                    reason,
                } = &e
                else {
                    unreachable!()
                };
                assert_eq!(node, "w");
                assert_eq!(actor_type, "Wallet", "a short, stable type tag");
                assert_eq!((*found, *expected), (version, 2));
                assert!(
                    reason.contains(&format!("version {version} is unknown")),
                    "{reason}"
                );
                let msg = e.to_string();
                assert!(
                    msg.contains("\"w\"") && msg.contains(&format!("{version} cannot become 2")),
                    "{msg}"
                );
            }
            other => panic!("expected a state version error, got {other:?}"),
        }
    }
    // A v1 state that does not decode as v1 is refused with the decoder's reason.
    let snap = wallet_snapshot_as(1, vec![0xc1]).await;
    assert!(matches!(
        wallet_builder().restore(&snap),
        Err(BuildError::StateVersion { found: 1, .. })
    ));
}

/// An actor type without `upgrade`: the default refuses every other version.
#[derive(Snapshot)]
#[snapshot(state_type = u32, state_fn = Self::state)]
struct Plain(u32);
impl Plain {
    fn state(&self) -> u32 {
        self.0
    }
}
impl Actor for Plain {
    type Context = Context<Self>;
}

#[actix::test]
async fn a_type_without_upgrade_refuses_other_versions() {
    let build = || {
        let mut b = SnapshotGroup::builder();
        let p = b.node::<Plain>("p");
        b.actor(p, |s| Plain(s.unwrap_or(1)));
        b
    };
    let group = build().start().unwrap();
    let mut snap = group.snapshot().await.unwrap();
    group.shutdown();
    snap.nodes[0].state_version = 7;
    match build().restore(&snap) {
        Err(BuildError::StateVersion {
            found: 7,
            expected: 1,
            reason,
            ..
        }) => {
            assert!(
                reason.contains("no upgrade from state version 7"),
                "{reason}"
            )
        }
        other => panic!("expected a state version error, got {other:?}"),
    }
}
