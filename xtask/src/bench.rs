//! `cargo xtask bench`: run the criterion benches, then print ours against the baselines of the same run.
//!
//! Every comparison is measured in interleaved rounds (`otlp_benches::Comparison`): round `r` measures ours and
//! each baseline, in the same process, either one window after the other (criterion's
//! `<group>/<function>/round<r>`) or, for a paired comparison, in one window where they take turns slice by slice.
//! A round's ratio pairs ours with its baseline of the same round, so drift on a shared machine hits both sides.
//!
//! The rows come from `benches/goals.json`:
//! * `{"group", "ours", "baseline", "goal"}`: the ratios of criterion's mean times `ours / baseline`, one per
//!   round, shown as median (min–max); the goal is met when the **worst** round's ratio is at most `goal`
//!   (`null`: shown for information, no goal). A throughput goal of "at least 0.8× the baseline" is a time ratio
//!   of at most 1.25.
//!   With `"paired": true` the per-round mean times are the bench's own (`otlp_benches::record_rounds`): ours and
//!   the baseline interleaved in one window per round (a paired `Comparison`, or a bench that times itself), so
//!   that load which comes and goes within a second falls on both sides of a round alike.
//! * `{"group", "ours", "kind": "allocs", "goal"}`: heap allocations per operation, as recorded by the bench with
//!   `otlp_benches::record_allocs`; met when at most `goal`.
//! * `{"group", "ours", "kind": "time", "goal_ns"}`: an absolute time goal, for an issue that states one (the bench
//!   should time what the machine's load does not inflate, e.g. thread CPU time): criterion's mean time of ours per
//!   round, shown as median (min–max); met when the **worst** round's mean is at most `goal_ns` nanoseconds.
//!
//! A row whose figures are missing (not run, filtered out, fewer rounds than the run asked for) says so; it is
//! never counted as met.

use crate::cmd::{Cmd, human};
use crate::workspace;
use serde_json::Value;
use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, SystemTime};

/// Rounds per comparison of a full run.
pub const FULL_ROUNDS: usize = 5;
/// Rounds per comparison of a `--quick` run.
pub const QUICK_ROUNDS: usize = 3;
/// Fewer rounds than this say nothing about a spread.
pub const MIN_ROUNDS: usize = 3;

/// The smallest, median and largest of some figures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    pub min: f64,
    pub median: f64,
    pub max: f64,
}

impl Spread {
    /// The spread of `values` (`None` when there are none; NaNs are ignored).
    pub fn of(values: &[f64]) -> Option<Spread> {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Some(Spread {
            min: v[0],
            median,
            max: v[n - 1],
        })
    }
}

/// What a row measures.
#[derive(Debug, Clone, PartialEq)]
pub enum Figures {
    /// Time rows: criterion's mean time (ns) of ours and of the baseline, per round, paired by round (a round
    /// missing either side is left out).
    Times { ours: Vec<f64>, baseline: Vec<f64> },
    /// Allocation rows: allocations per operation, if recorded.
    Allocs(Option<f64>),
    /// Absolute time rows: criterion's mean time (ns) of ours, per round (a missing round is left out).
    Time(Vec<f64>),
}

/// One row of the table, measured.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub bench: String,
    pub ours: String,
    pub baseline: String,
    pub figures: Figures,
    pub goal: Option<f64>,
    /// Rounds the run asked for: a time row with fewer is not measured.
    pub rounds: usize,
}

impl Row {
    /// The ratio of each round, `ours / baseline`.
    pub fn ratios(&self) -> Vec<f64> {
        match &self.figures {
            Figures::Times { ours, baseline } => ours
                .iter()
                .zip(baseline)
                .filter(|&(_, &b)| b > 0.0)
                .map(|(a, b)| a / b)
                .collect(),
            Figures::Allocs(a) => a.iter().copied().collect(),
            Figures::Time(_) => Vec::new(),
        }
    }

