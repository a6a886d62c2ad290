//! `call`, `cast`, `ping` and `serve`.

use std::time::{Duration, Instant};

use clap::Args;
use messaging::{
    Context, Endpoint, NoArgs, RemoteError, RpcClient, RpcServer, Target, PING_IDENTIFY_ARG,
    PING_METHOD,
};
use serde_json::{json, Map, Value};

use crate::{
    parse_context, parse_json, parse_seconds, print_json, shutdown_signal, Endpoints, Failure,
    Outcome,
};

/// Where a request goes.
#[derive(Debug, Args)]
pub struct Destination {
    /// The topic (service) to address.
    topic: String,
    /// Address one server of the topic.
    #[arg(long)]
    server: Option<String>,
    /// Endpoint namespace.
    #[arg(long)]
    namespace: Option<String>,
    /// Requested API version (X.Y).
    #[arg(long = "api-version")]
    api_version: Option<String>,
    /// Fail fast: give up (exit 2, no server) once the transport has seen for this many
    /// seconds that nobody consumes the address (routers and RabbitMQ can tell).
    #[arg(long, value_parser = parse_seconds)]
    fail_fast: Option<Duration>,
}

/// `omsg call`.
#[derive(Debug, Args)]
pub struct CallArgs {
    #[command(flatten)]
    to: Destination,
    /// The method to call.
    method: String,
    /// Keyword arguments as a JSON object.
    #[arg(default_value = "{}")]
    args: String,
    /// Seconds to wait for the reply.
    #[arg(long, default_value = "60", value_parser = parse_seconds)]
    timeout: Duration,
    /// Call-monitor timeout in seconds (the server heartbeats every half of it).
    #[arg(long, value_parser = parse_seconds)]
    call_monitor_timeout: Option<Duration>,
    /// The request context as a JSON object.
    #[arg(long)]
    context: Option<String>,
}

/// `omsg cast`.
#[derive(Debug, Args)]
pub struct CastArgs {
    #[command(flatten)]
    to: Destination,
    /// The method to cast.
    method: String,
    /// Keyword arguments as a JSON object.
    #[arg(default_value = "{}")]
    args: String,
    /// Cast to every server of the topic.
    #[arg(long)]
    fanout: bool,
    /// Seconds the cast may take to be sent [default: the driver's, e.g. AMQP 1.0's
    /// default_send_timeout].
    #[arg(long, value_parser = parse_seconds)]
    send_timeout: Option<Duration>,
    /// The request context as a JSON object.
    #[arg(long)]
    context: Option<String>,
}

/// `omsg ping`.
#[derive(Debug, Args)]
pub struct PingArgs {
    /// The topic whose servers to ping.
    topic: String,
    /// Ping one server of the topic.
    #[arg(long)]
    server: Option<String>,
    /// How many pings.
    #[arg(long, default_value_t = 3)]
    count: u32,
    /// Seconds to wait for each answer.
    #[arg(long, default_value = "5", value_parser = parse_seconds)]
    timeout: Duration,
}

/// `omsg serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The topic to serve.
    topic: String,
    /// This server's name.
    #[arg(long, default_value = "omsg")]
    server: String,
}

pub(crate) fn kwargs(text: &str) -> Result<Map<String, Value>, Failure> {
    match parse_json("ARGS_JSON", text)? {
        Value::Object(map) => Ok(map),
        _ => Err(Failure::Usage(
            "ARGS_JSON must be a JSON object of keyword arguments".into(),
        )),
    }
}

async fn client(endpoints: &Endpoints, to: &Destination) -> Result<RpcClient, Failure> {
    let mut client = RpcClient::new(endpoints.rpc().await?, Target::topic(&to.topic));
    if let Some(server) = &to.server {
        client = client.server(server);
    }
    if let Some(namespace) = &to.namespace {
        client = client.namespace(namespace);
    }
    if let Some(version) = &to.api_version {
        client = client.version(version);
    }
    if let Some(window) = to.fail_fast {
        client = client.fail_fast(window);
    }
    Ok(client)
}

