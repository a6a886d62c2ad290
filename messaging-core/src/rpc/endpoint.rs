//! RPC endpoints and oslo's dispatch rules.

use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use futures_util::future::BoxFuture;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::context::Context;
use crate::driver::FastHashMap;
use crate::error::{MessagingError, RemoteError};
use crate::target::Version;

/// A set of RPC methods sharing a namespace and a version: implement it for hand-written
/// dispatch, or build an [`Endpoint`] from async closures.
#[async_trait]
pub trait RpcEndpoint: Send + Sync + 'static {
    /// The namespace requests must name (`None`: requests that name none).
    fn namespace(&self) -> Option<&str> {
        None
    }

    /// The API version implemented (oslo's default is `1.0`).
    fn version(&self) -> Version {
        Version::DEFAULT
    }

    /// True if the endpoint has `method`.
    fn has_method(&self, method: &str) -> bool;

    /// Why the endpoint cannot serve, checked when a server starts (an [`Endpoint`] built
    /// with a malformed version).
    fn validate(&self) -> crate::Result<()> {
        Ok(())
    }

    /// Run `method`. Its error travels back to the caller as a remote exception.
    async fn dispatch(
        &self,
        ctx: Context,
        method: &str,
        args: Map<String, Value>,
    ) -> Result<Value, RemoteError>;
}

type Handler = Arc<
    dyn Fn(Context, Map<String, Value>) -> BoxFuture<'static, Result<Value, RemoteError>>
        + Send
        + Sync,
>;

/// Arguments of a method that takes none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoArgs {}

/// An endpoint built from typed async handlers.
///
/// ```
/// use messaging_core::{Context, Endpoint, RemoteError};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Deserialize)]
/// struct EchoArgs { value: String }
///
/// let endpoint = Endpoint::new()
///     .version("1.3")
///     .method("echo", |_ctx: Context, args: EchoArgs| async move { Ok::<_, RemoteError>(args.value) })
///     .method("fail", |_ctx: Context, _: messaging_core::NoArgs| async move {
///         Err::<(), _>(RemoteError::value_error("asked to fail"))
///     });
/// ```
#[derive(Clone, Default)]
pub struct Endpoint {
    namespace: Option<String>,
    version: Option<Version>,
    /// Why `version(…)` was refused, reported when a server starts with this endpoint.
    invalid_version: Option<String>,
    methods: FastHashMap<String, Handler>,
}

impl Endpoint {
    /// An endpoint in no namespace, at version `1.0`.
    pub fn new() -> Self {
        Self::default()
    }

    /// Serve requests for this namespace.
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    /// The version implemented, `X.Y`. One that is not `X.Y[.Z]` makes
    /// [`RpcServer::start`](crate::RpcServer::start) fail with
    /// [`MessagingError::InvalidTarget`].
    pub fn version(mut self, version: &str) -> Self {
        match version.parse() {
            Ok(version) => {
                self.version = Some(version);
                self.invalid_version = None;
            }
            Err(MessagingError::InvalidTarget(why)) => self.invalid_version = Some(why),
            Err(other) => self.invalid_version = Some(other.to_string()),
        }
        self
    }

    /// Add a method: `handler(ctx, args)` where `args` deserializes from the keyword
    /// arguments, and the result serializes into the reply. Names starting with `_` are never
    /// callable.
    pub fn method<A, R, E, F, Fut>(mut self, name: &str, handler: F) -> Self
    where
        A: DeserializeOwned + Send + 'static,
        R: Serialize + Send + 'static,
        E: Into<RemoteError> + Send + 'static,
        F: Fn(Context, A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, E>> + Send + 'static,
    {
        let handler = Arc::new(handler);
        let name_owned = name.to_owned();
        let erased: Handler = Arc::new(move |ctx, args| {
            let handler = handler.clone();
            let method = name_owned.clone();
            Box::pin(async move {
                let args: A = serde_json::from_value(Value::Object(args)).map_err(|e| {
                    RemoteError::new(
                        "TypeError",
                        format!("{method}() got invalid arguments: {e}"),
                    )
                })?;
                let result = handler(ctx, args).await.map_err(Into::into)?;
                serde_json::to_value(result).map_err(RemoteError::from)
            })
        });
        self.methods.insert(name.to_owned(), erased);
        self
    }
}

#[async_trait]
impl RpcEndpoint for Endpoint {
    fn namespace(&self) -> Option<&str> {
        self.namespace.as_deref()
    }

    fn version(&self) -> Version {
        self.version.unwrap_or(Version::DEFAULT)
    }

    fn has_method(&self, method: &str) -> bool {
        self.methods.contains_key(method)
    }

    fn validate(&self) -> crate::Result<()> {
        match &self.invalid_version {
            Some(why) => Err(MessagingError::InvalidTarget(why.clone())),
            None => Ok(()),
        }
    }

