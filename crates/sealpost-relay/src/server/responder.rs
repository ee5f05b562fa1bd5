//! Writing a connection's responses together (a performance trick, kept here).
//!
//! A request's task that writes its response itself wakes the connection's quinn driver,
//! which then runs before the next request's task (tokio runs a task woken by the running
//! one next) and sends that one response in a packet of its own. When a group commit
//! answers 16 pipelined `Send`s of one connection at once, that is 16 packets where one
//! would do. So a finished response is queued on its connection's [`Responder`]: the first
//! task to queue one becomes the writer, lets the other runnable tasks go first
//! ([`tokio::task::yield_now`]: they queue theirs meanwhile), then writes everything queued,
//! stream after stream without waiting in between, so the driver sends them in one flight.
//! No timer: the writer waits only for tasks that are already runnable. No task of its own
//! either: an idle connection keeps an empty queue and nothing else.

use super::requests::WRITE_TIMEOUT;
use super::*;
use std::future::Future as _;
use std::task::Poll;

/// A connection's queue of finished responses (see the module documentation).
#[derive(Default)]
pub(super) struct Responder {
    state: Mutex<Queue>,
}

#[derive(Default)]
struct Queue {
    /// Responses waiting for the writer, in the order they were queued.
    waiting: Vec<(SendStream, Vec<u8>)>,
    /// A task is writing (or about to write) the queue.
    writing: bool,
}

impl Responder {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Writes `frame` on `send` and finishes the stream, together with the other responses
    /// of this connection that are ready at the same time; then waits (up to
    /// `WRITE_TIMEOUT`) until the peer has the whole frame, so a graceful shutdown loses no
    /// response. `false` if the stream or connection failed, or the wait timed out.
    pub(super) async fn respond(&self, send: SendStream, frame: Vec<u8>) -> bool {
        // Built before the stream is handed over: it outlives the stream handle (quinn keeps
        // a finished stream's data until the peer has it).
        let stopped = send.stopped();
        let lead = {
            let mut q = self.lock();
            q.waiting.push((send, frame));
            !std::mem::replace(&mut q.writing, true)
        };
        if lead {
            let mut writer = Writer {
                responder: self,
                done: false,
            };
            // The connection's other responses that are ready now get queued meanwhile.
            tokio::task::yield_now().await;
            writer.write_queued().await;
        }
        matches!(
            tokio::time::timeout(WRITE_TIMEOUT, stopped).await,
            Ok(Ok(None))
        )
    }
}

/// The writer's role, held by one task at a time; given back when the queue is empty, or if
/// the writing task is dropped (then the next response's task writes what is left).
struct Writer<'a> {
    responder: &'a Responder,
    /// The role was given back (under the queue's lock, together with seeing it empty).
    done: bool,
}

impl Writer<'_> {
    /// Writes and finishes every queued response until the queue is empty.
    async fn write_queued(&mut self) {
        loop {
            let batch = {
                let mut q = self.responder.lock();
                if q.waiting.is_empty() {
                    q.writing = false;
                    self.done = true;
                    return;
                }
                std::mem::take(&mut q.waiting)
            };
            for (mut send, frame) in batch {
                match write_now(&mut send, &frame).await {
                    Some(n) if n == frame.len() => {
                        let _ = send.finish();
                    }
                    // The stream does not take the whole response now (the peer's window for
                    // it is smaller, a rare client): the rest goes from a task of its own, so
                    // the connection's other responses do not wait for this peer to read.
                    Some(n) => {
                        tokio::spawn(write_rest(send, frame, n));
                    }
                    None => {
                        tokio::spawn(write_rest(send, frame, 0));
                    }
                }
            }
        }
    }
}

/// Writes what `send` takes of `frame` without waiting: `Some(bytes written)`, or `None` if
/// it takes nothing now (a failed stream is reset by its handle's drop).
async fn write_now(send: &mut SendStream, frame: &[u8]) -> Option<usize> {
    let mut write = std::pin::pin!(send.write(frame));
    std::future::poll_fn(|cx| match write.as_mut().poll(cx) {
        Poll::Ready(Ok(n)) => Poll::Ready(Some(n)),
        Poll::Ready(Err(_)) | Poll::Pending => Poll::Ready(None),
    })
    .await
}

/// Writes `frame[from..]` and finishes the stream, within `WRITE_TIMEOUT`.
async fn write_rest(mut send: SendStream, frame: Vec<u8>, from: usize) {
    let rest = frame.get(from..).unwrap_or_default();
    match tokio::time::timeout(WRITE_TIMEOUT, send.write_all(rest)).await {
        Ok(Ok(())) => {
            let _ = send.finish();
        }
        _ => {
            let _ = send.reset(VarInt::from_u32(STREAM_ABANDONED));
        }
    }
}

impl Drop for Writer<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.responder.lock().writing = false;
        }
    }
}
