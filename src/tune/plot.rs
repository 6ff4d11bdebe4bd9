//! `tune --plot`: how the word error rate depends on the weights around the chosen ones.
//!
//! Left, WER against `lm_weight` with the other weights at their chosen values; right,
//! a heatmap of WER over `lm_weight` × `length_penalty`. Both span the ranges the
//! search tried (with `--apply`, twice the chosen values either way), whose ends are
//! drawn as dashed lines, so an optimum at a range's end shows as one. The chosen point
//! is a red dot. The PNG's `rnnlm:chosen` text chunk holds the chosen weights and WER
//! as JSON, so a program can check the picture against `tune --json`.

use super::report::TuneReport;
use super::search::{edits_at, Cached};
use crate::rescore::combine::Weights;
use anyhow::Result;
use std::ops::Range;
use std::path::Path;

/// Points of the WER curve.
#[cfg_attr(not(feature = "plot"), allow(dead_code))]
const CURVE_POINTS: usize = 241;
/// Cells per side of the heatmap.
#[cfg_attr(not(feature = "plot"), allow(dead_code))]
const HEATMAP_CELLS: usize = 61;
/// The picture's size in pixels.
#[cfg_attr(not(feature = "plot"), allow(dead_code))]
const SIZE: (u32, u32) = (1200, 520);

/// What the plot draws: the cached candidates and the chosen weights.
pub struct TunePlot<'a> {
    /// Every candidate, as the search saw it.
    pub cache: &'a [Cached],
    /// Each list's candidates.
    pub lists: &'a [Range<usize>],
    /// Words in the references.
    pub reference_words: usize,
    /// The report whose `rescored` weights are the chosen point.
    pub report: &'a TuneReport,
    /// The `lm_weight` and `length_penalty` ranges the search tried, if it ran.
    pub searched: Option<super::search::Searched>,
}

impl TunePlot<'_> {
    #[cfg_attr(not(feature = "plot"), allow(dead_code))]
    fn chosen(&self) -> Weights {
        Weights {
            lm_weight: self.report.lm_weight,
            length_penalty: self.report.length_penalty,
            ngram_weight: self.report.ngram_weight,
            backward_weight: self.report.backward_weight,
        }
    }

    #[cfg_attr(not(feature = "plot"), allow(dead_code))]
    fn wer_at(&self, weights: &Weights) -> f64 {
        100.0 * edits_at(self.cache, self.lists, weights).errors() as f64
            / self.reference_words.max(1) as f64
    }

    /// The plotted `lm_weight` and `length_penalty` ranges and the range ends marked.
    #[cfg_attr(not(feature = "plot"), allow(dead_code))]
    fn ranges(&self) -> [(f64, f64); 2] {
        let chosen = self.chosen();
        let around = |v: f64, floor: f64| (v - v.abs().max(floor), v + v.abs().max(floor));
        let ranges = self.searched.unwrap_or([
            (0.0, 2.0 * chosen.lm_weight.max(0.5)),
            around(chosen.length_penalty, 1.0),
        ]);
        ranges.map(|(low, high)| {
            if high > low {
                (low, high)
            } else {
                (low - 1.0, high + 1.0)
            }
        })
    }

    /// Writes the PNG.
    pub fn write(&self, path: &Path) -> Result<()> {
        #[cfg(feature = "plot")]
        return draw::write(self, path);
        #[cfg(not(feature = "plot"))]
        {
            let _ = path;
            anyhow::bail!("--plot: this rnnlm was built without the `plot` feature");
        }
    }
}

#[cfg(feature = "plot")]
mod draw {
    use super::*;
    use crate::files::write_atomic;
    use anyhow::Context;
    use plotters::prelude::*;

    /// A colour from dark blue (lowest WER) through green to yellow (highest).
    fn shade(t: f64) -> RGBColor {
        let t = t.clamp(0.0, 1.0);
        let stops = [
            (0.0, (38, 24, 110)),
            (0.5, (33, 145, 140)),
            (1.0, (250, 230, 40)),
        ];
        let (i, local) = if t <= 0.5 {
            (0, t / 0.5)
        } else {
            (1, (t - 0.5) / 0.5)
        };
        let (a, b) = (stops[i].1, stops[i + 1].1);
        let mix =
            |x: u8, y: u8| (f64::from(x) + (f64::from(y) - f64::from(x)) * local).round() as u8;
        RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
    }

    fn spaced(range: (f64, f64), count: usize) -> Vec<f64> {
        (0..count)
            .map(|i| range.0 + (range.1 - range.0) * i as f64 / (count - 1) as f64)
            .collect()
    }

    fn padded(range: (f64, f64)) -> Range<f64> {
        let pad = 0.03 * (range.1 - range.0);
        range.0 - pad..range.1 + pad
    }

    pub(super) fn write(plot: &TunePlot, path: &Path) -> Result<()> {
        let (width, height) = SIZE;
        let mut pixels = vec![0u8; (width * height * 3) as usize];
        render(plot, &mut pixels).map_err(|e| anyhow::anyhow!("--plot: {e}"))?;
        let chosen = plot.chosen();
        let text = serde_json::json!({
            "lm_weight": chosen.lm_weight,
            "length_penalty": chosen.length_penalty,
            "ngram_weight": chosen.ngram_weight,
            "backward_weight": chosen.backward_weight,
            "wer": plot.report.rescored_wer,
        })
        .to_string();
        write_atomic(path, |w| {
            let mut encoder = png::Encoder::new(&mut *w, width, height);
            encoder.set_color(png::ColorType::Rgb);
            encoder.set_depth(png::BitDepth::Eight);
            encoder.add_text_chunk("rnnlm:chosen".into(), text)?;
            let mut writer = encoder.write_header()?;
            writer.write_image_data(&pixels)?;
            writer.finish()?;
            w.flush()?;
            Ok(())
        })
        .with_context(|| format!("cannot write {}", path.display()))
    }

