//! The RPC side: calls, casts, replies (one reply link per transport, calls correlated by
//! message id) and servers (a receiver link per address, requests accepted before dispatch).

use std::borrow::Cow;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use messaging_core::driver::{
    decode_or_drop, IncomingRequest, PendingReply, PerAddress, Replier, ReplyRouter, RpcAddress,
    RpcDriver, RpcListener, SendOptions, ServerAddress,
};
use messaging_core::wire::{self, Reply, RpcRequest};
use messaging_core::{MessagingError, Result, Retry};
use tokio::sync::{mpsc, watch, OnceCell};
use tokio::time::Instant;

use crate::config::Amqp1Config;
use crate::link::{FailFast, Inbox, LinkManager, Received, ReceiverSpec, SendSpec};
use crate::message::{self, OutgoingCall};
use crate::mode::Endpoints;

const DRIVER: &str = "amqp1";

/// The body of a message, for logs about bad input.
pub(crate) fn shown_body(received: &Received) -> Vec<u8> {
    message::body_bytes(&received.message.body)
        .ok()
        .flatten()
        .map(Cow::into_owned)
        .unwrap_or_default()
}

/// Where replies arrive: the current `reply-to` (a dynamic address changes on reconnect).
struct ReplyLink {
    reply_to: Arc<RwLock<String>>,
}

/// The RPC side of one transport.
pub(crate) struct Amqp1Rpc {
    links: Arc<LinkManager>,
    /// Each address's sender target.
    targets: PerAddress<RpcAddress, Arc<str>>,
    replies: ReplyRouter,
    reply_link: OnceCell<ReplyLink>,
    stop: watch::Sender<bool>,
}

impl Amqp1Rpc {
    pub fn new(links: Arc<LinkManager>) -> Self {
        Self {
            links,
            targets: PerAddress::default(),
            replies: ReplyRouter::new(),
            reply_link: OnceCell::new(),
            stop: watch::channel(false).0,
        }
    }

    fn config(&self) -> &Amqp1Config {
        self.links.config()
    }

    /// When a send begun at `started` gives up: after the caller's timeout (a call's, or a
    /// cast's send timeout), else after `default_send_timeout`.
    fn send_deadline(&self, started: Instant, options: &SendOptions) -> Instant {
        started
            + options
                .timeout
                .unwrap_or_else(|| Amqp1Config::secs(self.config().default_send_timeout))
    }

    /// Whether and how a request to `to` fails fast. Only a router can tell (it grants no
    /// credit for an address nobody consumes).
    fn fail_fast(
        &self,
        endpoints: &Endpoints,
        to: &RpcAddress,
        options: &SendOptions,
    ) -> Result<Option<FailFast>> {
        let Some(window) = options.fail_fast_window(Amqp1Config::secs(self.config().fail_fast))
        else {
            return Ok(None);
        };
        if endpoints.mode().is_broker() {
            return Err(MessagingError::unsupported(
                DRIVER,
                format!("fail fast: {}", crate::BROKER_NO_FAIL_FAST),
            ));
        }
        Ok(Some(FailFast {
            window,
            to: to.clone(),
        }))
    }

    /// Start the reply link on first use and return the current reply address.
    async fn reply_to(&self, retry: Retry, deadline: Instant) -> Result<String> {
        let link = self
            .reply_link
            .get_or_try_init(|| async {
                let endpoints = self.links.endpoints(retry, Some(deadline)).await?;
                let broker = endpoints.mode().is_broker();
                let (source, fixed) = if broker {
                    let (source, reply_to) = Endpoints::reply_queue(&wire::new_reply_queue_name());
                    (Some(source), Some(reply_to))
                } else {
                    (None, None)
                };
                let reply_to = Arc::new(RwLock::new(String::new()));
                let current = reply_to.clone();
                let on_attach = Box::new(move |address: &str| {
                    let address = fixed.clone().unwrap_or_else(|| address.to_owned());
                    tracing::debug!(reply_to = %address, "reply link attached");
                    *current.write().expect("reply address poisoned") = address;
                });
                let credit = self.config().reply_link_credit;
                let (tx, rx) = mpsc::channel(credit as usize);
                tokio::spawn(route_replies(rx, self.replies.clone()));
                let spec = ReceiverSpec {
                    source,
                    credit,
                    presettled: broker,
                    on_attach: Some(on_attach),
                    in_flight: None,
                };
                self.links
                    .spawn_receiver(spec, tx, self.stop.subscribe())
                    .await?;
                Ok::<_, MessagingError>(ReplyLink { reply_to })
            })
            .await?;
        Ok(link
            .reply_to
            .read()
            .expect("reply address poisoned")
            .clone())
    }
}

