#[messaging_macros::service(crate = "messaging_core", version = "1.2")]
pub trait Scheduler {
    #[since = "1.3"]
    async fn ping(&self, ctx: messaging_core::Context);
}

fn main() {}
