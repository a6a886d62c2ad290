//! TLS against the real RabbitMQ: `RABBIT_TLS_URL` names its TLS listener with the CA that
//! signed the broker's certificate (`ssl_ca_file`) and the host name in that certificate;
//! `TLS_WRONG_CA_FILE` is an unrelated CA. `.ci/brokers` makes both (a throwaway CA, a server
//! certificate for `localhost` only) and prints the variables. Host-name verification is on
//! unless a test turns it off (`ssl_enforce_hostname_verification=false`).

mod common;

use std::time::Duration;

use common::{delete_queues, init_logs, rabbitmqctl, unique, Vhost};
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
            init_logs();
            messaging_core::install_driver(std::sync::Arc::new(driver_rabbit::RabbitDriver));
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

/// `RABBIT_TLS_URL`, parsed.
fn tls_url(test: &str) -> Option<TransportUrl> {
    env_or_skip(test, "RABBIT_TLS_URL")
        .map(|url| TransportUrl::parse(&url).expect("RABBIT_TLS_URL parses"))
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

/// The URL of `base`'s first host, with its host name, password or options replaced.
#[derive(Default)]
struct Change<'a> {
    hostname: Option<&'a str>,
    password: Option<&'a str>,
    options: &'a [(&'a str, &'a str)],
}

fn changed(base: &TransportUrl, change: Change<'_>) -> String {
    let host = &base.hosts[0];
    let user = host.username.as_deref().unwrap_or("guest");
    let password = change
        .password
        .or(host.password.as_deref())
        .unwrap_or("guest");
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
        "{}://{}:{}@{hostname}:{}/{vhost}?{}",
        base.scheme(),
        encode(user),
        encode(password),
        host.port_or(5671),
        query.join("&")
    )
}

fn echo_endpoint() -> Endpoint {
    Endpoint::new().method("echo", |_ctx: Context, args: Value| async move {
        Ok::<_, RemoteError>(args.get("value").cloned().unwrap_or(Value::Null))
    })
}

/// Drop the queues a test leaves behind (over the plain listener, when `RABBIT_URL` is set;
/// otherwise the broker's test-expiry policy removes them).
async fn cleanup(names: &[String]) {
    if let Ok(plain) = std::env::var("RABBIT_URL") {
        delete_queues(&plain, names).await;
    }
}

