include!("common/scheduler.rs");

async fn use_it(sched: SchedulerClient, ctx: Context) {
    let _ = sched.select_hots(&ctx, "m1.small".into(), 2).await;
}

fn main() {}
