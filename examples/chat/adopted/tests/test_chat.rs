//! The adopted chat under snapshots: scripted TCP clients connect, talk, join
//! rooms, list rooms, quit, drop their sockets or fall silent until the
//! heartbeat drops them, while snapshots are taken in a loop. Every snapshot
//! must pass [`check_cut`], a check computed from the snapshot's states and
//! in-flight messages alone that only a consistent cut passes; edited
//! snapshots show that it fails otherwise. The last two tests restore the
//! server's rooms from a checkpoint.
//!
//! Every wait has a generous deadline and no sleep is an assertion.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use actix_snapshot::snapshot::PathSnapshot;
use actix_snapshot::{GlobalSnapshot, GroupBuilder, NodeId, REPLY_TAG, SnapshotGroup};
use chat_adopted::SessionConfig;
use chat_adopted::server::{ChatServer, Disconnect, ServerState};
use chat_adopted::session::{ChatSession, SessionState};
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, timeout};

/// Upper bound for any single expected event.
const DEADLINE: Duration = Duration::from_secs(30);

/// Heartbeats quick enough that silent clients are dropped during the run,
/// slow enough that a client reading its lines on a loaded machine answers
/// in time.
const QUICK: SessionConfig = SessionConfig {
    heartbeat_interval: Duration::from_millis(200),
    client_timeout: Duration::from_secs(3),
};

async fn start(config: SessionConfig) -> (SocketAddr, SnapshotGroup) {
    start_in(SnapshotGroup::builder(), config, None).await
}

/// The chat in a group made by `builder`, restored from `snapshot` if given.
async fn start_in(
    builder: GroupBuilder,
    config: SessionConfig,
    snapshot: Option<&GlobalSnapshot>,
) -> (SocketAddr, SnapshotGroup) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let group = chat_adopted::start_with(builder, listener, config, snapshot).expect("started");
    (addr, group)
}

/// A scripted line client; it answers every `/ping` it reads with `/pong`.
struct Client {
    lines: Lines<BufReader<OwnedReadHalf>>,
    writer: OwnedWriteHalf,
    id: usize,
}

