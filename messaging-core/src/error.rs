//! The one error type of the library, and the remote failure carried in RPC replies.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::target::{Target, Version};

/// Shorthand for results whose error is [`MessagingError`].
pub type Result<T, E = MessagingError> = std::result::Result<T, E>;

/// Everything that can go wrong when sending, receiving or configuring messaging.
///
/// Match on the variant to decide what to do; the `Display` text is meant for logs.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MessagingError {
    /// A transport URL that does not follow the grammar
    /// `driver[+variant]://[user:pass@]host:port[,…]/vhost?option=value`.
    #[error("invalid transport URL `{url}`: {reason}")]
    InvalidUrl {
        /// The URL with any password masked.
        url: String,
        /// What is wrong with it.
        reason: String,
    },

    /// No driver is compiled in for the URL's scheme.
    #[error("unknown transport scheme `{scheme}`; available schemes: {}{}", available.join(", "), scheme_hint(scheme))]
    UnknownScheme {
        /// The scheme that was asked for.
        scheme: String,
        /// Schemes of the drivers that are available.
        available: Vec<String>,
    },

    /// A URL query option (or config key) that the chosen driver does not know.
    #[error("unknown option `{option}` for the {driver} driver; {}known options: {}", did_you_mean(option, known), known.join(", "))]
    UnknownOption {
        /// The option that was given.
        option: String,
        /// The driver it was given to.
        driver: String,
        /// The options that driver declares.
        known: Vec<String>,
    },

    /// A configuration file or setting that cannot be used.
    #[error("invalid configuration{}: {reason}", line.map(|l| format!(" at line {l}")).unwrap_or_default())]
    InvalidConfig {
        /// The line of the file, when it came from one.
        line: Option<usize>,
        /// What is wrong.
        reason: String,
    },

    /// A known option with a value of the wrong kind or out of range.
    #[error("invalid value `{value}` for option `{option}`: {reason}")]
    InvalidOption {
        /// The option name.
        option: String,
        /// The rejected value.
        value: String,
        /// Why it was rejected.
        reason: String,
    },

    /// The driver cannot do what was asked (e.g. RPC over Kafka).
    #[error("the {driver} driver does not support {what}")]
    Unsupported {
        /// The driver's name.
        driver: String,
        /// What it cannot do.
        what: String,
    },

    /// A target that cannot be used for the operation (e.g. a fanout call).
    #[error("invalid target: {0}")]
    InvalidTarget(String),

    /// Arguments, a result or a payload could not be (de)serialized.
    #[error("serialization failed: {0}")]
    Serialization(#[from] serde_json::Error),

    /// No reply within the call's timeout (or no call-monitor heartbeat in time).
    ///
    /// Drivers build it with [`MessagingError::not_taken`]; [`RpcClient`](crate::RpcClient)
    /// adds the call it was about.
    #[error("{}", timeout_text(msg_id, *after, call.as_deref(), *delivered))]
    Timeout {
        /// The request's `_msg_id` (`(not sent)` if the time ran out before it was sent).
        msg_id: String,
        /// How long the caller waited.
        after: Duration,
        /// The call: method, topic, exchange, server, namespace and version.
        call: Option<Box<RpcCall>>,
        /// True if the request reached a server's queue or link and no reply came; false if
        /// no server took it (none consumes the topic, or the broker was unreachable).
        delivered: bool,
    },

    /// A cast or notification could not be handed over within its send timeout (for example,
    /// an AMQP 1.0 router grants no credit to an address nobody consumes).
    #[error("could not send {what} within {after:?}")]
    SendTimeout {
        /// What was being sent, and to where.
        what: String,
        /// How long the sender tried.
        after: Duration,
    },

    /// Fail fast: the transport could tell that no server can take a call or cast (nobody
    /// consumes its address), so it ended early instead of waiting out its timeout. Only with
    /// fail fast turned on (`RpcClient::fail_fast`, or the URL option `fail_fast`).
    #[error(
        "no server for topic `{topic}`{} took the request within {waited:?}",
        server.as_ref().map(|s| format!(" (server `{s}`)")).unwrap_or_default()
    )]
    NoServer {
        /// The topic the request was sent to.
        topic: String,
        /// The server it was directed to, if any.
        server: Option<String>,
        /// How long the sender waited before giving up.
        waited: Duration,
    },

    /// The remote endpoint raised an error.
    #[error("remote error: {0}")]
    Remote(Box<RemoteError>),

    /// The server has no endpoint with this method at a compatible version (and namespace).
    #[error("no such RPC method: {}; the server says: {}", describe_call(method, call.as_deref()), remote.message)]
    NoSuchMethod {
        /// The method that was called.
        method: String,
        /// The failure as the server encoded it (ours say where else the method is served).
        remote: Box<RemoteError>,
        /// The call: topic, exchange, server, namespace and version.
        call: Option<Box<RpcCall>>,
    },

    /// No endpoint of the server implements the requested version (in the namespace).
    #[error("unsupported RPC version {version}: {}; the server says: {}", describe_call(method, call.as_deref()), remote.message)]
    UnsupportedVersion {
        /// The requested version.
        version: String,
        /// The method that was called.
        method: String,
        /// The failure as the server encoded it (ours say which versions they serve).
        remote: Box<RemoteError>,
        /// The call: topic, exchange, server, namespace and version.
        call: Option<Box<RpcCall>>,
    },

    /// The requested version is above the client's `version_cap`.
    #[error("requested version {version} is above the version cap {cap}")]
    VersionCap {
        /// The requested version.
        version: String,
        /// The client's cap.
        cap: String,
    },

    /// The broker or peer refused or lost a message.
    #[error("delivery failed: {0}")]
    DeliveryFailure(String),

    /// The broker could not be reached or the connection broke, after the retries allowed.
    #[error("connection failure: {0}")]
    ConnectionFailure(String),

    /// The broker refused the credentials.
    #[error("authentication failed: {0}")]
    AuthenticationFailure(String),

    /// A message from the bus that could not be decoded.
    #[error("malformed message: {0}")]
    MalformedMessage(String),

    /// A message larger than the transport's limit.
    #[error("message of {size} bytes exceeds the limit of {limit} bytes")]
    PayloadTooLarge {
        /// Encoded size of the message.
        size: usize,
        /// The configured limit.
        limit: usize,
    },

    /// The notifier's outbox holds as many notifications as it may
    /// ([`Overflow::Error`](crate::Overflow::Error)), or one notification has more deliveries
    /// than the whole capacity.
    #[error("the notification outbox is full ({capacity} notifications waiting for the broker)")]
    OutboxFull {
        /// The outbox's capacity.
        capacity: usize,
    },

    /// Another outbox (in this or another process) uses the spool directory.
    #[error("the outbox spool {} is in use by another notifier or process", path.display())]
    OutboxLocked {
        /// The spool directory.
        path: std::path::PathBuf,
    },

    /// The outbox spool could not be read or written.
    #[error("outbox spool {}: {source}", path.display())]
    OutboxSpool {
        /// The spool directory or file.
        path: std::path::PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },

    /// The transport, server or listener has been closed.
    #[error("{0} is closed")]
    Closed(&'static str),
}

