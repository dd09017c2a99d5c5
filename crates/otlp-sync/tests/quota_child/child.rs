//! The fourth limiter of `tests/redis.rs`'s `four_limiters_share_one_quota`, in a process of its own:
//! `otlp-sync-quota-child <redis url> <rate per second> <milliseconds>` checks the shared key for that long and
//! prints `allowed=<count>`. A test-only binary: it is left out of the published package.

mod hammer;

use std::time::Duration;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, rate, millis] = args.as_slice() else {
        eprintln!("usage: otlp-sync-quota-child <redis url> <rate per second> <milliseconds>");
        std::process::exit(2);
    };
    let (Ok(rate), Ok(millis)) = (rate.parse(), millis.parse()) else {
        eprintln!("the rate and the milliseconds are whole numbers: {rate} {millis}");
        std::process::exit(2);
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let allowed = rt.block_on(hammer::hammer(url, rate, Duration::from_millis(millis)));
    println!("allowed={allowed}");
}
