//! Opening AMQP 1.0 connections: our own TCP socket with `TCP_NODELAY` (fe2o3 leaves Nagle
//! on), optional TLS, SASL PLAIN/ANONYMOUS from the URL, multi-host failover with backoff, and
//! the peer's Open `product` (read off the wire, since fe2o3 does not expose the remote Open).

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use fe2o3_amqp::connection::{ConnectionHandle, OpenError};
use fe2o3_amqp::sasl_profile::SaslProfile;
use fe2o3_amqp::types::definitions::Fields;
use fe2o3_amqp::types::performatives::Open;
use fe2o3_amqp::types::primitives::{Symbol, Value};
use fe2o3_amqp::types::sasl::SaslCode;
use fe2o3_amqp::Connection;
use messaging_core::{MessagingError, Result, Retry, TransportHost, TransportUrl};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::rustls::ClientConfig;
use tokio_rustls::TlsConnector;

use crate::config::Amqp1Config;

/// Default port of `amqp://`.
pub const AMQP_PORT: u16 = 5672;
/// Default port of `amqps://`.
pub const AMQPS_PORT: u16 = 5671;

/// What the peer said about itself in its Open frame.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerInfo {
    /// `properties.product`, e.g. `RabbitMQ` or `qpid-dispatch-router`.
    pub product: Option<String>,
    /// `properties.version`.
    pub version: Option<String>,
    /// `container-id`.
    pub container_id: String,
}

/// An open connection and what the peer announced.
pub(crate) struct Opened {
    pub handle: ConnectionHandle<()>,
    pub peer: PeerInfo,
    pub host: String,
}

/// Opens connections to the hosts of one transport URL.
pub(crate) struct Connector {
    config: Arc<Amqp1Config>,
    hosts: Vec<TransportHost>,
    vhost: Option<String>,
    tls: Option<Arc<ClientConfig>>,
    container_id: String,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("hosts", &self.hosts)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

fn container_id(config: &Amqp1Config) -> String {
    if !config.container_name.is_empty() {
        return config.container_name.clone();
    }
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    let program = messaging_core::driver::program_name();
    format!(
        "openstack.org/om/container/{host}/{program}/{}/{}",
        std::process::id(),
        messaging_core::wire::new_id()
    )
}

impl Connector {
    /// A connector for `url`. TLS files are read here, so bad ones fail the transport early.
    pub fn new(url: &TransportUrl, config: Arc<Amqp1Config>) -> Result<Self> {
        if url.hosts.is_empty() {
            return Err(MessagingError::InvalidUrl {
                url: url.to_string(),
                reason: "an amqp:// URL needs at least one host".into(),
            });
        }
        let tls = if url.driver == "amqps" || config.ssl {
            Some(crate::tls::client_config(&config)?)
        } else {
            None
        };
        Ok(Self {
            container_id: container_id(&config),
            hosts: url.hosts.clone(),
            vhost: url.virtual_host.clone(),
            tls,
            config,
        })
    }

    fn default_port(&self) -> u16 {
        if self.tls.is_some() {
            AMQPS_PORT
        } else {
            AMQP_PORT
        }
    }

    fn sasl_profile(&self, host: &TransportHost) -> SaslProfile {
        let allowed: Vec<String> = self
            .config
            .sasl_mechanisms
            .split_whitespace()
            .map(str::to_ascii_uppercase)
            .collect();
        let allows = |m: &str| allowed.is_empty() || allowed.iter().any(|a| a == m);
        match &host.username {
            Some(user) if allows("PLAIN") => SaslProfile::Plain {
                username: user.clone(),
                password: host.password.clone().unwrap_or_default(),
            },
            _ => SaslProfile::Anonymous,
        }
    }

