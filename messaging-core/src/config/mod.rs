//! Messaging configuration: typed (serde) or from an oslo-style INI file.
//!
//! ```
//! let config = messaging_core::config::parse_ini(
//!     "[DEFAULT]\n\
//!      transport_url = memory:///nova\n\
//!      control_exchange = nova\n\
//!      [oslo_messaging_notifications]\n\
//!      topics = notifications, billing\n",
//! )?;
//! assert_eq!(config.notification_url(), "memory:///nova");
//! assert_eq!(config.notifications.topics, ["notifications", "billing"]);
//! # Ok::<(), messaging_core::MessagingError>(())
//! ```

mod checks;
mod ini;
mod open;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{MessagingError, Result};
use crate::notify::{NotifierDriver, OutboxConfig, Overflow};
use crate::options::{self, OptionSpec};
use crate::registry::driver_named;
use crate::rpc::DEFAULT_MAX_CONCURRENCY;
use crate::signing::{SignatureMode, Signing};
use crate::transport::{TransportOptions, DEFAULT_EXCHANGE};

pub use checks::ConfigWarning;

/// oslo.messaging's default `transport_url`: RabbitMQ on `localhost:5672`, user `guest`.
pub const DEFAULT_TRANSPORT_URL: &str = "rabbit://";

/// Typed messaging configuration, for services that load settings with serde or from an INI
/// file ([`parse_ini`], [`load_ini`]). Build what the service needs from it, so that every
/// setting applies: [`rpc_transport`](Self::rpc_transport),
/// [`notification_transport`](Self::notification_transport), [`rpc_client`](Self::rpc_client),
/// [`rpc_server`](Self::rpc_server), [`notifier`](Self::notifier) and
/// [`notification_listener`](Self::notification_listener).
///
/// Without a `transport_url` it is oslo.messaging's default, [`DEFAULT_TRANSPORT_URL`]
/// (`rabbit://`: RabbitMQ on localhost), never the in-process `memory://`.
///
/// ```
/// let config: messaging_core::config::MessagingConfig = serde_json::from_str(
///     r#"{"transport_url": "rabbit://h1/", "notifications": {"transport_url": "kafka://k1:9092/"}}"#,
/// ).unwrap();
/// assert_eq!(config.notification_url(), "kafka://k1:9092/");
/// assert_eq!(config.control_exchange, "openstack");
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MessagingConfig {
    /// `[DEFAULT] transport_url`: the RPC transport.
    pub transport_url: String,
    /// `[DEFAULT] control_exchange`.
    pub control_exchange: String,
    /// `[DEFAULT] rpc_response_timeout`, in seconds: the default call timeout.
    pub rpc_response_timeout: f64,
    /// `[DEFAULT] executor_thread_pool_size`: how many requests or notifications a server or
    /// listener handles at once.
    pub executor_thread_pool_size: usize,
    /// `[DEFAULT] rpc_ping_enabled`: servers answer `oslo_rpc_server_ping`.
    pub rpc_ping_enabled: bool,
    /// `[oslo_messaging_notifications]`.
    pub notifications: NotificationsConfig,
    /// Driver options by driver name, from `[oslo_messaging_rabbit]`, `[oslo_messaging_amqp]`
    /// and `[oslo_messaging_kafka]`; URL query options override them.
    pub driver_options: BTreeMap<String, Vec<(String, String)>>,
    /// `[oslo_messaging_signing]`: sign and check every message of both transports (see
    /// [`crate::signing`]). Serialized without its secrets.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signing: Option<Signing>,
    /// What [`parse_ini`] or [`load_ini`] accepted but found suspicious (a key of ours
    /// misspelled in `[DEFAULT]`, oslo's default URL taken for a missing `transport_url`).
    /// Each is also logged as a `tracing` warning.
    #[serde(skip)]
    pub warnings: Vec<ConfigWarning>,
}

