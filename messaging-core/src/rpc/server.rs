//! The RPC server: consumes requests for a target and dispatches them to endpoints.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use serde_json::Value;
use tokio::time::Instant;
use tracing::{Instrument, Span};

use super::endpoint::{select, PingEndpoint, RpcEndpoint};
use crate::context::{default_serializer, Context, SharedSerializer};
use crate::driver::{IncomingRequest, RpcListener, ServerAddress};
use crate::error::{MessagingError, RemoteError, Result};
use crate::service::{self, Gate, Running, ServiceHandle};
use crate::target::Target;
use crate::telemetry::{self, ServedMeters};
use crate::transport::RpcTransport;
use crate::wire::{DuplicateFilter, Reply, ReplyEvent, RpcRequest};

/// oslo's default `executor_thread_pool_size`.
pub const DEFAULT_MAX_CONCURRENCY: usize = 64;

/// Shortest heartbeat interval, whatever the caller's call-monitor timeout.
const MIN_HEARTBEAT: Duration = Duration::from_millis(50);

/// Builds and starts an RPC server for a target with a topic and a server name.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), messaging_core::MessagingError> {
/// use messaging_core::{get_rpc_transport, Context, Endpoint, RemoteError, RpcClient, RpcServer, Target};
///
/// let transport = get_rpc_transport("memory://").await?;
/// let endpoint = Endpoint::new().method("double", |_ctx: Context, args: serde_json::Map<String, serde_json::Value>| async move {
///     Ok::<_, RemoteError>(args["n"].as_i64().unwrap_or(0) * 2)
/// });
/// let server = RpcServer::new(transport.clone(), Target::topic("calc").server("calc-1"))
///     .endpoint(endpoint)
///     .start()
///     .await?;
/// let client = RpcClient::new(transport, Target::topic("calc"));
/// let four: i64 = client.call(&Context::new(), "double", &serde_json::json!({"n": 2})).await?;
/// assert_eq!(four, 4);
/// server.shutdown().await;
/// # Ok(()) }
/// ```
pub struct RpcServer {
    transport: RpcTransport,
    target: Target,
    endpoints: Vec<Arc<dyn RpcEndpoint>>,
    max_concurrency: usize,
    serializer: SharedSerializer,
    ping: bool,
}

impl RpcServer {
    /// A server for `target`, which needs a topic and a server name.
    pub fn new(transport: RpcTransport, target: Target) -> Self {
        Self {
            transport,
            target,
            endpoints: Vec::new(),
            max_concurrency: DEFAULT_MAX_CONCURRENCY,
            serializer: default_serializer(),
            ping: false,
        }
    }

    /// Add an endpoint. Endpoints are tried in the order added.
    pub fn endpoint(mut self, endpoint: impl RpcEndpoint) -> Self {
        self.endpoints.push(Arc::new(endpoint));
        self
    }

    /// Add an endpoint shared with other servers.
    pub fn shared_endpoint(mut self, endpoint: Arc<dyn RpcEndpoint>) -> Self {
        self.endpoints.push(endpoint);
        self
    }

    /// How many requests run at once (oslo's executor pool size); further requests wait at
    /// the broker.
    ///
    /// Each request is handled in a task of its own, so endpoints run in parallel on the
    /// runtime's workers.
    pub fn max_concurrency(mut self, limit: usize) -> Self {
        self.max_concurrency = limit.max(1);
        self
    }

    /// Answer `oslo_rpc_server_ping` with `"pong"` (oslo's `rpc_ping_enabled`).
    pub fn enable_ping(mut self, enabled: bool) -> Self {
        self.ping = enabled;
        self
    }

    /// Convert arguments, results and contexts with `serializer`.
    pub fn serializer(mut self, serializer: SharedSerializer) -> Self {
        self.serializer = serializer;
        self
    }