    /// The figure the goal is checked against: the worst round's ratio, or the allocations per operation. `None`
    /// when the row is not (fully) measured.
    pub fn worst(&self) -> Option<f64> {
        match &self.figures {
            Figures::Times { .. } => {
                let ratios = self.ratios();
                if ratios.len() < self.rounds.max(1) {
                    return None;
                }
                Spread::of(&ratios).map(|s| s.max)
            }
            Figures::Allocs(a) => *a,
            Figures::Time(ns) => {
                if ns.len() < self.rounds.max(1) {
                    return None;
                }
                Spread::of(ns).map(|s| s.max)
            }
        }
    }

    fn met(&self) -> &'static str {
        match (self.worst(), self.goal) {
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
    let mut rounds: Option<usize> = None;
    let mut filter: Option<String> = None;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => quick = true,
            "--update-docs" => update_docs = true,
            "--rounds" => {
                let n = args
                    .next()
                    .and_then(|n| n.parse::<usize>().ok())
                    .ok_or("bench: `--rounds` takes a number of rounds")?;
                if n < MIN_ROUNDS {
                    return Err(format!(
                        "bench: `--rounds {n}`: at least {MIN_ROUNDS} rounds are needed to show a spread"
                    ));
                }
                rounds = Some(n);
            }
            a if a.starts_with('-') => return Err(format!("bench: unknown option `{a}`")),
            a => filter = Some(a.to_owned()),
        }
    }
    let rounds = rounds.unwrap_or(if quick { QUICK_ROUNDS } else { FULL_ROUNDS });
    let root = workspace::root();
    let criterion_home = root.join("target/criterion");
    let out = root.join("target/otlp-bench");
    // Plots are never looked at here and cost time between rounds.
    let mut cmd = Cmd::new(
        "cargo",
        &["bench", "-p", "otlp-benches", "--benches", "--", "--noplot"],
    )
    .env("CRITERION_HOME", criterion_home.display().to_string())
    .env("OTLP_BENCH_OUT", out.display().to_string())
    .env("OTLP_BENCH_ROUNDS", rounds.to_string())
    .env("OTLP_BENCH_QUICK", if quick { "1" } else { "0" });
    if let Some(f) = &filter {
        cmd = cmd.args([f.as_str()]);
    }
    println!(
        "==> cargo bench: {rounds} interleaved rounds per comparison{}",
        if quick {
            " (quick: 0.2 s warm-up + 0.5 s measured per function and round, noisier)"
        } else {
            " (0.5 s warm-up + 1 s measured per function and round)"
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
        &out,
        filter.as_deref(),
        Some(started),
        rounds,
    )?;
    let table = render(&rows, rounds);
    println!("\n{table}");
    std::fs::create_dir_all(&out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    let mut command = String::from("cargo xtask bench");
    if quick {
        command.push_str(" --quick");
    }
    if let Some(f) = &filter {
        let _ = write!(command, " {f}");
    }
    let snapshot = format!(
        "Command: `{command}` ({rounds} rounds per comparison; `cargo bench` took {}, build included)\n\n{table}",
        human(took)
    );
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

/// Reads criterion's mean estimate (ns) of `group/function/round<r>`, for each round directory there is. A round
/// missing or stale gives `NaN`, so that the rounds of two functions stay aligned.
fn round_means(
    criterion_home: &Path,
    group: &str,
    function: &str,
    since: Option<SystemTime>,
) -> Vec<f64> {
    let dir = criterion_home.join(group).join(function);
    let mut means = Vec::new();
    for r in 0.. {
        let round = dir.join(format!("round{r}"));
        if !round.is_dir() {
            break;
        }
        let mean = read_fresh(&round.join("new/estimates.json"), since)
            .and_then(|text| serde_json::from_str::<Value>(&text).ok())
            .and_then(|v| v["mean"]["point_estimate"].as_f64());
        means.push(mean.unwrap_or(f64::NAN));
    }
    means
}

fn allocs(dir: &Path, group: &str, name: &str, since: Option<SystemTime>) -> Option<f64> {
    read_fresh(&dir.join(format!("{group}__{name}.txt")), since)?
        .trim()
        .parse()
        .ok()
}

/// Keeps the rounds where both sides were measured.
fn paired(ours: Vec<f64>, baseline: Vec<f64>) -> (Vec<f64>, Vec<f64>) {
    ours.into_iter()
        .zip(baseline)
        .filter(|(a, b)| !a.is_nan() && !b.is_nan())
        .unzip()
}

/// Per-round mean times (ns) that a bench timed itself, ours and its baseline interleaved in the same window
/// (`otlp_benches::record_rounds`), one line a round; a round that is not a number gives `NaN`.
fn recorded_rounds(dir: &Path, group: &str, name: &str, since: Option<SystemTime>) -> Vec<f64> {
    read_fresh(&dir.join(format!("{group}__{name}.txt")), since)
        .map(|text| {
            text.lines()
                .map(|l| l.trim().parse().unwrap_or(f64::NAN))
                .collect()
        })
        .unwrap_or_default()
}

/// Builds the rows of `goals` from the figures on disk written at or after `since` (all of them if `None`):
/// criterion's under `criterion_home`, the benches' own under `out` (`allocs/`, `rounds/`); a time row needs
/// `rounds` rounds to count as measured.
pub fn measure(
    goals: &str,
    criterion_home: &Path,
    out: &Path,
    filter: Option<&str>,
    since: Option<SystemTime>,
    rounds: usize,
) -> Result<Vec<Row>, String> {
    let goals: Value = serde_json::from_str(goals)
        .map_err(|e| format!("benches/goals.json is not valid JSON: {e}"))?;
    let list = goals
        .as_array()
        .ok_or("benches/goals.json must be a JSON array")?;
    let allocs_dir = out.join("allocs");
    let allocs_dir = allocs_dir.as_path();
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
                figures: Figures::Allocs(allocs(allocs_dir, &group, &ours, since)),
                goal,
                rounds,
            });
            continue;
        }
        if g["kind"].as_str() == Some("time") {
            let ns: Vec<f64> = round_means(criterion_home, &group, &ours, since)
                .into_iter()
                .filter(|x| !x.is_nan())
                .collect();
            rows.push(Row {
                bench: group.clone(),
                ours: with_times(&ours, &ns),
                baseline: "-".into(),
                figures: Figures::Time(ns),
                goal: g["goal_ns"].as_f64(),
                rounds,
            });
            continue;
        }
        let baseline =
            field("baseline").ok_or(format!("goals.json row {i}: missing \"baseline\""))?;
        // `"paired": true`: the bench timed both sides itself, interleaved in each round's window.
        let means = |name: &str| {
            if g["paired"].as_bool() == Some(true) {
                recorded_rounds(&out.join("rounds"), &group, name, since)
            } else {
                round_means(criterion_home, &group, name, since)
            }
        };
        let (ours_ns, base_ns) = paired(means(&ours), means(&baseline));
        rows.push(Row {
            bench: group,
            ours: with_times(&ours, &ours_ns),
            baseline: with_times(&baseline, &base_ns),
            figures: Figures::Times {
                ours: ours_ns,
                baseline: base_ns,
            },
            goal,
            rounds,
        });
    }
    Ok(rows)
}

