//! `amqps://` end to end: a local proxy terminates TLS with a certificate made for the test
//! (rcgen) and forwards to the broker at `AMQP1_URL`. Checks the CA file, host-name
//! verification, `ssl_verify_hostname=false`, client certificates options and clear errors.

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use common::{broker_url, credentials, echo, echo_server, topic, upstream, Proxy};
use messaging_core::{get_rpc_transport, MessagingError, RpcClient, Target};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

struct Pki {
    dir: PathBuf,
    ca: PathBuf,
    other_ca: PathBuf,
    acceptor: TlsAcceptor,
}

/// A CA, a server certificate for `names` signed by it, and an unrelated CA.
fn pki(names: &[&str]) -> Pki {
    let dir = std::env::temp_dir().join(format!("amqp1-tls-{}", messaging_core::wire::new_id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let mut other_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    other_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let other = CertifiedIssuer::self_signed(other_params, KeyPair::generate().unwrap()).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    let server = CertificateParams::new(names)
        .unwrap()
        .signed_by(&server_key, &ca)
        .unwrap();
    let ca_path = dir.join("ca.pem");
    std::fs::write(&ca_path, ca.pem()).unwrap();
    let other_path = dir.join("other-ca.pem");
    std::fs::write(&other_path, other.pem()).unwrap();
    let chain = vec![CertificateDer::from_pem_slice(server.pem().as_bytes()).unwrap()];
    let key = PrivateKeyDer::from_pem_slice(server_key.serialize_pem().as_bytes()).unwrap();
    let config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    Pki {
        dir,
        ca: ca_path,
        other_ca: other_path,
        acceptor: TlsAcceptor::from(Arc::new(config)),
    }
}

async fn call(url: &str, topic: &str) -> messaging_core::Result<serde_json::Value> {
    let client = RpcClient::new(get_rpc_transport(url).await?, Target::topic(topic))
        .timeout(Duration::from_secs(10))
        .retry(messaging_core::Retry::Never);
    echo(&client, "over tls").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqps_with_a_ca_file_and_hostname_verification() {
    let Some(url) = broker_url("amqps_with_a_ca_file_and_hostname_verification") else {
        return;
    };
    let pki = pki(&["localhost"]);
    let proxy = Proxy::start(upstream(&url), Some(pki.acceptor.clone())).await;
    let creds = credentials(&url);
    let tls_url = |host: &str, ca: &PathBuf, extra: &str| {
        format!(
            "amqps://{creds}{host}:{}/?ssl_ca_file={}{extra}",
            proxy.port,
            ca.display()
        )
    };
    let topic = topic("tls");
    let good = tls_url("localhost", &pki.ca, "");
    let server = echo_server(&good, &topic).await;
    assert_eq!(call(&good, &topic).await.unwrap(), "over tls");

    // `ssl=true` with amqp:// is the same thing.
    let ssl_flag = format!(
        "amqp://{creds}localhost:{}/?ssl=true&ssl_ca_file={}",
        proxy.port,
        pki.ca.display()
    );
    assert_eq!(call(&ssl_flag, &topic).await.unwrap(), "over tls");

    // A certificate from another CA is refused.
    let untrusted = call(&tls_url("localhost", &pki.other_ca, ""), &topic).await;
    assert!(
        matches!(&untrusted, Err(MessagingError::ConnectionFailure(e) | MessagingError::Timeout { msg_id: e, .. }) if !e.is_empty()),
        "{untrusted:?}"
    );

    // 127.0.0.1 is not a name in the certificate: refused unless verification is off.
    let wrong_name = call(&tls_url("127.0.0.1", &pki.ca, ""), &topic).await;
    assert!(wrong_name.is_err(), "{wrong_name:?}");
    let unverified = tls_url("127.0.0.1", &pki.ca, "&ssl_verify_hostname=false");
    assert_eq!(call(&unverified, &topic).await.unwrap(), "over tls");

    server.shutdown().await;
    let _ = std::fs::remove_dir_all(&pki.dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tls_files_fail_when_the_transport_is_created() {
    messaging_core::install_driver(Arc::new(driver_amqp1::Amqp1Driver));
    let missing = get_rpc_transport("amqps://h/?ssl_ca_file=/nonexistent/ca.pem").await;
    assert!(
        matches!(&missing, Err(MessagingError::InvalidOption { option, .. }) if option == "ssl_ca_file"),
        "{:?}",
        missing.err()
    );
    let half = get_rpc_transport("amqps://h/?ssl_cert_file=/tmp/c.pem").await;
    assert!(half.is_err(), "a certificate without its key is refused");
    let encrypted = get_rpc_transport("amqps://h/?ssl_key_password=secret").await;
    assert!(
        matches!(&encrypted, Err(MessagingError::InvalidOption { option, .. }) if option == "ssl_key_password"),
        "{:?}",
        encrypted.err()
    );
}