    /// Start consuming and dispatching.
    pub async fn start(mut self) -> Result<ServiceHandle> {
        for endpoint in &self.endpoints {
            endpoint.validate()?;
        }
        let topic = self.target.require_topic("run an RPC server")?.to_owned();
        let server = match self.target.server.as_deref() {
            Some(server) if !server.is_empty() => server.to_owned(),
            _ => {
                return Err(MessagingError::InvalidTarget(
                    "an RPC server needs a server name".into(),
                ))
            }
        };
        let address = ServerAddress {
            exchange: self
                .target
                .exchange
                .clone()
                .unwrap_or_else(|| self.transport.control_exchange().to_owned()),
            topic,
            server,
        };
        if self.ping {
            self.endpoints.push(Arc::new(PingEndpoint {
                server: address.server.clone(),
            }));
        }
        let listener = self.transport.driver().listen(&address).await?;
        let dispatcher = Arc::new(Dispatcher {
            endpoints: self.endpoints,
            serializer: self.serializer,
            transport: self.transport,
            address,
        });
        tracing::debug!(address = ?dispatcher.address, "RPC server started");
        Ok(service::spawn(self.max_concurrency, |gate| {
            serve(listener, dispatcher, gate)
        }))
    }
}

async fn serve(mut listener: Box<dyn RpcListener>, dispatcher: Arc<Dispatcher>, mut gate: Gate) {
    // Each request in its own task from the start: its handler waits for the reply's publish,
    // so running it here first would save no task, and an endpoint that computes would hold up
    // the next request.
    let mut running = Running::in_tasks();
    let mut duplicates = DuplicateFilter::default();
    // A request is taken only when a slot is free, so that the rest stay with the broker.
    while let Some((incoming, slot)) = gate.admit(|| listener.next()).await {
        let meters = dispatcher.meters(&incoming);
        meters.received.increment(1);
        // Checked before the duplicate filter: a forged message must not mark its id as seen.
        if !dispatcher.admits(&incoming) {
            continue;
        }
        if let Some(id) = &incoming.unique_id {
            if duplicates.is_duplicate(id) {
                tracing::debug!(unique_id = %id, "dropping a duplicate request");
                let transport = dispatcher.transport.telemetry().meters.transport();
                telemetry::count_duplicate(transport, "rpc request");
                continue;
            }
        }
        let dispatcher = dispatcher.clone();
        // Boxed: the handler's state is about 4 KiB, which tokio would otherwise move about
        // six times on the way into its task and out (3k instructions per request).
        running
            .start(Box::pin(async move {
                dispatcher.handle(incoming, &meters).await;
                drop(slot);
            }))
            .await;
    }
    // Requests still running reply through the transport: let them finish first.
    running.finish().await;
    listener.close().await;
    tracing::debug!("RPC server stopped");
}

struct Dispatcher {
    endpoints: Vec<Arc<dyn RpcEndpoint>>,
    serializer: SharedSerializer,
    /// For its signing settings and its telemetry.
    transport: RpcTransport,
    address: ServerAddress,
}

impl Dispatcher {
    /// False if the request fails its signature check and the transport rejects such requests
    /// (it is dropped unanswered: the driver already took it from the broker).
    fn admits(&self, incoming: &IncomingRequest) -> bool {
        let Some(guard) = self.transport.guard() else {
            return true;
        };
        let check = guard.signing().verify_request(
            &self.address.topic,
            incoming.reply.is_some(),
            &incoming.request,
        );
        guard.admit(check, "rpc request", &incoming.request.method)
    }

    /// The reply to send: signed when the transport signs.
    fn reply(&self, request_signature: Option<&str>, event: ReplyEvent) -> Reply {
        match self.transport.signing() {
            Some(signing) => signing.sign_reply(request_signature, event),
            None => Reply::from(event),
        }
    }

    /// The meters of `incoming`'s method (`_unknown` for a method no endpoint has, so that
    /// senders cannot add labels at will).
    fn meters(&self, incoming: &IncomingRequest) -> std::sync::Arc<ServedMeters> {
        let method = incoming.request.method.as_str();
        let known = self.endpoints.iter().any(|e| e.has_method(method));
        let method = if known {
            method
        } else {
            telemetry::UNKNOWN_METHOD
        };
        let call = incoming.reply.is_some();
        let meters = &self.transport.telemetry().meters;
        meters.served(call, &self.address.topic, method)
    }

