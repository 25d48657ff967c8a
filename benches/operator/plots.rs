//! The pictures drawn from a run's figures, as SVG: the latency distributions of the operator
//! and raw Docker, and the controller's peak RSS against the TaskRuns present.

use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::Result;
use crate::report::{Figures, LatencySamples, Memory, TARGET_RSS_MIB, thousands};

const OPERATOR: RGBColor = RGBColor(0x1f, 0x77, 0xb4);
const RAW: RGBColor = RGBColor(0xd6, 0x27, 0x28);
const TARGET: RGBColor = RGBColor(0x2c, 0xa0, 0x2c);
const FONT: &str = "sans-serif";

/// Draws every picture the figures allow; `path` names a picture's file. Returns the files.
pub fn draw(figures: &Figures, path: impl Fn(&str) -> PathBuf) -> Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    if let Some(latency) = &figures.latency {
        let file = path("latency");
        latency_cdf(&file, &latency.samples)
            .map_err(|e| format!("failed to draw {}: {e}", file.display()))?;
        written.push(file);
    }
    if let Some(memory) = figures.memory.as_ref().filter(|m| !m.levels.is_empty()) {
        let file = path("memory");
        memory_by_objects(&file, memory)
            .map_err(|e| format!("failed to draw {}: {e}", file.display()))?;
        written.push(file);
    }
    Ok(written)
}

/// Two panels, create -> container started and create -> done: for each latency, the share
/// of runs that took at most that long (an empirical CDF), operator beside raw Docker.
fn latency_cdf(file: &Path, samples: &LatencySamples) -> Result<()> {
    let root = SVGBackend::new(file, (1100, 460)).into_drawing_area();
    root.fill(&WHITE)?;
    let (title, panels) = root.split_vertically(40);
    title.titled(
        &format!(
            "Latency of {} sequential busybox `true` runs, from the create call",
            samples.operator_succeeded_ms.len()
        ),
        (FONT, 22),
    )?;
    let (left, right) = panels.split_horizontally(550);
    cdf_panel(
        &left,
        "create -> container started (the daemon's start event)",
        &[
            ("operator (TaskRun)", &samples.operator_started_ms, OPERATOR),
            ("raw Docker API", &samples.raw_started_ms, RAW),
        ],
    )?;
    cdf_panel(
        &right,
        "create -> done (Succeeded seen / wait returned)",
        &[
            (
                "operator (TaskRun)",
                &samples.operator_succeeded_ms,
                OPERATOR,
            ),
            ("raw Docker API", &samples.raw_exited_ms, RAW),
        ],
    )?;
    root.present()?;
    Ok(())
}

fn cdf_panel(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    caption: &str,
    series: &[(&str, &Vec<f64>, RGBColor)],
) -> Result<()> {
    let all = || {
        series
            .iter()
            .flat_map(|(_, values, _)| values.iter().copied())
    };
    let low = all().fold(f64::INFINITY, f64::min);
    let high = all().fold(0.0, f64::max);
    let pad = ((high - low) * 0.05).max(1.0);
    let mut chart = ChartBuilder::on(area)
        .caption(caption, (FONT, 16))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d((low - pad).max(0.0)..high + pad, 0.0..1.0)?;
    chart
        .configure_mesh()
        .x_desc("milliseconds")
        .x_label_formatter(&|ms: &f64| format!("{ms:.0}"))
        .y_desc("share of runs at most this long")
        .y_label_formatter(&|share: &f64| format!("{:.0}%", share * 100.0))
        .draw()?;
    for &(label, values, color) in series {
        let mut sorted = values.clone();
        sorted.sort_by(f64::total_cmp);
        let count = sorted.len() as f64;
        let steps = sorted
            .iter()
            .enumerate()
            .flat_map(|(i, &ms)| [(ms, i as f64 / count), (ms, (i + 1) as f64 / count)]);
        chart
            .draw_series(LineSeries::new(steps, color.stroke_width(2)))?
            .label(label)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font((FONT, 14))
        .draw()?;
    Ok(())
}

/// The controller's peak RSS (`VmHWM`) with each count of finished TaskRuns present, on a
/// logarithmic axis since the counts span decades, beside the targets and its RSS idle.
fn memory_by_objects(file: &Path, memory: &Memory) -> Result<()> {
    let points: Vec<(f64, f64)> = memory
        .levels
        .iter()
        .map(|level| (level.objects as f64, level.peak_rss_mib))
        .collect();
    let targets: Vec<(f64, f64)> = TARGET_RSS_MIB
        .iter()
        .filter(|(objects, _)| memory.levels.iter().any(|l| l.objects == *objects))
        .map(|&(objects, mib)| (objects as f64, mib))
        .collect();
    let idle = memory.idle.map(|level| level.peak_rss_mib);
    let fewest = points.iter().map(|p| p.0).fold(f64::INFINITY, f64::min);
    let most = points.iter().map(|p| p.0).fold(1.0, f64::max);
    let most_mib = points
        .iter()
        .chain(&targets)
        .map(|p| p.1)
        .chain(idle)
        .fold(1.0, f64::max);
    let x_range = (fewest / 2.0)..(most * 2.0);

    let root = SVGBackend::new(file, (900, 540)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Controller peak RSS against the finished TaskRuns present",
            (FONT, 22),
        )
        .margin(16)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(x_range.clone().log_scale(), 0.0..most_mib * 1.2)?;
    chart
        .configure_mesh()
        .x_desc("finished TaskRuns present when the controller started")
        .y_desc("peak RSS (MiB)")
        .max_light_lines(1)
        .x_label_formatter(&|objects: &f64| round_label(*objects))
        .draw()?;
    if let Some(idle) = idle {
        chart
            .draw_series(DashedLineSeries::new(
                [(x_range.start, idle), (x_range.end, idle)],
                6,
                4,
                BLACK.mix(0.6).stroke_width(1),
            ))?
            .label(format!("idle, no TaskRun: {idle:.1} MiB"))
            .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLACK.mix(0.6)));
    }
    chart
        .draw_series(LineSeries::new(
            points.iter().copied(),
            OPERATOR.stroke_width(2),
        ))?
        .label("measured (VmHWM)")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], OPERATOR.stroke_width(2)));
    chart.draw_series(points.iter().map(|&(objects, mib)| {
        EmptyElement::at((objects, mib))
            + Circle::new((0, 0), 4, OPERATOR.filled())
            + Text::new(format!("{mib:.1} MiB"), (8, -18), (FONT, 14))
    }))?;
    if !targets.is_empty() {
        chart
            .draw_series(
                targets
                    .iter()
                    .map(|&point| Cross::new(point, 7, TARGET.stroke_width(2))),
            )?
            .label("target")
            .legend(|(x, y)| Cross::new((x + 10, y), 5, TARGET.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font((FONT, 14))
        .draw()?;
    root.present()?;
    Ok(())
}

/// A tick label on the logarithmic axis: only 1, 2 and 5 times a power of ten are written, or
/// the labels run into each other near the top of each decade.
fn round_label(value: f64) -> String {
    let count = value.round() as usize;
    let digits = count.to_string();
    let leading_only = digits.chars().skip(1).all(|c| c == '0');
    if leading_only && digits.starts_with(['1', '2', '5']) {
        thousands(count)
    } else {
        String::new()
    }
}
