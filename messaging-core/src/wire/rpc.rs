//! RPC requests and replies (oslo-wire.md §3, §4).

use serde::ser::{Error as _, SerializeMap};
use serde::{Serialize, Serializer};
use serde_json::{Map, Value};

use super::{
    decode_entries, json, serialize_flattened_context, string_entry, to_envelope, Collected,
    Entries, CONTEXT_PREFIX, SIGNATURE_KEY,
};
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
    /// The request dict without ids or context, to serialize (borrowing, not copying):
    /// `{"method", "args", ["namespace"], ["version"], ["_signature"]}` (the AMQP 1.0 driver's
    /// `request` field).
    pub fn request_dict(&self) -> RequestDict<'_> {
        RequestDict(self)
    }

    /// The request dict's entries, into the map being serialized.
    fn serialize_fields<M: SerializeMap>(&self, map: &mut M) -> std::result::Result<(), M::Error> {
        map.serialize_entry("method", &self.method)?;
        map.serialize_entry("args", &self.args)?;
        if let Some(namespace) = &self.namespace {
            map.serialize_entry("namespace", namespace)?;
        }
        if let Some(version) = &self.version {
            map.serialize_entry("version", version)?;
        }
        if let Some(signature) = &self.signature {
            map.serialize_entry(SIGNATURE_KEY, signature)?;
        }
        Ok(())
    }

    /// Decode the JSON text of a request dict (the AMQP 1.0 driver's `request` field, the
    /// context beside it): `method`, `args`, `namespace`, `version` and `_signature`; other
    /// keys are ignored.
    pub fn decode_request_dict(text: &[u8], context: Map<String, Value>) -> Result<Self> {
        let Collected(entries) = serde_json::from_slice::<Collected<RequestEntries>>(text)
            .map_err(|e| {
                MessagingError::MalformedMessage(format!("`request` is not a JSON object: {e}"))
            })?;
        RequestEntries { context, ..entries }.into_request()
    }
}

/// The entries of a request's inner dict that decoders read, before they are checked.
#[derive(Debug, Default)]
struct RequestEntries {
    method: Option<Value>,
    args: Option<Value>,
    namespace: Option<Value>,
    version: Option<Value>,
    signature: Option<Value>,
    msg_id: Option<Value>,
    reply_q: Option<Value>,
    timeout: Option<Value>,
    unique_id: Option<Value>,
    /// From the `_context_<key>` entries.
    context: Map<String, Value>,
}

impl Entries for RequestEntries {
    fn set(&mut self, key: &str, value: Value) {
        let slot = match key {
            "method" => &mut self.method,
            "args" => &mut self.args,
            "namespace" => &mut self.namespace,
            "version" => &mut self.version,
            SIGNATURE_KEY => &mut self.signature,
            "_msg_id" => &mut self.msg_id,
            "_reply_q" => &mut self.reply_q,
            "_timeout" => &mut self.timeout,
            "_unique_id" => &mut self.unique_id,
            _ => {
                if let Some(name) = key.strip_prefix(CONTEXT_PREFIX) {
                    self.context.insert(name.to_owned(), value);
                }
                return;
            }
        };
        *slot = Some(value);
    }
}

impl RequestEntries {
    fn into_message(mut self) -> Result<RequestMessage> {
        let call = self.call()?;
        let unique_id = string_entry("_unique_id", self.unique_id.take())?;
        Ok(RequestMessage {
            request: self.into_request()?,
            call,
            unique_id,
        })
    }

