//! `omsg api-call`: a call checked against a typed service's AsyncAPI document before it is
//! sent, with the namespace and version the document gives.

use std::process::{Command, Output};
use std::time::Duration;

use messaging::typed::{schema_of, AsyncApi, MethodInfo, ParamInfo, ServiceInfo};
use messaging::{Context, Endpoint, RemoteError, RpcServer, Target};
use serde_json::{Map, Value};

/// What `#[service(namespace = "demo", version = "1.3")]` would describe for
/// `#[since = "1.2"] async fn add(&self, ctx: Context, a: i64, b: i64, label: Option<String>) -> i64`.
static DEMO: ServiceInfo = ServiceInfo {
    name: "Demo",
    doc: "",
    namespace: Some("demo"),
    version: "1.3",
    methods: &[MethodInfo {
        name: "add",
        qualname: "Demo.add",
        doc: "Add two numbers.",
        since: "1.2",
        params: &[
            ParamInfo {
                name: "a",
                required: true,
                schema: schema_of::<i64>,
            },
            ParamInfo {
                name: "b",
                required: true,
                schema: schema_of::<i64>,
            },
            ParamInfo {
                name: "label",
                required: false,
                schema: schema_of::<Option<String>>,
            },
        ],
        result: schema_of::<i64>,
        errors: &[],
    }],
};

/// The document, in a file that lives as long as the returned guard.
fn document(topic: &str) -> tempfile::TempPath {
    let document = AsyncApi::new("demo", "1.0").service(&DEMO, topic).to_json();
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), document.to_string()).unwrap();
    file.into_temp_path()
}

fn api_call(url: &str, api: &tempfile::TempPath, rest: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_omsg"))
        .args(["--url", url, "api-call", "--api", api.to_str().unwrap()])
        .args(rest)
        .output()
        .expect("omsg runs")
}

fn refused(output: &Output) -> String {
    assert_eq!(output.status.code(), Some(64), "{output:?}");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn calls_that_do_not_fit_the_document_are_refused_before_sending() {
    let api = document("demo");
    let memory = "memory://";
    let stderr = refused(&api_call(
        memory,
        &api,
        &["demo", "ad", r#"{"a": 1, "b": 2}"#],
    ));
    assert!(
        stderr.contains("no method `ad` on topic `demo`; its methods: add"),
        "{stderr}"
    );
    let stderr = refused(&api_call(
        memory,
        &api,
        &["other", "add", r#"{"a": 1, "b": 2}"#],
    ));
    assert!(stderr.contains("no service on topic `other`"), "{stderr}");
    let stderr = refused(&api_call(
        memory,
        &api,
        &["demo", "add", r#"{"a": 1, "b": 2, "zone": "x"}"#],
    ));
    assert!(
        stderr.contains("add() has no keyword argument `zone`; its arguments: a, b, label"),
        "{stderr}"
    );
    let stderr = refused(&api_call(memory, &api, &["demo", "add", r#"{"a": 1}"#]));
    assert!(
        stderr.contains("add() needs the keyword arguments: b"),
        "{stderr}"
    );
    let stderr = refused(&api_call(
        memory,
        &api,
        &["demo", "add", r#"{"a": 1, "b": "two"}"#],
    ));
    assert!(
        stderr.contains("argument `b` must be of type \"integer\""),
        "{stderr}"
    );
    let stderr = refused(&api_call(
        memory,
        &api,
        &["demo", "add", r#"{"a": 1, "b": 2, "label": 3}"#],
    ));
    assert!(stderr.contains("argument `label`"), "{stderr}");
    // A call that fits is sent: nobody serves it here, so it times out.
    let sent = api_call(
        memory,
        &api,
        &[
            "demo",
            "add",
            r#"{"a": 1, "b": 2, "label": null}"#,
            "--timeout",
            "0.3",
        ],
    );
    assert_eq!(sent.status.code(), Some(2), "{sent:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checked_call_reaches_the_server_with_the_documented_namespace_and_version() {
    let url = match std::env::var("RABBIT_URL") {
        Ok(url) if !url.is_empty() && messaging::available_schemes().contains(&"rabbit".into()) => {
            url
        }
        _ => {
            println!("skipped: api-call against RabbitMQ: RABBIT_URL unset or no rabbit driver");
            return;
        }
    };
    let topic = format!("test_omsg_api_{}", std::process::id());
    let transport = messaging::get_rpc_transport(&url).await.unwrap();
    // Version 1.3 in namespace "demo": a request without the namespace, or above 1.3, fails.
    let endpoint = Endpoint::new().namespace("demo").version("1.3").method(
        "add",
        |_ctx: Context, args: Map<String, Value>| async move {
            Ok::<_, RemoteError>(args["a"].as_i64().unwrap_or(0) + args["b"].as_i64().unwrap_or(0))
        },
    );
    let server = RpcServer::new(transport.clone(), Target::topic(&topic).server("s1"))
        .endpoint(endpoint)
        .start()
        .await
        .unwrap();
    let api = document(&topic);
    let call = tokio::task::spawn_blocking(move || {
        api_call(
            &url,
            &api,
            &[&topic, "add", r#"{"a": 40, "b": 2}"#, "--timeout", "20"],
        )
    })
    .await
    .unwrap();
    assert!(
        call.status.success(),
        "{}",
        String::from_utf8_lossy(&call.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&call.stdout).trim(), "42");
    server.shutdown().await;
    tokio::time::timeout(Duration::from_secs(10), transport.close())
        .await
        .ok();
}
