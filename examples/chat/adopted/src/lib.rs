//! A plain actix TCP chat server with a line protocol.
//!
//! The shape follows actix's classic chat example: one [`ChatServer`] actor
//! owns the sessions and rooms, and every accepted TCP connection gets its own
//! [`ChatSession`] actor, which reads client lines through a
//! `FramedRead` stream and writes replies through an
//! [`actix::io::FramedWrite`]. [`start`] spawns the whole thing on the
//! current actix system; [`serve`] runs it until the process ends.
//!
//! Server and sessions are nodes of one [`SnapshotGroup`]; [`start_with`]
//! brings the server's rooms back from a snapshot of one (its sessions are
//! left out: their connections are gone).
//!
//! [`ChatServer`]: server::ChatServer
//! [`ChatSession`]: session::ChatSession

pub mod codec;
pub mod server;
pub mod session;

use std::time::Duration;

use actix_snapshot::{BuildError, GlobalSnapshot, GroupBuilder, NodeAddr, SnapshotGroup};
use tokio::net::TcpListener;
use tracing::{debug, warn};

use crate::server::ChatServer;
use crate::session::ChatSession;
pub use crate::session::SessionConfig;

/// Starts a [`ChatServer`] and an accept loop on `listener`, both on the
/// current actix system, and returns their group (the server is "server").
///
/// Must be called from within a running actix system. Bind the listener to
/// port 0 and read `listener.local_addr()` first to learn the port.
pub fn start(listener: TcpListener, config: SessionConfig) -> SnapshotGroup {
    start_with(SnapshotGroup::builder(), listener, config, None).expect("inside an actix system")
}

/// [`start`] in a group made by `builder` (arbiters, options), with the
/// rooms of the server in `snapshot` if one is given.
pub fn start_with(
    mut builder: GroupBuilder,
    listener: TcpListener,
    config: SessionConfig,
    snapshot: Option<&GlobalSnapshot>,
) -> Result<SnapshotGroup, BuildError> {
    let server = builder.node::<ChatServer>("server");
    builder.actor(server, ChatServer::restored);
    let group = match snapshot.cloned() {
        Some(mut snapshot) => {
            // Only the server: no session, no message to or from one.
            snapshot.nodes.retain(|node| node.id == server.id());
            snapshot.paths.clear();
            builder.restore(&snapshot)?
        }
        None => builder.start()?,
    };
    actix::spawn(accept_loop(listener, group.clone(), config));
    Ok(group)
}

/// Starts a [`ChatServer`] and accepts connections on `listener` forever.
pub async fn serve(listener: TcpListener, config: SessionConfig) {
    let _group = start(listener, config);
    std::future::pending().await
}

/// Accepts connections and starts one [`ChatSession`] per connection.
async fn accept_loop(listener: TcpListener, group: SnapshotGroup, config: SessionConfig) {
    let server: NodeAddr<ChatServer> = group.addr("server").expect("started");
    for conn in 1u64.. {
        let (stream, peer) = match listener.accept().await {
            Ok(conn) => conn,
            Err(err) => {
                // e.g. out of file descriptors: back off instead of spinning
                warn!(%err, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        debug!(%peer, "accepted connection");
        let server = server.clone();
        let session = move || ChatSession::new(server, peer.to_string(), stream, config);
        if let Err(err) = group.spawn(format!("session-{conn}"), session) {
            warn!(%err, "cannot start a session");
        }
    }
}
