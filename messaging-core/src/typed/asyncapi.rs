//! An AsyncAPI 3.0 document of typed services and events, from the same definitions the
//! clients and servers are generated from.

use schemars::generate::SchemaSettings;
use serde_json::{json, Map, Value};

use super::{Event, ExceptionInfo, MethodInfo, ParamInfo, SchemaFn, SchemaGenerator, ServiceInfo};

/// Builds an AsyncAPI 3.0 document: for each service, a channel for its topic with one
/// request message per method (the oslo message: `method`, `args`, `namespace`, `version`,
/// `_context_*`), a reply channel and a `receive` operation with a reply; for each event, a
/// channel `<topic>.<priority>` and a `send` operation. Payload schemas are JSON Schema
/// (draft 7, AsyncAPI's default schema format) made by `schemars`, shared ones under
/// `components/schemas`. oslo specifics are in `x-oslo-*` extensions: method name, `since`
/// version, namespace, declared exceptions.
///
/// ```
/// use messaging_core::typed::AsyncApi;
///
/// let document = AsyncApi::new("scheduler", "1.2").to_json();
/// assert_eq!(document["asyncapi"], "3.0.0");
/// ```
pub struct AsyncApi {
    info: Map<String, Value>,
    generator: SchemaGenerator,
    channels: Map<String, Value>,
    operations: Map<String, Value>,
    messages: Map<String, Value>,
}

impl AsyncApi {
    /// An empty document with this title and version (of the application, not of a service).
    pub fn new(title: &str, version: &str) -> Self {
        let settings = SchemaSettings::draft07().with(|s| {
            s.definitions_path = "/components/schemas".into();
            s.meta_schema = None;
        });
        let mut info = Map::new();
        info.insert("title".into(), title.into());
        info.insert("version".into(), version.into());
        Self {
            info,
            generator: settings.into_generator(),
            channels: Map::new(),
            operations: Map::new(),
            messages: Map::new(),
        }
    }

    /// Add a description of the application.
    pub fn description(mut self, text: &str) -> Self {
        self.info.insert("description".into(), text.into());
        self
    }

    /// Describe `service`, served on `topic`.
    pub fn service(mut self, service: &ServiceInfo, topic: &str) -> Self {
        let reply_channel = format!("{topic}.reply");
        let mut requests = Map::new();
        let mut replies = Map::new();
        for method in service.methods {
            let request = format!("{}.{}.request", service.name, method.name);
            let reply = format!("{}.{}.reply", service.name, method.name);
            let request_message = self.request_message(service, method);
            let reply_message = self.reply_message(method);
            self.messages.insert(request.clone(), request_message);
            self.messages.insert(reply.clone(), reply_message);
            requests.insert(method.name.into(), component_ref("messages", &request));
            replies.insert(method.name.into(), component_ref("messages", &reply));
            let exceptions = self.exceptions(method.errors);
            let mut operation = json!({
                "action": "receive",
                "title": method.name,
                "channel": channel_ref(topic, None),
                "messages": [channel_ref(topic, Some(method.name))],
                "reply": {
                    "address": {
                        "location": "$message.payload#/_reply_q",
                        "description": "The caller's reply queue (calls only; a cast has none)."
                    },
                    "channel": channel_ref(&reply_channel, None),
                    "messages": [channel_ref(&reply_channel, Some(method.name))]
                },
                "x-oslo-method": method.name,
                "x-oslo-since": method.since,
                "x-oslo-namespace": service.namespace,
                "x-oslo-exceptions": exceptions
            });
            if !method.doc.is_empty() {
                operation["description"] = method.doc.into();
            }
            self.operations
                .insert(format!("{}.{}", service.name, method.name), operation);
        }
        let description = format!(
            "Requests to the {} service (API version {}): routing key `{topic}` (any server) \
             or `{topic}.<server>` on the control exchange, exchange `{topic}_fanout` for fanout \
             casts. Bodies are oslo.messaging 2.0 envelopes {{\"oslo.version\": \"2.0\", \
             \"oslo.message\": <the payload, as a JSON string>}}. {}",
            service.name, service.version, service.doc
        );
        self.channels.insert(
            topic.into(),
            json!({"address": topic, "description": description.trim_end(), "messages": requests,
                   "x-oslo-version": service.version}),
        );
        self.channels.insert(
            reply_channel,
            json!({"address": null, "description": "The caller's reply queue, named by the request's `_reply_q`.",
                   "messages": replies}),
        );
        self
    }

