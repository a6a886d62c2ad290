#[messaging_macros::service(crate = "messaging_core", version = "1.2")]
pub trait Scheduler {
    async fn select_host(&self, flavor: String) -> Vec<String>;
}

fn main() {}
