//! MERT's exact line search (Och 2003): the word errors along a whole line in weight
//! space, and the point in the middle of its best plateau.
//!
//! Along a line `x(t) = x₀ + t·d`, a candidate's combined score is linear in `t`
//! (`intercept + t·slope`, see [`LineScore`]), so each list picks the candidate on the
//! upper envelope of its lines, and that pick changes only where two lines cross. The
//! errors along the line are therefore a step function whose steps are those crossings:
//! [`profile`] computes it exactly, from every list's envelope, in
//! O(candidates · envelope size) per list. No range is guessed: the line runs as far as
//! the weights' own limits (the shares in [0, 1], `lm_weight` ≥ 0), to infinity where
//! there are none.
//!
//! [`choose`] then takes the middle of the plateau with the fewest errors, and among
//! such plateaus the widest, since a weight in the middle of a flat region carries to
//! other data better than one at its edge, where the next list's choice flips.

/// One candidate's combined score along a line: `intercept + t · slope`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LineScore {
    /// The score at `t = 0`, the current weights.
    pub intercept: f64,
    /// How fast the score changes with `t`.
    pub slope: f64,
}

impl LineScore {
    fn at(&self, t: f64) -> f64 {
        self.intercept + t * self.slope
    }

    fn usable(&self) -> bool {
        self.intercept.is_finite() && self.slope.is_finite()
    }
}

/// The candidate each position of a line picks: the winner just after `from`, then
/// each `(t, winner)` where the pick changes, with `t` rising and below `to`.
///
/// The winner is the highest score; where scores tie at a crossing, the steeper line
/// wins after it, and identical lines go to the earlier candidate, as
/// [`best_index`](crate::rescore::combine::best_index) breaks ties. A candidate whose
/// score is not finite never wins unless none is finite (then the first does).
pub fn envelope(lines: &[LineScore], from: f64, to: f64) -> (usize, Vec<(f64, usize)>) {
    let usable: Vec<usize> = (0..lines.len()).filter(|&i| lines[i].usable()).collect();
    let Some(&first) = usable.first() else {
        return (0, Vec::new());
    };
    // The winner just after `from`: the highest score there, then the steepest; at
    // −∞ the score is decided by the slope first (the least steep is highest).
    let key = |i: usize| {
        let l = &lines[i];
        if from == f64::NEG_INFINITY {
            (-l.slope, l.intercept)
        } else {
            (l.at(from), l.slope)
        }
    };
    let mut winner = first;
    for &i in &usable[1..] {
        if key(i) > key(winner) {
            winner = i;
        }
    }
    let start = winner;
    let mut changes = Vec::new();
    let mut t = from;
    loop {
        let w = lines[winner];
        // The next line to overtake the winner: the earliest crossing after t, and
        // among crossings at the same point the steepest line (it stays on top).
        let mut next: Option<(f64, usize)> = None;
        for &j in &usable {
            let l = lines[j];
            if l.slope <= w.slope {
                continue;
            }
            // Rounding can put a crossing a hair before t; the line still wins from t.
            let crossing = ((w.intercept - l.intercept) / (l.slope - w.slope)).max(t);
            let better = match next {
                None => true,
                Some((c, k)) => crossing < c || (crossing == c && l.slope > lines[k].slope),
            };
            if better {
                next = Some((crossing, j));
            }
        }
        match next {
            Some((crossing, j)) if crossing < to => {
                changes.push((crossing, j));
                winner = j;
                t = crossing;
            }
            _ => return (start, changes),
        }
    }
}

/// A stretch of the line with one error count: `low < t < high`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Plateau {
    /// Where it starts (−∞ or the line's lower limit included).
    pub low: f64,
    /// Where it ends (+∞ or the line's upper limit included).
    pub high: f64,
    /// Word errors of the picks inside it.
    pub errors: usize,
}

/// One list along a line: each candidate's score line and word errors.
pub struct ListLine<'a> {
    /// The candidates' scores along the line.
    pub lines: &'a [LineScore],
    /// The candidates' word errors.
    pub errors: &'a [usize],
}

