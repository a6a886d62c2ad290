//! `api-call`: a call or cast checked against the AsyncAPI document of a typed service (as
//! `messaging::typed::AsyncApi` writes it) before anything is sent. The document gives the
//! method's namespace and `since` version; the arguments must name only its keyword
//! arguments, include the required ones, and have the JSON type each one's schema declares
//! (nested values are left to the server, which checks them again).

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use messaging::{RpcClient, Target};
use serde_json::{Map, Value};

use crate::rpc::kwargs;
use crate::{parse_context, parse_seconds, print_json, Endpoints, Failure, Outcome};

/// `omsg api-call`.
#[derive(Debug, Args)]
pub struct ApiCallArgs {
    /// The service's AsyncAPI document (JSON), e.g. from `cargo run --example quickstart --
    /// --asyncapi`.
    #[arg(long, value_name = "FILE")]
    api: PathBuf,
    /// The topic to address: a channel address of the document.
    topic: String,
    /// The method to call.
    method: String,
    /// Keyword arguments as a JSON object.
    #[arg(default_value = "{}")]
    args: String,
    /// Address one server of the topic.
    #[arg(long)]
    server: Option<String>,
    /// Cast instead of call (print nothing).
    #[arg(long)]
    cast: bool,
    /// Cast to every server of the topic.
    #[arg(long)]
    fanout: bool,
    /// Seconds to wait for the reply.
    #[arg(long, default_value = "60", value_parser = parse_seconds)]
    timeout: Duration,
    /// The request context as a JSON object.
    #[arg(long)]
    context: Option<String>,
}

/// Check the call against the document, then send it.
pub async fn api_call(endpoints: &Endpoints, args: ApiCallArgs) -> Outcome {
    let document = read_document(&args.api)?;
    let operation = find_operation(&document, &args.topic, &args.method)?;
    let kwargs = kwargs(&args.args)?;
    check_args(&document, operation, &args.method, &kwargs)?;
    let ctx = parse_context(args.context.as_deref())?;
    let mut client =
        RpcClient::new(endpoints.rpc().await?, Target::topic(&args.topic)).timeout(args.timeout);
    if let Some(namespace) = operation["x-oslo-namespace"].as_str() {
        client = client.namespace(namespace);
    }
    if let Some(since) = operation["x-oslo-since"].as_str() {
        client = client.version(since);
    }
    if let Some(server) = &args.server {
        client = client.server(server);
    }
    if args.cast || args.fanout {
        client = client.fanout(args.fanout);
        client.cast(&ctx, &args.method, &kwargs).await?;
    } else {
        let result: Value = client.call(&ctx, &args.method, &kwargs).await?;
        print_json(&result);
    }
    Ok(())
}

fn read_document(path: &PathBuf) -> Result<Value, Failure> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::Usage(format!("cannot read {}: {e}", path.display())))?;
    let document: Value = serde_json::from_str(&text)
        .map_err(|e| Failure::Usage(format!("{} is not JSON: {e}", path.display())))?;
    if !document["asyncapi"]
        .as_str()
        .is_some_and(|v| v.starts_with("3."))
    {
        return Err(Failure::Usage(format!(
            "{} is not an AsyncAPI 3 document",
            path.display()
        )));
    }
    Ok(document)
}

/// The `receive` operation for `method` on the channel whose address is `topic`.
fn find_operation<'a>(
    document: &'a Value,
    topic: &str,
    method: &str,
) -> Result<&'a Value, Failure> {
    let operations = document["operations"].as_object().into_iter().flatten();
    let on_topic: Vec<&Value> = operations
        .map(|(_, operation)| operation)
        .filter(|operation| operation["x-oslo-method"].is_string())
        .filter(|operation| resolve(document, &operation["channel"])["address"] == topic)
        .collect();
    if on_topic.is_empty() {
        return Err(Failure::Usage(format!(
            "the document describes no service on topic `{topic}`"
        )));
    }
    on_topic
        .iter()
        .find(|operation| operation["x-oslo-method"] == method)
        .copied()
        .ok_or_else(|| {
            let known: Vec<&str> = on_topic
                .iter()
                .filter_map(|o| o["x-oslo-method"].as_str())
                .collect();
            Failure::Usage(format!(
                "no method `{method}` on topic `{topic}`; its methods: {}",
                known.join(", ")
            ))
        })
}

/// Unknown and missing keyword arguments, and arguments of the wrong JSON type, are refused.
fn check_args(
    document: &Value,
    operation: &Value,
    method: &str,
    kwargs: &Map<String, Value>,
) -> Result<(), Failure> {
    let request = resolve(document, &operation["messages"][0]);
    let schema = resolve(document, &request["payload"]["properties"]["args"]);
    let properties = schema["properties"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    if let Some(unknown) = kwargs.keys().find(|name| !properties.contains_key(*name)) {
        let known: Vec<&str> = properties.keys().map(String::as_str).collect();
        return Err(Failure::Usage(format!(
            "{method}() has no keyword argument `{unknown}`; its arguments: {}",
            known.join(", ")
        )));
    }
    let required = schema["required"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str);
    let missing: Vec<&str> = required
        .filter(|name| !kwargs.contains_key(*name))
        .collect();
    if !missing.is_empty() {
        return Err(Failure::Usage(format!(
            "{method}() needs the keyword arguments: {}",
            missing.join(", ")
        )));
    }
    for (name, value) in kwargs {
        let expected = resolve(document, &properties[name])["type"].clone();
        if !has_type(value, &expected) {
            return Err(Failure::Usage(format!(
                "{method}() argument `{name}` must be of type {expected}, not {value}"
            )));
        }
    }
    Ok(())
}

/// True if `value` is of the JSON schema `type` (a name or a list of names); no `type`
/// accepts anything.
fn has_type(value: &Value, expected: &Value) -> bool {
    let matches = |name: &str| match name {
        "null" => value.is_null(),
        "boolean" => value.is_boolean(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "string" => value.is_string(),
        "array" => value.is_array(),
        "object" => value.is_object(),
        _ => true,
    };
    match expected {
        Value::String(name) => matches(name),
        Value::Array(names) => names.iter().filter_map(Value::as_str).any(matches),
        _ => true,
    }
}

/// Follow a local `$ref` (`#/…`), or return the value itself.
fn resolve<'a>(document: &'a Value, value: &'a Value) -> &'a Value {
    match value["$ref"].as_str().and_then(|r| r.strip_prefix('#')) {
        Some(pointer) => document
            .pointer(pointer)
            .map_or(&Value::Null, |target| resolve(document, target)),
        None => value,
    }
}
