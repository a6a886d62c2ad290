//! The backend under test: where to open transports, what its driver supports, and how
//! patient the cases must be with it.

use std::time::Duration;

use messaging_core::driver::{Capabilities, Feature};
use messaging_core::{
    driver_for_scheme, get_notification_transport_with, get_rpc_transport_with,
    NotificationTransport, RpcTransport, TransportOptions, TransportUrl,
};

use crate::support;

/// The backend under test: URLs to open transports with, and what the driver supports.
#[derive(Debug, Clone)]
pub struct Backend {
    name: String,
    rpc_url: Option<String>,
    notify_url: Option<String>,
    capabilities: Capabilities,
    settle: Duration,
    patience: Duration,
    skip_all: Option<String>,
}

impl Backend {
    /// A backend serving RPC and notifications at `url`, with the capabilities its driver
    /// declares (the driver must be installed).
    pub fn new(name: impl Into<String>, url: &str) -> Self {
        let capabilities = TransportUrl::parse(url)
            .and_then(|u| Ok(driver_for_scheme(&u.driver)?.capabilities_for(&u)))
            .unwrap_or_else(|e| panic!("conformance backend `{url}`: {e}"));
        let rpc_url = capabilities.supports(Feature::Rpc).then(|| url.to_owned());
        let notify_url = capabilities
            .supports(Feature::Notifications)
            .then(|| url.to_owned());
        Self {
            name: name.into(),
            rpc_url,
            notify_url,
            capabilities,
            settle: Duration::ZERO,
            patience: support::WAIT,
            skip_all: None,
        }
    }

    /// A backend whose URL comes from the environment variable `var`. When it is unset,
    /// every case is skipped with a visible message, unless `MESSAGING_REQUIRE_BROKERS=1`,
    /// in which case the cases fail (CI sets it).
    pub fn from_env(name: impl Into<String>, var: &str) -> Self {
        let name = name.into();
        match std::env::var(var) {
            Ok(url) if !url.is_empty() => Self::new(name, &url),
            _ => {
                if std::env::var("MESSAGING_REQUIRE_BROKERS").as_deref() == Ok("1") {
                    panic!("{var} is not set but MESSAGING_REQUIRE_BROKERS=1");
                }
                Self {
                    name,
                    rpc_url: None,
                    notify_url: None,
                    capabilities: Capabilities::full(),
                    settle: Duration::ZERO,
                    patience: support::WAIT,
                    skip_all: Some(format!("{var} is not set")),
                }
            }
        }
    }

    /// Send notifications through another URL (a hybrid deployment).
    pub fn notify_url(mut self, url: &str) -> Self {
        self.notify_url = Some(url.to_owned());
        self
    }

    /// Wait this long after starting a server or listener before sending (e.g. for a Kafka
    /// consumer group to form).
    pub fn settle(mut self, settle: Duration) -> Self {
        self.settle = settle;
        self
    }

    /// How long a case waits for messages it expects before failing (default 60 s).
    pub fn patience(mut self, patience: Duration) -> Self {
        self.patience = patience;
        self
    }

    /// How long a case waits for messages it expects.
    pub fn wait(&self) -> Duration {
        self.patience
    }

    /// Declare one more unsupported feature for this backend.
    pub fn without(mut self, feature: Feature, why: &'static str) -> Self {
        self.capabilities = self.capabilities.without(feature, why);
        self
    }

    /// The backend's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A new RPC transport.
    pub async fn rpc(&self) -> RpcTransport {
        self.rpc_with(&TransportOptions::default()).await
    }

    /// A new RPC transport with `options` (e.g. signing).
    pub async fn rpc_with(&self, options: &TransportOptions) -> RpcTransport {
        let url = self
            .rpc_url
            .as_deref()
            .expect("the case checked for RPC support");
        get_rpc_transport_with(url, options)
            .await
            .unwrap_or_else(|e| panic!("opening {url}: {e}"))
    }

    /// A new notification transport.
    pub async fn notifications(&self) -> NotificationTransport {
        self.notifications_with(&TransportOptions::default()).await
    }

    /// A new notification transport with `options` (e.g. signing).
    pub async fn notifications_with(&self, options: &TransportOptions) -> NotificationTransport {
        let url = self
            .notify_url
            .as_deref()
            .expect("the case checked for notification support");
        get_notification_transport_with(url, options)
            .await
            .unwrap_or_else(|e| panic!("opening {url}: {e}"))
    }

    /// Give a just-started server or listener time to subscribe, if the backend needs it.
    pub async fn settled(&self) {
        if !self.settle.is_zero() {
            tokio::time::sleep(self.settle).await;
        }
    }

    /// True if every feature is supported; otherwise prints why the case is skipped.
    pub fn supports(&self, case: &str, features: &[Feature]) -> bool {
        if let Some(why) = &self.skip_all {
            println!("skipped: conformance case {case} on {}: {why}", self.name);
            return false;
        }
        for feature in features {
            let why = match feature {
                Feature::Rpc if self.rpc_url.is_none() => Some("no RPC transport"),
                Feature::Notifications if self.notify_url.is_none() => {
                    Some("no notification transport")
                }
                _ => self.capabilities.why_not(*feature),
            };
            if let Some(why) = why {
                println!(
                    "skipped: conformance case {case} on {}: {feature:?} unsupported: {why}",
                    self.name
                );
                return false;
            }
        }
        true
    }

    /// What the driver declared.
    pub fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }
}
