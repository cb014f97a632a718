//! End-to-end tests: scripted TCP clients talk to a server on 127.0.0.1.
//!
//! Each test starts its own server on port 0. Every wait for a line has a
//! generous deadline, and no test relies on a sleep for correctness.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chat_adopted::SessionConfig;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::TcpListener;
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::time::timeout;

/// Upper bound for any single expected event.
const DEADLINE: Duration = Duration::from_secs(15);

async fn start_server(config: SessionConfig) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    chat_adopted::start(listener, config);
    addr
}

/// A scripted line client; it answers every `/ping` it reads with `/pong`.
struct Client {
    lines: Lines<BufReader<OwnedReadHalf>>,
    writer: OwnedWriteHalf,
}

impl Client {
    /// Connects and waits until the server has registered the session.
    async fn connect(addr: SocketAddr) -> (Client, usize) {
        let (read, writer) = TcpStream::connect(addr).await.unwrap().into_split();
        let mut client = Client {
            lines: BufReader::new(read).lines(),
            writer,
        };
        let welcome = client.recv().await;
        let id = welcome
            .strip_prefix("/welcome ")
            .and_then(|id| id.parse().ok())
            .unwrap_or_else(|| panic!("expected /welcome, got {welcome:?}"));
        (client, id)
    }

    async fn send(&mut self, line: &str) {
        self.writer
            .write_all(format!("{line}\n").as_bytes())
            .await
            .unwrap();
    }

    /// Next line that is not a heartbeat ping, or `None` at end of stream.
    async fn next(&mut self) -> Option<String> {
        loop {
            let line = timeout(DEADLINE, self.lines.next_line())
                .await
                .expect("timed out waiting for a line")
                .expect("read error");
            match line.as_deref() {
                Some("/ping") => self.send("/pong").await,
                _ => return line,
            }
        }
    }

    async fn recv(&mut self) -> String {
        self.next().await.expect("connection closed")
    }

    async fn expect(&mut self, want: &str) {
        assert_eq!(self.recv().await, want);
    }

    async fn expect_closed(&mut self) {
        assert_eq!(self.next().await, None, "expected end of stream");
    }
}

#[actix::test]
async fn clients_list_join_and_chat_in_rooms() {
    let addr = start_server(SessionConfig::default()).await;

    let (mut alice, alice_id) = Client::connect(addr).await;
    let (mut bob, bob_id) = Client::connect(addr).await;
    assert_ne!(alice_id, bob_id);
    assert!(alice.recv().await.ends_with(" connected"));
    let (mut carol, _) = Client::connect(addr).await;
    assert!(alice.recv().await.ends_with(" connected"));
    assert!(bob.recv().await.ends_with(" connected"));

    alice.send("/name alice").await;
    bob.send("/name bob").await;

    alice.send("/list").await;
    alice.expect("/rooms main").await;

    // everyone starts in main
    alice.send("good morning").await;
    bob.expect("alice: good morning").await;
    carol.expect("alice: good morning").await;

    alice.send("/join rust").await;
    alice.expect("/joined rust").await;
    bob.expect("someone left").await;
    carol.expect("someone left").await;

    bob.send("/join rust").await;
    bob.expect("/joined rust").await;
    alice.expect("someone joined").await;
    carol.expect("someone left").await;

    bob.send("/list").await;
    bob.expect("/rooms main rust").await;

    alice.send("hello bob").await;
    bob.expect("alice: hello bob").await;
    bob.send("hi alice").await;
    // alice does not get her own line back: the next thing she sees is bob's
    alice.expect("bob: hi alice").await;

    // carol, still in main, saw none of the rust traffic
    carol.send("anyone here?").await;
    carol.send("/list").await;
    carol.expect("/rooms main rust").await;
}

#[actix::test]
async fn bad_commands_get_an_error_line() {
    let addr = start_server(SessionConfig::default()).await;
    let (mut client, _) = Client::connect(addr).await;

    client.send("/join").await;
    assert!(client.recv().await.starts_with("/error "));
    client.send("/dance").await;
    assert!(client.recv().await.starts_with("/error "));
    client.send("/list").await;
    client.expect("/rooms main").await;
}

#[actix::test]
async fn quit_closes_the_connection_and_tells_the_room() {
    let addr = start_server(SessionConfig::default()).await;
    let (mut alice, _) = Client::connect(addr).await;
    let (mut bob, _) = Client::connect(addr).await;
    assert!(alice.recv().await.ends_with(" connected"));

    bob.send("/quit").await;
    bob.expect("/bye").await;
    bob.expect_closed().await;
    alice.expect("someone disconnected").await;

    // the server forgot bob: alice is alone and her messages go nowhere
    alice.send("still there?").await;
    alice.send("/list").await;
    alice.expect("/rooms main").await;
}

#[actix::test]
async fn closing_the_socket_ends_the_session() {
    let addr = start_server(SessionConfig::default()).await;
    let (mut alice, _) = Client::connect(addr).await;
    let (bob, _) = Client::connect(addr).await;
    assert!(alice.recv().await.ends_with(" connected"));

    drop(bob);
    alice.expect("someone disconnected").await;
}

#[actix::test]
async fn silent_client_is_dropped_after_the_heartbeat_timeout() {
    let config = SessionConfig {
        heartbeat_interval: Duration::from_millis(200),
        client_timeout: Duration::from_secs(2),
    };
    let addr = start_server(config).await;

    // the watcher answers every ping it reads and so stays connected
    let (mut watcher, _) = Client::connect(addr).await;

    let connected_at = Instant::now();
    let (silent, _) = Client::connect(addr).await;
    assert!(watcher.recv().await.ends_with(" connected"));

    // read the silent client's raw lines without ever answering, while the
    // watcher keeps answering pings and waits for the room notice
    let silent_side = async {
        let mut lines = silent.lines;
        let mut seen = Vec::new();
        while let Some(line) = timeout(DEADLINE, lines.next_line())
            .await
            .expect("silent client was never disconnected")
            .expect("read error")
        {
            seen.push(line);
        }
        (seen, connected_at.elapsed())
    };
    let watcher_side = watcher.expect("someone disconnected");
    let ((seen, lasted), ()) = tokio::join!(silent_side, watcher_side);

    assert!(
        seen.iter().any(|line| line == "/ping"),
        "no ping in {seen:?}"
    );
    assert!(lasted >= config.client_timeout, "dropped after {lasted:?}");

    // the watcher itself survived well past the timeout
    watcher.send("/list").await;
    watcher.expect("/rooms main").await;
}
