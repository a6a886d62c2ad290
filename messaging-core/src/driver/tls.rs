//! TLS for drivers built on rustls (feature `tls`): the client configuration oslo's `ssl_*`
//! options describe, and what a failed handshake means, in the words users see. A certificate
//! rejected on either side is a configuration problem that another attempt will not cure, so
//! drivers report it at once instead of retrying.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
    SupportedProtocolVersion,
};

use crate::error::{MessagingError, Result};

/// What a TLS client trusts and shows, from oslo's `ssl_*` options.
#[derive(Debug, Clone, Copy)]
pub struct ClientSettings<'a> {
    /// PEM file of the CAs to trust (`ssl_ca_file`); `None` or empty: the system's.
    pub ca_file: Option<&'a str>,
    /// PEM file of the client certificate (`ssl_cert_file`), with `key_file`.
    pub cert_file: Option<&'a str>,
    /// PEM file of the client certificate's key (`ssl_key_file`).
    pub key_file: Option<&'a str>,
    /// Check that the peer's certificate names the host connected to; without, the chain is
    /// still verified.
    pub verify_hostname: bool,
    /// The TLS versions allowed.
    pub versions: &'a [&'static SupportedProtocolVersion],
}

fn file_error(option: &str, file: &str, error: impl std::fmt::Display) -> MessagingError {
    MessagingError::InvalidOption {
        option: option.into(),
        value: file.into(),
        reason: error.to_string(),
    }
}

/// Build a client configuration with `provider`. Fails on unreadable or invalid files, so that
/// a bad option is reported when the transport is created.
///
/// ```
/// use messaging_core::driver::tls::{client_config, ClientSettings};
///
/// let settings = ClientSettings {
///     ca_file: Some("/nonexistent/ca.pem"),
///     cert_file: None,
///     key_file: None,
///     verify_hostname: true,
///     versions: rustls::DEFAULT_VERSIONS,
/// };
/// let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
/// let error = client_config(provider, &settings).unwrap_err();
/// assert!(error.to_string().contains("ssl_ca_file"), "{error}");
/// ```
pub fn client_config(
    provider: Arc<CryptoProvider>,
    settings: &ClientSettings<'_>,
) -> Result<Arc<ClientConfig>> {
    let ca_file = given(settings.ca_file);
    let roots = Arc::new(root_store(ca_file)?);
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(settings.versions)
        .map_err(|e| file_error("ssl_version", "", e))?;
    let builder = if settings.verify_hostname {
        builder.with_root_certificates(roots)
    } else {
        let inner = WebPkiServerVerifier::builder_with_provider(roots, provider)
            .build()
            .map_err(|e| file_error("ssl_ca_file", ca_file.unwrap_or_default(), e))?;
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyName { inner }))
    };
    let client = match (given(settings.cert_file), given(settings.key_file)) {
        (None, None) => builder.with_no_client_auth(),
        (Some(cert_file), Some(key_file)) => {
            let chain = CertificateDer::pem_file_iter(cert_file)
                .map_err(|e| file_error("ssl_cert_file", cert_file, e))?
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| file_error("ssl_cert_file", cert_file, e))?;
            let key = PrivateKeyDer::from_pem_file(key_file)
                .map_err(|e| file_error("ssl_key_file", key_file, e))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| file_error("ssl_cert_file", cert_file, e))?
        }
        (cert_file, _) => {
            return Err(file_error(
                "ssl_cert_file",
                cert_file.unwrap_or_default(),
                "ssl_cert_file and ssl_key_file go together",
            ))
        }
    };
    Ok(Arc::new(client))
}

/// A file option, unless empty.
fn given(file: Option<&str>) -> Option<&str> {
    file.filter(|f| !f.is_empty())
}

/// The CAs of `ca_file`, or the system's.
fn root_store(ca_file: Option<&str>) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    let Some(ca_file) = ca_file else {
        let native = rustls_native_certs::load_native_certs();
        let (added, _) = roots.add_parsable_certificates(native.certs);
        if added == 0 {
            return Err(file_error(
                "ssl_ca_file",
                "",
                "no CA file given and no system CA certificates found",
            ));
        }
        return Ok(roots);
    };
    let certs = CertificateDer::pem_file_iter(ca_file)
        .map_err(|e| file_error("ssl_ca_file", ca_file, e))?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| file_error("ssl_ca_file", ca_file, e))?;
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(file_error(
            "ssl_ca_file",
            ca_file,
            "no certificate in the file",
        ));
    }
    Ok(roots)
}

/// Verifies the chain but accepts any name (`verify_hostname: false`).
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

