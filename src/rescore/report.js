// The rescoring report: one section per utterance, its candidates ranked.
const TERMS = [
  ["am", "am"],
  ["forward", "lm_weight \u00b7 forward"],
  ["backward", "lm_weight \u00b7 backward"],
  ["ngram", "lm_weight \u00b7 n-gram"],
  ["length", "length penalty"],
];

function percent(errors, words) {
  return words > 0 ? (100 * errors / words).toFixed(2) + "%" : "\u2013";
}

function header() {
  const t = DATA.totals;
  const w = DATA.weights;
  const head = el("header");
  head.append(el("h1", "", "Rescoring report"));
  head.append(el("p", "meta", "input " + DATA.input + " \u00b7 model " + DATA.model));
  head.append(el("p", "meta", "lm_weight " + w.lm_weight + " \u00b7 length_penalty " + w.length_penalty +
    " \u00b7 ngram_weight " + w.ngram_weight + " \u00b7 backward_weight " + w.backward_weight));
  let counts = t.utterances + (DATA.lists ? " utterances, " : " sentences, ") + t.candidates + " candidates";
  if (DATA.lists) counts += "; the rescoring changed the first-pass pick in " + t.changed;
  if (DATA.references) {
    counts += "; WER first pass " + percent(t.first_pass_errors, t.reference_words) +
      ", rescored " + percent(t.chosen_errors, t.reference_words) +
      ", oracle " + percent(t.oracle_errors, t.reference_words) +
      "; chosen candidate wrong in " + t.wrong;
  }
  head.append(el("p", "meta", counts));
  const shown = DATA.utterances.length;
  head.append(el("p", "meta", "showing " + shown + " of " + t.utterances +
    (DATA.order === "wer-change" ? ", the largest changes in word errors first" : ", in file order")));
  return head;
}

function controls() {
  const bar = el("div", "controls");
  if (DATA.lists) {
    const label = el("label", "", "show ");
    const select = el("select");
    select.id = "filter";
    const options = [["all", "every utterance"], ["changed", "where the LM changed the first-pass pick"]];
    if (DATA.references) options.push(["wrong", "where the pick is wrong"]);
    for (const [value, text] of options) {
      const option = el("option", "", text);
      option.value = value;
      select.append(option);
    }
    select.addEventListener("change", () => {
      history.replaceState(null, "", "#filter=" + select.value);
      applyFilter(select.value);
    });
    label.append(select);
    bar.append(label);
    const count = el("span", "meta");
    count.id = "shown";
    bar.append(count);
  }
  bar.append(legend());
  const keys = el("span", "meta", "bars: each term's difference from the chosen candidate (right of the line: in this one's favour)");
  for (const [key, name] of TERMS) {
    const swatch = el("span", "key term-" + key);
    swatch.title = name;
    keys.append(swatch, document.createTextNode(name));
  }
  if (DATA.lists) bar.append(keys);
  return bar;
}

// Bars of each term's difference from the chosen candidate's, on one scale per utterance.
function termBar(candidate, chosen, scale) {
  const bar = el("div", "bar");
  bar.append(el("span", "axis"));
  let left = 50, right = 50;
  for (const [key, name] of TERMS) {
    const value = candidate.terms[key];
    if (value === null || value === undefined) continue;
    const delta = value - chosen.terms[key];
    if (delta === 0) continue;
    const width = 50 * Math.abs(delta) / scale;
    const part = el("span", "part term-" + key);
    if (delta < 0) { left -= width; part.style.left = left + "%"; } else { part.style.left = right + "%"; right += width; }
    part.style.width = width + "%";
    part.title = name + ": " + value + " (" + (delta > 0 ? "+" : "") + delta.toFixed(DATA.digits) + " against the chosen)";
    bar.append(part);
  }
  return bar;
}

