//! The HTML pages (`score --report`, `sample --steps`) and `tune --plot`: their numbers
//! against the CSV and JSON outputs, and the pages rendered in a real browser.

mod common;
#[path = "common/tiny.rs"]
mod tiny;
use common::{rnnlm, stderr, stdout, write};

use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// A tiny word model trained long enough to prefer its training sentences.
fn model() -> &'static str {
    static MODEL: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    let (_, path) = MODEL.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        // 200 sentences: trained enough to tell a sentence from its words scrambled.
        let data = tiny::data(dir.path(), 40);
        let out = dir.path().join("model");
        let o = rnnlm(&tiny::train_args(
            data.to_str().unwrap(),
            out.to_str().unwrap(),
            "25",
        ));
        assert!(o.status.success(), "{}", stderr(&o));
        (dir, out)
    });
    path.to_str().unwrap()
}

/// Four lists: in u1 and u3 the first-pass scores tie, so the language model picks; in
/// u2 and u4 the first candidate's acoustic score wins by far.
const NBEST: &str = "utterance_id,sentence,am,ng\n\
    u1,salad pear the and apple,-10,-9\n\
    u1,the apple and pear salad,-10,-9\n\
    u1,the apple and pair salad,-10,-9\n\
    u2,a pear and an apple,-2,-5\n\
    u2,pear a and apple an,-40,-5\n\
    u3,is ripe pear the,-7,-6\n\
    u3,the pear is ripe,-7,-6\n\
    u4,we ate the salad,-1,-4\n\
    u4,we ate the pear salad,-30,-4\n";
const REFERENCES: &str = "utterance_id,reference\n\
    u1,the apple and pear salad\n\
    u2,a pear and an apple\n\
    u3,the pear is ripe\n\
    u4,we ate the salad\n";

/// The page's data: the JSON object in its `<script id="data">` element.
fn page_data(html: &str) -> Value {
    let start = html.find("id=\"data\">").expect("a data element") + "id=\"data\">".len();
    let end = start + html[start..].find("</script>").expect("its end");
    serde_json::from_str(&html[start..end]).expect("JSON data")
}

fn read_page(path: &Path) -> Value {
    page_data(&std::fs::read_to_string(path).unwrap())
}

struct Scored {
    rows: Vec<HashMap<String, String>>,
    report: Value,
}

/// `rnnlm score` of NBEST with a report; the CSV rows by column name and the page data.
fn score_with_report(dir: &Path, extra: &[&str]) -> Scored {
    let input = write(dir, "nbest.csv", NBEST);
    let refs = write(dir, "refs.csv", REFERENCES);
    let output = dir.join("scored.csv");
    let report = dir.join("report.html");
    let mut args = vec![
        "score",
        "--model",
        model(),
        "--input",
        &input,
        "--output",
        output.to_str().unwrap(),
        "--am-column",
        "am",
        "--ngram-column",
        "ng",
        "--ngram-weight",
        "0.25",
        "--lm-weight",
        "1.5",
        "--length-penalty",
        "-0.5",
        "--report",
        report.to_str().unwrap(),
        "--references",
        &refs,
    ];
    args.extend_from_slice(extra);
    let o = rnnlm(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let mut reader = csv::Reader::from_path(&output).unwrap();
    let headers = reader.headers().unwrap().clone();
    let rows = reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            headers
                .iter()
                .zip(r.iter())
                .map(|(h, v)| (h.to_string(), v.to_string()))
                .collect()
        })
        .collect();
    Scored {
        rows,
        report: read_page(&report),
    }
}

fn number(v: &str) -> f64 {
    v.parse().unwrap()
}

/// Each list's id, its chosen row (1-based) and whether that is not its first row.
fn picks(rows: &[HashMap<String, String>]) -> Vec<(String, usize, bool)> {
    let mut picks: Vec<(String, usize, bool)> = Vec::new();
    let mut first_row = 0;
    for (i, row) in rows.iter().enumerate() {
        let id = &row["utterance_id"];
        if picks.last().is_none_or(|p| &p.0 != id) {
            first_row = i + 1;
            picks.push((id.clone(), 0, false));
        }
        if row["best"] == "true" {
            *picks.last_mut().unwrap() = (id.clone(), i + 1, i + 1 != first_row);
        }
    }
    picks
}

