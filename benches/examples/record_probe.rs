//! A duration record of otlp-kit's owners, plain against bound, outside criterion, for `valgrind --tool=callgrind`
//! (instructions per record) with a live SDK meter provider, as in the benches.
//!
//! `cargo run --release -p otlp-benches --example record_probe -- <install> <what> [calls]`, where `<install>` is
//! `plain` (`opentelemetry::global::set_meter_provider`: records take `Histogram::record`) or `bound`
//! (`otlp_telemetry::install_meter_provider`: records take a bound handle), and `<what>` is `record` (one
//! `Recorder::record` with a fan-out's attribute set) or `fanout` (a fan-out call of 3 ready items, one duration
//! record each, on a current-thread runtime). Per call: run it with `calls` and `2 × calls` under callgrind and
//! divide the difference of the totals by `calls`.

use std::hint::black_box;

use opentelemetry::KeyValue;
use otlp_core::instruments::{Attributes, HistogramSpec, Scope};
use otlp_patterns::FanOut;

static SCOPE: Scope = Scope::new(
    "record-probe",
    "0",
    &[],
    &[HistogramSpec {
        name: "probe.duration",
        unit: "s",
        description: "",
        boundaries: &[0.001, 0.01, 0.1, 1.0],
    }],
);

fn main() {
    let mut args = std::env::args().skip(1);
    let install = args.next().unwrap_or_else(|| "bound".into());
    let what = args.next().unwrap_or_else(|| "record".into());
    let calls: u64 = args.next().and_then(|n| n.parse().ok()).unwrap_or(100_000);
    let (provider, _exporter) = otlp_benches::meter_provider();
    match install.as_str() {
        "plain" => opentelemetry::global::set_meter_provider(provider.clone()),
        "bound" => otlp_telemetry::install_meter_provider(provider.clone()),
        other => panic!("unknown install {other}: plain or bound"),
    }
    match what.as_str() {
        "record" => {
            let registration = SCOPE.link(None);
            let recorder = registration.recorder(
                0,
                &Attributes::new(vec![KeyValue::new("fan_out.name", "probe")]),
            );
            for i in 0..calls {
                recorder.record(black_box(i as f64 * 1e-6));
            }
        }
        "fanout" => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .build()
                .expect("runtime");
            let fan = FanOut::new("probe", 3).expect("valid fan-out");
            rt.block_on(async {
                for _ in 0..calls {
                    let out = fan.run(0..3u64, |i| async move { black_box(i) }).await;
                    black_box(out);
                }
            });
        }
        other => panic!("unknown what {other}: record or fanout"),
    }
    let _ = provider.shutdown();
}
