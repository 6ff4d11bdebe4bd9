//! The default weight search: a coarse grid picks starting points, then exact line
//! searches ([`super::line`]) move each start along the free weights and along seeded
//! random directions, to the middle of the best plateau each time, until a whole sweep
//! makes no fewer errors. The start with the fewest errors wins (the first on ties).
//!
//! Every line it searches is linear in the combined score: a single weight, a mix of
//! `length_penalty`, `ngram_weight` and `backward_weight` at a fixed `lm_weight`, or a
//! mix of `lm_weight` and `length_penalty` at fixed shares (`score` is bilinear in
//! `lm_weight` and the shares, so a line that moves both is not a line in score space).
//! The seed is fixed, so the same input gives the same weights.

use super::line::{choose, profile, LineScore, ListLine, Plateau};
use super::search::{edits_at, Axis, Cached, Found, Searched, Space};
use crate::rescore::combine::Weights;
use rand::{Rng, SeedableRng};
use std::ops::Range;

/// A point in weight space: `lm_weight`, `length_penalty`, `ngram_weight`,
/// `backward_weight`.
type Point = [f64; 4];
/// The scale of each weight in a random direction: the shares live in [0, 1], the
/// others are some units of nats.
const SCALE: Point = [1.0, 1.0, 0.1, 0.1];
/// Grid values kept per free axis for the starting grid.
const COARSE_VALUES: usize = 5;
/// `lm_weight` and `length_penalty` of the starting grid are also tried at this many
/// times their values: a decoder weights its LM some ten times against its acoustic
/// score.
const COARSE_SCALE: f64 = 4.0;
/// How many of the best grid settings start a descent.
const STARTS: usize = 16;
/// How many start each resample's descents (`--bags`).
const BAG_STARTS: usize = 4;
/// Sweeps at most per start.
const MAX_SWEEPS: usize = 30;
/// The random directions' seed.
const SEED: u64 = 0x6d65_7274;
/// The resamples' seed.
const BAG_SEED: u64 = 0x6261_6773;
/// Resamples searched when `--bags` is not given, for lists enough to resample.
const DEFAULT_BAGS: usize = 64;
/// Lists below which `--bags` defaults to 1: a resample of a handful of lists is
/// another problem, not another draw of the same one.
const MIN_LISTS_TO_BAG: usize = 100;

/// The resamples to search: `asked`, else 64 for 100 lists or more and 1 below.
pub fn bags_for(lists: usize, asked: Option<usize>) -> usize {
    asked.unwrap_or(if lists >= MIN_LISTS_TO_BAG {
        DEFAULT_BAGS
    } else {
        1
    })
}

fn point(w: &Weights) -> Point {
    [
        w.lm_weight,
        w.length_penalty,
        w.ngram_weight,
        w.backward_weight,
    ]
}

fn weights(x: &Point) -> Weights {
    Weights {
        lm_weight: x[0],
        length_penalty: x[1],
        ngram_weight: x[2],
        backward_weight: x[3],
    }
}

/// What a candidate contributes to a line's slope, per unit of each weight.
struct Features {
    /// ∂lm/∂ngram_weight: the n-gram score less the forward one (0 without it).
    ngram_gain: f64,
    /// ∂lm/∂backward_weight.
    backward_gain: f64,
}

impl Features {
    fn of(c: &Cached) -> Self {
        Features {
            ngram_gain: c.lm.ngram.map_or(0.0, |n| n - c.lm.forward),
            backward_gain: c.lm.backward.map_or(0.0, |b| b - c.lm.forward),
        }
    }
}

struct Descent<'a> {
    cache: &'a [Cached],
    lists: &'a [Range<usize>],
    features: Vec<Features>,
    errors: Vec<usize>,
    axes: [&'a Axis; 4],
    line_searches: usize,
    searched: Searched,
}

