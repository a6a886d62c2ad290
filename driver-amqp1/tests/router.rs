//! The conformance suite against an AMQP 1.0 router (router mode) at `AMQP1_ROUTER_URL`
//! (e.g. `amqp://127.0.0.1:5673`). Opt-in: when the variable is unset every case is skipped
//! with a visible `skipped:` line, even in CI (`MESSAGING_REQUIRE_BROKERS=1`), because no router
//! package exists in the reachable registries.
//!
//! The router must define oslo's address prefixes (see the README):
//! `openstack.org/om/rpc/multicast` multicast, `openstack.org/om/rpc/unicast` closest,
//! `openstack.org/om/rpc/anycast` balanced, and `openstack.org/om/notify` balanced.

use std::sync::Once;

use messaging_core::driver::Feature;

fn backend() -> messaging_core::conformance::Backend {
    static OPT_IN: Once = Once::new();
    OPT_IN.call_once(|| {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        // This test binary holds only router cases: with no router configured they skip
        // rather than fail, whatever MESSAGING_REQUIRE_BROKERS says.
        if std::env::var("AMQP1_ROUTER_URL").map_or(true, |u| u.is_empty()) {
            std::env::remove_var("MESSAGING_REQUIRE_BROKERS");
        }
    });
    messaging_core::install_driver(std::sync::Arc::new(driver_amqp1::Amqp1Driver));
    messaging_core::conformance::Backend::from_env("amqp1-router", "AMQP1_ROUTER_URL")
        .without(Feature::StoreBeforeListen, driver_amqp1::ROUTER_NO_STORE)
}

messaging_core::conformance_suite!(backend());
