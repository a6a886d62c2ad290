//! The conformance suite: one set of tests that every driver runs against its real backend.
//!
//! A driver crate installs its driver, then expands [`conformance_suite!`](crate::conformance_suite)
//! with a [`Backend`] in one of its test files:
//!
//! ```ignore
//! // driver-foo/tests/conformance.rs
//! fn backend() -> messaging_core::conformance::Backend {
//!     messaging_core::install_driver(std::sync::Arc::new(driver_foo::FooDriver));
//!     messaging_core::conformance::Backend::from_env("foo", "FOO_URL")
//! }
//! messaging_core::conformance_suite!(backend());
//! ```
//!
//! Each case becomes a `#[test]` of that name. A case the driver declares it cannot do
//! (see [`Capabilities`](crate::driver::Capabilities)) passes with a `skipped:` line that gives
//! the driver's reason. Cases use unique topic names (`conf_…`), so they run in parallel.

pub mod cases;
pub mod poison;
mod support;

use std::future::Future;
use std::time::Duration;

use crate::driver::{Capabilities, Feature};
use crate::registry::driver_for_scheme;
use crate::transport::{
    get_notification_transport_with, get_rpc_transport_with, NotificationTransport, RpcTransport,
    TransportOptions,
};
use crate::url::TransportUrl;

pub use support::{unique, Recorder};

/// The longest a single case may run before it counts as hung.
const CASE_LIMIT: Duration = Duration::from_secs(180);

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

/// Run one case on a fresh multi-threaded runtime, failing it if it hangs.
pub fn run<F, Fut>(case_name: &str, backend: impl FnOnce() -> Backend, case: F)
where
    F: FnOnce(Backend) -> Fut,
    Fut: Future<Output = ()>,
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async {
        let backend = backend();
        if tokio::time::timeout(CASE_LIMIT, case(backend))
            .await
            .is_err()
        {
            panic!("conformance case {case_name} hung for {CASE_LIMIT:?}");
        }
    });
    runtime.shutdown_timeout(Duration::from_secs(5));
}

/// Expand the whole conformance suite into `#[test]` functions for a backend expression.
#[macro_export]
macro_rules! conformance_suite {
    ($backend:expr) => {
        $crate::conformance_suite!(@cases $backend;
            rpc_call_to_topic,
            rpc_cast_to_topic,
            rpc_call_to_specific_server,
            rpc_cast_to_specific_server,
            rpc_fanout_reaches_every_server,
            rpc_load_spreads_across_servers,
            rpc_exchanges_are_isolated,
            rpc_call_times_out_without_server,
            rpc_fail_fast_without_server,
            rpc_remote_error_is_mapped,
            rpc_unknown_method_is_no_such_method,
            rpc_bad_arguments_are_a_remote_type_error,
            rpc_version_and_namespace_negotiation,
            rpc_call_monitor_keeps_long_call_alive,
            rpc_concurrent_calls,
            rpc_concurrent_casts_none_lost,
            rpc_graceful_stop_finishes_in_flight_calls,
            notify_every_priority,
            notify_multiple_topics,
            notify_pools_each_get_a_copy,
            notify_pool_members_share_load,
            notify_requeue_redelivers,
            notify_requeue_refused_when_not_allowed,
            notify_batches,
            notify_filters,
            notify_concurrent_publishers_none_lost,
            notify_sent_before_listener_is_kept,
            notify_clean_shutdown_loses_nothing,
            signing_rpc_round_trip,
            signing_rejects_forged_requests,
            signing_rejects_forged_replies,
            signing_rotation,
            signing_warn_mode_processes_unsigned_rpc,
            signing_notifications_round_trip_and_forgeries_rejected,
            signing_warn_mode_processes_unsigned_notifications,
        );
    };
    (@cases $backend:expr; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                $crate::conformance::run(stringify!($case), || $backend, $crate::conformance::cases::$case);
            }
        )*
    };
}
