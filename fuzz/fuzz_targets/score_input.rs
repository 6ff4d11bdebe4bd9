//! `rnnlm score`'s input path: arbitrary bytes as CSV, Kaldi N-best and text input,
//! with the am, n-gram and group columns in use. Any outcome but a panic is fine.
#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use rnnlm::checkpoint::{LoadedModel, ModelDir};
use rnnlm::oov::{OovOptions, OovPolicy};
use rnnlm::rescore::combine::Weights;
use rnnlm::rescore::nbest::{ColumnNames, LogBase};
use rnnlm::rescore::{score_file, Format, ScoreOptions};

struct Fixture {
    _dir: tempfile::TempDir,
    model: LoadedModel,
    input: std::path::PathBuf,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let model = ModelDir::new(common::tiny_model(dir.path()))
        .load(tch::Device::Cpu)
        .unwrap();
    let input = dir.path().join("input");
    Fixture {
        _dir: dir,
        model,
        input,
    }
}

thread_local! {
    // libFuzzer runs the target on one thread; a model is not `Sync`.
    static FIXTURE: Fixture = fixture();
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, bytes)) = data.split_first() else {
        return;
    };
    FIXTURE.with(|f| run(f, selector, bytes));
});

fn run(f: &Fixture, selector: u8, bytes: &[u8]) {
    std::fs::write(&f.input, bytes).unwrap();
    let format = match selector % 3 {
        0 => Format::Csv,
        1 => Format::Kaldi,
        _ => Format::Text,
    };
    let headerless = (selector & 4 != 0).then(|| {
        vec![
            "utterance_id".to_string(),
            "sentence".to_string(),
            "am".to_string(),
        ]
    });
    let options = ScoreOptions {
        input: Some(f.input.clone()),
        output: Some("/dev/null".into()),
        format,
        columns: ColumnNames {
            text: "sentence".into(),
            group: None,
            am: (selector & 8 != 0).then(|| "am".to_string()),
            ngram: (selector & 16 != 0).then(|| "utterance_id".to_string()),
            ngram_base: LogBase::Ten,
            headerless,
            // A cut of each list (with the OOV policy and skip-bad bits both set).
            max_candidates: (selector & 96 == 96).then_some(2),
        },
        weights: Weights {
            lm_weight: 1.0,
            length_penalty: 0.5,
            ngram_weight: 0.3,
            backward_weight: 0.0,
        },
        oov: OovOptions {
            policy: if selector & 32 != 0 {
                OovPolicy::Unk
            } else {
                OovPolicy::Divide
            },
            penalty: 0.0,
        },
        skip_bad: selector & 64 != 0,
        per_token: None,
        report: None,
        batch_size: 3,
        digits: 4,
        chunk_rows: 2,
        between_chunks: rnnlm::rescore::never_stop,
        prefix_sharing: selector & 128 != 0,
    };
    let _ = score_file(&f.model, None, &options);
}
