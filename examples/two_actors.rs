//! The smallest useful program: two actors play ping-pong with a ball that carries a
//! counter, and a snapshot finds the ball — in one of the players, or in flight.
//!
//! Run it with `cargo run --example two_actors`.
//!
//! What changes compared with plain actix:
//!
//! 1. Implement [`Snapshottable`] (what goes into the snapshot) next to your actor.
//! 2. Implement [`Receive<M>`] instead of `actix::Handler<M>`.
//! 3. Send to other actors of the group through an [`Out<M>`] (one per link) instead of an
//!    `Addr`, and declare the actors and links on a builder before starting them.

use actix_snapshot::{Out, Receive, SnapCtx, SnapshotGroup, Snapshottable};
use serde::{Deserialize, Serialize};

/// The message: a ball that counts how often it was hit.
#[derive(Debug, Serialize, Deserialize)]
struct Ball {
    hits: u64,
}

/// A player keeps count of the hits it made and returns every ball.
struct Player {
    hits_made: u64,
    other: Out<Ball>,
}

impl Snapshottable for Player {
    type State = u64; // the snapshot of a player: its hit count
    fn snapshot_state(&self) -> u64 {
        self.hits_made
    }
}

impl Receive<Ball> for Player {
    fn receive(&mut self, ball: Ball, _ctx: &mut SnapCtx<Self>) {
        self.hits_made += 1;
        self.other.send(Ball {
            hits: ball.hits + 1,
        });
    }
}

#[actix::main]
async fn main() {
    // Declare the two nodes and the two links between them. Mailboxes exist from here on,
    // so the links can be handed to the actors' constructors.
    let mut b = SnapshotGroup::builder();
    let ping = b.node::<Player>("ping");
    let pong = b.node::<Player>("pong");
    let ping_to_pong = b.channel(ping, pong);
    let pong_to_ping = b.channel(pong, ping);
    let serve = b.ingress::<Ball, _>("serve", ping); // how the first ball gets in
    // A constructor gets `None` on a fresh start, the recorded state on a restore.
    b.actor(ping, move |hits| Player {
        hits_made: hits.unwrap_or(0),
        other: ping_to_pong,
    });
    b.actor(pong, move |hits| Player {
        hits_made: hits.unwrap_or(0),
        other: pong_to_ping,
    });
    let group = b.start().expect("the topology is valid");

    serve.send(Ball { hits: 0 }).expect("ping is running");
    for _ in 0..5 {
        actix::clock::sleep(std::time::Duration::from_millis(10)).await;
        let snap = group.snapshot().await.expect("the round completes");
        let ping_hits: u64 = snap.state::<Player>("ping").unwrap();
        let pong_hits: u64 = snap.state::<Player>("pong").unwrap();
        let in_flight: Vec<Ball> = snap.in_flight::<Ball>().unwrap().collect();
        // The ball is in exactly one place, and the hits add up: a consistent cut.
        assert_eq!(in_flight.len(), 1, "one ball, and players never keep it");
        assert_eq!(in_flight[0].hits, ping_hits + pong_hits);
        println!(
            "snapshot {}: ping hit {ping_hits}, pong hit {pong_hits}, ball in flight with {} hits",
            snap.id, in_flight[0].hits
        );
    }
    group.shutdown();
}
