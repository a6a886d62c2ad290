//! Typed services: the runtime behind `#[messaging::service]`, `#[derive(RemoteException)]`
//! and `#[derive(Event)]` (crate `messaging-macros`, re-exported by the `messaging` facade).
//!
//! A service is one Rust trait. The macro turns it into a typed client (a thin wrapper over
//! [`RpcClient`](crate::RpcClient)) and a server adapter (an [`RpcEndpoint`](crate::RpcEndpoint)), plus a static
//! [`ServiceInfo`] describing it. Everything those generated items do is here, once:
//!
//! - [`Args`] and [`KwArgs`]: parameters as oslo keyword arguments, checked as Python checks a
//!   call (unknown or missing names are a `TypeError` remote error);
//! - [`call`] / [`cast`]: per-method `since` versions, refused before sending above the
//!   client's version cap; failures of the method's declared error type come back as that type
//!   in [`CallError::Service`], everything else in [`CallError::Messaging`];
//! - [`RemoteException`]: an application error that travels as an oslo failure (class, module,
//!   message, kwargs), so Python sees an ordinary remote exception;
//! - [`Event`]: a notification payload type that names its event type and priority, sent with
//!   [`Notifier::emit`](crate::Notifier::emit) and received with
//!   [`NotificationEndpoint::on_event`](crate::NotificationEndpoint::on_event);
//! - [`AsyncApi`]: an AsyncAPI 3.0 document of services and events, schemas by `schemars`.
//!
//! The dynamic string API ([`RpcClient::call`](crate::RpcClient::call),
//! [`Endpoint`](crate::Endpoint)) stays underneath, for services whose API is defined
//! elsewhere (Python) and for tools such as `omsg`.

mod args;
mod asyncapi;
mod client;
mod error;
mod event;
mod server;

pub use args::{Args, KwArgs};
pub use asyncapi::AsyncApi;
pub use client::{call, call_infallible, cast};
pub use error::{exception, kwarg, CallError, RemoteException};
pub use event::Event;
pub use server::{accept, has_method, reply, reply_infallible};

pub use schemars::{JsonSchema, Schema, SchemaGenerator};

/// What generated code needs from crates the user may not depend on directly.
#[doc(hidden)]
pub mod __private {
    pub use async_trait::async_trait;
    pub use serde_json::{Map, Value};
}

/// Builds the JSON schema of one type (a parameter, a result, an exception field).
pub type SchemaFn = fn(&mut SchemaGenerator) -> Schema;

/// The [`SchemaFn`] of `T`.
pub fn schema_of<T: JsonSchema + ?Sized>(generator: &mut SchemaGenerator) -> Schema {
    generator.subschema_for::<T>()
}

/// A typed service, as the `#[service]` macro describes its trait.
#[derive(Debug)]
pub struct ServiceInfo {
    /// The trait's name, e.g. `Scheduler`.
    pub name: &'static str,
    /// The trait's documentation.
    pub doc: &'static str,
    /// The endpoint namespace (`None`: requests name none).
    pub namespace: Option<&'static str>,
    /// The API version the server implements, `X.Y`.
    pub version: &'static str,
    /// The methods, in declaration order.
    pub methods: &'static [MethodInfo],
}

impl ServiceInfo {
    /// The method called `name`.
    pub fn method(&self, name: &str) -> Option<&'static MethodInfo> {
        self.methods.iter().find(|m| m.name == name)
    }
}

/// One method of a typed service.
#[derive(Debug)]
pub struct MethodInfo {
    /// The method (oslo's method name on the wire).
    pub name: &'static str,
    /// `Trait.method`, as Python's `__qualname__` names it in a `TypeError`.
    pub qualname: &'static str,
    /// The method's documentation.
    pub doc: &'static str,
    /// The version that introduced it: the version its requests carry.
    pub since: &'static str,
    /// The keyword arguments (the context is not one).
    pub params: &'static [ParamInfo],
    /// The result's schema.
    pub result: SchemaFn,
    /// The remote exceptions it declares (empty: none, or any with
    /// [`RemoteError`](crate::RemoteError)).
    pub errors: &'static [ExceptionInfo],
}

/// A keyword argument of a method, or a keyword argument (field) of an exception.
#[derive(Debug)]
pub struct ParamInfo {
    /// The keyword name.
    pub name: &'static str,
    /// False for `Option<T>` parameters: the caller may omit them.
    pub required: bool,
    /// The value's schema.
    pub schema: SchemaFn,
}

/// One exception class a [`RemoteException`] type stands for.
#[derive(Debug)]
pub struct ExceptionInfo {
    /// The Python class name.
    pub class: &'static str,
    /// The module, dotted (`nova.exception`) or a Rust module path (`::` becomes `.`).
    pub module: &'static str,
    /// Its keyword arguments.
    pub fields: &'static [ParamInfo],
}

impl ExceptionInfo {
    /// The module as Python writes it.
    pub fn python_module(&self) -> String {
        self.module.replace("::", ".")
    }
}