function termsText(candidate) {
  const parts = [];
  for (const [key, name] of TERMS) {
    const value = candidate.terms[key];
    if (value !== null && value !== undefined && !(key === "length" && value === 0)) parts.push(name + " " + value);
  }
  return (candidate.score === null ? "ln P " + candidate.logprob : "score " + candidate.score + " = " + parts.join(" + "));
}

function candidateRow(u, candidate, index, scale) {
  const row = el("div", "candidate");
  row.dataset.rank = String(candidate.rank);
  row.dataset.row = String(candidate.row);
  if (index === u.chosen) row.classList.add("chosen");
  row.append(el("span", "rank", String(candidate.rank)));
  const marks = el("div", "marks");
  if (index === u.chosen && DATA.lists) marks.append(el("span", "mark chosen", "chosen"));
  if (index === 0 && DATA.lists) marks.append(el("span", "mark first", "first pass"));
  if (candidate.errors === 0) marks.append(el("span", "mark reference", "= reference"));
  if (candidate.errors !== null && candidate.errors > 0) marks.append(el("span", "mark errors", candidate.errors + " word errors"));
  row.append(marks);
  const body = el("div");
  const tokens = el("div", "tokens");
  const differs = new Set(candidate.differs);
  const oov = new Set(candidate.oov);
  candidate.tokens.forEach((token, i) => {
    const span = tokenSpan(token, candidate.token_logprobs[i], oov.has(i) ? "\noutside the vocabulary: its share of <UNK>" : "");
    if (differs.has(i)) span.classList.add("differs");
    tokens.append(span, document.createTextNode(" "));
  });
  body.append(tokens);
  if (candidate.text !== undefined) body.append(el("div", "meta", "as read: " + candidate.text));
  const terms = el("div", "terms", termsText(candidate) + (candidate.backward_logprob !== null ? " \u00b7 backward ln P " + candidate.backward_logprob : ""));
  body.append(terms);
  if (DATA.lists && candidate.score !== null) body.append(termBar(candidate, u.candidates[u.chosen], scale));
  row.append(body);
  return row;
}

function utteranceSection(u) {
  const section = el("section", "utterance");
  section.dataset.id = u.id;
  section.dataset.changed = String(u.changed);
  if (u.wrong !== null) section.dataset.wrong = String(u.wrong);
  const title = el("h2", "", (DATA.lists ? "utterance " : "") + u.id);
  if (u.error_change !== null && u.error_change !== 0) {
    title.append(el("span", "meta", " \u00b7 " + (u.error_change > 0 ? u.error_change + " fewer" : -u.error_change + " more") + " word errors than the first pass"));
  }
  section.append(title);
  if (u.reference !== null) section.append(el("p", "reference", "reference: " + u.reference));
  const chosen = u.candidates[u.chosen];
  let scale = 1e-9;
  for (const c of u.candidates) {
    for (const [key] of TERMS) {
      const v = c.terms[key];
      if (v !== null && v !== undefined) scale = Math.max(scale, Math.abs(v - chosen.terms[key]));
    }
  }
  const order = u.candidates.map((c, i) => i).sort((a, b) => u.candidates[a].rank - u.candidates[b].rank);
  for (const i of order) section.append(candidateRow(u, u.candidates[i], i, scale));
  return section;
}

function applyFilter(filter) {
  let shown = 0;
  for (const section of document.querySelectorAll("section.utterance")) {
    const show = filter === "changed" ? section.dataset.changed === "true"
      : filter === "wrong" ? section.dataset.wrong === "true" : true;
    section.hidden = !show;
    shown += show ? 1 : 0;
  }
  const count = document.getElementById("shown");
  if (count) count.textContent = shown + " shown";
  document.body.dataset.filter = filter;
}

const page = document.getElementById("page");
page.append(header(), controls());
for (const u of DATA.utterances) page.append(utteranceSection(u));
const asked = (location.hash.match(/filter=(\w+)/) || [])[1] || "all";
const select = document.getElementById("filter");
const filter = select && [...select.options].some(o => o.value === asked) ? asked : "all";
if (select) select.value = filter;
applyFilter(filter);
