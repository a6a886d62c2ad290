//! Declaring a driver's options once: [`driver_options!`](crate::driver_options) and
//! [`option_enum!`](crate::option_enum) generate the config struct, its `Default`, its
//! [`OptionSpec`] list, reading from URL or INI options and an INI `Display` from one
//! declaration per option; [`OptionValue`] maps each field's Rust type to its kind, parse and
//! text.

use std::fmt;

use super::{parse_bool, OptionKind, OptionSpec, Options};
use crate::error::{MessagingError, Result};

/// A Rust type a driver option can have: its [`OptionKind`], how a value is parsed and how it
/// is written back (in a URL query or an INI file).
pub trait OptionValue: Sized {
    /// The kind the core checks given values against before the driver reads them.
    const KIND: OptionKind;

    /// Parse `raw`, the value given for `option`.
    fn parse_option(option: &str, raw: &str) -> Result<Self>;

    /// The value as written in a URL or INI file; `None` when unset.
    fn format_option(&self) -> Option<String>;
}

/// The error of a value `raw` given for `option` that is not of its kind.
pub fn invalid_value(option: &str, raw: &str, reason: impl Into<String>) -> MessagingError {
    MessagingError::InvalidOption {
        option: option.to_owned(),
        value: raw.to_owned(),
        reason: reason.into(),
    }
}

impl OptionValue for bool {
    const KIND: OptionKind = OptionKind::Bool;

    fn parse_option(option: &str, raw: &str) -> Result<Self> {
        parse_bool(raw)
            .ok_or_else(|| invalid_value(option, raw, "expected true/false, yes/no, on/off or 1/0"))
    }

    fn format_option(&self) -> Option<String> {
        Some(self.to_string())
    }
}

macro_rules! unsigned_option_value {
    ($($ty:ty),*) => {$(
        impl OptionValue for $ty {
            const KIND: OptionKind = OptionKind::Integer;

            fn parse_option(option: &str, raw: &str) -> Result<Self> {
                let value: u64 = raw
                    .parse()
                    .map_err(|_| invalid_value(option, raw, "expected a non-negative integer"))?;
                Self::try_from(value)
                    .map_err(|_| invalid_value(option, raw, format!("at most {}", Self::MAX)))
            }

            fn format_option(&self) -> Option<String> {
                Some(self.to_string())
            }
        }
    )*};
}

unsigned_option_value!(u16, u32, u64);

/// Seconds (or another non-negative number).
impl OptionValue for f64 {
    const KIND: OptionKind = OptionKind::Float;

    fn parse_option(option: &str, raw: &str) -> Result<Self> {
        match raw.parse::<f64>() {
            Ok(value) if value.is_finite() && value >= 0.0 => Ok(value),
            _ => Err(invalid_value(option, raw, "expected a non-negative number")),
        }
    }

    fn format_option(&self) -> Option<String> {
        Some(self.to_string())
    }
}

impl OptionValue for String {
    const KIND: OptionKind = OptionKind::String;

    fn parse_option(_option: &str, raw: &str) -> Result<Self> {
        Ok(raw.to_owned())
    }

    fn format_option(&self) -> Option<String> {
        Some(self.clone())
    }
}

/// An optional value: an empty value leaves it unset.
impl<T: OptionValue> OptionValue for Option<T> {
    const KIND: OptionKind = T::KIND;

    fn parse_option(option: &str, raw: &str) -> Result<Self> {
        if raw.is_empty() {
            Ok(None)
        } else {
            T::parse_option(option, raw).map(Some)
        }
    }

    fn format_option(&self) -> Option<String> {
        self.as_ref().and_then(T::format_option)
    }
}

/// A driver's settings struct, as [`driver_options!`](crate::driver_options) generates it.
pub trait DriverConfig: Default + fmt::Display {
    /// The INI section of these settings, oslo's name (`oslo_messaging_rabbit`, …).
    const SECTION: &'static str;

    /// Every option, as declared to the core: the fields, then their other names.
    const OPTIONS: &'static [OptionSpec];

