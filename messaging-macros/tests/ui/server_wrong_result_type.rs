include!("common/scheduler.rs");

struct MyScheduler;

impl Scheduler for MyScheduler {
    async fn select_host(&self, _ctx: Context, _flavor: String, count: u32) -> Result<u32, NoValidHost> {
        Ok(count)
    }

    async fn ping(&self, _ctx: Context) {}
}

fn main() {}
