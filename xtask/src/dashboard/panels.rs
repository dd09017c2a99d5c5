//! The dashboard's panels, one row per family of owners, and the Grafana JSON made from them.
//!
//! Every query names Prometheus series the way `opentelemetry-prometheus` translates the instruments of
//! docs/metrics.md (dots to underscores, `_seconds` for unit `s`, `_total` on counters, `_bucket` for histogram
//! buckets, attribute keys as labels); the tests below check each name and label against that catalogue.

use serde_json::{Value, json};

/// One query of a panel: its PromQL (with `$job`, the owner variables and `$__rate_interval`) and legend.
pub struct Target {
    pub expr: &'static str,
    pub legend: &'static str,
}

/// A time-series panel.
pub struct Panel {
    pub title: &'static str,
    pub description: &'static str,
    /// Grafana's unit id (`percentunit`, `s`, `short`, `ops`).
    pub unit: &'static str,
    pub targets: &'static [Target],
}

/// A row of panels: one family of owners.
pub struct Row {
    pub title: &'static str,
    pub panels: &'static [Panel],
}

/// The template variables after `job`: (name, label, series that carries the label).
pub const OWNER_VARIABLES: &[(&str, &str, &str)] = &[
    ("pool", "pool_name", "pool_gets_total"),
    ("semaphore", "semaphore_name", "semaphore_permit_limit"),
    (
        "rate_limiter",
        "rate_limiter_name",
        "rate_limiter_decisions_total",
    ),
    ("worker_pool", "worker_pool_name", "worker_pool_tasks_total"),
    ("fan_out", "fan_out_name", "fan_out_tasks_total"),
    ("pipeline", "pipeline_name", "pipeline_items_total"),
];

macro_rules! t {
    ($expr:expr, $legend:expr) => {
        Target {
            expr: $expr,
            legend: $legend,
        }
    };
}

