//! TLS for `amqps://` (or `ssl=true`): rustls with the `ring` provider, CA file or the
//! system's roots, optional client certificate, host-name (or virtual-host) verification.

use std::sync::Arc;

use messaging_core::{MessagingError, Result};
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::client::WebPkiServerVerifier;
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio_rustls::rustls::{
    self, CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

use crate::config::Amqp1Config;
use messaging_core::driver::tls::{self as shared, REJECTED};

fn tls_error(what: &str, file: &str, error: impl std::fmt::Display) -> MessagingError {
    MessagingError::InvalidOption {
        option: what.into(),
        value: file.into(),
        reason: error.to_string(),
    }
}

/// Build the client configuration once per transport. Fails on unreadable or invalid files, so
/// that a bad option is reported when the transport is created.
pub(crate) fn client_config(config: &Amqp1Config) -> Result<Arc<ClientConfig>> {
    let provider = Arc::new(ring::default_provider());
    let mut roots = RootCertStore::empty();
    if config.ssl_ca_file.is_empty() {
        let native = rustls_native_certs::load_native_certs();
        let (added, _) = roots.add_parsable_certificates(native.certs);
        if added == 0 {
            return Err(tls_error(
                "ssl_ca_file",
                "",
                "no CA file given and no system CA certificates found",
            ));
        }
    } else {
        let certs = CertificateDer::pem_file_iter(&config.ssl_ca_file)
            .map_err(|e| tls_error("ssl_ca_file", &config.ssl_ca_file, e))?
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| tls_error("ssl_ca_file", &config.ssl_ca_file, e))?;
        let (added, _) = roots.add_parsable_certificates(certs);
        if added == 0 {
            return Err(tls_error(
                "ssl_ca_file",
                &config.ssl_ca_file,
                "no certificate in the file",
            ));
        }
    }
    let roots = Arc::new(roots);
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error("ssl", "", e))?;
    let builder = if config.ssl_verify_hostname {
        builder.with_root_certificates(roots)
    } else {
        let inner = WebPkiServerVerifier::builder_with_provider(roots, provider)
            .build()
            .map_err(|e| tls_error("ssl_ca_file", &config.ssl_ca_file, e))?;
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyName { inner }))
    };
    let client = match (
        config.ssl_cert_file.is_empty(),
        config.ssl_key_file.is_empty(),
    ) {
        (true, true) => builder.with_no_client_auth(),
        (false, false) => {
            let chain = CertificateDer::pem_file_iter(&config.ssl_cert_file)
                .map_err(|e| tls_error("ssl_cert_file", &config.ssl_cert_file, e))?
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| tls_error("ssl_cert_file", &config.ssl_cert_file, e))?;
            let key = PrivateKeyDer::from_pem_file(&config.ssl_key_file)
                .map_err(|e| tls_error("ssl_key_file", &config.ssl_key_file, e))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| tls_error("ssl_cert_file", &config.ssl_cert_file, e))?
        }
        _ => {
            return Err(tls_error(
                "ssl_cert_file",
                &config.ssl_cert_file,
                "ssl_cert_file and ssl_key_file go together",
            ))
        }
    };
    Ok(Arc::new(client))
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

/// Verifies the chain but accepts any name (`ssl_verify_hostname=false`).
#[derive(Debug)]
struct AnyName {
    inner: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        match self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
