//! The weight search: a coarse grid, tried at growing scales, then refined coordinate
//! by coordinate with shrinking steps.
//!
//! A decoder weights its LM some ten times against its acoustic score, where a grid
//! written for rnnlm's own scores stops at 3. So the grid's `lm_weight` and
//! `length_penalty` values are tried as given, then doubled, quadrupled and so on
//! (scaling both is scaling the acoustic score down), until two scales in a row bring
//! no fewer errors; the refinement then starts from the best setting with the steps of
//! the scale that found it.
//!
//! Word error rate is a step function of the weights, so the search never needs a
//! gradient: every setting is tried on the cached scores (one pick per N-best list),
//! and a move is taken only when it makes strictly fewer errors, so among equal
//! settings the first one found stays, as the grid's first-in-order rule says. The
//! order of every step is fixed, so the same input gives the same weights.

use crate::rescore::combine::{best_index, LmScores, Weights};
use crate::wer::Edits;

/// What the search keeps of one candidate.
pub struct Cached {
    /// First-pass acoustic score (nats).
    pub am: Option<f64>,
    /// The language-model scores.
    pub lm: LmScores,
    /// Whitespace words of the hypothesis.
    pub words: usize,
    /// Word errors against the reference.
    pub edits: Edits,
}

/// One weight's search: where to start, where it may go.
#[derive(Clone, Debug, PartialEq)]
pub struct Axis {
    /// The coarse grid's values, rising.
    pub values: Vec<f64>,
    /// The values it may never leave (the ngram and backward shares: [0, 1]).
    pub bounds: (f64, f64),
    /// Widen and refine (false: only the given values are tried).
    pub free: bool,
}

impl Axis {
    /// One fixed value.
    pub fn fixed(value: f64) -> Self {
        Axis {
            values: vec![value],
            bounds: (value, value),
            free: false,
        }
    }

    /// Searches `values`; a single value stays fixed.
    pub fn search(mut values: Vec<f64>, bounds: (f64, f64)) -> Self {
        values.sort_by(f64::total_cmp);
        values.dedup();
        let free = values.len() > 1;
        Axis {
            values,
            bounds,
            free,
        }
    }

    fn low(&self) -> f64 {
        self.values[0]
    }

    fn high(&self) -> f64 {
        self.values[self.values.len() - 1]
    }

    fn step(&self) -> f64 {
        (self.high() - self.low()) / (self.values.len() - 1).max(1) as f64
    }
}

/// The four weights' axes, in the order `Weights` lists them.
#[derive(Clone, Debug, PartialEq)]
pub struct Space {
    /// `lm_weight`.
    pub lm_weight: Axis,
    /// `length_penalty`.
    pub length_penalty: Axis,
    /// `ngram_weight`.
    pub ngram_weight: Axis,
    /// `backward_weight`.
    pub backward_weight: Axis,
}

/// What a search found.
#[derive(Clone, Debug, PartialEq)]
pub struct Found {
    /// The chosen weights.
    pub weights: Weights,
    /// Their errors.
    pub edits: Edits,
    /// Settings tried.
    pub settings: usize,
    /// The weights still at the end of their widest range (the widening stopped).
    pub at_range_end: Vec<String>,
    /// The lowest and highest `lm_weight` and `length_penalty` tried.
    pub searched: Searched,
}

/// The lowest and highest value tried of `lm_weight` and of `length_penalty`.
pub type Searched = [(f64, f64); 2];

/// The largest scale is 2^MAX_DOUBLINGS times the given grid.
const MAX_DOUBLINGS: u32 = 12;
/// Scales in a row without fewer errors after which the scaling stops.
const PATIENCE: u32 = 2;
/// How many times the refinement halves its steps.
const REFINEMENTS: usize = 6;

/// The errors of the candidate each list picks at `weights`.
pub fn edits_at(cache: &[Cached], lists: &[std::ops::Range<usize>], weights: &Weights) -> Edits {
    let mut total = Edits::default();
    for range in lists {
        let list = &cache[range.clone()];
        let pick =
            best_index(list.iter().map(|c| weights.score(c.am, &c.lm, c.words))).unwrap_or(0);
        total += list[pick].edits;
    }
    total
}

struct Search<'a> {
    cache: &'a [Cached],
    lists: &'a [std::ops::Range<usize>],
    best: Option<(usize, Weights, Edits)>,
    settings: usize,
    /// The lowest and highest `lm_weight` and `length_penalty` tried.
    searched: Searched,
}

