//! An SVG of every host's completion time, one series per scenario, with
//! the fluid lower bound T* as a dashed line.

use std::path::Path;

use anyhow::Context;
use plotters::prelude::*;

use super::report::Run;
use super::scenario::Mode;

const SIZE: (u32, u32) = (800, 480);

fn colour(mode: Mode) -> RGBColor {
    match mode {
        Mode::Direct => RGBColor(200, 60, 40),
        Mode::Shoal => RGBColor(30, 90, 200),
    }
}

/// Hosts sorted by finish time on x (the k-th host to finish), seconds on y.
pub fn completion_svg(run: &Run<'_>, path: &Path) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let t_star = run.lower_bound_s();
    let series: Vec<(Mode, Vec<f64>)> = run
        .outcomes
        .iter()
        .map(|o| {
            let mut f = o.finishes();
            f.sort_by(f64::total_cmp);
            (o.mode, f)
        })
        .collect();
    let y_max = series
        .iter()
        .flat_map(|(_, f)| f.iter().copied())
        .fold(t_star, f64::max)
        * 1.1;
    let hosts = run.site.hosts;
    let r = run.site.rates;
    let title = format!(
        "{} hosts, U0 {} / u {} / d {} Mbit/s, {}",
        hosts, r.origin_mbit, r.up_mbit, r.down_mbit, run.image
    );

    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    let draw = |e| anyhow::anyhow!("drawing {}: {e:?}", path.display());
    root.fill(&WHITE).map_err(draw)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(55)
        .build_cartesian_2d(0.5f64..hosts as f64 + 0.5, 0f64..y_max)
        .map_err(draw)?;
    chart
        .configure_mesh()
        .x_labels(hosts.min(16))
        .x_label_formatter(&|x| format!("{x:.0}"))
        .disable_x_mesh()
        .x_desc("hosts in order of finishing")
        .y_desc("seconds until the host holds the image")
        .draw()
        .map_err(draw)?;

    for (mode, finishes) in &series {
        let c = colour(*mode);
        let points: Vec<(f64, f64)> = finishes
            .iter()
            .enumerate()
            .map(|(k, t)| ((k + 1) as f64, *t))
            .collect();
        chart
            .draw_series(LineSeries::new(points.clone(), c.stroke_width(2)))
            .map_err(draw)?
            .label(mode.to_string())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
        chart
            .draw_series(points.iter().map(|p| Circle::new(*p, 4, c.filled())))
            .map_err(draw)?;
    }
    chart
        .draw_series(DashedLineSeries::new(
            vec![(0.5, t_star), (hosts as f64 + 0.5, t_star)],
            6,
            4,
            BLACK.stroke_width(1),
        ))
        .map_err(draw)?
        .label(format!("T* = {t_star:.1} s"))
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(draw)?;
    root.present().map_err(draw)?;
    Ok(())
}
