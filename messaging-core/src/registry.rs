//! The drivers this process knows, by URL scheme.
//!
//! `memory://` (and `fake://`) is always there. Driver crates are installed with
//! [`install_driver`]; the `messaging` facade crate does that for every driver feature it was
//! built with, so applications never call it themselves.

use std::sync::{Arc, OnceLock, RwLock};

use crate::driver::Driver;
use crate::error::{MessagingError, Result};
use crate::memory::MemoryDriver;

fn registry() -> &'static RwLock<Vec<Arc<dyn Driver>>> {
    static REGISTRY: OnceLock<RwLock<Vec<Arc<dyn Driver>>>> = OnceLock::new();
    REGISTRY.get_or_init(|| RwLock::new(vec![Arc::new(MemoryDriver)]))
}

/// Make a driver available to [`crate::get_rpc_transport`] and friends. A driver with the same
/// name replaces the one installed before.
pub fn install_driver(driver: Arc<dyn Driver>) {
    let mut drivers = registry().write().expect("driver registry poisoned");
    drivers.retain(|d| d.name() != driver.name());
    drivers.push(driver);
}

/// The URL schemes of the installed drivers, sorted.
pub fn available_schemes() -> Vec<String> {
    let drivers = registry().read().expect("driver registry poisoned");
    let mut schemes: Vec<String> = drivers
        .iter()
        .flat_map(|d| d.schemes().iter().map(|s| (*s).to_owned()))
        .collect();
    schemes.sort();
    schemes
}

/// The driver serving `scheme` (the part before any `+variant`).
pub fn driver_for_scheme(scheme: &str) -> Result<Arc<dyn Driver>> {
    let drivers = registry().read().expect("driver registry poisoned");
    drivers
        .iter()
        .find(|d| d.schemes().contains(&scheme))
        .cloned()
        .ok_or_else(|| {
            drop(drivers);
            MessagingError::UnknownScheme {
                scheme: scheme.to_owned(),
                available: available_schemes(),
            }
        })
}

/// The installed driver named `name` (`rabbit`, `kafka`, …), if any.
pub fn driver_named(name: &str) -> Option<Arc<dyn Driver>> {
    let drivers = registry().read().expect("driver registry poisoned");
    drivers.iter().find(|d| d.name() == name).cloned()
}
