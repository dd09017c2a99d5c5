//! Draws the dashboard's panels to one PNG from a real Prometheus: the demo service (release build) serves its
//! metrics for a scrape, Prometheus scrapes it every second while a load with a rising and falling rate runs, and
//! each panel's queries are read back with `query_range` and drawn as Grafana would (same queries, same legends).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use otlp_testkit::Prometheus;
use plotters::prelude::*;

use super::panels::{OWNER_VARIABLES, Panel, ROWS};
use crate::service::{self, Client, Service};

const JOB: &str = "otlp-demo";
const RATE_INTERVAL: &str = "5s";

/// `query_range` with a 1 s step: each series' legend (from `legend`) and its points (seconds from `start`).
fn range(
    prometheus: &Prometheus,
    expr: &str,
    legend: &str,
    start: f64,
    end: f64,
) -> Result<Vec<Series>, String> {
    let result = prometheus
        .query_range(expr, start, end, 1.0)
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for series in &result {
        let mut name = legend.to_owned();
        if let Some(labels) = series["metric"].as_object() {
            for (k, l) in labels {
                name = name.replace(&format!("{{{{{k}}}}}"), l.as_str().unwrap_or(""));
            }
        }
        let points = series["values"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| {
                let t = p[0].as_f64()?;
                let y: f64 = p[1].as_str()?.parse().ok()?;
                y.is_finite().then_some((t - start, y))
            })
            .collect();
        out.push((name, points));
    }
    Ok(out)
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn filled(expr: &str) -> String {
    let mut e = expr
        .replace("$__rate_interval", RATE_INTERVAL)
        .replace("$job", JOB);
    for (name, _, _) in OWNER_VARIABLES {
        e = e.replace(&format!("${name}"), ".*");
    }
    e
}

/// The load: `clients` keep-alive connections for `seconds`, the rate rising to its peak at the middle and
/// falling (a pause between requests that shrinks, then grows), one ingest in ten requests.
fn load(addr: SocketAddr, seconds: u64) {
    let run = Duration::from_secs(seconds);
    let start = Instant::now();
    std::thread::scope(|s| {
        for client in 0..6 {
            s.spawn(move || {
                let id = format!("client-{client}");
                let Ok(mut c) = Client::connect(addr) else {
                    return;
                };
                let mut n = 0u64;
                while start.elapsed() < run {
                    n += 1;
                    let phase = start.elapsed().as_secs_f64() / run.as_secs_f64();
                    let pause = (2.0 * (phase - 0.5)).abs() * 4.0; // ms: 4 at the ends, 0 at the middle
                    std::thread::sleep(Duration::from_secs_f64(pause / 1e3));
                    let r = if n.is_multiple_of(10) {
                        c.request(
                            "POST",
                            "/api/ingest",
                            &[],
                            "A-1,2,150\nB-2,0,300\nnot a record\n",
                        )
                    } else {
                        c.request(
                            "GET",
                            &format!("/api/orders/{n}"),
                            &[("x-client-id", &id)],
                            "",
                        )
                    };
                    if r.is_err() {
                        match Client::connect(addr) {
                            Ok(fresh) => c = fresh,
                            Err(_) => return,
                        }
                    }
                }
            });
        }
    });
}

/// Builds and starts the demo and Prometheus, runs the load, draws `out`.
pub fn run(root: &Path, out: &Path, seconds: u64) -> Result<(), String> {
    crate::fonts::register()?;
    let bin = service::build(root)?;
    let dir = service::scratch(root, "dashboard")?;
    let env: Vec<(String, String)> = [
        ("OTEL_METRICS_EXPORTER", "prometheus"),
        ("OTEL_TRACES_EXPORTER", "none"),
        ("RUST_LOG", "warn"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let args: Vec<String> = [
        "--prometheus",
        "127.0.0.1:0",
        "--downstream-permits",
        "4",
        "--downstream-latency-ms",
        "2",
        "--client-rps",
        "150",
        "--runtime-threads",
        "1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let demo = Service::start(&bin, &args, &env)?;
    let scrape = demo
        .prometheus
        .ok_or("otlp-demo printed no prometheus line")?;
    let prometheus = Prometheus::start(&dir, JOB, scrape).map_err(|e| e.to_string())?;
    println!(
        "    load for {seconds} s against http://{}, scraped by Prometheus every second",
        demo.addr
    );
    let start = now();
    load(demo.addr, seconds);
    std::thread::sleep(Duration::from_millis(2500));
    let end = now();

    let mut charts = Vec::new();
    for row in ROWS {
        for panel in row.panels {
            let mut series = Vec::new();
            for t in panel.targets {
                series.extend(range(&prometheus, &filled(t.expr), t.legend, start, end)?);
            }
            charts.push((row.title, panel, series));
        }
    }
    drop(prometheus);
    demo.stop()?;
    draw(out, &charts, end - start)
}

/// A legend and its points (seconds from the start, value).
type Series = (String, Vec<(f64, f64)>);
/// A row's title, a panel and its series.
type Chart<'a> = (&'static str, &'a Panel, Vec<Series>);

/// Scales a panel's values for display: seconds as milliseconds, ratios as percent.
fn scale(unit: &str) -> (f64, &'static str) {
    match unit {
        "s" => (1e3, "ms"),
        "percentunit" => (100.0, "%"),
        "ops" => (1.0, "/s"),
        _ => (1.0, ""),
    }
}

fn draw(out: &Path, charts: &[Chart<'_>], span: f64) -> Result<(), String> {
    let columns = 4;
    let rows = charts.len().div_ceil(columns);
    let area = BitMapBackend::new(out, (1800, 340 * rows as u32 + 50)).into_drawing_area();
    area.fill(&WHITE).map_err(|e| e.to_string())?;
    let (title, body) = area.split_vertically(50);
    title
        .titled(
            "otlp-kit dashboard: the demo service under a rising and falling load, scraped by Prometheus",
            ("sans-serif", 24),
        )
        .map_err(|e| e.to_string())?;
    let palette: [RGBColor; 8] = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(127, 127, 127),
    ];
    for (cell, (row, panel, series)) in body.split_evenly((rows, columns)).iter().zip(charts) {
        let (factor, suffix) = scale(panel.unit);
        let top = series
            .iter()
            .flat_map(|(_, p)| p.iter().map(|(_, y)| y * factor))
            .fold(0.0, f64::max);
        let top = if top > 0.0 { top * 1.15 } else { 1.0 };
        let mut chart = ChartBuilder::on(cell)
            .caption(format!("{row} · {}", panel.title), ("sans-serif", 17))
            .margin(8)
            .x_label_area_size(24)
            .y_label_area_size(56)
            .build_cartesian_2d(0.0..span, 0.0..top)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_labels(5)
            .y_labels(5)
            .x_label_formatter(&|x| format!("{x:.0} s"))
            .y_label_formatter(&|y| {
                let n = format!("{y:.3}");
                format!("{} {suffix}", n.trim_end_matches('0').trim_end_matches('.'))
            })
            .label_style(("sans-serif", 12))
            .draw()
            .map_err(|e| e.to_string())?;
        for (i, (name, points)) in series.iter().enumerate() {
            let color = palette[i % palette.len()];
            chart
                .draw_series(LineSeries::new(
                    points.iter().map(|(x, y)| (*x, y * factor)),
                    color.stroke_width(2),
                ))
                .map_err(|e| e.to_string())?
                .label(name.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 14, y)], color.stroke_width(2))
                });
        }
        if series.iter().any(|(_, p)| !p.is_empty()) {
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK.mix(0.3))
                .label_font(("sans-serif", 11))
                .draw()
                .map_err(|e| e.to_string())?;
        }
    }
    area.present()
        .map_err(|e| format!("{}: {e}", out.display()))?;
    println!("wrote {}", out.display());
    Ok(())
}

/// Where the picture goes.
pub fn png_path(root: &Path) -> PathBuf {
    root.join("docs/dashboards/otlp-kit.png")
}