/// `name median (min–max)` of the rounds' times, in the unit of the median.
fn with_times(name: &str, ns: &[f64]) -> String {
    let Some(s) = Spread::of(ns) else {
        return name.to_owned();
    };
    let (div, unit) = if s.median >= 1_000_000.0 {
        (1_000_000.0, "ms")
    } else if s.median >= 1_000.0 {
        (1_000.0, "µs")
    } else {
        (1.0, "ns")
    };
    let digits = if div == 1.0 { 1 } else { 2 };
    format!(
        "{name} {:.digits$} {unit} ({:.digits$}–{:.digits$})",
        s.median / div,
        s.min / div,
        s.max / div
    )
}

/// The table as Markdown.
pub fn render(rows: &[Row], rounds: usize) -> String {
    let mut s = String::from(
        "| benchmark | ours: median (min–max) | baseline: median (min–max) | ratio ours/baseline: median (min–max) \
         | goal (worst round) | met? |\n|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let ratio = match &r.figures {
            Figures::Allocs(a) => a.map_or("-".to_owned(), |x| format!("{x:.3}")),
            Figures::Time(ns) if ns.len() < r.rounds && !ns.is_empty() => {
                format!("-, {} of {} rounds", ns.len(), r.rounds)
            }
            Figures::Time(_) => "-".to_owned(),
            Figures::Times { .. } => {
                let ratios = r.ratios();
                match Spread::of(&ratios) {
                    None => "-".to_owned(),
                    Some(sp) if ratios.len() < r.rounds => format!(
                        "{:.3} ({:.3}–{:.3}), {} of {} rounds",
                        sp.median,
                        sp.min,
                        sp.max,
                        ratios.len(),
                        r.rounds
                    ),
                    Some(sp) => format!("{:.3} ({:.3}–{:.3})", sp.median, sp.min, sp.max),
                }
            }
        };
        let goal = match (&r.figures, r.goal) {
            (_, None) => "-".to_owned(),
            (Figures::Time(_), Some(g)) => format!("≤ {g} ns (time)"),
            (_, Some(g)) => format!("≤ {g}"),
        };
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
    let _ = writeln!(
        s,
        "\n{met} of {} goals met; a time goal is met when every one of the {rounds} rounds meets it.",
        measured.len()
    );
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

    /// Writes criterion's estimate of one round of `group/f`.
    fn write(dir: &Path, group: &str, f: &str, round: usize, mean: f64) {
        let d = dir
            .join(group)
            .join(f)
            .join(format!("round{round}"))
            .join("new");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(
            d.join("estimates.json"),
            format!("{{\"mean\":{{\"point_estimate\":{mean}}}}}"),
        )
        .unwrap();
    }

    fn temp(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("xtask-bench-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn spread_of_odd_even_and_empty() {
        let s = Spread::of(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.min, s.median, s.max), (1.0, 2.0, 3.0));
        let s = Spread::of(&[4.0, 1.0, 2.0, 10.0]).unwrap();
        assert_eq!((s.min, s.median, s.max), (1.0, 3.0, 10.0));
        let s = Spread::of(&[f64::NAN, 5.0]).unwrap();
        assert_eq!((s.min, s.median, s.max), (5.0, 5.0, 5.0));
        assert_eq!(Spread::of(&[]), None);
        assert_eq!(Spread::of(&[f64::NAN]), None);
    }

    /// Ratios pair ours with the baseline of the same round, and the goal is checked against the worst round,
    /// not the median or the best.
    #[test]
    fn goal_checked_against_the_worst_round() {
        let dir = temp("worst");
        // Round by round: 0.5, 1.0, 3.0, 0.9, 1.1 (the baseline drifts; the ratios do not follow it).
        let ours = [5.0, 20.0, 30.0, 9.0, 110.0];
        let base = [10.0, 20.0, 10.0, 10.0, 100.0];
        for (r, (o, b)) in ours.iter().zip(base).enumerate() {
            write(&dir, "g", "ours", r, *o);
            write(&dir, "g", "base", r, b);
            // Same medians, but every round within 1.2.
            write(&dir, "h", "ours", r, 11.0 + r as f64 * 0.1);
            write(&dir, "h", "base", r, 10.0);
        }
        let goals = r#"[
            {"group": "g", "ours": "ours", "baseline": "base", "goal": 1.25},
            {"group": "h", "ours": "ours", "baseline": "base", "goal": 1.25},
            {"group": "h", "ours": "ours", "baseline": "base", "goal": 1.12}
        ]"#;
        let rows = measure(goals, &dir, &dir, None, None, 5).unwrap();
        let ratios = rows[0].ratios();
        assert_eq!(ratios.len(), 5);
        for (got, want) in ratios.iter().zip([0.5, 1.0, 3.0, 0.9, 1.1]) {
            assert!((got - want).abs() < 1e-12, "{ratios:?}");
        }
        let s = Spread::of(&ratios).unwrap();
        assert_eq!((s.min, s.median, s.max), (0.5, 1.0, 3.0));
        // The median (1.0) meets 1.25; the worst round (3.0) does not.
        assert_eq!(rows[0].worst(), Some(3.0));
        assert_eq!(rows[0].met(), "NO");
        assert_eq!(rows[1].met(), "yes");
        assert!((rows[2].worst().unwrap() - 1.14).abs() < 1e-9);
        assert_eq!(rows[2].met(), "NO");
        let table = render(&rows, 5);
        assert!(
            table.contains("| g | ours 20.0 ns (5.0–110.0) | base 10.0 ns (10.0–100.0) | 1.000 (0.500–3.000) | ≤ 1.25 | NO |"),
            "{table}"
        );
        assert!(table.contains("1 of 3 goals met"), "{table}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn missing_stale_and_short_rows_are_not_measured() {
        let dir = temp("missing");
        for r in 0..5 {
            write(&dir, "g", "ours", r, 5.0);
            write(&dir, "g", "base", r, 10.0);
        }
        // Only 2 rounds of "short", and round 1 of its baseline is missing: one paired round.
        write(&dir, "short", "ours", 0, 1.0);
        write(&dir, "short", "base", 0, 1.0);
        write(&dir, "short", "ours", 1, 1.0);
        std::fs::create_dir_all(dir.join("allocs")).unwrap();
        std::fs::write(dir.join("allocs/g__ours.txt"), "0\n").unwrap();
        let goals = r#"[
            {"group": "g", "ours": "ours", "baseline": "base", "goal": 0.5},
            {"group": "g", "ours": "ours", "kind": "allocs", "goal": 0},
            {"group": "short", "ours": "ours", "baseline": "base", "goal": 2.0},
            {"group": "missing", "ours": "ours", "baseline": "base", "goal": 1.0}
        ]"#;
        let rows = measure(goals, &dir, &dir, None, None, 5).unwrap();
        assert_eq!(rows.len(), 4);
        assert_eq!(rows[0].met(), "yes");
        assert_eq!(rows[1].worst(), Some(0.0));
        assert_eq!(rows[1].met(), "yes");
        assert_eq!(rows[2].ratios(), vec![1.0]);
        assert_eq!(rows[2].met(), "not measured");
        assert_eq!(rows[3].met(), "not measured");
        let table = render(&rows, 5);
        assert!(
            table.contains("1.000 (1.000–1.000), 1 of 5 rounds"),
            "{table}"
        );
        assert!(table.contains("2 of 4 goals met"), "{table}");
        // Three rounds asked for (a quick run): the five rounds of "g" are more than enough.
        let quick = measure(goals, &dir, &dir, None, None, 3).unwrap();
        assert_eq!(quick[0].met(), "yes");
        assert_eq!(quick[2].met(), "not measured");
        let filtered = measure(goals, &dir, &dir, Some("short"), None, 3).unwrap();
        assert_eq!(filtered.len(), 1);
        // Figures older than the run are not this run's.
        let later = SystemTime::now() + Duration::from_secs(3600);
        let stale = measure(goals, &dir, &dir, None, Some(later), 5).unwrap();
        assert!(stale.iter().all(|r| r.worst().is_none()), "{stale:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// An absolute time goal is checked against the worst round's mean time, and needs every round.
    #[test]
    fn time_goal_checked_against_the_worst_round() {
        let dir = temp("time");
        for (r, mean) in [250.0, 280.0, 320.0].iter().enumerate() {
            write(&dir, "t", "unsampled", r, *mean);
            write(&dir, "u", "unsampled", r, 90.0);
        }
        write(&dir, "short", "unsampled", 0, 10.0);
        let goals = r#"[
            {"group": "t", "ours": "unsampled", "kind": "time", "goal_ns": 300},
            {"group": "u", "ours": "unsampled", "kind": "time", "goal_ns": 100},
            {"group": "short", "ours": "unsampled", "kind": "time", "goal_ns": 100}
        ]"#;
        let rows = measure(goals, &dir, &dir, None, None, 3).unwrap();
        // The median (280 ns) meets 300 ns; the worst round (320 ns) does not.
        assert_eq!(rows[0].worst(), Some(320.0));
        assert_eq!(rows[0].met(), "NO");
        assert_eq!(rows[1].met(), "yes");
        assert_eq!(rows[2].met(), "not measured");
        let table = render(&rows, 3);
        assert!(
            table.contains(
                "| t | unsampled 280.0 ns (250.0–320.0) | - | - | ≤ 300 ns (time) | NO |"
            ),
            "{table}"
        );
        assert!(table.contains("-, 1 of 3 rounds"), "{table}");
        assert!(table.contains("1 of 3 goals met"), "{table}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A paired row takes the bench's own per-round means, not criterion's windows of the same functions.
    #[test]
    fn paired_rows_read_the_rounds_the_bench_recorded() {
        let dir = temp("paired");
        for r in 0..3 {
            // Criterion's windows say 2.0 in every round: they must not be read.
            write(&dir, "p", "ours", r, 20.0);
            write(&dir, "p", "base", r, 10.0);
        }
        std::fs::create_dir_all(dir.join("rounds")).unwrap();
        std::fs::write(dir.join("rounds/p__ours.txt"), "10\n11\n9.5\n").unwrap();
        std::fs::write(dir.join("rounds/p__base.txt"), "10\n10\n10\n").unwrap();
        std::fs::write(dir.join("rounds/q__ours.txt"), "10\nx\n10\n").unwrap();
        std::fs::write(dir.join("rounds/q__base.txt"), "10\n10\n10\n").unwrap();
        let goals = r#"[
            {"group": "p", "ours": "ours", "baseline": "base", "goal": 1.11, "paired": true},
            {"group": "p", "ours": "ours", "baseline": "base", "goal": 1.11},
            {"group": "q", "ours": "ours", "baseline": "base", "goal": 1.11, "paired": true}
        ]"#;
        let rows = measure(goals, &dir, &dir, None, None, 3).unwrap();
        assert_eq!(rows[0].ratios(), vec![1.0, 1.1, 0.95]);
        assert_eq!(rows[0].met(), "yes");
        assert_eq!(rows[1].worst(), Some(2.0));
        // A round that is not a number is left out, and the row is then short of rounds.
        assert_eq!(rows[2].ratios(), vec![1.0, 1.0]);
        assert_eq!(rows[2].met(), "not measured");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn bad_goals_file_is_an_error() {
        let dir = std::env::temp_dir();
        assert!(measure("{}", &dir, &dir, None, None, 5).is_err());
        assert!(
            measure("[{\"ours\": \"x\"}]", &dir, &dir, None, None, 5)
                .unwrap_err()
                .contains("group")
        );
    }

    #[test]
    fn too_few_rounds_is_refused() {
        let err = run(&["--rounds".into(), "2".into()]).unwrap_err();
        assert!(err.contains("at least 3"), "{err}");
        assert!(run(&["--rounds".into(), "x".into()]).is_err());
    }

    #[test]
    fn docs_table_is_replaced_between_markers() {
        let dir = temp("doc");
        std::fs::create_dir_all(&dir).unwrap();
        let doc = dir.join("benchmarks.md");
        std::fs::write(&doc, format!("intro\n{START}\nold\n{END}\nafter\n")).unwrap();
        update_benchmarks_doc(&doc, "new table\n").unwrap();
        assert_eq!(
            std::fs::read_to_string(&doc).unwrap(),
            format!("intro\n{START}\nnew table\n\n{END}\nafter\n")
        );
        std::fs::write(&doc, "no markers").unwrap();
        assert!(update_benchmarks_doc(&doc, "t").is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
