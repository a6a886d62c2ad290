//! The core conformance suite against a real RabbitMQ (`RABBIT_URL`; skipped when unset,
//! unless `MESSAGING_REQUIRE_BROKERS=1`).

fn backend() -> messaging_core::conformance::Backend {
    messaging_core::install_driver(std::sync::Arc::new(driver_rabbit::RabbitDriver));
    messaging_core::conformance::Backend::from_env("rabbit", "RABBIT_URL")
}

messaging_core::conformance_suite!(backend());
