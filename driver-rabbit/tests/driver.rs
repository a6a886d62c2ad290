//! Driver-specific tests against a real RabbitMQ (`RABBIT_URL`): topology, message properties,
//! malformed input, missing reply queues, options and connection errors.

mod common;

use std::time::{Duration, Instant};

use common::*;
use lapin::BasicProperties;
use messaging_core::*;
use serde_json::{json, Value};
use tokio::sync::mpsc;

fn echo_endpoint() -> Endpoint {
    Endpoint::new().method("echo", |_ctx: Context, args: Value| async move {
        Ok::<_, RemoteError>(args.get("value").cloned().unwrap_or(Value::Null))
    })
}

async fn start_server(url: &str, topic: &str, server: &str) -> ServiceHandle {
    let transport = get_rpc_transport(url).await.unwrap();
    RpcServer::new(transport, Target::topic(topic).server(server))
        .endpoint(echo_endpoint())
        .start()
        .await
        .unwrap()
}

fn ctx() -> Context {
    Context::new()
        .with("user_id", "u-1")
        .with("request_id", "req-123")
}

fn names(rows: &[Value]) -> Vec<String> {
    let mut names: Vec<String> = rows
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpc_topology_is_oslos() {
    let Some(url) = rabbit_url("rpc_topology_is_oslos") else {
        return;
    };
    let topic = unique("drv_topo");
    let server = start_server(&url, &topic, "srv1").await;

    let queues = queues(&topic);
    assert_eq!(queues.len(), 3, "{queues:#?}");
    for q in &queues {
        let name = q["name"].as_str().unwrap();
        assert_eq!(
            (
                q["durable"].clone(),
                q["auto_delete"].clone(),
                q["exclusive"].clone()
            ),
            (json!(false), json!(false), json!(false)),
            "{q}"
        );
        assert_eq!(q["consumers"], 1, "{q}");
        if name == topic || name == format!("{topic}.srv1") {
            assert_eq!(q["arguments"], json!([]), "{q}");
        } else {
            let suffix = name
                .strip_prefix(&format!("{topic}_fanout_"))
                .expect("a fanout queue");
            assert_eq!(suffix.len(), 32, "{name}");
            assert_eq!(
                q["arguments"],
                json!([["x-expires", "signedint", 1800000]]),
                "{q}"
            );
        }
    }
    let exchanges = exchanges(&topic);
    assert_eq!(
        exchanges,
        [
            json!({"name": format!("{topic}_fanout"), "type": "fanout", "durable": false, "auto_delete": true})
        ]
    );
    let openstack: Vec<Value> =
        rabbitmqctl(&["list_exchanges", "name", "type", "durable", "auto_delete"])
            .into_iter()
            .filter(|e| e["name"] == "openstack")
            .collect();
    assert_eq!(
        openstack,
        [json!({"name": "openstack", "type": "topic", "durable": false, "auto_delete": false})]
    );
    let mut bindings: Vec<_> = bindings(&topic)
        .into_iter()
        .filter(|(source, _, _)| !source.is_empty())
        .collect();
    bindings.sort();
    let fanout_queue = names(&queues)
        .into_iter()
        .find(|n| n.contains("_fanout_"))
        .unwrap();
    let mut expected: Vec<(String, String, String)> = vec![
        ("openstack".into(), topic.clone(), topic.clone()),
        (
            "openstack".into(),
            format!("{topic}.srv1"),
            format!("{topic}.srv1"),
        ),
        (
            format!("{topic}_fanout"),
            fanout_queue.clone(),
            topic.clone(),
        ),
    ];
    expected.sort();
    assert_eq!(bindings, expected);

    // The client's reply queue: declared on the first call, x-expires, kept after close.
    let transport = get_rpc_transport(&url).await.unwrap();
    let client =
        RpcClient::new(transport.clone(), Target::topic(&topic)).timeout(Duration::from_secs(10));
    let before: Vec<String> = names(&common::queues("reply_"));
    let answer: String = client
        .call(&ctx(), "echo", &json!({"value": "hi"}))
        .await
        .unwrap();
    assert_eq!(answer, "hi");
    let replies: Vec<Value> = common::queues("reply_")
        .into_iter()
        .filter(|q| !before.contains(&q["name"].as_str().unwrap().to_owned()))
        // Other tests declare reply-like queues by hand; the driver's are reply_<32 hex>.
        .filter(|q| {
            let suffix = &q["name"].as_str().unwrap()["reply_".len()..];
            suffix.len() == 32 && suffix.chars().all(|c| c.is_ascii_hexdigit())
        })
        .collect();
    // Tests running in parallel create reply queues of their own (with the same driver):
    // ours is among the new ones, and every one of them has oslo's shape.
    assert!(!replies.is_empty(), "the first call declared a reply queue");
    for reply in &replies {
        assert_eq!(
            (reply["durable"].clone(), reply["auto_delete"].clone()),
            (json!(false), json!(false))
        );
        assert_eq!(
            reply["arguments"],
            json!([["x-expires", "signedint", 1800000]])
        );
    }
    transport.close().await;

    // Stopping the server deletes its fanout queue, and only that.
    server.shutdown().await;
    assert_eq!(
        names(&common::queues(&topic)),
        [topic.clone(), format!("{topic}.srv1")]
    );
    assert!(common::queue(&fanout_queue).is_none());
    delete_queues(&url, &[topic.clone(), format!("{topic}.srv1")]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notification_topology_is_oslos() {
    let Some(url) = rabbit_url("notification_topology_is_oslos") else {
        return;
    };
    let topic = unique("drv_ntopo");
    let transport = get_notification_transport(&url).await.unwrap();
    // The notifier declares and binds `<topic>.<priority>` itself.
    let notifier = Notifier::new(transport.clone(), "compute.host1").topics([topic.clone()]);
    notifier
        .info(&ctx(), "e.info", &json!({"n": 1}))
        .await
        .unwrap();
    notifier
        .warning(&ctx(), "e.warn", &json!({"n": 2}))
        .await
        .unwrap();
    let q = common::queue(&format!("{topic}.info")).expect("the notifier declared the queue");
    assert_eq!(q["messages"], 1);
    assert_eq!(q["arguments"], json!([]));
    assert!(common::queue(&format!("{topic}.warn")).is_some());

    // A pool listener: one `<pool>` queue bound once per priority.
    let pool = unique("drv_pool");
    let listener = NotificationListener::new(transport.clone())
        .target(Target::topic(&topic))
        .pool(&pool)
        .endpoint(NotificationEndpoint::new().on_all(|_n| async { NotificationResult::Handled }))
        .start()
        .await
        .unwrap();
    let mut pool_bindings: Vec<_> = bindings(&pool)
        .into_iter()
        .filter(|(s, _, _)| !s.is_empty())
        .collect();
    pool_bindings.sort();
    let mut expected: Vec<_> = Priority::ALL
        .iter()
        .map(|p| {
            (
                "openstack".to_owned(),
                pool.clone(),
                format!("{topic}.{}", p.as_str()),
            )
        })
        .collect();
    expected.sort();
    assert_eq!(pool_bindings, expected);
    listener.shutdown().await;
    transport.close().await;
    let mut kept: Vec<String> = names(&common::queues(&topic));
    kept.push(pool);
    delete_queues(&url, &kept).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpc_message_properties_are_oslos() {
    let Some(url) = rabbit_url("rpc_message_properties_are_oslos") else {
        return;
    };
    let topic = unique("drv_props");
    let (connection, channel) = raw(&url).await;
    // Act as the server: a plain queue bound as oslo's `<topic>` queue.
    channel
        .exchange_declare(
            "openstack".into(),
            lapin::ExchangeKind::Topic,
            Default::default(),
            Default::default(),
        )
        .await
        .unwrap();
    raw_queue(&channel, &topic, "openstack", &topic).await;

    let transport = get_rpc_transport(&url).await.unwrap();
    let client = RpcClient::new(transport.clone(), Target::topic(&topic).version("1.2"))
        .timeout(Duration::from_secs(10));
    let call = {
        let client = client.clone();
        tokio::spawn(async move {
            client
                .call::<Value>(&ctx(), "echo", &json!({"value": {"nested": "\u{fc}"}}))
                .await
        })
    };
    let got = raw_get(&channel, &topic, Duration::from_secs(10))
        .await
        .expect("the call request");
    let d = &got.delivery;
    assert_eq!(
        (d.exchange.as_str(), d.routing_key.as_str()),
        ("openstack", topic.as_str())
    );
    let p = &d.properties;
    assert_eq!(
        p.content_type().as_ref().unwrap().as_str(),
        "application/json"
    );
    assert_eq!(p.content_encoding().as_ref().unwrap().as_str(), "utf-8");
    assert_eq!(*p.delivery_mode(), Some(2));
    assert_eq!(*p.priority(), Some(0));
    assert_eq!(p.headers().as_ref().map(|h| h.inner().len()), Some(0));
    assert_eq!(p.expiration().as_ref().unwrap().as_str(), "10000");
    assert!(p.reply_to().is_none() && p.correlation_id().is_none() && p.message_id().is_none());
    let body = std::str::from_utf8(&d.data).unwrap();
    assert!(
        body.starts_with(r#"{"oslo.version": "2.0", "oslo.message": "{\"method\": \"echo\", "#),
        "{body}"
    );
    assert!(body.contains(r#"\\u00fc"#), "ensure_ascii: {body}");
    let (_, inner) = envelope(&d.data);
    let keys: Vec<&str> = inner.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "method",
            "args",
            "version",
            "_msg_id",
            "_reply_q",
            "_timeout",
            "_unique_id",
            "_context_user_id",
            "_context_request_id"
        ]
    );
    assert_eq!(inner["_timeout"], Value::Null);
    assert_eq!(inner["_msg_id"].as_str().unwrap().len(), 32);
    let reply_q = inner["_reply_q"].as_str().unwrap().to_owned();

    // Answer as an oslo server would: default exchange, routing key `_reply_q`.
    let reply = format!(
        r#"{{"oslo.version": "2.0", "oslo.message": "{{\"result\": 42, \"failure\": null, \"ending\": true, \"_msg_id\": \"{}\", \"_unique_id\": \"{}\"}}"}}"#,
        inner["_msg_id"].as_str().unwrap(),
        messaging_core::wire::new_id()
    );
    raw_publish(&channel, "", &reply_q, reply.as_bytes(), json_properties()).await;
    assert_eq!(call.await.unwrap().unwrap(), json!(42));

    // Casts carry no expiration and no reply fields.
    client
        .cast(&ctx(), "echo", &json!({"value": 1}))
        .await
        .unwrap();
    let got = raw_get(&channel, &topic, Duration::from_secs(10))
        .await
        .expect("the cast");
    assert!(got.delivery.properties.expiration().is_none());
    let (_, inner) = envelope(&got.delivery.data);
    assert!(!inner.contains_key("_msg_id") && !inner.contains_key("_reply_q"));
    assert!(inner.contains_key("_unique_id"));

    // Fanout casts go to `<topic>_fanout` with an empty routing key.
    let fanout_queue = format!("{topic}_rawfanout");
    channel
        .exchange_declare(
            format!("{topic}_fanout").as_str().into(),
            lapin::ExchangeKind::Fanout,
            lapin::options::ExchangeDeclareOptions {
                auto_delete: true,
                ..Default::default()
            },
            Default::default(),
        )
        .await
        .unwrap();
    raw_queue(&channel, &fanout_queue, &format!("{topic}_fanout"), &topic).await;
    client
        .prepare()
        .fanout(true)
        .cast(&ctx(), "echo", &json!({"value": 2}))
        .await
        .unwrap();
    let got = raw_get(&channel, &fanout_queue, Duration::from_secs(10))
        .await
        .expect("the fanout cast");
    assert_eq!(got.delivery.exchange.as_str(), format!("{topic}_fanout"));
    assert_eq!(got.delivery.routing_key.as_str(), "");

    transport.close().await;
    delete_queues(&url, &[topic, fanout_queue]).await;
    let _ = connection.close(200, "OK".into()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reply_properties_are_oslos() {
    let Some(url) = rabbit_url("reply_properties_are_oslos") else {
        return;
    };
    let topic = unique("drv_reply");
    let server = start_server(&url, &topic, "srv1").await;
    let (connection, channel) = raw(&url).await;
    let reply_q = unique("reply_raw");
    raw_queue(&channel, &reply_q, "", "").await;
    let request = format!(
        r#"{{"oslo.version": "2.0", "oslo.message": "{{\"method\": \"echo\", \"args\": {{\"value\": \"x\"}}, \"_msg_id\": \"m1\", \"_reply_q\": \"{reply_q}\"}}"}}"#
    );
    raw_publish(
        &channel,
        "openstack",
        &topic,
        request.as_bytes(),
        json_properties(),
    )
    .await;
    let got = raw_get(&channel, &reply_q, Duration::from_secs(10))
        .await
        .expect("a reply");
    let d = &got.delivery;
    assert_eq!(
        (d.exchange.as_str(), d.routing_key.as_str()),
        ("", reply_q.as_str())
    );
    let p = &d.properties;
    assert_eq!(
        p.content_type().as_ref().unwrap().as_str(),
        "application/json"
    );
    assert_eq!(p.content_encoding().as_ref().unwrap().as_str(), "utf-8");
    assert_eq!(*p.delivery_mode(), Some(2));
    assert_eq!(*p.priority(), Some(0));
    assert!(p.expiration().is_none());
    let (_, inner) = envelope(&d.data);
    let keys: Vec<&str> = inner.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        ["result", "failure", "ending", "_msg_id", "_unique_id"]
    );
    assert_eq!(inner["result"], "x");
    assert_eq!(inner["ending"], true);
    assert_eq!(inner["_msg_id"], "m1");

    server.shutdown().await;
    delete_queues(&url, &[topic.clone(), format!("{topic}.srv1"), reply_q]).await;
    let _ = connection.close(200, "OK".into()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notification_properties_are_oslos() {
    let Some(url) = rabbit_url("notification_properties_are_oslos") else {
        return;
    };
    let topic = unique("drv_nprops");
    let transport = get_notification_transport(&url).await.unwrap();
    let notifier = Notifier::new(transport.clone(), "compute.host1").topics([topic.clone()]);
    notifier
        .audit(&ctx(), "e.audit", &json!({"k": "\u{fc}"}))
        .await
        .unwrap();
    notifier
        .clone()
        .driver(NotifierDriver::Messaging)
        .sample(&ctx(), "e.sample", &json!(1))
        .await
        .unwrap();
    let (connection, channel) = raw(&url).await;
    let got = raw_get(&channel, &format!("{topic}.audit"), Duration::from_secs(10))
        .await
        .unwrap();
    let d = &got.delivery;
    assert_eq!(
        (d.exchange.as_str(), d.routing_key.as_str()),
        ("openstack", format!("{topic}.audit").as_str())
    );
    assert!(d.properties.expiration().is_none());
    assert_eq!(*d.properties.delivery_mode(), Some(2));
    assert_eq!(
        d.properties.content_type().as_ref().unwrap().as_str(),
        "application/json"
    );
    let (_, inner) = envelope(&d.data);
    let keys: Vec<&str> = inner.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "message_id",
            "publisher_id",
            "event_type",
            "priority",
            "payload",
            "timestamp",
            "_unique_id",
            "_context_user_id",
            "_context_request_id"
        ]
    );
    assert_eq!(inner["priority"], "AUDIT");
    assert_eq!(inner["message_id"].as_str().unwrap().len(), 36);
    // `messaging` (v1): the bare dict.
    let got = raw_get(
        &channel,
        &format!("{topic}.sample"),
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    let v1: Value = serde_json::from_slice(&got.delivery.data).unwrap();
    assert_eq!(v1["priority"], "SAMPLE");
    assert!(v1.get("oslo.version").is_none());
    transport.close().await;
    delete_queues(&url, &[format!("{topic}.audit"), format!("{topic}.sample")]).await;
    let _ = connection.close(200, "OK".into()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_are_rejected_and_the_server_goes_on() {
    let Some(url) = rabbit_url("malformed_requests_are_rejected_and_the_server_goes_on") else {
        return;
    };
    let topic = unique("drv_bad");
    let server = start_server(&url, &topic, "srv1").await;
    let (connection, channel) = raw(&url).await;
    let bad: Vec<(&str, Vec<u8>, BasicProperties)> = vec![
        ("not JSON", b"this is not json".to_vec(), json_properties()),
        ("JSON array", b"[1, 2]".to_vec(), json_properties()),
        (
            "envelope version 3.0",
            br#"{"oslo.version": "3.0", "oslo.message": "{\"method\": \"echo\", \"args\": {}}"}"#.to_vec(),
            json_properties(),
        ),
        (
            "missing method",
            br#"{"oslo.version": "2.0", "oslo.message": "{\"args\": {}}"}"#.to_vec(),
            json_properties(),
        ),
        ("invalid UTF-8", b"{\"method\": \"echo\xff\xfe\", \"args\": {}}".to_vec(), json_properties()),
        (
            "no content_type",
            br#"{"oslo.version": "2.0", "oslo.message": "{\"method\": \"echo\", \"args\": {}}"}"#.to_vec(),
            BasicProperties::default().with_delivery_mode(2),
        ),
        (
            "a call without _reply_q",
            br#"{"oslo.version": "2.0", "oslo.message": "{\"method\": \"echo\", \"args\": {}, \"_msg_id\": \"x\"}"}"#.to_vec(),
            json_properties(),
        ),
    ];
    for (_, body, properties) in &bad {
        raw_publish(&channel, "openstack", &topic, body, properties.clone()).await;
    }
    let transport = get_rpc_transport(&url).await.unwrap();
    let client =
        RpcClient::new(transport.clone(), Target::topic(&topic)).timeout(Duration::from_secs(10));
    let answer: String = client
        .call(&ctx(), "echo", &json!({"value": "still here"}))
        .await
        .unwrap();
    assert_eq!(answer, "still here");
    // Rejected without requeue: nothing is left in the queue, nothing unacknowledged.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let q = common::queue(&topic).unwrap();
    assert_eq!(q["messages"], 0, "{q}");

    server.shutdown().await;
    transport.close().await;
    delete_queues(&url, &[topic.clone(), format!("{topic}.srv1")]).await;
    let _ = connection.close(200, "OK".into()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_notifications_are_rejected_and_the_listener_goes_on() {
    let Some(url) = rabbit_url("malformed_notifications_are_rejected_and_the_listener_goes_on")
    else {
        return;
    };
    let topic = unique("drv_nbad");
    let transport = get_notification_transport(&url).await.unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let listener = NotificationListener::new(transport.clone())
        .target(Target::topic(&topic))
        .endpoint(NotificationEndpoint::new().on(Priority::Info, move |n| {
            let tx = tx.clone();
            async move {
                tx.send(n.event_type).unwrap();
                NotificationResult::Handled
            }
        }))
        .start()
        .await
        .unwrap();
    let (connection, channel) = raw(&url).await;
    let key = format!("{topic}.info");
    for (body, properties) in [
        (&b"not json"[..], json_properties()),
        (
            br#"{"oslo.version": "2.0", "oslo.message": "{\"priority\": \"NOPE\"}"}"#,
            json_properties(),
        ),
        (br#"{"event_type": "no priority"}"#, json_properties()),
        (
            br#"{"priority": "INFO", "event_type": "no content type"}"#,
            BasicProperties::default(),
        ),
    ] {
        raw_publish(&channel, "openstack", &key, body, properties).await;
    }
    Notifier::new(transport.clone(), "p")
        .topics([topic.clone()])
        .info(&ctx(), "good", &json!(1))
        .await
        .unwrap();
    let got = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, "good");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(common::queue(&key).unwrap()["messages"], 0);
    listener.shutdown().await;
    transport.close().await;
    delete_queues(&url, &[key]).await;
    let _ = connection.close(200, "OK".into()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_wait_for_a_late_reply_queue_and_give_up_on_a_missing_one() {
    let Some(url) = rabbit_url("replies_wait_for_a_late_reply_queue_and_give_up_on_a_missing_one")
    else {
        return;
    };
    let topic = unique("drv_gone");
    let server_url = with_options(&url, "kombu_missing_consumer_retry_timeout=2");
    let server = start_server(&server_url, &topic, "srv1").await;
    let (connection, channel) = raw(&url).await;
    let request = |reply_q: &str, msg_id: &str| {
        format!(
            r#"{{"oslo.version": "2.0", "oslo.message": "{{\"method\": \"echo\", \"args\": {{\"value\": \"{msg_id}\"}}, \"_msg_id\": \"{msg_id}\", \"_reply_q\": \"{reply_q}\"}}"}}"#
        )
    };

    // A reply queue that appears within the retry timeout gets its reply.
    let late = unique("reply_late");
    raw_publish(
        &channel,
        "openstack",
        &topic,
        request(&late, "late").as_bytes(),
        json_properties(),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    raw_queue(&channel, &late, "", "").await;
    let got = raw_get(&channel, &late, Duration::from_secs(5))
        .await
        .expect("the late reply");
    assert_eq!(envelope(&got.delivery.data).1["_msg_id"], "late");

    // One that never appears: the reply is dropped after the timeout, the server goes on.
    let missing = unique("reply_missing");
    let started = Instant::now();
    raw_publish(
        &channel,
        "openstack",
        &topic,
        request(&missing, "lost").as_bytes(),
        json_properties(),
    )
    .await;
    let transport = get_rpc_transport(&url).await.unwrap();
    let client =
        RpcClient::new(transport.clone(), Target::topic(&topic)).timeout(Duration::from_secs(10));
    let answer: String = client
        .call(&ctx(), "echo", &json!({"value": "meanwhile"}))
        .await
        .unwrap();
    assert_eq!(answer, "meanwhile");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "other calls are not held up"
    );
    tokio::time::sleep(Duration::from_millis(2600).saturating_sub(started.elapsed())).await;
    // The retries are over: a queue declared now stays empty.
    raw_queue(&channel, &missing, "", "").await;
    assert!(raw_get(&channel, &missing, Duration::from_millis(800))
        .await
        .is_none());

    server.shutdown().await;
    transport.close().await;
    delete_queues(
        &url,
        &[topic.clone(), format!("{topic}.srv1"), late, missing],
    )
    .await;
    let _ = connection.close(200, "OK".into()).await;
}

#[tokio::test]
async fn unknown_url_option_is_refused() {
    messaging_core::install_driver(std::sync::Arc::new(driver_rabbit::RabbitDriver));
    match get_rpc_transport("rabbit://guest:guest@127.0.0.1:5672/?rabbit_qos_prefetch=5").await {
        Err(MessagingError::UnknownOption {
            option,
            driver,
            known,
        }) => {
            assert_eq!(option, "rabbit_qos_prefetch");
            assert_eq!(driver, "rabbit");
            assert!(known.contains(&"rabbit_qos_prefetch_count".to_owned()));
        }
        other => panic!("unexpected {other:?}"),
    }
    match get_notification_transport("kombu://h/?rabbit_retry_interval=soon").await {
        Err(MessagingError::InvalidOption { option, .. }) => {
            assert_eq!(option, "rabbit_retry_interval")
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn unreachable_broker_is_a_quick_connection_failure() {
    messaging_core::install_driver(std::sync::Arc::new(driver_rabbit::RabbitDriver));
    let url =
        "rabbit://guest:guest@127.0.0.1:1/?rabbit_retry_interval=0.05&rabbit_retry_backoff=0.05";
    let started = Instant::now();
    let transport = get_rpc_transport(url)
        .await
        .expect("transports connect lazily");
    let client =
        RpcClient::new(transport.clone(), Target::topic("nowhere")).timeout(Duration::from_secs(5));
    let never = client.clone().retry(Retry::Never);
    assert!(matches!(
        never.cast(&ctx(), "x", &json!({})).await,
        Err(MessagingError::ConnectionFailure(_))
    ));
    match client
        .clone()
        .retry(Retry::Times(2))
        .call::<Value>(&ctx(), "x", &json!({}))
        .await
    {
        Err(MessagingError::ConnectionFailure(reason)) => {
            assert!(reason.contains("127.0.0.1:1"), "{reason}");
            assert!(reason.contains("3 attempt"), "{reason}");
        }
        other => panic!("unexpected {other:?}"),
    }
    // Retry forever, but the call's timeout bounds it.
    let bounded = client.clone().timeout(Duration::from_millis(800));
    assert!(matches!(
        bounded.call::<Value>(&ctx(), "x", &json!({})).await,
        Err(MessagingError::ConnectionFailure(_) | MessagingError::Timeout { .. })
    ));
    let server = RpcServer::new(transport.clone(), Target::topic("nowhere").server("s"))
        .endpoint(echo_endpoint())
        .start()
        .await;
    assert!(
        matches!(server, Err(MessagingError::ConnectionFailure(_))),
        "{server:?}"
    );
    let notifications = get_notification_transport(url).await.unwrap();
    let notified = Notifier::new(notifications, "p")
        .retry(Retry::Never)
        .info(&ctx(), "e", &1)
        .await;
    assert!(
        matches!(notified, Err(MessagingError::ConnectionFailure(_))),
        "{notified:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_is_an_authentication_failure() {
    let Some(url) = rabbit_url("wrong_password_is_an_authentication_failure") else {
        return;
    };
    let parsed = TransportUrl::parse(&url).unwrap();
    let host = &parsed.hosts[0];
    let bad = format!(
        "rabbit://{}:not-the-password@{}:{}/",
        host.username.as_deref().unwrap_or("guest"),
        host.hostname,
        host.port_or(5672)
    );
    let started = Instant::now();
    let transport = get_rpc_transport(&bad).await.unwrap();
    // Even with retry forever: another attempt would not help.
    let client = RpcClient::new(transport.clone(), Target::topic("nowhere")).retry(Retry::Forever);
    match client.cast(&ctx(), "x", &json!({})).await {
        Err(MessagingError::AuthenticationFailure(reason)) => assert!(
            reason.contains("guest") || reason.contains("user"),
            "{reason}"
        ),
        other => panic!("unexpected {other:?}"),
    }
    let server = RpcServer::new(transport, Target::topic("nowhere").server("s"))
        .endpoint(echo_endpoint())
        .start()
        .await;
    assert!(
        matches!(server, Err(MessagingError::AuthenticationFailure(_))),
        "{server:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_publishes_are_all_confirmed() {
    let Some(url) = rabbit_url("pipelined_publishes_are_all_confirmed") else {
        return;
    };
    let topic = unique("drv_pipe");
    let (connection, channel) = raw(&url).await;
    channel
        .exchange_declare(
            "openstack".into(),
            lapin::ExchangeKind::Topic,
            Default::default(),
            Default::default(),
        )
        .await
        .unwrap();
    raw_queue(&channel, &topic, "openstack", &topic).await;
    let transport = get_rpc_transport(&url).await.unwrap();
    let client = RpcClient::new(transport.clone(), Target::topic(&topic));
    const N: usize = 2000;
    let started = Instant::now();
    let casts = (0..N).map(|i| {
        let client = client.clone();
        async move {
            client
                .cast(&Context::new(), "echo", &json!({"value": i}))
                .await
        }
    });
    for result in futures_util::future::join_all(casts).await {
        result.unwrap();
    }
    let elapsed = started.elapsed();
    println!(
        "{N} pipelined confirmed casts in {elapsed:?} ({:.0}/s)",
        N as f64 / elapsed.as_secs_f64()
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(common::queue(&topic).unwrap()["messages"], N);
    transport.close().await;
    delete_queues(&url, &[topic]).await;
    let _ = connection.close(200, "OK".into()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_skips_unreachable_hosts() {
    let Some(url) = rabbit_url("failover_skips_unreachable_hosts") else {
        return;
    };
    let parsed = TransportUrl::parse(&url).unwrap();
    let host = &parsed.hosts[0];
    let (user, password) = (
        host.username.as_deref().unwrap_or("guest"),
        host.password.as_deref().unwrap_or("guest"),
    );
    let topic = unique("drv_failover");
    for strategy in ["round-robin", "shuffle"] {
        // A dead host first (with other credentials), then the real broker.
        let url = format!(
            "rabbit://nobody:nothing@127.0.0.1:1,{user}:{password}@{}:{}/?kombu_failover_strategy={strategy}",
            host.hostname,
            host.port_or(5672)
        );
        let server = start_server(&url, &topic, "srv1").await;
        let transport = get_rpc_transport(&url).await.unwrap();
        let client = RpcClient::new(transport.clone(), Target::topic(&topic))
            .timeout(Duration::from_secs(10));
        for _ in 0..3 {
            let answer: String = client
                .call(&ctx(), "echo", &json!({"value": strategy}))
                .await
                .unwrap();
            assert_eq!(answer, strategy);
        }
        server.shutdown().await;
        transport.close().await;
    }
    delete_queues(&url, &[topic.clone(), format!("{topic}.srv1")]).await;
}

#[tokio::test]
async fn tls_settings_are_checked() {
    messaging_core::install_driver(std::sync::Arc::new(driver_rabbit::RabbitDriver));
    // A CA file that cannot be read.
    match get_rpc_transport("rabbit://h/?ssl=true&ssl_ca_file=/nonexistent/ca.pem").await {
        Err(MessagingError::InvalidOption { option, .. }) => assert_eq!(option, "ssl_ca_file"),
        other => panic!("unexpected {other:?}"),
    }
    // Without host name verification: refused clearly.
    assert!(matches!(
        get_rpc_transport("rabbit://h/?ssl=true&ssl_verify_hostname=false").await,
        Err(MessagingError::Unsupported { .. })
    ));
    // TLS to a plain AMQP port: the handshake fails, a connection failure.
    if let Ok(url) = std::env::var("RABBIT_URL") {
        let parsed = TransportUrl::parse(&url).unwrap();
        let host = &parsed.hosts[0];
        let tls = format!(
            "rabbit://{}:{}/?ssl=true",
            host.hostname,
            host.port_or(5672)
        );
        let transport = get_rpc_transport(&tls).await.unwrap();
        let cast = RpcClient::new(transport, Target::topic("t"))
            .retry(Retry::Never)
            .cast(&ctx(), "x", &json!({}))
            .await;
        assert!(
            matches!(cast, Err(MessagingError::ConnectionFailure(_))),
            "{cast:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_replies_to_missing_queues_do_not_disturb_the_others() {
    let Some(url) = rabbit_url("pipelined_replies_to_missing_queues_do_not_disturb_the_others")
    else {
        return;
    };
    let topic = unique("drv_mixed");
    let server_url = with_options(&url, "kombu_missing_consumer_retry_timeout=1");
    let transport = get_rpc_transport(&server_url).await.unwrap();
    let server = RpcServer::new(transport, Target::topic(&topic).server("srv1"))
        .endpoint(echo_endpoint())
        .max_concurrency(256)
        .start()
        .await
        .unwrap();
    let (connection, channel) = raw(&url).await;
    let present = unique("reply_present");
    raw_queue(&channel, &present, "", "").await;
    const N: usize = 400;
    let request = |reply_q: &str, msg_id: &str| {
        format!(
            r#"{{"oslo.version": "2.0", "oslo.message": "{{\"method\": \"echo\", \"args\": {{\"value\": \"{msg_id}\"}}, \"_msg_id\": \"{msg_id}\", \"_reply_q\": \"{reply_q}\"}}"}}"#
        )
    };
    // Interleave replies to a queue that exists with replies to queues that do not: the
    // returned ones must not be mistaken for the others (pipelined confirms, multiple-acks).
    for i in 0..N {
        let reply_q = if i % 2 == 0 {
            present.clone()
        } else {
            format!("reply_absent_{topic}_{i}")
        };
        raw_publish(
            &channel,
            "openstack",
            &topic,
            request(&reply_q, &format!("m{i}")).as_bytes(),
            json_properties(),
        )
        .await;
    }
    let mut seen = std::collections::HashMap::<String, usize>::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while seen.len() < N / 2 && Instant::now() < deadline {
        if let Some(got) = raw_get(&channel, &present, Duration::from_millis(200)).await {
            let msg_id = envelope(&got.delivery.data).1["_msg_id"]
                .as_str()
                .unwrap()
                .to_owned();
            *seen.entry(msg_id).or_default() += 1;
        }
    }
    // Replies returned by mistake would be sent again: wait past the retry timeout.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    while let Some(got) = raw_get(&channel, &present, Duration::ZERO).await {
        let msg_id = envelope(&got.delivery.data).1["_msg_id"]
            .as_str()
            .unwrap()
            .to_owned();
        *seen.entry(msg_id).or_default() += 1;
    }
    assert_eq!(
        seen.len(),
        N / 2,
        "every reply to the present queue arrived"
    );
    assert!(seen.values().all(|n| *n == 1), "no reply twice: {seen:?}");
    assert!(seen
        .keys()
        .all(|id| id[1..].parse::<usize>().unwrap() % 2 == 0));

    server.shutdown().await;
    delete_queues(&url, &[topic.clone(), format!("{topic}.srv1"), present]).await;
    let _ = connection.close(200, "OK".into()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_and_consumer_options_are_applied() {
    let Some(url) = rabbit_url("queue_and_consumer_options_are_applied") else {
        return;
    };
    let topic = unique("drv_quorum");
    let options = "rabbit_quorum_queue=true&rabbit_quorum_delivery_limit=3&rabbit_transient_quorum_queue=true\
                   &rabbit_transient_queues_ttl=600&rabbit_qos_prefetch_count=5&rabbit_login_method=AMQPLAIN";
    let server_url = with_options(&url, options);
    let server = start_server(&server_url, &topic, "srv1").await;
    let rows = rabbitmqctl(&[
        "list_queues",
        "name",
        "type",
        "durable",
        "auto_delete",
        "arguments",
    ]);
    let mut mine: Vec<&Value> = rows
        .iter()
        .filter(|q| q["name"].as_str().unwrap().starts_with(&topic))
        .collect();
    mine.sort_by_key(|q| q["name"].as_str().unwrap().to_owned());
    assert_eq!(mine.len(), 3, "{mine:#?}");
    for q in &mine {
        assert_eq!(
            (q["type"].clone(), q["durable"].clone()),
            (json!("quorum"), json!(true)),
            "{q}"
        );
        let args = q["arguments"].as_array().unwrap();
        assert!(
            args.contains(&json!(["x-queue-type", "longstr", "quorum"])),
            "{q}"
        );
        assert!(
            args.contains(&json!(["x-delivery-limit", "signedint", 3])),
            "{q}"
        );
        if q["name"].as_str().unwrap().contains("_fanout_") {
            assert!(
                args.contains(&json!(["x-expires", "signedint", 600000])),
                "{q}"
            );
        }
    }
    let fanout = exchanges(&topic);
    assert_eq!(fanout[0]["durable"], true, "{fanout:?}");
    let consumers: Vec<Value> = rabbitmqctl(&[
        "list_consumers",
        "queue_name",
        "prefetch_count",
        "ack_required",
        "consumer_tag",
    ])
    .into_iter()
    .filter(|c| c["queue_name"].as_str().unwrap().starts_with(&topic))
    .collect();
    assert_eq!(consumers.len(), 3);
    for c in &consumers {
        assert_eq!(
            (c["prefetch_count"].clone(), c["ack_required"].clone()),
            (json!(5), json!(true)),
            "{c}"
        );
    }
    // The server works with those queues (and logged in with AMQPLAIN).
    let transport = get_rpc_transport(&url).await.unwrap();
    let client =
        RpcClient::new(transport.clone(), Target::topic(&topic)).timeout(Duration::from_secs(10));
    let answer: String = client
        .call(&ctx(), "echo", &json!({"value": "quorum"}))
        .await
        .unwrap();
    assert_eq!(answer, "quorum");
    server.shutdown().await;
    transport.close().await;
    delete_queues(&url, &[topic.clone(), format!("{topic}.srv1")]).await;
    // The fanout exchange is durable and auto-delete: it went away with its last queue.
    assert!(exchanges(&topic).is_empty());
}

/// Messages much larger than a frame (`frame_max`, 32 KiB by default) travel in many frames,
/// both ways, for calls and for notifications; a smaller `frame_max` is honoured too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_messages_span_many_frames() {
    let Some(url) = rabbit_url("large_messages_span_many_frames") else {
        return;
    };
    for url in [
        url.clone(),
        format!("{}/?frame_max=4096", url.trim_end_matches('/')),
    ] {
        let topic = unique("drv_large");
        let server = start_server(&url, &topic, "s1").await;
        let client = RpcClient::new(
            get_rpc_transport(&url).await.unwrap(),
            Target::topic(&topic),
        )
        .timeout(Duration::from_secs(30));
        let big = "é".repeat(512 * 1024); // 1 MiB of UTF-8, 2 MiB once JSON-escaped twice
        let echoed: String = client
            .call(&ctx(), "echo", &json!({"value": big}))
            .await
            .unwrap();
        assert_eq!(echoed, big, "{url}");
        server.shutdown().await;

        let transport = get_notification_transport(&url).await.unwrap();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let listener = NotificationListener::new(transport.clone())
            .target(Target::topic(&topic))
            .endpoint(NotificationEndpoint::new().on(Priority::Info, move |n| {
                let tx = tx.clone();
                async move {
                    tx.send(n.payload).ok();
                    NotificationResult::Handled
                }
            }))
            .start()
            .await
            .unwrap();
        Notifier::new(transport, "p")
            .topics([&topic])
            .info(&ctx(), "big", &big)
            .await
            .unwrap();
        let payload = tokio::time::timeout(Duration::from_secs(30), rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(payload, json!(big), "{url}");
        listener.shutdown().await;
    }
}

/// A policy on the queues matching `pattern` (over the test-expiry one), cleared on drop.
struct Policy(String);

impl Policy {
    /// Apply `definition` to queue `queue` and wait until the broker shows it applied.
    async fn on_queue(queue: &str, definition: &str) -> Self {
        let policy = Policy(unique("test-policy"));
        let pattern = format!("^{}$", queue.replace('.', "\\."));
        ctl(&[
            "set_policy",
            "--apply-to",
            "queues",
            "--priority",
            "10",
            &policy.0,
            &pattern,
            definition,
        ]);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !rabbitmqctl(&["list_queues", "name", "policy"])
            .iter()
            .any(|q| q["name"] == queue && q["policy"] == policy.0.as_str())
        {
            assert!(Instant::now() < deadline, "policy not applied to {queue}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        policy
    }
}

impl Drop for Policy {
    fn drop(&mut self) {
        let _ = std::process::Command::new("rabbitmqctl")
            .args(["clear_policy", &self.0, "-q"])
            .output();
    }
}

/// A full queue with `overflow: reject-publish` nacks publishes: the broker's refusal of the
/// moment (as a quorum queue without a leader): retried within the caller's policy, not fatal.
const FULL_AFTER_ONE: &str = r#"{"max-length": 1, "overflow": "reject-publish"}"#;
/// Retry nacks quickly.
const FAST_RETRY: &str =
    "rabbit_retry_interval=0.1&rabbit_retry_backoff=0.1&rabbit_interval_max=0.3";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nacked_notifications_are_retried_until_the_queue_takes_them() {
    let Some(url) = rabbit_url("nacked_notifications_are_retried_until_the_queue_takes_them")
    else {
        return;
    };
    let url = with_options(&url, FAST_RETRY);
    let transport = get_notification_transport(&url).await.unwrap();
    let topic = unique("test_nack");
    let queue = format!("{topic}.info");
    let notifier = Notifier::new(transport.clone(), "nack").topics([topic.as_str()]);
    notifier.info(&ctx(), "first", &json!({})).await.unwrap();
    let _policy = Policy::on_queue(&queue, FULL_AFTER_ONE).await;

    // No retry: the nack is the caller's error, and says so.
    let error = notifier
        .clone()
        .retry(Retry::Never)
        .info(&ctx(), "refused", &json!({}))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, MessagingError::DeliveryFailure(m) if m.contains("nacked")),
        "{error:?}"
    );
    // Retry forever (the default): the send waits until the queue has room again.
    let waiting = tokio::spawn({
        let notifier = notifier.clone();
        async move { notifier.info(&ctx(), "second", &json!({})).await }
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!waiting.is_finished(), "a nacked notification was given up");
    let (connection, channel) = raw(&url).await;
    let first = raw_get(&channel, &queue, Duration::from_secs(5))
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&first.delivery.data).contains("first"));
    tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("the nacked notification was not sent again once the queue had room")
        .unwrap()
        .unwrap();
    let second = raw_get(&channel, &queue, Duration::from_secs(5))
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&second.delivery.data).contains("second"));
    let _ = connection.close(200, "OK".into()).await;
    delete_queues(&url, &[queue]).await;
    transport.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nacked_calls_are_retried_within_their_timeout() {
    let Some(url) = rabbit_url("nacked_calls_are_retried_within_their_timeout") else {
        return;
    };
    let url = with_options(&url, FAST_RETRY);
    let topic = unique("test_nackrpc");
    // A server declares the topic queue, then stops: requests wait in the queue.
    start_server(&url, &topic, "s1").await.shutdown().await;
    let transport = get_rpc_transport(&url).await.unwrap();
    let client = RpcClient::new(transport.clone(), Target::topic(topic.as_str()));
    client
        .clone()
        .timeout(Duration::from_secs(1))
        .cast(&ctx(), "echo", &json!({"value": "fills the queue"}))
        .await
        .unwrap();
    let _policy = Policy::on_queue(&topic, FULL_AFTER_ONE).await;

    // The queue is full: a short call is nacked until its timeout, and says so.
    let began = Instant::now();
    let error = client
        .clone()
        .timeout(Duration::from_secs(2))
        .call::<Value>(&ctx(), "echo", &json!({"value": "refused"}))
        .await
        .unwrap_err();
    assert!(
        began.elapsed() < Duration::from_secs(4),
        "{:?}",
        began.elapsed()
    );
    assert!(
        matches!(&error, MessagingError::DeliveryFailure(m) if m.contains("nacked"))
            || matches!(&error, MessagingError::Timeout { .. }),
        "{error:?}"
    );
    // A patient call is published again until a server drains the queue, then answered.
    let call = tokio::spawn({
        let client = client.clone().timeout(Duration::from_secs(20));
        async move {
            client
                .call::<Value>(&ctx(), "echo", &json!({"value": "patient"}))
                .await
        }
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!call.is_finished(), "a nacked call was given up");
    let server = start_server(&url, &topic, "s1").await;
    let answer = tokio::time::timeout(Duration::from_secs(20), call)
        .await
        .expect("the nacked call was not sent again")
        .unwrap()
        .unwrap();
    assert_eq!(answer, json!("patient"));
    server.shutdown().await;
    delete_queues(&url, &[topic.clone(), format!("{topic}.s1")]).await;
    transport.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redelivered_notifications_are_dropped_and_counted() {
    let Some(url) = rabbit_url("redelivered_notifications_are_dropped_and_counted") else {
        return;
    };
    let topic = unique("test_dups");
    let queue = format!("{topic}.info");
    let transport = get_notification_transport(&url).await.unwrap();
    let notifier = Notifier::new(transport.clone(), "dups").topics([topic.as_str()]);
    // The original, then the same bytes (same `_unique_id`) 100 messages later, as a send
    // retried after a lost confirm arrives behind other senders' messages.
    notifier
        .info(&ctx(), "e", &json!({"n": "original"}))
        .await
        .unwrap();
    let (connection, channel) = raw(&url).await;
    let original = raw_get(&channel, &queue, Duration::from_secs(10))
        .await
        .unwrap()
        .delivery
        .data;
    raw_publish(&channel, "openstack", &queue, &original, json_properties()).await;
    for n in 0..100 {
        notifier
            .info(&ctx(), "e", &json!({ "n": n }))
            .await
            .unwrap();
    }
    raw_publish(&channel, "openstack", &queue, &original, json_properties()).await;
    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    let listener = NotificationListener::new(transport.clone())
        .target(Target::topic(topic.as_str()))
        .endpoint(NotificationEndpoint::new().on(Priority::Info, move |n| {
            let seen_tx = seen_tx.clone();
            async move {
                seen_tx.send(n.payload["n"].clone()).unwrap();
                NotificationResult::Handled
            }
        }))
        .max_concurrency(1)
        .start()
        .await
        .unwrap();
    let mut got = Vec::new();
    while let Ok(Some(n)) = tokio::time::timeout(Duration::from_secs(2), seen.recv()).await {
        got.push(n);
    }
    assert_eq!(got.len(), 101, "{got:?}");
    assert_eq!(got.iter().filter(|n| **n == "original").count(), 1);
    assert_eq!(transport.duplicates_suppressed(), 1);
    listener.shutdown().await;
    let _ = connection.close(200, "OK".into()).await;
    delete_queues(&url, &[queue]).await;
    transport.close().await;
}
