//! The conformance suite: one set of tests that every driver runs against its real backend.
//!
//! A driver crate adds this crate as a dev-dependency, installs its driver, then expands
//! [`conformance_suite!`] with a [`Backend`] in one of its test files:
//!
//! ```ignore
//! // driver-foo/tests/conformance.rs
//! fn backend() -> messaging_conformance::Backend {
//!     messaging_core::install_driver(std::sync::Arc::new(driver_foo::FooDriver));
//!     messaging_conformance::Backend::from_env("foo", "FOO_URL")
//! }
//! messaging_conformance::conformance_suite!(backend());
//! ```
//!
//! Each case becomes a `#[test]` of that name; the list in [`conformance_suite!`] names every
//! case with the [`Feature`]s it needs, and the cases themselves are in one module per area:
//! [`rpc`], [`notify`], [`signing`]. A case needing a feature the driver declares it lacks
//! (see [`Capabilities`](messaging_core::driver::Capabilities)) passes with a `skipped:` line
//! that gives the driver's reason. Cases use unique topic names (`conf_…`), so they run in
//! parallel. [`poison`] holds malformed bodies for a driver's own poison-input tests.

mod backend;
pub mod notify;
pub mod poison;
pub mod rpc;
pub mod signing;
mod support;

use std::future::Future;
use std::time::Duration;

pub use backend::Backend;
pub use messaging_core::driver::Feature;
pub use support::{unique, Recorder};

/// Every case, by name, for [`conformance_suite!`] and [`run`].
pub mod cases {
    pub use crate::notify::*;
    pub use crate::rpc::*;
    pub use crate::signing::*;
}

/// The longest a single case may run before it counts as hung.
const CASE_LIMIT: Duration = Duration::from_secs(180);

/// Run `case` on a fresh multi-threaded runtime, unless the backend lacks one of the features
/// it `needs` (then it prints why and passes); fail it if it hangs.
pub fn run<F, Fut>(case_name: &str, needs: &[Feature], backend: impl FnOnce() -> Backend, case: F)
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
        if !backend.supports(case_name, needs) {
            return;
        }
        if tokio::time::timeout(CASE_LIMIT, case(backend))
            .await
            .is_err()
        {
            panic!("conformance case {case_name} hung for {CASE_LIMIT:?}");
        }
    });
    runtime.shutdown_timeout(Duration::from_secs(5));
}

/// Expand the whole conformance suite into `#[test]` functions for a backend expression: one
/// test per case below, skipped when the backend lacks a feature the case needs.
#[macro_export]
macro_rules! conformance_suite {
    ($backend:expr) => {
        $crate::conformance_suite!(@cases $backend;
            // rpc.rs
            rpc_call_to_topic: Rpc;
            rpc_cast_to_topic: Rpc;
            rpc_call_to_specific_server: Rpc, ServerDirected;
            rpc_cast_to_specific_server: Rpc, ServerDirected;
            rpc_fanout_reaches_every_server: Rpc, Fanout;
            rpc_load_spreads_across_servers: Rpc, LoadBalancing;
            rpc_exchanges_are_isolated: Rpc, Exchanges;
            rpc_call_times_out_without_server: Rpc;
            rpc_fail_fast_without_server: Rpc, FailFast;
            rpc_remote_error_is_mapped: Rpc;
            rpc_unknown_method_is_no_such_method: Rpc;
            rpc_bad_arguments_are_a_remote_type_error: Rpc;
            rpc_version_and_namespace_negotiation: Rpc;
            rpc_call_monitor_keeps_long_call_alive: Rpc, CallMonitor;
            rpc_concurrent_calls: Rpc;
            rpc_concurrent_casts_none_lost: Rpc;
            rpc_graceful_stop_finishes_in_flight_calls: Rpc;
            // notify.rs
            notify_every_priority: Notifications;
            notify_multiple_topics: Notifications;
            notify_pools_each_get_a_copy: Notifications, Pools;
            notify_pool_members_share_load: Notifications, Pools, LoadBalancing;
            notify_requeue_redelivers: Notifications, Requeue;
            notify_requeue_refused_when_not_allowed: Notifications;
            notify_batches: Notifications;
            notify_filters: Notifications;
            notify_concurrent_publishers_none_lost: Notifications;
            notify_sent_before_listener_is_kept: Notifications, StoreBeforeListen;
            notify_clean_shutdown_loses_nothing: Notifications, Pools;
            notify_handled_are_not_delivered_again: Notifications, StoreBeforeListen;
            // signing.rs
            signing_rpc_round_trip: Rpc;
            signing_rejects_forged_requests: Rpc;
            signing_rejects_forged_replies: Rpc;
            signing_rotation: Rpc;
            signing_warn_mode_processes_unsigned_rpc: Rpc;
            signing_notifications_round_trip_and_forgeries_rejected: Notifications;
            signing_warn_mode_processes_unsigned_notifications: Notifications;
        );
    };
    (@cases $backend:expr; $($case:ident: $($feature:ident),+;)*) => {
        $(
            #[test]
            fn $case() {
                $crate::run(
                    stringify!($case),
                    &[$($crate::Feature::$feature),+],
                    || $backend,
                    $crate::cases::$case,
                );
            }
        )*
    };
}
