"""Tests of the real N-best generator: text normalization, the lattice N-best search
against brute force, and the same output for any number of parallel decoders.

    python -m unittest datasets/test_make_real_nbest.py
"""

import csv
import filecmp
import itertools
import math
import os
import shutil
import sys
import tempfile
import unittest
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_real_nbest as gen  # noqa: E402


class Normalization(unittest.TestCase):
    def test_references_take_the_decoders_form(self):
        known = {"well-known", "o'brien"}.__contains__
        words = gen.speakable_words("`` The well-known X-ray , said O'Brien's boys' 'em -- twice . ''")
        self.assertEqual(
            gen.normalize(words, known),
            ["the", "well-known", "x", "ray", "said", "o'brien's", "boys'", "'em", "twice"])

    def test_only_sentences_a_synthesizer_reads_as_written_are_used(self):
        self.assertIsNotNone(gen.speakable_words("He came home at noon ."))
        for line in ["It cost $5 .", "In 1960 he left .", "The U.S. Army came .", "A & B ."]:
            self.assertIsNone(gen.speakable_words(line), line)


class FakeDecoder:
    """Decoder settings and a made-up trigram: enough for `nbest`."""

    settings = {"lw": 6.5, "bestpathlw": 9.5, "wip": 0.65}

    def ln_prob(self, word, h2, h1):
        # Deterministic, history-dependent, below 0.
        return -0.5 - zlib.crc32(repr((word, h2, h1)).encode()) % 1000 / 400.0


def brute_force(lattice, decoder, n):
    """Every path of a small lattice, scored as `nbest` documents, best per string."""
    nodes, initial, final, links = lattice
    lw = decoder.settings["bestpathlw"]
    wip = lw / decoder.settings["lw"] * math.log(decoder.settings["wip"])
    exits = {}
    for src, dst, ascr in links:
        exits.setdefault(src, []).append((dst, ascr * gen.LN_BASE))
    best = {}

    def walk(node, words, am, lm, score):
        if node == final:
            key = tuple(words)
            if key not in best or score > best[key][0]:
                best[key] = (score, am, lm)
            return
        for dst, step in exits.get(node, ()):
            h2 = words[-2] if len(words) > 1 else (None if not words else "<s>")
            h1 = words[-1] if words else "<s>"
            if dst == final:
                p = decoder.ln_prob("</s>", h2, h1)
                walk(dst, words, am + step, lm + p, score + step + lw * p + wip)
                continue
            word = gen.base_word(nodes[dst][0])
            if gen.is_filler(word):
                walk(dst, words, am + step, lm, score + step)
            else:
                p = decoder.ln_prob(word, h2, h1)
                walk(dst, words + [word], am + step, lm + p, score + step + lw * p + wip)

    walk(initial, [], 0.0, 0.0, 0.0)
    ranked = sorted(best.items(), key=lambda kv: -kv[1][0])[:n]
    return [(list(k), v[1], v[2] / math.log(10)) for k, v in ranked]