    fn into_request(self) -> Result<RpcRequest> {
        let method = string_entry("method", self.method)?
            .ok_or_else(|| MessagingError::MalformedMessage("request has no `method`".into()))?;
        let args = match self.args {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(args)) => args,
            Some(other) => {
                return Err(MessagingError::MalformedMessage(format!(
                    "`args` should be an object, got {other}"
                )))
            }
        };
        Ok(RpcRequest {
            method,
            args,
            namespace: string_entry("namespace", self.namespace)?,
            version: string_entry("version", self.version)?,
            context: self.context,
            signature: string_entry(SIGNATURE_KEY, self.signature)?,
        })
    }

    /// The call's reply information, taken out; `None` for a cast.
    fn call(&mut self) -> Result<Option<CallInfo>> {
        let msg_id = string_entry("_msg_id", self.msg_id.take())?;
        let reply_q = string_entry("_reply_q", self.reply_q.take())?;
        let monitor_timeout = match self.timeout.take() {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => n.as_f64(),
            Some(other) => {
                return Err(MessagingError::MalformedMessage(format!(
                    "`_timeout` should be a number, got {other}"
                )))
            }
        };
        match (msg_id, reply_q) {
            (Some(msg_id), Some(reply_q)) => Ok(Some(CallInfo {
                msg_id,
                reply_q,
                monitor_timeout,
            })),
            (None, None) => Ok(None),
            _ => Err(MessagingError::MalformedMessage(
                "a call needs both `_msg_id` and `_reply_q`".into(),
            )),
        }
    }
}

/// The request dict of an [`RpcRequest`], serialized from the request's own fields.
#[derive(Debug, Clone, Copy)]
pub struct RequestDict<'a>(&'a RpcRequest);

impl Serialize for RequestDict<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        self.0.serialize_fields(&mut map)?;
        map.end()
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

impl CallInfo {
    /// A call with a fresh `_msg_id`, answered on `reply_q`; the server heartbeats every half
    /// of `call_monitor_timeout`, if any.
    pub fn new(reply_q: String, call_monitor_timeout: Option<std::time::Duration>) -> Self {
        Self {
            msg_id: super::new_id(),
            reply_q,
            monitor_timeout: call_monitor_timeout.map(|t| t.as_secs_f64()),
        }
    }
}

/// A request message to send, borrowing its parts, so that encoding copies nothing: the
/// rabbit driver sends a caller's [`RpcRequest`] with its own ids as one.
#[derive(Debug, Clone, Copy)]
pub struct OutgoingRequest<'a> {
    /// The request.
    pub request: &'a RpcRequest,
    /// Reply information, for calls.
    pub call: Option<&'a CallInfo>,
    /// `_unique_id`, for duplicate suppression.
    pub unique_id: Option<&'a str>,
}

impl OutgoingRequest<'_> {
    /// The call's `_msg_id` (`None` for a cast).
    pub fn msg_id(&self) -> Option<&str> {
        self.call.map(|call| call.msg_id.as_str())
    }

    /// The message in the `2.0` envelope, as bytes.
    pub fn encode(&self) -> Result<Vec<u8>> {
        Ok(to_envelope(self)?)
    }
}

impl Serialize for OutgoingRequest<'_> {
    /// The inner message dict, keys in oslo's order:
    /// `method, args, [namespace], [version], [_signature], [_msg_id, _reply_q, _timeout],
    /// _unique_id, _context_*`.
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        self.request.serialize_fields(&mut map)?;
        if let Some(call) = self.call {
            map.serialize_entry("_msg_id", &call.msg_id)?;
            map.serialize_entry("_reply_q", &call.reply_q)?;
            map.serialize_entry("_timeout", &call.monitor_timeout.map(seconds_value))?;
        }
        if let Some(unique_id) = self.unique_id {
            map.serialize_entry("_unique_id", unique_id)?;
        }
        serialize_flattened_context(&mut map, &self.request.context)?;
        map.end()
    }
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
            call: Some(CallInfo::new(reply_q, call_monitor_timeout)),
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

    /// The message to send, borrowing this one's parts.
    pub fn outgoing(&self) -> OutgoingRequest<'_> {
        OutgoingRequest {
            request: &self.request,
            call: self.call.as_ref(),
            unique_id: self.unique_id.as_deref(),
        }
    }

    /// The message in the `2.0` envelope, as bytes.
    pub fn encode(&self) -> Result<Vec<u8>> {
        self.outgoing().encode()
    }

    /// Decode an envelope (or un-enveloped `1.0`) body.
    pub fn decode(body: &[u8]) -> Result<Self> {
        decode_entries::<RequestEntries>(body)?.into_message()
    }

    /// Read a decoded inner message dict.
    pub fn from_map(msg: Map<String, Value>) -> Result<Self> {
        RequestEntries::of(msg).into_message()
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

    /// The reply to send, borrowing this one's parts.
    pub fn outgoing(&self) -> OutgoingReply<'_> {
        OutgoingReply {
            msg_id: &self.msg_id,
            event: &self.event,
            unique_id: self.unique_id.as_deref(),
            signature: self.signature.as_deref(),
        }
    }

    /// The reply in the `2.0` envelope, as bytes.
    pub fn encode(&self) -> Result<Vec<u8>> {
        self.outgoing().encode()
    }

    /// Decode an envelope body.
    pub fn decode(body: &[u8]) -> Result<Self> {
        decode_entries::<ReplyEntries>(body)?.into_message()
    }

    /// Read a decoded inner message dict.
    pub fn from_map(msg: Map<String, Value>) -> Result<Self> {
        ReplyEntries::of(msg).into_message()
    }
}

