"use strict";
// What every page shares. A token's colour says how surprised the model was: hue 120
// (green) at log-probability 0, falling linearly to hue 0 (red) at -SURPRISE nats and
// below, so a lower log-probability never gets a greener colour.
const SURPRISE = 12;
const DATA = JSON.parse(document.getElementById("data").textContent);

function hue(logProb) {
  const t = Math.min(Math.max(-logProb / SURPRISE, 0), 1);
  return 120 * (1 - t);
}

function colour(logProb) {
  return "hsl(" + hue(logProb).toFixed(1) + ", 70%, 78%)";
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function fixed(value, digits) {
  return value === null || value === undefined ? "" : Number(value).toFixed(digits);
}

// A token coloured by its log-probability, the numbers on hover.
function tokenSpan(token, logProb, extra) {
  const span = el("span", "token", token);
  span.style.backgroundColor = colour(logProb);
  span.dataset.logprob = String(logProb);
  span.title = token + "\nln P = " + fixed(logProb, 3) + "\nP = " + Math.exp(logProb).toPrecision(3) + (extra || "");
  return span;
}

function legend() {
  const box = el("span", "legend");
  box.append(el("span", "meta", "ln P: 0 "));
  for (let lp = 0; lp >= -SURPRISE; lp -= 2) {
    const swatch = el("span", "swatch");
    swatch.style.backgroundColor = colour(lp);
    swatch.title = "ln P = " + lp;
    box.append(swatch);
  }
  box.append(el("span", "meta", " \u2212" + SURPRISE + " and below"));
  return box;
}