impl Drop for Amqp1Rpc {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

/// Hand every reply to the call waiting for it.
async fn route_replies(mut rx: mpsc::Receiver<Received>, replies: ReplyRouter) {
    while let Some(received) = rx.recv().await {
        received.accept();
        let decoded = message::decode_reply(&received.message);
        if let Some((msg_id, reply)) =
            decode_or_drop(decoded, DRIVER, || "reply link", || shown_body(&received))
        {
            replies.deliver(&msg_id, reply);
        }
    }
}

#[async_trait]
impl RpcDriver for Amqp1Rpc {
    async fn cast(
        &self,
        to: &RpcAddress,
        request: &RpcRequest,
        options: &SendOptions,
    ) -> Result<()> {
        let started = Instant::now();
        let deadline = self.send_deadline(started, options);
        let endpoints = self.links.endpoints(options.retry, Some(deadline)).await?;
        let target = self
            .targets
            .get(to, |to| endpoints.request_target(to).into());
        let message = message::request(&target, request, None, None)?;
        let spec = SendSpec {
            settled: self.config().pre_settled.rpc_cast,
            started,
            deadline,
            fail_fast: self.fail_fast(&endpoints, to, options)?,
            retry: options.retry,
            call_id: None,
            what: if to.fanout { "fanout cast" } else { "cast" },
        };
        self.links.send(&target, message, &spec).await
    }

    async fn call(
        &self,
        to: &RpcAddress,
        request: &RpcRequest,
        options: &SendOptions,
    ) -> Result<PendingReply> {
        let started = Instant::now();
        let deadline = self.send_deadline(started, options);
        let endpoints = self.links.endpoints(options.retry, Some(deadline)).await?;
        let target = self
            .targets
            .get(to, |to| endpoints.request_target(to).into());
        let fail_fast = self.fail_fast(&endpoints, to, options)?;
        let reply_to = self.reply_to(options.retry, deadline).await?;
        let msg_id = wire::new_id();
        let pending = self.replies.register(msg_id.clone());
        let call = OutgoingCall {
            msg_id: msg_id.clone(),
            reply_to,
            timeout: options.timeout,
        };
        let message =
            message::request(&target, request, Some(&call), options.call_monitor_timeout)?;
        let spec = SendSpec {
            settled: self.config().pre_settled.rpc_call,
            started,
            deadline,
            fail_fast,
            retry: options.retry,
            call_id: Some(msg_id),
            what: "call",
        };
        self.links.send(&target, message, &spec).await?;
        Ok(pending)
    }

    async fn listen(&self, on: &ServerAddress) -> Result<Box<dyn RpcListener>> {
        let deadline = Instant::now() + self.config().connect_timeout() * 2;
        let endpoints = self.links.endpoints(Retry::Never, Some(deadline)).await?;
        let credit = self.config().rpc_server_credit;
        let sources = endpoints.server_sources(on);
        let inbox = self
            .links
            .open_inbox(sources, credit, 3 * credit as usize, None)
            .await?;
        Ok(Box::new(Amqp1RpcListener {
            links: self.links.clone(),
            inbox,
            pending: None,
        }))
    }

    async fn close(&self) {
        self.stop.send_replace(true);
        self.replies.clear();
        self.links.close().await;
    }
}

/// A server's requests from its three links.
struct Amqp1RpcListener {
    links: Arc<LinkManager>,
    inbox: Inbox,
    /// Taken from the inbox but not yet returned (kept across a cancelled `next`).
    pending: Option<Received>,
}

#[async_trait]
impl RpcListener for Amqp1RpcListener {
    async fn next(&mut self) -> Option<IncomingRequest> {
        loop {
            if self.pending.is_none() {
                self.pending = Some(self.inbox.recv().await?);
            }
            let accepted = self.pending.as_ref()?.accept();
            let received = self.pending.take()?;
            if !accepted {
                // The link went away before we could take it: the peer gives it to another
                // consumer (RPC is at most once).
                continue;
            }
            let decoded = message::decode_request(&received.message);
            let Some(decoded) =
                decode_or_drop(decoded, DRIVER, || "rpc server", || shown_body(&received))
            else {
                continue;
            };
            let reply = decoded.call.map(|call| {
                Box::new(Amqp1Replier {
                    links: self.links.clone(),
                    reply_to: call.reply_to,
                    msg_id: call.msg_id,
                    call_monitor_timeout: decoded.call_monitor_timeout,
                }) as Box<dyn Replier>
            });
            return Some(IncomingRequest {
                request: decoded.request,
                unique_id: None,
                call_monitor_timeout: decoded.call_monitor_timeout,
                reply,
            });
        }
    }

