//! `--resume`: the resumed run's settings, its weights, optimizer state and the
//! recurrent state a cut stream epoch carries, so that a cut and resumed run trains
//! exactly as an uncut one.

use super::{LrSchedule, TrainConfig};
use crate::average::WeightAverage;
use crate::checkpoint::{load_weights, ModelDir, SavedConfig};
use crate::model::State;
use crate::optim::Optimizer;
use anyhow::{bail, Context, Result};
use std::collections::HashMap;
use tch::{nn, Device, Tensor};

/// Names of the carried stream state in `optimizer.safetensors`.
const CARRIED_HIDDEN: &str = "stream_state.hidden";
const CARRIED_CELL: &str = "stream_state.cell";

/// The settings of the run being resumed, as its first run saved them in
/// `config.json`, with what this command line may change: the data, patience, the
/// epochs and time limit (with the plateau schedule) and the step limit. A setting
/// given explicitly that disagrees with the run is refused. The run's extra training
/// files and validation file stay unless others are given: a resume that names only
/// `--data` goes on with the run's text, not with `DIR/train.txt` alone.
pub(super) fn settings(
    given: &TrainConfig,
    saved: &SavedConfig,
    dir: &ModelDir,
) -> Result<TrainConfig> {
    let Ok(run) = serde_json::from_value::<TrainConfig>(saved.training.clone()) else {
        bail!(
            "{}: the training settings are unreadable, so the run cannot be resumed exactly; start a new run with --force",
            dir.config().display()
        );
    };
    let mut effective = given.clone();
    if given.extra_train.is_empty() && !run.extra_train.is_empty() {
        tracing::info!(
            "--resume: training on the run's extra text too ({})",
            shown_paths(&run.extra_train)
        );
        effective.extra_train = run.extra_train.clone();
        effective.extra_train_weights = run.extra_train_weights.clone();
    }
    if given.valid.is_none() {
        if let Some(valid) = &run.valid {
            tracing::info!("--resume: validating on the run's {}", valid.display());
            effective.valid = Some(valid.clone());
        }
    }
    let mut conflicts = Vec::new();
    let mut check = |flag: &str, ours: String, theirs: String, whose: &str| {
        if ours != theirs && given.given.iter().any(|g| g == flag) {
            conflicts.push(format!("{flag} {ours} (the {whose} has {theirs})"));
        }
    };
    macro_rules! from_run {
        ($field:ident, $flag:expr) => {
            check($flag, shown(&given.$field)?, shown(&run.$field)?, "run");
            effective.$field = run.$field.clone();
        };
    }
    from_run!(optimizer, "--optimizer");
    from_run!(batch_size, "--batch-size");
    from_run!(clip, "--clip");
    from_run!(stream, "--stream");
    from_run!(bptt, "--bptt");
    from_run!(lr_schedule, "--lr-schedule");
    from_run!(lr_cooldown, "--lr-cooldown");
    from_run!(lr, "--lr");
    from_run!(lr_decay, "--lr-decay");
    // The regularizers are part of the run, each with its own flag.
    macro_rules! regularizer {
        ($field:ident, $flag:expr) => {
            check(
                $flag,
                shown(&given.regularization.$field)?,
                shown(&run.regularization.$field)?,
                "run",
            );
        };
    }
    regularizer!(locked_dropout, "--locked-dropout");
    regularizer!(embed_dropout, "--embed-dropout");
    regularizer!(weight_drop, "--weight-drop");
    regularizer!(ar, "--ar");
    regularizer!(tar, "--tar");
    regularizer!(weight_decay, "--weight-decay");
    regularizer!(ema_decay, "--ema-decay");
    effective.regularization = run.regularization.clone();
    // The network is the saved one; a shape flag can only agree with it.
    macro_rules! shape {
        ($field:ident, $flag:expr) => {
            check(
                $flag,
                shown(&given.model.$field)?,
                shown(&saved.model.$field)?,
                "model",
            );
        };
    }
    shape!(cell, "--cell");
    shape!(embed, "--embed");
    shape!(hidden, "--hidden");
    shape!(layers, "--layers");
    shape!(dropout, "--dropout");
    shape!(tie, "--tie");
    // The linear schedule falls to zero over the run's budget, which must stay.
    if run.lr_schedule == LrSchedule::Linear {
        from_run!(epochs, "--epochs");
        from_run!(time_limit, "--time-limit");
    }
    if !conflicts.is_empty() {
        bail!(
            "{}: --resume goes on with the run's own settings, and {} disagree{}; drop {}, or start a new run with --force",
            dir.root.display(),
            conflicts.join(", "),
            if conflicts.len() == 1 { "s" } else { "" },
            if conflicts.len() == 1 { "it" } else { "them" }
        );
    }
    Ok(effective)
}