/// `[oslo_messaging_notifications]` settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NotificationsConfig {
    /// Notification transport; `transport_url` when absent.
    pub transport_url: Option<String>,
    /// Notifier drivers (`messagingv2`, `messaging`, `log`, `noop`); repeated `driver` lines
    /// add up, as oslo's multi-valued option. `messagingv2` when absent (oslo sends nothing
    /// then; we do not drop notifications silently).
    pub driver: Vec<String>,
    /// Topics to publish to.
    pub topics: Vec<String>,
    /// Send retries: negative for forever.
    pub retry: i64,
    /// `outbox_dir`: keep unsent notifications in a durable outbox spooled to this directory
    /// (see [`Notifier::with_outbox`](crate::Notifier::with_outbox)).
    pub outbox_dir: Option<String>,
    /// `outbox_capacity`: an outbox of this many notifications; 0 (the default) means no
    /// outbox unless `outbox_dir` is set, which then holds
    /// [`OutboxConfig::DEFAULT_CAPACITY`].
    pub outbox_capacity: usize,
    /// `outbox_overflow`: `error` (the default), `drop_oldest` or `wait` (see [`Overflow`]).
    pub outbox_overflow: String,
}

impl Default for MessagingConfig {
    fn default() -> Self {
        Self {
            transport_url: DEFAULT_TRANSPORT_URL.to_owned(),
            control_exchange: DEFAULT_EXCHANGE.to_owned(),
            rpc_response_timeout: 60.0,
            executor_thread_pool_size: DEFAULT_MAX_CONCURRENCY,
            rpc_ping_enabled: false,
            notifications: NotificationsConfig::default(),
            driver_options: BTreeMap::new(),
            signing: None,
            warnings: Vec::new(),
        }
    }
}

impl Default for NotificationsConfig {
    fn default() -> Self {
        Self {
            transport_url: None,
            driver: vec!["messagingv2".to_owned()],
            topics: vec!["notifications".to_owned()],
            retry: -1,
            outbox_dir: None,
            outbox_capacity: 0,
            outbox_overflow: "error".to_owned(),
        }
    }
}

impl NotificationsConfig {
    /// The outbox these settings ask for, if any.
    ///
    /// ```
    /// let config = messaging_core::config::parse_ini(
    ///     "[oslo_messaging_notifications]\noutbox_dir = /var/spool/nova-notifications\n",
    /// )?;
    /// let outbox = config.notifications.outbox()?.expect("an outbox");
    /// assert_eq!(outbox.capacity(), messaging_core::OutboxConfig::DEFAULT_CAPACITY);
    /// # Ok::<(), messaging_core::MessagingError>(())
    /// ```
    pub fn outbox(&self) -> Result<Option<OutboxConfig>> {
        if self.outbox_dir.is_none() && self.outbox_capacity == 0 {
            return Ok(None);
        }
        let capacity = match self.outbox_capacity {
            0 => OutboxConfig::DEFAULT_CAPACITY,
            n => n,
        };
        let overflow =
            overflow_named(&self.outbox_overflow).ok_or_else(|| MessagingError::InvalidOption {
                option: "outbox_overflow".into(),
                value: self.outbox_overflow.clone(),
                reason: format!("expected one of: {OVERFLOW_NAMES}"),
            })?;
        let mut config = OutboxConfig::new(capacity).overflow(overflow);
        if let Some(dir) = &self.outbox_dir {
            config = config.spool_dir(dir);
        }
        Ok(Some(config))
    }
}

/// The `outbox_overflow` values, as error messages list them.
const OVERFLOW_NAMES: &str = "error, drop_oldest, wait";

/// The overflow policy an `outbox_overflow` value names.
fn overflow_named(name: &str) -> Option<Overflow> {
    match name {
        "error" => Some(Overflow::Error),
        "drop_oldest" => Some(Overflow::DropOldest),
        "wait" => Some(Overflow::Wait),
        _ => None,
    }
}

impl MessagingConfig {
    /// The notification URL, falling back to the RPC URL as oslo does.
    pub fn notification_url(&self) -> &str {
        self.notifications
            .transport_url
            .as_deref()
            .unwrap_or(&self.transport_url)
    }

