//! `amqps://` against RabbitMQ's own TLS listener, where its AMQP 1.0 plugin answers too:
//! `AMQP1_TLS_URL` names it with the CA that signed the broker's certificate (`ssl_ca_file`)
//! and the host name in that certificate; `TLS_WRONG_CA_FILE` is an unrelated CA.
//! `.ci/brokers` makes both (a throwaway CA, a server certificate for `localhost` only) and
//! prints the variables. (`tls.rs` covers the same ground through a local TLS proxy.)

mod common;

use std::time::Duration;

use common::{echo, echo_server, topic};
use messaging_core::*;
use serde_json::{json, Value};
use tokio::sync::mpsc;

/// Bounds every test that expects a quick failure: a retry loop would run into it.
const NO_HANG: Duration = Duration::from_secs(60);

/// The variable `var`, or `None` (with a visible `skipped:` line) when unset, unless
/// `MESSAGING_REQUIRE_BROKERS=1`: then the test fails.
fn env_or_skip(test: &str, var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(value) if !value.is_empty() => {
            messaging_core::install_driver(std::sync::Arc::new(driver_amqp1::Amqp1Driver));
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
                .with_test_writer()
                .try_init();
            Some(value)
        }
        _ => {
            if std::env::var("MESSAGING_REQUIRE_BROKERS").as_deref() == Ok("1") {
                panic!("{test}: {var} is not set but MESSAGING_REQUIRE_BROKERS=1");
            }
            println!("skipped: {test}: {var} not set");
            None
        }
    }
}

/// `AMQP1_TLS_URL`, parsed.
fn tls_url(test: &str) -> Option<TransportUrl> {
    env_or_skip(test, "AMQP1_TLS_URL")
        .map(|url| TransportUrl::parse(&url).expect("AMQP1_TLS_URL parses"))
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// What to change in the URL of `AMQP1_TLS_URL`'s first host.
#[derive(Default)]
struct Change<'a> {
    hostname: Option<&'a str>,
    password: Option<&'a str>,
    options: &'a [(&'a str, &'a str)],
}

