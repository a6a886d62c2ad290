//! The conformance suite must fail for drivers that break the contract. Each broken driver
//! here wraps `memory://` with one flaw, and the case that covers it must panic.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use messaging_conformance::{cases, run, Backend};
use messaging_core::driver::*;
use messaging_core::wire::{NotificationFormat, NotificationMessage, RpcRequest};
use messaging_core::{install_driver, MemoryDriver, Result, TransportUrl};

#[derive(Clone, Copy, PartialEq)]
enum Flaw {
    LosesNotifications,
    IgnoresServer,
    FanoutToOne,
    DuplicatesCasts,
    RequeueAcks,
    DropsSignatures,
}

struct Broken {
    scheme: &'static [&'static str],
    flaw: Flaw,
}

#[async_trait]
impl Driver for Broken {
    fn name(&self) -> &'static str {
        self.scheme[0]
    }
    fn schemes(&self) -> &'static [&'static str] {
        self.scheme
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities::full()
    }
    async fn rpc(&self, url: &TransportUrl) -> Result<Arc<dyn RpcDriver>> {
        Ok(Arc::new(BrokenRpc {
            inner: MemoryDriver.rpc(url).await?,
            flaw: self.flaw,
        }))
    }
    async fn notifications(&self, url: &TransportUrl) -> Result<Arc<dyn NotifyDriver>> {
        Ok(Arc::new(BrokenNotify {
            inner: MemoryDriver.notifications(url).await?,
            flaw: self.flaw,
            sent: AtomicUsize::new(0),
        }))
    }
}

struct BrokenRpc {
    inner: Arc<dyn RpcDriver>,
    flaw: Flaw,
}

impl BrokenRpc {
    fn misroute(&self, to: &RpcAddress) -> RpcAddress {
        let mut to = to.clone();
        match self.flaw {
            Flaw::IgnoresServer => to.server = None,
            Flaw::FanoutToOne => to.fanout = false,
            _ => {}
        }
        to
    }

    /// The request as the flawed framing carries it.
    fn reframe(&self, request: &RpcRequest) -> RpcRequest {
        let mut request = request.clone();
        if self.flaw == Flaw::DropsSignatures {
            request.signature = None;
        }
        request
    }
}

#[async_trait]
impl RpcDriver for BrokenRpc {
    async fn cast(
        &self,
        to: &RpcAddress,
        request: &RpcRequest,
        options: &SendOptions,
    ) -> Result<()> {
        if self.flaw == Flaw::DuplicatesCasts {
            self.inner.cast(to, request, options).await?;
        }
        let request = self.reframe(request);
        self.inner.cast(&self.misroute(to), &request, options).await
    }
    async fn call(
        &self,
        to: &RpcAddress,
        request: &RpcRequest,
        options: &SendOptions,
    ) -> Result<PendingReply> {
        let request = self.reframe(request);
        self.inner.call(&self.misroute(to), &request, options).await
    }
    async fn listen(&self, on: &ServerAddress) -> Result<Box<dyn RpcListener>> {
        self.inner.listen(on).await
    }
}

struct BrokenNotify {
    inner: Arc<dyn NotifyDriver>,
    flaw: Flaw,
    sent: AtomicUsize,
}

#[async_trait]
impl NotifyDriver for BrokenNotify {
    async fn notify(
        &self,
        to: &NotifyAddress,
        message: &NotificationMessage,
        format: NotificationFormat,
        options: &SendOptions,
    ) -> Result<()> {
        let n = self.sent.fetch_add(1, Ordering::Relaxed);
        if self.flaw == Flaw::LosesNotifications && n % 500 == 499 {
            return Ok(());
        }
        let mut message = message.clone();
        if self.flaw == Flaw::DropsSignatures {
            message.signature = None;
        }
        self.inner.notify(to, &message, format, options).await
    }
    async fn listen(
        &self,
        subscriptions: &[NotifyAddress],
        pool: Option<&str>,
    ) -> Result<Box<dyn NotificationSource>> {
        let inner = self.inner.listen(subscriptions, pool).await?;
        Ok(Box::new(BrokenSource {
            inner,
            flaw: self.flaw,
        }))
    }
}

struct BrokenSource {
    inner: Box<dyn NotificationSource>,
    flaw: Flaw,
}

#[async_trait]
impl NotificationSource for BrokenSource {
    async fn next(&mut self) -> Option<IncomingNotification> {
        let mut incoming = self.inner.next().await?;
        if self.flaw == Flaw::RequeueAcks {
            incoming.acker = Box::new(AckOnly(incoming.acker));
        }
        Some(incoming)
    }
    async fn close(&mut self) {
        self.inner.close().await;
    }
}

struct AckOnly(Box<dyn Acknowledger>);

#[async_trait]
impl Acknowledger for AckOnly {
    async fn ack(self: Box<Self>) -> Result<()> {
        self.0.ack().await
    }
    async fn requeue(self: Box<Self>) -> Result<()> {
        self.0.ack().await
    }
}

fn assert_case_fails<Fut: std::future::Future<Output = ()>>(
    scheme: &'static [&'static str],
    flaw: Flaw,
    case_name: &str,
    case: fn(Backend) -> Fut,
) {
    install_driver(Arc::new(Broken { scheme, flaw }));
    let url = format!("{}:///{case_name}", scheme[0]);
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
        run(
            case_name,
            &[],
            || Backend::new(scheme[0], &url).patience(Duration::from_secs(3)),
            case,
        );
    }));
    assert!(
        outcome.is_err(),
        "{case_name} passed on a driver that {}",
        scheme[0]
    );
}

#[test]
fn losing_notifications_is_caught() {
    assert_case_fails(
        &["loses-notifications"],
        Flaw::LosesNotifications,
        "load",
        cases::notify_concurrent_publishers_none_lost,
    );
}

#[test]
fn ignoring_the_server_is_caught() {
    assert_case_fails(
        &["ignores-server"],
        Flaw::IgnoresServer,
        "direct",
        cases::rpc_call_to_specific_server,
    );
}

#[test]
fn fanout_to_one_server_is_caught() {
    assert_case_fails(
        &["fanout-to-one"],
        Flaw::FanoutToOne,
        "fanout",
        cases::rpc_fanout_reaches_every_server,
    );
}

#[test]
fn duplicated_casts_are_caught() {
    assert_case_fails(
        &["duplicates-casts"],
        Flaw::DuplicatesCasts,
        "casts",
        cases::rpc_concurrent_casts_none_lost,
    );
}

#[test]
fn requeue_that_acks_is_caught() {
    assert_case_fails(
        &["requeue-acks"],
        Flaw::RequeueAcks,
        "requeue",
        cases::notify_requeue_redelivers,
    );
}

#[test]
fn dropping_request_signatures_is_caught() {
    assert_case_fails(
        &["drops-request-signatures"],
        Flaw::DropsSignatures,
        "signing",
        cases::signing_rejects_forged_requests,
    );
}

#[test]
fn dropping_notification_signatures_is_caught() {
    assert_case_fails(
        &["drops-notification-signatures"],
        Flaw::DropsSignatures,
        "signing",
        cases::signing_notifications_round_trip_and_forgeries_rejected,
    );
}
