//! oslo's RabbitMQ options of 14.x-18.x against the real broker: login methods, quorum memory
//! limits, mirrored-queue arguments, fanout through a stream, the queue manager's stable
//! names, compression, the consumer-cancel delay and `heartbeat_rate`.

mod common;

use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use lapin::types::{AMQPValue, FieldTable};
use messaging_core::*;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(20);

fn ctx() -> Context {
    Context::new().with("user_id", "u-1")
}

/// A transport on `url` and a [`recording_server_on`] it.
async fn recording_server(
    url: &str,
    topic: &str,
    server: &str,
    casts: mpsc::UnboundedSender<(String, String)>,
) -> (RpcTransport, ServiceHandle) {
    let transport = get_rpc_transport(url).await.unwrap();
    let handle = recording_server_on(&transport, topic, server, casts).await;
    (transport, handle)
}

/// Everything `rx` gets until it has been quiet for `quiet`.
async fn drain<T>(rx: &mut mpsc::UnboundedReceiver<T>, quiet: Duration) -> Vec<T> {
    let mut got = Vec::new();
    while let Ok(Some(item)) = tokio::time::timeout(quiet, rx.recv()).await {
        got.push(item);
    }
    got
}

/// The authentication mechanism of each client connection of `vhost`.
fn auth_mechanisms(vhost: &Vhost) -> Vec<String> {
    rabbitmqctl(&["list_connections", "vhost", "auth_mechanism"])
        .into_iter()
        .filter(|c| c["vhost"] == vhost.0.as_str())
        .map(|c| c["auth_mechanism"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// oslo logs in with AMQPLAIN unless told otherwise; PLAIN works too. RABBIT-CR-DEMO, which the
/// broker does not offer by default, fails with an error that says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqplain_is_the_default_login_and_plain_works_too() {
    let Some(url) = rabbit_url("amqplain_is_the_default_login_and_plain_works_too") else {
        return;
    };
    let vhost = Vhost::new();
    let topic = unique("opt_login");
    for (option, expected) in [
        ("", "AMQPLAIN"),
        ("rabbit_login_method=PLAIN", "PLAIN"),
        ("rabbit_login_method=AMQPLAIN", "AMQPLAIN"),
    ] {
        let transport = get_notification_transport(&in_vhost(&url, &vhost, option))
            .await
            .unwrap();
        Notifier::new(transport.clone(), "compute.h1")
            .topics([topic.clone()])
            .info(&ctx(), "login.test", &json!({}))
            .await
            .unwrap();
        assert_eq!(auth_mechanisms(&vhost), [expected], "{option:?}");
        transport.close().await;
        let deadline = Instant::now() + WAIT;
        while !auth_mechanisms(&vhost).is_empty() {
            assert!(Instant::now() < deadline, "the connection stays open");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let transport = get_notification_transport(&in_vhost(
        &url,
        &vhost,
        "rabbit_login_method=RABBIT-CR-DEMO",
    ))
    .await
    .unwrap();
    let refused = Notifier::new(transport, "compute.h1")
        .topics([topic])
        .retry(Retry::Never)
        .info(&ctx(), "login.test", &json!({}))
        .await;
    match refused {
        Err(MessagingError::ConnectionFailure(reason)) => {
            assert!(
                reason.contains("does the broker offer the RABBIT-CR-DEMO login mechanism"),
                "{reason}"
            );
            println!("RABBIT-CR-DEMO: {reason}");
        }
        other => panic!("unexpected {other:?}"),
    }
}

/// The arguments of `name` in `vhost`, as rabbitmqctl lists them: `[name, type, value]`.
fn arguments(vhost: &Vhost, name: &str) -> Vec<Value> {
    rabbitmqctl(&["list_queues", "-p", &vhost.0, "name", "arguments"])
        .into_iter()
        .find(|q| q["name"] == name)
        .unwrap_or_else(|| panic!("no queue {name}"))["arguments"]
        .as_array()
        .unwrap()
        .clone()
}

/// `rabbit_quorum_max_memory_length` / `_bytes` become `x-max-in-memory-length` / `-bytes` of
/// every quorum queue (RPC and notification queues), as oslo declares them (RabbitMQ 3.10
/// keeps no quorum message bodies in memory anyway: `messages_ram` is 0 with or without them,
/// so only the arguments can be checked); `rabbit_ha_queues` adds `x-ha-policy: all` to every
/// queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorum_memory_limits_and_mirroring_arguments_are_declared() {
    let Some(url) = rabbit_url("quorum_memory_limits_and_mirroring_arguments_are_declared") else {
        return;
    };
    let vhost = Vhost::new();
    let topic = unique("opt_qmem");
    let quorum = in_vhost(
        &url,
        &vhost,
        "rabbit_quorum_queue=true&rabbit_quorum_max_memory_length=2\
         &rabbit_quorum_max_memory_bytes=65536",
    );
    let (casts, _) = mpsc::unbounded_channel();
    let (transport, server) = recording_server(&quorum, &topic, "srv1", casts).await;
    let notifications = get_notification_transport(&quorum).await.unwrap();
    let notifier = Notifier::new(notifications.clone(), "compute.h1").topics([topic.clone()]);
    for n in 0..10 {
        notifier.info(&ctx(), "qmem", &json!(n)).await.unwrap();
    }
    let limits = [
        json!(["x-max-in-memory-length", "signedint", 2]),
        json!(["x-max-in-memory-bytes", "signedint", 65536]),
        json!(["x-queue-type", "longstr", "quorum"]),
    ];
    for queue in [
        topic.clone(),
        format!("{topic}.srv1"),
        format!("{topic}.info"),
    ] {
        let args = arguments(&vhost, &queue);
        for limit in &limits {
            assert!(args.contains(limit), "{queue}: {args:?}");
        }
    }
    let info = format!("{topic}.info");
    // The broker refreshes a queue's counts every few seconds.
    let deadline = Instant::now() + WAIT;
    let row = loop {
        let row = rabbitmqctl(&[
            "list_queues",
            "-p",
            &vhost.0,
            "name",
            "messages",
            "messages_ram",
        ])
        .into_iter()
        .find(|q| q["name"] == info.as_str())
        .unwrap();
        if row["messages"] == 10 || Instant::now() > deadline {
            break row;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(row["messages"], 10, "{row}");
    println!("quorum queue with x-max-in-memory-length=2: {row}");
    server.shutdown().await;
    transport.close().await;
    notifications.close().await;

    let mirrored = in_vhost(&url, &vhost, "rabbit_ha_queues=true");
    let topic = unique("opt_ha");
    let (casts, _) = mpsc::unbounded_channel();
    let (transport, server) = recording_server(&mirrored, &topic, "srv1", casts).await;
    let fanout = rabbitmqctl(&["list_queues", "-p", &vhost.0, "name"])
        .into_iter()
        .filter_map(|q| q["name"].as_str().map(str::to_owned))
        .find(|name| name.starts_with(&format!("{topic}_fanout_")))
        .expect("a fanout queue");
    for queue in [topic.clone(), format!("{topic}.srv1"), fanout] {
        let args = arguments(&vhost, &queue);
        assert!(
            args.contains(&json!(["x-ha-policy", "longstr", "all"])),
            "{queue}: {args:?}"
        );
    }
    server.shutdown().await;
    transport.close().await;
}

/// The stream of a topic's fanout, in `vhost`: `(type, arguments)`.
fn stream_row(vhost: &Vhost, name: &str) -> Option<(Value, Vec<Value>)> {
    rabbitmqctl(&["list_queues", "-p", &vhost.0, "name", "type", "arguments"])
        .into_iter()
        .find(|q| q["name"] == name)
        .map(|q| {
            (
                q["type"].clone(),
                q["arguments"].as_array().unwrap().clone(),
            )
        })
}

const STREAM: &str = "rabbit_stream_fanout=true&rabbit_transient_quorum_queue=true\
                      &rabbit_qos_prefetch_count=10&rabbit_transient_queues_ttl=600\
                      &rabbit_retry_interval=0.2&rabbit_retry_backoff=0.2&rabbit_interval_max=1";

/// With `rabbit_stream_fanout`, a topic's fanout goes through one stream, `<topic>_fanout`,
/// kept `rabbit_transient_queues_ttl` (`x-max-age`), that every server reads: a fanout cast
/// reaches each server once, casts sent while the servers are disconnected reach them when
/// they are back (each resumes after the last message it handed out, without repeating it),
/// and a server that stops leaves the stream to the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_through_a_stream_reaches_every_server_and_resumes_after_reconnecting() {
    let test = "fanout_through_a_stream_reaches_every_server_and_resumes_after_reconnecting";
    let Some(url) = rabbit_url(test) else {
        return;
    };
    let vhost = Vhost::new();
    let url = in_vhost(&url, &vhost, STREAM);
    let topic = unique("opt_stream");
    let (casts_tx, mut casts) = mpsc::unbounded_channel();
    let (t1, s1) = recording_server(&url, &topic, "s1", casts_tx.clone()).await;
    let (t2, s2) = recording_server(&url, &topic, "s2", casts_tx).await;
    let stream = format!("{topic}_fanout");
    let (kind, args) = stream_row(&vhost, &stream).expect("the stream");
    assert_eq!(kind, "stream");
    let mut args = args;
    args.sort_by_key(|a| a[0].as_str().unwrap_or_default().to_owned());
    assert_eq!(
        args,
        [
            json!(["x-max-age", "longstr", "600s"]),
            json!(["x-queue-type", "longstr", "stream"])
        ]
    );
    let fanouts: Vec<String> = rabbitmqctl(&["list_queues", "-p", &vhost.0, "name"])
        .into_iter()
        .filter_map(|q| q["name"].as_str().map(str::to_owned))
        .filter(|name| name.contains("_fanout"))
        .collect();
    assert_eq!(
        fanouts,
        std::slice::from_ref(&stream),
        "one stream, no queue per server"
    );

    let transport = get_rpc_transport(&url).await.unwrap();
    let client = RpcClient::new(transport.clone(), Target::topic(&topic));
    let cast = |value: &'static str| {
        let client = client.clone();
        async move {
            client
                .prepare()
                .fanout(true)
                .cast(&ctx(), "record", &json!({"value": value}))
                .await
                .unwrap()
        }
    };
    cast("one").await;
    let mut got = drain(&mut casts, Duration::from_secs(2)).await;
    got.sort();
    assert_eq!(
        got,
        [
            ("s1".to_owned(), "one".to_owned()),
            ("s2".to_owned(), "one".to_owned())
        ]
    );

    // Every connection of the vhost is closed: the servers come back and read on from where
    // they were; the casts sent meanwhile wait in the stream.
    vhost.close_connections();
    cast("two").await;
    cast("three").await;
    let mut got = drain(&mut casts, Duration::from_secs(5)).await;
    got.sort();
    let expected: Vec<(String, String)> = ["s1", "s2"]
        .iter()
        .flat_map(|s| {
            [
                (s.to_string(), "three".into()),
                (s.to_string(), "two".into()),
            ]
        })
        .collect();
    assert_eq!(got, expected, "nothing lost, nothing repeated");

    s1.shutdown().await;
    t1.close().await;
    assert!(stream_row(&vhost, &stream).is_some(), "the stream stays");
    cast("four").await;
    let got = drain(&mut casts, Duration::from_secs(2)).await;
    assert_eq!(got, [("s2".to_owned(), "four".to_owned())]);
    s2.shutdown().await;
    t2.close().await;
    transport.close().await;
}

/// `/dev/shm/<hostname>_<processname>_qmanager`, the queue manager's counter.
fn counter_file(hostname: &str, processname: &str) -> std::path::PathBuf {
    std::path::PathBuf::from(format!("/dev/shm/{hostname}_{processname}_qmanager"))
}

/// Queue names in `vhost` starting with `prefix`.
fn queue_names(vhost: &Vhost, prefix: &str) -> Vec<String> {
    let mut names: Vec<String> = rabbitmqctl(&["list_queues", "-p", &vhost.0, "name"])
        .into_iter()
        .filter_map(|q| q["name"].as_str().map(str::to_owned))
        .filter(|name| name.starts_with(prefix))
        .collect();
    names.sort();
    names
}

/// With `use_queue_manager`, reply and fanout queues are named
/// `<hostname>:<processname>:<n>` as oslo's queue manager names them; a server's fanout queue
/// stays when it stops, and the same service started again (here: its counter starts over, as
/// it does in a new process group) declares and uses the same queues again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_manager_names_are_stable_across_restarts() {
    let Some(url) = rabbit_url("queue_manager_names_are_stable_across_restarts") else {
        return;
    };
    let vhost = Vhost::new();
    let host = unique("qmhost");
    let url = in_vhost(
        &url,
        &vhost,
        &format!("use_queue_manager=true&hostname={host}&processname=svc"),
    );
    let topic = unique("opt_qm");
    let counter = counter_file(&host, "svc");
    // The first run: the server's fanout queue is the first name, the reply queue the second.
    let (casts, _) = mpsc::unbounded_channel();
    let (transport, server) = recording_server(&url, &topic, "srv1", casts).await;
    let client = RpcClient::new(transport.clone(), Target::topic(&topic)).timeout(WAIT);
    let answer: String = client
        .call(&ctx(), "echo", &json!({"value": "first"}))
        .await
        .unwrap();
    assert_eq!(answer, "first");
    let fanout = format!("{topic}_fanout_{host}:svc:1");
    let reply = format!("reply_{host}:svc:2");
    assert_eq!(
        queue_names(&vhost, &format!("{topic}_fanout")),
        std::slice::from_ref(&fanout)
    );
    assert_eq!(queue_names(&vhost, "reply_"), std::slice::from_ref(&reply));
    server.shutdown().await;
    transport.close().await;
    assert_eq!(
        queue_names(&vhost, &format!("{topic}_fanout")),
        std::slice::from_ref(&fanout),
        "kept for the next run"
    );

    // The service starts again: a new process group would start the count over.
    std::fs::remove_file(&counter).unwrap();
    let (casts, mut got) = mpsc::unbounded_channel();
    let (transport, server) = recording_server(&url, &topic, "srv1", casts).await;
    let client = RpcClient::new(transport.clone(), Target::topic(&topic)).timeout(WAIT);
    let answer: String = client
        .call(&ctx(), "echo", &json!({"value": "again"}))
        .await
        .unwrap();
    assert_eq!(answer, "again");
    assert_eq!(queue_names(&vhost, &format!("{topic}_fanout")), [fanout]);
    assert_eq!(queue_names(&vhost, "reply_"), [reply]);
    client
        .prepare()
        .fanout(true)
        .cast(&ctx(), "record", &json!({"value": "fanout"}))
        .await
        .unwrap();
    let cast = tokio::time::timeout(WAIT, got.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cast, ("srv1".to_owned(), "fanout".to_owned()));
    server.shutdown().await;
    transport.close().await;
    let _ = std::fs::remove_file(&counter);
    let mut lock = counter.into_os_string();
    lock.push(".lock");
    let _ = std::fs::remove_file(lock);
}

/// zlib (kombu's `gzip`) and bzip2, as kombu decompresses them.
fn decompress(codec: &str, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match codec {
        "application/x-gzip" => flate2::read::ZlibDecoder::new(body)
            .read_to_end(&mut out)
            .unwrap(),
        "application/x-bz2" => bzip2::read::BzDecoder::new(body)
            .read_to_end(&mut out)
            .unwrap(),
        other => panic!("unexpected codec {other}"),
    };
    out
}

/// With `kombu_compression`, bodies go out compressed with kombu's `compression` header, and
/// calls, replies and notifications work; a message compressed with a codec this driver does
/// not have is rejected (and logged) and the listener goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_messages_are_sent_and_read() {
    let Some(url) = rabbit_url("compressed_messages_are_sent_and_read") else {
        return;
    };
    let vhost = Vhost::new();
    for (option, codec) in [
        ("gzip", "application/x-gzip"),
        ("bzip2", "application/x-bz2"),
    ] {
        let url = in_vhost(&url, &vhost, &format!("kombu_compression={option}"));
        let topic = unique("opt_zip");
        let (casts, _) = mpsc::unbounded_channel();
        let (transport, server) = recording_server(&url, &topic, "srv1", casts).await;
        let big = "compressible ".repeat(10_000);
        let client = RpcClient::new(transport.clone(), Target::topic(&topic)).timeout(WAIT);
        let answer: String = client
            .call(&ctx(), "echo", &json!({"value": big}))
            .await
            .unwrap();
        assert_eq!(answer, big);
        let notifications = get_notification_transport(&url).await.unwrap();
        Notifier::new(notifications.clone(), "compute.h1")
            .topics([topic.clone()])
            .info(&ctx(), "zipped", &json!({"text": big}))
            .await
            .unwrap();
        let (connection, channel) = raw(&url).await;
        let message = raw_get(&channel, &format!("{topic}.info"), WAIT)
            .await
            .expect("the notification");
        let headers = message.properties.headers().clone().unwrap_or_default();
        assert_eq!(
            headers.inner().get("compression"),
            Some(&AMQPValue::LongString(codec.into())),
            "{headers:?}"
        );
        assert!(message.delivery.data.len() < 2_000, "{codec}: compressed");
        let (_, inner) = envelope(&decompress(codec, &message.delivery.data));
        assert_eq!(inner["payload"]["text"], json!(big));
        let _ = connection.close(200, "OK".into()).await;
        server.shutdown().await;
        transport.close().await;
        notifications.close().await;
    }

    // An unknown codec: rejected, and the listener takes the next notification.
    let url = in_vhost(&url, &vhost, "");
    let topic = unique("opt_zip_bad");
    let notifications = get_notification_transport(&url).await.unwrap();
    let (listener, mut rx) = forwarding_listener(&notifications, &topic).await;
    let (connection, channel) = raw(&url).await;
    let mut headers = FieldTable::default();
    headers.insert(
        "compression".into(),
        AMQPValue::LongString("application/x-lzma".into()),
    );
    raw_publish(
        &channel,
        "openstack",
        &format!("{topic}.info"),
        b"\xfd7zXZ\x00 not really",
        json_properties().with_headers(headers),
    )
    .await;
    Notifier::new(notifications.clone(), "compute.h1")
        .topics([topic.clone()])
        .info(&ctx(), "after.the.bad.one", &json!({}))
        .await
        .unwrap();
    let got = tokio::time::timeout(WAIT, rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.event_type, "after.the.bad.one");
    let _ = connection.close(200, "OK".into()).await;
    listener.shutdown().await;
    notifications.close().await;
}

/// How long until `queue` exists again, polling every 20 ms (a passive declaration on a new
/// channel of `connection`), within `WAIT`.
async fn until_declared(connection: &lapin::Connection, queue: &str) -> Duration {
    let started = Instant::now();
    loop {
        let channel = connection.create_channel().await.unwrap();
        let passive = lapin::options::QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        if channel
            .queue_declare(queue.into(), passive, FieldTable::default())
            .await
            .is_ok()
        {
            let _ = channel.close(200, "OK".into()).await;
            return started.elapsed();
        }
        assert!(started.elapsed() < WAIT, "{queue} is not declared again");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// When the broker cancels a consumer (its queue was deleted), the server declares and
/// consumes again after `kombu_reconnect_delay` on top of its back-off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consuming_resumes_after_kombu_reconnect_delay_when_a_consumer_is_cancelled() {
    let test = "consuming_resumes_after_kombu_reconnect_delay_when_a_consumer_is_cancelled";
    let Some(url) = rabbit_url(test) else {
        return;
    };
    let vhost = Vhost::new();
    let mut delays = Vec::new();
    for reconnect_delay in ["0", "3"] {
        let options = format!(
            "rabbit_retry_interval=0.1&rabbit_retry_backoff=0.1&kombu_reconnect_delay={reconnect_delay}"
        );
        let url = in_vhost(&url, &vhost, &options);
        let topic = unique("opt_cancel");
        let (casts, _) = mpsc::unbounded_channel();
        let (transport, server) = recording_server(&url, &topic, "srv1", casts).await;
        let (connection, channel) = raw(&url).await;
        channel
            .queue_delete(topic.as_str().into(), Default::default())
            .await
            .unwrap();
        let back = until_declared(&connection, &topic).await;
        println!("kombu_reconnect_delay={reconnect_delay}: declared again after {back:?}");
        delays.push(back);
        let _ = connection.close(200, "OK".into()).await;
        server.shutdown().await;
        transport.close().await;
    }
    assert!(delays[0] < Duration::from_secs(2), "{delays:?}");
    assert!(
        delays[1] >= Duration::from_secs(3) && delays[1] < Duration::from_secs(6),
        "{delays:?}"
    );
}

/// `direct_mandatory_flag=false` is accepted (oslo deprecated it); replies stay mandatory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_mandatory_flag_is_accepted() {
    let Some(url) = rabbit_url("direct_mandatory_flag_is_accepted") else {
        return;
    };
    let url = with_options(&url, "direct_mandatory_flag=false");
    let topic = unique("opt_dmf");
    let (casts, _) = mpsc::unbounded_channel();
    let (transport, server) = recording_server(&url, &topic, "srv1", casts).await;
    let client = RpcClient::new(transport.clone(), Target::topic(&topic)).timeout(WAIT);
    let answer: String = client
        .call(&ctx(), "echo", &json!({"value": "mandatory"}))
        .await
        .unwrap();
    assert_eq!(answer, "mandatory");
    server.shutdown().await;
    transport.close().await;
    delete_queues(&url, &[topic.clone(), format!("{topic}.srv1")]).await;
}

/// The 8-byte AMQP heartbeat frame.
const HEARTBEAT: [u8; 8] = [8, 0, 0, 0, 0, 0, 0, 0xCE];

/// A TCP proxy to the broker, on a port of its own. It counts the heartbeat frames clients
/// send, and can freeze: then nothing passes either way (a hung broker or a black-holed
/// network: the connections stay open, silent), and it notes when a client gives up.
struct Proxy {
    port: u16,
    frozen: Arc<AtomicBool>,
    accepted: Arc<AtomicUsize>,
    heartbeats: Arc<AtomicUsize>,
    /// When data last went from the broker to a client.
    last_forwarded: Arc<Mutex<Instant>>,
    /// When a client closed its side.
    client_closed: mpsc::UnboundedReceiver<Instant>,
}

impl Proxy {
    async fn start(broker_port: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let frozen = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicUsize::new(0));
        let heartbeats = Arc::new(AtomicUsize::new(0));
        let last_forwarded = Arc::new(Mutex::new(Instant::now()));
        let (closed_tx, client_closed) = mpsc::unbounded_channel();
        let held = Held::default();
        let (f, a, h, l) = (
            frozen.clone(),
            accepted.clone(),
            heartbeats.clone(),
            last_forwarded.clone(),
        );
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                a.fetch_add(1, Ordering::SeqCst);
                let broker = TcpStream::connect(("127.0.0.1", broker_port))
                    .await
                    .unwrap();
                let (client_read, client_write) = client.into_split();
                let (broker_read, broker_write) = broker.into_split();
                let (f2, closed, held2) = (f.clone(), closed_tx.clone(), held.clone());
                let heartbeats = h.clone();
                tokio::spawn(async move {
                    pump(client_read, broker_write, f2, held2, |chunk| {
                        let beats = chunk.windows(8).filter(|w| *w == HEARTBEAT).count();
                        heartbeats.fetch_add(beats, Ordering::SeqCst);
                    })
                    .await;
                    let _ = closed.send(Instant::now());
                });
                let (f3, last, held3) = (f.clone(), l.clone(), held.clone());
                tokio::spawn(async move {
                    pump(broker_read, client_write, f3, held3, |_| {
                        *last.lock().unwrap() = Instant::now();
                    })
                    .await;
                });
            }
        });
        Self {
            port,
            frozen,
            accepted,
            heartbeats,
            last_forwarded,
            client_closed,
        }
    }
}

