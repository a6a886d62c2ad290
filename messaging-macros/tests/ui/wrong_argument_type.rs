include!("common/scheduler.rs");

async fn use_it(sched: SchedulerClient, ctx: Context) {
    let _ = sched.select_host(&ctx, "m1.small".into(), "two").await;
}

fn main() {}