/// `omsg call`: print the result as JSON.
pub async fn call(endpoints: &Endpoints, args: CallArgs) -> Outcome {
    let kwargs = kwargs(&args.args)?;
    let ctx = parse_context(args.context.as_deref())?;
    let mut client = client(endpoints, &args.to).await?.timeout(args.timeout);
    if let Some(monitor) = args.call_monitor_timeout {
        client = client.call_monitor_timeout(monitor);
    }
    let result: Value = client.call(&ctx, &args.method, &kwargs).await?;
    print_json(&result);
    Ok(())
}

/// `omsg cast`.
pub async fn cast(endpoints: &Endpoints, args: CastArgs) -> Outcome {
    let kwargs = kwargs(&args.args)?;
    let ctx = parse_context(args.context.as_deref())?;
    let mut client = client(endpoints, &args.to).await?.fanout(args.fanout);
    if let Some(timeout) = args.send_timeout {
        client = client.send_timeout(timeout);
    }
    client.cast(&ctx, &args.method, &kwargs).await?;
    Ok(())
}

/// `omsg ping`: one JSON line per ping with the server that answered and the round trip in
/// milliseconds. Our servers name themselves when asked; Python servers answer a bare
/// `"pong"` (`"server": null`).
pub async fn ping(endpoints: &Endpoints, args: PingArgs) -> Outcome {
    let mut client =
        RpcClient::new(endpoints.rpc().await?, Target::topic(&args.topic)).timeout(args.timeout);
    if let Some(server) = &args.server {
        client = client.server(server);
    }
    let identify = json!({ PING_IDENTIFY_ARG: true });
    for seq in 0..args.count {
        let started = Instant::now();
        let answer: Value = client.call(&Context::new(), PING_METHOD, &identify).await?;
        let ms = started.elapsed().as_secs_f64() * 1e3;
        let (answer, server) = match answer {
            Value::Object(mut named) => (
                named.remove("answer").unwrap_or(Value::Null),
                named.remove("server").unwrap_or(Value::Null),
            ),
            bare => (bare, Value::Null),
        };
        print_json(&json!({
            "seq": seq,
            "server": server,
            "answer": answer,
            "rtt_ms": (ms * 1000.0).round() / 1000.0,
        }));
    }
    Ok(())
}

/// The demo endpoint of `omsg serve` (and of `omsg bench` servers).
pub fn demo_endpoint() -> Endpoint {
    Endpoint::new()
        .method(
            "echo",
            |_ctx: Context, args: Map<String, Value>| async move {
                Ok::<_, RemoteError>(args.get("value").cloned().unwrap_or(Value::Null))
            },
        )
        .method("fail", |_ctx: Context, _: NoArgs| async move {
            Err::<(), _>(RemoteError::value_error("fail() was called"))
        })
        .method(
            "sleep",
            |_ctx: Context, args: Map<String, Value>| async move {
                let seconds = args.get("seconds").and_then(Value::as_f64).unwrap_or(0.0);
                let pause = Duration::try_from_secs_f64(seconds).map_err(|_| {
                    RemoteError::value_error("seconds must be a non-negative number")
                })?;
                tokio::time::sleep(pause).await;
                Ok::<_, RemoteError>(seconds)
            },
        )
}

/// `omsg serve`: run until SIGINT (Ctrl-C) or SIGTERM, then stop gracefully.
pub async fn serve(endpoints: &Endpoints, args: ServeArgs) -> Outcome {
    let stop = shutdown_signal()?;
    let server = RpcServer::new(
        endpoints.rpc().await?,
        Target::topic(&args.topic).server(&args.server),
    )
    .endpoint(demo_endpoint())
    .enable_ping(true)
    .start()
    .await?;
    eprintln!(
        "omsg: serving {} as {} (Ctrl-C or SIGTERM to stop)",
        args.topic, args.server
    );
    stop.await;
    server.shutdown().await;
    Ok(())
}