    /// Set every option that `options` gives (values already checked against
    /// [`OPTIONS`](Self::OPTIONS)); other fields keep their values.
    fn apply_options(&mut self, options: &Options<'_>) -> Result<()>;

    /// Each field's option name and value as text (`None`: unset), in declaration order.
    fn option_values(&self) -> Vec<(&'static str, Option<String>)>;
}

/// Write `values` as an INI section `[section]`, one `name = value` line each; an unset value
/// is a commented-out line, so that reading the text back leaves it unset.
pub fn write_section(
    f: &mut fmt::Formatter<'_>,
    section: &str,
    values: &[(&'static str, Option<String>)],
) -> fmt::Result {
    writeln!(f, "[{section}]")?;
    for (name, value) in values {
        match value {
            Some(value) => writeln!(f, "{name} = {value}")?,
            None => writeln!(f, "#{name} =")?,
        }
    }
    Ok(())
}

/// Declare a driver's settings once: each option's name (the field), type, default, doc and
/// one line of help. Generates the struct (serde, `#[serde(default, deny_unknown_fields)]`),
/// `Default`, [`DriverConfig`] (the [`OptionSpec`] list, reading from options, the values) and
/// a `Display` that writes the settings as an INI section. Other names of an option go in an
/// optional `aliases` block (read before the option itself, which wins). The driver's crate
/// needs `serde` as a dependency.
///
/// ```
/// use messaging_core::options::{DriverConfig, OptionKind};
///
/// messaging_core::option_enum! {
///     /// How the next host is chosen.
///     #[derive(Default)]
///     pub enum Failover {
///         /// In order.
///         #[default]
///         RoundRobin = "round-robin",
///         /// At random.
///         Shuffle = "shuffle",
///     }
/// }
///
/// messaging_core::driver_options! {
///     section = "oslo_messaging_example";
///     /// Settings of the example driver.
///     pub struct ExampleConfig {
///         /// Declare queues durable.
///         durable_queues: bool = false, "declare queues durable";
///         /// First reconnection delay, in seconds.
///         retry_interval: f64 = 1.0, "first reconnection delay, in seconds";
///         /// How the next host is chosen.
///         failover: Failover = Failover::RoundRobin, "how the next host is chosen";
///         /// PEM file of the CAs to trust (default: the system's).
///         ca_file: Option<String> = None, "PEM file of the CAs to trust";
///     }
///     aliases {
///         durable: bool => durable_queues, "the same as durable_queues";
///     }
/// }
///
/// let specs = ExampleConfig::OPTIONS;
/// assert_eq!(specs[2].kind, OptionKind::Choice(&["round-robin", "shuffle"]));
/// assert_eq!(specs[4].name, "durable");
///
/// let url = messaging_core::TransportUrl::parse("example://h/?durable=yes&failover=shuffle")?;
/// let mut config = ExampleConfig::default();
/// config.apply_options(&url.options())?;
/// assert!(config.durable_queues);
/// assert_eq!(config.failover, Failover::Shuffle);
/// assert_eq!(
///     config.to_string(),
///     "[oslo_messaging_example]\ndurable_queues = true\nretry_interval = 1\n\
///      failover = shuffle\n#ca_file =\n",
/// );
/// # Ok::<(), messaging_core::MessagingError>(())
/// ```
#[macro_export]
macro_rules! driver_options {
    (
        section = $section:literal;
        $(#[$attr:meta])*
        $vis:vis struct $name:ident {
            $(
                $(#[$field_attr:meta])*
                $field:ident : $ty:ty = $default:expr, $help:expr;
            )*
        }
        $(aliases {
            $( $alias:ident : $alias_ty:ty => $target:ident, $alias_help:expr; )*
        })?
    ) => {
        $(#[$attr])*
        #[derive(Debug, Clone, PartialEq, ::serde::Serialize, ::serde::Deserialize)]
        #[serde(default, deny_unknown_fields)]
        $vis struct $name {
            $( $(#[$field_attr])* pub $field: $ty, )*
        }

        impl ::core::default::Default for $name {
            fn default() -> Self {
                Self { $( $field: $default, )* }
            }
        }

        impl $crate::options::DriverConfig for $name {
            const SECTION: &'static str = $section;

            const OPTIONS: &'static [$crate::options::OptionSpec] = &[
                $( $crate::options::OptionSpec::new(
                    stringify!($field),
                    <$ty as $crate::options::OptionValue>::KIND,
                    $help,
                ), )*
                $($( $crate::options::OptionSpec::new(
                    stringify!($alias),
                    <$alias_ty as $crate::options::OptionValue>::KIND,
                    $alias_help,
                ), )*)?
            ];

            fn apply_options(
                &mut self,
                options: &$crate::options::Options<'_>,
            ) -> $crate::Result<()> {
                $($( if let Some(raw) = options.get(stringify!($alias)) {
                    self.$target = <$alias_ty as $crate::options::OptionValue>::parse_option(
                        stringify!($alias),
                        raw,
                    )?;
                } )*)?
                $( if let Some(raw) = options.get(stringify!($field)) {
                    self.$field =
                        <$ty as $crate::options::OptionValue>::parse_option(stringify!($field), raw)?;
                } )*
                Ok(())
            }

            fn option_values(&self) -> Vec<(&'static str, Option<String>)> {
                vec![ $( (
                    stringify!($field),
                    $crate::options::OptionValue::format_option(&self.$field),
                ), )* ]
            }
        }

        impl ::core::fmt::Display for $name {
            /// The settings as an INI section (`[section]`, `name = value` lines).
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                $crate::options::write_section(
                    f,
                    <Self as $crate::options::DriverConfig>::SECTION,
                    &$crate::options::DriverConfig::option_values(self),
                )
            }
        }
    };
}

/// Declare an enum whose values are a fixed set of names: the enum (serde with those names),
/// `as_str`, and its [`OptionValue`] (kind [`OptionKind::Choice`]). Add `#[derive(Default)]`
/// and a `#[default]` variant as usual. See [`driver_options!`](crate::driver_options).
#[macro_export]
macro_rules! option_enum {
    (
        $(#[$attr:meta])*
        $vis:vis enum $name:ident {
            $( $(#[$variant_attr:meta])* $variant:ident = $text:literal, )*
        }
    ) => {
        $(#[$attr])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, ::serde::Serialize, ::serde::Deserialize)]
        $vis enum $name {
            $( $(#[$variant_attr])* #[serde(rename = $text)] $variant, )*
        }

        impl $name {
            /// The name of this value in URLs and config files.
            pub fn as_str(self) -> &'static str {
                match self { $( Self::$variant => $text, )* }
            }
        }

        impl $crate::options::OptionValue for $name {
            const KIND: $crate::options::OptionKind =
                $crate::options::OptionKind::Choice(&[$($text),*]);

            fn parse_option(option: &str, raw: &str) -> $crate::Result<Self> {
                match raw {
                    $( $text => Ok(Self::$variant), )*
                    _ => Err($crate::options::invalid_value(
                        option,
                        raw,
                        format!("expected one of: {}", [$($text),*].join(", ")),
                    )),
                }
            }

            fn format_option(&self) -> Option<String> {
                Some(self.as_str().to_owned())
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(result: Result<impl fmt::Debug>) -> String {
        match result {
            Err(MessagingError::InvalidOption { reason, .. }) => reason,
            other => panic!("expected InvalidOption, got {other:?}"),
        }
    }

    #[test]
    fn values_parse_and_print_back() {
        assert_eq!(u16::parse_option("n", "65535").unwrap(), u16::MAX);
        assert_eq!(reason(u16::parse_option("n", "65536")), "at most 65535");
        assert_eq!(
            reason(u64::parse_option("n", "-1")),
            "expected a non-negative integer"
        );
        assert!(f64::parse_option("s", "-0.5").is_err());
        assert_eq!(
            f64::parse_option("s", "0.25")
                .unwrap()
                .format_option()
                .unwrap(),
            "0.25"
        );
        assert!(bool::parse_option("b", "maybe").is_err());
        assert_eq!(Option::<u64>::parse_option("n", "").unwrap(), None);
        assert_eq!(Option::<u64>::parse_option("n", "7").unwrap(), Some(7));
        assert_eq!(None::<String>.format_option(), None);
        assert_eq!(<Option<u32> as OptionValue>::KIND, OptionKind::Integer);
    }
}