    async fn dispatch(
        &self,
        ctx: Context,
        method: &str,
        args: Map<String, Value>,
    ) -> Result<Value, RemoteError> {
        match self.methods.get(method) {
            Some(handler) => handler(ctx, args).await,
            None => Err(RemoteError::no_such_method(method)),
        }
    }
}

/// oslo's `rpc_ping_enabled` endpoint: `oslo_rpc_server_ping` answers `"pong"`, or, asked
/// with [`PING_IDENTIFY_ARG`]` = true`, `{"answer": "pong", "server": "<name>"}` (Python servers
/// ignore the argument and answer `"pong"`).
pub(crate) struct PingEndpoint {
    pub server: String,
}

/// The method name of the ping endpoint.
pub const PING_METHOD: &str = "oslo_rpc_server_ping";

/// The keyword argument that asks one of our ping endpoints to name its server.
pub const PING_IDENTIFY_ARG: &str = "identify";

#[async_trait]
impl RpcEndpoint for PingEndpoint {
    fn has_method(&self, method: &str) -> bool {
        method == PING_METHOD
    }

    async fn dispatch(
        &self,
        _ctx: Context,
        _method: &str,
        args: Map<String, Value>,
    ) -> Result<Value, RemoteError> {
        let pong = Value::String("pong".into());
        if args.get(PING_IDENTIFY_ARG) == Some(&Value::Bool(true)) {
            let server = Value::String(self.server.clone());
            return Ok(serde_json::json!({"answer": pong, "server": server}));
        }
        Ok(pong)
    }
}

/// Pick the endpoint for a request with oslo's rules: the namespace must match; the first
/// endpoint whose version can serve the request and that has the method wins; otherwise
/// `NoSuchMethod` if some endpoint had a compatible version, else `UnsupportedVersion`.
/// Methods starting with `_` never match.
pub(crate) fn select<'a>(
    endpoints: &'a [Arc<dyn RpcEndpoint>],
    namespace: Option<&str>,
    version: Option<&str>,
    method: &str,
) -> Result<&'a Arc<dyn RpcEndpoint>, RemoteError> {
    let version_text = version.unwrap_or("1.0");
    let requested: Version = version_text
        .parse()
        .map_err(|_| RemoteError::unsupported_version(version_text, method))?;
    let mut found_compatible = false;
    for endpoint in endpoints {
        if endpoint.namespace() != namespace {
            continue;
        }
        let compatible = endpoint.version().can_serve(&requested);
        if compatible && !method.starts_with('_') && endpoint.has_method(method) {
            return Ok(endpoint);
        }
        found_compatible |= compatible;
    }
    if found_compatible {
        Err(RemoteError::no_such_method(method))
    } else {
        Err(RemoteError::unsupported_version(version_text, method))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(namespace: Option<&str>, version: &str, methods: &[&str]) -> Arc<dyn RpcEndpoint> {
        let mut endpoint = Endpoint::new().version(version);
        if let Some(namespace) = namespace {
            endpoint = endpoint.namespace(namespace);
        }
        for name in methods {
            endpoint = endpoint.method(name, |_ctx: Context, _: NoArgs| async {
                Ok::<_, RemoteError>(())
            });
        }
        Arc::new(endpoint)
    }

    fn class_of(result: Result<&Arc<dyn RpcEndpoint>, RemoteError>) -> String {
        result.err().map(|e| e.class).unwrap_or_else(|| "ok".into())
    }

    #[test]
    fn oslo_dispatch_rules() {
        let endpoints = vec![
            endpoint(None, "1.3", &["echo", "_secret"]),
            endpoint(Some("otherns"), "2.1", &["whoami"]),
            endpoint(None, "2.0", &["v2only"]),
        ];
        let pick = |ns, v, m| class_of(select(&endpoints, ns, v, m));
        assert_eq!(pick(None, None, "echo"), "ok");
        assert_eq!(pick(None, Some("1.3"), "echo"), "ok");
        assert_eq!(pick(None, Some("1.4"), "echo"), "UnsupportedVersion");
        assert_eq!(pick(None, Some("1.0"), "nope"), "NoSuchMethod");
        assert_eq!(
            pick(None, Some("1.0"), "_secret"),
            "NoSuchMethod",
            "private methods are hidden"
        );
        assert_eq!(pick(None, Some("3.0"), "echo"), "UnsupportedVersion");
        assert_eq!(pick(None, Some("2.0"), "v2only"), "ok");
        assert_eq!(
            pick(None, Some("2.0"), "echo"),
            "NoSuchMethod",
            "compatible endpoint without the method"
        );
        assert_eq!(pick(Some("otherns"), Some("2.1"), "whoami"), "ok");
        assert_eq!(pick(Some("otherns"), Some("2.1"), "echo"), "NoSuchMethod");
        assert_eq!(pick(Some("nons"), None, "echo"), "UnsupportedVersion");
        assert_eq!(pick(None, Some("x.y"), "echo"), "UnsupportedVersion");
    }

    #[test]
    fn first_compatible_endpoint_wins() {
        let first = endpoint(None, "1.5", &["echo"]);
        let endpoints = vec![first.clone(), endpoint(None, "1.9", &["echo"])];
        let chosen = select(&endpoints, None, Some("1.2"), "echo").ok().unwrap();
        assert!(Arc::ptr_eq(chosen, &first));
        let chosen = select(&endpoints, None, Some("1.7"), "echo").ok().unwrap();
        assert_eq!(chosen.version().minor, 9);
    }
}
