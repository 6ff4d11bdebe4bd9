//! Flag values checked as they are parsed, so that a value out of range is a usage
//! error before anything runs. Whole numbers with a meaningful upper bound and on/off
//! switches use clap's own parsers; the numbers here are those clap has no ranged
//! parser for (floats), and whole numbers of at least 1, whose clap message would
//! print the type's maximum.

use rnnlm::tune::parse_range;

/// The values of one weight that `tune` searches.
#[derive(Clone, Debug)]
pub(crate) struct Values(pub(crate) Vec<f64>);

pub(crate) fn values(text: &str) -> Result<Values, String> {
    parse_range(text).map(Values)
}

/// A finite number.
pub(crate) fn finite(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(format!("'{text}' is not a finite number")),
    }
}

/// A number in [0, 1].
pub(crate) fn unit_interval(text: &str) -> Result<f64, String> {
    match finite(text)? {
        v if (0.0..=1.0).contains(&v) => Ok(v),
        v => Err(format!("{v} is not in [0, 1]")),
    }
}

/// A dropout probability, in [0, 1).
pub(crate) fn dropout_rate(text: &str) -> Result<f64, String> {
    match finite(text)? {
        v if (0.0..1.0).contains(&v) => Ok(v),
        v => Err(format!("{v} is not in [0, 1)")),
    }
}

/// A number above 0.
pub(crate) fn positive_number(text: &str) -> Result<f64, String> {
    match finite(text)? {
        v if v > 0.0 => Ok(v),
        v => Err(format!("{v} is not above 0")),
    }
}

/// A number of at least 0.
pub(crate) fn non_negative(text: &str) -> Result<f64, String> {
    match finite(text)? {
        v if v >= 0.0 => Ok(v),
        v => Err(format!("{v} is below 0")),
    }
}

/// A decay factor, in (0, 1].
pub(crate) fn decay(text: &str) -> Result<f64, String> {
    match finite(text)? {
        v if v > 0.0 && v <= 1.0 => Ok(v),
        v => Err(format!("{v} is not in (0, 1]")),
    }
}

/// A whole number of at least 1.
pub(crate) fn positive(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(v) if v >= 1 => Ok(v),
        _ => Err(format!("'{text}' is not a whole number of at least 1")),
    }
}

/// The most CPU threads `--threads` takes (clap's ranged parser checks it).
pub(crate) const MAX_THREADS: i32 = 1024;

/// `FILE` or `FILE:WEIGHT`, a weight above 0 (1 when none is given); the text after
/// the last colon is a weight only when it reads as a number, so paths with colons
/// stay whole.
pub(crate) fn weighted_path(text: &str) -> Result<(std::path::PathBuf, f64), String> {
    if let Some((path, weight)) = text.rsplit_once(':') {
        if let Ok(weight) = weight.trim().parse::<f64>() {
            if !(weight.is_finite() && weight > 0.0) {
                return Err(format!("'{text}': the weight {weight} is not above 0"));
            }
            return Ok((path.into(), weight));
        }
    }
    Ok((text.into(), 1.0))
}