fn changed(base: &TransportUrl, change: Change<'_>) -> String {
    let host = &base.hosts[0];
    let credentials = match &host.username {
        Some(user) => format!(
            "{}:{}@",
            encode(user),
            encode(
                change
                    .password
                    .or(host.password.as_deref())
                    .unwrap_or_default()
            )
        ),
        None => String::new(),
    };
    let hostname = change.hostname.unwrap_or(&host.hostname);
    let vhost = base.virtual_host.as_deref().map(encode).unwrap_or_default();
    let query: Vec<String> = base
        .query
        .iter()
        .filter(|(k, _)| !change.options.iter().any(|(name, _)| name == k))
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .chain(change.options.iter().copied())
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect();
    format!(
        "{}://{credentials}{hostname}:{}/{vhost}?{}",
        base.scheme(),
        host.port_or(driver_amqp1::AMQPS_PORT),
        query.join("&")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpc_and_notifications_over_amqps_with_ca_and_host_name_verification() {
    let Some(base) = tls_url("rpc_and_notifications_over_amqps_with_ca_and_host_name_verification")
    else {
        return;
    };
    let url = changed(&base, Change::default());
    let topic = topic("tls_rabbit");
    let server = echo_server(&url, &topic).await;
    let client = RpcClient::new(
        get_rpc_transport(&url).await.unwrap(),
        Target::topic(&topic),
    )
    .timeout(Duration::from_secs(20));
    assert_eq!(echo(&client, "over amqps").await.unwrap(), "over amqps");
    server.shutdown().await;

    let notifications = get_notification_transport(&url).await.unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let listener = NotificationListener::new(notifications.clone())
        .target(Target::topic(&topic))
        .endpoint(NotificationEndpoint::new().on_all(move |n: Notification| {
            let tx = tx.clone();
            async move {
                tx.send((n.event_type, n.payload)).unwrap();
                NotificationResult::Handled
            }
        }))
        .start()
        .await
        .unwrap();
    Notifier::new(notifications.clone(), "compute.tls-host")
        .topics([topic.clone()])
        .info(&Context::new(), "tls.test", &json!({"n": 1}))
        .await
        .unwrap();
    let got = tokio::time::timeout(Duration::from_secs(20), rx.recv())
        .await
        .expect("the notification arrives")
        .unwrap();
    assert_eq!(got, ("tls.test".to_owned(), json!({"n": 1})));
    listener.shutdown().await;
    notifications.close().await;
}

/// Every way of using `url` fails with a [`MessagingError::ConnectionFailure`] whose message
/// contains all of `expected`, at once: sends retry forever without a timeout, so a failure
/// that were retried would run into [`NO_HANG`].
async fn refused_at_once(url: &str, expected: &[&str]) -> String {
    // Without a timeout of the caller's, the driver's own send timeouts would bound retries.
    let url = &format!("{url}&default_send_timeout=600&default_notify_timeout=600");
    let check = |what: &str, result: Result<()>| -> String {
        match result {
            Err(MessagingError::ConnectionFailure(reason)) => {
                for part in expected {
                    assert!(reason.contains(part), "{what}: `{part}` not in: {reason}");
                }
                reason
            }
            other => panic!("{what}: unexpected {other:?}"),
        }
    };
    let attempts = async {
        let transport = get_rpc_transport(url)
            .await
            .expect("transports connect lazily");
        let client = RpcClient::new(transport.clone(), Target::topic("test_tls_nowhere"))
            .retry(Retry::Forever)
            .no_timeout();
        let reason = check(
            "call",
            client
                .call::<Value>(&Context::new(), "echo", &json!({}))
                .await
                .map(drop),
        );
        check(
            "cast",
            client.cast(&Context::new(), "echo", &json!({})).await,
        );
        check(
            "server start",
            RpcServer::new(transport, Target::topic("test_tls_nowhere").server("s"))
                .start()
                .await
                .map(drop),
        );
        let notifications = get_notification_transport(url).await.unwrap();
        check(
            "notify",
            Notifier::new(notifications.clone(), "p")
                .topics(["test_tls_nowhere".to_owned()])
                .retry(Retry::Forever)
                .info(&Context::new(), "e", &json!(1))
                .await,
        );
        check(
            "listener start",
            NotificationListener::new(notifications)
                .target(Target::topic("test_tls_nowhere"))
                .endpoint(
                    NotificationEndpoint::new().on_all(|_| async { NotificationResult::Handled }),
                )
                .start()
                .await
                .map(drop),
        );
        reason
    };
    tokio::time::timeout(NO_HANG, attempts)
        .await
        .expect("the failure is reported at once, not retried")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_from_another_ca_is_refused_at_once() {
    let test = "a_certificate_from_another_ca_is_refused_at_once";
    let (Some(base), Some(wrong_ca)) = (tls_url(test), env_or_skip(test, "TLS_WRONG_CA_FILE"))
    else {
        return;
    };
    let url = changed(
        &base,
        Change {
            options: &[("ssl_ca_file", &wrong_ca)],
            ..Change::default()
        },
    );
    let reason = refused_at_once(
        &url,
        &[
            "TLS certificate rejected (not trusted)",
            &wrong_ca,
            "UnknownIssuer",
        ],
    )
    .await;
    println!("wrong CA: {reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_for_another_host_name_is_refused_at_once() {
    let Some(base) = tls_url("a_certificate_for_another_host_name_is_refused_at_once") else {
        return;
    };
    // The broker's certificate names `localhost` only; 127.0.0.1 is the same listener.
    assert_eq!(
        base.hosts[0].hostname, "localhost",
        "AMQP1_TLS_URL names the host of the broker's certificate, localhost"
    );
    let url = changed(
        &base,
        Change {
            hostname: Some("127.0.0.1"),
            ..Change::default()
        },
    );
    let reason = refused_at_once(
        &url,
        &[
            "TLS certificate rejected (host name mismatch)",
            "not valid for `127.0.0.1`",
        ],
    )
    .await;
    println!("wrong host name: {reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_over_amqps_is_an_authentication_failure() {
    let Some(base) = tls_url("a_wrong_password_over_amqps_is_an_authentication_failure") else {
        return;
    };
    let url = changed(
        &base,
        Change {
            password: Some("not-the-password"),
            options: &[("default_send_timeout", "600")],
            ..Change::default()
        },
    );
    let attempt = async {
        let transport = get_rpc_transport(&url).await.unwrap();
        RpcClient::new(transport, Target::topic("test_tls_nowhere"))
            .retry(Retry::Forever)
            .no_timeout()
            .cast(&Context::new(), "echo", &json!({}))
            .await
    };
    match tokio::time::timeout(NO_HANG, attempt)
        .await
        .expect("refused at once, not retried")
    {
        Err(MessagingError::AuthenticationFailure(reason)) => {
            assert!(reason.contains("SASL"), "{reason}")
        }
        other => panic!("unexpected {other:?}"),
    }
}
