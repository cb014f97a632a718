//! Dynamic groups on real actix: nodes spawned from outside and from handlers, nodes that stop
//! or panic, addresses carried in messages. Every snapshot is checked against the actors' own
//! books: tokens are conserved and each appears exactly once.

use std::collections::BTreeSet;
use std::time::Duration;

use actix::prelude::*;
use actix_snapshot::{
    NodeAddr, NodeContext, Snapshot, SnapshotError, SnapshotGroup, SnapshotOptions,
};
use serde::{Deserialize, Serialize};

/// A token-passing node: holds tokens, forwards each to a peer it knows.
#[derive(Snapshot)]
#[snapshot(state = held, messages(Tok, Cmd))]
struct Relay {
    held: BTreeSet<u64>,
    peers: Vec<NodeAddr<Relay>>,
    hops: u64,
}

#[derive(Message, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[rtype(result = "()")]
struct Tok {
    id: u64,
    ttl: u32,
}

/// Control from outside.
#[derive(Message, Serialize, Deserialize)]
#[rtype(result = "()")]
enum Cmd {
    Meet(#[serde(skip)] Option<NodeAddr<Relay>>),
    Spawn(String),
    Stop,
    Panic,
    Stall(u64),
}

impl Actor for Relay {
    type Context = Context<Self>;
}

impl Handler<Tok> for Relay {
    type Result = ();
    fn handle(&mut self, t: Tok, _ctx: &mut Context<Self>) {
        self.hops += 1;
        if t.ttl == 0 || self.peers.is_empty() {
            self.held.insert(t.id);
            return;
        }
        let k = (t.id as usize + self.hops as usize) % self.peers.len();
        self.peers[k].do_send(Tok {
            id: t.id,
            ttl: t.ttl - 1,
        });
    }
}

impl Handler<Cmd> for Relay {
    type Result = ();
    fn handle(&mut self, c: Cmd, ctx: &mut Context<Self>) {
        match c {
            Cmd::Meet(Some(p)) => self.peers.push(p),
            Cmd::Meet(None) => {}
            Cmd::Spawn(name) => {
                let me = ctx.node_addr().unwrap();
                let child = ctx
                    .spawn_node(name, move || Relay {
                        held: BTreeSet::new(),
                        peers: vec![me],
                        hops: 0,
                    })
                    .unwrap();
                // Hand the child one of our tokens, if any.
                if let Some(id) = self.held.pop_first() {
                    child.do_send(Tok { id, ttl: 3 });
                }
                self.peers.push(child);
            }
            Cmd::Stop => ctx.stop(),
            Cmd::Panic => panic!("deliberate panic"),
            Cmd::Stall(ms) => std::thread::sleep(Duration::from_millis(ms)),
        }
    }
}

fn relay() -> Relay {
    Relay {
        held: BTreeSet::new(),
        peers: Vec::new(),
        hops: 0,
    }
}

fn tokens(snap: &actix_snapshot::GlobalSnapshot) -> Vec<u64> {
    let mut all: Vec<u64> = snap.states::<Relay>().unwrap().flatten().collect();
    all.extend(snap.in_flight::<Tok>().unwrap().map(|t| t.id));
    all.sort();
    all
}

#[actix::test]
async fn children_stops_and_panics() {
    let mut b = SnapshotGroup::builder();
    b.arbiters(2);
    let group = b.start().unwrap();
    let a = group.spawn("a", relay).unwrap();
    let b = group.spawn("b", relay).unwrap();
    a.do_send(Cmd::Meet(Some(b.clone())));
    b.do_send(Cmd::Meet(Some(a.clone())));
    for id in 0..20 {
        a.do_send(Tok { id, ttl: 1000 });
    }
    let s1 = group.snapshot().await.unwrap();
    assert_eq!(tokens(&s1), (0..20).collect::<Vec<_>>());
    a.do_send(Cmd::Spawn("c".into()));
    let s2 = group.snapshot().await.unwrap();
    assert_eq!(s2.nodes.len(), 3);
    assert_eq!(tokens(&s2), (0..20).collect::<Vec<_>>());
    let d = group.spawn("d", relay).unwrap();
    d.do_send(Cmd::Stop);
    let s3 = group.snapshot().await.unwrap();
    assert!(s3.node("d").is_err());
    let e = group.spawn("e", relay).unwrap();
    e.do_send(Cmd::Panic);
    // e panics: if that happens after the round started and before e recorded, the round
    // it owed fails, naming it; if it happens before the round starts, e is simply not a
    // member. Either way the next round succeeds without it.
    match group.snapshot().await {
        Err(SnapshotError::NodePanicked { node, .. }) => assert_eq!(node, "e"),
        Ok(s) => assert!(s.node("e").is_err(), "a panicked node is not in a snapshot"),
        Err(other) => panic!("{other:?}"),
    }
    let s4 = group.snapshot().await.unwrap();
    assert!(s4.node("e").is_err());
    assert_eq!(tokens(&s4), (0..20).collect::<Vec<_>>());
    let f = group.spawn("f", relay).unwrap();
    f.do_send(Cmd::Stall(400));
    let err = group
        .snapshot_with(SnapshotOptions::default().timeout(Duration::from_millis(100)))
        .await
        .unwrap_err();
    match err {
        // f stalls its arbiter: f and the nodes sharing that thread are named, b (on the
        // other arbiter) recorded and is not.
        SnapshotError::Timeout { missing, .. } => {
            assert!(missing.contains(&"f".to_string()), "{missing:?}");
            assert!(!missing.contains(&"b".to_string()), "{missing:?}");
        }
        other => panic!("{other:?}"),
    }
    let s5 = group.snapshot().await.unwrap();
    assert_eq!(tokens(&s5), (0..20).collect::<Vec<_>>());
    group.shutdown();
}

#[actix::test]
async fn addresses_of_run_time_nodes_can_be_looked_up_by_name_and_type() {
    let group = SnapshotGroup::new().unwrap();
    let a = group.spawn("a", relay).unwrap();
    let found = group.addr::<Relay>("a").expect("live node of that type");
    assert_eq!(found, a);
    assert_eq!(group.addr_by_id::<Relay>(a.id()), Some(a.clone()));
    assert!(group.addr::<Relay>("nobody").is_none());
    // The wrong type is no match.
    #[derive(Snapshot)]
    #[snapshot(state_type = (), state_fn = Other::state)]
    struct Other;
    impl Other {
        fn state(&self) {}
    }
    impl Actor for Other {
        type Context = Context<Self>;
    }
    assert!(group.addr::<Other>("a").is_none());
    a.do_send(Cmd::Stop);
    actix_rt::time::sleep(Duration::from_millis(20)).await;
    assert!(
        group.addr::<Relay>("a").is_none(),
        "a stopped node is not live"
    );
    group.shutdown();
}

/// A declared node with a typed link to another.
#[derive(Snapshot)]
#[snapshot(state = got, messages(Tok, Cmd))]
struct Fwd {
    next: actix_snapshot::Out<Tok>,
    got: u64,
}

impl Actor for Fwd {
    type Context = Context<Self>;
}

impl Handler<Tok> for Fwd {
    type Result = ();
    fn handle(&mut self, t: Tok, _ctx: &mut Context<Self>) {
        self.got += 1;
        if t.ttl > 0 {
            self.next.send(Tok {
                id: t.id,
                ttl: t.ttl - 1,
            });
        }
    }
}

impl Handler<Cmd> for Fwd {
    type Result = ();
    fn handle(&mut self, c: Cmd, ctx: &mut Context<Self>) {
        if let Cmd::Stop = c {
            ctx.stop();
        }
    }
}

fn fwd_ring(b: &mut actix_snapshot::GroupBuilder) -> Vec<actix_snapshot::Ingress<Cmd>> {
    let nodes: Vec<_> = (0..3).map(|i| b.node::<Fwd>(format!("f{i}"))).collect();
    let mut cmds = Vec::new();
    for i in 0..3 {
        let next = b.channel(nodes[i], nodes[(i + 1) % 3]);
        cmds.push(b.ingress::<Cmd, _>(format!("cmd{i}"), nodes[i]));
        b.actor(nodes[i], move |got| Fwd {
            next,
            got: got.unwrap_or(0),
        });
    }
    cmds
}

#[actix::test]
async fn a_declared_node_that_had_stopped_comes_back_as_a_tombstone() {
    let mut b = SnapshotGroup::builder();
    let cmds = fwd_ring(&mut b);
    let group = b.start().unwrap();
    cmds[1].send(Cmd::Stop).unwrap();
    let snap = loop {
        let s = group.snapshot().await.unwrap();
        if s.node("f1").is_err() {
            break s;
        }
    };
    group.shutdown();

    let mut b = SnapshotGroup::builder();
    let cmds = fwd_ring(&mut b);
    let group = b.restore(&snap).expect("f1 had left: not a mismatch");
    assert_eq!(group.node_names(), vec!["f0", "f2"]);
    assert!(cmds[1].send(Cmd::Stop).is_err(), "f1 is a tombstone");
    // f0 forwards to the tombstone: counted as dropped, rounds still complete.
    group
        .addr::<Fwd>("f2")
        .unwrap()
        .do_send(Tok { id: 1, ttl: 5 });
    for _ in 0..3 {
        let s = group.snapshot().await.expect("round completes without f1");
        assert!(s.node("f1").is_err());
    }
    group.shutdown();
}