#[test]
fn the_reports_numbers_are_the_csv_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let scored = score_with_report(dir.path(), &[]);
    let utterances = scored.report["utterances"].as_array().unwrap();
    assert_eq!(utterances.len(), 4);
    let mut seen = 0;
    for u in utterances {
        let reference = u["reference"].as_str().unwrap();
        for (i, c) in u["candidates"].as_array().unwrap().iter().enumerate() {
            let row = &scored.rows[c["row"].as_u64().unwrap() as usize - 1];
            // The text is written only where the tokens do not spell it.
            let tokens: Vec<&str> = c["tokens"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t.as_str().unwrap())
                .filter(|&t| t != "<EOS>")
                .collect();
            match c.get("text") {
                Some(text) => {
                    assert_eq!(text.as_str().unwrap(), row["sentence"]);
                    assert_ne!(tokens.join(" "), row["sentence"]);
                }
                None => assert_eq!(tokens.join(" "), row["sentence"]),
            }
            assert_eq!(c["logprob"].as_f64().unwrap(), number(&row["logprob"]));
            assert_eq!(c["score"].as_f64().unwrap(), number(&row["score"]));
            assert_eq!(c["rank"].as_u64().unwrap(), number(&row["rank"]) as u64);
            assert_eq!(
                u["chosen"].as_u64().unwrap() as usize == i,
                row["best"] == "true"
            );
            // The terms add up to the score (each rounded to 4 decimals).
            let terms = &c["terms"];
            let sum: f64 = ["am", "forward", "ngram", "length"]
                .iter()
                .map(|k| terms[k].as_f64().unwrap())
                .sum();
            assert!(
                (sum - number(&row["score"])).abs() < 5e-4,
                "{sum} {}",
                row["score"]
            );
            assert_eq!(terms["am"].as_f64().unwrap(), number(&row["am"]));
            assert_eq!(
                terms["length"].as_f64().unwrap(),
                -0.5 * row["sentence"].split_whitespace().count() as f64
            );
            // The token log-probabilities sum to the sentence's, one per token and <EOS>.
            let lps: Vec<f64> = c["token_logprobs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect();
            assert_eq!(lps.len(), number(&row["tokens"]) as usize);
            let total: f64 = lps.iter().sum();
            assert!((total - number(&row["logprob"])).abs() < 1e-3 * lps.len() as f64);
            let errors = rnnlm::wer::align_text(reference, &row["sentence"]).errors();
            assert_eq!(c["errors"].as_u64().unwrap() as usize, errors);
            seen += 1;
        }
    }
    assert_eq!(seen, scored.rows.len());
    // The changed marks are the lists whose pick is not their first candidate.
    let picks = picks(&scored.rows);
    for (u, (id, _, changed)) in utterances.iter().zip(&picks) {
        assert_eq!(u["id"].as_str().unwrap(), id);
        assert_eq!(u["changed"].as_bool().unwrap(), *changed, "{id}");
    }
    assert!(
        picks.iter().any(|p| p.2) && picks.iter().any(|p| !p.2),
        "{picks:?}"
    );
    let totals = &scored.report["totals"];
    assert_eq!(totals["utterances"], 4);
    assert_eq!(
        totals["changed"].as_u64().unwrap() as usize,
        picks.iter().filter(|p| p.2).count()
    );
}

