//! `cargo xtask bench`: run the criterion benches, then print ours against the baselines of the same run.
//!
//! The rows come from `benches/goals.json`:
//! * `{"group", "ours", "baseline", "goal"}`: the ratio of criterion's mean times `ours / baseline`; the goal is met
//!   when the ratio is at most `goal` (`null`: shown for information, no goal). A throughput goal of "at least 0.8×
//!   the baseline" is a time ratio of at most 1.25.
//! * `{"group", "ours", "kind": "allocs", "goal"}`: heap allocations per operation, as recorded by the bench with
//!   `otlp_benches::record_allocs`; met when at most `goal`.
//!
//! A row whose figures are missing (not run, filtered out) says so; it is never counted as met.

use crate::cmd::{Cmd, human};
use crate::workspace;
use serde_json::Value;
use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, SystemTime};

/// One row of the table, measured.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub bench: String,
    pub ours: String,
    pub baseline: String,
    pub ratio: Option<f64>,
    pub goal: Option<f64>,
}

impl Row {
    fn met(&self) -> &'static str {
        match (self.ratio, self.goal) {
            (None, _) => "not measured",
            (Some(_), None) => "-",
            (Some(r), Some(g)) if r <= g + 1e-9 => "yes",
            _ => "NO",
        }
    }
}

pub fn run(args: &[String]) -> Result<bool, String> {
    let mut quick = false;
    let mut update_docs = false;
    let mut filter: Option<String> = None;
    for arg in args {
        match arg.as_str() {
            "--quick" => quick = true,
            "--update-docs" => update_docs = true,
            a if a.starts_with('-') => return Err(format!("bench: unknown option `{a}`")),
            a => filter = Some(a.to_owned()),
        }
    }
    let root = workspace::root();
    let criterion_home = root.join("target/criterion");
    let out = root.join("target/otlp-bench");
    let mut cmd = Cmd::new("cargo", &["bench", "-p", "otlp-benches", "--benches", "--"])
        .env("CRITERION_HOME", criterion_home.display().to_string())
        .env("OTLP_BENCH_OUT", out.display().to_string());
    if quick {
        cmd = cmd.args([
            "--warm-up-time",
            "0.3",
            "--measurement-time",
            "1",
            "--sample-size",
            "10",
        ]);
    }
    if let Some(f) = &filter {
        cmd = cmd.args([f.as_str()]);
    }
    println!(
        "==> cargo bench{}",
        if quick {
            " (quick: short measurements, noisier)"
        } else {
            ""
        }
    );
    // Only figures written by this run count: a row left over from an earlier run shows as not measured.
    let started = SystemTime::now() - Duration::from_secs(1);
    let (ok, took) = cmd.run(&root);
    println!(
        "<== benches {} in {}",
        if ok { "finished" } else { "FAILED" },
        human(took)
    );

    let goals_text = std::fs::read_to_string(root.join("benches/goals.json"))
        .map_err(|e| format!("cannot read benches/goals.json: {e}"))?;
    let rows = measure(
        &goals_text,
        &criterion_home,
        &out.join("allocs"),
        filter.as_deref(),
        Some(started),
    )?;
    let table = render(&rows);
    println!("\n{table}");
    std::fs::create_dir_all(&out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    let command = format!("cargo xtask bench{}", if quick { " --quick" } else { "" });
    let snapshot = format!("Command: `{command}`\n\n{table}");
    std::fs::write(out.join("table.md"), &snapshot)
        .map_err(|e| format!("cannot write table: {e}"))?;
    if update_docs {
        update_benchmarks_doc(&root.join("docs/benchmarks.md"), &snapshot)?;
        println!("docs/benchmarks.md updated");
    }
    Ok(ok)
}

/// Reads `path` if it was written at or after `since` (figures left by an earlier run are not this run's).
fn read_fresh(path: &Path, since: Option<SystemTime>) -> Option<String> {
    if let Some(since) = since {
        let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok()?;
        if modified < since {
            return None;
        }
    }
    std::fs::read_to_string(path).ok()
}

/// Reads criterion's mean estimate (ns) of `group/function`.
fn mean_ns(
    criterion_home: &Path,
    group: &str,
    function: &str,
    since: Option<SystemTime>,
) -> Option<f64> {
    let path = criterion_home
        .join(group)
        .join(function)
        .join("new/estimates.json");
    let text = read_fresh(&path, since)?;
    let v: Value = serde_json::from_str(&text).ok()?;
    v["mean"]["point_estimate"].as_f64()
}

fn allocs(dir: &Path, group: &str, name: &str, since: Option<SystemTime>) -> Option<f64> {
    read_fresh(&dir.join(format!("{group}__{name}.txt")), since)?
        .trim()
        .parse()
        .ok()
}

/// Builds the rows of `goals` from the figures on disk written at or after `since` (all of them if `None`).
pub fn measure(
    goals: &str,
    criterion_home: &Path,
    allocs_dir: &Path,
    filter: Option<&str>,
    since: Option<SystemTime>,
) -> Result<Vec<Row>, String> {
    let goals: Value = serde_json::from_str(goals)
        .map_err(|e| format!("benches/goals.json is not valid JSON: {e}"))?;
    let list = goals
        .as_array()
        .ok_or("benches/goals.json must be a JSON array")?;
    let mut rows = Vec::new();
    for (i, g) in list.iter().enumerate() {
        let field = |k: &str| g[k].as_str().map(str::to_owned);
        let group = field("group").ok_or(format!("goals.json row {i}: missing \"group\""))?;
        if filter.is_some_and(|f| !group.contains(f)) {
            continue;
        }
        let ours = field("ours").unwrap_or_else(|| "ours".into());
        let goal = g["goal"].as_f64();
        if g["kind"].as_str() == Some("allocs") {
            rows.push(Row {
                bench: group.clone(),
                ours: format!("{ours} (allocs/op)"),
                baseline: "-".into(),
                ratio: allocs(allocs_dir, &group, &ours, since),
                goal,
            });
            continue;
        }
        let baseline =
            field("baseline").ok_or(format!("goals.json row {i}: missing \"baseline\""))?;
        let ours_ns = mean_ns(criterion_home, &group, &ours, since);
        let base_ns = mean_ns(criterion_home, &group, &baseline, since);
        let ratio = match (ours_ns, base_ns) {
            (Some(a), Some(b)) if b > 0.0 => Some(a / b),
            _ => None,
        };
        rows.push(Row {
            bench: group,
            ours: ours_ns.map_or(ours.clone(), |ns| format!("{ours} {}", fmt_ns(ns))),
            baseline: base_ns.map_or(baseline.clone(), |ns| format!("{baseline} {}", fmt_ns(ns))),
            ratio,
            goal,
        });
    }
    Ok(rows)
}

fn fmt_ns(ns: f64) -> String {
    if ns >= 1_000_000.0 {
        format!("{:.2} ms", ns / 1_000_000.0)
    } else if ns >= 1_000.0 {
        format!("{:.2} µs", ns / 1_000.0)
    } else {
        format!("{ns:.1} ns")
    }
}

/// The table as Markdown.
pub fn render(rows: &[Row]) -> String {
    let mut s = String::from(
        "| benchmark | ours | baseline | ratio ours/baseline | goal | met? |\n|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let ratio = r.ratio.map_or("-".to_owned(), |x| format!("{x:.3}"));
        let goal = r.goal.map_or("-".to_owned(), |g| format!("≤ {g}"));
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} |",
            r.bench,
            r.ours,
            r.baseline,
            ratio,
            goal,
            r.met()
        );
    }
    let measured: Vec<&Row> = rows.iter().filter(|r| r.goal.is_some()).collect();
    let met = measured.iter().filter(|r| r.met() == "yes").count();
    let _ = writeln!(s, "\n{met} of {} goals met.", measured.len());
    s
}

