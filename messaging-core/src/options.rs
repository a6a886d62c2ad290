//! Driver options: what a driver declares, and typed reads of the values a URL gives.
//!
//! Every driver declares its options as a static list of [`OptionSpec`]s. Options given in a
//! URL's query or a config file's driver section are checked against that list before the
//! driver sees them, so a typo is an error that names the known options instead of being
//! silently ignored.
//!
//! A driver declares each option once, with [`driver_options!`](crate::driver_options): name,
//! type, default, doc and help in one line, from which come the settings struct, the
//! [`OptionSpec`] list, the reading of given values and the INI text of the settings
//! (`Display`):
//!
//! ```
//! use messaging_core::options::DriverConfig;
//!
//! messaging_core::driver_options! {
//!     section = "oslo_messaging_example";
//!     /// Settings of the example driver.
//!     pub struct ExampleConfig {
//!         /// Declare queues durable.
//!         durable_queues: bool = false, "declare queues durable";
//!         /// Consumer prefetch count (0: unlimited).
//!         prefetch_count: u16 = 0, "consumer prefetch count (0: unlimited)";
//!     }
//! }
//!
//! let url = messaging_core::TransportUrl::parse("example://h/?prefetch_count=10")?;
//! messaging_core::options::validate("example", ExampleConfig::OPTIONS, url.query.iter().map(|(k, v)| (k.as_str(), v.as_str())))?;
//! let mut config = ExampleConfig::default();
//! config.apply_options(&url.options())?;
//! assert_eq!(config.prefetch_count, 10);
//! assert_eq!(config.to_string(), "[oslo_messaging_example]\ndurable_queues = false\nprefetch_count = 10\n");
//! # Ok::<(), messaging_core::MessagingError>(())
//! ```

mod declare;

use std::fmt;
use std::time::Duration;

pub use declare::{invalid_value, write_section, DriverConfig, OptionValue};

use crate::error::{MessagingError, Result};

/// The kind of value an option takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptionKind {
    /// `true/false`, `yes/no`, `on/off`, `1/0`.
    Bool,
    /// A non-negative integer.
    Integer,
    /// A number, possibly fractional (seconds, for instance).
    Float,
    /// Any string.
    String,
    /// One of a fixed set of strings.
    Choice(&'static [&'static str]),
}

impl fmt::Display for OptionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Bool => f.write_str("bool"),
            Self::Integer => f.write_str("integer"),
            Self::Float => f.write_str("number"),
            Self::String => f.write_str("string"),
            Self::Choice(choices) => write!(f, "one of {}", choices.join(", ")),
        }
    }
}

/// One option a driver understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptionSpec {
    /// The name, as written in a URL query (oslo's name where oslo has one).
    pub name: &'static str,
    /// The kind of value it takes.
    pub kind: OptionKind,
    /// One line of help, shown by tools.
    pub help: &'static str,
}

impl OptionSpec {
    /// Declare an option.
    pub const fn new(name: &'static str, kind: OptionKind, help: &'static str) -> Self {
        Self { name, kind, help }
    }

    /// Check that `value` is of this option's kind.
    pub fn check(&self, value: &str) -> Result<()> {
        let invalid = |reason: String| MessagingError::InvalidOption {
            option: self.name.to_owned(),
            value: value.to_owned(),
            reason,
        };
        match self.kind {
            OptionKind::Bool => parse_bool(value)
                .map(drop)
                .ok_or_else(|| invalid("expected true/false, yes/no, on/off or 1/0".into())),
            OptionKind::Integer => value
                .parse::<u64>()
                .map(drop)
                .map_err(|_| invalid("expected a non-negative integer".into())),
            OptionKind::Float => match value.parse::<f64>() {
                Ok(v) if v.is_finite() && v >= 0.0 => Ok(()),
                _ => Err(invalid("expected a non-negative number".into())),
            },
            OptionKind::String => Ok(()),
            OptionKind::Choice(choices) => {
                if choices.contains(&value) {
                    Ok(())
                } else {
                    Err(invalid(format!("expected one of: {}", choices.join(", "))))
                }
            }
        }
    }
}

pub(crate) fn parse_bool(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Some(true),
        "false" | "no" | "off" | "0" => Some(false),
        _ => None,
    }
}

/// Check every `(name, value)` pair against a driver's declared options.
pub fn validate<'a>(
    driver: &str,
    specs: &[OptionSpec],
    given: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<()> {
    for (name, value) in given {
        match specs.iter().find(|spec| spec.name == name) {
            Some(spec) => spec.check(value)?,
            None => {
                return Err(MessagingError::UnknownOption {
                    option: name.to_owned(),
                    driver: driver.to_owned(),
                    known: specs.iter().map(|s| s.name.to_owned()).collect(),
                })
            }
        }
    }
    Ok(())
}

