//! What typed server adapters do around the user's method: check the keyword arguments,
//! encode the result or the declared error.

use serde::Serialize;
use serde_json::{Map, Value};

use super::{KwArgs, MethodInfo, RemoteException, ServiceInfo};
use crate::error::RemoteError;

/// True if `service` has `method`.
pub fn has_method(service: &ServiceInfo, method: &str) -> bool {
    service.method(method).is_some()
}

/// The method a request names and its checked keyword arguments (see [`KwArgs::check`]).
pub fn accept(
    service: &ServiceInfo,
    method: &str,
    args: Map<String, Value>,
) -> Result<(&'static MethodInfo, KwArgs), RemoteError> {
    let info = service
        .method(method)
        .ok_or_else(|| RemoteError::no_such_method(method))?;
    Ok((info, KwArgs::check(info, args)?))
}

/// The reply for a method that declares an error type: its result, or its error as the
/// remote exception it stands for.
pub fn reply<T: Serialize, E: RemoteException>(
    outcome: Result<T, E>,
) -> Result<Value, RemoteError> {
    reply_infallible(outcome.map_err(|e| e.to_remote())?)
}

/// The reply for a method that declares no error type.
pub fn reply_infallible<T: Serialize>(result: T) -> Result<Value, RemoteError> {
    serde_json::to_value(result).map_err(RemoteError::from)
}
