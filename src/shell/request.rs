//! Request/response: [`Request`], the future [`NodeAddr::send`](crate::NodeAddr::send)
//! returns, and [`RequestActFuture`], its form for a node's own context.
//!
//! From outside the group a request is what it is in actix: the message goes in, the
//! handler's result comes back. Between nodes both halves are messages of the protocol: the
//! request is colored and counted like any message, and so is the reply, which the replying
//! node sends as soon as its handler produces it. The requester *receives* the reply when its
//! code takes it:
//!
//! - `addr.send(m).into_actor(self)` (the usual actix shape, with `.map`/`.then` and
//!   `ctx.spawn`/`ctx.wait`): the reply is received in the continuation, with the actor at
//!   hand, exactly like a message — if it comes from after a cut the node records first.
//! - `addr.send(m).await` inside a future the node runs (an `async` block given to
//!   `ctx.spawn`): received when the future takes it; a reply from after a cut first waits
//!   for the node to record, which the node does as its next message.
//! - awaited anywhere else (a future given to `actix::spawn`, another thread): the reply is
//!   received by the node's mailbox and its value handed to that future. What the future
//!   does with it is outside every snapshot, like all work in an unfinished future.
//!
//! A request to a node that stops before it replies, or whose group shuts down, fails with
//! [`RequestError`]; it never hangs.
//!
//! ```
//! use actix::prelude::*;
//! use actix_snapshot::{NodeAddr, Snapshot, SnapshotGroup};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Message, Serialize, Deserialize)]
//! #[rtype(result = "u64")]
//! struct Next;
//!
//! #[derive(Message, Serialize, Deserialize)]
//! #[rtype(result = "()")]
//! struct Pull;
//!
//! #[derive(Snapshot)]
//! #[snapshot(state = n, messages(Next))]
//! struct Source { n: u64 }
//! impl Actor for Source { type Context = Context<Self>; }
//! impl Handler<Next> for Source {
//!     type Result = u64;
//!     fn handle(&mut self, _: Next, _: &mut Context<Self>) -> u64 { self.n += 1; self.n }
//! }
//!
//! #[derive(Snapshot)]
//! #[snapshot(state = sum, messages(Pull))]
//! struct Sink { sum: u64, source: NodeAddr<Source> }
//! impl Actor for Sink { type Context = Context<Self>; }
//! impl Handler<Pull> for Sink {
//!     type Result = ();
//!     fn handle(&mut self, _: Pull, ctx: &mut Context<Self>) {
//!         self.source
//!             .send(Next)
//!             .into_actor(self)                       // the reply is received here
//!             .map(|got, act, _ctx| act.sum += got.unwrap_or(0))
//!             .wait(ctx);
//!     }
//! }
//!
//! # #[actix::main] async fn main() {
//! let group = SnapshotGroup::new().unwrap();
//! let source = group.spawn("source", || Source { n: 0 }).unwrap();
//! let sink = group.spawn("sink", move || Sink { sum: 0, source }).unwrap();
//! for _ in 0..3 { sink.do_send(Pull); }
//! sink.send(Pull).await.unwrap();
//! let snap = group.snapshot().await.unwrap();
//! assert_eq!(snap.state::<Source>("source").unwrap(), 4);
//! assert_eq!(snap.state::<Sink>("sink").unwrap(), 1 + 2 + 3 + 4);
//! group.shutdown();
//! # }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use actix::{ActorFuture, Context};
use tokio::sync::oneshot;

use crate::protocol::NodeId;
use crate::shell::actor::{Snapshottable, record};
use crate::shell::cell::current;
use crate::shell::envelope::{Payload, REPLY_TAG, Reply, encode};
use crate::shell::runtime::Control;

/// Why a request got no reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// The node stopped (or its group shut down) before it replied.
    #[error("the node stopped before it replied")]
    Stopped,
    /// The address resolves to no node (an address decoded outside a restore).
    #[error("the address resolves to no node")]
    Unresolved,
}

/// The reply to [`NodeAddr::send`](crate::NodeAddr::send): a future of the handler's result.
/// See the [module docs](self) for how a reply between nodes counts.
#[must_use = "a request does nothing unless its reply is awaited (use do_send to send without one)"]
pub struct Request<R: Payload> {
    state: State<R>,
}

enum State<R: Payload> {
    Outside(oneshot::Receiver<R>),
    Node {
        rx: oneshot::Receiver<Reply<R>>,
        requester: NodeId,
        group: u64,
        got: Option<Reply<R>>,
        asked: bool,
    },
    Failed(Option<RequestError>),
}

impl<R: Payload> Request<R> {
    pub(crate) fn outside(rx: oneshot::Receiver<R>) -> Self {
        Request {
            state: State::Outside(rx),
        }
    }

    pub(crate) fn node(rx: oneshot::Receiver<Reply<R>>, requester: NodeId, group: u64) -> Self {
        Request {
            state: State::Node {
                rx,
                requester,
                group,
                got: None,
                asked: false,
            },
        }
    }