/// The errors along the line for `t` in [`from`, `to`], as maximal plateaus (neighbours
/// always differ in errors), left to right.
pub fn profile(lists: &[ListLine], from: f64, to: f64) -> Vec<Plateau> {
    let mut start = 0usize;
    let mut steps: Vec<(f64, i64)> = Vec::new();
    for list in lists {
        let (first, changes) = envelope(list.lines, from, to);
        let errors = |i: usize| list.errors.get(i).copied().unwrap_or(0) as i64;
        start += errors(first) as usize;
        let mut previous = first;
        for (t, winner) in changes {
            let delta = errors(winner) - errors(previous);
            if delta != 0 {
                steps.push((t, delta));
            }
            previous = winner;
        }
    }
    steps.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut plateaus = vec![Plateau {
        low: from,
        high: to,
        errors: start,
    }];
    let mut errors = start as i64;
    let mut i = 0;
    while i < steps.len() {
        let t = steps[i].0;
        while i < steps.len() && steps[i].0 == t {
            errors += steps[i].1;
            i += 1;
        }
        let last = plateaus.last_mut().expect("one plateau at least");
        if errors as usize == last.errors {
            continue;
        }
        last.high = t;
        plateaus.push(Plateau {
            low: t,
            high: to,
            errors: errors as usize,
        });
    }
    plateaus
}

/// The point chosen on a line: where, its plateau and its errors.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Choice {
    /// The chosen `t`.
    pub t: f64,
    /// The plateau it lies in.
    pub plateau: Plateau,
}

/// The middle of the best plateau: the fewest errors, then the widest (an unbounded
/// one counts as infinitely wide), then the nearest to `t = 0`, the current point.
///
/// `origin` is the value at `t = 0` of what the line moves (a weight; 0 for a mix of
/// weights), so that the rules below read in that value's own units. A plateau that
/// runs to infinity has no middle: the current point is kept when it lies at least
/// `unit` inside, else the value as far beyond the edge as the edge lies from 0 (at
/// least `unit`): `lm_weight` above 8 takes 16. The chosen value is rounded to the
/// shortest decimal within a quarter of the plateau's width of the middle, so that
/// weights print as 8.5, not 8.4999731.
pub fn choose(plateaus: &[Plateau], unit: f64, origin: f64) -> Option<Choice> {
    let fewest = plateaus.iter().map(|p| p.errors).min()?;
    let half_width = |p: &Plateau| (p.high - p.low) / 2.0;
    let distance = |p: &Plateau| {
        if p.low <= 0.0 && 0.0 <= p.high {
            0.0
        } else {
            p.low.abs().min(p.high.abs())
        }
    };
    let best = plateaus
        .iter()
        .filter(|p| p.errors == fewest)
        .min_by(|a, b| {
            half_width(b)
                .total_cmp(&half_width(a))
                .then(distance(a).total_cmp(&distance(b)))
        })?;
    let (value, slack) = match (best.low.is_finite(), best.high.is_finite()) {
        (true, true) => (
            origin + (best.low + best.high) / 2.0,
            (best.high - best.low) / 4.0,
        ),
        (true, false) => beyond(origin + best.low, origin, unit, 1.0),
        (false, true) => beyond(origin + best.high, origin, unit, -1.0),
        (false, false) => (origin, 0.0),
    };
    Some(Choice {
        t: round_within(value, slack) - origin,
        plateau: *best,
    })
}

/// On a plateau from `edge` to infinity in direction `sign`: `current` when it is at
/// least `unit` inside, else as far beyond the edge as the edge is from 0 (at least
/// `unit`); with the slack for rounding.
fn beyond(edge: f64, current: f64, unit: f64, sign: f64) -> (f64, f64) {
    if sign * (current - edge) >= unit {
        return (current, 0.0);
    }
    let margin = edge.abs().max(unit);
    (edge + sign * margin, margin / 4.0)
}

