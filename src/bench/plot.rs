//! SVG plots, written through `safe-write`: a scan-vs-attention grid (milliseconds against L,
//! both axes logarithmic, one line per (part, pass)) and pretraining curves (held-out
//! perplexity against tokens).

use std::path::Path;

use plotters::prelude::*;

use super::scan::{Pass, ScanRow};

/// Writes the plot of `rows` to `path` (SVG); `title` goes on top.
pub fn write_svg(rows: &[ScanRow], title: &str, path: &Path) -> anyhow::Result<()> {
    let pts: Vec<(f64, f64)> = rows
        .iter()
        .filter_map(|r| Some((r.len as f64, r.timing?.median_ms)))
        .collect();
    anyhow::ensure!(!pts.is_empty(), "nothing to plot: every cell failed");
    let (xmin, xmax) = pts
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.0), b.max(p.0)));
    let (ymin, ymax) = pts
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.1), b.max(p.1)));
    let err = |e: &dyn std::fmt::Display| anyhow::anyhow!("plot {}: {e}", path.display());
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (900, 560)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(
                (xmin / 1.5..xmax * 1.5).log_scale(),
                (ymin / 1.5..ymax * 1.5).log_scale(),
            )
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .x_desc("sequence length L (tokens per call fixed)")
            .y_desc("ms (median)")
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_label_formatter(&|y| format!("{y:.3}"))
            .draw()
            .map_err(|e| err(&e))?;
        let mut series: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
        for r in rows {
            let Some(t) = r.timing else { continue };
            let name = format!("{} {}", r.part.name(), r.pass.name());
            match series.iter_mut().find(|(n, _)| *n == name) {
                Some((_, v)) => v.push((r.len as f64, t.median_ms)),
                None => series.push((name, vec![(r.len as f64, t.median_ms)])),
            }
        }
        for (i, (name, pts)) in series.into_iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            let dashed = name.ends_with(Pass::Fwd.name());
            let style = ShapeStyle {
                color,
                filled: true,
                stroke_width: if dashed { 1 } else { 2 },
            };
            chart
                .draw_series(LineSeries::new(pts.clone(), style))
                .map_err(|e| err(&e))?
                .label(name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
            chart
                .draw_series(pts.into_iter().map(|p| Circle::new(p, 3, style)))
                .map_err(|e| err(&e))?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperLeft)
            .draw()
            .map_err(|e| err(&e))?;
        root.present().map_err(|e| err(&e))?;
    }
    write(path, &svg)
}

/// Writes an SVG document through the one safe primitive (`safe-write`).
fn write(path: &Path, svg: &str) -> anyhow::Result<()> {
    safe_write::write_bytes(path, svg.as_bytes())
        .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))
}

/// Held-out perplexity against training tokens, one line per series (both axes logarithmic):
/// the pretraining curves of the controlled study.
pub fn write_curves_svg(
    series: &[(String, Vec<(f64, f64)>)],
    title: &str,
    path: &Path,
) -> anyhow::Result<()> {
    let pts: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|(_, v)| v.iter().copied())
        .filter(|(x, y)| *x > 0.0 && y.is_finite() && *y > 0.0)
        .collect();
    anyhow::ensure!(!pts.is_empty(), "nothing to plot: no held-out evaluation");
    let (xmin, xmax) = pts
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.0), b.max(p.0)));
    let (ymin, ymax) = pts
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.1), b.max(p.1)));
    let err = |e: &dyn std::fmt::Display| anyhow::anyhow!("plot {}: {e}", path.display());
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (900, 560)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(
                (xmin / 1.5..xmax * 1.5).log_scale(),
                (ymin / 1.2..ymax * 1.2).log_scale(),
            )
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .x_desc("training tokens")
            .y_desc("held-out perplexity")
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_label_formatter(&|y| format!("{y:.0}"))
            .draw()
            .map_err(|e| err(&e))?;
        for (i, (name, v)) in series.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            let style = ShapeStyle {
                color,
                filled: true,
                stroke_width: 2,
            };
            let v: Vec<(f64, f64)> = v.iter().copied().filter(|(x, _)| *x > 0.0).collect();
            chart
                .draw_series(LineSeries::new(v.clone(), style))
                .map_err(|e| err(&e))?
                .label(name.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
            chart
                .draw_series(v.into_iter().map(|p| Circle::new(p, 3, style)))
                .map_err(|e| err(&e))?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(|e| err(&e))?;
        root.present().map_err(|e| err(&e))?;
    }
    write(path, &svg)
}