    pub(crate) fn failed(e: RequestError) -> Self {
        Request {
            state: State::Failed(Some(e)),
        }
    }

    /// This request as a future of the actor `act` that sent it, for actix's
    /// `.map(|res, act, ctx| ..)`, `ctx.spawn` and `ctx.wait`: the reply is received in the
    /// actor's context, exactly like a message. (Takes the place of actix's
    /// `WrapFuture::into_actor`, which it shadows.)
    pub fn into_actor<A: Snapshottable>(self, act: &A) -> RequestActFuture<A, R> {
        let _ = act;
        RequestActFuture {
            req: self,
            _actor: std::marker::PhantomData,
        }
    }

    /// Polls for the reply; `receive` takes a reply between nodes that reached the requester's
    /// own task, and says whether it was received (or must wait for the node to record).
    fn poll_with(
        &mut self,
        cx: &mut TaskContext<'_>,
        receive: impl FnOnce(&mut Reply<R>) -> bool,
    ) -> Poll<Result<R, RequestError>> {
        match &mut self.state {
            State::Failed(e) => Poll::Ready(Err(e.take().unwrap_or(RequestError::Stopped))),
            State::Outside(rx) => Pin::new(rx)
                .poll(cx)
                .map(|r| r.map_err(|_| RequestError::Stopped)),
            State::Node {
                rx,
                requester,
                group,
                got,
                asked,
            } => {
                if got.is_none() {
                    match Pin::new(rx).poll(cx) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Err(_)) => return Poll::Ready(Err(RequestError::Stopped)),
                        Poll::Ready(Ok(reply)) => *got = Some(reply),
                    }
                }
                let Some(reply) = got.as_mut() else {
                    return Poll::Ready(Err(RequestError::Stopped));
                };
                let here =
                    current().is_some_and(|c| c.meta.group == *group && c.meta.id == *requester);
                if !here {
                    // Awaited outside the requester's task: its mailbox receives it.
                    let value = reply.absorb();
                    *got = None;
                    return Poll::Ready(value.ok_or(RequestError::Stopped));
                }
                if receive(reply) {
                    let value = reply.value.take();
                    *got = None;
                    return Poll::Ready(value.ok_or(RequestError::Stopped));
                }
                // From after a cut the node has not made yet: it records first (as its next
                // message), then this future takes the reply.
                if !*asked {
                    *asked = true;
                    reply.home.do_send(Control::CatchUp(reply.color));
                }
                cx.waker().wake_by_ref();
                Poll::Pending
            }
        }
    }
}

/// Receives `reply` at the current node if no record must come first.
fn receive_here<R: Payload>(reply: &mut Reply<R>) -> bool {
    let Some(cell) = current() else { return false };
    if reply.color > cell.core.borrow().epoch() {
        return false;
    }
    let (from, color) = (reply.from, reply.color);
    let value = &reply.value;
    cell.input(|core| {
        core.handle_message(
            color,
            from,
            || match value {
                Some(v) => encode(v, REPLY_TAG),
                None => Err("the reply was taken".into()),
            },
            || Err("no record expected".into()),
        )
    });
    true
}

// Nothing is pinned structurally: the reply is moved out, never polled in place.
impl<R: Payload> Unpin for Request<R> {}

impl<R: Payload> Future for Request<R> {
    type Output = Result<R, RequestError>;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        self.get_mut().poll_with(cx, receive_here)
    }
}

impl<R: Payload> std::fmt::Debug for Request<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &self.state {
            State::Outside(_) => "outside",
            State::Node { .. } => "node",
            State::Failed(_) => "failed",
        };
        f.debug_struct("Request").field("from", &kind).finish()
    }
}

/// A [`Request`] as a future of the actor that sent it (see [`Request::into_actor`]): the
/// reply is received with the actor at hand, so a reply from after a cut makes the node
/// record first, as a message does.
#[must_use = "an actor future does nothing unless spawned or waited on its context"]
pub struct RequestActFuture<A, R: Payload> {
    req: Request<R>,
    _actor: std::marker::PhantomData<fn(A)>,
}

impl<A: Snapshottable, R: Payload> ActorFuture<A> for RequestActFuture<A, R> {
    type Output = Result<R, RequestError>;

    fn poll(
        self: Pin<&mut Self>,
        act: &mut A,
        _ctx: &mut Context<A>,
        task: &mut TaskContext<'_>,
    ) -> Poll<Self::Output> {
        let this = self.get_mut();
        this.req.poll_with(task, |reply| {
            let Some(cell) = current() else { return false };
            let (from, color) = (reply.from, reply.color);
            let value = &reply.value;
            let meta = &cell.meta;
            cell.input(|core| {
                core.handle_message(
                    color,
                    from,
                    || match value {
                        Some(v) => encode(v, REPLY_TAG),
                        None => Err("the reply was taken".into()),
                    },
                    || record(act, meta),
                )
            });
            true
        })
    }
}
