//! A connection's outbound queue: the engine pushes frames, the connection's task takes them
//! all at once and writes them in one go. Cheaper than a channel while idle (an empty
//! `VecDeque` holds no memory) and it counts queued bytes for the slow-client limit.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::task::AtomicWaker;
use shared::protocol::Disconnect;

/// What a connection's writer receives.
#[derive(Debug)]
pub enum Out {
    Data(Bytes),
    /// A server ping (also a WebSocket ping frame on uni WebSocket).
    Ping(Bytes),
    Close(Disconnect),
}

impl Out {
    fn len(&self) -> usize {
        match self {
            Out::Data(b) | Out::Ping(b) => b.len(),
            Out::Close(_) => 0,
        }
    }
}

#[derive(Default)]
pub struct Outbox {
    frames: Mutex<Frames>,
    waker: AtomicWaker,
    /// Bytes pushed and not yet written.
    queued: AtomicUsize,
}

#[derive(Default)]
struct Frames {
    queue: VecDeque<Out>,
    /// The writer is gone: pushing is pointless.
    gone: bool,
    /// A `Close` is queued: nothing after it matters.
    closing: bool,
}

impl Outbox {
    /// Queues a frame; returns the bytes now waiting, or None when the writer is gone.
    pub fn push(&self, out: Out) -> Option<usize> {
        let len = out.len();
        let queued = {
            let mut f = self.frames.lock().unwrap_or_else(|e| e.into_inner());
            if f.gone || f.closing {
                return None;
            }
            f.closing = matches!(out, Out::Close(_));
            // Counted before the frame is visible to the writer, so its `written` can never
            // run ahead of this and wrap the counter.
            let queued = self.queued.fetch_add(len, Ordering::Relaxed).wrapping_add(len);
            f.queue.push_back(out);
            queued
        };
        self.waker.wake();
        Some(queued)
    }

    /// Moves every queued frame into `into` (Ready), or registers to be woken (Pending).
    pub fn poll_take(&self, cx: &mut Context<'_>, into: &mut VecDeque<Out>) -> Poll<()> {
        self.waker.register(cx.waker());
        let mut f = self.frames.lock().unwrap_or_else(|e| e.into_inner());
        if f.queue.is_empty() {
            return Poll::Pending;
        }
        if into.is_empty() {
            std::mem::swap(&mut f.queue, into);
        } else {
            into.append(&mut f.queue);
        }
        Poll::Ready(())
    }

    pub async fn take(&self, into: &mut VecDeque<Out>) {
        std::future::poll_fn(|cx| self.poll_take(cx, into)).await
    }

    /// The writer wrote (or dropped) `n` bytes it had taken.
    pub fn written(&self, n: usize) {
        self.queued.fetch_sub(n, Ordering::Relaxed);
    }

    /// The writer will not write any more.
    pub fn close(&self) {
        let mut f = self.frames.lock().unwrap_or_else(|e| e.into_inner());
        f.gone = true;
        f.queue = VecDeque::new();
    }

    pub fn frame_len(out: &Out) -> usize {
        out.len()
    }
}