impl Descent<'_> {
    fn free(&self) -> Vec<usize> {
        (0..4).filter(|&i| self.axes[i].free).collect()
    }

    fn note(&mut self, x: &Point) {
        widen(&mut self.searched, x);
    }

    /// The `t` range along `d` from `x` that keeps every weight within its bounds and
    /// the two shares' sum within 1.
    fn limits(&self, x: &Point, d: &Point) -> (f64, f64) {
        let (mut low, mut high) = (f64::NEG_INFINITY, f64::INFINITY);
        let mut bound = |value: f64, rate: f64, min: f64, max: f64| {
            if rate > 0.0 {
                low = low.max((min - value) / rate);
                high = high.min((max - value) / rate);
            } else if rate < 0.0 {
                low = low.max((max - value) / rate);
                high = high.min((min - value) / rate);
            }
        };
        for i in 0..4 {
            bound(x[i], d[i], self.axes[i].bounds.0, self.axes[i].bounds.1);
        }
        bound(x[2] + x[3], d[2] + d[3], f64::NEG_INFINITY, 1.0);
        (low.min(0.0), high.max(0.0))
    }

    /// One exact line search from `x` along `d`: the chosen point, its plateau.
    fn line(&mut self, x: &Point, d: &Point) -> (Point, Plateau) {
        debug_assert!(d[0] == 0.0 || (d[2] == 0.0 && d[3] == 0.0));
        self.line_searches += 1;
        let w = weights(x);
        let scores: Vec<LineScore> = self
            .cache
            .iter()
            .zip(&self.features)
            .map(|(c, f)| LineScore {
                intercept: w.score(c.am, &c.lm, c.words),
                slope: d[0] * w.lm(&c.lm)
                    + d[1] * c.words as f64
                    + x[0] * (d[2] * f.ngram_gain + d[3] * f.backward_gain),
            })
            .collect();
        let lists: Vec<ListLine> = self
            .lists
            .iter()
            .map(|r| ListLine {
                lines: &scores[r.clone()],
                errors: &self.errors[r.clone()],
            })
            .collect();
        let (from, to) = self.limits(x, d);
        let plateaus = profile(&lists, from, to);
        let unit = d.iter().map(|v| v.abs()).fold(0.0, f64::max).recip();
        // A single weight's line is rounded in that weight's own units.
        let single = d.iter().filter(|v| **v != 0.0).count() == 1;
        let axis = d.iter().position(|v| *v != 0.0).unwrap_or(0);
        let origin = if single { x[axis] } else { 0.0 };
        let choice = choose(&plateaus, unit, origin).expect("a line has a plateau");
        let mut next = *x;
        for i in 0..4 {
            next[i] = tidy(x[i] + choice.t * d[i]);
        }
        // The sum of the shares may not pass 1 by rounding.
        if next[2] + next[3] > 1.0 {
            next[3] = 1.0 - next[2];
        }
        self.note(&next);
        (next, choice.plateau)
    }

    /// Seeded random directions over the free weights: a mix of `length_penalty` and
    /// the shares, or of `lm_weight` and `length_penalty`.
    fn random_directions(&self, rng: &mut rand_chacha::ChaCha12Rng) -> Vec<Point> {
        let free = self.free();
        let mut directions = Vec::new();
        for _ in 0..2 * free.len().saturating_sub(1) {
            let with_lm = rng.gen_bool(0.5);
            let mut d = [0.0; 4];
            for &i in &free {
                let part_of = if with_lm { i <= 1 } else { i >= 1 };
                if part_of {
                    d[i] = rng.gen_range(-1.0..1.0) * SCALE[i];
                }
            }
            if d.iter().filter(|v| **v != 0.0).count() >= 2 {
                directions.push(d);
            }
        }
        directions
    }

    /// Line searches from `x` until a sweep makes no fewer errors.
    fn descend(&mut self, mut x: Point, rng: &mut rand_chacha::ChaCha12Rng) -> (Point, usize) {
        let mut errors = self.errors_at(&x);
        for _ in 0..MAX_SWEEPS {
            let mut directions = self.random_directions(rng);
            // The single weights last, so that each ends the sweep on a short decimal.
            for i in self.free() {
                let mut d = [0.0; 4];
                d[i] = 1.0;
                directions.push(d);
            }
            let before = errors;
            for d in directions {
                let (next, plateau) = self.line(&x, &d);
                x = next;
                errors = plateau.errors;
            }
            if errors >= before {
                break;
            }
        }
        (x, self.errors_at(&x))
    }

    fn errors_at(&self, x: &Point) -> usize {
        edits_at(self.cache, self.lists, &weights(x)).errors()
    }
}

