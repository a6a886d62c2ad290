//! Notifications: the [`Notifier`] and the [`NotificationListener`].

mod filter;
mod listener;
mod notifier;
mod outbox;

pub use filter::NotificationFilter;
pub use listener::{
    Notification, NotificationEndpoint, NotificationListener, NotificationMetadata,
    NotificationResult,
};
pub use notifier::{Notifier, NotifierDriver};
pub use outbox::{OutboxConfig, OutboxStats, Overflow};