    /// One attempt at one host.
    async fn open_host(&self, host: &TransportHost) -> Result<Opened> {
        let port = host.port_or(self.default_port());
        let label = format!("{}:{port}", host.hostname);
        let profile = self.sasl_profile(host);
        let login = login_of(&profile);
        let tcp = TcpStream::connect((host.hostname.as_str(), port))
            .await
            .map_err(|e| MessagingError::ConnectionFailure(format!("{label}: {e}")))?;
        tcp.set_nodelay(true)
            .map_err(|e| MessagingError::ConnectionFailure(format!("{label}: {e}")))?;
        let open_hostname = if self.config.pseudo_vhost {
            host.hostname.clone()
        } else {
            self.vhost.clone().unwrap_or_else(|| host.hostname.clone())
        };
        let mut properties = Fields::default();
        properties.insert(
            Symbol::from("process"),
            Value::String(std::env::args().next().unwrap_or_else(|| "rust".into())),
        );
        properties.insert(Symbol::from("pid"), Value::Uint(std::process::id()));
        properties.insert(
            Symbol::from("node"),
            Value::String(self.container_id.split('/').nth(3).unwrap_or("").to_owned()),
        );
        properties.insert(
            Symbol::from("product"),
            Value::String("messaging-rs driver-amqp1".into()),
        );
        let builder = Connection::builder()
            .container_id(self.container_id.clone())
            .hostname(open_hostname.as_str())
            .sasl_hostname(host.hostname.as_str())
            .scheme("amqp")
            .channel_max(2047)
            .properties(properties)
            .sasl_profile(profile);
        let builder = if self.config.idle_timeout > 0 {
            builder.idle_time_out(
                u32::try_from(self.config.idle_timeout.saturating_mul(1000)).unwrap_or(u32::MAX),
            )
        } else {
            builder
        };
        let captured = Capture::default();
        let handle = match &self.tls {
            None => builder
                .open_with_stream(Sniff::new(tcp, captured.clone()))
                .await
                .map_err(|e| open_error(&label, &login, e))?,
            Some(tls) => {
                let name = if self.config.ssl_verify_vhost {
                    self.vhost.clone().unwrap_or_else(|| host.hostname.clone())
                } else {
                    host.hostname.clone()
                };
                let stream = TlsConnector::from(tls.clone())
                    .connect(crate::tls::server_name(&name)?, tcp)
                    .await
                    .map_err(|e| crate::tls::handshake_error(&label, &name, &self.config, e))?;
                builder
                    .open_with_stream(Sniff::new(stream, captured.clone()))
                    .await
                    .map_err(|e| open_error(&label, &login, e))?
            }
        };
        captured.stop();
        let peer = captured.peer_info().unwrap_or_default();
        tracing::debug!(host = %label, product = ?peer.product, version = ?peer.version, "AMQP 1.0 connection open");
        Ok(Opened {
            handle,
            peer,
            host: label,
        })
    }

    /// Connect to the first host that answers, trying each in turn, again and again with a
    /// growing delay as `retry` allows, until `deadline`. Refused credentials and rejected TLS
    /// certificates fail at once.
    pub async fn connect(&self, retry: Retry, deadline: Option<Instant>) -> Result<Opened> {
        let mut backoff = self.config.backoff();
        let mut round = 0u32;
        loop {
            let mut errors = Vec::new();
            for host in &self.hosts {
                let limit = match deadline {
                    Some(d) => (Instant::now() + self.config.connect_timeout()).min(d),
                    None => Instant::now() + self.config.connect_timeout(),
                };
                match tokio::time::timeout_at(limit, self.open_host(host)).await {
                    Ok(Ok(opened)) => return Ok(opened),
                    Ok(Err(e @ MessagingError::AuthenticationFailure(_))) => return Err(e),
                    Ok(Err(e @ MessagingError::InvalidUrl { .. })) => return Err(e),
                    Ok(Err(e)) if crate::tls::is_rejection(&e) => return Err(e),
                    // Joined below into one ConnectionFailure: keep only the reason.
                    Ok(Err(MessagingError::ConnectionFailure(reason))) => errors.push(reason),
                    Ok(Err(e)) => errors.push(e.to_string()),
                    Err(_) => errors.push(format!(
                        "{}: no answer within {:?}",
                        host.hostname,
                        self.config.connect_timeout()
                    )),
                }
            }
            round += 1;
            let failure = MessagingError::ConnectionFailure(errors.join("; "));
            if !retry.allows(round) {
                return Err(failure);
            }
            let delay = backoff.next_delay();
            let wake = Instant::now() + delay;
            if deadline.is_some_and(|d| wake >= d) {
                return Err(failure);
            }
            tracing::warn!(error = %failure, retry_in = ?delay, "AMQP 1.0 connection failed");
            tokio::time::sleep_until(wake).await;
        }
    }
}

/// Who logs in and how, as errors name it (as the rabbit driver does).
fn login_of(profile: &SaslProfile) -> String {
    match profile {
        SaslProfile::Plain { username, .. } => format!("user `{username}` (SASL PLAIN)"),
        _ => "anonymous login (SASL ANONYMOUS)".to_owned(),
    }
}

fn open_error(label: &str, login: &str, error: OpenError) -> MessagingError {
    match error {
        OpenError::SaslError { code, .. } if code != SaslCode::Ok => {
            MessagingError::AuthenticationFailure(format!(
                "{label}: login refused for {login}: SASL {code:?}"
            ))
        }
        other => MessagingError::ConnectionFailure(format!("{label}: {other}")),
    }
}

/// The first bytes the peer sent, to find its Open frame.
#[derive(Debug, Clone, Default)]
struct Capture {
    bytes: Arc<Mutex<Vec<u8>>>,
    stopped: Arc<AtomicBool>,
}

/// Enough for the SASL exchange and any Open frame.
const CAPTURE_LIMIT: usize = 64 * 1024;

impl Capture {
    fn record(&self, data: &[u8]) {
        if self.stopped.load(Ordering::Relaxed) {
            return;
        }
        let mut bytes = self.bytes.lock().expect("capture poisoned");
        let room = CAPTURE_LIMIT.saturating_sub(bytes.len());
        bytes.extend_from_slice(&data[..data.len().min(room)]);
        if bytes.len() >= CAPTURE_LIMIT {
            self.stopped.store(true, Ordering::Relaxed);
        }
    }

