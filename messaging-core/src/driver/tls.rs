//! What a failed TLS handshake means, in the words users see (feature `tls`, for drivers built
//! on rustls). A certificate rejected on either side is a configuration problem that another
//! attempt will not cure, so drivers report it at once instead of retrying.

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