    async fn close(&mut self) {
        if let Some(pending) = self.pending.take() {
            pending.release();
        }
        self.inbox.close().await;
    }
}

/// Answers one call on its `reply-to`.
struct Amqp1Replier {
    links: Arc<LinkManager>,
    reply_to: String,
    msg_id: String,
    call_monitor_timeout: Option<Duration>,
}

#[async_trait]
impl Replier for Amqp1Replier {
    async fn send(&self, reply: Reply) -> Result<()> {
        let config = self.links.config();
        let message = message::reply(
            &self.reply_to,
            &self.msg_id,
            &reply,
            self.call_monitor_timeout,
        )?;
        let retry = match config.default_reply_retry {
            0 => Retry::Never,
            n => Retry::Times(u32::try_from(n).unwrap_or(u32::MAX)),
        };
        let spec = SendSpec::within(
            Amqp1Config::secs(config.default_reply_timeout),
            config.pre_settled.rpc_reply,
            retry,
            "reply",
        );
        self.links.send(&self.reply_to, message, &spec).await
    }
}

#[cfg(test)]
mod tests {
    use messaging_core::TransportUrl;

    use super::*;

    /// A transport whose mode is forced (nothing is connected: these decisions need no peer).
    fn rpc(query: &str) -> Amqp1Rpc {
        let url = TransportUrl::parse(&format!("amqp://127.0.0.1:1/?{query}")).unwrap();
        let config = Arc::new(Amqp1Config::from_url(&url).unwrap());
        Amqp1Rpc::new(LinkManager::new(&url, config).unwrap())
    }

    /// A cast gets the caller's send timeout, else `default_send_timeout` (router mode).
    #[tokio::test]
    async fn a_cast_is_bounded_by_the_send_timeout() {
        let rpc = rpc("addressing_mode=routable&default_send_timeout=2");
        let started = Instant::now();
        let default = SendOptions::default();
        assert_eq!(
            rpc.send_deadline(started, &default),
            started + Duration::from_secs(2)
        );
        let caller = SendOptions {
            timeout: Some(Duration::from_secs(5)),
            ..default
        };
        assert_eq!(
            rpc.send_deadline(started, &caller),
            started + Duration::from_secs(5)
        );
    }

    /// The fail-fast window of a request with the caller's `fail_fast`.
    async fn window(rpc: &Amqp1Rpc, fail_fast: Option<Duration>) -> Result<Option<Duration>> {
        let to = RpcAddress {
            exchange: "openstack".into(),
            topic: "t".into(),
            server: None,
            fanout: false,
        };
        // A forced mode: known without connecting.
        let endpoints = rpc.links.endpoints(Retry::Never, None).await?;
        let options = SendOptions {
            fail_fast,
            ..SendOptions::default()
        };
        Ok(rpc.fail_fast(&endpoints, &to, &options)?.map(|f| f.window))
    }

    /// Fail fast is the caller's choice, else the URL's; only a router can tell.
    #[tokio::test]
    async fn fail_fast_is_for_routers() {
        let second = Some(Duration::from_secs(1));
        let router = rpc("addressing_mode=routable");
        assert_eq!(window(&router, None).await.unwrap(), None, "off by default");
        assert_eq!(window(&router, second).await.unwrap(), second);
        let configured = rpc("addressing_mode=legacy&fail_fast=0.5");
        assert_eq!(
            window(&configured, None).await.unwrap(),
            Some(Duration::from_millis(500))
        );
        assert_eq!(
            window(&configured, Some(Duration::ZERO)).await.unwrap(),
            None
        );
        let broker = rpc("addressing_mode=broker");
        assert_eq!(window(&broker, None).await.unwrap(), None);
        assert!(matches!(
            window(&broker, second).await,
            Err(MessagingError::Unsupported { .. })
        ));
    }
}