/// Loads the weights after the last step, the optimizer's state and the weight
/// average; returns the recurrent state a cut stream epoch carries, which must have the
/// kind, shape and dtype of `zero` (the network's zero state for one batch). A
/// directory saved without them goes on from the best weights with fresh moment
/// estimates (and an average started there).
pub(super) fn weights(
    dir: &ModelDir,
    vs: &mut nn::VarStore,
    optimizer: &mut Optimizer,
    average: Option<&mut WeightAverage>,
    zero: &State,
    device: Device,
) -> Result<Option<State>> {
    if dir.last_weights().exists() {
        load_weights(vs, &dir.last_weights())?;
    } else {
        tracing::warn!(
            "{} has no last.safetensors: going on from the best weights",
            dir.root.display()
        );
        load_weights(vs, &dir.weights())?;
    }
    let path = dir.optimizer();
    if !path.exists() {
        if let Some(average) = average {
            *average = WeightAverage::new(vs, average.decay());
        }
        return Ok(None);
    }
    let stored =
        Tensor::read_safetensors(&path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let mut stored: HashMap<String, Tensor> = stored.into_iter().collect();
    let hidden = stored.remove(CARRIED_HIDDEN).map(|t| t.to(device));
    let cell = stored.remove(CARRIED_CELL).map(|t| t.to(device));
    match average {
        Some(average) => average
            .load_state(&mut stored)
            .with_context(|| format!("{}: not this run's weight average", path.display()))?,
        None => {
            if WeightAverage::strip(&mut stored) {
                bail!(
                    "{}: holds a weight average, but the run has none",
                    path.display()
                );
            }
        }
    }
    optimizer
        .load_state(&stored)
        .with_context(|| format!("{}: not this run's optimizer state", path.display()))?;
    // The carried state must be what the network itself would start a batch from: a
    // tensor of another shape or dtype reaches the recurrent kernel unchecked.
    let fits = |stored: &Tensor, wanted: &Tensor| {
        stored.size() == wanted.size() && stored.kind() == wanted.kind()
    };
    let carried = match (hidden, cell, zero) {
        (None, None, _) => return Ok(None),
        (Some(h), Some(c), State::Lstm(zero_h, zero_c)) if fits(&h, zero_h) && fits(&c, zero_c) => {
            State::Lstm(h, c)
        }
        (Some(h), None, State::Hidden(zero_h)) if fits(&h, zero_h) => State::Hidden(h),
        _ => {
            let wanted = match zero {
                State::Lstm(h, _) => format!("a hidden and a cell state of {:?}", h.size()),
                State::Hidden(h) => format!("a hidden state of {:?}", h.size()),
            };
            bail!(
                "{}: the carried stream state does not fit the model, which takes {wanted} (float); the file was changed or belongs to another run",
                path.display()
            )
        }
    };
    Ok(Some(carried))
}

/// The tensors that save a cut stream epoch's carried state beside the optimizer's.
pub(super) fn carried_tensors(state: &State) -> Vec<(String, Tensor)> {
    match state {
        State::Hidden(h) => vec![(CARRIED_HIDDEN.to_string(), h.shallow_clone())],
        State::Lstm(h, c) => vec![
            (CARRIED_HIDDEN.to_string(), h.shallow_clone()),
            (CARRIED_CELL.to_string(), c.shallow_clone()),
        ],
    }
}

/// Paths joined for a log line.
fn shown_paths(paths: &[std::path::PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A setting as the command line spells it: its JSON, unquoted.
fn shown(value: &impl serde::Serialize) -> Result<String> {
    Ok(serde_json::to_string(value)?.trim_matches('"').to_string())
}
