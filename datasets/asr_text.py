#!/usr/bin/env python3
"""Brown valid as training text for the recognizer-form models, the real dev lists held out.

    python3 datasets/asr_text.py [--check]

The real N-best lists are read from Brown's valid split (dev) and test split (test),
both mostly fiction, while Brown train has none. So the recognizer-form models also
train on the valid sentences that no list was read from, and validate on the ones the
dev lists were read from:

- `asr/brown-valid-dev.txt`: the Brown valid sentences of `asr/real-dev.refs.csv`, in
  file order: the validation text of `make train-asr`.
- `asr/brown-valid-train.txt`: every other non-empty Brown valid sentence, less any
  whose text is also the sentence of a dev or a test list: training text.

The dev sentences' neighbours in their stories are trained on, so the dev rows of
`make tune` are optimistic about names and topics; the test split is never trained on.

With --check nothing is written: the files are rebuilt in memory and compared byte for
byte with the ones in the repository, and the exit code says whether they match.
"""
import argparse
import csv
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
BROWN = os.path.join(HERE, "brown")
ASR = os.path.join(HERE, "asr")
DEV_FILE = "brown-valid-dev.txt"
TRAIN_FILE = "brown-valid-train.txt"


def list_lines(refs_path, split):
    """The 1-based Brown line numbers that a lists' references name (`split-NNNNN`)."""
    numbers = set()
    with open(refs_path, encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            name, _, number = row["utterance_id"].partition("-")
            if name != split or not number.isdigit():
                raise ValueError(f"{refs_path}: utterance '{row['utterance_id']}' is not {split}-NNNNN")
            numbers.add(int(number))
    return numbers


def listed(lines, numbers, lists, split):
    """The lines that a set of lists names, in file order; a number past the end of the
    split is an error (the lists were read from another Brown)."""
    missing = sorted(n for n in numbers if not 1 <= n <= len(lines))
    if missing:
        raise ValueError(f"{lists} list line {missing[0]} is past the end of Brown {split}")
    return [line for number, line in enumerate(lines, 1) if number in numbers]


def split_valid(valid_lines, dev_numbers, test_sentences):
    """(dev, train): the valid lines that the dev lists name, in file order, and the other
    non-empty lines that are neither a dev nor a test list's sentence."""
    dev = listed(valid_lines, dev_numbers, "dev", "valid")
    held_out = set(dev) | set(test_sentences)
    train = [
        line
        for number, line in enumerate(valid_lines, 1)
        if number not in dev_numbers and line.strip() and line not in held_out
    ]
    return dev, train


def read_lines(path):
    """The file's lines, numbered as the utterance ids number them (no line dropped)."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    # The final newline ends the last line; it does not start another.
    return lines[:-1] if lines and lines[-1] == "" else lines


def build(brown=BROWN, asr=ASR):
    """{file name: text} of the two files."""
    valid = read_lines(os.path.join(brown, "valid.txt"))
    test = read_lines(os.path.join(brown, "test.txt"))
    dev_numbers = list_lines(os.path.join(asr, "real-dev.refs.csv"), "valid")
    test_numbers = list_lines(os.path.join(asr, "real-test.refs.csv"), "test")
    test_sentences = listed(test, test_numbers, "test", "test")
    dev, train = split_valid(valid, dev_numbers, test_sentences)
    return {DEV_FILE: "".join(f"{line}\n" for line in dev),
            TRAIN_FILE: "".join(f"{line}\n" for line in train)}


def check(files, asr=ASR):
    """The names of the files that differ from `files` (or are missing)."""
    bad = []
    for name, text in files.items():
        try:
            with open(os.path.join(asr, name), encoding="utf-8", newline="") as f:
                if f.read() != text:
                    bad.append(name)
        except OSError:
            bad.append(name)
    return bad


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="compare with the shipped files")
    args = parser.parse_args()
    try:
        files = build()
    except (OSError, ValueError) as e:
        sys.exit(f"datasets/asr_text.py: {e}")
    if args.check:
        bad = check(files)
        if bad:
            sys.exit(f"{ASR}: {', '.join(bad)} differ from what datasets/asr_text.py builds")
        print(f"{ASR}: {', '.join(files)} match Brown valid and the real lists")
        return
    for name, text in files.items():
        path = os.path.join(ASR, name)
        with open(path + ".tmp", "w", encoding="utf-8", newline="") as f:
            f.write(text)
        os.replace(path + ".tmp", path)
        print(f"{path}: {text.count(chr(10))} sentences")


if __name__ == "__main__":
    main()