impl Client {
    /// Connects and waits until the server has registered the session.
    async fn connect(addr: SocketAddr) -> Client {
        let (read, writer) = TcpStream::connect(addr).await.unwrap().into_split();
        let mut client = Client {
            lines: BufReader::new(read).lines(),
            writer,
            id: 0,
        };
        let welcome = client.recv().await;
        client.id = welcome
            .strip_prefix("/welcome ")
            .and_then(|id| id.parse().ok())
            .unwrap_or_else(|| panic!("expected /welcome, got {welcome:?}"));
        client
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

    /// The first line `want` accepts, skipping the chat traffic and room
    /// notices of other clients before it.
    async fn recv_until(&mut self, want: impl Fn(&str) -> bool) -> String {
        loop {
            let line = self.recv().await;
            if want(&line) {
                return line;
            }
            assert!(
                !line.starts_with('/'),
                "unexpected {line:?} (client {})",
                self.id
            );
        }
    }

    /// After `/bye`: the server closes the connection. Room traffic and pings
    /// that the session wrote before its writer flushed may still come first.
    async fn expect_closed(self) {
        let mut lines = self.lines;
        while let Some(line) = timeout(DEADLINE, lines.next_line())
            .await
            .expect("the connection was never closed")
            .expect("read error")
        {
            assert!(
                line == "/ping" || !line.starts_with('/'),
                "{line:?} after /bye"
            );
        }
    }
}

/// What one snapshot showed, for the run's totals.
#[derive(Debug, Default, Clone, Copy)]
struct Seen {
    connected: usize,
    registering: usize,
    replies_in_flight: usize,
    disconnects_in_flight: usize,
}

/// Checks that `snap` is a consistent cut of the chat, from its recorded
/// states and in-flight messages only:
///
/// - the server's connected ids are exactly (as a multiset) the ids of the
///   sessions in the snapshot that believe they are connected, plus the ids
///   of `Connect` replies in flight to a session, plus the ids of
///   `Disconnect`s in flight to the server;
/// - no session in the snapshot has a `Disconnect` in flight (a session sends
///   it while it stops, and then it leaves the group), and a session with a
///   `Connect` reply in flight does not have an id yet;
/// - every room member is a connected id.
fn check_cut(snap: &GlobalSnapshot) -> Result<Seen, String> {
    let server_id = snap.node("server").map_err(|e| e.to_string())?.id;
    let server: ServerState = snap
        .state::<ChatServer>("server")
        .map_err(|e| e.to_string())?;
    let sessions: BTreeMap<NodeId, SessionState> = snap
        .states_named::<ChatSession>()
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|(name, state)| (snap.node(name).unwrap().id, state))
        .collect();
    let mut seen = Seen::default();
    let mut explained = Vec::new();
    for state in sessions.values() {
        match state.id {
            Some(id) => {
                seen.connected += 1;
                explained.push(id);
            }
            None => seen.registering += 1,
        }
    }
    for path in &snap.paths {
        if path.message_type == REPLY_TAG {
            // Replies are `Connect`'s id (an integer) or `ListRooms`' names
            // (an array); both only from the server to a session.
            let to = sessions
                .get(&path.to)
                .filter(|_| path.from == server_id)
                .ok_or_else(|| format!("a reply from {} to {}", path.from, path.to))?;
            for bytes in &path.messages {
                if let Ok(id) = rmp_serde::from_slice::<usize>(bytes) {
                    if to.id.is_some() {
                        return Err(format!("{to:?} has an id and an id in flight ({id})"));
                    }
                    seen.replies_in_flight += 1;
                    explained.push(id);
                } else if rmp_serde::from_slice::<Vec<String>>(bytes).is_err() {
                    return Err(format!(
                        "a reply that is neither an id nor a list: {bytes:?}"
                    ));
                }
            }
        } else if path.message_type == "Disconnect" {
            if path.to != server_id {
                return Err(format!("a Disconnect to {}", path.to));
            }
            if let Some(state) = sessions.get(&path.from) {
                return Err(format!(
                    "{state:?} is in the snapshot with a Disconnect in flight"
                ));
            }
            let msgs = snap
                .path_messages_by_id::<Disconnect>(path.from, path.to)
                .map_err(|e| e.to_string())?;
            seen.disconnects_in_flight += msgs.len();
            explained.extend(msgs.into_iter().map(|d| d.id));
        }
    }
    explained.sort_unstable();
    let mut connected: Vec<usize> = server.sessions.keys().copied().collect();
    connected.sort_unstable();
    if explained != connected {
        return Err(format!(
            "the server has {connected:?}, sessions and messages in flight explain {explained:?}"
        ));
    }
    for (room, members) in &server.rooms {
        if let Some(id) = members.iter().find(|id| !server.sessions.contains_key(id)) {
            return Err(format!("room {room:?} holds {id}, which is not connected"));
        }
    }
    Ok(seen)
}

/// One scripted client.
async fn script(addr: SocketAddr, n: usize) {
    let room = format!("room{}", n % 3);
    match n % 5 {
        // talks, moves to a room, lists the rooms, quits
        0 | 1 => {
            let mut c = Client::connect(addr).await;
            c.send(&format!("/name c{n}")).await;
            c.send("hello").await;
            c.send(&format!("/join {room}")).await;
            c.recv_until(|l| l.starts_with("/joined ")).await;
            c.send("hi room").await;
            c.send("/list").await;
            let rooms = c.recv_until(|l| l.starts_with("/rooms ")).await;
            let rooms: Vec<&str> = rooms.split(' ').skip(1).collect();
            assert!(
                rooms.contains(&"main") && rooms.contains(&room.as_str()),
                "{rooms:?}"
            );
            c.send("/quit").await;
            c.recv_until(|l| l == "/bye").await;
            c.expect_closed().await;
        }
        // joins a room and drops its socket
        2 => {
            let mut c = Client::connect(addr).await;
            c.send(&format!("/join {room}")).await;
            c.recv_until(|l| l.starts_with("/joined ")).await;
            c.send("bye all").await;
        }
        // connects and quits, again and again
        4 => {
            for _ in 0..20 {
                let mut c = Client::connect(addr).await;
                c.send("/quit").await;
                c.recv_until(|l| l == "/bye").await;
                c.expect_closed().await;
            }
        }
        // falls silent: never answers a ping, until the server drops it
        _ => {
            let c = Client::connect(addr).await;
            let mut lines = c.lines;
            while timeout(DEADLINE, lines.next_line())
                .await
                .expect("a silent client was never dropped")
                .expect("read error")
                .is_some()
            {}
        }
    }
}

#[actix::test]
async fn every_snapshot_under_load_is_a_consistent_cut() {
    churn_under_snapshots(SnapshotGroup::builder()).await;
}

