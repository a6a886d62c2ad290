//! The conformance suite against the `memory://` driver.

messaging_core::conformance_suite!(messaging_core::conformance::Backend::new(
    "memory",
    "memory://"
));
