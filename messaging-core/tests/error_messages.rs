//! Errors that say what happened and what to do: a dispatch error or a timeout names the
//! call's topic, exchange, server, namespace and version; a server that has the method
//! elsewhere says where; a call nobody took does not read like a lost reply.

use std::time::Duration;

use messaging_core::*;

fn vhost(name: &str) -> String {
    format!("memory:///{name}-{}", &wire::new_id()[..8])
}

async fn scheduler(transport: &RpcTransport) -> ServiceHandle {
    let select_host = |_ctx: Context, _: NoArgs| async { Ok::<_, RemoteError>("host1") };
    let sleep = |_ctx: Context, _: NoArgs| async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        Ok::<_, RemoteError>(())
    };
    RpcServer::new(transport.clone(), Target::topic("sched").server("host1"))
        .endpoint(Endpoint::new().method("sleep", sleep))
        .endpoint(
            Endpoint::new()
                .namespace("scheduler")
                .version("1.2")
                .method("select_host", select_host),
        )
        .start()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_call_in_the_wrong_namespace_learns_where_the_method_is() {
    let rpc = get_rpc_transport(&vhost("errors")).await.unwrap();
    let server = scheduler(&rpc).await;
    let client = RpcClient::new(rpc, Target::topic("sched")).timeout(Duration::from_secs(10));
    let ctx = Context::new();

    let error = client
        .call::<String>(&ctx, "select_host", &NoArgs {})
        .await
        .unwrap_err();
    let MessagingError::NoSuchMethod { remote, call, .. } = &error else {
        panic!("{error:?}")
    };
    assert_eq!(
        error.to_string(),
        "no such RPC method: `select_host` on topic `sched` (exchange `openstack`, any server, \
         no namespace, version 1.0); the server says: Endpoint does not support RPC method \
         select_host; this server has `select_host` in namespace `scheduler` at version 1.2"
    );
    assert_eq!(call.as_ref().unwrap().method, "select_host");
    // oslo's failure, as Python deserializes it: class, module, and the message as its one arg.
    assert_eq!(
        (remote.class.as_str(), remote.module.as_str()),
        ("NoSuchMethod", "oslo_messaging.rpc.dispatcher")
    );
    assert_eq!(
        remote.args,
        [serde_json::Value::from(remote.message.clone())]
    );

    let error = client
        .prepare()
        .namespace("scheduler")
        .version("2.0")
        .server("host1")
        .call::<String>(&ctx, "select_host", &NoArgs {})
        .await
        .unwrap_err();
    assert!(
        matches!(error, MessagingError::UnsupportedVersion { .. }),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "unsupported RPC version 2.0: `select_host` on topic `sched` (exchange `openstack`, \
         server `host1`, namespace `scheduler`, version 2.0); the server says: Endpoint does \
         not support RPC version 2.0. Attempted method: select_host; this server has \
         `select_host` in namespace `scheduler` at version 1.2"
    );

    let right: String = client
        .prepare()
        .namespace("scheduler")
        .call(&ctx, "select_host", &NoArgs {})
        .await
        .unwrap();
    assert_eq!(right, "host1");
    server.shutdown().await;
}

#[tokio::test]
async fn a_call_nobody_takes_says_no_server_took_it() {
    let rpc = get_rpc_transport(&vhost("nobody")).await.unwrap();
    let client = RpcClient::new(rpc, Target::topic("nobody").server("ghost"))
        .timeout(Duration::from_millis(500));
    let error = client
        .call::<()>(&Context::new(), "echo", &NoArgs {})
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            MessagingError::Timeout {
                delivered: false,
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "no server took the call `echo` on topic `nobody` (exchange `openstack`, server \
         `ghost`, no namespace, version 1.0) within 0.5 s"
    );
}

#[tokio::test]
async fn a_call_left_unanswered_says_no_reply_came() {
    let rpc = get_rpc_transport(&vhost("slow")).await.unwrap();
    let server = scheduler(&rpc).await;
    let client = RpcClient::new(rpc, Target::topic("sched")).timeout(Duration::from_millis(300));
    let error = client
        .call::<()>(&Context::new(), "sleep", &NoArgs {})
        .await
        .unwrap_err();
    let MessagingError::Timeout {
        msg_id,
        delivered: true,
        ..
    } = &error
    else {
        panic!("{error:?}")
    };
    assert_eq!(
        error.to_string(),
        format!(
            "no reply within 0.3 s to the call `sleep` on topic `sched` (exchange `openstack`, \
             any server, no namespace, version 1.0) (message ID {msg_id}): it was sent, but \
             no server answered in time"
        )
    );
    server.shutdown().await;
}

#[tokio::test]
async fn pings_name_the_server_when_asked() {
    let rpc = get_rpc_transport(&vhost("ping")).await.unwrap();
    let server = RpcServer::new(rpc.clone(), Target::topic("t").server("host7"))
        .enable_ping(true)
        .start()
        .await
        .unwrap();
    let client = RpcClient::new(rpc, Target::topic("t"));
    let ctx = Context::new();
    let bare: String = client.call(&ctx, PING_METHOD, &NoArgs {}).await.unwrap();
    assert_eq!(bare, "pong", "as oslo's ping endpoint");
    let named: serde_json::Value = client
        .call(
            &ctx,
            PING_METHOD,
            &serde_json::json!({ PING_IDENTIFY_ARG: true }),
        )
        .await
        .unwrap();
    assert_eq!(
        named,
        serde_json::json!({"answer": "pong", "server": "host7"})
    );
    server.shutdown().await;
}
