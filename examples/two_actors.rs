//! The smallest useful program: two actors play ping-pong with a ball that carries a
//! counter, and a snapshot finds the ball — in one of the players, or in flight.
//!
//! Run it with `cargo run --example two_actors`.
//!
//! What changes compared with plain actix:
//!
//! 1. Messages must be serde types too (a snapshot may record them in flight), and so must
//!    their results.
//! 2. `#[derive(Snapshot)]` on the actor says what goes into the snapshot (`state = field`)
//!    and which messages it takes through the library (`messages(..)`). Its `Actor` and
//!    `Handler` impls stay plain actix.
//! 3. Spawn the actors into a [`SnapshotGroup`] and hold a [`NodeAddr`] instead of an `Addr`
//!    (`do_send` to send, `send` for a reply). Addresses can travel in messages (here the
//!    ball carries the address of whoever hit it last); a snapshot records them as node ids.
//!    A handler finds its own address with [`NodeContext::node_addr`]. Groups whose shape is
//!    known up front can also be declared on a builder with typed links
//!    (`SnapshotGroup::builder()`, `Out<M>`).

use actix::prelude::*;
use actix_snapshot::{NodeAddr, NodeContext, Snapshot, SnapshotGroup};
use serde::{Deserialize, Serialize};

/// The message: a ball that counts how often it was hit, and who hit it last.
#[derive(Debug, Message, Serialize, Deserialize)]
#[rtype(result = "()")]
struct Ball {
    hits: u64,
    from: NodeAddr<Player>,
}

/// A player keeps count of the hits it made and returns every ball to whoever sent it.
#[derive(Snapshot)]
#[snapshot(state = hits_made, messages(Ball))] // the snapshot of a player: its hit count
struct Player {
    hits_made: u64,
}

impl Actor for Player {
    type Context = Context<Self>;
}

impl Handler<Ball> for Player {
    type Result = ();

    fn handle(&mut self, ball: Ball, ctx: &mut Context<Self>) {
        self.hits_made += 1;
        // Inside a handler, a send to another node of the group is tracked by the snapshot.
        ball.from.do_send(Ball {
            hits: ball.hits + 1,
            from: ctx.node_addr().expect("a player runs as a node"),
        });
    }
}

#[actix::main]
async fn main() {
    let group = SnapshotGroup::new().expect("inside an actix System");
    let ping = group.spawn("ping", || Player { hits_made: 0 }).unwrap();
    let pong = group.spawn("pong", || Player { hits_made: 0 }).unwrap();

    // Serve: from outside the group, a send is an input (like a request from a client).
    ping.do_send(Ball {
        hits: 0,
        from: pong.clone(),
    });
    for _ in 0..5 {
        actix::clock::sleep(std::time::Duration::from_millis(10)).await;
        let snap = group.snapshot().await.expect("the round completes");
        let ping_hits: u64 = snap.state::<Player>("ping").unwrap();
        let pong_hits: u64 = snap.state::<Player>("pong").unwrap();
        let in_flight: Vec<Ball> = snap.in_flight::<Ball>().unwrap().collect();
        // The ball is in exactly one place, and the hits add up: a consistent cut.
        assert_eq!(in_flight.len(), 1, "one ball, and players never keep it");
        assert_eq!(in_flight[0].hits, ping_hits + pong_hits);
        // The address in the ball was recorded as the id of the player who hit it last.
        assert_eq!(in_flight[0].from.id(), snap.paths[0].from);
        let to = snap.node_name(snap.paths[0].to).unwrap();
        println!(
            "snapshot {}: ping hit {ping_hits}, pong hit {pong_hits}, ball on its way to {to} \
             with {} hits",
            snap.id, in_flight[0].hits
        );
    }
    group.shutdown();
}
