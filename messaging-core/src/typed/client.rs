//! What typed clients send: each method at its `since` version, results decoded into the
//! declared type, failures sorted into the declared error or a messaging error.

use std::any::type_name;

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::error::classify;
use super::{Args, CallError, MethodInfo, RemoteException};
use crate::context::Context;
use crate::error::{MessagingError, Result};
use crate::rpc::RpcClient;

/// Call `method`: its request carries the method's `since` version, so a client whose
/// version cap is below it refuses with [`MessagingError::VersionCap`] before sending.
/// A failure of a class `E` declares comes back as [`CallError::Service`].
pub async fn call<R: DeserializeOwned, E: RemoteException>(
    client: &RpcClient,
    ctx: &Context,
    method: &MethodInfo,
    args: Args,
) -> Result<R, CallError<E>> {
    call_infallible(client, ctx, method, args)
        .await
        .map_err(classify)
}

/// [`call`] for a method that declares no error type.
pub async fn call_infallible<R: DeserializeOwned>(
    client: &RpcClient,
    ctx: &Context,
    method: &MethodInfo,
    args: Args,
) -> Result<R> {
    let value: Value = client
        .prepare()
        .version(method.since)
        .call(ctx, method.name, &args.into_map()?)
        .await?;
    serde_json::from_value(value).map_err(|e| {
        MessagingError::MalformedMessage(format!(
            "the reply to `{}` is not a {}: {e}",
            method.name,
            type_name::<R>()
        ))
    })
}

/// Cast `method` (to one server of the topic, the client's server, or every server when the
/// client fans out), at its `since` version.
pub async fn cast(
    client: &RpcClient,
    ctx: &Context,
    method: &MethodInfo,
    args: Args,
) -> Result<()> {
    client
        .prepare()
        .version(method.since)
        .cast(ctx, method.name, &args.into_map()?)
        .await
}