impl Search<'_> {
    /// Tries a setting; true when it is strictly better than the best so far.
    fn try_weights(&mut self, weights: Weights) -> bool {
        if weights.ngram_weight + weights.backward_weight > 1.0 + 1e-9 {
            return false;
        }
        self.settings += 1;
        for (range, value) in self
            .searched
            .iter_mut()
            .zip([weights.lm_weight, weights.length_penalty])
        {
            *range = (range.0.min(value), range.1.max(value));
        }
        let edits = edits_at(self.cache, self.lists, &weights);
        let better = self.best.is_none_or(|(e, _, _)| edits.errors() < e);
        if better {
            self.best = Some((edits.errors(), weights, edits));
        }
        better
    }

    fn grid(&mut self, space: &Space) {
        for &lm_weight in &space.lm_weight.values {
            for &length_penalty in &space.length_penalty.values {
                for &ngram_weight in &space.ngram_weight.values {
                    for &backward_weight in &space.backward_weight.values {
                        self.try_weights(Weights {
                            lm_weight,
                            length_penalty,
                            ngram_weight,
                            backward_weight,
                        });
                    }
                }
            }
        }
    }

    fn weights(&self) -> Weights {
        self.best.map(|(_, w, _)| w).unwrap_or_default()
    }
}

fn get(w: &Weights, axis: usize) -> f64 {
    [
        w.lm_weight,
        w.length_penalty,
        w.ngram_weight,
        w.backward_weight,
    ][axis]
}

fn set(w: &mut Weights, axis: usize, value: f64) {
    let slot = match axis {
        0 => &mut w.lm_weight,
        1 => &mut w.length_penalty,
        2 => &mut w.ngram_weight,
        _ => &mut w.backward_weight,
    };
    *slot = value;
}

/// Rounds to 1e-9, so that searched values print as 0.3, not 0.30000000000000004.
fn tidy(v: f64) -> f64 {
    (v * 1e9).round() / 1e9
}

/// `axis` with its values (and steps) times `scale`, where it is free.
fn scaled(axis: &Axis, scale: f64) -> Axis {
    if !axis.free {
        return axis.clone();
    }
    let values = axis.values.iter().map(|v| tidy(v * scale)).collect();
    Axis {
        values,
        ..axis.clone()
    }
}

/// The best weights in `space`: its grid at growing scales, then refined; `None` when
/// no setting of the grid keeps the shares within 1.
pub fn search(cache: &[Cached], lists: &[std::ops::Range<usize>], space: &Space) -> Option<Found> {
    let mut s = Search {
        cache,
        lists,
        best: None,
        settings: 0,
        searched: [(f64::INFINITY, f64::NEG_INFINITY); 2],
    };
    let scalable = space.lm_weight.free || space.length_penalty.free;
    let mut best_space = space.clone();
    let mut idle = 0;
    let mut at_range_end = Vec::new();
    for doubling in 0..=MAX_DOUBLINGS {
        let scale = f64::from(1u32 << doubling);
        let at_scale = Space {
            lm_weight: scaled(&space.lm_weight, scale),
            length_penalty: scaled(&space.length_penalty, scale),
            ..space.clone()
        };
        let before = s.best.map(|(e, _, _)| e);
        s.grid(&at_scale);
        if s.best.map(|(e, _, _)| e) != before {
            best_space = at_scale;
            idle = 0;
        } else {
            idle += 1;
        }
        if !scalable || idle == PATIENCE {
            break;
        }
        if doubling == MAX_DOUBLINGS {
            at_range_end.push("lm_weight".to_string());
        }
    }
    s.best?;
    refine(&mut s, &best_space);
    let (_, weights, edits) = s.best?;
    Some(Found {
        weights,
        edits,
        settings: s.settings,
        at_range_end,
        searched: s.searched,
    })
}

/// Coordinate search around the best setting: each free weight in turn is tried at
/// every point within two of the grid's steps either way, at a resolution that halves
/// from half a step, moving whenever a point is strictly better, until no weight moves.
fn refine(s: &mut Search, space: &Space) {
    let axes = [
        &space.lm_weight,
        &space.length_penalty,
        &space.ngram_weight,
        &space.backward_weight,
    ];
    for level in 0..REFINEMENTS {
        let points = 4i32 << level;
        let mut improved = true;
        while improved {
            improved = false;
            for (axis, a) in axes.iter().enumerate() {
                let step = a.step() / f64::from(2 << level);
                if !a.free || step <= 0.0 {
                    continue;
                }
                let center = get(&s.weights(), axis);
                for k in (-points..=points).filter(|&k| k != 0) {
                    let value = tidy(center + f64::from(k) * step);
                    if value < a.bounds.0 || value > a.bounds.1 {
                        continue;
                    }
                    let mut w = s.weights();
                    set(&mut w, axis, value);
                    improved |= s.try_weights(w);
                }
            }
        }
    }
}
