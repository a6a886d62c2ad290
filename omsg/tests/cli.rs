//! `omsg` as scripts use it: the real binary, its JSON output and its exit codes, on
//! `memory://` (in-process bench) and on every broker whose URL variable is set.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn omsg(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_omsg"))
        .args(args)
        .env_remove("OSLO_RPC_URL")
        .env_remove("OSLO_NOTIFY_URL")
        .output()
        .expect("omsg runs")
}

fn json_lines(output: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|e| panic!("`{line}` is not JSON: {e}"))
        })
        .collect()
}

/// Kills the child process when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Start `omsg` in the background and wait until it prints a line containing `ready` on
/// stderr or stdout (serve prints to stderr; bench servers print `{"event":"ready"}`).
fn spawn(args: &[&str], ready_on_stderr: bool) -> Running {
    let mut child = Command::new(env!("CARGO_BIN_EXE_omsg"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("omsg starts");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
    let mut line = String::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        line.clear();
        let read = if ready_on_stderr {
            stderr.read_line(&mut line)
        } else {
            stdout.read_line(&mut line)
        };
        assert!(
            read.unwrap_or(0) > 0,
            "omsg {args:?} exited before it was ready"
        );
        if line.contains("serving") || line.contains("ready") || line.contains("listening") {
            break;
        }
        assert!(Instant::now() < deadline, "omsg {args:?} never got ready");
    }
    std::thread::spawn(move || {
        // Keep draining the pipes so that the child never blocks on a full one.
        let mut sink = String::new();
        while stderr.read_line(&mut sink).unwrap_or(0) > 0
            || stdout.read_line(&mut sink).unwrap_or(0) > 0
        {
            sink.clear();
        }
    });
    Running(child)
}

#[test]
fn help_works_for_every_command() {
    for command in ["call", "cast", "ping", "serve", "notify", "listen", "bench"] {
        let output = omsg(&[command, "--help"]);
        assert!(output.status.success(), "{command} --help");
        assert!(
            String::from_utf8_lossy(&output.stdout).contains("Usage: omsg"),
            "{command} --help"
        );
    }
    assert!(omsg(&["--help"]).status.success());
}

#[test]
fn bad_input_exits_64_with_a_message() {
    for args in [
        &["call", "t", "m"][..],
        &["--url", "memory://", "call", "t", "m", "{not json"],
        &["--url", "memory://", "call", "t", "m", "[1]"],
        &["--url", "nosuch://h", "call", "t", "m"],
        &["--url", "memory://?bogus=1", "cast", "t", "m"],
        &[
            "--url",
            "memory://",
            "notify",
            "t",
            "e",
            "{}",
            "--priority",
            "loud",
        ],
        &["--url", "memory://", "frobnicate"],
    ] {
        let output = omsg(args);
        assert_eq!(
            output.status.code(),
            Some(64),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(!output.stderr.is_empty(), "{args:?} explains itself");
    }
}

#[test]
fn timeout_and_no_server_exit_2() {
    for (flag, says) in [
        (
            "--timeout",
            "no server took the call `echo` on topic `nobody`",
        ),
        ("--fail-fast", "no server for topic `nobody`"),
    ] {
        let started = Instant::now();
        let output = omsg(&["--url", "memory://", "call", "nobody", "echo", flag, "0.2"]);
        assert_eq!(output.status.code(), Some(2), "{flag}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(says), "{flag}: {stderr}");
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{flag}: waited"
        );
    }
}

#[test]
fn an_idle_listener_says_no_notification_came() {
    let output = omsg(&[
        "--url",
        "memory://",
        "listen",
        "quiet_topic",
        "--idle-timeout",
        "0.3",
    ]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("listening on topic quiet_topic")
            && stderr.contains("no notification on topic `quiet_topic` for 0.3 s"),
        "{stderr}"
    );
    assert!(!stderr.contains("reply"), "no RPC wording: {stderr}");
}

#[test]
fn config_warnings_show_by_default_and_quiet_hides_them() {
    let path = std::env::temp_dir().join(format!("omsg-test-{}.ini", std::process::id()));
    std::fs::write(
        &path,
        "[DEFAULT]\ntransport_url = memory://\ncontrol_exchage = nova\n",
    )
    .unwrap();
    let config = path.to_str().unwrap();
    let call = ["call", "nobody", "echo", "--timeout", "0.1"];
    let default = omsg(&[&["--config", config][..], &call].concat());
    let quiet = omsg(&[&["-q", "--config", config][..], &call].concat());
    std::fs::remove_file(&path).ok();
    let warned = String::from_utf8_lossy(&default.stderr);
    assert!(
        warned.contains("WARN") && warned.contains("did you mean `control_exchange`?"),
        "{warned}"
    );
    let hushed = String::from_utf8_lossy(&quiet.stderr);
    assert!(!hushed.contains("did you mean"), "{hushed}");
    assert_eq!(quiet.status.code(), Some(2), "{hushed}");
}

#[test]
fn bench_reports_json_for_every_mode_on_memory() {
    for mode in ["rpc-call", "rpc-cast", "rpc-fanout", "notify"] {
        let output = omsg(&[
            "--url",
            "memory://",
            "bench",
            mode,
            "--count",
            "200",
            "--clients",
            "4",
            "--servers",
            "2",
            "--json",
        ]);
        assert!(
            output.status.success(),
            "{mode}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let report = &json_lines(&output)[0];
        let expected = if mode == "rpc-fanout" { 400 } else { 200 };
        assert_eq!(report["count"], expected, "{mode}: {report}");
        for key in [
            "mode",
            "seconds",
            "msgs_per_s",
            "p50_ms",
            "p90_ms",
            "p99_ms",
            "max_ms",
            "cpu_ms_per_msg",
        ] {
            assert!(
                !report[key].is_null(),
                "{mode}: {key} missing from {report}"
            );
        }
    }
}

/// Broker URLs to run the broker tests against, with whether they carry RPC.
fn brokers() -> Vec<(String, bool)> {
    let mut urls = Vec::new();
    for (var, rpc) in [
        ("RABBIT_URL", true),
        ("AMQP1_URL", true),
        ("KAFKA_URL", false),
    ] {
        match std::env::var(var) {
            Ok(url) if !url.is_empty() => urls.push((url, rpc)),
            _ => println!("skipped: omsg against {var}: not set"),
        }
    }
    urls
}

#[test]
fn options_lists_each_drivers_declared_options_with_defaults() {
    for (scheme, name, kind, default) in [
        (
            "rabbit",
            "rabbit_qos_prefetch_count",
            "integer",
            Value::from("0"),
        ),
        // Another name of an option: no default of its own.
        ("rabbit", "ssl_verify_hostname", "bool", Value::Null),
        (
            "amqp",
            "addressing_mode",
            "one of dynamic, routable, legacy, broker",
            Value::from("dynamic"),
        ),
        (
            "kafka",
            "kafka_retry_interval",
            "number",
            Value::from("0.25"),
        ),
    ] {
        if !has_driver(&format!("{scheme}://")) {
            continue;
        }
        let options = json_lines(&omsg(&["options", scheme]));
        let option = options
            .iter()
            .find(|o| o["name"] == name)
            .unwrap_or_else(|| panic!("{scheme}: {name} is not listed"));
        assert_eq!(
            (&option["kind"], &option["default"]),
            (&Value::from(kind), &default),
            "{option}"
        );
        assert!(
            option["help"].as_str().is_some_and(|h| !h.is_empty()),
            "{option}"
        );
    }
    let unknown = omsg(&["options", "carrier-pigeon"]);
    assert_eq!(unknown.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("carrier-pigeon"));
}

/// True if this build of omsg has a driver for `url`; says so when it has not.
fn has_driver(url: &str) -> bool {
    let schemes = json_lines(&omsg(&["schemes"]));
    let scheme = url.split("://").next().unwrap_or_default();
    let known = schemes[0]
        .as_array()
        .is_some_and(|s| s.iter().any(|s| s == scheme));
    if !known {
        println!("skipped: omsg against {scheme}://: no such driver in this build");
    }
    known
}

#[test]
fn rpc_commands_against_brokers() {
    for (url, rpc) in brokers() {
        if !rpc || !has_driver(&url) {
            continue;
        }
        let topic = format!("test_omsg_{}", std::process::id());
        let _server = spawn(&["--url", &url, "serve", &topic, "--server", "s1"], true);
        let call = omsg(&[
            "--url",
            &url,
            "call",
            &topic,
            "echo",
            r#"{"value": {"k": "ü"}}"#,
        ]);
        assert!(
            call.status.success(),
            "{url}: {}",
            String::from_utf8_lossy(&call.stderr)
        );
        assert_eq!(json_lines(&call)[0], serde_json::json!({"k": "ü"}), "{url}");

        let fail = omsg(&["--url", &url, "call", &topic, "fail"]);
        assert_eq!(fail.status.code(), Some(1), "{url}");
        assert!(
            String::from_utf8_lossy(&fail.stderr).contains("ValueError"),
            "{url}"
        );

        let missing = omsg(&[
            "--url",
            &url,
            "call",
            &topic,
            "echo",
            "--server",
            "ghost",
            "--timeout",
            "1",
        ]);
        assert_eq!(missing.status.code(), Some(2), "{url}");
        let said = String::from_utf8_lossy(&missing.stderr);
        assert!(
            said.contains(&format!("the call `echo` on topic `{topic}`"))
                && said.contains("server `ghost`"),
            "{url}: {said}"
        );

        let ping = omsg(&["--url", &url, "ping", &topic, "--count", "2"]);
        assert!(ping.status.success(), "{url}");
        assert!(
            json_lines(&ping)
                .iter()
                .all(|p| p["answer"] == "pong" && p["server"] == "s1"),
            "{url}"
        );

        let cast = omsg(&[
            "--url",
            &url,
            "cast",
            &topic,
            "echo",
            r#"{"value": 1}"#,
            "--fanout",
        ]);
        assert!(cast.status.success(), "{url}");
    }
}

#[test]
fn notify_and_listen_against_brokers() {
    for (url, _) in brokers() {
        if !has_driver(&url) {
            continue;
        }
        let topic = format!("test_omsgn_{}", std::process::id());
        let kafka = url.starts_with("kafka");
        let mut listen_args = vec![
            "--url",
            url.as_str(),
            "listen",
            topic.as_str(),
            "--count",
            "2",
            "--idle-timeout",
            "60",
        ];
        if kafka {
            // Make the topics exist before the listener subscribes.
            omsg(&["--url", &url, "notify", &topic, "warm.up", "{}"]);
            omsg(&[
                "--url",
                &url,
                "notify",
                &topic,
                "warm.up",
                "{}",
                "--priority",
                "error",
            ]);
        }
        if !url.starts_with("amqp") {
            // AMQP 1.0 has no listener pools (the driver refuses them as Unsupported).
            listen_args.extend(["--pool", "test_omsg_pool"]);
        }
        let mut listener = Command::new(env!("CARGO_BIN_EXE_omsg"))
            .args(&listen_args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("listen starts");
        // Scripts wait for this line: by then the listener consumes (Kafka: has partitions).
        let mut stderr = BufReader::new(listener.stderr.take().expect("stderr"));
        let mut line = String::new();
        while !line.contains("listening on") {
            line.clear();
            let read = stderr.read_line(&mut line).unwrap_or(0);
            assert!(read > 0, "{url}: omsg listen exited before listening");
        }
        std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::stderr()));
        let sent = omsg(&["--url", &url, "notify", &topic, "compute.x", r#"{"n": 1}"#]);
        assert!(
            sent.status.success(),
            "{url}: {}",
            String::from_utf8_lossy(&sent.stderr)
        );
        omsg(&[
            "--url",
            &url,
            "notify",
            &topic,
            "compute.y",
            r#"{"n": 2}"#,
            "--priority",
            "error",
            "--context",
            r#"{"user_id": "u"}"#,
        ]);
        let output = {
            let deadline = Instant::now() + Duration::from_secs(90);
            while listener.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = listener.kill();
            listener.wait_with_output().expect("listen output")
        };
        let lines = json_lines(&output);
        let events: Vec<&str> = lines
            .iter()
            .filter_map(|l| l["event_type"].as_str())
            .collect();
        assert!(
            events.contains(&"compute.x") && events.contains(&"compute.y"),
            "{url}: {lines:?}"
        );
        let y = lines
            .iter()
            .find(|l| l["event_type"] == "compute.y")
            .expect("compute.y");
        assert_eq!(
            (y["priority"].as_str(), y["context"]["user_id"].as_str()),
            (Some("error"), Some("u")),
            "{url}"
        );
    }
}

/// `listen` and `serve` stop cleanly (exit 0) on SIGINT and on SIGTERM, also as a script's
/// background job, which the shell starts with SIGINT ignored.
#[cfg(unix)]
#[test]
fn long_running_commands_stop_cleanly_on_sigint_and_sigterm() {
    for (command, ready) in [("listen", "listening"), ("serve", "serving")] {
        for signal in ["INT", "TERM"] {
            let script = format!(
                "trap '' INT; exec {} --url memory:// {command} sig_topic",
                env!("CARGO_BIN_EXE_omsg")
            );
            let mut child = Command::new("sh")
                .args(["-c", &script])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("sh starts");
            let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
            let mut line = String::new();
            while !line.contains(ready) {
                line.clear();
                assert!(
                    stderr.read_line(&mut line).unwrap_or(0) > 0,
                    "omsg {command} exited before it was ready"
                );
            }
            let child = Running(child);
            let killed = Command::new("kill")
                .args(["-s", signal, &child.0.id().to_string()])
                .status()
                .expect("kill runs");
            assert!(killed.success());
            let deadline = Instant::now() + Duration::from_secs(10);
            let mut child = child;
            let status = loop {
                if let Some(status) = child.0.try_wait().expect("wait") {
                    break status;
                }
                assert!(
                    Instant::now() < deadline,
                    "omsg {command} ignored SIG{signal}"
                );
                std::thread::sleep(Duration::from_millis(50));
            };
            assert!(status.success(), "omsg {command} on SIG{signal}: {status}");
        }
    }
}

/// A free local port for `--metrics-addr`.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("bound").port()
}

/// `GET path` on the metrics endpoint at `port`: the status line and the body.
fn get(port: u16, path: &str) -> (String, String) {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("metrics endpoint");
    write!(stream, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    (
        head.lines().next().unwrap_or_default().to_owned(),
        body.to_owned(),
    )
}

/// The value of `series` (its name and labels as Prometheus text prints them).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Scrape until `series` reaches `want` (what was sent may still be on its way), then return
/// the whole scrape.
fn scrape_until(port: u16, series: &str, want: f64) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, text) = get(port, "/metrics");
        assert_eq!(status, "HTTP/1.1 200 OK");
        if sample(&text, series) >= Some(want) || Instant::now() > deadline {
            return text;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The RabbitMQ URL, when it is set and this build has the driver.
fn rabbit_url() -> Option<String> {
    let url = brokers()
        .into_iter()
        .map(|(url, _)| url)
        .find(|url| url.starts_with("rabbit"))?;
    has_driver(&url).then_some(url)
}

/// `--metrics-addr` on `serve` and `listen` against RabbitMQ: the counters match the calls,
/// casts and notifications sent by other omsg processes.
#[test]
fn metrics_addr_counts_real_traffic() {
    let bad = omsg(&[
        "--url",
        "memory://",
        "--metrics-addr",
        "nowhere",
        "call",
        "t",
        "m",
    ]);
    assert_eq!(
        bad.status.code(),
        Some(64),
        "a bad --metrics-addr is bad usage"
    );
    let Some(url) = rabbit_url() else {
        return;
    };
    let topic = format!("test_omsg_metrics_{}", std::process::id());
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let _server = spawn(
        &[
            "--url",
            &url,
            "--metrics-addr",
            &addr,
            "serve",
            &topic,
            "--server",
            "m1",
        ],
        true,
    );
    for command in [
        "call", "call", "call", "call", "call", "cast", "cast", "cast",
    ] {
        let sent = omsg(&["--url", &url, command, &topic, "echo", r#"{"value": 1}"#]);
        assert!(
            sent.status.success(),
            "{}",
            String::from_utf8_lossy(&sent.stderr)
        );
    }
    let received = |kind: &str| {
        format!(
            r#"messaging_rpc_received_total{{transport="rabbit",topic="{topic}",method="echo",kind="{kind}"}}"#
        )
    };
    let text = scrape_until(port, &received("cast"), 3.0);
    assert_eq!(sample(&text, &received("cast")), Some(3.0), "{text}");
    assert_eq!(sample(&text, &received("call")), Some(5.0), "{text}");
    let dispatched = format!(
        r#"messaging_rpc_dispatch_duration_seconds_count{{transport="rabbit",topic="{topic}",method="echo"}}"#
    );
    assert_eq!(sample(&text, &dispatched), Some(8.0), "{text}");
    assert!(text.contains("# TYPE messaging_rpc_dispatch_duration_seconds histogram"));
    assert!(get(port, "/other").0.contains("404"));

    let events = format!("test_omsg_metrics_events_{}", std::process::id());
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let _listener = spawn(
        &["--url", &url, "--metrics-addr", &addr, "listen", &events],
        true,
    );
    for n in 0..4 {
        let sent = omsg(&[
            "--url",
            &url,
            "notify",
            &events,
            "test.metrics",
            &n.to_string(),
        ]);
        assert!(
            sent.status.success(),
            "{}",
            String::from_utf8_lossy(&sent.stderr)
        );
    }
    let series = |name: &str| {
        format!(r#"{name}{{transport="rabbit",topic="{events}",event_type="test.metrics"}}"#)
    };
    let text = scrape_until(port, &series("messaging_notifications_acked_total"), 4.0);
    assert_eq!(
        sample(&text, &series("messaging_notifications_received_total")),
        Some(4.0)
    );
    assert_eq!(
        sample(&text, &series("messaging_notifications_acked_total")),
        Some(4.0)
    );
    let unacked =
        format!(r#"messaging_notifications_unacked{{transport="rabbit",topic="{events}"}}"#);
    assert_eq!(sample(&text, &unacked), Some(0.0), "{text}");
}

/// `bench --metrics-addr` serves the client's and the server's counters while it runs.
#[test]
fn bench_serves_metrics_while_it_runs() {
    let Some(url) = rabbit_url() else {
        return;
    };
    let topic = format!("test_omsg_bench_metrics_{}", std::process::id());
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let args = [
        "--url",
        &url,
        "--metrics-addr",
        &addr,
        "bench",
        "rpc-call",
        "--count",
        "20000",
    ];
    let mut bench = Running(
        Command::new(env!("CARGO_BIN_EXE_omsg"))
            .args(args)
            .args(["--topic", &topic, "--json"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("omsg starts"),
    );
    let series = |name: &str, kind: &str| {
        format!(r#"{name}{{transport="rabbit",topic="{topic}",method="echo",kind="{kind}"}}"#)
    };
    let sent = series("messaging_rpc_sent_total", "call");
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "bench never served its metrics");
        assert!(
            bench.0.try_wait().unwrap().is_none(),
            "bench ended before a scrape"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let text = scrape_until(port, &sent, 100.0);
    let received = sample(&text, &series("messaging_rpc_received_total", "call")).unwrap();
    let sent = sample(&text, &sent).unwrap();
    // A request is received after it was sent; at most the calls in flight are in between.
    assert!(
        received <= sent + 1.0 && received >= 100.0,
        "sent {sent}, received {received}"
    );
    let _ = bench.0.kill();
}
