//! The request context carried with every message, and the serializer hook.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::Result;

/// A JSON map carried with every call, cast and notification (oslo's `ctxt`): user, project,
/// request id and the like. Servers and listeners receive the sender's context.
///
/// ```
/// use messaging_core::Context;
///
/// let ctx = Context::new().with("user_id", "u-1").with("request_id", "req-123");
/// assert_eq!(ctx.get_str("user_id"), Some("u-1"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Context(pub Map<String, Value>);

impl Context {
    /// An empty context.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a key.
    pub fn with(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.0.insert(key.into(), value.into());
        self
    }

    /// Set a key.
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<Value>) {
        self.0.insert(key.into(), value.into());
    }

    /// A value.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.get(key)
    }

    /// A string value.
    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(Value::as_str)
    }

    /// The underlying map.
    pub fn as_map(&self) -> &Map<String, Value> {
        &self.0
    }

    /// True when the context has no keys.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<Map<String, Value>> for Context {
    fn from(map: Map<String, Value>) -> Self {
        Self(map)
    }
}

/// Converts application values and contexts to and from what travels on the wire (oslo's
/// `Serializer`). Clients, servers, notifiers and listeners accept one; the default keeps
/// values as they are.
pub trait Serializer: Send + Sync + 'static {
    /// An argument, result or payload about to be sent.
    fn serialize_entity(&self, _ctx: &Context, entity: Value) -> Result<Value> {
        Ok(entity)
    }

    /// An argument, result or payload just received.
    fn deserialize_entity(&self, _ctx: &Context, entity: Value) -> Result<Value> {
        Ok(entity)
    }

    /// A context about to be sent.
    fn serialize_context(&self, ctx: &Context) -> Result<Context> {
        Ok(ctx.clone())
    }

    /// A context just received.
    fn deserialize_context(&self, ctx: Context) -> Result<Context> {
        Ok(ctx)
    }
}

/// The serializer that changes nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoOpSerializer;

impl Serializer for NoOpSerializer {}

/// A shared serializer, as the API types hold it.
pub type SharedSerializer = Arc<dyn Serializer>;

pub(crate) fn default_serializer() -> SharedSerializer {
    Arc::new(NoOpSerializer)
}