    fn render(plot: &TunePlot, pixels: &mut [u8]) -> Result<(), Box<dyn std::error::Error>> {
        crate::plot::register_font();
        let root = BitMapBackend::with_buffer(pixels, SIZE).into_drawing_area();
        root.fill(&WHITE)?;
        let (left, right) = root.split_horizontally(SIZE.0 / 2);
        draw_curve(plot, &left)?;
        draw_heatmap(plot, &right)?;
        root.present()?;
        Ok(())
    }

    type Area<'a> = DrawingArea<BitMapBackend<'a>, plotters::coord::Shift>;
    type Drawn = Result<(), Box<dyn std::error::Error>>;

    /// WER against lm_weight, the other weights at their chosen values.
    fn draw_curve(plot: &TunePlot, area: &Area) -> Drawn {
        let chosen = plot.chosen();
        let [lm_range, _] = plot.ranges();
        let chosen_wer = plot.wer_at(&chosen);
        let red = RGBColor(214, 39, 40);
        let curve: Vec<(f64, f64)> = spaced(lm_range, CURVE_POINTS)
            .into_iter()
            .map(|lm_weight| {
                let w = Weights {
                    lm_weight,
                    ..chosen
                };
                (lm_weight, plot.wer_at(&w))
            })
            .collect();
        let (low, high) = curve
            .iter()
            .fold((chosen_wer, chosen_wer), |(lo, hi), &(_, v)| {
                (lo.min(v), hi.max(v))
            });
        let margin = ((high - low) * 0.08).max(0.2);
        let mut chart = ChartBuilder::on(area)
            .caption(
                format!(
                    "WER against lm_weight (length_penalty {}, ngram {}, backward {})",
                    chosen.length_penalty, chosen.ngram_weight, chosen.backward_weight
                ),
                ("sans-serif", 16),
            )
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(55)
            .build_cartesian_2d(padded(lm_range), (low - margin)..(high + margin))?;
        chart
            .configure_mesh()
            .x_desc("lm_weight")
            .y_desc("WER (%)")
            .draw()?;
        chart.draw_series(LineSeries::new(curve, BLUE.stroke_width(2)))?;
        for end in [lm_range.0, lm_range.1] {
            chart.draw_series(DashedLineSeries::new(
                [(end, low - margin), (end, high + margin)],
                6,
                4,
                RGBColor(120, 120, 120).stroke_width(1),
            ))?;
        }
        chart.draw_series([Circle::new((chosen.lm_weight, chosen_wer), 6, red.filled())])?;
        chart.draw_series([Text::new(
            format!("chosen {} → {chosen_wer:.2}%", chosen.lm_weight),
            (chosen.lm_weight, high + margin * 0.2),
            ("sans-serif", 14).into_font().color(&red),
        )])?;

        Ok(())
    }

    /// WER over lm_weight × length_penalty, the shares at their chosen values.
    fn draw_heatmap(plot: &TunePlot, area: &Area) -> Drawn {
        let chosen = plot.chosen();
        let [lm_range, length_range] = plot.ranges();
        let red = RGBColor(214, 39, 40);
        let xs = spaced(lm_range, HEATMAP_CELLS);
        let ys = spaced(length_range, HEATMAP_CELLS);
        let mut cells = Vec::with_capacity(xs.len() * ys.len());
        for &x in &xs {
            for &y in &ys {
                let w = Weights {
                    lm_weight: x,
                    length_penalty: y,
                    ..chosen
                };
                cells.push((x, y, plot.wer_at(&w)));
            }
        }
        let (low, high) = cells
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), c| {
                (lo.min(c.2), hi.max(c.2))
            });
        let (dx, dy) = (
            (lm_range.1 - lm_range.0) / (HEATMAP_CELLS - 1) as f64,
            (length_range.1 - length_range.0) / (HEATMAP_CELLS - 1) as f64,
        );
        let mut heat = ChartBuilder::on(area)
            .caption(
                format!(
                    "WER (%) over lm_weight × length_penalty: {low:.2} (dark) to {high:.2} (light)"
                ),
                ("sans-serif", 16),
            )
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(55)
            .build_cartesian_2d(padded(lm_range), padded(length_range))?;
        heat.configure_mesh()
            .disable_mesh()
            .x_desc("lm_weight")
            .y_desc("length_penalty")
            .draw()?;
        let span = (high - low).max(1e-12);
        heat.draw_series(cells.iter().map(|&(x, y, wer)| {
            Rectangle::new(
                [(x - dx / 2.0, y - dy / 2.0), (x + dx / 2.0, y + dy / 2.0)],
                shade((wer - low) / span).filled(),
            )
        }))?;
        let grey = RGBColor(120, 120, 120);
        let (x0, x1, y0, y1) = (lm_range.0, lm_range.1, length_range.0, length_range.1);
        for segment in [
            [(x0, y0), (x1, y0)],
            [(x1, y0), (x1, y1)],
            [(x1, y1), (x0, y1)],
            [(x0, y1), (x0, y0)],
        ] {
            heat.draw_series(DashedLineSeries::new(segment, 6, 4, grey.stroke_width(1)))?;
        }
        heat.draw_series([Circle::new(
            (chosen.lm_weight, chosen.length_penalty),
            6,
            red.filled(),
        )])?;
        heat.draw_series([Circle::new(
            (chosen.lm_weight, chosen.length_penalty),
            7,
            WHITE.stroke_width(1),
        )])?;
        Ok(())
    }
}