    /// Answer `incoming` in its dispatch span, the child of the caller's span.
    async fn handle(&self, mut incoming: IncomingRequest, meters: &ServedMeters) {
        let started = Instant::now();
        let remote = telemetry::extract(&mut incoming.request.context);
        let system = self.transport.telemetry().system;
        let span = super::spans::rpc_dispatch(system, &self.address, &incoming);
        let trace = telemetry::incoming(&span, remote);
        telemetry::scope(trace, self.respond(incoming).instrument(span)).await;
        meters
            .duration
            .record(telemetry::seconds(started.elapsed()));
    }

    async fn respond(&self, incoming: IncomingRequest) {
        let IncomingRequest {
            request,
            reply,
            call_monitor_timeout,
            ..
        } = incoming;
        let method = request.method.clone();
        let request_signature = request.signature.clone();
        let work = self.dispatch(request);
        let outcome = match (&reply, call_monitor_timeout) {
            (Some(replier), Some(monitor)) => {
                let interval = (monitor / 2).max(MIN_HEARTBEAT);
                let mut work = std::pin::pin!(work);
                let mut ticks =
                    tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
                loop {
                    tokio::select! {
                        outcome = &mut work => break outcome,
                        _ = ticks.tick() => {
                            if let Err(error) = replier.send(Reply::from(ReplyEvent::Heartbeat)).await {
                                tracing::warn!(%error, method, "could not send a call-monitor heartbeat");
                            }
                        }
                    }
                }
            }
            _ => work.await,
        };
        if let Err(failure) = &outcome {
            let span = Span::current();
            span.record("otel.status_code", "ERROR");
            span.record("error.type", failure.class.as_str());
            if failure.expected {
                tracing::debug!(method, %failure, "expected error in RPC method");
            } else {
                tracing::error!(method, %failure, "error in RPC method");
            }
        }
        if let Some(replier) = reply {
            let event = match outcome {
                Ok(value) => ReplyEvent::Result {
                    value,
                    ending: true,
                },
                Err(failure) => ReplyEvent::Failure(failure),
            };
            let reply = self.reply(request_signature.as_deref(), event);
            if let Err(error) = replier.send(reply).await {
                tracing::warn!(%error, method, "could not send the reply");
            }
        }
    }

    async fn dispatch(&self, request: RpcRequest) -> Result<Value, RemoteError> {
        let RpcRequest {
            method,
            mut args,
            namespace,
            version,
            context,
            ..
        } = request;
        let endpoint = select(
            &self.endpoints,
            namespace.as_deref(),
            version.as_deref(),
            &method,
        )
        .map_err(|failure| with_alternatives(failure, &self.endpoints, &method))?;
        let ctx = self.serializer.deserialize_context(Context(context))?;
        // Each value converted in place: the map is not rebuilt (nor its keys hashed again).
        for value in args.values_mut() {
            *value = self.serializer.deserialize_entity(&ctx, value.take())?;
        }
        let call = endpoint.dispatch(ctx.clone(), &method, args);
        let value = AssertUnwindSafe(call)
            .catch_unwind()
            .await
            .unwrap_or_else(|panic| {
                let message = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".into());
                Err(RemoteError::new(
                    "RuntimeError",
                    format!("{method}() panicked: {message}"),
                ))
            })?;
        Ok(self.serializer.serialize_entity(&ctx, value)?)
    }
}

/// oslo's dispatch failure, plus where this server does serve `method`, so that a caller with
/// the wrong namespace or version learns the right one. Class, module and arguments keep
/// oslo's form, so Python callers read it as before.
fn with_alternatives(
    failure: RemoteError,
    endpoints: &[Arc<dyn RpcEndpoint>],
    method: &str,
) -> RemoteError {
    let served: Vec<String> = endpoints
        .iter()
        .filter(|endpoint| !method.starts_with('_') && endpoint.has_method(method))
        .map(|endpoint| {
            let namespace = endpoint
                .namespace()
                .map_or_else(|| "no namespace".to_owned(), |n| format!("namespace `{n}`"));
            format!("{namespace} at version {}", endpoint.version())
        })
        .collect();
    if served.is_empty() {
        return failure;
    }
    let message = format!(
        "{}; this server has `{method}` in {}",
        failure.message,
        served.join(", and in ")
    );
    RemoteError::with_module(failure.class, failure.module, message)
}
