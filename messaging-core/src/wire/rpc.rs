//! RPC requests and replies (oslo-wire.md §3, §4).

use serde_json::{Map, Value};

use super::{envelope, flatten_context, json, take_string, unflatten_context, SIGNATURE_KEY};
use crate::error::{MessagingError, RemoteError, Result};

/// What the caller asked for: the part of a request that every transport carries.
#[derive(Debug, Clone, PartialEq)]
pub struct RpcRequest {
    /// Method name.
    pub method: String,
    /// Keyword arguments.
    pub args: Map<String, Value>,
    /// Endpoint namespace, if the target has one.
    pub namespace: Option<String>,
    /// Requested API version, if the target has one.
    pub version: Option<String>,
    /// The caller's context.
    pub context: Map<String, Value>,
    /// `_signature`, when the sender signs (see [`crate::signing`]); drivers carry it as is.
    pub signature: Option<String>,
}

impl RpcRequest {
    /// The request dict without ids or context:
    /// `{"method", "args", ["namespace"], ["version"], ["_signature"]}` (the AMQP 1.0 driver's
    /// `request` field).
    pub fn to_request_dict(&self) -> Map<String, Value> {
        let mut msg = Map::with_capacity(4);
        msg.insert("method".into(), Value::String(self.method.clone()));
        msg.insert("args".into(), Value::Object(self.args.clone()));
        if let Some(namespace) = &self.namespace {
            msg.insert("namespace".into(), Value::String(namespace.clone()));
        }
        if let Some(version) = &self.version {
            msg.insert("version".into(), Value::String(version.clone()));
        }
        if let Some(signature) = &self.signature {
            msg.insert(SIGNATURE_KEY.into(), Value::String(signature.clone()));
        }
        msg
    }

    /// Read `method`, `args`, `namespace` and `version` out of a request dict; the remaining
    /// keys stay in `msg`.
    pub fn from_request_dict(
        msg: &mut Map<String, Value>,
        context: Map<String, Value>,
    ) -> Result<Self> {
        let method = take_string(msg, "method")?
            .ok_or_else(|| MessagingError::MalformedMessage("request has no `method`".into()))?;
        let args = match msg.shift_remove("args") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(args)) => args,
            Some(other) => {
                return Err(MessagingError::MalformedMessage(format!(
                    "`args` should be an object, got {other}"
                )))
            }
        };
        Ok(Self {
            method,
            args,
            namespace: take_string(msg, "namespace")?,
            version: take_string(msg, "version")?,
            context,
            signature: take_string(msg, SIGNATURE_KEY)?,
        })
    }
}

/// The reply address and id of a call (absent for casts).
#[derive(Debug, Clone, PartialEq)]
pub struct CallInfo {
    /// `_msg_id`: correlates the replies with the call.
    pub msg_id: String,
    /// `_reply_q`: where the replies go.
    pub reply_q: String,
    /// `_timeout`: the caller's call-monitor timeout in seconds, if it wants heartbeats.
    pub monitor_timeout: Option<f64>,
}

/// A whole RPC request message as the rabbit and memory drivers carry it.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestMessage {
    /// The request.
    pub request: RpcRequest,
    /// Reply information, for calls.
    pub call: Option<CallInfo>,
    /// `_unique_id`, for duplicate suppression.
    pub unique_id: Option<String>,
}

impl RequestMessage {
    /// A cast of `request`, with a fresh `_unique_id`.
    pub fn cast(request: RpcRequest) -> Self {
        Self {
            request,
            call: None,
            unique_id: Some(super::new_id()),
        }
    }

    /// A call of `request` with fresh `_msg_id` and `_unique_id`, answered on `reply_q`; the
    /// server heartbeats every half of `call_monitor_timeout`, if any.
    pub fn call(
        request: RpcRequest,
        reply_q: String,
        call_monitor_timeout: Option<std::time::Duration>,
    ) -> Self {
        Self {
            request,
            call: Some(CallInfo {
                msg_id: super::new_id(),
                reply_q,
                monitor_timeout: call_monitor_timeout.map(|t| t.as_secs_f64()),
            }),
            unique_id: Some(super::new_id()),
        }
    }

