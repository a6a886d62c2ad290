// The service every compile-fail case uses (included, not a case itself).
use messaging_core::Context;

#[derive(Debug, thiserror::Error, messaging_macros::RemoteException)]
#[remote(crate = "messaging_core")]
#[error("no valid host: {reason}")]
pub struct NoValidHost {
    reason: String,
}

#[messaging_macros::service(crate = "messaging_core", namespace = "sched", version = "1.2")]
pub trait Scheduler {
    async fn select_host(&self, ctx: Context, flavor: String, count: u32) -> Result<Vec<String>, NoValidHost>;
    #[since = "1.1"]
    async fn ping(&self, ctx: Context);
}