#[test]
fn the_differing_tokens_are_those_outside_the_chosen_candidate() {
    let dir = tempfile::tempdir().unwrap();
    let scored = score_with_report(dir.path(), &[]);
    for u in scored.report["utterances"].as_array().unwrap() {
        let candidates = u["candidates"].as_array().unwrap();
        let chosen = &candidates[u["chosen"].as_u64().unwrap() as usize];
        let tokens = |c: &Value| -> Vec<String> {
            c["tokens"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t.as_str().unwrap().to_string())
                .collect()
        };
        let best = tokens(chosen);
        assert_eq!(chosen["differs"].as_array().unwrap().len(), 0);
        for c in candidates {
            let mine = tokens(c);
            let differs: Vec<usize> = c["differs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as usize)
                .collect();
            // What is not marked is a common subsequence with the chosen tokens, and the
            // longest one: no fewer marks are possible.
            let kept: Vec<&String> = (0..mine.len())
                .filter(|i| !differs.contains(i))
                .map(|i| &mine[i])
                .collect();
            let mut rest = best.iter();
            assert!(
                kept.iter().all(|k| rest.any(|b| b == *k)),
                "{mine:?} {differs:?}"
            );
            let b: Vec<&str> = best.iter().map(String::as_str).collect();
            let m: Vec<&str> = mine.iter().map(String::as_str).collect();
            assert_eq!(differs, rnnlm::wer::differing_positions(&b, &m));
        }
    }
}

#[test]
fn the_report_limit_keeps_the_first_or_the_largest_changes() {
    let dir = tempfile::tempdir().unwrap();
    let all = score_with_report(dir.path(), &[]);
    let first = score_with_report(dir.path(), &["--report-limit", "2"]);
    let ids = |report: &Value| -> Vec<String> {
        report["utterances"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(ids(&first.report), ["u1", "u2"]);
    assert_eq!(first.report["totals"]["utterances"], 4);
    let largest = score_with_report(
        dir.path(),
        &["--report-limit", "1", "--report-order", "wer-change"],
    );
    let change = |u: &Value| u["error_change"].as_i64().unwrap().abs();
    let most = all.report["utterances"]
        .as_array()
        .unwrap()
        .iter()
        .map(change)
        .max()
        .unwrap();
    let kept = &largest.report["utterances"][0];
    assert_eq!(change(kept), most);
}

#[test]
fn report_flags_out_of_place_are_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "nbest.csv", NBEST);
    let report = dir.path().join("r.html");
    let base = [
        "score",
        "--model",
        model(),
        "--input",
        &input,
        "--output",
        "/dev/null",
        "--report",
        report.to_str().unwrap(),
    ];
    let mut args = base.to_vec();
    args.extend(["--report-order", "wer-change"]);
    tiny::assert_one_line_error(&rnnlm(&args), "needs --references");
    let refs = write(
        dir.path(),
        "refs.csv",
        "utterance_id,reference\nu1,a\nu2,b\n",
    );
    let mut args = base.to_vec();
    args.extend(["--references", &refs]);
    tiny::assert_one_line_error(&rnnlm(&args), "utterance 'u3'");
    assert!(!report.exists(), "no half-written report");
}

#[test]
fn a_text_report_colours_every_token_with_its_log_probability() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(
        dir.path(),
        "text.txt",
        "the pear is ripe\n\nsalad pear the\n",
    );
    let report = dir.path().join("r.html");
    let per_token = dir.path().join("tokens.csv");
    let o = rnnlm(&[
        "score",
        "--model",
        model(),
        "--format",
        "text",
        "--input",
        &input,
        "--output",
        "/dev/null",
        "--per-token",
        per_token.to_str().unwrap(),
        "--report",
        report.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let data = read_page(&report);
    let utterances = data["utterances"].as_array().unwrap();
    assert_eq!(utterances.len(), 2, "the empty line is skipped");
    let mut expected = csv::Reader::from_path(&per_token).unwrap();
    let rows: Vec<csv::StringRecord> = expected.records().map(Result::unwrap).collect();
    let mut k = 0;
    for u in utterances {
        let c = &u["candidates"][0];
        for (token, lp) in c["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .zip(c["token_logprobs"].as_array().unwrap())
        {
            assert_eq!(token.as_str().unwrap(), &rows[k][2]);
            assert!((lp.as_f64().unwrap() - number(&rows[k][3])).abs() < 6e-4);
            k += 1;
        }
    }
    assert_eq!(k, rows.len());
}

fn sample_args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "sample",
        "--model",
        model(),
        "--count",
        "8",
        "--seed",
        "11",
        "--tokens",
    ];
    args.extend_from_slice(extra);
    args
}

#[test]
fn the_steps_pages_draws_are_the_samples_of_the_same_seed() {
    let dir = tempfile::tempdir().unwrap();
    let plain = rnnlm(&sample_args(&[]));
    assert!(plain.status.success(), "{}", stderr(&plain));
    let steps = dir.path().join("steps.html");
    let viewed = rnnlm(&sample_args(&[
        "--steps",
        steps.to_str().unwrap(),
        "--top-k",
        "5",
    ]));
    assert!(viewed.status.success(), "{}", stderr(&viewed));
    assert_eq!(stdout(&plain), stdout(&viewed));
    let data = read_page(&steps);
    let samples = data["samples"].as_array().unwrap();
    let printed = stdout(&plain);
    let lines: Vec<&str> = printed.lines().collect();
    assert_eq!(samples.len(), lines.len());
    for (sample, line) in samples.iter().zip(&lines) {
        let steps = sample["steps"].as_array().unwrap();
        let mut drawn: Vec<&str> = steps.iter().map(|s| s["drawn"].as_str().unwrap()).collect();
        if !sample["truncated"].as_bool().unwrap() {
            assert_eq!(drawn.pop(), Some("<EOS>"));
        }
        assert_eq!(drawn.join(" "), *line);
        for step in steps {
            assert_ne!(step["drawn"], "<UNK>");
            let top = step["top"].as_array().unwrap();
            assert_eq!(top.len(), 5);
            let ps: Vec<f64> = top.iter().map(|t| t[1].as_f64().unwrap()).collect();
            assert!(ps.windows(2).all(|w| w[0] >= w[1]), "{ps:?}");
            assert!(ps.iter().sum::<f64>() <= 1.0 + 1e-3);
            assert!(top.iter().all(|t| t[0] != "<UNK>"));
            if let Some(t) = top.iter().find(|t| t[0] == step["drawn"]) {
                assert_eq!(t[1], step["drawn_p"]);
            }
        }
    }
    // Every sample's first step reads the zero state: the same distribution for all.
    let first: Vec<&Value> = samples.iter().map(|s| &s["steps"][0]["top"]).collect();
    assert!(first.windows(2).all(|w| w[0] == w[1]));
}

#[test]
fn the_tune_plot_is_a_png_whose_chosen_point_is_tune_json() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "nbest.csv", NBEST);
    let refs = write(dir.path(), "refs.csv", REFERENCES);
    let plot = dir.path().join("wer.png");
    let o = rnnlm(&[
        "tune",
        "--model",
        model(),
        "--input",
        &input,
        "--references",
        &refs,
        "--am-column",
        "am",
        "--ngram-column",
        "ng",
        "--json",
        "--plot",
        plot.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let report: Value = serde_json::from_str(&stdout(&o)).unwrap();
    let decoder = png::Decoder::new(std::fs::File::open(&plot).unwrap());
    let mut reader = decoder.read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size()];
    let frame = reader.next_frame(&mut pixels).unwrap();
    assert_eq!((frame.width, frame.height), (1200, 520));
    let chunk = reader
        .info()
        .uncompressed_latin1_text
        .iter()
        .find(|c| c.keyword == "rnnlm:chosen")
        .expect("the chosen point's text chunk");
    let chosen: Value = serde_json::from_str(&chunk.text).unwrap();
    for key in [
        "lm_weight",
        "length_penalty",
        "ngram_weight",
        "backward_weight",
    ] {
        assert_eq!(chosen[key], report[key], "{key}");
    }
    assert_eq!(chosen["wer"], report["rescored_wer"]);
    // The chosen point is drawn: its red is in the picture.
    let red = pixels[..frame.buffer_size()]
        .chunks(3)
        .filter(|p| p == &[214, 39, 40])
        .count();
    assert!(red > 20, "{red} red pixels");
}

