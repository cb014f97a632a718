//! The line protocol spoken between a TCP client and its [`ChatSession`].
//!
//! Every frame is one UTF-8 line. [`ChatCodec`] wraps tokio-util's
//! [`LinesCodec`] and turns lines into typed values: client lines decode into
//! [`ChatRequest`]s, and the session encodes [`ChatResponse`]s back into lines.
//!
//! Client → server: `/list`, `/join ROOM`, `/name NAME`, `/quit`, `/pong`
//! (heartbeat reply); any other line not starting with `/` is a chat message.
//!
//! Server → client: `/welcome ID`, `/ping`, `/rooms ROOM...`, `/joined ROOM`,
//! `/bye`, `/error TEXT`, and plain lines for chat traffic.
//!
//! [`ChatSession`]: crate::session::ChatSession

use std::io;

use tokio_util::bytes::BytesMut;
use tokio_util::codec::{Decoder, Encoder, LinesCodec, LinesCodecError};

/// Longest line accepted from a client; longer lines are a protocol error.
pub const MAX_LINE_LENGTH: usize = 4096;

/// A command or message sent by a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatRequest {
    /// `/list`: ask for the names of all rooms.
    List,
    /// `/join ROOM`: move to another room (created on demand).
    Join(String),
    /// `/name NAME`: change the name that prefixes this client's messages.
    Name(String),
    /// `/quit`: leave the chat and close the connection.
    Quit,
    /// `/pong`: heartbeat reply; carries no other meaning.
    Pong,
    /// Any other line: a chat message for the current room.
    Message(String),
    /// A malformed or unknown command, kept verbatim for the error reply.
    Invalid(String),
}

/// A line sent by the server to a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatResponse {
    /// `/welcome ID`: the session is registered and sits in the default room.
    Welcome(usize),
    /// `/ping`: heartbeat; any line from the client counts as the answer.
    Ping,
    /// `/rooms ROOM...`: answer to `/list`.
    Rooms(Vec<String>),
    /// `/joined ROOM`: answer to `/join`.
    Joined(String),
    /// `/bye`: answer to `/quit`; the server closes the connection after it.
    Bye,
    /// `/error TEXT`: the request could not be understood.
    Error(String),
    /// A chat line or room notice, written verbatim.
    Message(String),
}

impl ChatRequest {
    /// Parses one client line.
    pub fn parse(line: &str) -> Self {
        let line = line.trim_end();
        let Some(command) = line.strip_prefix('/') else {
            return ChatRequest::Message(line.to_owned());
        };
        let (verb, arg) = match command.split_once(' ') {
            Some((verb, arg)) => (verb, arg.trim()),
            None => (command, ""),
        };
        match (verb, arg) {
            ("list", "") => ChatRequest::List,
            ("quit", "") => ChatRequest::Quit,
            ("pong", _) => ChatRequest::Pong,
            ("join", room) if is_word(room) => ChatRequest::Join(room.to_owned()),
            ("name", name) if is_word(name) => ChatRequest::Name(name.to_owned()),
            _ => ChatRequest::Invalid(line.to_owned()),
        }
    }
}

/// Room and user names are single non-empty words.
fn is_word(s: &str) -> bool {
    !s.is_empty() && !s.contains(char::is_whitespace)
}

/// Codec for the chat line protocol, used for both halves of a connection.
#[derive(Debug, Clone)]
pub struct ChatCodec {
    lines: LinesCodec,
}

impl Default for ChatCodec {
    fn default() -> Self {
        ChatCodec {
            lines: LinesCodec::new_with_max_length(MAX_LINE_LENGTH),
        }
    }
}

fn into_io_error(err: LinesCodecError) -> io::Error {
    match err {
        LinesCodecError::Io(err) => err,
        err @ LinesCodecError::MaxLineLengthExceeded => {
            io::Error::new(io::ErrorKind::InvalidData, err)
        }
    }
}

impl Decoder for ChatCodec {
    type Item = ChatRequest;
    type Error = io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> io::Result<Option<ChatRequest>> {
        let line = self.lines.decode(src).map_err(into_io_error)?;
        Ok(line.as_deref().map(ChatRequest::parse))
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> io::Result<Option<ChatRequest>> {
        let line = self.lines.decode_eof(src).map_err(into_io_error)?;
        Ok(line.as_deref().map(ChatRequest::parse))
    }
}

impl Encoder<ChatResponse> for ChatCodec {
    type Error = io::Error;

    fn encode(&mut self, item: ChatResponse, dst: &mut BytesMut) -> io::Result<()> {
        let line = match item {
            ChatResponse::Welcome(id) => format!("/welcome {id}"),
            ChatResponse::Ping => "/ping".to_owned(),
            ChatResponse::Rooms(rooms) => format!("/rooms {}", rooms.join(" ")),
            ChatResponse::Joined(room) => format!("/joined {room}"),
            ChatResponse::Bye => "/bye".to_owned(),
            ChatResponse::Error(text) => format!("/error {text}"),
            ChatResponse::Message(text) => text,
        };
        self.lines.encode(line, dst).map_err(into_io_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_commands_and_messages() {
        assert_eq!(ChatRequest::parse("/list"), ChatRequest::List);
        assert_eq!(
            ChatRequest::parse("/join rust"),
            ChatRequest::Join("rust".into())
        );
        assert_eq!(
            ChatRequest::parse("/name  bob \r"),
            ChatRequest::Name("bob".into())
        );
        assert_eq!(ChatRequest::parse("/quit"), ChatRequest::Quit);
        assert_eq!(
            ChatRequest::parse("hello"),
            ChatRequest::Message("hello".into())
        );
        assert_eq!(
            ChatRequest::parse("/join"),
            ChatRequest::Invalid("/join".into())
        );
        assert_eq!(
            ChatRequest::parse("/join a b"),
            ChatRequest::Invalid("/join a b".into())
        );
        assert_eq!(
            ChatRequest::parse("/dance"),
            ChatRequest::Invalid("/dance".into())
        );
    }

    #[test]
    fn encodes_responses_as_lines() {
        let mut codec = ChatCodec::default();
        let mut buf = BytesMut::new();
        codec
            .encode(
                ChatResponse::Rooms(vec!["main".into(), "rust".into()]),
                &mut buf,
            )
            .unwrap();
        codec
            .encode(ChatResponse::Message("bob: hi".into()), &mut buf)
            .unwrap();
        assert_eq!(&buf[..], b"/rooms main rust\nbob: hi\n");
    }
}