/// Write halves kept open: dropping one would close its side.
type Held = Arc<Mutex<Vec<tokio::net::tcp::OwnedWriteHalf>>>;

/// Copy `from` to `to` while not frozen (frozen: read and drop), calling `seen` on what is
/// forwarded. At the end of `from`, `to` is shut down, unless frozen: a frozen peer says
/// nothing, not even goodbye, and `to` is kept open in `held`.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    frozen: Arc<AtomicBool>,
    held: Held,
    mut seen: impl FnMut(&[u8]),
) {
    let mut buffer = vec![0u8; 65_536];
    loop {
        let n = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if frozen.load(Ordering::SeqCst) {
            continue;
        }
        seen(&buffer[..n]);
        if to.write_all(&buffer[..n]).await.is_err() {
            break;
        }
    }
    if frozen.load(Ordering::SeqCst) {
        held.lock().unwrap().push(to);
    } else {
        let _ = to.shutdown().await;
    }
}

/// `heartbeat_rate`: with a 2 s heartbeat timeout, an idle listener's connection stays up,
/// heartbeats going out, for several timeouts; once the broker falls silent (the proxy
/// freezes), the connection is given up after twice the timeout, noticed within
/// `timeout / rate / 2` (lapin alone looks only every half timeout), and the listener
/// reconnects and gets what is sent next.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_keep_idle_connections_and_heartbeat_rate_paces_the_liveness_check() {
    let test = "heartbeats_keep_idle_connections_and_heartbeat_rate_paces_the_liveness_check";
    let Some(url) = rabbit_url(test) else {
        return;
    };
    let parsed = TransportUrl::parse(&url).unwrap();
    let host = &parsed.hosts[0];
    let mut proxy = Proxy::start(host.port_or(5672)).await;
    let through_proxy = |options: &str| {
        format!(
            "rabbit://{}:{}@127.0.0.1:{}/?{options}",
            host.username.as_deref().unwrap_or("guest"),
            host.password.as_deref().unwrap_or("guest"),
            proxy.port
        )
    };
    let topic = unique("opt_hb");
    let timeout = 8u64;
    let rate = 8u64;
    let listener_url = through_proxy(
        "heartbeat_timeout_threshold=2&rabbit_retry_interval=0.2&rabbit_retry_backoff=0.2\
         &rabbit_interval_max=1",
    );
    let notifications = get_notification_transport(&listener_url).await.unwrap();
    let (listener, mut rx) = forwarding_listener(&notifications, &topic).await;
    let direct = get_notification_transport(&url).await.unwrap();
    let notifier = Notifier::new(direct.clone(), "compute.h1").topics([topic.clone()]);
    tokio::time::sleep(Duration::from_secs(10)).await;
    notifier
        .info(&ctx(), "after.idling", &json!({}))
        .await
        .unwrap();
    let got = tokio::time::timeout(WAIT, rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.event_type, "after.idling");
    let beats = proxy.heartbeats.load(Ordering::SeqCst);
    println!("idle 10 s with a 2 s timeout: {beats} heartbeats sent, 1 connection");
    assert!(beats >= 5, "{beats} heartbeats in 10 s");
    assert_eq!(proxy.accepted.load(Ordering::SeqCst), 1, "no reconnection");
    listener.shutdown().await;
    notifications.close().await;
    tokio::time::timeout(WAIT, proxy.client_closed.recv())
        .await
        .expect("the first listener's connection closes");

    // A broker that falls silent, right after a delivery whose handler acknowledges it 2 s
    // later: lapin's own checks follow its writes, here 2 s out of step with the last read,
    // and would notice only at 2 × 8 + 2 s.
    let listener_url = through_proxy(&format!(
        "heartbeat_timeout_threshold={timeout}&heartbeat_rate={rate}&rabbit_retry_interval=0.2\
         &rabbit_retry_backoff=0.2&rabbit_interval_max=1"
    ));
    let notifications = get_notification_transport(&listener_url).await.unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let listener = NotificationListener::new(notifications.clone())
        .target(Target::topic(&topic))
        .endpoint(NotificationEndpoint::new().on_all(move |n: Notification| {
            let tx = tx.clone();
            async move {
                let slow = n.event_type == "slow";
                tx.send(n.event_type).unwrap();
                if slow {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
                NotificationResult::Handled
            }
        }))
        .start()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    notifier.info(&ctx(), "slow", &json!({})).await.unwrap();
    let got = tokio::time::timeout(WAIT, rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, "slow");
    proxy.frozen.store(true, Ordering::SeqCst);
    let closed = tokio::time::timeout(Duration::from_secs(4 * timeout), proxy.client_closed.recv())
        .await
        .expect("the silent connection is given up")
        .unwrap();
    let silence = closed - *proxy.last_forwarded.lock().unwrap();
    proxy.frozen.store(false, Ordering::SeqCst);
    let bound = Duration::from_secs(2 * timeout) + Duration::from_secs(timeout) / (2 * rate as u32);
    println!(
        "broker silent: connection given up after {silence:?} of silence (timeout {timeout} s, \
         rate {rate}: bound {bound:?} + 0.5 s)"
    );
    assert!(silence >= Duration::from_secs(2 * timeout), "{silence:?}");
    assert!(silence <= bound + Duration::from_millis(500), "{silence:?}");
    notifier
        .info(&ctx(), "after.reconnecting", &json!({}))
        .await
        .unwrap();
    // The slow one, whose acknowledgement the frozen broker never got, comes again first.
    let deadline = Instant::now() + WAIT;
    loop {
        let got = tokio::time::timeout_at(deadline.into(), rx.recv())
            .await
            .unwrap()
            .unwrap();
        if got == "after.reconnecting" {
            break;
        }
        assert_eq!(got, "slow");
    }
    listener.shutdown().await;
    notifications.close().await;
    direct.close().await;
    delete_queues(&url, &[format!("{topic}.info")]).await;
}

