//! Opening connections: host failover, credentials, TLS, back-off, error classification and
//! the retry loop that every send goes through.

use std::fmt::Display;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use lapin::auth::AuthProvider;
use lapin::protocol::{AMQPErrorKind, AMQPHardError, AMQPSoftError};
use lapin::types::{LongString, ShortString};
use lapin::uri::{
    AMQPAuthority, AMQPQueryString, AMQPScheme, AMQPUri, AMQPUserInfo, SASLMechanism,
};
use lapin::{Connection, ConnectionProperties, ErrorKind};
pub(crate) use messaging_core::driver::retry::Failure;
use messaging_core::driver::retry::{self, Backoff};
use messaging_core::driver::tls;
use messaging_core::driver::SendOptions;
use messaging_core::{MessagingError, Result, TransportHost, TransportUrl};
use tokio::net::TcpStream;
use tokio::time::{sleep, sleep_until, timeout, timeout_at, Instant};

use crate::config::{secs, FailoverStrategy, LoginMethod, RabbitConfig};
use crate::transport::Transport;

/// oslo's (and RabbitMQ's) default ports.
pub(crate) const DEFAULT_PORT: u16 = 5672;
const DEFAULT_TLS_PORT: u16 = 5671;
/// How long one TCP + AMQP handshake with one host may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// While no host accepts TCP connections, how often reconnection waits look for one that does.
const PROBE_INTERVAL: Duration = Duration::from_millis(500);
/// How long one probe of one host may take.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);
/// The least time one attempt of an operation with a deadline is given (see [`with_retry`]).
const MIN_ATTEMPT: Duration = Duration::from_secs(2);
/// The most time one attempt of an operation without a deadline is given (see [`with_retry`]).
const MAX_ATTEMPT: Duration = Duration::from_secs(30);

/// One broker host, resolved to what lapin needs.
#[derive(Clone)]
struct Host {
    uri: AMQPUri,
}

/// Opens connections to the URL's hosts, in failover order.
pub(crate) struct Connector {
    hosts: Vec<Host>,
    config: Arc<RabbitConfig>,
    transport: Transport,
    /// Where the trusted CAs come from, for error messages.
    trust: String,
    /// Index of the next host to try (round-robin).
    next: AtomicUsize,
}

impl Connector {
    /// Resolve the URL's hosts: credentials per host, falling back to the first host's, then
    /// `guest`/`guest`; vhost `/` unless the URL names one; oslo's default `localhost`.
    pub(crate) fn new(url: &TransportUrl, config: Arc<RabbitConfig>) -> Result<Self> {
        let transport = Transport::new(&config)?;
        let default_host = TransportHost {
            hostname: "localhost".into(),
            port: None,
            username: None,
            password: None,
        };
        let given: Vec<&TransportHost> = if url.hosts.is_empty() {
            vec![&default_host]
        } else {
            url.hosts.iter().collect()
        };
        let first = given[0];
        let vhost = url.virtual_host.clone().unwrap_or_else(|| "/".to_owned());
        let (scheme, default_port) = if config.ssl {
            (AMQPScheme::AMQPS, DEFAULT_TLS_PORT)
        } else {
            (AMQPScheme::AMQP, DEFAULT_PORT)
        };
        let mechanism = match config.rabbit_login_method {
            LoginMethod::Plain => SASLMechanism::Plain,
            LoginMethod::AmqPlain => SASLMechanism::AMQPlain,
            LoginMethod::External => SASLMechanism::External,
            LoginMethod::RabbitCrDemo => SASLMechanism::RabbitCrDemo,
        };
        let hosts = given
            .iter()
            .map(|h| {
                let (username, password) = match (&h.username, &h.password) {
                    (Some(user), password) => (user.clone(), password.clone().unwrap_or_default()),
                    (None, _) => (
                        first.username.clone().unwrap_or_else(|| "guest".into()),
                        first.password.clone().unwrap_or_else(|| "guest".into()),
                    ),
                };
                Host {
                    uri: AMQPUri {
                        scheme: scheme.clone(),
                        authority: AMQPAuthority {
                            userinfo: AMQPUserInfo { username, password },
                            host: h.hostname.clone(),
                            port: h.port_or(default_port),
                        },
                        vhost: vhost.clone(),
                        query: AMQPQueryString {
                            heartbeat: Some(config.heartbeat_timeout_threshold as u16),
                            frame_max: Some(config.frame_max),
                            auth_mechanism: Some(mechanism),
                            ..AMQPQueryString::default()
                        },
                    },
                }
            })
            .collect();
        let trust = tls::trust_source(config.ssl_ca_file.as_deref());
        Ok(Self {
            hosts,
            config,
            transport,
            trust,
            next: AtomicUsize::new(0),
        })
    }