impl MessagingError {
    /// Shorthand for an [`MessagingError::Unsupported`] error.
    pub fn unsupported(driver: impl Into<String>, what: impl Into<String>) -> Self {
        Self::Unsupported {
            driver: driver.into(),
            what: what.into(),
        }
    }

    /// A [`MessagingError::Timeout`] for a request no server took within `after` (a driver
    /// found no queue or link for it): the RPC client adds which call it was.
    pub fn not_taken(msg_id: impl Into<String>, after: Duration) -> Self {
        Self::Timeout {
            msg_id: msg_id.into(),
            after,
            call: None,
            delivered: false,
        }
    }

    /// Name `call` in a timeout or dispatch error (other errors are returned unchanged).
    pub fn for_call(mut self, rpc_call: &RpcCall) -> Self {
        if let Self::Timeout { call, .. }
        | Self::NoSuchMethod { call, .. }
        | Self::UnsupportedVersion { call, .. } = &mut self
        {
            *call = Some(Box::new(rpc_call.clone()));
        }
        self
    }

    /// True for errors that a retry may cure (connection and delivery problems, timeouts).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::ConnectionFailure(_)
                | Self::DeliveryFailure(_)
                | Self::Timeout { .. }
                | Self::SendTimeout { .. }
                | Self::NoServer { .. }
        )
    }
}

/// An RPC call as errors name it: the method and where it was sent.
///
/// ```
/// use messaging_core::{RpcCall, Target};
///
/// let call = RpcCall::new("select_host", Target::topic("scheduler").exchange("nova"));
/// assert_eq!(
///     call.to_string(),
///     "`select_host` on topic `scheduler` (exchange `nova`, any server, no namespace, version 1.0)"
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcCall {
    /// The method called.
    pub method: String,
    /// The target, with the exchange the call used.
    pub target: Target,
}

