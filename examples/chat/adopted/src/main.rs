//! `chat-adopted`: runs the chat server (its nodes in a snapshot group) on a TCP address.
//!
//! ```text
//! chat-adopted --bind 127.0.0.1:12345
//! ```
//!
//! Then talk to it with any line-based client, e.g. `nc 127.0.0.1 12345`, and
//! type `/list`, `/join ROOM`, `/name NAME`, `/quit` or plain chat lines.

use std::net::SocketAddr;
use std::time::Duration;

use chat_adopted::SessionConfig;
use clap::Parser;
use tokio::net::TcpListener;

/// A plain actix TCP chat server.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:12345")]
    bind: SocketAddr,
    /// Seconds between heartbeat pings to each client.
    #[arg(long, default_value_t = 1)]
    heartbeat_secs: u64,
    /// Seconds of client silence after which a connection is dropped.
    #[arg(long, default_value_t = 10)]
    timeout_secs: u64,
}

#[actix::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let config = SessionConfig {
        heartbeat_interval: Duration::from_secs(args.heartbeat_secs),
        client_timeout: Duration::from_secs(args.timeout_secs),
    };
    let listener = TcpListener::bind(args.bind).await?;
    println!("chat server listening on {}", listener.local_addr()?);
    chat_adopted::serve(listener, config).await;
    Ok(())
}