    /// The driver's settings.
    pub(crate) fn config(&self) -> &Arc<RabbitConfig> {
        &self.config
    }

    /// One pass over the hosts in failover order; the first that accepts us wins. When none
    /// does, a failure another attempt would not cure (refused credentials or virtual host, a
    /// rejected TLS certificate) is reported in preference to unreachable hosts, as
    /// [`Failure::Fatal`]: the caller does not retry it.
    pub(crate) async fn connect(&self, role: &str) -> std::result::Result<Connection, Failure> {
        let order: Vec<usize> = match self.config.kombu_failover_strategy {
            FailoverStrategy::RoundRobin => {
                let start = self.next.load(Ordering::Relaxed);
                (0..self.hosts.len())
                    .map(|i| (start + i) % self.hosts.len())
                    .collect()
            }
            FailoverStrategy::Shuffle => {
                let mut order: Vec<usize> = (0..self.hosts.len()).collect();
                fastrand::shuffle(&mut order);
                order
            }
        };
        let mut last = None;
        for index in order {
            // The next pass starts after this host, whatever happens to this attempt: a host
            // that dropped us, refuses us or hangs (an attempt cut short by its deadline) is
            // tried last (kombu's round-robin).
            self.next
                .store((index + 1) % self.hosts.len(), Ordering::Relaxed);
            let host = &self.hosts[index];
            let authority = &host.uri.authority;
            let what = format!("{}:{}", authority.host, authority.port);
            let properties =
                ConnectionProperties::default().with_connection_name(connection_name(role).into());
            let properties = match self.config.rabbit_login_method {
                LoginMethod::External => properties.with_auth_provider(ExternalAuth),
                _ => properties,
            };
            let attempt = self.transport.connect(host.uri.clone(), properties);
            match timeout(CONNECT_TIMEOUT, attempt).await {
                Ok(Ok(connection)) => {
                    tracing::debug!(host = %what, role, "connected to RabbitMQ");
                    return Ok(connection);
                }
                Ok(Err(error)) => {
                    let failure = connect_error(
                        &what,
                        &authority.host,
                        &authority.userinfo.username,
                        &host.uri.vhost,
                        &self.trust,
                        &error,
                    );
                    let failure = self.with_login_hint(failure, &error);
                    let (Failure::Retry(reason) | Failure::Fatal(reason)) = &failure;
                    tracing::debug!(host = %what, role, error = %reason, "cannot connect to RabbitMQ");
                    // Another host may have other credentials or certificates: try it, but
                    // report a refusal rather than an unreachable host.
                    if is_fatal(&failure) || !last.as_ref().is_some_and(is_fatal) {
                        last = Some(failure);
                    }
                }
                Err(_) if last.as_ref().is_some_and(is_fatal) => {}
                Err(_) => {
                    last = Some(Failure::Retry(MessagingError::ConnectionFailure(format!(
                        "{what}: no answer within {CONNECT_TIMEOUT:?}"
                    ))));
                }
            }
        }
        Err(last.unwrap_or_else(|| {
            Failure::Fatal(MessagingError::ConnectionFailure("no broker host".into()))
        }))
    }

    /// RabbitMQ drops the connection of a client that asks for a login mechanism it does not
    /// offer (only PLAIN and AMQPLAIN by default): say so with the reset.
    fn with_login_hint(&self, failure: Failure, error: &lapin::Error) -> Failure {
        let method = match self.config.rabbit_login_method {
            LoginMethod::External => "EXTERNAL",
            LoginMethod::RabbitCrDemo => "RABBIT-CR-DEMO",
            LoginMethod::Plain | LoginMethod::AmqPlain => return failure,
        };
        let reset = matches!(error.kind(), ErrorKind::IOError(io)
            if io.kind() == std::io::ErrorKind::ConnectionReset);
        match failure {
            Failure::Retry(MessagingError::ConnectionFailure(reason)) if reset => {
                Failure::Retry(MessagingError::ConnectionFailure(format!(
                    "{reason} (does the broker offer the {method} login mechanism \
                     (rabbit_login_method)? RabbitMQ offers PLAIN and AMQPLAIN by default)"
                )))
            }
            other => other,
        }
    }