/// How every rejection message starts, so that drivers and users can recognise one.
pub const REJECTED: &str = "TLS certificate rejected";

/// Where the trusted CAs come from, as rejection messages say it.
pub fn trust_source(ssl_ca_file: Option<&str>) -> String {
    match ssl_ca_file {
        Some(file) if !file.is_empty() => format!("a CA in ssl_ca_file `{file}`"),
        _ => "a CA of the system's trust store (no ssl_ca_file given)".to_owned(),
    }
}

/// The rustls error somewhere in `error`'s chain of sources (I/O errors wrap it), if any.
pub fn find_rustls_error<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> Option<&'a rustls::Error> {
    let mut current = Some(error);
    while let Some(error) = current {
        if let Some(tls) = error.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        current = match error.downcast_ref::<std::io::Error>() {
            Some(io) => io
                .get_ref()
                .map(|inner| inner as &(dyn std::error::Error + 'static)),
            None => error.source(),
        };
    }
    None
}

/// What a rejected certificate means, or `None` for TLS errors that another attempt may cure.
/// `peer` names the other side (`broker`, `peer`), `hostname` the name its certificate must
/// carry and `trust` where the trusted CAs come from ([`trust_source`]).
///
/// ```
/// use messaging_core::driver::tls::{certificate_rejection, trust_source};
/// use rustls::{CertificateError, Error};
///
/// let error = Error::InvalidCertificate(CertificateError::UnknownIssuer);
/// let reason = certificate_rejection(&error, "broker", "h1", &trust_source(Some("ca.pem"))).unwrap();
/// assert!(reason.starts_with("TLS certificate rejected (not trusted)"), "{reason}");
/// assert!(reason.contains("ca.pem"));
/// ```
pub fn certificate_rejection(
    error: &rustls::Error,
    peer: &str,
    hostname: &str,
    trust: &str,
) -> Option<String> {
    use rustls::{AlertDescription as Alert, CertificateError as Cert, Error as Tls};
    let (cause, what) = match error {
        Tls::InvalidCertificate(Cert::UnknownIssuer) => (
            "not trusted",
            format!("the {peer}'s certificate is not issued by {trust}"),
        ),
        Tls::InvalidCertificate(Cert::NotValidForName | Cert::NotValidForNameContext { .. }) => (
            "host name mismatch",
            format!("the {peer}'s certificate is not valid for `{hostname}`"),
        ),
        Tls::InvalidCertificate(
            Cert::Expired
            | Cert::ExpiredContext { .. }
            | Cert::NotValidYet
            | Cert::NotValidYetContext { .. },
        ) => (
            "expired or not yet valid",
            format!("check the {peer}'s certificate and this host's clock"),
        ),
        Tls::InvalidCertificate(_) | Tls::NoCertificatesPresented => (
            "invalid",
            format!("the {peer}'s certificate cannot be used"),
        ),
        Tls::AlertReceived(
            Alert::BadCertificate
            | Alert::UnsupportedCertificate
            | Alert::CertificateRevoked
            | Alert::CertificateExpired
            | Alert::CertificateUnknown
            | Alert::UnknownCA
            | Alert::AccessDenied
            | Alert::CertificateRequired,
        ) => (
            "refused by the peer",
            format!("the {peer} refused the client certificate (ssl_cert_file)"),
        ),
        _ => return None,
    };
    Some(format!("{REJECTED} ({cause}): {what}: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::{AlertDescription, CertificateError, Error};

    #[test]
    fn rejections_say_why() {
        let trust = trust_source(None);
        let reason = |e: Error| certificate_rejection(&e, "broker", "h1", &trust);
        let untrusted = reason(Error::InvalidCertificate(CertificateError::UnknownIssuer));
        assert!(untrusted.unwrap().contains("system's trust store"));
        let name = reason(Error::InvalidCertificate(CertificateError::NotValidForName));
        assert!(name.unwrap().contains("host name mismatch"));
        let refused = reason(Error::AlertReceived(AlertDescription::UnknownCA));
        assert!(refused.unwrap().contains("refused the client certificate"));
        assert_eq!(reason(Error::HandshakeNotComplete), None);
    }

    #[test]
    fn finds_the_rustls_error_inside_io_errors() {
        let io = std::io::Error::other(Error::InvalidCertificate(CertificateError::Expired));
        assert!(matches!(
            find_rustls_error(&io),
            Some(Error::InvalidCertificate(CertificateError::Expired))
        ));
        assert!(find_rustls_error(&std::io::Error::other("plain")).is_none());
    }
}
