//! `loss.png`: training and validation loss per epoch.

use crate::metrics::EpochRecord;
use anyhow::Result;
#[cfg(feature = "plot")]
use plotters::prelude::*;
use std::path::Path;

/// Draws the train and valid loss curves (nats per token) to a PNG file (the bitmap
/// backend picks the format by the extension). The file goes into a checkpoint being
/// assembled, which appears whole or not at all.
/// Built without the `plot` feature, it draws nothing and writes no file.
pub fn plot_losses(path: &Path, history: &[EpochRecord]) -> Result<()> {
    if history.is_empty() {
        return Ok(());
    }
    #[cfg(feature = "plot")]
    return draw(path, history).map_err(|e| anyhow::anyhow!("{e}"));
    #[cfg(not(feature = "plot"))]
    {
        let _ = path;
        Ok(())
    }
}

/// Registers the font the plots write with, DejaVu Sans compiled into the binary:
/// the text of a plot never depends on the fonts a machine has installed.
#[cfg(feature = "plot")]
pub(crate) fn register_font() {
    static REGISTERED: std::sync::Once = std::sync::Once::new();
    REGISTERED.call_once(|| {
        let font = include_bytes!("../assets/fonts/DejaVuSans.ttf");
        plotters::style::register_font("sans-serif", FontStyle::Normal, font)
            .unwrap_or_else(|_| panic!("assets/fonts/DejaVuSans.ttf is not a font"));
    });
}

#[cfg(feature = "plot")]
fn draw(path: &Path, history: &[EpochRecord]) -> Result<(), Box<dyn std::error::Error>> {
    register_font();
    let root = BitMapBackend::new(path, (800, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    let losses = history.iter().flat_map(|r| [r.train_loss, r.valid_loss]);
    let (low, high) = losses.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    let margin = ((high - low) * 0.1).max(0.05);
    let last_epoch = history.last().map_or(1.0, |r| r.epoch).max(1.0);
    let mut chart = ChartBuilder::on(&root)
        .caption("loss per token", ("sans-serif", 24))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..last_epoch, (low - margin)..(high + margin))?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .y_desc("nats per token")
        .draw()?;
    let train: Vec<(f64, f64)> = history.iter().map(|r| (r.epoch, r.train_loss)).collect();
    let valid: Vec<(f64, f64)> = history.iter().map(|r| (r.epoch, r.valid_loss)).collect();
    let curves = [("train", BLUE, train), ("valid", RED, valid)];
    for (name, color, points) in curves {
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                color.stroke_width(2),
            ))?
            .label(name)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2)));
        chart.draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE)
        .draw()?;
    root.present()?;
    Ok(())
}
