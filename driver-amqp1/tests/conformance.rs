//! The conformance suite against RabbitMQ's AMQP 1.0 endpoint (broker mode), at `AMQP1_URL`
//! (e.g. `amqp://guest:guest@127.0.0.1:5672/`). Skipped with a visible message when unset,
//! unless `MESSAGING_REQUIRE_BROKERS=1`.

fn backend() -> messaging_conformance::Backend {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    messaging_core::install_driver(std::sync::Arc::new(driver_amqp1::Amqp1Driver));
    messaging_conformance::Backend::from_env("amqp1-rabbitmq", "AMQP1_URL").without(
        messaging_core::driver::Feature::FailFast,
        driver_amqp1::BROKER_NO_FAIL_FAST,
    )
}

messaging_conformance::conformance_suite!(backend());
