// Sampling, step by step: each step's most likely next tokens, the draw, and <UNK>'s share.
function sampleSection(sample, index) {
  const section = el("section", "sample");
  section.dataset.index = String(index);
  const title = el("h2", "", "sample " + (index + 1) + ": " + sample.text);
  title.append(el("span", "meta", " \u00b7 ln P " + sample.log_prob.toFixed(3) +
    (sample.truncated ? " \u00b7 cut at the length cap" : " \u00b7 ended by <EOS>")));
  section.append(title);
  if (sample.prefix.length > 0) section.append(el("p", "meta", "prefix (given, not drawn): " + sample.prefix.join(" ")));
  const table = el("table", "steps");
  const head = el("tr");
  for (const name of ["step", "drawn", "P(drawn)", "most likely next tokens (drawn one outlined)", "P(<UNK>): a redraw"]) head.append(el("th", "", name));
  table.append(head);
  sample.steps.forEach((step, t) => {
    const row = el("tr", "step");
    row.append(el("td", "", String(t + 1)));
    const drawn = tokenSpan(step.drawn, Math.log(step.drawn_p));
    drawn.classList.add("drawn");
    const drawnCell = el("td", "drawn");
    drawnCell.append(drawn);
    row.append(drawnCell, el("td", "", step.drawn_p.toPrecision(3)));
    const choices = el("td");
    let inTop = false;
    for (const [token, p] of step.top) {
      const choice = el("span", "choice", token);
      if (token === step.drawn) { choice.classList.add("drawn"); inTop = true; }
      const bar = el("span", "p");
      bar.style.width = Math.max(1, Math.round(60 * p)) + "px";
      choice.append(bar);
      choice.title = token + ": P = " + p.toPrecision(3);
      choices.append(choice);
    }
    if (!inTop) choices.append(el("span", "meta", "\u2026 drawn from outside the top " + DATA.top_k));
    row.append(choices);
    const unk = el("td", "unk", step.unk_p >= 0.0005 ? (100 * step.unk_p).toFixed(1) + "%" : "");
    unk.title = "P(<UNK>) = " + step.unk_p.toPrecision(3) + ": set to zero and the rest renormalized, the same as drawing again whenever <UNK> comes up";
    row.append(unk);
    table.append(row);
  });
  section.append(table);
  return section;
}

const page = document.getElementById("page");
const head = el("header");
head.append(el("h1", "", "Sampling, step by step"));
head.append(el("p", "meta", "model " + DATA.model + " \u00b7 seed " + DATA.seed + " \u00b7 " + DATA.samples.length +
  " samples \u00b7 start from the zero state, draw from the softmax, feed the draw back in, stop at <EOS> or the length cap; <UNK> is never emitted"));
if (DATA.reading_order_reversed) head.append(el("p", "meta", "a backward model: it draws from the sentence's end, so the steps run right to left; the titles read left to right"));
page.append(head);
const bar = el("div", "controls");
bar.append(legend());
page.append(bar);
DATA.samples.forEach((s, i) => page.append(sampleSection(s, i)));
