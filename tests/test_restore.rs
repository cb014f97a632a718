//! Rollback: restoring a group from a snapshot. The actors here only act on commands from
//! outside (ingress), never by themselves, so what a restored group holds can be computed
//! by the test from the snapshot alone and compared with a second snapshot.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use actix_snapshot::{
    BuildError, GlobalSnapshot, GroupBuilder, Ingress, Out, Receive, SnapCtx, SnapshotGroup,
    Snapshottable,
};
use serde::{Deserialize, Serialize};

/// A note passed between ledgers. `seq` is the sender's count on its channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Note {
    from: u32,
    seq: u64,
    amount: u64,
}

/// From outside: send `amount` to the next ledger.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Pay(u64);

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
struct Books {
    balance: i64,
    /// Every note received, in order: (from, seq).
    received: Vec<(u32, u64)>,
    next_seq: u64,
}

struct Ledger {
    me: u32,
    next: Out<Note>,
    books: Books,
}

impl Snapshottable for Ledger {
    type State = Books;
    fn snapshot_state(&self) -> Books {
        self.books.clone()
    }
}

impl Receive<Note> for Ledger {
    fn receive(&mut self, n: Note, _ctx: &mut SnapCtx<Self>) {
        self.books.balance += n.amount as i64;
        self.books.received.push((n.from, n.seq));
    }
}

impl Receive<Pay> for Ledger {
    fn receive(&mut self, Pay(amount): Pay, _ctx: &mut SnapCtx<Self>) {
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
async fn quiescent_round_trip_gives_identical_states_and_channels() {
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

    let (group, pay) = restore(&snap, 2);
    for (i, p) in pay.iter().enumerate() {
        assert_eq!(
            p.next_offset(),
            snap.ingress_offset(&format!("pay{i}")).unwrap()
        );
    }
    let again = group.snapshot().await.unwrap();
    group.shutdown();
    assert!(again.id > snap.id, "round ids continue");
    assert_eq!(again.nodes, snap.nodes, "states identical");
    assert_eq!(again.channels, snap.channels, "channels identical");
    assert_eq!(again.ingress, snap.ingress, "ingress offsets identical");
    assert_eq!(books(&again), before);
}

#[actix::test]
async fn in_flight_notes_are_delivered_exactly_once_in_order_after_restore() {
    // Find a snapshot with notes in flight.
    let mut found = None;
    for _ in 0..20 {
        let (group, pay) = start(2);
        flood(&pay, 300);
        let snap = group.snapshot().await.unwrap();
        group.shutdown();
        if snap.in_flight_count() > 0 {
            found = Some(snap);
            break;
        }
    }
    let snap = found.expect("a snapshot with notes in flight");
    let before = books(&snap);

    // What the restored group must hold once the recorded notes are delivered, computed
    // from the snapshot: each note added once, appended in channel order.
    let mut expected = before.clone();
    for i in 0..N {
        let to = (i + 1) % N;
        let notes: Vec<Note> = snap
            .channel_messages(&format!("l{i}"), &format!("l{to}"))
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
            "channel l{i} -> l{to} holds exactly the notes sent and not yet received"
        );
        for n in notes {
            expected[to].balance += n.amount as i64;
            expected[to].received.push((n.from, n.seq));
        }
    }
    // Money is conserved at the cut and after.
    let total = |b: &[Books]| b.iter().map(|b| b.balance).sum::<i64>();
    let in_flight: i64 = snap
        .in_flight::<Note>()
        .unwrap()
        .map(|n| n.amount as i64)
        .sum();
    assert_eq!(total(&before) + in_flight, 0);

    let (group, _pay) = restore(&snap, 2);
    // The recorded notes sit in the mailboxes ahead of the round's start, so this round
    // sees them delivered.
    let again = group.snapshot().await.unwrap();
    group.shutdown();
    assert_eq!(books(&again), expected);
    assert_eq!(total(&expected), 0);
    assert_eq!(again.in_flight_count(), 0);
    for (a, b) in again.channels.iter().zip(&snap.channels) {
        assert_eq!(a.sent, b.sent, "channel {}: nothing new sent", a.id);
        assert_eq!(a.delivered, b.sent, "channel {}: all delivered", a.id);
    }
    assert_eq!(again.ingress, snap.ingress);
}

#[actix::test]
async fn restoring_into_another_topology_is_a_clear_error() {
    let (group, pay) = start(0);
    flood(&pay, 3);
    let snap = group.snapshot().await.unwrap();
    group.shutdown();

    // A node missing.
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
        Err(BuildError::TopologyMismatch(m)) => {
            assert!(m.contains("3 nodes") && m.contains("group has 2"), "{m}")
        }
        other => panic!("expected a topology mismatch, got {other:?}"),
    }

    // Same nodes, channels the other way round.
    let mut b = SnapshotGroup::builder();
    declare(&mut b, true);
    match b.restore(&snap) {
        Err(BuildError::TopologyMismatch(m)) => assert!(m.contains("channel 0"), "{m}"),
        other => panic!("expected a topology mismatch, got {other:?}"),
    }

    // A node renamed.
    let mut renamed = snap.clone();
    renamed.nodes[1].name = "other".into();
    let mut b = SnapshotGroup::builder();
    declare(&mut b, false);
    match b.restore(&renamed) {
        Err(BuildError::TopologyMismatch(m)) => assert!(m.contains("\"other\""), "{m}"),
        other => panic!("expected a topology mismatch, got {other:?}"),
    }

    // Another actor type under the same name.
    let mut retyped = snap.clone();
    retyped.nodes[0].actor_type = "some::Other".into();
    let mut b = SnapshotGroup::builder();
    declare(&mut b, false);
    match b.restore(&retyped) {
        Err(BuildError::TopologyMismatch(m)) => assert!(m.contains("some::Other"), "{m}"),
        other => panic!("expected a topology mismatch, got {other:?}"),
    }

    // A state that does not decode.
    let mut garbled = snap.clone();
    garbled.nodes[2].state = serde_bytes::ByteBuf::from(vec![0xc1]);
    let mut b = SnapshotGroup::builder();
    declare(&mut b, false);
    assert!(matches!(b.restore(&garbled), Err(BuildError::Restore(_))));
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

struct Wallet(WalletV2);

impl Snapshottable for Wallet {
    type State = WalletV2;
    const STATE_VERSION: u32 = 2;
    fn snapshot_state(&self) -> WalletV2 {
        self.0.clone()
    }
    fn upgrade_state(version: u32, state: &[u8]) -> Result<WalletV2, String> {
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

impl Receive<u64> for Wallet {
    fn receive(&mut self, cents: u64, _ctx: &mut SnapCtx<Self>) {
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
        "upgrade_state called"
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
                assert!(actor_type.ends_with("Wallet"), "{actor_type}");
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

/// An actor type without `upgrade_state`: the default refuses every other version.
struct Plain(u32);
impl Snapshottable for Plain {
    type State = u32;
    fn snapshot_state(&self) -> u32 {
        self.0
    }
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