fn tidy(v: f64) -> f64 {
    (v * 1e9).round() / 1e9
}

/// The starting grid of one axis: at most [`COARSE_VALUES`] of its values, evenly
/// picked with both ends, and for `lm_weight` and `length_penalty` the same times
/// [`COARSE_SCALE`].
fn coarse(axis: &Axis, scaled: bool) -> Vec<f64> {
    if !axis.free {
        return axis.values.clone();
    }
    let n = axis.values.len();
    let keep = COARSE_VALUES.min(n);
    let mut values: Vec<f64> = (0..keep)
        .map(|k| axis.values[k * (n - 1) / (keep - 1).max(1)])
        .collect();
    if scaled {
        let more: Vec<f64> = values.iter().map(|v| tidy(v * COARSE_SCALE)).collect();
        values.extend(more);
    }
    values.sort_by(f64::total_cmp);
    values.dedup();
    values
}

/// The best weights in `space` by exact line searches; `None` when no setting of the
/// starting grid keeps the shares within 1. With `bags` above 1, the weights are the
/// mean of the searches on that many resamples of the lists (bootstrap aggregating):
/// each resample draws as many lists as there are, with replacement, from a fixed
/// seed. One search fits the chance errors of its lists; the mean of searches on
/// resamples fits less of them, so it carries to other lists better.
pub fn search(
    cache: &[Cached],
    lists: &[Range<usize>],
    space: &Space,
    bags: usize,
) -> Option<Found> {
    if bags <= 1 {
        return search_once(cache, lists, space);
    }
    // The starts are the whole lists' best grid settings: ranking the grid again on
    // each resample would cost more than the resample's own descents.
    let grid = ranked_grid(cache, lists, space);
    let starts = &grid[..grid.len().min(BAG_STARTS)];
    let found = search_resamples(cache, &resamples(lists, bags), space, starts)?;
    let mut mean = [0.0; 4];
    for f in &found {
        for (m, v) in mean.iter_mut().zip(point(&f.weights)) {
            *m += v / found.len() as f64;
        }
    }
    let chosen = weights(&mean.map(short));
    // What was tried: the grid that ranked the starts and every resample's lines.
    let mut searched = [(f64::INFINITY, f64::NEG_INFINITY); 2];
    for x in &grid {
        widen(&mut searched, x);
    }
    for f in &found {
        for (range, more) in searched.iter_mut().zip(f.searched) {
            *range = (range.0.min(more.0), range.1.max(more.1));
        }
    }
    Some(Found {
        weights: chosen,
        edits: edits_at(cache, lists, &chosen),
        settings: grid.len() + found.iter().map(|f| f.settings).sum::<usize>(),
        at_range_end: Vec::new(),
        searched,
    })
}

/// `bags` resamples of `lists`, each as many lists drawn with replacement.
fn resamples(lists: &[Range<usize>], bags: usize) -> Vec<Vec<Range<usize>>> {
    let mut rng = rand_chacha::ChaCha12Rng::seed_from_u64(BAG_SEED);
    (0..bags)
        .map(|_| {
            (0..lists.len())
                .map(|_| lists[rng.gen_range(0..lists.len())].clone())
                .collect()
        })
        .collect()
}