    /// The default call timeout.
    pub fn rpc_timeout(&self) -> Duration {
        Duration::try_from_secs_f64(self.rpc_response_timeout).unwrap_or(Duration::from_secs(60))
    }

    /// The options both transports are opened with.
    pub fn transport_options(&self) -> TransportOptions {
        TransportOptions {
            control_exchange: self.control_exchange.clone(),
            driver_options: self.driver_options.clone(),
            signing: self.signing.clone(),
        }
    }

    /// Override settings from the environment, with oslo.config's names:
    /// `OS_DEFAULT__TRANSPORT_URL`, `OS_DEFAULT__CONTROL_EXCHANGE`,
    /// `OS_DEFAULT__RPC_RESPONSE_TIMEOUT`, `OS_DEFAULT__EXECUTOR_THREAD_POOL_SIZE`,
    /// `OS_DEFAULT__RPC_PING_ENABLED`, `OS_OSLO_MESSAGING_NOTIFICATIONS__TRANSPORT_URL`,
    /// `…__DRIVER`, `…__TOPICS`, `…__RETRY`, `…__OUTBOX_DIR`, `…__OUTBOX_CAPACITY`,
    /// `…__OUTBOX_OVERFLOW`, `OS_OSLO_MESSAGING_SIGNING__KEYS`, `…__MODE`.
    pub fn apply_env(&mut self) -> Result<()> {
        self.apply_env_from(|name| std::env::var(name).ok())
    }

    fn apply_env_from(&mut self, var: impl Fn(&str) -> Option<String>) -> Result<()> {
        for (section, key) in OUR_KEYS {
            let name = format!(
                "OS_{}__{}",
                section.to_ascii_uppercase(),
                key.to_ascii_uppercase()
            );
            if let Some(value) = var(&name) {
                self.set(section, key, &value)
                    .map_err(|reason| invalid(None, format!("{name}: {reason}")))?;
            }
        }
        Ok(())
    }

    /// Set one of our keys from its text.
    fn set(&mut self, section: &str, key: &str, value: &str) -> Result<(), String> {
        let number = |v: &str| {
            v.parse::<f64>()
                .map_err(|_| format!("`{v}` is not a number"))
        };
        match (section, key) {
            (_, "transport_url") if value.is_empty() => {
                return Err("`transport_url` is empty: give a URL such as rabbit://host/".into())
            }
            ("DEFAULT", "transport_url") => self.transport_url = value.to_owned(),
            ("DEFAULT", "control_exchange") => self.control_exchange = value.to_owned(),
            ("DEFAULT", "rpc_response_timeout") => {
                let seconds = number(value)?;
                // NaN, infinite or negative would silently become the 60 s default.
                if !(seconds.is_finite() && seconds > 0.0) {
                    return Err(format!("`{value}` is not a positive number of seconds"));
                }
                self.rpc_response_timeout = seconds
            }
            ("DEFAULT", "executor_thread_pool_size") => {
                self.executor_thread_pool_size = match value.parse() {
                    Ok(size) if size > 0 => size,
                    _ => return Err(format!("`{value}` is not a positive count")),
                }
            }
            ("DEFAULT", "rpc_ping_enabled") => {
                self.rpc_ping_enabled = options::parse_bool(value)
                    .ok_or_else(|| format!("`{value}` is not true or false"))?
            }
            (NOTIFICATIONS, "transport_url") => {
                self.notifications.transport_url = Some(value.to_owned())
            }
            (NOTIFICATIONS, "driver") => {
                let drivers =
                    non_empty_list(value, "driver", "messagingv2, messaging, log or noop")?;
                for driver in &drivers {
                    driver
                        .parse::<NotifierDriver>()
                        .map_err(|e| e.to_string())?;
                }
                self.notifications.driver = drivers;
            }
            (NOTIFICATIONS, "topics") => {
                self.notifications.topics = non_empty_list(value, "topics", "a topic")?
            }
            (NOTIFICATIONS, "retry") => {
                self.notifications.retry = value
                    .parse()
                    .map_err(|_| format!("`{value}` is not an integer"))?
            }
            (NOTIFICATIONS, "outbox_dir") => self.notifications.outbox_dir = Some(value.to_owned()),
            (NOTIFICATIONS, "outbox_capacity") => {
                self.notifications.outbox_capacity = value
                    .parse()
                    .map_err(|_| format!("`{value}` is not a count"))?
            }
            (NOTIFICATIONS, "outbox_overflow") => match overflow_named(value) {
                Some(_) => self.notifications.outbox_overflow = value.to_owned(),
                None => return Err(format!("`{value}` is not one of: {OVERFLOW_NAMES}")),
            },
            // Errors name the key ids, never the secrets (nor echo the value).
            (SIGNING, "keys") => {
                let mode = self.signing.as_ref().map(Signing::mode).unwrap_or_default();
                let keys = Signing::parse(value).map_err(|e| signing_reason(&e))?;
                self.signing = Some(keys.with_mode(mode));
            }
            (SIGNING, "mode") => {
                let mode: SignatureMode = value.parse().map_err(|e| signing_reason(&e))?;
                let signing = self
                    .signing
                    .take()
                    .ok_or_else(|| "`mode` needs `keys` in [oslo_messaging_signing]".to_owned())?;
                self.signing = Some(signing.with_mode(mode));
            }
            _ => return Err(format!("unknown option `{key}` in [{section}]")),
        }
        Ok(())
    }
}

