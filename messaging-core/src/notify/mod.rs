//! Notifications: the [`Notifier`] and the [`NotificationListener`].

mod filter;
mod listener;
mod notification;
mod notifier;
mod outbox;

pub use filter::NotificationFilter;
pub use listener::{NotificationEndpoint, NotificationListener, NotificationResult};
pub use notification::{Notification, NotificationMetadata};
pub use notifier::{Notifier, NotifierDriver};
pub use outbox::{OutboxConfig, OutboxStats, Overflow};
