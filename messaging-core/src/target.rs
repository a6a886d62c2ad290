//! Where messages go: [`Target`], and oslo's `X.Y[.Z]` RPC API [`Version`]s.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Identifies a destination (for clients and notifiers) or a subscription (for servers and
/// listeners), as oslo's `Target`.
///
/// ```
/// use messaging_core::Target;
///
/// let target = Target::topic("compute").server("host1").version("1.2");
/// assert_eq!(target.topic.as_deref(), Some("compute"));
/// assert_eq!(target.server.as_deref(), Some("host1"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Target {
    /// Exchange (scope of topics); the transport's `control_exchange` when `None`.
    pub exchange: Option<String>,
    /// Topic: the service the message is for, or the notification topic.
    pub topic: Option<String>,
    /// Endpoint namespace for RPC dispatch.
    pub namespace: Option<String>,
    /// API version for RPC: `X.Y` (a client requests it, an endpoint implements it).
    pub version: Option<String>,
    /// One server of the topic.
    pub server: Option<String>,
    /// Cast to every server of the topic.
    pub fanout: bool,
}

impl Target {
    /// A target for `topic`.
    pub fn topic(topic: impl Into<String>) -> Self {
        Self {
            topic: Some(topic.into()),
            ..Self::default()
        }
    }

    /// Set the exchange.
    pub fn exchange(mut self, exchange: impl Into<String>) -> Self {
        self.exchange = Some(exchange.into());
        self
    }

    /// Set the namespace.
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    /// Set the version.
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.version = Some(version.into());
        self
    }

    /// Direct to (or listen as) one server.
    pub fn server(mut self, server: impl Into<String>) -> Self {
        self.server = Some(server.into());
        self
    }

    /// Cast to every server of the topic.
    pub fn fanout(mut self, fanout: bool) -> Self {
        self.fanout = fanout;
        self
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<Target")?;
        for (name, value) in [
            ("exchange", &self.exchange),
            ("topic", &self.topic),
            ("namespace", &self.namespace),
            ("version", &self.version),
            ("server", &self.server),
        ] {
            if let Some(value) = value {
                write!(f, " {name}={value}")?;
            }
        }
        if self.fanout {
            write!(f, " fanout")?;
        }
        write!(f, ">")
    }
}

/// An RPC API version `major.minor[.revision]`.
///
/// A request for version `r` is served by an endpoint implementing `e` when the majors are
/// equal and `r.minor <= e.minor` (then `r.revision <= e.revision` when the minors are equal),
/// exactly as oslo's `version_is_compatible`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    /// Incompatible changes bump this.
    pub major: u32,
    /// Compatible additions bump this.
    pub minor: u32,
    /// Compatible fixes bump this.
    pub revision: u32,
}

impl Version {
    /// oslo's default version of an endpoint and of a request without one.
    pub const DEFAULT: Version = Version {
        major: 1,
        minor: 0,
        revision: 0,
    };

    /// True when an endpoint implementing `self` can serve a request for `requested`.
    pub fn can_serve(&self, requested: &Version) -> bool {
        self.major == requested.major
            && (requested.minor, requested.revision) <= (self.minor, self.revision)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)?;
        if self.revision != 0 {
            write!(f, ".{}", self.revision)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        s.parse().unwrap()
    }

    #[test]
    fn compatibility_follows_oslo() {
        assert!(v("1.3").can_serve(&v("1.0")));
        assert!(v("1.3").can_serve(&v("1.3")));
        assert!(!v("1.3").can_serve(&v("1.4")));
        assert!(!v("1.3").can_serve(&v("2.0")));
        assert!(!v("2.1").can_serve(&v("1.0")));
        assert!(v("1.3.2").can_serve(&v("1.3.1")));
        assert!(!v("1.3.1").can_serve(&v("1.3.2")));
        assert!(v("1.4").can_serve(&v("1.3.9")));
    }

    #[test]
    fn parse_and_print() {
        assert_eq!(
            v("2"),
            Version {
                major: 2,
                minor: 0,
                revision: 0
            }
        );
        assert_eq!(v("1.10").to_string(), "1.10");
        assert_eq!(v("1.2.3").to_string(), "1.2.3");
        for bad in ["", "a.b", "1.2.3.4", "1.-1"] {
            assert!(bad.parse::<Version>().is_err(), "{bad}");
        }
    }
}
