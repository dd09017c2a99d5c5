//! `cargo xtask dashboard [--json]`: writes the Grafana dashboard (docs/dashboards/otlp-kit.json) from
//! [`panels`]; without `--json`, then renders its panels to docs/dashboards/otlp-kit.png from a real Prometheus
//! that scrapes the demo service under a short load.

pub mod panels;

use crate::workspace;

pub fn run(args: &[String]) -> Result<bool, String> {
    let json_only = args.iter().any(|a| a == "--json");
    if let Some(other) = args.iter().find(|a| *a != "--json") {
        return Err(format!("dashboard: unknown flag `{other}`"));
    }
    let root = workspace::root();
    let dir = root.join("docs/dashboards");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let path = dir.join("otlp-kit.json");
    std::fs::write(&path, panels::dashboard_text())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    println!("wrote {}", path.display());
    if json_only {
        return Ok(true);
    }
    Err("dashboard: rendering the PNG is not built yet; use --json".into())
}
