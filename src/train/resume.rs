//! `--resume`: the resumed run's settings, its weights, optimizer state and the
//! recurrent state a cut stream epoch carries, so that a cut and resumed run trains
//! exactly as an uncut one.

use super::{LrSchedule, TrainConfig};
use crate::average::WeightAverage;
use crate::checkpoint::{load_weights, ModelDir, SavedConfig};
use crate::model::State;
use crate::optim::Optimizer;
use crate::output::OutputConfig;
use anyhow::{bail, Context, Result};
use std::collections::HashMap;
use tch::{nn, Device, Tensor};

/// Names of the carried stream state in `optimizer.safetensors`.
const CARRIED_HIDDEN: &str = "stream_state.hidden";
const CARRIED_CELL: &str = "stream_state.cell";

/// The settings of the run being resumed, as its first run saved them in
/// `config.json`: its schedule, epochs, patience, seed, tokenizer, vocabulary, output
/// layer, network and regularizers. A flag given explicitly that disagrees with the
/// run is refused. This command line may change the data, the step limit and, with the
/// plateau schedule, the time limit, and there an explicit `--epochs` or `--patience`
/// lengthens (or shortens) the run. The run's extra training files and validation file
/// stay unless others are given: a resume that names only `--data` goes on with the
/// run's text, not with `DIR/train.txt` alone.
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
    keep_the_runs_files(given, &run, &mut effective);
    let mut conflicts = Conflicts {
        given: &given.given,
        found: Vec::new(),
    };
    take_the_runs_schedule(&mut conflicts, given, &run, &mut effective)?;
    check_the_saved_model(&mut conflicts, given, saved)?;
    effective.tokenizer = saved.tokenizer.clone();
    effective.vocab_limits = saved.vocab_limits;
    effective.model = saved.model.clone();
    conflicts.refuse(dir)?;
    take_the_runs_length(given, &run, &mut effective);
    Ok(effective)
}

/// The flags given explicitly that disagree with the run, as the refusal lists them.
struct Conflicts<'a> {
    given: &'a [String],
    found: Vec<String>,
}

impl Conflicts<'_> {
    /// Notes `flag` when it was given and its value differs from the run's.
    fn check(&mut self, flag: &str, ours: String, theirs: String, whose: &str) {
        if ours != theirs && self.given.iter().any(|g| g == flag) {
            self.found
                .push(format!("{flag} {ours} (the {whose} has {theirs})"));
        }
    }

    fn refuse(self, dir: &ModelDir) -> Result<()> {
        let found = self.found;
        if found.is_empty() {
            return Ok(());
        }
        let one = found.len() == 1;
        bail!(
            "{}: --resume goes on with the run's own settings, and {} disagree{}; drop {}, or start a new run with --force",
            dir.root.display(),
            found.join(", "),
            if one { "s" } else { "" },
            if one { "it" } else { "them" }
        )
    }
}

/// Training on the run's extra text and validating on its file, unless others are given.
fn keep_the_runs_files(given: &TrainConfig, run: &TrainConfig, effective: &mut TrainConfig) {
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
}

/// The optimizer, the batches, the learning-rate schedule, the seed and the budget,
/// taken from the run.
fn take_the_runs_schedule(
    conflicts: &mut Conflicts,
    given: &TrainConfig,
    run: &TrainConfig,
    effective: &mut TrainConfig,
) -> Result<()> {
    macro_rules! from_run {
        ($($field:ident $flag:literal),*) => {$(
            conflicts.check($flag, shown(&given.$field)?, shown(&run.$field)?, "run");
            effective.$field = run.$field.clone();
        )*};
    }
    from_run!(optimizer "--optimizer", batch_size "--batch-size", clip "--clip",
        stream "--stream", bptt "--bptt", lr_schedule "--lr-schedule",
        lr_cooldown "--lr-cooldown", lr "--lr", lr_decay "--lr-decay", seed "--seed",
        clusters "--clusters");
    macro_rules! regularizer {
        ($($field:ident $flag:literal),*) => {$(
            conflicts.check(
                $flag,
                shown(&given.regularization.$field)?,
                shown(&run.regularization.$field)?,
                "run",
            );
        )*};
    }
    regularizer!(locked_dropout "--locked-dropout", embed_dropout "--embed-dropout",
        weight_drop "--weight-drop", ar "--ar", tar "--tar", weight_decay "--weight-decay",
        ema_decay "--ema-decay");
    effective.regularization = run.regularization.clone();
    if run.lr_schedule == LrSchedule::Linear {
        // The linear schedule falls to zero over the run's budget, which must stay.
        from_run!(epochs "--epochs", time_limit "--time-limit", patience "--patience");
    }
    Ok(())
}

/// Under the plateau schedule the run's epochs and patience are the run's unless given
/// anew, where they lengthen or shorten it.
fn take_the_runs_length(given: &TrainConfig, run: &TrainConfig, effective: &mut TrainConfig) {
    if run.lr_schedule == LrSchedule::Linear {
        return;
    }
    for (flag, ours, theirs, field) in [
        ("--epochs", given.epochs, run.epochs, &mut effective.epochs),
        (
            "--patience",
            given.patience,
            run.patience,
            &mut effective.patience,
        ),
    ] {
        if !given.given.iter().any(|g| g == flag) {
            *field = theirs;
        } else if ours != theirs {
            tracing::info!("--resume: {flag} {ours} (the run had {theirs})");
        }
    }
}

/// The tokenizer, the vocabulary cut, the output layer and the network are the saved
/// model's; a flag for them can only agree with it.
fn check_the_saved_model(
    conflicts: &mut Conflicts,
    given: &TrainConfig,
    saved: &SavedConfig,
) -> Result<()> {
    macro_rules! saved {
        ($part:ident: $($field:ident $flag:literal),*) => {$(
            conflicts.check($flag, shown(&given.$part.$field)?, shown(&saved.$part.$field)?, "model");
        )*};
    }
    saved!(model: cell "--cell", embed "--embed", hidden "--hidden", layers "--layers",
        dropout "--dropout", tie "--tie");
    saved!(tokenizer: level "--level", lowercase "--lowercase", split_punct "--split-punct",
        drop_punct "--drop-punct", split_hyphens "--split-hyphens", reverse "--reverse");
    saved!(vocab_limits: min_count "--min-count", max_size "--max-size");
    let form =
        |t: &crate::vocab::Tokenizer| (t.lowercase && t.drop_punct && t.split_hyphens).to_string();
    conflicts.check(
        "--recognizer-form",
        form(&given.tokenizer),
        form(&saved.tokenizer),
        "model",
    );
    let kind = |output: &OutputConfig| match output {
        OutputConfig::Full => "full",
        OutputConfig::Class { .. } => "class",
    };
    conflicts.check(
        "--softmax",
        kind(&given.model.output).into(),
        kind(&saved.model.output).into(),
        "model",
    );
    let cutoffs = |output: &OutputConfig| match output {
        OutputConfig::Class { cutoffs } => shown(cutoffs),
        OutputConfig::Full => Ok("none".to_string()),
    };
    conflicts.check(
        "--cutoffs",
        cutoffs(&given.model.output)?,
        cutoffs(&saved.model.output)?,
        "model",
    );
    Ok(())
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
