//! The font plotters draws text with: a TrueType file of the system (DejaVu Sans, Debian's `fonts-dejavu-core`),
//! registered once as `sans-serif`, so that drawing needs no fontconfig.

use std::sync::OnceLock;

use plotters::style::FontStyle;

const CANDIDATES: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
];

/// Registers the font (once); an error names what to install. `$OTLP_KIT_FONT` names another TrueType file.
pub fn register() -> Result<(), String> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        let env = std::env::var("OTLP_KIT_FONT").ok();
        let path = env
            .as_deref()
            .into_iter()
            .chain(CANDIDATES.iter().copied())
            .find(|p| std::path::Path::new(p).is_file())
            .ok_or_else(|| {
                "no TrueType font to draw text with: install fonts-dejavu-core, or set OTLP_KIT_FONT to a .ttf file"
                    .to_owned()
            })?;
        let bytes = std::fs::read(path).map_err(|e| format!("{path}: {e}"))?;
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        for style in [FontStyle::Normal, FontStyle::Bold] {
            plotters::style::register_font("sans-serif", style, bytes)
                .map_err(|_| format!("{path}: not a TrueType font plotters can read"))?;
        }
        Ok(())
    })
    .clone()
}
