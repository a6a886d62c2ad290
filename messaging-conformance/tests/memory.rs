//! The conformance suite against the `memory://` driver.

messaging_conformance::conformance_suite!(messaging_conformance::Backend::new(
    "memory",
    "memory://"
));