/// The decimal with the fewest significant digits within `slack` of `value`, the
/// nearest to `value` among those (`value` itself, tidied to 1e-9, when no shorter one
/// is that near).
pub fn round_within(value: f64, slack: f64) -> f64 {
    let tidy = |v: f64| (v * 1e9).round() / 1e9;
    if slack.is_nan() || slack <= 0.0 || !value.is_finite() {
        return tidy(value);
    }
    let mut exponent = slack.log10().ceil() as i32 + 1;
    while exponent > -10 {
        let step = 10f64.powi(exponent);
        let rounded = (value / step).round() * step;
        if (rounded - value).abs() <= slack {
            return tidy(rounded);
        }
        exponent -= 1;
    }
    tidy(value)
}

/// The errors of each list's pick at `t`, point by point: what the tests check a
/// profile against.
#[cfg(test)]
fn errors_at(lists: &[ListLine], t: f64) -> usize {
    lists
        .iter()
        .map(|list| {
            let scores = list
                .lines
                .iter()
                .map(|l| if l.usable() { l.at(t) } else { f64::NAN });
            let pick = crate::rescore::combine::best_index(scores).unwrap_or(0);
            list.errors.get(pick).copied().unwrap_or(0)
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// Lists of random lines, some parallel and some identical, with random errors.
    fn random_lists(seed: u64, lists: usize) -> (Vec<Vec<LineScore>>, Vec<Vec<usize>>) {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut all_lines = Vec::new();
        let mut all_errors = Vec::new();
        for _ in 0..lists {
            let n = rng.gen_range(1..12);
            let mut lines: Vec<LineScore> = (0..n)
                .map(|_| LineScore {
                    // Small integers make exact ties and shared crossings common.
                    intercept: f64::from(rng.gen_range(-6..6)),
                    slope: f64::from(rng.gen_range(-4..4)) / 2.0,
                })
                .collect();
            if n > 2 {
                lines[n - 1] = lines[0];
            }
            all_errors.push((0..n).map(|_| rng.gen_range(0..5)).collect());
            all_lines.push(lines);
        }
        (all_lines, all_errors)
    }

    fn list_lines<'a>(lines: &'a [Vec<LineScore>], errors: &'a [Vec<usize>]) -> Vec<ListLine<'a>> {
        lines
            .iter()
            .zip(errors)
            .map(|(l, e)| ListLine {
                lines: l,
                errors: e,
            })
            .collect()
    }

    /// The profile's errors agree with picking point by point: inside every plateau
    /// (its middle and next to each end) and on either side of every breakpoint.
    #[test]
    fn the_profile_matches_a_point_by_point_sweep() {
        for seed in 0..40 {
            let (lines, errors) = random_lists(seed, 30);
            let lists = list_lines(&lines, &errors);
            for (from, to) in [(f64::NEG_INFINITY, f64::INFINITY), (-1.5, 2.25)] {
                let plateaus = profile(&lists, from, to);
                assert_eq!(plateaus[0].low, from);
                assert_eq!(plateaus[plateaus.len() - 1].high, to);
                for pair in plateaus.windows(2) {
                    assert_eq!(pair[0].high, pair[1].low);
                    assert_ne!(pair[0].errors, pair[1].errors, "plateaus are maximal");
                }
                for p in &plateaus {
                    let low = if p.low.is_finite() {
                        p.low
                    } else {
                        p.high - 50.0
                    };
                    let high = if p.high.is_finite() {
                        p.high
                    } else {
                        low + 50.0
                    };
                    let width = high - low;
                    // Off-centre points: a plateau's middle may be where three lines
                    // meet and the earliest, on top nowhere else, wins that one point.
                    for share in [1e-6, 0.123_4, 0.456_7, 0.876_5, 1.0 - 1e-6] {
                        let t = low + width * share;
                        assert_eq!(errors_at(&lists, t), p.errors, "seed {seed}, t {t}, {p:?}");
                    }
                }
                // A dense sweep finds no change that the profile misses. Its points
                // are off the crossings (exact ties, where the earlier candidate wins a
                // single point, are no plateau).
                let (a, b) = (from.max(-20.0), to.min(20.0));
                for k in 0..4000 {
                    let t = a + (b - a) * (f64::from(k) + 0.2917) / 4000.0;
                    let inside = plateaus.iter().find(|p| p.low < t && t < p.high);
                    if let Some(p) = inside {
                        assert_eq!(errors_at(&lists, t), p.errors, "seed {seed}, t {t}");
                    }
                }
            }
        }
    }

    #[test]
    fn the_envelope_of_identical_lines_is_the_earlier_candidate() {
        let line = LineScore {
            intercept: 1.0,
            slope: 2.0,
        };
        let (first, changes) = envelope(&[line, line, line], f64::NEG_INFINITY, f64::INFINITY);
        assert_eq!((first, changes), (0, Vec::new()));
        let nan = LineScore {
            intercept: f64::NAN,
            slope: 0.0,
        };
        assert_eq!(envelope(&[nan, line], 0.0, 1.0), (1, Vec::new()));
    }

    /// Four lists whose errors along the line are 3 below -2, 1 on (-2, 1), 2 on
    /// (1, 3), 1 on (3, 9) and 4 above 9: two plateaus tie at 1 error, and the wider
    /// one, (3, 9), wins at its middle 6, although the narrower one holds t = 0.
    #[test]
    fn the_middle_of_the_widest_best_plateau_is_chosen() {
        let up = |at: f64| LineScore {
            intercept: -at,
            slope: 1.0,
        };
        let flat = LineScore {
            intercept: 0.0,
            slope: 0.0,
        };
        // Each list: a flat line, and a rising one that overtakes it at `at`.
        let lines = [
            vec![flat, up(-2.0)],
            vec![flat, up(1.0)],
            vec![flat, up(3.0)],
            vec![flat, up(9.0)],
        ];
        let errors = [vec![2, 0], vec![0, 1], vec![1, 0], vec![0, 3]];
        let lists = list_lines(&lines, &errors);
        let plateaus = profile(&lists, f64::NEG_INFINITY, f64::INFINITY);
        let errors: Vec<usize> = plateaus.iter().map(|p| p.errors).collect();
        assert_eq!(errors, vec![3, 1, 2, 1, 4]);
        let choice = choose(&plateaus, 1.0, 0.0).unwrap();
        assert_eq!(choice.t, 6.0);
        assert_eq!((choice.plateau.low, choice.plateau.high), (3.0, 9.0));
    }

    #[test]
    fn an_unbounded_best_plateau_is_entered_by_its_edges_distance() {
        let p = |low: f64, high: f64, errors: usize| Plateau { low, high, errors };
        let plateaus = [p(f64::NEG_INFINITY, 2.0, 5), p(2.0, f64::INFINITY, 1)];
        assert_eq!(choose(&plateaus, 1.0, 0.0).unwrap().t, 4.0);
        let plateaus = [p(f64::NEG_INFINITY, -3.0, 5), p(-3.0, f64::INFINITY, 1)];
        assert_eq!(
            choose(&plateaus, 1.0, 0.0).unwrap().t,
            0.0,
            "0 is well inside"
        );
        let plateaus = [p(f64::NEG_INFINITY, 0.25, 1), p(0.25, f64::INFINITY, 4)];
        // The edge is 0.25 away, less than the unit: 1 beyond it, rounded to -1.
        assert_eq!(choose(&plateaus, 1.0, 0.0).unwrap().t, -1.0);
        // In a weight's own units: lm_weight 3 with errors falling for good above 8
        // takes 16, whatever the current value.
        let plateaus = [p(f64::NEG_INFINITY, 5.0, 3), p(5.0, f64::INFINITY, 1)];
        assert_eq!(3.0 + choose(&plateaus, 1.0, 3.0).unwrap().t, 16.0);
    }

    #[test]
    fn rounding_takes_the_shortest_decimal_within_the_slack() {
        assert_eq!(round_within(8.4999731, 0.1), 8.5);
        assert_eq!(round_within(8.4999731, 1.0), 8.0);
        assert_eq!(round_within(8.4999731, 5.0), 10.0);
        assert_eq!(round_within(0.123456, 0.001), 0.123);
        assert_eq!(round_within(-7.25, 0.0), -7.25);
    }
}
