//! Typed remote errors: an application error type that travels as an oslo failure, and the
//! error of a typed call, which keeps it apart from messaging failures.

use serde::Serialize;
use serde_json::{Map, Value};

use super::ExceptionInfo;
use crate::error::{MessagingError, RemoteError};

/// An application error that crosses the wire as an oslo remote exception: the class name,
/// module, `str()` message and keyword arguments Python's `serialize_remote_exception` sends.
///
/// Derive it with `#[derive(RemoteException)]` (on a struct: one class named after it; on an
/// enum: one class per variant), with the fields as the exception's keyword arguments and
/// `Display` as its message. A failure from a Python server whose class name is one of
/// [`EXCEPTIONS`](Self::EXCEPTIONS) and whose kwargs decode into the fields comes back as this
/// type, whatever its module.
///
/// [`RemoteError`] implements it for methods that may fail with any exception.
pub trait RemoteException: std::error::Error + Send + Sync + Sized + 'static {
    /// The classes this type stands for (empty: any class).
    const EXCEPTIONS: &'static [ExceptionInfo];

    /// The failure to send for this error.
    fn to_remote(&self) -> RemoteError;

    /// This type, if `remote` is one of its classes with keyword arguments it can decode.
    fn from_remote(remote: &RemoteError) -> Option<Self>;
}

impl RemoteException for RemoteError {
    const EXCEPTIONS: &'static [ExceptionInfo] = &[];

    fn to_remote(&self) -> RemoteError {
        self.clone()
    }

    fn from_remote(remote: &RemoteError) -> Option<Self> {
        Some(remote.clone())
    }
}

/// The failure for an exception of class `info`, with `message` and keyword arguments
/// `kwargs` (for derived [`RemoteException::to_remote`]). Declared errors are expected: the
/// server logs them quietly, as oslo's `expected_exceptions`.
pub fn exception(info: &ExceptionInfo, message: String, kwargs: Map<String, Value>) -> RemoteError {
    let mut remote = RemoteError::with_module(info.class, info.python_module(), message);
    remote.kwargs = kwargs;
    remote.expected()
}

/// A field of an exception as a keyword argument value. A field that cannot be serialized
/// travels as a description of the error rather than failing the whole reply.
pub fn kwarg(value: &(impl Serialize + ?Sized)) -> Value {
    serde_json::to_value(value).unwrap_or_else(|error| {
        tracing::warn!(%error, "an exception field does not serialize");
        Value::String(format!("<not serializable: {error}>"))
    })
}

/// The error of a typed call whose method declares the error type `E`.
#[derive(Debug, thiserror::Error)]
pub enum CallError<E> {
    /// The method failed with its declared error.
    #[error(transparent)]
    Service(E),
    /// Anything else: timeouts, connection failures, `NoSuchMethod`, version refusals, bad
    /// arguments, remote exceptions of other classes.
    #[error(transparent)]
    Messaging(#[from] MessagingError),
}

impl<E> CallError<E> {
    /// The declared error, if that is what happened.
    pub fn service(&self) -> Option<&E> {
        match self {
            Self::Service(error) => Some(error),
            Self::Messaging(_) => None,
        }
    }

    /// The messaging error, if that is what happened.
    pub fn messaging(&self) -> Option<&MessagingError> {
        match self {
            Self::Service(_) => None,
            Self::Messaging(error) => Some(error),
        }
    }
}

/// So that `?` works in functions returning the library's error: the declared error becomes
/// the remote failure it was sent as.
impl<E: RemoteException> From<CallError<E>> for MessagingError {
    fn from(error: CallError<E>) -> Self {
        match error {
            CallError::Service(error) => MessagingError::Remote(Box::new(error.to_remote())),
            CallError::Messaging(error) => error,
        }
    }
}

/// Sort a call's failure: a remote exception `E` recognises is `E`, the rest stays a
/// messaging error.
pub(super) fn classify<E: RemoteException>(error: MessagingError) -> CallError<E> {
    match error {
        MessagingError::Remote(remote) => match E::from_remote(&remote) {
            Some(error) => CallError::Service(error),
            None => CallError::Messaging(MessagingError::Remote(remote)),
        },
        other => CallError::Messaging(other),
    }
}