    /// The caller's call-monitor timeout (`_timeout`), if it asked for heartbeats.
    pub fn call_monitor_timeout(&self) -> Option<std::time::Duration> {
        self.call
            .as_ref()
            .and_then(|call| call.monitor_timeout)
            .and_then(|secs| std::time::Duration::try_from_secs_f64(secs).ok())
    }

    /// The call's `_msg_id` (`None` for a cast).
    pub fn msg_id(&self) -> Option<&str> {
        self.call.as_ref().map(|call| call.msg_id.as_str())
    }

    /// The inner message dict, keys in oslo's order:
    /// `method, args, [namespace], [version], [_signature], [_msg_id, _reply_q, _timeout],
    /// _unique_id, _context_*`.
    pub fn to_map(&self) -> Map<String, Value> {
        let mut msg = self.request.to_request_dict();
        if let Some(call) = &self.call {
            msg.insert("_msg_id".into(), Value::String(call.msg_id.clone()));
            msg.insert("_reply_q".into(), Value::String(call.reply_q.clone()));
            msg.insert(
                "_timeout".into(),
                call.monitor_timeout.map_or(Value::Null, seconds_value),
            );
        }
        if let Some(unique_id) = &self.unique_id {
            msg.insert("_unique_id".into(), Value::String(unique_id.clone()));
        }
        flatten_context(&mut msg, &self.request.context);
        msg
    }

    /// The message in the `2.0` envelope, as bytes.
    pub fn encode(&self) -> Result<Vec<u8>> {
        envelope(&json::to_vec(&self.to_map())?)
    }

    /// Decode an envelope (or un-enveloped `1.0`) body.
    pub fn decode(body: &[u8]) -> Result<Self> {
        Self::from_map(super::decode_body(body)?)
    }

    /// Read a decoded inner message dict.
    pub fn from_map(mut msg: Map<String, Value>) -> Result<Self> {
        let context = unflatten_context(&mut msg);
        let request = RpcRequest::from_request_dict(&mut msg, context)?;
        let msg_id = take_string(&mut msg, "_msg_id")?;
        let reply_q = take_string(&mut msg, "_reply_q")?;
        let monitor_timeout = match msg.shift_remove("_timeout") {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => n.as_f64(),
            Some(other) => {
                return Err(MessagingError::MalformedMessage(format!(
                    "`_timeout` should be a number, got {other}"
                )))
            }
        };
        let call = match (msg_id, reply_q) {
            (Some(msg_id), Some(reply_q)) => Some(CallInfo {
                msg_id,
                reply_q,
                monitor_timeout,
            }),
            (None, None) => None,
            _ => {
                return Err(MessagingError::MalformedMessage(
                    "a call needs both `_msg_id` and `_reply_q`".into(),
                ))
            }
        };
        Ok(Self {
            request,
            call,
            unique_id: take_string(&mut msg, "_unique_id")?,
        })
    }
}

/// Seconds as oslo writes them: an integer when whole (`2`), else a float.
fn seconds_value(seconds: f64) -> Value {
    if seconds.fract() == 0.0 && seconds >= 0.0 && seconds < u32::MAX as f64 {
        Value::from(seconds as u64)
    } else {
        Value::from(seconds)
    }
}

/// What a caller can receive for its call.
#[derive(Debug, Clone, PartialEq)]
pub enum ReplyEvent {
    /// Call-monitor heartbeat: the server is still working on it.
    Heartbeat,
    /// A result. Old oslo servers send the result with `ending: false` and then an empty
    /// message with `ending: true`; callers keep the last non-null result until the ending.
    Result {
        /// The method's return value.
        value: Value,
        /// True for the last message of the call.
        ending: bool,
    },
    /// The method raised.
    Failure(RemoteError),
}

/// One reply event as it crosses the driver contract ([`crate::driver::Replier`] to
/// [`crate::driver::PendingReply`]), with its signature when the server signs.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// What it says.
    pub event: ReplyEvent,
    /// `_signature` (see [`crate::signing`]); drivers carry it as is. Heartbeats have none.
    pub signature: Option<String>,
}

