//! Notifications: the [`Notifier`] and the [`NotificationListener`].

mod filter;
mod listener;
mod notifier;

pub use filter::NotificationFilter;
pub use listener::{
    Notification, NotificationEndpoint, NotificationListener, NotificationMetadata,
    NotificationResult,
};
pub use notifier::{Notifier, NotifierDriver};
