//! `cargo xtask dashboard [--json] [--seconds N]`: writes the Grafana dashboard (docs/dashboards/otlp-kit.json) from
//! [`panels`]; without `--json`, then renders its panels to docs/dashboards/otlp-kit.png from a real Prometheus
//! that scrapes the demo service under a short load.

pub mod panels;
mod render;

use crate::workspace;

pub fn run(args: &[String]) -> Result<bool, String> {
    let mut json_only = false;
    let mut seconds = 40;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--json" => json_only = true,
            "--seconds" => {
                seconds = it
                    .next()
                    .and_then(|s| s.parse().ok())
                    .filter(|s| *s >= 10)
                    .ok_or("dashboard: --seconds needs a whole number, at least 10")?
            }
            other => return Err(format!("dashboard: unknown flag `{other}`")),
        }
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
    render::run(&root, &render::png_path(&root), seconds)?;
    Ok(true)
}
