//! The seven notification priorities.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::MessagingError;

/// A notification's priority: one of oslo's seven.
///
/// Uppercase in the message body (`INFO`), lowercase in routing keys, topics and addresses
/// (`notifications.info`). `warning` is an alias of `warn`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    /// Security-relevant events.
    Audit,
    /// Debugging detail.
    Debug,
    /// Ordinary events.
    Info,
    /// Something unexpected but handled.
    Warn,
    /// An operation failed.
    Error,
    /// The service cannot go on.
    Critical,
    /// Metering samples.
    Sample,
}

impl Priority {
    /// Every priority, in oslo's order.
    pub const ALL: [Priority; 7] = [
        Priority::Audit,
        Priority::Debug,
        Priority::Info,
        Priority::Warn,
        Priority::Error,
        Priority::Critical,
        Priority::Sample,
    ];

    /// Lowercase name, as used in routing keys and topics.
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Audit => "audit",
            Priority::Debug => "debug",
            Priority::Info => "info",
            Priority::Warn => "warn",
            Priority::Error => "error",
            Priority::Critical => "critical",
            Priority::Sample => "sample",
        }
    }

    /// Uppercase name, as written in the message body.
    pub fn as_upper_str(self) -> &'static str {
        match self {
            Priority::Audit => "AUDIT",
            Priority::Debug => "DEBUG",
            Priority::Info => "INFO",
            Priority::Warn => "WARN",
            Priority::Error => "ERROR",
            Priority::Critical => "CRITICAL",
            Priority::Sample => "SAMPLE",
        }
    }
}

impl FromStr for Priority {
    type Err = MessagingError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // Compared in place: every received notification is parsed here.
        Priority::ALL
            .into_iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(s))
            .or(s.eq_ignore_ascii_case("warning").then_some(Priority::Warn))
            .ok_or_else(|| {
                MessagingError::MalformedMessage(format!("unknown notification priority `{s}`"))
            })
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsing_ignores_case_and_knows_warning() {
        for priority in Priority::ALL {
            assert_eq!(priority.as_str().parse::<Priority>().unwrap(), priority);
            assert_eq!(
                priority.as_upper_str().parse::<Priority>().unwrap(),
                priority
            );
        }
        assert_eq!("Warning".parse::<Priority>().unwrap(), Priority::Warn);
        assert_eq!("WARNING".parse::<Priority>().unwrap(), Priority::Warn);
        for unknown in ["", "inf", "infos", "notice", "ınfo"] {
            let error = unknown.parse::<Priority>().unwrap_err();
            assert!(
                matches!(&error, MessagingError::MalformedMessage(why) if why.contains("priority")),
                "{unknown}: {error}"
            );
        }
    }
}
