//! `ChatSession` is the actor behind one TCP connection.
//!
//! The read half of the socket is attached to the actor's context as a stream
//! of [`ChatRequest`]s (`StreamHandler`); the write half is wrapped in an
//! [`actix::io::FramedWrite`] that encodes [`ChatResponse`]s. On start the
//! session registers with the [`ChatServer`] and waits for its id; from then on
//! it turns client commands into server messages and writes whatever the
//! server sends it ([`ServerMessage`]) back to the client. A heartbeat pings
//! the client and drops it once it has been silent for too long.

use std::io;
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_snapshot::{NodeAddr, NodeContext, Snapshot};
use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;
use tokio_util::codec::FramedRead;
use tracing::{debug, warn};

use crate::codec::{ChatCodec, ChatRequest, ChatResponse};
use crate::server::{
    self, ChatServer, ClientMessage, Connect, DEFAULT_ROOM, Disconnect, ListRooms, ServerMessage,
};

/// How often a session pings its client, by default.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);
/// How long a client may stay silent before it is dropped, by default.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

/// Heartbeat settings of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionConfig {
    /// Time between two `/ping`s (and two liveness checks).
    pub heartbeat_interval: Duration,
    /// Silence after which the session closes the connection.
    pub client_timeout: Duration,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            heartbeat_interval: HEARTBEAT_INTERVAL,
            client_timeout: CLIENT_TIMEOUT,
        }
    }
}

/// The framed write half of a client connection, once `started` attached it.
#[derive(Default)]
pub struct ChatWriter(Option<actix::io::FramedWrite<ChatResponse, OwnedWriteHalf, ChatCodec>>);

impl ChatWriter {
    fn write(&mut self, response: ChatResponse) {
        if let Some(framed) = &mut self.0 {
            framed.write(response);
        }
    }

    fn close(&mut self) {
        if let Some(framed) = &mut self.0 {
            framed.close();
        }
    }
}

/// What a snapshot records of a session: its id (`None` until registered),
/// its name and its room.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionState {
    pub id: Option<usize>,
    pub name: String,
    pub room: String,
}

/// Proxies one TCP client to the [`ChatServer`].
#[derive(Snapshot)]
#[snapshot(state_type = SessionState, state_fn = Self::state, messages(ServerMessage))]
pub struct ChatSession {
    /// Id assigned by the server; 0 until registered.
    id: usize,
    /// The chat server.
    addr: NodeAddr<ChatServer>,
    /// Last time the client sent anything.
    hb: Instant,
    /// The room this session is in.
    room: String,
    /// Name prefixed to this client's messages.
    name: String,
    /// The connection, until `started` attaches it.
    stream: Option<TcpStream>,
    /// Where responses to the client go.
    framed: ChatWriter,
    config: SessionConfig,
}

impl ChatSession {
    /// Creates a session for a client called `name`, talking over `stream`.
    pub fn new(
        addr: NodeAddr<ChatServer>,
        name: String,
        stream: TcpStream,
        config: SessionConfig,
    ) -> Self {
        ChatSession {
            id: 0,
            addr,
            hb: Instant::now(),
            room: DEFAULT_ROOM.to_owned(),
            name,
            stream: Some(stream),
            framed: ChatWriter::default(),
            config,
        }
    }

    fn state(&self) -> SessionState {
        let id = (self.id != 0).then_some(self.id);
        let (name, room) = (self.name.clone(), self.room.clone());
        SessionState { id, name, room }
    }

    /// Pings the client every interval and stops the session once the client
    /// has been silent for longer than the timeout.
    fn hb(&self, ctx: &mut Context<Self>) {
        ctx.run_interval(self.config.heartbeat_interval, |act, ctx| {
            if Instant::now().duration_since(act.hb) > act.config.client_timeout {
                warn!(id = act.id, "client heartbeat failed, disconnecting");
                ctx.stop();
                return;
            }
            act.framed.write(ChatResponse::Ping);
        });
    }
}

impl Actor for ChatSession {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // The constructor runs without a context: attach the connection now.
        let (read, write) = self.stream.take().expect("started once").into_split();
        ctx.add_stream(FramedRead::new(read, ChatCodec::default()));
        let framed = actix::io::FramedWrite::new(write, ChatCodec::default(), ctx);
        self.framed = ChatWriter(Some(framed));
        self.hb(ctx);

        // Register with the chat server. `wait` holds back every other event of
        // this actor (client lines, server messages) until the id is known.
        let connect = Connect {
            addr: ctx.node_addr().expect("a node"),
            name: self.name.clone(),
        };
        self.addr
            .send(connect)
            .into_actor(self)
            .then(|res, act, ctx| {
                match res {
                    Ok(id) => {
                        act.id = id;
                        act.framed.write(ChatResponse::Welcome(id));
                    }
                    // the chat server is gone
                    Err(_) => ctx.stop(),
                }
                fut::ready(())
            })
            .wait(ctx);
    }

    fn stopping(&mut self, _: &mut Self::Context) -> Running {
        if self.id != 0 {
            self.addr.do_send(Disconnect { id: self.id });
        }
        Running::Stop
    }
}

/// The chat server's messages go straight to the client.
impl Handler<ServerMessage> for ChatSession {
    type Result = ();

    fn handle(&mut self, msg: ServerMessage, _: &mut Self::Context) {
        self.framed.write(ChatResponse::Message(msg.0));
    }
}

/// Lines from the client.
impl StreamHandler<Result<ChatRequest, io::Error>> for ChatSession {
    fn handle(&mut self, msg: Result<ChatRequest, io::Error>, ctx: &mut Self::Context) {
        let request = match msg {
            Ok(request) => request,
            Err(err) => {
                debug!(id = self.id, %err, "read error, closing session");
                ctx.stop();
                return;
            }
        };
        // any line from the client proves it is alive
        self.hb = Instant::now();

        match request {
            ChatRequest::List => {
                // Ask the server and hold other events until the answer is written.
                self.addr
                    .send(ListRooms)
                    .into_actor(self)
                    .then(|res, act, ctx| {
                        match res {
                            Ok(rooms) => act.framed.write(ChatResponse::Rooms(rooms)),
                            Err(_) => ctx.stop(),
                        }
                        fut::ready(())
                    })
                    .wait(ctx);
            }
            ChatRequest::Join(room) => {
                debug!(id = self.id, %room, "join");
                self.room = room.clone();
                self.addr.do_send(server::Join {
                    id: self.id,
                    name: room.clone(),
                });
                self.framed.write(ChatResponse::Joined(room));
            }
            ChatRequest::Name(name) => self.name = name,
            ChatRequest::Quit => {
                // Say goodbye; the writer stops the actor once the line is flushed.
                self.framed.write(ChatResponse::Bye);
                self.framed.close();
            }
            ChatRequest::Pong => {}
            ChatRequest::Message(text) if text.is_empty() => {}
            ChatRequest::Message(text) => self.addr.do_send(ClientMessage {
                id: self.id,
                msg: format!("{}: {}", self.name, text),
                room: self.room.clone(),
            }),
            ChatRequest::Invalid(line) => {
                self.framed
                    .write(ChatResponse::Error(format!("cannot understand {line:?}")));
            }
        }
    }
}

/// Write errors stop the session (the default behaviour).
impl actix::io::WriteHandler<io::Error> for ChatSession {}
