//! `ChatServer` is the one actor that knows every session and every room.
//!
//! Sessions register with [`Connect`] (a request answered with the new
//! session id), leave with [`Disconnect`], move between rooms with [`Join`],
//! ask for the room list with [`ListRooms`] and publish with
//! [`ClientMessage`]. The server delivers text back to sessions as
//! [`ServerMessage`] through their `Recipient`s; it never touches sockets.

use std::collections::{HashMap, HashSet};

use actix::prelude::*;
use actix_snapshot::{NodeAddr, NodeRecipient, Snapshot};
use serde::{Deserialize, Serialize};
use tracing::{debug, info};

use crate::session::ChatSession;

/// The room every session starts in; it always exists.
pub const DEFAULT_ROOM: &str = "main";

/// Text the server delivers to a session, to be written to its client.
#[derive(Message, Debug, Clone, Serialize, Deserialize)]
#[rtype(result = "()")]
pub struct ServerMessage(pub String);

/// A new session registers itself; the answer is its unique id.
#[derive(Message, Serialize, Deserialize)]
#[rtype(result = "usize")]
pub struct Connect {
    /// Where the server sends this session's traffic.
    pub addr: NodeAddr<ChatSession>,
    /// The session's display name, announced to the default room.
    pub name: String,
}

/// A session is gone; forget it and tell its room.
#[derive(Message, Serialize, Deserialize)]
#[rtype(result = "()")]
pub struct Disconnect {
    /// Id returned by [`Connect`].
    pub id: usize,
}

/// A chat message for everyone else in `room`.
#[derive(Message, Serialize, Deserialize)]
#[rtype(result = "()")]
pub struct ClientMessage {
    /// Id of the sending session, which does not get its own message back.
    pub id: usize,
    /// The text to deliver, already prefixed with the sender's name.
    pub msg: String,
    /// The room to deliver to.
    pub room: String,
}

/// Asks for the names of all rooms, sorted.
#[derive(Message, Serialize, Deserialize)]
#[rtype(result = "Vec<String>")]
pub struct ListRooms;

/// Moves a session into a room, creating the room if needed.
#[derive(Message, Serialize, Deserialize)]
#[rtype(result = "()")]
pub struct Join {
    /// Id of the session that moves.
    pub id: usize,
    /// Name of the room to join.
    pub name: String,
}

/// What a snapshot records of the server: its rooms and the ids of its
/// sessions with the names they connected under.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServerState {
    pub rooms: HashMap<String, HashSet<usize>>,
    pub sessions: HashMap<usize, String>,
}

/// Keeps the sessions and the rooms and routes messages between them.
#[derive(Debug, Snapshot)]
#[snapshot(state_type = ServerState, state_fn = Self::state)]
#[snapshot(messages(Connect, Disconnect, ClientMessage, ListRooms, Join))]
pub struct ChatServer {
    sessions: HashMap<usize, (NodeRecipient<ServerMessage>, String)>,
    rooms: HashMap<String, HashSet<usize>>,
    next_id: usize,
}

impl Default for ChatServer {
    fn default() -> Self {
        ChatServer {
            sessions: HashMap::new(),
            rooms: HashMap::from([(DEFAULT_ROOM.to_owned(), HashSet::new())]),
            next_id: 1,
        }
    }
}

impl ChatServer {
    /// The server after a restore: the rooms of `state`, emptied (their
    /// sessions' connections are gone).
    pub fn restored(state: Option<ServerState>) -> Self {
        let mut server = ChatServer::default();
        let rooms = state.into_iter().flat_map(|state| state.rooms.into_keys());
        server.rooms.extend(rooms.map(|r| (r, HashSet::new())));
        server
    }

    fn state(&self) -> ServerState {
        let sessions = self.sessions.iter().map(|(id, s)| (*id, s.1.clone()));
        let (rooms, sessions) = (self.rooms.clone(), sessions.collect());
        ServerState { rooms, sessions }
    }

    /// Sends `message` to every session in `room` except `skip_id`.
    fn send_message(&self, room: &str, message: &str, skip_id: usize) {
        let Some(members) = self.rooms.get(room) else {
            return;
        };
        for id in members.iter().filter(|&&id| id != skip_id) {
            if let Some((addr, _)) = self.sessions.get(id) {
                addr.do_send(ServerMessage(message.to_owned()));
            }
        }
    }

    /// Removes `id` from every room, telling those rooms `notice`, and drops
    /// rooms that became empty (except the default one).
    fn leave_rooms(&mut self, id: usize, notice: &str) {
        let mut left = Vec::new();
        for (name, members) in &mut self.rooms {
            if members.remove(&id) {
                left.push(name.clone());
            }
        }
        for room in &left {
            self.send_message(room, notice, id);
        }
        self.rooms
            .retain(|name, members| name == DEFAULT_ROOM || !members.is_empty());
    }
}

impl Actor for ChatServer {
    type Context = Context<Self>;
}

impl Handler<Connect> for ChatServer {
    type Result = MessageResult<Connect>;

    fn handle(&mut self, msg: Connect, _: &mut Context<Self>) -> Self::Result {
        let id = self.next_id;
        self.next_id += 1;
        info!(id, name = %msg.name, "session connected");

        self.send_message(DEFAULT_ROOM, &format!("{} connected", msg.name), 0);
        self.sessions.insert(id, (msg.addr.recipient(), msg.name));
        self.rooms
            .entry(DEFAULT_ROOM.to_owned())
            .or_default()
            .insert(id);
        MessageResult(id)
    }
}

impl Handler<Disconnect> for ChatServer {
    type Result = ();

    fn handle(&mut self, msg: Disconnect, _: &mut Context<Self>) {
        info!(id = msg.id, "session disconnected");
        if self.sessions.remove(&msg.id).is_some() {
            self.leave_rooms(msg.id, "someone disconnected");
        }
    }
}

impl Handler<ClientMessage> for ChatServer {
    type Result = ();

    fn handle(&mut self, msg: ClientMessage, _: &mut Context<Self>) {
        debug!(id = msg.id, room = %msg.room, "chat message");
        self.send_message(&msg.room, &msg.msg, msg.id);
    }
}

impl Handler<ListRooms> for ChatServer {
    type Result = MessageResult<ListRooms>;

    fn handle(&mut self, _: ListRooms, _: &mut Context<Self>) -> Self::Result {
        let mut rooms: Vec<String> = self.rooms.keys().cloned().collect();
        rooms.sort();
        MessageResult(rooms)
    }
}

impl Handler<Join> for ChatServer {
    type Result = ();

    fn handle(&mut self, msg: Join, _: &mut Context<Self>) {
        let Join { id, name } = msg;
        if !self.sessions.contains_key(&id) {
            return;
        }
        self.leave_rooms(id, "someone left");
        self.send_message(&name, "someone joined", id);
        self.rooms.entry(name).or_default().insert(id);
    }
}