/// The entries of a reply's inner dict, before they are checked.
#[derive(Debug, Default)]
struct ReplyEntries {
    result: Option<Value>,
    failure: Option<Value>,
    ending: Option<Value>,
    msg_id: Option<Value>,
    unique_id: Option<Value>,
    signature: Option<Value>,
}

impl Entries for ReplyEntries {
    fn set(&mut self, key: &str, value: Value) {
        let slot = match key {
            "result" => &mut self.result,
            "failure" => &mut self.failure,
            "ending" => &mut self.ending,
            "_msg_id" => &mut self.msg_id,
            "_unique_id" => &mut self.unique_id,
            SIGNATURE_KEY => &mut self.signature,
            _ => return,
        };
        *slot = Some(value);
    }
}

impl ReplyEntries {
    fn into_message(self) -> Result<ReplyMessage> {
        let msg_id = string_entry("_msg_id", self.msg_id)?
            .ok_or_else(|| MessagingError::MalformedMessage("reply has no `_msg_id`".into()))?;
        let ending = self
            .ending
            .as_ref()
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let result = self.result.unwrap_or(Value::Null);
        let event = match string_entry("failure", self.failure)? {
            Some(failure) => ReplyEvent::Failure(decode_failure(&failure)?),
            None if !ending && result.is_null() => ReplyEvent::Heartbeat,
            None => ReplyEvent::Result {
                value: result,
                ending,
            },
        };
        Ok(ReplyMessage {
            msg_id,
            event,
            unique_id: string_entry("_unique_id", self.unique_id)?,
            signature: string_entry(SIGNATURE_KEY, self.signature)?,
        })
    }
}

/// A reply message to send, borrowing its parts, so that encoding copies nothing (not the
/// result): the rabbit driver sends a server's [`Reply`] with its own ids as one.
#[derive(Debug, Clone, Copy)]
pub struct OutgoingReply<'a> {
    /// The `_msg_id` of the call this answers.
    pub msg_id: &'a str,
    /// What it says.
    pub event: &'a ReplyEvent,
    /// `_unique_id`.
    pub unique_id: Option<&'a str>,
    /// `_signature`, when the server signs.
    pub signature: Option<&'a str>,
}

impl OutgoingReply<'_> {
    /// The reply in the `2.0` envelope, as bytes.
    pub fn encode(&self) -> Result<Vec<u8>> {
        Ok(to_envelope(self)?)
    }
}

impl Serialize for OutgoingReply<'_> {
    /// The inner message dict, keys in oslo's order:
    /// `result, failure, ending, _msg_id, [_unique_id], [_signature]`.
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let (result, failure, ending) = match self.event {
            ReplyEvent::Heartbeat => (&Value::Null, None, false),
            ReplyEvent::Result { value, ending } => (value, None, *ending),
            ReplyEvent::Failure(failure) => {
                let failure = encode_failure(failure).map_err(S::Error::custom)?;
                (&Value::Null, Some(failure), true)
            }
        };
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("result", result)?;
        map.serialize_entry("failure", &failure)?;
        map.serialize_entry("ending", &ending)?;
        map.serialize_entry("_msg_id", self.msg_id)?;
        if let Some(unique_id) = self.unique_id {
            map.serialize_entry("_unique_id", unique_id)?;
        }
        if let Some(signature) = self.signature {
            map.serialize_entry(SIGNATURE_KEY, signature)?;
        }
        map.end()
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
