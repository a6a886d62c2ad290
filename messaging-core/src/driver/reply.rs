//! Correlating replies with the calls waiting for them, for drivers with a reply channel.

use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use super::FastHashMap;
use crate::wire::Reply;

/// Replies travel boxed: a channel allocates its first block of 32 items up front, 7 KiB of
/// 224-byte `Reply`s (room for a remote error) for every call, where most calls get one reply.
type Waiters = Arc<Mutex<FastHashMap<String, mpsc::UnboundedSender<Box<Reply>>>>>;

/// Routes reply events to the calls waiting for them, by message id.
///
/// A driver registers each call before sending it and delivers every reply it receives; a
/// reply for a call nobody waits for any more (it timed out) is dropped and logged.
#[derive(Debug, Clone, Default)]
pub struct ReplyRouter {
    waiters: Waiters,
}

impl ReplyRouter {
    /// A router with no calls.
    pub fn new() -> Self {
        Self::default()
    }

    /// Wait for replies to `msg_id`. Dropping the [`PendingReply`] stops waiting.
    pub fn register(&self, msg_id: String) -> PendingReply {
        let (tx, rx) = mpsc::unbounded_channel();
        self.waiters
            .lock()
            .expect("reply router poisoned")
            .insert(msg_id.clone(), tx);
        PendingReply {
            msg_id,
            events: rx,
            waiters: self.waiters.clone(),
        }
    }

    /// Hand a reply to its call; false (and a debug log) if no call waits for it.
    pub fn deliver(&self, msg_id: &str, reply: Reply) -> bool {
        let waiters = self.waiters.lock().expect("reply router poisoned");
        match waiters.get(msg_id) {
            Some(tx) => tx.send(Box::new(reply)).is_ok(),
            None => {
                tracing::debug!(msg_id, "dropping a reply nobody waits for (timed out?)");
                false
            }
        }
    }

    /// Forget every waiting call: they see their reply stream end.
    pub fn clear(&self) {
        self.waiters.lock().expect("reply router poisoned").clear();
    }
}

/// The replies to one call, in arrival order.
#[derive(Debug)]
pub struct PendingReply {
    msg_id: String,
    events: mpsc::UnboundedReceiver<Box<Reply>>,
    waiters: Waiters,
}

impl PendingReply {
    /// The call's message id.
    pub fn msg_id(&self) -> &str {
        &self.msg_id
    }

    /// The next reply; `None` if the transport went away. Cancel-safe.
    pub async fn next(&mut self) -> Option<Reply> {
        self.events.recv().await.map(|reply| *reply)
    }
}

impl Drop for PendingReply {
    fn drop(&mut self) {
        if let Ok(mut waiters) = self.waiters.lock() {
            waiters.remove(&self.msg_id);
        }
    }
}