/// The descents from `starts` on each of `samples`, spread over the cores, in order.
fn search_resamples(
    cache: &[Cached],
    samples: &[Vec<Range<usize>>],
    space: &Space,
    starts: &[Point],
) -> Option<Vec<Found>> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per_thread = samples.len().div_ceil(threads).max(1);
    let found: Vec<Option<Found>> = std::thread::scope(|scope| {
        let handles: Vec<_> = samples
            .chunks(per_thread)
            .map(|chunk| {
                scope.spawn(move || {
                    chunk
                        .iter()
                        .map(|sample| descend_from(cache, sample, space, starts))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("a bag's search does not panic"))
            .collect()
    });
    found.into_iter().collect()
}

/// `searched` widened to take in `x`'s `lm_weight` and `length_penalty`.
fn widen(searched: &mut Searched, x: &Point) {
    for (range, value) in searched.iter_mut().zip([x[0], x[1]]) {
        *range = (range.0.min(value), range.1.max(value));
    }
}

/// `v` to four significant digits: a mean of searches has no short decimal of its own.
fn short(v: f64) -> f64 {
    if v == 0.0 || !v.is_finite() {
        return v;
    }
    let scale = 10f64.powi(3 - v.abs().log10().floor() as i32);
    tidy((v * scale).round() / scale)
}

/// One search on `lists`.
fn search_once(cache: &[Cached], lists: &[Range<usize>], space: &Space) -> Option<Found> {
    let grid = ranked_grid(cache, lists, space);
    let mut found = descend_from(cache, lists, space, &grid[..grid.len().min(STARTS)])?;
    found.settings += grid.len();
    for x in &grid {
        widen(&mut found.searched, x);
    }
    Some(found)
}

fn axes(space: &Space) -> [&Axis; 4] {
    [
        &space.lm_weight,
        &space.length_penalty,
        &space.ngram_weight,
        &space.backward_weight,
    ]
}

/// The settings of the coarse grid that keep the shares within 1, fewest errors on
/// `lists` first (the grid's order on ties).
fn ranked_grid(cache: &[Cached], lists: &[Range<usize>], space: &Space) -> Vec<Point> {
    let axes = axes(space);
    let mut grid: Vec<(usize, Point)> = Vec::new();
    let values: Vec<Vec<f64>> = (0..4).map(|i| coarse(axes[i], i <= 1)).collect();
    for &a in &values[0] {
        for &b in &values[1] {
            for &c in &values[2] {
                for &d in &values[3] {
                    if c + d <= 1.0 + 1e-9 {
                        let x = [a, b, c, d];
                        grid.push((edits_at(cache, lists, &weights(&x)).errors(), x));
                    }
                }
            }
        }
    }
    // A stable sort: among equal errors the grid's order decides.
    grid.sort_by_key(|(errors, _)| *errors);
    grid.into_iter().map(|(_, x)| x).collect()
}

/// Line searches on `lists` from each of `starts`: the end point with the fewest
/// errors (the first on ties); `None` without a start.
fn descend_from(
    cache: &[Cached],
    lists: &[Range<usize>],
    space: &Space,
    starts: &[Point],
) -> Option<Found> {
    let mut descent = Descent {
        cache,
        lists,
        features: cache.iter().map(Features::of).collect(),
        errors: cache.iter().map(|c| c.edits.errors()).collect(),
        axes: axes(space),
        line_searches: 0,
        searched: [(f64::INFINITY, f64::NEG_INFINITY); 2],
    };
    let mut rng = rand_chacha::ChaCha12Rng::seed_from_u64(SEED);
    let mut best: Option<(usize, Point)> = None;
    for start in starts {
        descent.note(start);
        let (x, errors) = descent.descend(*start, &mut rng);
        if best.is_none_or(|(e, _)| errors < e) {
            best = Some((errors, x));
        }
    }
    let (_, x) = best?;
    let chosen = weights(&x);
    Some(Found {
        weights: chosen,
        edits: edits_at(cache, lists, &chosen),
        settings: descent.line_searches,
        // The lines run as far as the weights' own limits: no range has an end.
        at_range_end: Vec::new(),
        searched: descent.searched,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rescore::combine::LmScores;
    use crate::wer::Edits;

    fn candidate(am: f64, forward: f64, errors: usize) -> Cached {
        Cached {
            am: Some(am),
            lm: LmScores {
                forward,
                backward: None,
                ngram: None,
            },
            words: 3,
            edits: Edits {
                substitutions: errors,
                ..Edits::default()
            },
        }
    }

    /// Lists of two candidates where the LM's favourite is right once `lm_weight`
    /// passes 10, 20 and 30, and wrong once it passes 50 and 60: no error only on
    /// (30, 50), far beyond the grid, whose middle is 40.
    fn lists() -> (Vec<Cached>, Vec<Range<usize>>) {
        let mut cache = Vec::new();
        for (threshold, lm_is_right) in [
            (10.0, true),
            (20.0, true),
            (30.0, true),
            (50.0, false),
            (60.0, false),
        ] {
            let (acoustic, language) = if lm_is_right { (1, 0) } else { (0, 1) };
            cache.push(candidate(threshold, -2.0, acoustic));
            cache.push(candidate(0.0, -1.0, language));
        }
        let lists = (0..5).map(|i| 2 * i..2 * i + 2).collect();
        (cache, lists)
    }

    fn space() -> Space {
        let values = |from: f64, to: f64, step: f64| {
            let n = ((to - from) / step).round() as usize;
            (0..=n).map(|k| from + k as f64 * step).collect::<Vec<_>>()
        };
        Space {
            lm_weight: Axis::search(values(0.0, 3.0, 0.1), (0.0, f64::INFINITY)),
            length_penalty: Axis::search(
                values(-5.0, 5.0, 0.5),
                (f64::NEG_INFINITY, f64::INFINITY),
            ),
            ngram_weight: Axis::fixed(0.0),
            backward_weight: Axis::fixed(0.0),
        }
    }

    #[test]
    fn the_line_search_lands_in_the_middle_of_a_plateau_beyond_the_grid() {
        let (cache, lists) = lists();
        let found = search(&cache, &lists, &space(), 1).unwrap();
        assert_eq!(found.edits.errors(), 0);
        assert_eq!(found.weights.lm_weight, 40.0);
        assert_eq!(found.edits, edits_at(&cache, &lists, &found.weights));
        // The same input, the same weights.
        assert_eq!(search(&cache, &lists, &space(), 1).unwrap(), found);
    }

    /// Each resample misses some lists and repeats others, so its best plateau moves
    /// (without the list that needs 30, it starts at 20); the mean of the resamples'
    /// weights stays inside the plateau of all the lists, and a run reproduces.
    #[test]
    fn bagging_averages_the_searches_of_resampled_lists() {
        let (cache, lists) = lists();
        let bagged = search(&cache, &lists, &space(), 6).unwrap();
        let lm_weight = bagged.weights.lm_weight;
        assert!(lm_weight > 30.0 && lm_weight < 50.0, "{lm_weight}");
        assert_eq!(bagged.edits.errors(), 0);
        assert_eq!(search(&cache, &lists, &space(), 6).unwrap(), bagged);
        // By hand: the same resamples, searched one by one and averaged.
        let mut rng = rand_chacha::ChaCha12Rng::seed_from_u64(BAG_SEED);
        let mut sum = 0.0;
        for _ in 0..6 {
            let sample: Vec<Range<usize>> = (0..lists.len())
                .map(|_| lists[rng.gen_range(0..lists.len())].clone())
                .collect();
            sum += search_once(&cache, &sample, &space())
                .unwrap()
                .weights
                .lm_weight;
        }
        assert_eq!(lm_weight, short(sum / 6.0));
        assert_ne!(lm_weight, 40.0, "the resamples all found the same plateau");
        // Bagging by default only where there are lists enough to resample.
        assert_eq!(bags_for(5, None), 1);
        assert_eq!(bags_for(500, None), 64);
        assert_eq!(bags_for(500, Some(1)), 1);
        assert_eq!(bags_for(5, Some(6)), 6);
        assert_eq!(short(123.456_78), 123.5);
        assert_eq!(short(-0.012_345_6), -0.012_35);
    }

    #[test]
    fn the_line_search_makes_no_more_errors_than_the_grid_search() {
        let (mut cache, lists) = lists();
        // Give the length penalty something to do: the wrong candidates are longer.
        for c in cache.iter_mut() {
            c.words += c.edits.errors() * 2;
        }
        let line = search(&cache, &lists, &space(), 1).unwrap();
        let grid = super::super::search::search(&cache, &lists, &space()).unwrap();
        assert!(line.edits.errors() <= grid.edits.errors());
    }
}