/// The browser, when there is one; without, the reason is printed and the browser
/// tests pass, unless RNNLM_REQUIRE_BROWSER is set (as `make test` sets it).
fn browser() -> Option<PathBuf> {
    let found = ["chromium", "chromium-browser"].iter().find_map(|name| {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|p| p.join(name))
                .find(|p| p.is_file())
        })
    });
    if found.is_none() {
        assert!(
            std::env::var_os("RNNLM_REQUIRE_BROWSER").is_none(),
            "no chromium on PATH, and RNNLM_REQUIRE_BROWSER is set (make browser installs it)"
        );
        eprintln!("skipped: no chromium on PATH (make browser installs it)");
    }
    found
}

/// Runs the headless browser on `url` with `flags`; its standard output.
fn headless(browser: &Path, url: &str, flags: &[&str], profile: &Path) -> String {
    let o = Command::new("timeout")
        .arg("120")
        .arg(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(flags)
        .arg(url)
        .output()
        .expect("run chromium");
    assert!(
        o.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The start tags in `html` that begin with `prefix`, quotes respected.
fn start_tags<'a>(html: &'a str, prefix: &str) -> Vec<&'a str> {
    let mut tags = Vec::new();
    let mut rest = html;
    while let Some(at) = rest.find(prefix) {
        let tag = &rest[at..];
        let mut quoted = false;
        let end = tag
            .char_indices()
            .find(|&(_, c)| {
                if c == '"' {
                    quoted = !quoted;
                }
                c == '>' && !quoted
            })
            .map_or(tag.len(), |(i, _)| i);
        tags.push(&tag[..end]);
        rest = &tag[end..];
    }
    tags
}

fn attribute<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let key = format!(" {name}=\"");
    let start = tag.find(&key)? + key.len();
    Some(&tag[start..start + tag[start..].find('"')?])
}