/// An RPC call, a cast and a notification round trip over `url`.
async fn round_trip(url: &str, topic: &str) {
    let transport = get_rpc_transport(url).await.unwrap();
    let server = RpcServer::new(transport.clone(), Target::topic(topic).server("srv1"))
        .endpoint(echo_endpoint())
        .start()
        .await
        .unwrap();
    let client =
        RpcClient::new(transport.clone(), Target::topic(topic)).timeout(Duration::from_secs(20));
    let answer: String = client
        .call(&Context::new(), "echo", &json!({"value": "over tls"}))
        .await
        .unwrap();
    assert_eq!(answer, "over tls");
    client
        .cast(&Context::new(), "echo", &json!({"value": "cast"}))
        .await
        .unwrap();
    server.shutdown().await;
    transport.close().await;

    let notifications = get_notification_transport(url).await.unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let listener = NotificationListener::new(notifications.clone())
        .target(Target::topic(topic))
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
        .topics([topic.to_owned()])
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpc_and_notifications_over_tls_with_ca_and_host_name_verification() {
    let test = "rpc_and_notifications_over_tls_with_ca_and_host_name_verification";
    let Some(base) = tls_url(test) else {
        return;
    };
    assert!(
        base.query.iter().any(|(k, v)| k == "ssl" && v == "true"),
        "RABBIT_TLS_URL has ssl=true"
    );
    let topic = unique("test_tls");
    round_trip(&changed(&base, Change::default()), &topic).await;
    cleanup(&[
        topic.clone(),
        format!("{topic}.srv1"),
        format!("{topic}.info"),
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_is_presented_and_accepted() {
    let test = "a_client_certificate_is_presented_and_accepted";
    let (Some(base), Some(cert), Some(key)) = (
        tls_url(test),
        env_or_skip(test, "TLS_CLIENT_CERT_FILE"),
        env_or_skip(test, "TLS_CLIENT_KEY_FILE"),
    ) else {
        return;
    };
    let url = changed(
        &base,
        Change {
            options: &[("ssl_cert_file", &cert), ("ssl_key_file", &key)],
            ..Change::default()
        },
    );
    let topic = unique("test_tls_cert");
    round_trip(&url, &topic).await;
    cleanup(&[
        topic.clone(),
        format!("{topic}.srv1"),
        format!("{topic}.info"),
    ])
    .await;
}

/// Every way of using `url` fails with a [`MessagingError::ConnectionFailure`] whose message
/// contains all of `expected`, at once: sends retry forever without a timeout, so a failure
/// that were retried would run into [`NO_HANG`].
async fn refused_at_once(url: &str, expected: &[&str]) -> String {
    let check = |what: &str, result: Result<()>| -> String {
        match result {
            Err(MessagingError::ConnectionFailure(reason)) => {
                for part in expected {
                    assert!(reason.contains(part), "{what}: `{part}` not in: {reason}");
                }
                assert!(
                    !reason.contains("gave up after"),
                    "{what}: retried: {reason}"
                );
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
                .endpoint(echo_endpoint())
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
    let test = "a_certificate_for_another_host_name_is_refused_at_once";
    let Some(base) = tls_url(test) else {
        return;
    };
    // The broker's certificate names `localhost` only; 127.0.0.1 is the same listener.
    assert_eq!(
        base.hosts[0].hostname, "localhost",
        "RABBIT_TLS_URL names the host of the broker's certificate, localhost"
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

/// `ssl_enforce_hostname_verification=false` (oslo's option): the broker's certificate need
/// not name the host connected to, but its chain is still verified: a broker whose certificate
/// another CA issued is still refused. `ssl_version=TLSv1_2` pins TLS 1.2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_host_name_verification_the_chain_is_still_verified() {
    let test = "without_host_name_verification_the_chain_is_still_verified";
    let (Some(base), Some(wrong_ca)) = (tls_url(test), env_or_skip(test, "TLS_WRONG_CA_FILE"))
    else {
        return;
    };
    let by_address = |options: &[(&str, &str)]| {
        changed(
            &base,
            Change {
                hostname: Some("127.0.0.1"),
                options,
                ..Change::default()
            },
        )
    };
    let topic = unique("test_tls_anyname");
    let unverified = by_address(&[
        ("ssl_enforce_hostname_verification", "false"),
        ("ssl_version", "TLSv1_2"),
    ]);
    round_trip(&unverified, &topic).await;
    let reason = refused_at_once(
        &by_address(&[
            ("ssl_enforce_hostname_verification", "false"),
            ("ssl_ca_file", &wrong_ca),
        ]),
        &["TLS certificate rejected (not trusted)", "UnknownIssuer"],
    )
    .await;
    println!("no host name check, wrong CA: {reason}");
    cleanup(&[
        topic.clone(),
        format!("{topic}.srv1"),
        format!("{topic}.info"),
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_over_tls_is_an_authentication_failure() {
    let Some(base) = tls_url("a_wrong_password_over_tls_is_an_authentication_failure") else {
        return;
    };
    let url = changed(
        &base,
        Change {
            password: Some("not-the-password"),
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
            assert!(reason.contains("login refused"), "{reason}")
        }
        other => panic!("unexpected {other:?}"),
    }
}

/// `ssl_version=TLSv1_2` pins TLS 1.2, which the broker then reports for the connection; by
/// default TLS 1.3 is spoken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssl_version_chooses_the_tls_version() {
    let Some(mut base) = tls_url("ssl_version_chooses_the_tls_version") else {
        return;
    };
    let vhost = Vhost::new();
    base.virtual_host = Some(vhost.0.clone());
    let topic = unique("test_tls_version");
    for (version, expected) in [("", "tlsv1.3"), ("TLSv1_2", "tlsv1.2")] {
        let url = changed(
            &base,
            Change {
                options: &[("ssl_version", version)],
                ..Change::default()
            },
        );
        let transport = get_notification_transport(&url).await.unwrap();
        Notifier::new(transport.clone(), "compute.h1")
            .topics([topic.clone()])
            .info(&Context::new(), "tls.version", &json!({}))
            .await
            .unwrap();
        let protocols: Vec<Value> = rabbitmqctl(&["list_connections", "vhost", "ssl_protocol"])
            .into_iter()
            .filter(|c| c["vhost"] == vhost.0.as_str())
            .map(|c| c["ssl_protocol"].clone())
            .collect();
        assert_eq!(protocols, [json!(expected)], "ssl_version={version:?}");
        transport.close().await;
        // The next connection is the only one of the virtual host.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while rabbitmqctl(&["list_connections", "vhost"])
            .iter()
            .any(|c| c["vhost"] == vhost.0.as_str())
        {
            assert!(
                std::time::Instant::now() < deadline,
                "the connection stays open"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
