//! RPC: the [`RpcClient`], the [`RpcServer`] and endpoints.

mod client;
mod endpoint;
mod server;
mod spans;

pub use client::{RpcClient, DEFAULT_TIMEOUT};
pub use endpoint::{Endpoint, NoArgs, RpcEndpoint, PING_IDENTIFY_ARG, PING_METHOD};
pub use server::{RpcServer, DEFAULT_MAX_CONCURRENCY};