/// The hue (degrees) of a CSS `rgb(r, g, b)` colour.
fn hue_of(style: &str) -> f64 {
    let inner = &style[style.find("rgb(").expect("an rgb colour") + 4..];
    let v: Vec<f64> = inner[..inner.find(')').unwrap()]
        .split(',')
        .map(|x| x.trim().parse::<f64>().unwrap() / 255.0)
        .collect();
    let (max, min) = (v[0].max(v[1]).max(v[2]), v[0].min(v[1]).min(v[2]));
    if max == min {
        return 0.0;
    }
    let d = max - min;
    let h = if max == v[0] {
        ((v[1] - v[2]) / d).rem_euclid(6.0)
    } else if max == v[1] {
        (v[2] - v[0]) / d + 2.0
    } else {
        (v[0] - v[1]) / d + 4.0
    };
    60.0 * h
}

#[test]
fn the_report_renders_in_a_real_browser() {
    let Some(browser) = browser() else { return };
    let dir = tempfile::tempdir().unwrap();
    let scored = score_with_report(dir.path(), &[]);
    let url = format!("file://{}", dir.path().join("report.html").display());
    let profile = dir.path().join("profile");
    let dom = headless(&browser, &url, &["--dump-dom"], &profile);
    let sections = start_tags(&dom, "<section class=\"utterance\"");
    assert_eq!(sections.len(), 4, "{dom}");
    let candidates = start_tags(&dom, "<div class=\"candidate");
    assert_eq!(candidates.len(), scored.rows.len());
    let chosen_marks = dom
        .matches("<span class=\"mark chosen\">chosen</span>")
        .count();
    assert_eq!(chosen_marks, 4);
    // The chosen candidates are the CSV's best rows.
    let chosen_rows: Vec<usize> = candidates
        .iter()
        .filter(|t| t.contains("class=\"candidate chosen\""))
        .map(|t| attribute(t, "data-row").unwrap().parse().unwrap())
        .collect();
    let expected: Vec<usize> = picks(&scored.rows).iter().map(|p| p.1).collect();
    assert_eq!(chosen_rows, expected);
    // Token colours: a lower log-probability is never greener.
    let mut tokens: Vec<(f64, f64)> = start_tags(&dom, "<span class=\"token")
        .iter()
        .map(|t| {
            let lp: f64 = attribute(t, "data-logprob").unwrap().parse().unwrap();
            (lp, hue_of(attribute(t, "style").unwrap()))
        })
        .collect();
    let expected_tokens: usize = scored
        .rows
        .iter()
        .map(|r| number(&r["tokens"]) as usize)
        .sum();
    assert_eq!(tokens.len(), expected_tokens);
    tokens.sort_by(|a, b| b.0.total_cmp(&a.0));
    for pair in tokens.windows(2) {
        assert!(pair[1].1 <= pair[0].1 + 1.0, "{pair:?}");
    }
    assert!(tokens[0].1 > tokens[tokens.len() - 1].1, "{tokens:?}");

    // With the filter on, exactly the lists whose pick changed are shown.
    let filtered = headless(
        &browser,
        &format!("{url}#filter=changed"),
        &["--dump-dom"],
        &profile,
    );
    let shown: Vec<&str> = start_tags(&filtered, "<section class=\"utterance\"")
        .into_iter()
        .filter(|t| !t.contains(" hidden"))
        .map(|t| attribute(t, "data-id").unwrap())
        .collect();
    let changed: Vec<String> = picks(&scored.rows)
        .into_iter()
        .filter(|p| p.2)
        .map(|p| p.0)
        .collect();
    assert_eq!(shown, changed);

    assert_screenshot_not_blank(&browser, &url, &dir.path().join("shot.png"), &profile);
}

