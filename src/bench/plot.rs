//! SVG plots, written through `safe-write`: a scan-vs-attention grid (milliseconds against L,
//! both axes logarithmic, one line per (part, pass)) and pretraining curves (held-out
//! perplexity against tokens).

use std::path::Path;

use plotters::prelude::*;

use super::scan::{Pass, ScanRow};

/// One line of a plot: its legend, its points and its stroke width.
struct Line {
    name: String,
    points: Vec<(f64, f64)>,
    width: u32,
}

/// How a plot looks: axes' names, the y labels' format, where the legend goes.
struct Axes<'a> {
    title: &'a str,
    x: &'a str,
    y: &'a str,
    y_decimals: usize,
    legend: SeriesLabelPosition,
}

/// Writes the plot of `rows` to `path` (SVG); `title` goes on top.
pub fn write_svg(rows: &[ScanRow], title: &str, path: &Path) -> anyhow::Result<()> {
    let mut lines: Vec<Line> = Vec::new();
    for r in rows {
        let Some(t) = r.timing else { continue };
        let name = format!("{} {}", r.part.name(), r.pass.name());
        let p = (r.len as f64, t.median_ms);
        match lines.iter_mut().find(|l| l.name == name) {
            Some(l) => l.points.push(p),
            None => lines.push(Line {
                width: if name.ends_with(Pass::Fwd.name()) {
                    1
                } else {
                    2
                },
                name,
                points: vec![p],
            }),
        }
    }
    anyhow::ensure!(!lines.is_empty(), "nothing to plot: every cell failed");
    let axes = Axes {
        title,
        x: "sequence length L (tokens per call fixed)",
        y: "ms (median)",
        y_decimals: 3,
        legend: SeriesLabelPosition::UpperLeft,
    };
    write_lines(&lines, &axes, path)
}

/// Held-out perplexity against training tokens, one line per series (both axes logarithmic):
/// the pretraining curves of the controlled study.
pub fn write_curves_svg(
    series: &[(String, Vec<(f64, f64)>)],
    title: &str,
    path: &Path,
) -> anyhow::Result<()> {
    let lines: Vec<Line> = series
        .iter()
        .map(|(name, v)| Line {
            name: name.clone(),
            points: v
                .iter()
                .copied()
                .filter(|(x, y)| *x > 0.0 && y.is_finite() && *y > 0.0)
                .collect(),
            width: 2,
        })
        .filter(|l| !l.points.is_empty())
        .collect();
    anyhow::ensure!(!lines.is_empty(), "nothing to plot: no held-out evaluation");
    let axes = Axes {
        title,
        x: "training tokens",
        y: "held-out perplexity",
        y_decimals: 0,
        legend: SeriesLabelPosition::UpperRight,
    };
    write_lines(&lines, &axes, path)
}

/// Lines on logarithmic axes, points marked, rendered to a string and written through the one
/// safe primitive (`safe-write`).
fn write_lines(lines: &[Line], axes: &Axes, path: &Path) -> anyhow::Result<()> {
    let pts = lines.iter().flat_map(|l| l.points.iter());
    let (xmin, xmax, ymin, ymax) = pts.fold(
        (f64::MAX, f64::MIN, f64::MAX, f64::MIN),
        |(a, b, c, d), p| (a.min(p.0), b.max(p.0), c.min(p.1), d.max(p.1)),
    );
    let err = |e: &dyn std::fmt::Display| anyhow::anyhow!("plot {}: {e}", path.display());
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (900, 560)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(axes.title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(
                (xmin / 1.5..xmax * 1.5).log_scale(),
                (ymin / 1.5..ymax * 1.5).log_scale(),
            )
            .map_err(|e| err(&e))?;
        let decimals = axes.y_decimals;
        chart
            .configure_mesh()
            .x_desc(axes.x)
            .y_desc(axes.y)
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_label_formatter(&|y| format!("{y:.decimals$}"))
            .draw()
            .map_err(|e| err(&e))?;
        for (i, l) in lines.iter().enumerate() {
            let style = ShapeStyle {
                color: Palette99::pick(i).to_rgba(),
                filled: true,
                stroke_width: l.width,
            };
            chart
                .draw_series(LineSeries::new(l.points.clone(), style))
                .map_err(|e| err(&e))?
                .label(l.name.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
            chart
                .draw_series(l.points.iter().map(|&p| Circle::new(p, 3, style)))
                .map_err(|e| err(&e))?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(axes.legend.clone())
            .draw()
            .map_err(|e| err(&e))?;
        root.present().map_err(|e| err(&e))?;
    }
    safe_write::write_bytes(path, svg.as_bytes())
        .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))
}