impl RpcCall {
    /// A call of `method` to `target`.
    pub fn new(method: impl Into<String>, target: Target) -> Self {
        Self {
            method: method.into(),
            target,
        }
    }
}

impl fmt::Display for RpcCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let quoted = |value: &Option<String>| value.as_ref().map(|v| format!("`{v}`"));
        let target = &self.target;
        write!(f, "`{}` on topic ", self.method)?;
        match &target.topic {
            Some(topic) => write!(f, "`{topic}`")?,
            None => write!(f, "(none)")?,
        }
        let exchange = quoted(&target.exchange).unwrap_or_else(|| "(default)".into());
        let server =
            quoted(&target.server).map_or_else(|| "any server".into(), |s| format!("server {s}"));
        let namespace = quoted(&target.namespace)
            .map_or_else(|| "no namespace".into(), |n| format!("namespace {n}"));
        let version = target.version.as_deref().unwrap_or("1.0");
        write!(
            f,
            " (exchange {exchange}, {server}, {namespace}, version {version})"
        )
    }
}

// The `InvalidTarget` errors of targets and versions are built here, beside the error type:
// `target` (which errors name through `RpcCall`) then imports nothing from this module.

impl Target {
    /// The topic, or an [`MessagingError::InvalidTarget`] error naming `purpose`.
    pub fn require_topic(&self, purpose: &str) -> Result<&str> {
        match self.topic.as_deref() {
            Some(topic) if !topic.is_empty() => Ok(topic),
            _ => Err(MessagingError::InvalidTarget(format!(
                "a topic is required to {purpose}"
            ))),
        }
    }
}

impl FromStr for Version {
    type Err = MessagingError;

    fn from_str(s: &str) -> Result<Self> {
        let invalid =
            || MessagingError::InvalidTarget(format!("invalid version `{s}`: expected X.Y"));
        let mut parts = s
            .split('.')
            .map(|p| p.parse::<u32>().map_err(|_| invalid()));
        let major = parts.next().ok_or_else(invalid)??;
        let minor = parts.next().transpose()?.unwrap_or(0);
        let revision = parts.next().transpose()?.unwrap_or(0);
        if parts.next().is_some() {
            return Err(invalid());
        }
        Ok(Version {
            major,
            minor,
            revision,
        })
    }
}

/// The call a dispatch error is about, or just its method when the call is unknown.
fn describe_call(method: &str, call: Option<&RpcCall>) -> String {
    match call {
        Some(call) => call.to_string(),
        None => format!("`{method}`"),
    }
}

fn timeout_text(msg_id: &str, after: Duration, call: Option<&RpcCall>, delivered: bool) -> String {
    let after = seconds(after);
    match (call, delivered) {
        (Some(call), false) => format!("no server took the call {call} within {after}"),
        (Some(call), true) => format!(
            "no reply within {after} to the call {call} (message ID {msg_id}): it was sent, \
             but no server answered in time"
        ),
        (None, false) => format!("no server took message ID {msg_id} within {after}"),
        (None, true) => format!("no reply within {after} to message ID {msg_id}"),
    }
}

/// `2 s`, `0.5 s`: a duration as people read it in an error message.
fn seconds(duration: Duration) -> String {
    let tenths = (duration.as_secs_f64() * 10.0).round() / 10.0;
    format!("{tenths} s")
}

/// Where the broker drivers come from, for a scheme one of them serves.
fn scheme_hint(scheme: &str) -> &'static str {
    match scheme {
        "rabbit" | "kombu" | "amqp" | "amqps" | "kafka" => {
            " (the `messaging` crate installs its drivers, per its cargo features, in its \
             `get_*_transport`, `parse_ini` and `load_ini` functions; call \
             `messaging::install_default_drivers()` before opening transports any other way)"
        }
        _ => "",
    }
}

/// `did you mean `x`? ` when one of `known` is within a typo of `given`.
fn did_you_mean(given: &str, known: &[String]) -> String {
    crate::suggest::closest(given, known.iter().map(String::as_str))
        .map(|name| format!("did you mean `{name}`? "))
        .unwrap_or_default()
}

/// Python's module for built-in exception classes, as oslo encodes it.
pub const BUILTINS_MODULE: &str = "builtins";

/// The dispatcher module of oslo.messaging, the module of `NoSuchMethod`/`UnsupportedVersion`.
pub const DISPATCHER_MODULE: &str = "oslo_messaging.rpc.dispatcher";