#[test]
fn the_steps_page_renders_in_a_real_browser() {
    let Some(browser) = browser() else { return };
    let dir = tempfile::tempdir().unwrap();
    let steps = dir.path().join("steps.html");
    let o = rnnlm(&sample_args(&["--steps", steps.to_str().unwrap()]));
    assert!(o.status.success(), "{}", stderr(&o));
    let data = read_page(&steps);
    let url = format!("file://{}", steps.display());
    let dom = headless(&browser, &url, &["--dump-dom"], &dir.path().join("profile"));
    let sections = start_tags(&dom, "<section class=\"sample\"");
    let samples = data["samples"].as_array().unwrap();
    assert_eq!(sections.len(), samples.len());
    let rows = dom.matches("<tr class=\"step\">").count();
    let expected: usize = samples
        .iter()
        .map(|s| s["steps"].as_array().unwrap().len())
        .sum();
    assert_eq!(rows, expected);
    // Each step's drawn token is shown, and outlined among the top tokens when there.
    let drawn = start_tags(&dom, "<span class=\"token drawn\"").len();
    assert_eq!(drawn, expected);
    let profile = dir.path().join("profile");
    assert_screenshot_not_blank(&browser, &url, &dir.path().join("shot.png"), &profile);
}

/// Takes a screenshot of `url` into `shot` and checks that it is not blank.
fn assert_screenshot_not_blank(browser: &Path, url: &str, shot: &Path, profile: &Path) {
    let flag = format!("--screenshot={}", shot.display());
    headless(browser, url, &[&flag, "--window-size=1200,900"], profile);
    assert_not_blank(shot);
}

/// A screenshot with more than a background: many colours, and pixels far from white.
fn assert_not_blank(path: &Path) {
    let decoder = png::Decoder::new(std::fs::File::open(path).expect("a screenshot"));
    let mut reader = decoder.read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size()];
    let frame = reader.next_frame(&mut pixels).unwrap();
    let channels = frame.color_type.samples();
    let mut colours = std::collections::HashSet::new();
    let mut dark = 0;
    for p in pixels[..frame.buffer_size()].chunks(channels) {
        colours.insert((p[0], p[1], p[2]));
        if u32::from(p[0]) + u32::from(p[1]) + u32::from(p[2]) < 300 {
            dark += 1;
        }
    }
    assert!(colours.len() > 50, "{} colours", colours.len());
    assert!(dark > 1000, "{dark} dark pixels");
}
