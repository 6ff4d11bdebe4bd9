#!/usr/bin/env python3
"""The regularizer ablation on Brown: the word network with dropout alone, then each training-time
regularizer added alone, then combinations, every row with the same training budget.

Runs two trainings at a time, one core each (`--threads 1`), so rows are compared under
the same load. Each row is trained on Brown train for BUDGET seconds, then its kept model
is evaluated on Brown valid and test. Writes bench/results-ablation.md.

Environment: WORD_FLAGS (the network's flags, WORD_NETWORK in the Makefile), BUDGET (seconds of
training per row, default 780), ROWS (names of the rows to run, default all), OUT (where
the models go, default models/ablation).
"""

import csv
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

BIN = os.environ.get("BIN", "target/release/rnnlm")
BUDGET = int(os.environ.get("BUDGET", "780"))
OUT = Path(os.environ.get("OUT", "models/ablation"))
WORD_FLAGS = shlex.split(os.environ["WORD_FLAGS"])
RESULTS = Path("bench/results-ablation.md")

# AWD-LSTM's rates (Merity et al. 2017) are for 500 epochs; these are milder, for a
# budget of tens of epochs.
ROWS = [
    ("no regularizers", []),
    ("+ locked dropout", ["--locked-dropout"]),
    ("+ embedding dropout 0.1", ["--embed-dropout", "0.1"]),
    ("+ DropConnect W_hh 0.3", ["--weight-drop", "0.3"]),
    ("+ AR 2, TAR 1", ["--ar", "2", "--tar", "1"]),
    ("+ AdamW 0.01", ["--weight-decay", "0.01"]),
    ("+ weight average 0.999", ["--ema-decay", "0.999"]),
    (
        "+ all",
        ["--locked-dropout", "--embed-dropout", "0.1", "--weight-drop", "0.3",
         "--ar", "2", "--tar", "1", "--weight-decay", "0.01", "--ema-decay", "0.999"],
    ),
]


def slug(name):
    return "".join(c if c.isalnum() else "-" for c in name).strip("-").replace("--", "-")


def flags_of(extra):
    """The recipe's flags with `extra` appended; a later flag wins in clap for values,
    so a row's --dropout replaces the recipe's."""
    base = list(WORD_FLAGS)
    for i, flag in enumerate(extra):
        if flag.startswith("--") and flag in base and i + 1 < len(extra) and not extra[i + 1].startswith("--"):
            at = base.index(flag)
            del base[at:at + 2]
    return base + extra + ["--threads", "1", "--time-limit", str(BUDGET)]


def train(name, extra):
    out = OUT / slug(name)
    cmd = [BIN, "train", "--data", "datasets/brown", "--out", str(out), "--force"] + flags_of(extra)
    log = open(out.with_suffix(".log"), "w")
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT), cmd


def evaluate(model, split):
    result = subprocess.run(
        [BIN, "eval", "--model", str(model), "--data", f"datasets/brown/{split}.txt", "--json"],
        check=True, capture_output=True, text=True,
    )
    return json.loads(result.stdout)["perplexity"]


def summary(name, cmd):
    model = OUT / slug(name)
    with open(model / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    tokens = sum(float(r["tokens_per_s"]) * float(r["seconds"]) for r in rows)
    seconds = sum(float(r["seconds"]) for r in rows)
    return {
        "name": name,
        "valid": evaluate(model, "valid"),
        "test": evaluate(model, "test"),
        "epochs": float(rows[-1]["epoch"]),
        "tokens_per_s": tokens / seconds,
        "command": " ".join(shlex.quote(c) for c in cmd),
    }


def cpu():
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def main():
    wanted = os.environ.get("ROWS")
    rows = [r for r in ROWS if not wanted or slug(r[0]) in wanted.split()]
    OUT.mkdir(parents=True, exist_ok=True)
    done = []
    for i in range(0, len(rows), 2):
        pair = rows[i:i + 2]
        started = [(name, *train(name, extra)) for name, extra in pair]
        for name, process, cmd in started:
            if process.wait() != 0:
                sys.exit(f"ablation: {name} failed; see {(OUT / slug(name)).with_suffix('.log')}")
        for name, _, cmd in started:
            row = summary(name, cmd)
            done.append(row)
            print(json.dumps(row), flush=True)
    write(done)


def write(rows):
    previous = {}
    if RESULTS.exists():
        for line in RESULTS.read_text().splitlines():
            if line.startswith("<!-- row "):
                row = json.loads(line[len("<!-- row "):-len(" -->")])
                previous[row["name"]] = row
    for row in rows:
        row["cpu"] = cpu()
        row["budget"] = BUDGET
        row["date"] = time.strftime("%Y-%m-%d")
        previous[row["name"]] = row
    order = [name for name, _ in ROWS]
    ordered = sorted(previous.values(), key=lambda r: order.index(r["name"]) if r["name"] in order else len(order))
    lines = [
        "# Regularizer ablation on Brown",
        "",
        "`make ablation`: each row trains the word network (`WORD_NETWORK`) with one core for the",
        "budget shown, two rows at a time; perplexities are Brown's own form, closed vocabulary.",
        "",
        "| row | valid ppl | test ppl | epochs | tokens/s | budget | CPU | date |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for r in ordered:
        lines.append(
            f"| {r['name']} | {r['valid']:.2f} | {r['test']:.2f} | {r['epochs']:.2f} | "
            f"{r['tokens_per_s']:,.0f} | {r['budget']} s | {r['cpu']} | {r['date']} |"
        )
    lines += ["", "Commands:", ""]
    for r in ordered:
        lines.append(f"- {r['name']}: `{r['command']}`")
    lines.append("")
    lines += [f"<!-- row {json.dumps(r)} -->" for r in ordered]
    RESULTS.write_text("\n".join(lines) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