    /// Wait `delay` before reconnecting, plus up to `kombu_reconnect_splay` at random. While no
    /// host accepts TCP connections (a full outage, where the back-off grows towards
    /// `rabbit_interval_max`), the wait ends early, within [`PROBE_INTERVAL`] (plus the
    /// splay), once one does.
    pub(crate) async fn pause(&self, delay: Duration) {
        let until = Instant::now() + delay + self.config.reconnect_splay();
        if self.any_host_answers().await {
            sleep_until(until).await;
            return;
        }
        loop {
            let probe_at = Instant::now() + PROBE_INTERVAL;
            if probe_at >= until {
                sleep_until(until).await;
                return;
            }
            sleep_until(probe_at).await;
            if self.any_host_answers().await {
                tracing::debug!("a RabbitMQ host accepts connections again");
                sleep(self.config.reconnect_splay()).await;
                return;
            }
        }
    }

    /// True if one of the hosts accepts a TCP connection.
    async fn any_host_answers(&self) -> bool {
        let probes = self.hosts.iter().map(|host| {
            let address = (host.uri.authority.host.clone(), host.uri.authority.port);
            Box::pin(async move {
                match timeout(PROBE_TIMEOUT, TcpStream::connect(address)).await {
                    Ok(Ok(_)) => Ok(()),
                    _ => Err(()),
                }
            })
        });
        futures_util::future::select_ok(probes).await.is_ok()
    }
}

/// `<program>:<pid>:<uuid>`, as oslo names its connections (plus the role, for operators).
fn connection_name(role: &str) -> String {
    let program = messaging_core::driver::program_name();
    format!(
        "{program}:{}:{}:{role}",
        std::process::id(),
        messaging_core::wire::new_message_id()
    )
}

/// SASL EXTERNAL: the TLS client certificate is the identity.
struct ExternalAuth;

impl AuthProvider for ExternalAuth {
    fn mechanism(&self) -> ShortString {
        SASLMechanism::External.name().into()
    }

    fn auth_starter(&self) -> std::result::Result<LongString, String> {
        Ok("".into())
    }
}

/// A failed connection attempt to `host` (`hostname:port`), as the error users see, and whether
/// another attempt may help. `trust` says where the trusted CAs come from.
fn connect_error(
    host: &str,
    hostname: &str,
    user: &str,
    vhost: &str,
    trust: &str,
    error: &lapin::Error,
) -> Failure {
    if let ErrorKind::ProtocolError(amqp) = error.kind() {
        match amqp.kind() {
            AMQPErrorKind::Soft(AMQPSoftError::ACCESSREFUSED)
            | AMQPErrorKind::Hard(AMQPHardError::NOTALLOWED)
                if amqp.get_message().as_str().contains("vhost") =>
            {
                return Failure::Fatal(MessagingError::ConnectionFailure(format!(
                    "{host}: user `{user}` may not use virtual host `{vhost}`: {}",
                    amqp.get_message()
                )));
            }
            AMQPErrorKind::Soft(AMQPSoftError::ACCESSREFUSED) => {
                return Failure::Fatal(MessagingError::AuthenticationFailure(format!(
                    "{host}: login refused for user `{user}`: {}",
                    amqp.get_message()
                )));
            }
            _ => {}
        }
    }
    if let ErrorKind::AuthProviderError(reason) = error.kind() {
        return Failure::Fatal(MessagingError::AuthenticationFailure(format!(
            "{host}: {reason}"
        )));
    }
    if let Some(reason) = tls::find_rustls_error(error)
        .and_then(|e| tls::certificate_rejection(e, "broker", hostname, trust))
    {
        return Failure::Fatal(MessagingError::ConnectionFailure(format!(
            "{host}: {reason}"
        )));
    }
    Failure::Retry(MessagingError::ConnectionFailure(format!(
        "{host}: {error}"
    )))
}

