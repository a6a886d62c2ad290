//! The byte stream under an AMQP connection, as oslo's driver sets it up: TCP with
//! `TCP_USER_TIMEOUT` at the heartbeat timeout, TLS from the `ssl_*` options, and the liveness
//! check of `heartbeat_rate`.
//!
//! lapin sends a heartbeat after half the negotiated timeout without writing, and gives a
//! connection up after twice the timeout without reading, but looks only every half timeout.
//! oslo looks `heartbeat_rate` times as often (every `timeout / rate / 2`), so a silent broker
//! (a frozen node, a black-holed network) is noticed within `2 × timeout + timeout / rate / 2`:
//! a watcher per connection does that here, from the kernel's record of the last data received,
//! and shuts a silent connection's socket down, which its users see as a lost connection.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_compat::{Compat, CompatExt};
use lapin::tcp::{AsyncTcpStream, RustlsConnector};
use lapin::uri::AMQPUri;
use lapin::{Connection, ConnectionProperties, ConnectionStatus};
use messaging_core::driver::tls::{self, ClientSettings};
use messaging_core::Result;
use rustls::ClientConfig;
use tokio::net::TcpStream;

use crate::config::{RabbitConfig, TlsVersions};

/// How often a watcher looks whether its connection was closed, at most.
const CLOSED_POLL: Duration = Duration::from_secs(1);

/// Opens and watches connections.
pub(crate) struct Transport {
    tls: Option<Arc<ClientConfig>>,
    heartbeat_rate: u32,
    /// `TCP_USER_TIMEOUT`: oslo's heartbeat timeout (zero: the system's default).
    user_timeout: Duration,
}

impl Transport {
    /// Read the TLS files now, so that bad ones fail the transport's creation.
    pub(crate) fn new(config: &RabbitConfig) -> Result<Self> {
        let tls = config.ssl.then(|| tls_config(config)).transpose()?;
        Ok(Self {
            tls,
            heartbeat_rate: u32::try_from(config.heartbeat_rate).unwrap_or(u32::MAX),
            user_timeout: Duration::from_secs(config.heartbeat_timeout_threshold),
        })
    }

    /// Connect to `uri` (TLS when `ssl` is set), and watch the connection's liveness.
    pub(crate) async fn connect(
        &self,
        uri: AMQPUri,
        properties: ConnectionProperties,
    ) -> lapin::Result<Connection> {
        let runtime = lapin::runtime::default_runtime()?;
        let socket = Arc::new(Mutex::new(None));
        let opener = Opener {
            tls: self.tls.clone(),
            user_timeout: self.user_timeout,
            socket: socket.clone(),
        };
        let connection = Connection::connector(
            uri,
            runtime,
            async move |uri, _runtime| opener.open(&uri).await,
            properties,
        )
        .await?;
        let timeout = Duration::from_secs(connection.configuration().heartbeat().into());
        let socket = socket.lock().expect("socket poisoned").take();
        if let (Some(socket), false) = (socket, timeout.is_zero()) {
            let status = connection.status().clone();
            tokio::spawn(watch(socket, status, timeout, self.heartbeat_rate));
        }
        Ok(connection)
    }
}

/// Opens the socket of one connection, keeping a handle on it for the watcher.
struct Opener {
    tls: Option<Arc<ClientConfig>>,
    user_timeout: Duration,
    socket: Arc<Mutex<Option<OwnedFd>>>,
}

impl Opener {
    async fn open(&self, uri: &AMQPUri) -> lapin::Result<AsyncTcpStream<Compat<TcpStream>>> {
        let host = uri.authority.host.as_str();
        let stream = TcpStream::connect((host, uri.authority.port)).await?;
        stream.set_nodelay(true)?;
        if !self.user_timeout.is_zero() {
            let millis = u32::try_from(self.user_timeout.as_millis()).unwrap_or(u32::MAX);
            rustix::net::sockopt::set_tcp_user_timeout(&stream, millis)
                .map_err(std::io::Error::from)?;
        }
        *self.socket.lock().expect("socket poisoned") = Some(stream.as_fd().try_clone_to_owned()?);
        let plain = AsyncTcpStream::Plain(stream.compat());
        Ok(match &self.tls {
            Some(config) => {
                let connector = RustlsConnector::from(config.clone());
                plain.into_rustls(&connector, host).await?
            }
            None => plain,
        })
    }
}

/// The TLS client configuration of the `ssl_*` options.
fn tls_config(config: &RabbitConfig) -> Result<Arc<ClientConfig>> {
    let versions: &[&'static rustls::SupportedProtocolVersion] = match config.tls_versions()? {
        TlsVersions::Any => rustls::DEFAULT_VERSIONS,
        TlsVersions::Tls12 => &[&rustls::version::TLS12],
    };
    let settings = ClientSettings {
        ca_file: config.ssl_ca_file.as_deref(),
        cert_file: config.ssl_cert_file.as_deref(),
        key_file: config.ssl_key_file.as_deref(),
        verify_hostname: config.ssl_enforce_hostname_verification,
        versions,
    };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    tls::client_config(provider, &settings)
}

/// Every `timeout / rate / 2`, give the connection up if the broker sent nothing for
/// `2 × timeout`; stop when the connection closes.
async fn watch(socket: OwnedFd, status: ConnectionStatus, timeout: Duration, rate: u32) {
    let every = timeout / rate.max(1) / 2;
    let mut next_check = tokio::time::Instant::now() + every;
    loop {
        tokio::time::sleep(every.min(CLOSED_POLL)).await;
        if !status.connected() {
            return;
        }
        if tokio::time::Instant::now() < next_check {
            continue;
        }
        next_check += every;
        match silence(&socket) {
            Ok(silence) if silence > timeout * 2 => {
                tracing::warn!(
                    ?silence,
                    ?timeout,
                    "nothing came from RabbitMQ, not even a heartbeat, for twice the heartbeat \
                     timeout: giving the connection up"
                );
                let _ = rustix::net::shutdown(&socket, rustix::net::Shutdown::Both);
                return;
            }
            Ok(_) => {}
            Err(error) => {
                tracing::debug!(%error, "cannot watch the connection's liveness");
                return;
            }
        }
    }
}

/// How long ago the socket last received data, from the kernel (`TCP_INFO`).
#[cfg(target_os = "linux")]
fn silence(socket: &OwnedFd) -> std::io::Result<Duration> {
    use std::os::fd::AsRawFd;
    let mut info = std::mem::MaybeUninit::<libc::tcp_info>::zeroed();
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: `info` is a writable buffer of `len` bytes and `socket` an open descriptor that
    // this function borrows for the call.
    let result = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if result != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: zeroed, then filled (in part, for older kernels) by the kernel; every field is
    // an integer, valid whatever its bits.
    let info = unsafe { info.assume_init() };
    Ok(Duration::from_millis(info.tcpi_last_data_recv.into()))
}

/// Elsewhere, lapin's own check (every half timeout) is all there is.
#[cfg(not(target_os = "linux"))]
fn silence(_socket: &OwnedFd) -> std::io::Result<Duration> {
    Err(std::io::Error::other(
        "TCP_INFO is read on Linux only; lapin's own check applies",
    ))
}