pub use crate::suggest::closest;

/// Typed, validated reads of option values, for drivers.
///
/// Values were checked against the driver's specs before the driver got them, so these only
/// fail when a driver reads an option under a kind it did not declare.
#[derive(Debug, Clone, Copy)]
pub struct Options<'a> {
    pairs: &'a [(String, String)],
}

impl<'a> Options<'a> {
    pub(crate) fn new(pairs: &'a [(String, String)]) -> Self {
        Self { pairs }
    }

    /// The raw value of an option, if given.
    pub fn get(&self, name: &str) -> Option<&'a str> {
        self.pairs
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    fn parsed<T>(&self, name: &str, parse: impl FnOnce(&str) -> Option<T>) -> Result<Option<T>> {
        self.get(name)
            .map(|raw| {
                parse(raw).ok_or_else(|| MessagingError::InvalidOption {
                    option: name.to_owned(),
                    value: raw.to_owned(),
                    reason: "value of the wrong kind".into(),
                })
            })
            .transpose()
    }

    /// A boolean option, or `default`.
    pub fn bool(&self, name: &str, default: bool) -> Result<bool> {
        Ok(self.parsed(name, parse_bool)?.unwrap_or(default))
    }

    /// An integer option, or `default`.
    pub fn u64(&self, name: &str, default: u64) -> Result<u64> {
        Ok(self.parsed(name, |v| v.parse().ok())?.unwrap_or(default))
    }

    /// A numeric option, or `default`.
    pub fn f64(&self, name: &str, default: f64) -> Result<f64> {
        Ok(self.parsed(name, |v| v.parse().ok())?.unwrap_or(default))
    }

    /// A duration given in (possibly fractional) seconds, or `default`.
    pub fn seconds(&self, name: &str, default: Duration) -> Result<Duration> {
        Ok(self
            .parsed(name, |v| {
                v.parse::<f64>()
                    .ok()
                    .and_then(|s| Duration::try_from_secs_f64(s).ok())
            })?
            .unwrap_or(default))
    }

    /// A string option, or `default`.
    pub fn string(&self, name: &str, default: &str) -> String {
        self.get(name).unwrap_or(default).to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPECS: &[OptionSpec] = &[
        OptionSpec::new("durable", OptionKind::Bool, ""),
        OptionSpec::new("prefetch", OptionKind::Integer, ""),
        OptionSpec::new("ttl", OptionKind::Float, ""),
        OptionSpec::new("mode", OptionKind::Choice(&["a", "b"]), ""),
    ];

    #[test]
    fn accepts_values_of_the_declared_kind() {
        let given = [
            ("durable", "yes"),
            ("prefetch", "10"),
            ("ttl", "1.5"),
            ("mode", "b"),
        ];
        validate("test", SPECS, given).unwrap();
    }

    #[test]
    fn unknown_option_names_the_known_ones() {
        let err = validate("test", SPECS, [("durabel", "true")]).unwrap_err();
        match &err {
            MessagingError::UnknownOption { option, known, .. } => {
                assert_eq!(option, "durabel");
                assert_eq!(known, &["durable", "prefetch", "ttl", "mode"]);
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(err.to_string().contains("known options: durable, prefetch"));
        assert!(err.to_string().contains("did you mean `durable`?"), "{err}");
        let far = validate("test", SPECS, [("colour", "red")]).unwrap_err();
        assert!(!far.to_string().contains("did you mean"), "{far}");
    }

    #[test]
    fn wrong_kinds_are_rejected() {
        for (name, value) in [
            ("durable", "maybe"),
            ("prefetch", "-1"),
            ("ttl", "x"),
            ("mode", "c"),
        ] {
            let err = validate("test", SPECS, [(name, value)]).unwrap_err();
            assert!(
                matches!(err, MessagingError::InvalidOption { .. }),
                "{name}={value}: {err}"
            );
        }
    }

    #[test]
    fn typed_reads() {
        let pairs = vec![
            ("durable".to_owned(), "off".to_owned()),
            ("ttl".to_owned(), "2.5".to_owned()),
        ];
        let options = Options::new(&pairs);
        assert!(!options.bool("durable", true).unwrap());
        assert_eq!(
            options.seconds("ttl", Duration::ZERO).unwrap(),
            Duration::from_millis(2500)
        );
        assert_eq!(options.u64("prefetch", 7).unwrap(), 7);
    }
}
