include!("common/scheduler.rs");

async fn use_it(sched: SchedulerClient, ctx: Context) {
    let hosts: Result<u32, _> = sched.select_host(&ctx, "m1.small".into(), 2).await;
    let _ = hosts;
}

fn main() {}