const START: &str = "<!-- bench-table:start -->";
const END: &str = "<!-- bench-table:end -->";

/// Replaces the text between the table markers of `docs/benchmarks.md`.
fn update_benchmarks_doc(path: &Path, table: &str) -> Result<(), String> {
    let doc = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let (Some(a), Some(b)) = (doc.find(START), doc.find(END)) else {
        return Err(format!(
            "{} has no {START} ... {END} markers",
            path.display()
        ));
    };
    let updated = format!("{}{START}\n{table}\n{}", &doc[..a], &doc[b..]);
    std::fs::write(path, updated).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, group: &str, f: &str, mean: f64) {
        let d = dir.join(group).join(f).join("new");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(
            d.join("estimates.json"),
            format!("{{\"mean\":{{\"point_estimate\":{mean}}}}}"),
        )
        .unwrap();
    }

    #[test]
    fn ratios_goals_and_missing_rows() {
        let dir = std::env::temp_dir().join(format!("xtask-bench-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        write(&dir, "g", "ours", 5.0);
        write(&dir, "g", "base", 10.0);
        write(&dir, "h", "ours", 30.0);
        write(&dir, "h", "base", 10.0);
        std::fs::create_dir_all(dir.join("allocs")).unwrap();
        std::fs::write(dir.join("allocs/g__ours.txt"), "0\n").unwrap();
        let goals = r#"[
            {"group": "g", "ours": "ours", "baseline": "base", "goal": 0.5},
            {"group": "h", "ours": "ours", "baseline": "base", "goal": 1.25},
            {"group": "g", "ours": "ours", "kind": "allocs", "goal": 0},
            {"group": "missing", "ours": "ours", "baseline": "base", "goal": 1.0}
        ]"#;
        let rows = measure(goals, &dir, &dir.join("allocs"), None, None).unwrap();
        // Figures older than the run are not this run's.
        let later = SystemTime::now() + Duration::from_secs(3600);
        let stale = measure(goals, &dir, &dir.join("allocs"), None, Some(later)).unwrap();
        assert!(stale.iter().all(|r| r.ratio.is_none()));
        assert_eq!(rows.len(), 4);
        assert_eq!(rows[0].ratio, Some(0.5));
        assert_eq!(rows[0].met(), "yes");
        assert_eq!(rows[1].ratio, Some(3.0));
        assert_eq!(rows[1].met(), "NO");
        assert_eq!(rows[2].ratio, Some(0.0));
        assert_eq!(rows[2].met(), "yes");
        assert_eq!(rows[3].met(), "not measured");
        let table = render(&rows);
        assert!(table.contains("2 of 4 goals met."), "{table}");
        let filtered = measure(goals, &dir, &dir.join("allocs"), Some("h"), None).unwrap();
        assert_eq!(filtered.len(), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn bad_goals_file_is_an_error() {
        let dir = std::env::temp_dir();
        assert!(measure("{}", &dir, &dir, None, None).is_err());
        assert!(
            measure("[{\"ours\": \"x\"}]", &dir, &dir, None, None)
                .unwrap_err()
                .contains("group")
        );
    }
}