/// An exception raised by a remote endpoint, as oslo.messaging serializes it in a reply's
/// `failure` field: `{"class", "module", "message", "tb", "args", "kwargs"}`.
///
/// Endpoints return it to signal an error to the caller; callers receive it inside
/// [`MessagingError::Remote`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RemoteError {
    /// Exception class name, e.g. `ValueError`.
    #[serde(rename = "class")]
    pub class: String,
    /// Module of the class, e.g. `builtins`.
    pub module: String,
    /// `str(exception)`.
    pub message: String,
    /// Traceback lines, if the peer sent any.
    #[serde(rename = "tb", default)]
    pub traceback: Vec<String>,
    /// The exception's positional arguments.
    #[serde(default)]
    pub args: Vec<serde_json::Value>,
    /// The exception's keyword arguments.
    #[serde(default)]
    pub kwargs: serde_json::Map<String, serde_json::Value>,
    /// An error the endpoint expects (oslo's `expected_exceptions`): logged quietly by the server.
    #[serde(skip)]
    pub expected: bool,
}

impl RemoteError {
    /// An error of Python class `class` in module `builtins`, e.g. `("ValueError", "bad input")`.
    pub fn new(class: impl Into<String>, message: impl Into<String>) -> Self {
        Self::with_module(class, BUILTINS_MODULE, message)
    }

    /// An error of class `class` in `module`.
    pub fn with_module(
        class: impl Into<String>,
        module: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        let message = message.into();
        Self {
            class: class.into(),
            module: module.into(),
            args: vec![serde_json::Value::String(message.clone())],
            message,
            traceback: Vec::new(),
            kwargs: serde_json::Map::new(),
            expected: false,
        }
    }

    /// A Python `ValueError`, the usual error for bad arguments.
    pub fn value_error(message: impl Into<String>) -> Self {
        Self::new("ValueError", message)
    }

    /// Mark the error as expected: the server logs it at debug level, without a traceback.
    pub fn expected(mut self) -> Self {
        self.expected = true;
        self
    }

    /// oslo's `NoSuchMethod` failure.
    pub fn no_such_method(method: &str) -> Self {
        Self::with_module(
            "NoSuchMethod",
            DISPATCHER_MODULE,
            format!("Endpoint does not support RPC method {method}"),
        )
    }

    /// oslo's `UnsupportedVersion` failure.
    pub fn unsupported_version(version: &str, method: &str) -> Self {
        Self::with_module(
            "UnsupportedVersion",
            DISPATCHER_MODULE,
            format!("Endpoint does not support RPC version {version}. Attempted method: {method}"),
        )
    }

    /// Turn a failure received for `method` (at `version`) into the matching error variant.
    pub fn into_error(self, method: &str, version: Option<&str>) -> MessagingError {
        match (self.class.as_str(), self.module.as_str()) {
            ("NoSuchMethod", DISPATCHER_MODULE) => MessagingError::NoSuchMethod {
                method: method.to_owned(),
                remote: Box::new(self),
                call: None,
            },
            ("UnsupportedVersion", DISPATCHER_MODULE) => MessagingError::UnsupportedVersion {
                version: version.unwrap_or("1.0").to_owned(),
                method: method.to_owned(),
                remote: Box::new(self),
                call: None,
            },
            _ => MessagingError::Remote(Box::new(self)),
        }
    }
}

impl fmt::Display for RemoteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}: {}", self.module, self.class, self.message)
    }
}

impl std::error::Error for RemoteError {}

/// Errors of the library cross back to a caller's caller unchanged: a remote failure keeps its
/// class, anything else becomes a `MessagingError` failure in this crate's module.
impl From<MessagingError> for RemoteError {
    fn from(err: MessagingError) -> Self {
        match err {
            MessagingError::Remote(remote)
            | MessagingError::NoSuchMethod { remote, .. }
            | MessagingError::UnsupportedVersion { remote, .. } => *remote,
            MessagingError::Timeout { .. } => Self::with_module(
                "MessagingTimeout",
                "oslo_messaging.exceptions",
                err.to_string(),
            ),
            other => Self::with_module(
                "MessagingException",
                "oslo_messaging.exceptions",
                other.to_string(),
            ),
        }
    }
}

impl From<serde_json::Error> for RemoteError {
    fn from(err: serde_json::Error) -> Self {
        Self::value_error(err.to_string())
    }
}

impl From<std::io::Error> for RemoteError {
    fn from(err: std::io::Error) -> Self {
        Self::new("OSError", err.to_string())
    }
}

impl From<String> for RemoteError {
    fn from(message: String) -> Self {
        Self::new("Exception", message)
    }
}

impl From<&str> for RemoteError {
    fn from(message: &str) -> Self {
        Self::new("Exception", message)
    }
}