    /// Describe notifications of `E`, sent to `topic` (oslo's default: `notifications`).
    pub fn event<E: Event>(mut self, topic: &str) -> Self {
        let address = format!("{topic}.{}", E::PRIORITY.as_str());
        let payload = self.schema(super::schema_of::<E>);
        let message = json!({
            "name": E::EVENT_TYPE,
            "title": E::EVENT_TYPE,
            "payload": {
                "type": "object",
                "description": "The oslo notification (messagingv2: inside the 2.0 envelope).",
                "required": ["message_id", "publisher_id", "event_type", "priority", "payload", "timestamp"],
                "properties": {
                    "message_id": {"type": "string"},
                    "publisher_id": {"type": "string"},
                    "event_type": {"const": E::EVENT_TYPE},
                    "priority": {"const": E::PRIORITY.as_upper_str()},
                    "payload": payload,
                    "timestamp": {"type": "string"}
                }
            }
        });
        self.messages.insert(E::EVENT_TYPE.into(), message);
        let channel = self
            .channels
            .entry(address.clone())
            .or_insert_with(|| json!({"address": address, "messages": {}}));
        channel["messages"][E::EVENT_TYPE] = component_ref("messages", E::EVENT_TYPE);
        self.operations.insert(
            E::EVENT_TYPE.into(),
            json!({
                "action": "send",
                "title": E::EVENT_TYPE,
                "channel": channel_ref(&address, None),
                "messages": [channel_ref(&address, Some(E::EVENT_TYPE))],
                "x-oslo-event-type": E::EVENT_TYPE,
                "x-oslo-priority": E::PRIORITY.as_str()
            }),
        );
        self
    }

    /// The document.
    pub fn to_json(mut self) -> Value {
        let schemas = self.generator.take_definitions(true);
        json!({
            "asyncapi": "3.0.0",
            "info": self.info,
            "defaultContentType": "application/json",
            "channels": self.channels,
            "operations": self.operations,
            "components": {"messages": self.messages, "schemas": schemas}
        })
    }

    fn request_message(&mut self, service: &ServiceInfo, method: &MethodInfo) -> Value {
        let args = self.object_schema(method.params);
        let mut properties = json!({
            "method": {"const": method.name},
            "args": args,
            "version": {
                "type": "string",
                "description": format!("At least {} (the method's `since`), at most {}.", method.since, service.version)
            },
            "_msg_id": {"type": "string", "description": "Calls only: correlates the reply."},
            "_reply_q": {"type": "string", "description": "Calls only: where the reply goes."},
            "_unique_id": {"type": "string"}
        });
        let mut required = vec!["method", "args"];
        if let Some(namespace) = service.namespace {
            properties["namespace"] = json!({"const": namespace});
            required.push("namespace");
        }
        json!({
            "name": method.name,
            "title": format!("{}.{}", service.name, method.name),
            "summary": first_line(method.doc),
            "payload": {
                "type": "object",
                "description": "The oslo RPC request; the caller's context travels as `_context_<key>` entries.",
                "required": required,
                "properties": properties,
                "patternProperties": {"^_context_": {}}
            }
        })
    }

    fn reply_message(&mut self, method: &MethodInfo) -> Value {
        let result = self.schema(method.result);
        json!({
            "name": format!("{}.reply", method.name),
            "payload": {
                "type": "object",
                "required": ["result", "failure", "ending", "_msg_id"],
                "properties": {
                    "result": result,
                    "failure": {
                        "type": ["string", "null"],
                        "description": "On failure: the JSON text of {class, module, message, tb, args, kwargs} (see x-oslo-exceptions)."
                    },
                    "ending": {"type": "boolean"},
                    "_msg_id": {"type": "string"}
                }
            }
        })
    }

    /// The declared exceptions: class, module and the schema of their kwargs.
    fn exceptions(&mut self, errors: &[ExceptionInfo]) -> Value {
        errors
            .iter()
            .map(|e| {
                json!({"class": e.class, "module": e.python_module(), "kwargs": self.object_schema(e.fields)})
            })
            .collect()
    }

    /// An object with one property per parameter; the non-optional ones are required.
    fn object_schema(&mut self, params: &[ParamInfo]) -> Value {
        let properties: Map<String, Value> = params
            .iter()
            .map(|p| (p.name.to_owned(), self.schema(p.schema)))
            .collect();
        let required: Vec<&str> = super::args::required(params).map(|p| p.name).collect();
        json!({"type": "object", "properties": properties, "required": required,
               "additionalProperties": false})
    }

    /// A schema, with the draft-7 transforms applied (definitions get them in `to_json`).
    fn schema(&mut self, schema: SchemaFn) -> Value {
        let mut schema = schema(&mut self.generator);
        for transform in self.generator.transforms_mut() {
            transform.transform(&mut schema);
        }
        schema.to_value()
    }
}

fn first_line(doc: &str) -> &str {
    doc.lines().next().unwrap_or_default().trim()
}

/// A reference to `#/components/<kind>/<name>`.
fn component_ref(kind: &str, name: &str) -> Value {
    json!({"$ref": format!("#/components/{kind}/{}", escape(name))})
}

/// A reference to a channel, or to one of its messages.
fn channel_ref(channel: &str, message: Option<&str>) -> Value {
    let mut pointer = format!("#/channels/{}", escape(channel));
    if let Some(message) = message {
        pointer.push_str("/messages/");
        pointer.push_str(&escape(message));
    }
    json!({ "$ref": pointer })
}

/// A JSON pointer token (RFC 6901).
fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}
