//! The core conformance suite against a real RabbitMQ (`RABBIT_URL`; skipped when unset,
//! unless `MESSAGING_REQUIRE_BROKERS=1`).

fn backend() -> messaging_conformance::Backend {
    messaging_core::install_driver(std::sync::Arc::new(driver_rabbit::RabbitDriver));
    messaging_conformance::Backend::from_env("rabbit", "RABBIT_URL")
}

messaging_conformance::conformance_suite!(backend());