fn is_fatal(failure: &Failure) -> bool {
    matches!(failure, Failure::Fatal(_))
}

/// Classify a lapin error from an operation described by `what`.
pub(crate) fn lapin_failure(what: &str, error: &lapin::Error) -> Failure {
    if let ErrorKind::ProtocolError(amqp) = error.kind() {
        if let AMQPErrorKind::Soft(soft) = amqp.kind() {
            let message = format!("{what}: broker refused: {amqp}");
            return match soft {
                // The broker is short of resources or the queue is busy: transient.
                AMQPSoftError::RESOURCELOCKED => {
                    Failure::Retry(MessagingError::DeliveryFailure(message))
                }
                // A durable classic queue whose node is down (in a cluster): back with its node.
                AMQPSoftError::NOTFOUND if message.contains("is down or inaccessible") => {
                    Failure::Retry(MessagingError::DeliveryFailure(message))
                }
                _ => Failure::Fatal(MessagingError::DeliveryFailure(message)),
            };
        }
    }
    Failure::Retry(MessagingError::ConnectionFailure(format!(
        "{what}: {error}"
    )))
}

/// The reconnection back-off of the oslo options: `rabbit_retry_interval`,
/// `rabbit_retry_backoff` (doubling), `rabbit_interval_max`.
pub(crate) fn backoff(config: &RabbitConfig) -> Backoff {
    Backoff::new(
        secs(config.rabbit_retry_interval),
        secs(config.rabbit_retry_backoff),
        secs(config.rabbit_interval_max),
    )
}

/// Run `op` until it succeeds, retrying transient failures as `options` allow, with the
/// configured back-off (cut short when the broker answers again after an outage), within
/// `options.timeout`.
///
/// With a timeout, one attempt may take half of what is left (at least [`MIN_ATTEMPT`]);
/// without one, [`MAX_ATTEMPT`]. An attempt stuck on a node that is changing state (a
/// handshake or a declaration that does not finish, a confirm that does not come) is cut (see
/// [`within`]), so that the next one, on another connection and host, still has time. `op`
/// gets its attempt's deadline.
pub(crate) async fn with_retry<T, F, Fut>(
    connector: &Connector,
    what: &(dyn Display + Sync),
    options: &SendOptions,
    mut op: F,
) -> Result<T>
where
    F: FnMut(Instant) -> Fut,
    Fut: Future<Output = std::result::Result<T, Failure>>,
{
    let deadline = options.timeout.map(|timeout| Instant::now() + timeout);
    let pause = |delay| connector.pause(delay);
    retry::with_retry_paced(what, options, backoff(connector.config()), pause, || {
        op(deadline.map_or_else(|| Instant::now() + MAX_ATTEMPT, attempt_deadline))
    })
    .await
}

/// When an attempt started now must end, for an operation due at `deadline`.
fn attempt_deadline(deadline: Instant) -> Instant {
    let now = Instant::now();
    let share = (deadline.saturating_duration_since(now) / 2).max(MIN_ATTEMPT);
    (now + share).min(deadline)
}