/// As above with the server and the sessions spread over two threads of
/// their own, where a Disconnect can be caught in flight.
#[actix::test]
async fn every_snapshot_on_two_arbiters_is_a_consistent_cut() {
    let mut builder = SnapshotGroup::builder();
    builder.arbiters(2);
    churn_under_snapshots(builder).await;
}

async fn churn_under_snapshots(builder: GroupBuilder) {
    let (addr, group) = start_in(builder, QUICK, None).await;
    let done = std::cell::Cell::new(false);

    let clients = async {
        // four overlapping waves of ten clients (the pause only spreads them)
        let waves = (0..4).map(|wave| async move {
            tokio::time::sleep(wave as u32 * Duration::from_millis(300)).await;
            futures::future::join_all((0..10).map(|i| script(addr, wave * 10 + i))).await;
        });
        futures::future::join_all(waves).await;
        done.set(true);
    };
    let snapshots = async {
        let mut total = (0, Seen::default());
        let mut add = |snap: GlobalSnapshot| {
            let seen = check_cut(&snap).unwrap_or_else(|e| panic!("snapshot {}: {e}", snap.id));
            total.0 += 1;
            total.1.connected += seen.connected;
            total.1.registering += seen.registering;
            total.1.replies_in_flight += seen.replies_in_flight;
            total.1.disconnects_in_flight += seen.disconnects_in_flight;
        };
        while !done.get() {
            // two rounds at once, then a short pause for the clients
            let (a, b) = futures::join!(group.snapshot(), group.snapshot());
            add(a.expect("round a"));
            add(b.expect("round b"));
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        total
    };
    let ((), (count, seen)) = futures::join!(clients, snapshots);

    // Every session leaves in the end: wait for a snapshot that shows it.
    let deadline = Instant::now() + DEADLINE;
    loop {
        let snap = group.snapshot().await.expect("final round");
        check_cut(&snap).unwrap();
        let server: ServerState = snap.state::<ChatServer>("server").unwrap();
        if server.sessions.is_empty() && snap.states::<ChatSession>().unwrap().len() == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "sessions left: {server:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!("{count} snapshots checked; summed over them: {seen:?}");
    assert!(count >= 24, "only {count} snapshots");
    assert!(seen.connected > 0, "no snapshot caught a connected session");
    group.shutdown();
}

/// A snapshot with three connected clients, after the server has seen all of
/// them and their joins.
async fn three_clients(group: &SnapshotGroup, addr: SocketAddr) -> (Vec<Client>, GlobalSnapshot) {
    let mut clients = Vec::new();
    for room in ["rust", "go", "main"] {
        let mut c = Client::connect(addr).await;
        c.send(&format!("/join {room}")).await;
        c.recv_until(|l| l == format!("/joined {room}")).await;
        clients.push(c);
    }
    let last = clients.last_mut().unwrap();
    last.send("/list").await;
    last.recv_until(|l| l.starts_with("/rooms ")).await;
    let snap = group.snapshot().await.unwrap();
    (clients, snap)
}

/// The session node of the client with server id `id`.
fn session_of(snap: &GlobalSnapshot, id: usize) -> NodeId {
    let (name, _) = snap
        .states_named::<ChatSession>()
        .unwrap()
        .into_iter()
        .find(|(_, s)| s.id == Some(id))
        .unwrap();
    snap.node(name).unwrap().id
}

fn set_session_id(snap: &mut GlobalSnapshot, node: NodeId, id: Option<usize>) {
    let n = snap.nodes.iter_mut().find(|n| n.id == node).unwrap();
    let mut state: SessionState = rmp_serde::from_slice(&n.state).unwrap();
    state.id = id;
    n.state = rmp_serde::to_vec_named(&state).unwrap().into();
}

/// An in-flight path as the library records one (`PathSnapshot` is not
/// constructible outside the library, so it is built through serde).
fn path<M: Serialize>(from: NodeId, to: NodeId, tag: &str, msgs: &[M]) -> PathSnapshot {
    #[derive(Serialize)]
    struct P<'a> {
        from: NodeId,
        to: NodeId,
        message_type: &'a str,
        messages: Vec<Vec<u8>>,
    }
    let messages = msgs
        .iter()
        .map(|m| rmp_serde::to_vec_named(m).unwrap())
        .collect();
    let p = P {
        from,
        to,
        message_type: tag,
        messages,
    };
    rmp_serde::from_slice(&rmp_serde::to_vec_named(&p).unwrap()).unwrap()
}

#[actix::test]
async fn the_check_fails_on_inconsistent_cuts() {
    let (addr, group) = start(SessionConfig::default()).await;
    let (clients, real) = three_clients(&group, addr).await;
    check_cut(&real).expect("the real snapshot is consistent");
    let server = real.node("server").unwrap().id;
    let id = clients[0].id;
    let node = session_of(&real, id);

    // a session forgets its id
    let mut snap = real.clone();
    set_session_id(&mut snap, node, None);
    assert!(check_cut(&snap).is_err());

    // a session vanishes without a Disconnect
    let mut snap = real.clone();
    snap.nodes.retain(|n| n.id != node);
    assert!(check_cut(&snap).is_err());

    // ... with its Disconnect in flight that is a consistent cut; dropping
    // the in-flight Disconnect is not
    snap.paths
        .push(path(node, server, "Disconnect", &[Disconnect { id }]));
    check_cut(&snap).expect("a Disconnect in flight explains the id");
    snap.paths.clear();
    assert!(check_cut(&snap).is_err());

    // a session still in the snapshot has a Disconnect in flight
    let mut snap = real.clone();
    set_session_id(&mut snap, node, None);
    snap.paths
        .push(path(node, server, "Disconnect", &[Disconnect { id }]));
    assert!(check_cut(&snap).is_err());

    // the Connect reply in flight explains an id the session has not got
    // yet; without it the cut is inconsistent, and with the id as well too
    let mut snap = real.clone();
    set_session_id(&mut snap, node, None);
    snap.paths.push(path(server, node, REPLY_TAG, &[id]));
    check_cut(&snap).expect("a reply in flight explains the id");
    set_session_id(&mut snap, node, Some(id));
    assert!(check_cut(&snap).is_err());

    // a ListRooms reply in flight explains nothing
    let mut snap = real.clone();
    set_session_id(&mut snap, node, None);
    snap.paths
        .push(path(server, node, REPLY_TAG, &[vec!["main".to_owned()]]));
    assert!(check_cut(&snap).is_err());
    group.shutdown();
}

#[actix::test]
async fn a_checkpoint_brings_the_rooms_back() {
    let (addr, group) = start(SessionConfig::default()).await;
    let (clients, snap) = three_clients(&group, addr).await;
    check_cut(&snap).unwrap();
    let before: ServerState = snap.state::<ChatServer>("server").unwrap();
    assert_eq!(before.sessions.len(), 3);
    let bytes = snap.to_bytes();
    group.shutdown();
    drop(clients);

    let checkpoint = GlobalSnapshot::from_bytes(&bytes).unwrap();
    assert_eq!(checkpoint, snap);
    let builder = SnapshotGroup::builder();
    let (addr, group) = start_in(builder, SessionConfig::default(), Some(&checkpoint)).await;

    // the rooms are back, empty; the sessions are not
    let snap = group.snapshot().await.unwrap();
    check_cut(&snap).unwrap();
    let after: ServerState = snap.state::<ChatServer>("server").unwrap();
    assert_eq!(
        after.rooms.keys().collect::<BTreeSet<_>>(),
        before.rooms.keys().collect::<BTreeSet<_>>()
    );
    assert!(after.sessions.is_empty() && after.rooms.values().all(|m| m.is_empty()));
    assert_eq!(snap.states::<ChatSession>().unwrap().len(), 0);

    // a new client sees them, and they work as rooms do
    let mut dave = Client::connect(addr).await;
    dave.send("/list").await;
    assert_eq!(dave.recv().await, "/rooms go main rust");
    dave.send("/join rust").await;
    assert_eq!(dave.recv().await, "/joined rust");
    dave.send("/join main").await;
    assert_eq!(dave.recv().await, "/joined main");
    dave.send("/list").await;
    assert_eq!(dave.recv().await, "/rooms main", "empty rooms go once left");
    check_cut(&group.snapshot().await.unwrap()).unwrap();
    group.shutdown();
}

#[actix::test]
async fn a_restore_from_a_fresh_snapshot_is_a_fresh_chat() {
    let (_, group) = start(SessionConfig::default()).await;
    let snap = group.snapshot().await.unwrap();
    group.shutdown();
    let builder = SnapshotGroup::builder();
    let (addr, group) = start_in(builder, SessionConfig::default(), Some(&snap)).await;
    let mut client = Client::connect(addr).await;
    client.send("/list").await;
    assert_eq!(client.recv().await, "/rooms main");
    group.shutdown();
}