impl From<ReplyEvent> for Reply {
    /// An unsigned reply.
    fn from(event: ReplyEvent) -> Self {
        Self {
            event,
            signature: None,
        }
    }
}

/// A reply message as the rabbit and memory drivers carry it:
/// `{"result", "failure", "ending", "_msg_id", "_unique_id", ["_signature"]}`.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplyMessage {
    /// The `_msg_id` of the call this answers.
    pub msg_id: String,
    /// What it says.
    pub event: ReplyEvent,
    /// `_unique_id`.
    pub unique_id: Option<String>,
    /// `_signature`, when the server signs.
    pub signature: Option<String>,
}

impl ReplyMessage {
    /// The message answering call `msg_id` with `reply`, with a fresh `_unique_id`.
    pub fn new(msg_id: String, reply: Reply) -> Self {
        Self {
            msg_id,
            event: reply.event,
            unique_id: Some(super::new_id()),
            signature: reply.signature,
        }
    }

    /// The reply as the driver contract hands it to the caller.
    pub fn into_reply(self) -> Reply {
        Reply {
            event: self.event,
            signature: self.signature,
        }
    }

    /// The inner message dict, keys in oslo's order.
    pub fn to_map(&self) -> Result<Map<String, Value>> {
        let (result, failure, ending) = match &self.event {
            ReplyEvent::Heartbeat => (Value::Null, Value::Null, false),
            ReplyEvent::Result { value, ending } => (value.clone(), Value::Null, *ending),
            ReplyEvent::Failure(failure) => {
                (Value::Null, Value::String(encode_failure(failure)?), true)
            }
        };
        let mut msg = Map::with_capacity(5);
        msg.insert("result".into(), result);
        msg.insert("failure".into(), failure);
        msg.insert("ending".into(), Value::Bool(ending));
        msg.insert("_msg_id".into(), Value::String(self.msg_id.clone()));
        if let Some(unique_id) = &self.unique_id {
            msg.insert("_unique_id".into(), Value::String(unique_id.clone()));
        }
        if let Some(signature) = &self.signature {
            msg.insert(SIGNATURE_KEY.into(), Value::String(signature.clone()));
        }
        Ok(msg)
    }

    /// The reply in the `2.0` envelope, as bytes.
    pub fn encode(&self) -> Result<Vec<u8>> {
        envelope(&json::to_vec(&self.to_map()?)?)
    }

    /// Decode an envelope body.
    pub fn decode(body: &[u8]) -> Result<Self> {
        Self::from_map(super::decode_body(body)?)
    }

    /// Read a decoded inner message dict.
    pub fn from_map(mut msg: Map<String, Value>) -> Result<Self> {
        let msg_id = take_string(&mut msg, "_msg_id")?
            .ok_or_else(|| MessagingError::MalformedMessage("reply has no `_msg_id`".into()))?;
        let ending = msg.get("ending").and_then(Value::as_bool).unwrap_or(false);
        let failure = take_string(&mut msg, "failure")?;
        let result = msg.shift_remove("result").unwrap_or(Value::Null);
        let event = match failure {
            Some(failure) => ReplyEvent::Failure(decode_failure(&failure)?),
            None if !ending && result.is_null() => ReplyEvent::Heartbeat,
            None => ReplyEvent::Result {
                value: result,
                ending,
            },
        };
        Ok(Self {
            msg_id,
            event,
            unique_id: take_string(&mut msg, "_unique_id")?,
            signature: take_string(&mut msg, SIGNATURE_KEY)?,
        })
    }
}

/// Encode a failure as oslo's JSON string:
/// `{"class", "module", "message", "tb", "args", "kwargs"}`.
pub fn encode_failure(failure: &RemoteError) -> Result<String> {
    Ok(json::to_string(failure)?)
}

/// Decode oslo's failure string.
pub fn decode_failure(failure: &str) -> Result<RemoteError> {
    serde_json::from_str(failure).map_err(|e| {
        MessagingError::MalformedMessage(format!("undecodable failure `{failure}`: {e}"))
    })
}
