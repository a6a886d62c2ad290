//! The conformance suite against the guide's example driver (`examples/loopback_driver.rs`):
//! what a minimal driver written only against the driver kit passes.

#[path = "../examples/loopback_driver.rs"]
mod loopback_driver;

fn backend() -> messaging_conformance::Backend {
    messaging_core::install_driver(std::sync::Arc::new(loopback_driver::LoopbackDriver));
    messaging_conformance::Backend::new("loopback", "loopback://")
}

messaging_conformance::conformance_suite!(backend());
