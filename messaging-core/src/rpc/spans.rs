//! The `tracing` spans of calls, casts and their dispatch (see [`crate::telemetry`]): built
//! here, above the driver kit, because they name its addresses; telemetry itself stays below
//! the kit.

use std::fmt;

use tracing::field::Empty;
use tracing::{info_span, Span};

use crate::driver::{IncomingRequest, RpcAddress, ServerAddress};
use crate::telemetry::messaging_span;
use crate::telemetry::names::{SPAN_RPC_CALL, SPAN_RPC_CAST, SPAN_RPC_DISPATCH};
use crate::wire::RpcRequest;

/// The span of a call (`call`) or a cast.
pub(crate) fn rpc_send(
    call: bool,
    system: &'static str,
    address: &RpcAddress,
    request: &RpcRequest,
) -> Span {
    macro_rules! send_span {
        ($name:expr, $operation:literal, $kind:literal) => {
            messaging_span!(
                $name,
                $kind,
                system,
                ("send", $operation),
                messaging.destination.name = %RpcDestination(address),
                messaging.message.id = Empty,
                messaging.message.body.size = Empty,
                oslo.exchange = %address.exchange,
                oslo.topic = %address.topic,
                oslo.server = address.server.as_deref(),
                oslo.fanout = address.fanout,
                oslo.namespace = request.namespace.as_deref(),
                oslo.version = request.version.as_deref(),
                oslo.method = %request.method,
            )
        };
    }
    if call {
        send_span!(SPAN_RPC_CALL, "call", "client")
    } else {
        send_span!(SPAN_RPC_CAST, "cast", "producer")
    }
}

/// The span of a server's handling of `incoming`.
pub(crate) fn rpc_dispatch(
    system: &'static str,
    address: &ServerAddress,
    incoming: &IncomingRequest,
) -> Span {
    let request = &incoming.request;
    let call = incoming.reply.is_some();
    messaging_span!(
        SPAN_RPC_DISPATCH,
        if call { "server" } else { "consumer" },
        system,
        ("process", "dispatch"),
        messaging.destination.name = %address.topic,
        messaging.message.id = incoming.unique_id.as_deref(),
        oslo.exchange = %address.exchange,
        oslo.topic = %address.topic,
        oslo.server = %address.server,
        oslo.call = call,
        oslo.namespace = request.namespace.as_deref(),
        oslo.version = request.version.as_deref(),
        oslo.method = %request.method,
    )
}

/// `topic`, `topic.server` or `topic (fanout)`.
struct RpcDestination<'a>(&'a RpcAddress);

impl fmt::Display for RpcDestination<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let address = self.0;
        match (&address.server, address.fanout) {
            (_, true) => write!(f, "{} (fanout)", address.topic),
            (Some(server), false) => write!(f, "{}.{server}", address.topic),
            (None, false) => f.write_str(&address.topic),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rpc_destinations() {
        let mut address = RpcAddress {
            exchange: "openstack".into(),
            topic: "compute".into(),
            server: Some("host1".into()),
            fanout: false,
        };
        assert_eq!(RpcDestination(&address).to_string(), "compute.host1");
        address.fanout = true;
        assert_eq!(RpcDestination(&address).to_string(), "compute (fanout)");
    }
}