/// Run one attempt until `until` (its deadline from [`with_retry`]); an attempt cut there
/// fails with a [`Failure::Retry`] saying how long it was given.
pub(crate) async fn within<T>(
    until: Instant,
    what: &(dyn Display + Sync),
    attempt: impl Future<Output = std::result::Result<T, Failure>>,
) -> std::result::Result<T, Failure> {
    let given = until.saturating_duration_since(Instant::now());
    timeout_at(until, attempt).await.unwrap_or_else(|_| {
        Err(Failure::Retry(MessagingError::ConnectionFailure(format!(
            "{what}: no answer from the broker within {given:.1?}"
        ))))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_fall_back_to_the_first_host() {
        let url = TransportUrl::parse("rabbit://u1:p1@h1:5673,h2,u3:p3@h3/vh?ssl=false").unwrap();
        let c = Connector::new(&url, Arc::default()).unwrap();
        let hosts: Vec<_> = c
            .hosts
            .iter()
            .map(|h| {
                let a = &h.uri.authority;
                (
                    a.host.as_str(),
                    a.port,
                    a.userinfo.username.as_str(),
                    a.userinfo.password.as_str(),
                )
            })
            .collect();
        assert_eq!(
            hosts,
            [
                ("h1", 5673, "u1", "p1"),
                ("h2", 5672, "u1", "p1"),
                ("h3", 5672, "u3", "p3")
            ]
        );
        assert_eq!(c.hosts[0].uri.vhost, "vh");
        let c = Connector::new(&TransportUrl::parse("rabbit://").unwrap(), Arc::default()).unwrap();
        assert_eq!(c.hosts[0].uri.authority.host, "localhost");
        assert_eq!(c.hosts[0].uri.authority.userinfo.username, "guest");
        assert_eq!(c.hosts[0].uri.vhost, "/");
    }

    #[test]
    fn rejected_certificates_are_fatal_and_say_why() {
        use rustls::{CertificateError, Error as Tls};
        let io =
            |e: Tls| lapin::Error::from(std::io::Error::new(std::io::ErrorKind::InvalidData, e));
        let fail = |e: Tls| {
            connect_error(
                "h:5671",
                "h",
                "guest",
                "/",
                "a CA in ssl_ca_file `ca.pem`",
                &io(e),
            )
        };
        match fail(Tls::InvalidCertificate(CertificateError::UnknownIssuer)) {
            Failure::Fatal(MessagingError::ConnectionFailure(reason)) => assert_eq!(
                reason,
                "h:5671: TLS certificate rejected (not trusted): the broker's certificate is not \
                 issued by a CA in ssl_ca_file `ca.pem`: invalid peer certificate: UnknownIssuer"
            ),
            other => panic!("unexpected {other:?}"),
        }
        match fail(Tls::InvalidCertificate(CertificateError::NotValidForName)) {
            Failure::Fatal(MessagingError::ConnectionFailure(reason)) => {
                assert!(reason.contains("(host name mismatch)"), "{reason}");
                assert!(reason.contains("not valid for `h`"), "{reason}");
            }
            other => panic!("unexpected {other:?}"),
        }
        // Other TLS trouble (here: a peer that does not speak TLS) may pass: retried.
        assert!(matches!(
            fail(Tls::General("corrupt message".into())),
            Failure::Retry(MessagingError::ConnectionFailure(_))
        ));
    }

    #[test]
    fn refusals_of_the_moment_are_retried_and_the_rest_is_fatal() {
        use lapin::protocol::AMQPError;
        let refusal = |soft, message: &str| {
            let amqp = AMQPError::new(AMQPErrorKind::Soft(soft), message.into());
            lapin_failure(
                "declaring",
                &lapin::Error::from(ErrorKind::ProtocolError(amqp)),
            )
        };
        let home_node_down = "NOT_FOUND - home node 'r2@localhost' of durable queue 'q' in \
                              vhost '/' is down or inaccessible";
        assert!(matches!(
            refusal(AMQPSoftError::NOTFOUND, home_node_down),
            Failure::Retry(MessagingError::DeliveryFailure(_))
        ));
        assert!(matches!(
            refusal(AMQPSoftError::RESOURCELOCKED, "RESOURCE_LOCKED"),
            Failure::Retry(_)
        ));
        for (soft, message) in [
            (
                AMQPSoftError::NOTFOUND,
                "NOT_FOUND - no exchange 'x' in vhost '/'",
            ),
            (AMQPSoftError::ACCESSREFUSED, "ACCESS_REFUSED - no access"),
            (
                AMQPSoftError::PRECONDITIONFAILED,
                "PRECONDITION_FAILED - inequivalent arg 'durable'",
            ),
        ] {
            match refusal(soft, message) {
                Failure::Fatal(MessagingError::DeliveryFailure(reason)) => {
                    assert!(reason.contains(message), "{reason}")
                }
                other => panic!("{message}: {other:?}"),
            }
        }
    }

    #[test]
    fn backoff_grows_to_the_maximum() {
        let mut b = backoff(&RabbitConfig::default());
        let delays: Vec<f64> = (0..7).map(|_| b.next_delay().as_secs_f64()).collect();
        let nominal = [1.0, 3.0, 7.0, 15.0, 30.0, 30.0, 30.0];
        for (delay, nominal) in delays.iter().zip(nominal) {
            assert!(*delay >= nominal * 0.5 && *delay <= nominal, "{delays:?}");
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_secs(1));
    }
}