const NOTIFICATIONS: &str = "oslo_messaging_notifications";
const SIGNING: &str = "oslo_messaging_signing";

/// The text of a signing settings error, for [`MessagingError::InvalidConfig`] with a line.
fn signing_reason(error: &MessagingError) -> String {
    match error {
        MessagingError::InvalidConfig { reason, .. } => reason.clone(),
        other => other.to_string(),
    }
}

/// The keys of ours that `[DEFAULT]`, `[oslo_messaging_notifications]` and
/// `[oslo_messaging_signing]` may hold (`keys` before `mode`: a mode needs keys).
const OUR_KEYS: [(&str, &str); 14] = [
    ("DEFAULT", "transport_url"),
    ("DEFAULT", "control_exchange"),
    ("DEFAULT", "rpc_response_timeout"),
    ("DEFAULT", "executor_thread_pool_size"),
    ("DEFAULT", "rpc_ping_enabled"),
    (NOTIFICATIONS, "transport_url"),
    (NOTIFICATIONS, "driver"),
    (NOTIFICATIONS, "topics"),
    (NOTIFICATIONS, "retry"),
    (NOTIFICATIONS, "outbox_dir"),
    (NOTIFICATIONS, "outbox_capacity"),
    (NOTIFICATIONS, "outbox_overflow"),
    (SIGNING, "keys"),
    (SIGNING, "mode"),
];

/// Driver sections of oslo.messaging and the driver each configures.
const DRIVER_SECTIONS: [(&str, &str); 3] = [
    ("oslo_messaging_rabbit", "rabbit"),
    ("oslo_messaging_amqp", "amqp1"),
    ("oslo_messaging_kafka", "kafka"),
];

