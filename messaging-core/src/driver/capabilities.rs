//! What a driver can do, declared for users and for the conformance suite.

/// A behaviour that some drivers cannot offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Feature {
    /// RPC calls and casts.
    Rpc,
    /// Notifications.
    Notifications,
    /// Fanout casts reach every server.
    Fanout,
    /// Requests directed to one named server.
    ServerDirected,
    /// Different exchanges are isolated from each other.
    Exchanges,
    /// Call-monitor heartbeats keep a long call alive.
    CallMonitor,
    /// A listener may ask for a notification to be delivered again.
    Requeue,
    /// Listener pools: each pool gets one copy, members share the load.
    Pools,
    /// Notifications sent before any listener subscribed are kept for it.
    StoreBeforeListen,
    /// Messages to a topic (or a pool) are spread over its consumers.
    LoadBalancing,
    /// Fail fast: the transport can tell that nobody consumes a call's or cast's address and
    /// end it early with [`MessagingError::NoServer`](crate::MessagingError::NoServer).
    FailFast,
}

/// Delivery guarantee of a pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Never twice, possibly lost on failure.
    AtMostOnce,
    /// Never lost, possibly more than once on failure.
    AtLeastOnce,
}

/// What a driver supports: everything, minus declared gaps with the reason for each.
#[derive(Debug, Clone)]
pub struct Capabilities {
    gaps: Vec<(Feature, &'static str)>,
    /// Guarantee of RPC requests.
    pub rpc_delivery: Delivery,
    /// Guarantee of notifications.
    pub notify_delivery: Delivery,
}

impl Capabilities {
    /// A driver that supports every feature: RPC at most once, notifications at least once.
    pub fn full() -> Self {
        Self {
            gaps: Vec::new(),
            rpc_delivery: Delivery::AtMostOnce,
            notify_delivery: Delivery::AtLeastOnce,
        }
    }

    /// Declare that `feature` is not supported, and why.
    pub fn without(mut self, feature: Feature, why: &'static str) -> Self {
        self.gaps.push((feature, why));
        self
    }

    /// True if `feature` is supported.
    pub fn supports(&self, feature: Feature) -> bool {
        self.why_not(feature).is_none()
    }

    /// The declared reason `feature` is not supported, if it is not.
    pub fn why_not(&self, feature: Feature) -> Option<&'static str> {
        self.gaps
            .iter()
            .find(|(f, _)| *f == feature)
            .map(|(_, why)| *why)
    }
}