/// A misspelt, malformed or inconsistent option refuses the transport with a typed error that
/// names it, before anything is declared; a codec or TLS version this driver does not have is
/// `Unsupported`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_and_invalid_option_values_are_typed_errors() {
    let Some(url) = rabbit_url("unknown_and_invalid_option_values_are_typed_errors") else {
        return;
    };
    let refused = |options: &'static str| {
        let url = with_options(&url, options);
        async move {
            match get_rpc_transport(&url).await {
                Ok(_) => panic!("{options}: accepted"),
                Err(error) => error,
            }
        }
    };
    match refused("rabbit_stream_fanot=true").await {
        MessagingError::UnknownOption { option, .. } => assert_eq!(option, "rabbit_stream_fanot"),
        other => panic!("unexpected {other:?}"),
    }
    for (options, named) in [
        ("rabbit_login_method=KERBEROS", "rabbit_login_method"),
        ("heartbeat_rate=0", "heartbeat_rate"),
        (
            "rabbit_quorum_max_memory_length=-1",
            "rabbit_quorum_max_memory_length",
        ),
        ("kombu_compression=snappy", "kombu_compression"),
        ("use_queue_manager=perhaps", "use_queue_manager"),
        // A stream consumer needs a prefetch count.
        ("rabbit_stream_fanout=true", "rabbit_qos_prefetch_count"),
        (
            "rabbit_quorum_queue=true&rabbit_ha_queues=true",
            "rabbit_ha_queues",
        ),
    ] {
        match refused(options).await {
            MessagingError::InvalidOption { option, .. } => assert_eq!(option, named, "{options}"),
            other => panic!("{options}: unexpected {other:?}"),
        }
    }
    for options in ["kombu_compression=xz", "ssl_version=TLSv1_1"] {
        let error = refused(options).await;
        assert!(
            matches!(error, MessagingError::Unsupported { .. }),
            "{options}: {error:?}"
        );
    }
}