    fn stop(&self) {
        self.stopped.store(true, Ordering::Relaxed);
    }

    fn peer_info(&self) -> Option<PeerInfo> {
        let bytes = std::mem::take(&mut *self.bytes.lock().expect("capture poisoned"));
        parse_open(&bytes)
    }
}

/// Find the peer's Open among the protocol headers and frames it sent first.
pub(crate) fn parse_open(mut bytes: &[u8]) -> Option<PeerInfo> {
    loop {
        if bytes.len() >= 8 && &bytes[..4] == b"AMQP" {
            bytes = &bytes[8..];
            continue;
        }
        if bytes.len() < 8 {
            return None;
        }
        let size = u32::from_be_bytes(bytes[..4].try_into().ok()?) as usize;
        let doff = usize::from(bytes[4]) * 4;
        let frame_type = bytes[5];
        if size < 8 || doff < 8 || size > bytes.len() || doff > size {
            return None;
        }
        let body = &bytes[doff..size];
        // An AMQP frame whose performative is open (descriptor 0x10).
        if frame_type == 0 && body.len() > 3 && body[..3] == [0x00, 0x53, 0x10] {
            let open: Open = serde_amqp::from_slice(body).ok()?;
            let text = |key: &str| {
                open.properties
                    .as_ref()
                    .and_then(|p| p.get(&Symbol::from(key)))
                    .and_then(|v| match v {
                        Value::String(s) => Some(s.clone()),
                        Value::Symbol(s) => Some(s.0.clone()),
                        _ => None,
                    })
            };
            return Some(PeerInfo {
                product: text("product"),
                version: text("version"),
                container_id: open.container_id.clone(),
            });
        }
        bytes = &bytes[size..];
    }
}

/// A stream that records what it reads until told to stop.
struct Sniff<S> {
    inner: S,
    capture: Capture,
}

impl<S> Sniff<S> {
    fn new(inner: S, capture: Capture) -> Self {
        Self { inner, capture }
    }
}

impl<S> std::fmt::Debug for Sniff<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sniff")
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Sniff<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &poll {
            let fresh = &buf.filled()[before..];
            if !fresh.is_empty() {
                self.capture.record(fresh);
            }
        }
        poll
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Sniff<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_open_after_sasl() {
        let mut open = Open {
            container_id: "peer-1".into(),
            hostname: None,
            max_frame_size: Default::default(),
            channel_max: Default::default(),
            idle_time_out: None,
            outgoing_locales: None,
            incoming_locales: None,
            offered_capabilities: None,
            desired_capabilities: None,
            properties: None,
        };
        let mut props = Fields::default();
        props.insert(Symbol::from("product"), Value::String("RabbitMQ".into()));
        props.insert(Symbol::from("version"), Value::String("3.10.8".into()));
        open.properties = Some(props);
        let body = serde_amqp::to_vec(&open).unwrap();
        let frame = |frame_type: u8, body: &[u8]| {
            let mut f = ((body.len() + 8) as u32).to_be_bytes().to_vec();
            f.extend_from_slice(&[2, frame_type, 0, 0]);
            f.extend_from_slice(body);
            f
        };
        let mut wire = b"AMQP\x03\x01\x00\x00".to_vec();
        wire.extend(frame(1, &[0x00, 0x53, 0x40, 0x45]));
        wire.extend(b"AMQP\x00\x01\x00\x00");
        wire.extend(frame(0, &body));
        let peer = parse_open(&wire).unwrap();
        assert_eq!(peer.product.as_deref(), Some("RabbitMQ"));
        assert_eq!(peer.version.as_deref(), Some("3.10.8"));
        assert_eq!(peer.container_id, "peer-1");
        assert!(parse_open(b"AMQP\x00\x01\x00\x00").is_none());
        assert!(parse_open(&wire[..wire.len() - 3]).is_none());
    }
}