fn list(value: &str) -> Vec<String> {
    value
        .split([',', '\n'])
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A list that must name something: an empty one would silently send nowhere.
fn non_empty_list(value: &str, key: &str, expected: &str) -> Result<Vec<String>, String> {
    let items = list(value);
    if items.is_empty() {
        return Err(format!("`{key}` is empty: name {expected}"));
    }
    Ok(items)
}

fn invalid(line: Option<usize>, reason: String) -> MessagingError {
    MessagingError::InvalidConfig { line, reason }
}

/// Read an oslo-style INI configuration.
///
/// Reads `[DEFAULT]` (`transport_url`, `control_exchange`, `rpc_response_timeout`,
/// `executor_thread_pool_size`, `rpc_ping_enabled`; other keys there belong to other libraries
/// and are left alone), `[oslo_messaging_notifications]` (`transport_url`, `driver`, `topics`,
/// `retry`, `outbox_dir`, `outbox_capacity`, `outbox_overflow`), `[oslo_messaging_signing]`
/// (`keys` = `id:secret` items separated by commas, the first signs; `mode` = `reject` or
/// `warn`) and the driver sections `[oslo_messaging_rabbit]`, `[oslo_messaging_amqp]`,
/// `[oslo_messaging_kafka]`, whose keys must be options of that driver when it is installed.
/// Other sections are ignored.
///
/// Errors ([`MessagingError::InvalidConfig`], naming the line): an unknown key in one of our
/// sections (with the nearest known one), a value of the wrong kind, and a `[DEFAULT]` line
/// that starts with one of our keys but has no `=` (`transport_url rabbit://…`). Warnings
/// ([`MessagingConfig::warnings`], also logged): a `[DEFAULT]` key one or two typos away from
/// one of ours, and a missing `transport_url`, which means oslo's default
/// [`DEFAULT_TRANSPORT_URL`].
///
/// ```
/// let config = messaging_core::config::parse_ini("[DEFAULT]\ntransport_urll = memory://\n")?;
/// assert_eq!(config.transport_url, "rabbit://");
/// assert!(config.warnings[0].message.contains("did you mean `transport_url`?"));
/// # Ok::<(), messaging_core::MessagingError>(())
/// ```
pub fn parse_ini(text: &str) -> Result<MessagingConfig> {
    Ok(read_ini(text)?.finish())
}

/// Read an oslo-style INI file (see [`parse_ini`]), then apply environment overrides
/// ([`MessagingConfig::apply_env`]).
pub fn load_ini(path: impl AsRef<Path>) -> Result<MessagingConfig> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path)
        .map_err(|e| invalid(None, format!("cannot read {}: {e}", path.display())))?;
    let mut config = read_ini(&text)?;
    config.apply_env()?;
    Ok(config.finish())
}

/// The settings a file gives, with `transport_url` left empty when it gives none.
fn read_ini(text: &str) -> Result<MessagingConfig> {
    let sections = ini::parse(text).map_err(|(line, reason)| invalid(Some(line), reason))?;
    let mut config = MessagingConfig {
        transport_url: String::new(),
        ..MessagingConfig::default()
    };
    for section in &sections {
        let name = section.name.as_str();
        if let Some((_, driver)) = DRIVER_SECTIONS.iter().find(|(s, _)| *s == name) {
            read_driver_section(&mut config, section, driver)?;
        } else if name == "DEFAULT" || name == NOTIFICATIONS || name == SIGNING {
            read_our_section(&mut config, section)?;
        }
    }
    Ok(config)
}

fn read_driver_section(
    config: &mut MessagingConfig,
    section: &ini::Section,
    driver: &str,
) -> Result<()> {
    let specs: Option<&'static [OptionSpec]> = driver_named(driver).map(|d| d.options());
    let options = config.driver_options.entry(driver.to_owned()).or_default();
    for entry in &section.entries {
        if let Some(specs) = specs {
            options::validate(driver, specs, [(entry.key.as_str(), entry.value.as_str())])
                .map_err(|e| invalid(Some(entry.line), format!("[{}] {e}", section.name)))?;
        }
        options.retain(|(k, _)| *k != entry.key);
        options.push((entry.key.clone(), entry.value.clone()));
    }
    Ok(())
}

fn read_our_section(config: &mut MessagingConfig, section: &ini::Section) -> Result<()> {
    let name = section.name.as_str();
    let ours: Vec<&str> = OUR_KEYS
        .iter()
        .filter(|(s, _)| *s == name)
        .map(|(_, key)| *key)
        .collect();
    let mut entries: Vec<_> = section.entries.iter().collect();
    // `keys` first, wherever it is written: `mode` applies to them.
    entries.sort_by_key(|entry| !(name == SIGNING && entry.key == "keys"));
    let mut seen_driver = false;
    for entry in entries {
        if !ours.contains(&entry.key.as_str()) {
            checks::unknown_key(name, entry, &ours, &mut config.warnings)?;
            continue;
        }
        // oslo's `driver` is multi-valued: each line adds drivers.
        let repeated = name == NOTIFICATIONS && entry.key == "driver";
        let value = if repeated && std::mem::replace(&mut seen_driver, true) {
            format!("{},{}", config.notifications.driver.join(","), entry.value)
        } else {
            entry.value.clone()
        };
        config
            .set(name, &entry.key, &value)
            .map_err(|reason| invalid(Some(entry.line), reason))?;
    }
    Ok(())
}