pub const ROWS: &[Row] = &[
    Row {
        title: "Pools",
        panels: &[
            Panel {
                title: "Reuse",
                description: "Share of gets served by an idle object (1 - misses / gets).",
                unit: "percentunit",
                targets: &[t!(
                    r#"1 - sum by (pool_name) (rate(pool_misses_total{job=~"$job", pool_name=~"$pool"}[$__rate_interval])) / sum by (pool_name) (rate(pool_gets_total{job=~"$job", pool_name=~"$pool"}[$__rate_interval]))"#,
                    "{{pool_name}}"
                )],
            },
            Panel {
                title: "Misses per second",
                description: "Gets that found no idle object and created one.",
                unit: "ops",
                targets: &[t!(
                    r#"sum by (pool_name) (rate(pool_misses_total{job=~"$job", pool_name=~"$pool"}[$__rate_interval]))"#,
                    "{{pool_name}}"
                )],
            },
            Panel {
                title: "Idle objects",
                description: "Objects kept for reuse, across every thread's cache and the shared store.",
                unit: "short",
                targets: &[t!(
                    r#"sum by (pool_name) (pool_idle{job=~"$job", pool_name=~"$pool"})"#,
                    "{{pool_name}}"
                )],
            },
        ],
    },
    Row {
        title: "Semaphores",
        panels: &[
            Panel {
                title: "Permits in use and limit",
                description: "Permits not free right now, against the total.",
                unit: "short",
                targets: &[
                    t!(
                        r#"sum by (semaphore_name) (semaphore_permit_usage{job=~"$job", semaphore_name=~"$semaphore"})"#,
                        "{{semaphore_name}} in use"
                    ),
                    t!(
                        r#"sum by (semaphore_name) (semaphore_permit_limit{job=~"$job", semaphore_name=~"$semaphore"})"#,
                        "{{semaphore_name}} limit"
                    ),
                ],
            },
            Panel {
                title: "Waiting acquires",
                description: "Acquires queued right now.",
                unit: "short",
                targets: &[t!(
                    r#"sum by (semaphore_name) (semaphore_acquire_waiting{job=~"$job", semaphore_name=~"$semaphore"})"#,
                    "{{semaphore_name}}"
                )],
            },
            Panel {
                title: "Wait P99",
                description: "99th percentile of the time acquires spent queued (those that had to wait).",
                unit: "s",
                targets: &[t!(
                    r#"histogram_quantile(0.99, sum by (le, semaphore_name) (rate(semaphore_wait_duration_seconds_bucket{job=~"$job", semaphore_name=~"$semaphore"}[$__rate_interval])))"#,
                    "{{semaphore_name}}"
                )],
            },
            Panel {
                title: "Hold P99",
                description: "99th percentile of how long a permit was held (semaphores built with \
                              record_hold_duration).",
                unit: "s",
                targets: &[t!(
                    r#"histogram_quantile(0.99, sum by (le, semaphore_name) (rate(semaphore_hold_duration_seconds_bucket{job=~"$job", semaphore_name=~"$semaphore"}[$__rate_interval])))"#,
                    "{{semaphore_name}}"
                )],
            },
        ],
    },
    Row {
        title: "Rate limiters",
        panels: &[Panel {
            title: "Allowed and throttled per second",
            description: "Decisions per second, by outcome.",
            unit: "ops",
            targets: &[t!(
                r#"sum by (rate_limiter_name, outcome) (rate(rate_limiter_decisions_total{job=~"$job", rate_limiter_name=~"$rate_limiter", outcome=~"allowed|throttled"}[$__rate_interval]))"#,
                "{{rate_limiter_name}} {{outcome}}"
            )],
        }],
    },
    Row {
        title: "Worker pools",
        panels: &[
            Panel {
                title: "Active and workers",
                description: "Workers running a task, against the workers alive.",
                unit: "short",
                targets: &[
                    t!(
                        r#"sum by (worker_pool_name) (worker_pool_worker_active{job=~"$job", worker_pool_name=~"$worker_pool"})"#,
                        "{{worker_pool_name}} active"
                    ),
                    t!(
                        r#"sum by (worker_pool_name) (worker_pool_worker_count{job=~"$job", worker_pool_name=~"$worker_pool"})"#,
                        "{{worker_pool_name}} workers"
                    ),
                ],
            },
            Panel {
                title: "Queue and capacity",
                description: "Tasks waiting in the queue, against the most it holds.",
                unit: "short",
                targets: &[
                    t!(
                        r#"sum by (worker_pool_name) (worker_pool_queue_size{job=~"$job", worker_pool_name=~"$worker_pool"})"#,
                        "{{worker_pool_name}} queued"
                    ),
                    t!(
                        r#"sum by (worker_pool_name) (worker_pool_queue_capacity{job=~"$job", worker_pool_name=~"$worker_pool"})"#,
                        "{{worker_pool_name}} capacity"
                    ),
                ],
            },
            Panel {
                title: "Task duration P50 and P99",
                description: "Run time of the tasks that started.",
                unit: "s",
                targets: &[
                    t!(
                        r#"histogram_quantile(0.5, sum by (le, worker_pool_name) (rate(worker_pool_task_duration_seconds_bucket{job=~"$job", worker_pool_name=~"$worker_pool"}[$__rate_interval])))"#,
                        "{{worker_pool_name}} P50"
                    ),
                    t!(
                        r#"histogram_quantile(0.99, sum by (le, worker_pool_name) (rate(worker_pool_task_duration_seconds_bucket{job=~"$job", worker_pool_name=~"$worker_pool"}[$__rate_interval])))"#,
                        "{{worker_pool_name}} P99"
                    ),
                ],
            },
            Panel {
                title: "Task outcomes per second",
                description: "Submissions by outcome (ok, error, panic, timeout, cancelled, rejected).",
                unit: "ops",
                targets: &[t!(
                    r#"sum by (worker_pool_name, outcome) (rate(worker_pool_tasks_total{job=~"$job", worker_pool_name=~"$worker_pool"}[$__rate_interval])) > 0"#,
                    "{{worker_pool_name}} {{outcome}}"
                )],
            },
        ],
    },
    Row {
        title: "Fan-out and pipeline",
        panels: &[
            Panel {
                title: "Items per second",
                description: "Fan-out items and pipeline items finished, all outcomes.",
                unit: "ops",
                targets: &[
                    t!(
                        r#"sum by (fan_out_name) (rate(fan_out_tasks_total{job=~"$job", fan_out_name=~"$fan_out"}[$__rate_interval]))"#,
                        "{{fan_out_name}}"
                    ),
                    t!(
                        r#"sum by (pipeline_name) (rate(pipeline_items_total{job=~"$job", pipeline_name=~"$pipeline"}[$__rate_interval]))"#,
                        "{{pipeline_name}}"
                    ),
                ],
            },
            Panel {
                title: "Fan-out item P99",
                description: "99th percentile of each fan-out item's run time.",
                unit: "s",
                targets: &[t!(
                    r#"histogram_quantile(0.99, sum by (le, fan_out_name) (rate(fan_out_task_duration_seconds_bucket{job=~"$job", fan_out_name=~"$fan_out"}[$__rate_interval])))"#,
                    "{{fan_out_name}}"
                )],
            },
            Panel {
                title: "Stage P99",
                description: "99th percentile of the time an item spent in each pipeline stage.",
                unit: "s",
                targets: &[t!(
                    r#"histogram_quantile(0.99, sum by (le, pipeline_name, pipeline_stage_name) (rate(pipeline_stage_duration_seconds_bucket{job=~"$job", pipeline_name=~"$pipeline"}[$__rate_interval])))"#,
                    "{{pipeline_name}} {{pipeline_stage_name}}"
                )],
            },
            Panel {
                title: "Stage queue",
                description: "Items waiting in front of each stage, over the active runs.",
                unit: "short",
                targets: &[t!(
                    r#"sum by (pipeline_name, pipeline_stage_name) (pipeline_stage_queue_size{job=~"$job", pipeline_name=~"$pipeline"})"#,
                    "{{pipeline_name}} {{pipeline_stage_name}}"
                )],
            },
        ],
    },
];

