//! A plain actix TCP chat server with a line protocol.
//!
//! The shape follows actix's classic chat example: one [`ChatServer`] actor
//! owns the sessions and rooms, and every accepted TCP connection gets its own
//! [`ChatSession`] actor, which reads client lines through a
//! `FramedRead` stream and writes replies through an
//! [`actix::io::FramedWrite`]. [`start`] spawns the whole thing on the
//! current actix system; [`serve`] runs it until the process ends.
//!
//! [`ChatServer`]: server::ChatServer
//! [`ChatSession`]: session::ChatSession

pub mod codec;
pub mod server;
pub mod session;

use std::time::Duration;

use actix::prelude::*;
use tokio::net::TcpListener;
use tokio_util::codec::FramedRead;
use tracing::{debug, warn};

use crate::codec::ChatCodec;
use crate::server::ChatServer;
use crate::session::ChatSession;
pub use crate::session::SessionConfig;

/// Starts a [`ChatServer`] and an accept loop on `listener`, both on the
/// current actix system, and returns the server's address.
///
/// Must be called from within a running actix system. Bind the listener to
/// port 0 and read `listener.local_addr()` first to learn the port.
pub fn start(listener: TcpListener, config: SessionConfig) -> Addr<ChatServer> {
    let server = ChatServer::default().start();
    actix::spawn(accept_loop(listener, server.clone(), config));
    server
}

/// Starts a [`ChatServer`] and accepts connections on `listener` forever.
pub async fn serve(listener: TcpListener, config: SessionConfig) {
    let server = ChatServer::default().start();
    accept_loop(listener, server, config).await
}

/// Accepts connections and starts one [`ChatSession`] per connection.
async fn accept_loop(listener: TcpListener, server: Addr<ChatServer>, config: SessionConfig) {
    loop {
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
        ChatSession::create(move |ctx| {
            let (read, write) = stream.into_split();
            ChatSession::add_stream(FramedRead::new(read, ChatCodec::default()), ctx);
            let framed = actix::io::FramedWrite::new(write, ChatCodec::default(), ctx);
            ChatSession::new(server, peer.to_string(), framed, config)
        });
    }
}