class LatticeSearch(unittest.TestCase):
    def lattice(self):
        # Two competing words per slot, fillers and a pronunciation variant between them.
        words = [["the", "a"], ["cat", "cap", "cat(2)"], ["<sil>", "[NOISE]"], ["sat", "sad"], ["on"]]
        nodes = {0: ("<s>", 0)}
        frame, node_id, layers = 1, 1, [[0]]
        for slot in words:
            layer = []
            for w in slot:
                nodes[node_id] = (w, frame)
                layer.append(node_id)
                node_id += 1
            layers.append(layer)
            frame += 10
        nodes[node_id] = ("</s>", frame)
        final = node_id
        layers.append([final])
        links = []
        for a, b in itertools.pairwise(layers):
            for i, src in enumerate(a):
                for j, dst in enumerate(b):
                    links.append((src, dst, -1000 * (1 + (3 * i + 7 * j + src) % 5)))
        # Fillers may be skipped.
        for src in layers[2]:
            for dst in layers[4]:
                links.append((src, dst, -2500 - 100 * src))
        return nodes, 0, final, links

    def test_the_search_finds_the_brute_force_n_best(self):
        lattice, decoder = self.lattice(), FakeDecoder()
        for n in (1, 5, 16):
            expected = brute_force(lattice, decoder, n)
            got = gen.nbest(lattice, decoder, n, beam=1e9)
            self.assertEqual([w for w, _, _ in got], [w for w, _, _ in expected])
            for (_, am, lm), (_, am2, lm2) in zip(got, expected):
                self.assertAlmostEqual(am, am2, places=6)
                self.assertAlmostEqual(lm, lm2, places=6)

    def test_a_target_string_is_found_alone(self):
        lattice, decoder = self.lattice(), FakeDecoder()
        everything = brute_force(lattice, decoder, 100)
        words, am, lm = everything[7]
        (got,) = gen.nbest(lattice, decoder, 1, beam=1e9, target=words)
        self.assertEqual(got[0], words)
        self.assertAlmostEqual(got[1], am, places=6)


class Oracle(unittest.TestCase):
    def test_edit_distance_counts_substitutions_insertions_and_deletions(self):
        self.assertEqual(gen.edit_distance("a b c".split(), "a b c".split()), 0)
        self.assertEqual(gen.edit_distance("a b c".split(), "a x c".split()), 1)
        self.assertEqual(gen.edit_distance("a b c".split(), "a c".split()), 1)
        self.assertEqual(gen.edit_distance("a b c".split(), "x a b c y".split()), 2)
        self.assertEqual(gen.edit_distance([], "a b".split()), 2)

    def test_the_oracle_takes_each_lists_best_candidate_within_the_depth(self):
        results = [
            {"reference": "a b c d".split(), "hyps": [("a x c d".split(),), ("a b c d".split(),)]},
            {"reference": "e f".split(), "hyps": [("e".split(),), ("x y z".split(),)]},
        ]
        # Depth 1: 1 + 1 errors in 6 words; depth 2: 0 + 1.
        self.assertEqual(gen.oracle_wer(results, [1, 2]), {"1": 33.33, "2": 16.67})


def decoder_missing():
    if shutil.which("flite") is None or shutil.which("sox") is None:
        return "flite or sox is not installed (make asr-tools)"
    try:
        import pocketsphinx  # noqa: F401
    except ImportError:
        return "pocketsphinx is not installed (make asr-tools)"
    return None


class Generation(unittest.TestCase):
    def test_one_and_two_decoders_write_the_same_bytes_and_shallow_lists_are_heads(self):
        missing = decoder_missing()
        if missing:
            print(f"skipped: {missing}", file=sys.stderr)
            self.skipTest(missing)
        with tempfile.TemporaryDirectory() as tmp:
            one, two, shallow = (os.path.join(tmp, name) for name in ("one", "two", "shallow"))
            gen.generate(one, jobs=1, limit=5, depth=20)
            gen.generate(two, jobs=2, limit=5, depth=20)
            gen.generate(shallow, jobs=2, limit=5, depth=3)
            for name in gen.FILES:
                self.assertTrue(filecmp.cmp(os.path.join(one, name), os.path.join(two, name),
                                            shallow=False), name)
            with open(os.path.join(one, "real-dev.refs.csv")) as f:
                self.assertEqual(len(f.read().splitlines()), 6)
            for name in ("real-dev.nbest.csv", "real-test.nbest.csv"):
                with open(os.path.join(one, name)) as deep, open(os.path.join(shallow, name)) as head:
                    deep_rows = [row for row in csv.reader(deep)][1:]
                    head_rows = [row for row in csv.reader(head)][1:]
                self.assertGreater(len(deep_rows), len(head_rows), name)
                self.assertEqual([row for row in deep_rows if int(row[1]) <= 3], head_rows, name)
            gen.check(one)


if __name__ == "__main__":
    unittest.main()