fn datasource() -> Value {
    json!({"type": "prometheus", "uid": "${datasource}"})
}

fn variable(name: &str, label: &str, query: &str) -> Value {
    json!({
        "name": name,
        "label": label,
        "type": "query",
        "datasource": datasource(),
        "definition": query,
        "query": {"query": query, "refId": format!("{name}-values")},
        "refresh": 2,
        "includeAll": true,
        "multi": true,
        "allValue": ".*",
        "current": {"selected": true, "text": ["All"], "value": ["$__all"]},
        "sort": 1,
    })
}

/// The Grafana dashboard (JSON model, schema 39: Grafana 10.4 and later).
pub fn dashboard() -> Value {
    let mut templating = vec![json!({
        "name": "datasource",
        "label": "Data source",
        "type": "datasource",
        "query": "prometheus",
        "current": {},
        "hide": 0,
    })];
    templating.push(variable("job", "Job", "label_values(target_info, job)"));
    for (name, label, series) in OWNER_VARIABLES {
        templating.push(variable(
            name,
            name,
            &format!("label_values({series}{{job=~\"$job\"}}, {label})"),
        ));
    }

    let mut panels = Vec::new();
    let mut id = 1;
    let mut y = 0;
    for row in ROWS {
        panels.push(json!({
            "type": "row",
            "id": id,
            "title": row.title,
            "collapsed": false,
            "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
            "panels": [],
        }));
        id += 1;
        y += 1;
        let width = 24 / row.panels.len().clamp(1, 4) as u64;
        for (i, panel) in row.panels.iter().enumerate() {
            let targets: Vec<Value> = panel
                .targets
                .iter()
                .enumerate()
                .map(|(n, t)| {
                    json!({
                        "refId": ((b'A' + n as u8) as char).to_string(),
                        "datasource": datasource(),
                        "expr": t.expr,
                        "legendFormat": t.legend,
                        "range": true,
                    })
                })
                .collect();
            panels.push(json!({
                "type": "timeseries",
                "id": id,
                "title": panel.title,
                "description": panel.description,
                "datasource": datasource(),
                "gridPos": {"h": 8, "w": width, "x": width * i as u64, "y": y},
                "fieldConfig": {
                    "defaults": {
                        "unit": panel.unit,
                        "min": 0,
                        "custom": {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 10, "showPoints": "never"},
                    },
                    "overrides": [],
                },
                "options": {
                    "legend": {"displayMode": "list", "placement": "bottom", "showLegend": true},
                    "tooltip": {"mode": "multi", "sort": "desc"},
                },
                "targets": targets,
            }));
            id += 1;
        }
        y += 8;
    }

    json!({
        "title": "otlp-kit",
        "uid": "otlp-kit",
        "description": "Pools, semaphores, rate limiters, worker pools, fan-outs and pipelines of otlp-kit, from \
                        their OpenTelemetry metrics scraped by Prometheus (docs/metrics.md lists them).",
        "tags": ["otlp-kit", "opentelemetry"],
        "schemaVersion": 39,
        "version": 1,
        "editable": true,
        "graphTooltip": 1,
        "time": {"from": "now-15m", "to": "now"},
        "refresh": "10s",
        "timezone": "",
        "templating": {"list": templating},
        "annotations": {"list": []},
        "panels": panels,
    })
}