impl MessagingConfig {
    /// The last step of reading a file: oslo's default URL when none was given, and every
    /// warning logged.
    fn finish(mut self) -> Self {
        if self.transport_url.is_empty() {
            self.transport_url = DEFAULT_TRANSPORT_URL.to_owned();
            self.warnings.push(ConfigWarning {
                line: None,
                message: format!(
                    "no `transport_url` in [DEFAULT]: using oslo.messaging's default \
                     `{DEFAULT_TRANSPORT_URL}` (RabbitMQ on localhost:5672, user guest)"
                ),
            });
        }
        for warning in &self.warnings {
            tracing::warn!(target: "messaging::config", "{warning}");
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_oslo_sections_and_falls_back() {
        let config = parse_ini(
            "[DEFAULT]\ndebug = true\ntransport_url = rabbit://h//\nrpc_response_timeout = 30\n\
             [oslo_messaging_notifications]\ndriver = messagingv2\nretry = 3\n\
             [keystone_authtoken]\nanything = goes\n",
        )
        .unwrap();
        assert_eq!(config.transport_url, "rabbit://h//");
        assert_eq!(config.notification_url(), "rabbit://h//");
        assert_eq!(config.rpc_timeout(), Duration::from_secs(30));
        assert_eq!(config.notifications.retry, 3);
        assert_eq!(config.notifications.topics, ["notifications"]);
    }

    #[test]
    fn unknown_keys_in_our_sections_name_the_line() {
        let err = parse_ini("[oslo_messaging_notifications]\n\ntopcis = x\n").unwrap_err();
        assert!(
            matches!(err, MessagingError::InvalidConfig { line: Some(3), .. }),
            "{err}"
        );
        assert!(err.to_string().contains("topcis"), "{err}");
        let err = parse_ini("[DEFAULT]\nrpc_response_timeout = soon\n").unwrap_err();
        assert!(
            matches!(err, MessagingError::InvalidConfig { line: Some(2), .. }),
            "{err}"
        );
        // Found by fuzzing: these parsed as numbers and silently meant 60 s.
        for value in ["nan", "inf", "-5", "0"] {
            let text = format!("[DEFAULT]\nrpc_response_timeout = {value}\n");
            let err = parse_ini(&text).unwrap_err();
            assert!(
                err.to_string().contains("positive number"),
                "{value}: {err}"
            );
        }
    }

    #[test]
    fn outbox_settings() {
        let config = parse_ini(
            "[oslo_messaging_notifications]\noutbox_capacity = 50\noutbox_overflow = drop_oldest\n",
        )
        .unwrap();
        let outbox = config.notifications.outbox().unwrap().unwrap();
        assert_eq!((outbox.capacity(), outbox.spool()), (50, None));
        assert!(parse_ini("[DEFAULT]\n")
            .unwrap()
            .notifications
            .outbox()
            .unwrap()
            .is_none());
        let err =
            parse_ini("[oslo_messaging_notifications]\noutbox_overflow = drop\n").unwrap_err();
        assert!(
            matches!(err, MessagingError::InvalidConfig { line: Some(2), .. }),
            "{err}"
        );
    }

    #[test]
    fn driver_sections_become_option_defaults() {
        let config = parse_ini("[oslo_messaging_kafka]\ncompression_codec = gzip\n").unwrap();
        assert_eq!(
            config.transport_options().driver_options["kafka"],
            [("compression_codec".to_owned(), "gzip".to_owned())]
        );
    }

    #[test]
    fn signing_section_sets_both_transports() {
        let config = parse_ini(
            "[oslo_messaging_signing]\nmode = warn\nkeys = k2:second secret 0123456,\n  k1:first:secret 0123456\n",
        )
        .unwrap();
        let signing = config.transport_options().signing.unwrap();
        assert_eq!(signing.mode(), SignatureMode::Warn);
        let ids: Vec<&str> = signing.keys().iter().map(|k| k.id()).collect();
        assert_eq!(ids, ["k2", "k1"]);
        assert!(parse_ini("[DEFAULT]\n").unwrap().signing.is_none());
        let dumped = serde_json::to_string(&config).unwrap();
        assert!(!dumped.contains("secret 0123456"), "{dumped}");
    }

    #[test]
    fn bad_signing_settings_name_the_line_but_not_the_secret() {
        for (text, line) in [
            ("[oslo_messaging_signing]\nkeys = k1:tooshort\n", 2),
            ("[oslo_messaging_signing]\n\nkeys = k1\n", 3),
            (
                "[oslo_messaging_signing]\nkeys = k1:0123456789abcdef\nmode = drop\n",
                3,
            ),
            ("[oslo_messaging_signing]\nmode = warn\n", 2),
            ("[oslo_messaging_signing]\nkey = k1:0123456789abcdef\n", 2),
        ] {
            let err = parse_ini(text).unwrap_err();
            assert!(
                matches!(err, MessagingError::InvalidConfig { line: Some(l), .. } if l == line),
                "{text:?}: {err}"
            );
            assert!(!err.to_string().contains("tooshort"), "{err}");
        }
    }

    #[test]
    fn server_keys_and_notifier_drivers() {
        let config = parse_ini(
            "[DEFAULT]\nexecutor_thread_pool_size = 8\nrpc_ping_enabled = yes\n\
             [oslo_messaging_notifications]\ndriver = log\ndriver = messaging, noop\n",
        )
        .unwrap();
        assert_eq!(config.executor_thread_pool_size, 8);
        assert!(config.rpc_ping_enabled);
        assert_eq!(config.notifications.driver, ["log", "messaging", "noop"]);
        for (text, line) in [
            ("[DEFAULT]\nexecutor_thread_pool_size = 0\n", 2),
            ("[DEFAULT]\nrpc_ping_enabled = sometimes\n", 2),
            ("[oslo_messaging_notifications]\ndriver = messagingv3\n", 2),
            ("[oslo_messaging_notifications]\n\ndriver =\n", 3),
            ("[oslo_messaging_notifications]\ntopics = ,\n", 2),
        ] {
            let err = parse_ini(text).unwrap_err();
            assert!(
                matches!(err, MessagingError::InvalidConfig { line: Some(l), .. } if l == line),
                "{text:?}: {err}"
            );
        }
    }

    #[test]
    fn a_transport_url_from_the_environment_is_not_a_missing_one() {
        let mut config = read_ini("[DEFAULT]\n").unwrap();
        config
            .apply_env_from(|name| {
                (name == "OS_DEFAULT__TRANSPORT_URL").then(|| "memory:///env".to_owned())
            })
            .unwrap();
        let config = config.finish();
        assert_eq!(config.transport_url, "memory:///env");
        assert!(config.warnings.is_empty(), "{:?}", config.warnings);
    }

    #[test]
    fn environment_overrides() {
        let mut config = parse_ini("[DEFAULT]\ntransport_url = memory://\n").unwrap();
        config
            .apply_env_from(|name| match name {
                "OS_DEFAULT__TRANSPORT_URL" => Some("rabbit://env//".into()),
                "OS_OSLO_MESSAGING_NOTIFICATIONS__TOPICS" => Some("a,b".into()),
                "OS_OSLO_MESSAGING_SIGNING__KEYS" => Some("k9:0123456789abcdef".into()),
                "OS_OSLO_MESSAGING_SIGNING__MODE" => Some("warn".into()),
                _ => None,
            })
            .unwrap();
        assert_eq!(config.transport_url, "rabbit://env//");
        assert_eq!(config.notifications.topics, ["a", "b"]);
        let signing = config.signing.unwrap();
        assert_eq!(signing.keys()[0].id(), "k9");
        assert_eq!(signing.mode(), SignatureMode::Warn);
    }
}
