//! TLS for `amqps://` (or `ssl=true`): rustls with the `ring` provider, CA file or the
//! system's roots, optional client certificate, host-name (or virtual-host) verification.

use std::sync::Arc;

use messaging_core::{MessagingError, Result};
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::{ClientConfig, DEFAULT_VERSIONS};

use crate::config::Amqp1Config;
use messaging_core::driver::tls::{self as shared, ClientSettings, REJECTED};

/// Build the client configuration once per transport. Fails on unreadable or invalid files, so
/// that a bad option is reported when the transport is created.
pub(crate) fn client_config(config: &Amqp1Config) -> Result<Arc<ClientConfig>> {
    let settings = ClientSettings {
        ca_file: Some(&config.ssl_ca_file),
        cert_file: Some(&config.ssl_cert_file),
        key_file: Some(&config.ssl_key_file),
        verify_hostname: config.ssl_verify_hostname,
        versions: DEFAULT_VERSIONS,
    };
    shared::client_config(Arc::new(ring::default_provider()), &settings)
}

/// A failed TLS handshake with `label` (`host:port`) that expected the certificate to name
/// `name`, as the error users see: a rejected certificate says why (not trusted, host name
/// mismatch, ...) and is [fatal](is_rejection); other failures are plain connection failures.
pub(crate) fn handshake_error(
    label: &str,
    name: &str,
    config: &Amqp1Config,
    error: std::io::Error,
) -> MessagingError {
    let trust = shared::trust_source(Some(&config.ssl_ca_file));
    let rejection = shared::find_rustls_error(&error)
        .and_then(|tls| shared::certificate_rejection(tls, "peer", name, &trust));
    match rejection {
        Some(reason) => MessagingError::ConnectionFailure(format!("{label}: {reason}")),
        None => MessagingError::ConnectionFailure(format!("{label}: TLS: {error}")),
    }
}

/// True for a [`handshake_error`] that another attempt would not cure.
pub(crate) fn is_rejection(error: &MessagingError) -> bool {
    matches!(error, MessagingError::ConnectionFailure(reason) if reason.contains(REJECTED))
}

/// The name the peer's certificate must carry.
pub(crate) fn server_name(name: &str) -> Result<ServerName<'static>> {
    ServerName::try_from(name.to_owned()).map_err(|e| MessagingError::InvalidUrl {
        url: name.into(),
        reason: format!("not a valid TLS server name: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_rustls::rustls::{self, CertificateError};

    fn handshake(error: rustls::Error, ca_file: &str) -> MessagingError {
        let config = Amqp1Config {
            ssl_ca_file: ca_file.into(),
            ..Amqp1Config::default()
        };
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, error);
        handshake_error("h:5671", "h", &config, io)
    }

    #[test]
    fn rejected_certificates_are_fatal_and_say_why() {
        let untrusted = handshake(
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
            "ca.pem",
        );
        assert!(is_rejection(&untrusted));
        assert_eq!(
            untrusted.to_string(),
            "connection failure: h:5671: TLS certificate rejected (not trusted): the peer's \
             certificate is not issued by a CA in ssl_ca_file `ca.pem`: invalid peer \
             certificate: UnknownIssuer"
        );
        let wrong_name = handshake(
            rustls::Error::InvalidCertificate(CertificateError::NotValidForName),
            "",
        );
        assert!(is_rejection(&wrong_name));
        assert!(
            wrong_name.to_string().contains("(host name mismatch)"),
            "{wrong_name}"
        );
        // Other TLS trouble (here: a peer that does not speak TLS) may pass: retried.
        let other = handshake(rustls::Error::General("corrupt message".into()), "");
        assert!(!is_rejection(&other), "{other}");
        assert!(
            other
                .to_string()
                .contains("TLS: unexpected error: corrupt message"),
            "{other}"
        );
    }
}