/// The dashboard as committed in docs/dashboards/otlp-kit.json.
pub fn dashboard_text() -> String {
    let mut text = serde_json::to_string_pretty(&dashboard()).expect("a JSON value prints");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;

    /// docs/metrics.md's instruments as Prometheus series names, each with its labels.
    fn catalogue() -> BTreeMap<String, BTreeSet<String>> {
        let root = crate::workspace::root();
        let text = std::fs::read_to_string(root.join("docs/metrics.md")).expect("docs/metrics.md");
        let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut previous = BTreeSet::new();
        for line in text.lines().filter(|l| l.starts_with("| `")) {
            let cells: Vec<&str> = line.trim_matches('|').split(" | ").map(str::trim).collect();
            if cells.len() < 5 {
                continue; // not an instrument table
            }
            let ticked = |cell: &str| -> Vec<String> {
                cell.split('`')
                    .skip(1)
                    .step_by(2)
                    .map(str::to_owned)
                    .collect()
            };
            let name = ticked(cells[0])[0].replace('.', "_");
            let unit = ticked(cells[2]).first().cloned().unwrap_or_default();
            let kind = cells[1];
            let labels: BTreeSet<String> = if cells[3].starts_with("same") {
                previous.clone()
            } else {
                // Keys are the ticked words not preceded by `=` or `\|` (those are values).
                let mut keys = BTreeSet::new();
                let mut rest = cells[3];
                while let Some(start) = rest.find('`') {
                    let before = rest[..start].trim_end();
                    let after = &rest[start + 1..];
                    let Some(end) = after.find('`') else { break };
                    if !(before.ends_with('=') || before.ends_with("\\|")) {
                        keys.insert(after[..end].replace('.', "_"));
                    }
                    rest = &after[end + 1..];
                }
                keys
            };
            previous = labels.clone();
            let base = if unit == "s" {
                format!("{name}_seconds")
            } else {
                name
            };
            let series = if kind.contains("histogram") {
                format!("{base}_bucket")
            } else if kind.contains("counter") && !kind.contains("up-down") {
                format!("{base}_total")
            } else {
                base
            };
            out.entry(series).or_default().extend(labels);
        }
        out
    }

    /// The series a query reads, each with the labels the query names (selector and `by`).
    fn series_and_labels(expr: &str) -> Vec<(String, BTreeSet<String>)> {
        let by: BTreeSet<String> = expr
            .split("by (")
            .skip(1)
            .flat_map(|s| {
                s[..s.find(')').unwrap()]
                    .split(',')
                    .map(|l| l.trim().to_owned())
            })
            .filter(|l| l != "le")
            .collect();
        let mut out = Vec::new();
        for (i, _) in expr.match_indices('{') {
            let name: String = expr[..i]
                .chars()
                .rev()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            let selector = &expr[i + 1..i + expr[i..].find('}').unwrap()];
            let mut labels: BTreeSet<String> = selector
                .split(',')
                .filter_map(|m| m.split(['=', '!']).next())
                .map(|l| l.trim().to_owned())
                .filter(|l| !l.is_empty() && l != "job")
                .collect();
            labels.extend(by.iter().cloned());
            out.push((name, labels));
        }
        out
    }

    #[test]
    fn every_query_reads_series_and_labels_of_the_catalogue() {
        let catalogue = catalogue();
        let mut problems = Vec::new();
        let mut read = BTreeSet::new();
        for panel in ROWS.iter().flat_map(|r| r.panels) {
            for target in panel.targets {
                for (series, labels) in series_and_labels(target.expr) {
                    read.insert(series.clone());
                    match catalogue.get(&series) {
                        None => problems.push(format!(
                            "{}: `{series}` is no instrument of docs/metrics.md",
                            panel.title
                        )),
                        Some(known) => problems.extend(labels.difference(known).map(|l| {
                            format!(
                                "{}: `{series}` has no label `{l}` in docs/metrics.md",
                                panel.title
                            )
                        })),
                    }
                }
            }
        }
        for (_, label, series) in OWNER_VARIABLES {
            let known = catalogue.get(*series);
            if !known.is_some_and(|k| k.contains(*label)) {
                problems.push(format!("variable: `{series}` has no label `{label}`"));
            }
        }
        assert!(problems.is_empty(), "{}", problems.join("\n"));
        // Every family of docs/metrics.md's library tables has a panel.
        for family in [
            "pool_",
            "semaphore_",
            "rate_limiter_",
            "worker_pool_",
            "fan_out_",
            "pipeline_",
        ] {
            assert!(
                read.iter().any(|s| s.starts_with(family)),
                "no panel reads {family}*"
            );
        }
    }

    #[test]
    fn the_committed_dashboard_is_the_generated_one() {
        let path = crate::workspace::root().join("docs/dashboards/otlp-kit.json");
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == dashboard_text(),
            "{} is stale: run `cargo xtask dashboard --json`",
            path.display()
        );
    }
}
