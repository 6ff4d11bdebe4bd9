#!/usr/bin/env python3
"""Real N-best lists: Brown sentences spoken by flite and decoded by PocketSphinx.

    python datasets/make_real_nbest.py [--nbest 100] [--jobs 2] [--limit N] [--out DIR]
    python datasets/make_real_nbest.py --check

Each utterance: flite reads the sentence with one of its built-in voices, sox changes the
tempo (and resamples to 16 kHz mono), and half of the utterances get white noise at a
random SNR. PocketSphinx decodes the audio with its bundled en-us acoustic model,
dictionary and trigram; the N-best lists come from the decoder's word lattice (see
`nbest`), each hypothesis with its acoustic and its LM score kept apart. Every random
choice is drawn from a generator seeded by the utterance alone, and the results are
written in utterance order, so the output is the same for any number of `--jobs`.
The search is best first, so the first 10 hypotheses of a 100-best list are the 10-best
list, and a list of any depth is the head of a deeper one. `real.meta.json` records the
oracle WER (the best candidate's errors) of each split at depths 10, 20, 50 and 100.

`--check` verifies the shipped files against the checksums recorded in
`real.meta.json` at generation, without decoding again.

Needs: Debian `flite` and `sox`, PyPI `pocketsphinx==5.1.1` (`make asr-tools`).
"""

import argparse
import csv
import hashlib
import heapq
import io
import json
import math
import multiprocessing
import os
import platform
import random
import re
import subprocess
import sys
import tempfile
import time
import wave
from array import array
from importlib import metadata

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_nbest import edit_distance  # noqa: E402  (word-level Levenshtein distance)

HERE = os.path.dirname(os.path.abspath(__file__))
BROWN = os.path.join(HERE, "brown")
ASR = os.path.join(HERE, "asr")
SPLITS = [("dev", "valid"), ("test", "test")]
VOICES = ["slt", "rms", "awb", "kal16"]
SEED = 20261201
UTTERANCES = 500
NBEST = 100
# The depths whose oracle WER real.meta.json records.
ORACLE_DEPTHS = (1, 10, 20, 50, 100)
# Lattice pruning beam in nats (see `prune`).
BEAM = 80.0
MIN_WORDS, MAX_WORDS = 5, 20
TEMPO = (0.9, 1.15)
SNR_DB = (25.0, 40.0)
# PocketSphinx scores are integers in log base 1.0001.
LN_BASE = math.log(1.0001)
FILES = [f"real-{name}.{kind}.csv" for name, _ in SPLITS for kind in ("nbest", "refs")]

# A word a synthesizer reads as written: letters, inner hyphens and apostrophes.
SPEAKABLE = re.compile(r"^'?[A-Za-z]+(?:['-][A-Za-z]+)*'?$")
# Brown's punctuation tokens; a sentence with any other token (digits, symbols,
# abbreviations with periods) is not used.
PUNCTUATION = {",", ".", ";", ":", "?", "!", "``", "''", "--", "(", ")", "'"}


def speakable_words(line):
    """The words of a Brown sentence, or None when a synthesizer cannot read it as is."""
    tokens = line.split()
    if not all(SPEAKABLE.match(t) or t in PUNCTUATION for t in tokens):
        return None
    return [t for t in tokens if t not in PUNCTUATION]


def normalize(words, in_vocabulary):
    """A reference in the decoder's form: lowercase, no punctuation, and a hyphenated
    word kept whole where the decoder's vocabulary has it, else split at its hyphens
    (the decoder can only print words it knows)."""
    out = []
    for word in words:
        word = word.lower()
        if all(not c.isalnum() for c in word):
            continue
        if "-" in word and not in_vocabulary(word):
            out.extend(part for part in word.split("-") if part)
        else:
            out.append(word)
    return out


class Decoder:
    """PocketSphinx with its bundled en-us models and default settings."""

    def __init__(self):
        import pocketsphinx

        self.decoder = pocketsphinx.Decoder(loglevel="FATAL")
        self.lm = self.decoder.get_lm()
        config = self.decoder.config
        self.settings = {k: config[k] for k in ("lw", "fwdflatlw", "bestpathlw", "wip",
                                                 "beam", "wbeam", "fwdflat", "bestpath")}
        self.unknown = self.lm.prob(["<unk>"])
        self._prob = {}

    def in_vocabulary(self, word):
        return self.lm.prob([word]) != self.unknown and self.decoder.lookup_word(word) is not None

    def ln_prob(self, word, h2, h1):
        """ln P(word | h2 h1) under the decoder's trigram (h2 None: bigram context)."""
        key = (word, h2, h1)
        if key not in self._prob:
            context = [word, h1] + ([h2] if h2 is not None else [])
            self._prob[key] = self.lm.prob(context) * LN_BASE
        return self._prob[key]

    def lattice(self, samples):
        self.decoder.start_utt()
        self.decoder.process_raw(samples.tobytes(), full_utt=True)
        self.decoder.end_utt()
        hyp = self.decoder.hyp()
        if hyp is None:
            return None, None
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "utt.lat")
            self.decoder.get_lattice().write(path)
            with open(path) as f:
                return read_lattice(f), hyp.hypstr


def read_lattice(f):
    """PocketSphinx's lattice file: {node: word}, initial, final, [(from, to, ascr)]."""
    nodes, links, initial, final, section = {}, [], None, None, None
    for line in f:
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        if fields[0] in ("Nodes", "Edges", "BestSegAscr"):
            section = fields[0]
        elif fields[0] == "Initial":
            initial = int(fields[1])
        elif fields[0] == "Final":
            final = int(fields[1])
        elif fields[0] in ("Frames", "End"):
            section = None
        elif section == "Nodes":
            nodes[int(fields[0])] = (fields[1], int(fields[2]))
        elif section == "Edges":
            links.append((int(fields[0]), int(fields[1]), int(fields[2])))
    return nodes, initial, final, links


def base_word(word):
    return re.sub(r"\(\d+\)$", "", word)


def is_filler(word):
    return word in ("<sil>", "<s>", "</s>") or word.startswith("[") or word.startswith("++")


def nbest(lattice, decoder, n, beam=BEAM, target=None):
    """The n best distinct word strings of a lattice under the decoder's best-path score

        am + bestpathlw·ln P_LM(words </s> | <s>) + (bestpathlw/lw)·ln(wip)·(words + 1)

    (fillers add no word and no LM term), best first, as (words, am, ngram_log10).

    Runs of fillers between two words are first collapsed to their best acoustic path,
    since they change neither the words nor the LM score. The search is then A* over
    (word node, previous word) states, so the trigram is exact; its heuristic, a
    backward Viterbi pass over the same states, is exact too, and a state reached again
    with the same words is dropped, so each string is found once, by its best path.
    Before the search, word nodes that no path within `beam` of the best passes
    through (see `prune`) are dropped: without that, the (node, previous word) states
    of a long utterance's lattice number in the tens of thousands. With `target` (a
    word list), only that string is searched for."""
    nodes, initial, final, links = lattice
    lw = decoder.settings["bestpathlw"]
    wip = lw / decoder.settings["lw"] * math.log(decoder.settings["wip"])
    word = {node: base_word(w) for node, (w, _) in nodes.items()}
    frame = {node: sf for node, (_, sf) in nodes.items()}
    filler = {node: node not in (initial, final) and is_filler(w) for node, w in word.items()}
    word[initial] = "<s>"
    exits = {}
    for src, dst, ascr in links:
        if ascr > -(1 << 27):  # the decoder's sentinel for impossible links
            exits.setdefault(src, []).append((dst, ascr * LN_BASE))

    def word_exits(src):
        """[(word node or final, best am through fillers only)] from word node src."""
        if src not in word_exits_of:
            arrive, pending = {}, []

            def reach(node, am):
                if node not in arrive:
                    heapq.heappush(pending, (frame[node], node))
                    arrive[node] = am
                else:
                    arrive[node] = max(arrive[node], am)

            for dst, am in exits.get(src, ()):
                reach(dst, am)
            # Links go forward in time: a filler is popped after every path into it.
            while pending:
                _, node = heapq.heappop(pending)
                if filler[node]:
                    for dst, am in exits.get(node, ()):
                        reach(dst, arrive[node] + am)
            word_exits_of[src] = sorted((n, am) for n, am in arrive.items() if not filler[n])
        return word_exits_of[src]

    word_exits_of = {}
    kept = prune(initial, final, word, frame, word_exits, decoder, lw, wip, beam)
    end = ("END", None)
    transitions = {}

    def successors(state):
        if state not in transitions:
            node, h2 = state
            h1 = word[node]
            out = []
            for dst, am in word_exits(node):
                if dst not in kept:
                    continue
                w = "</s>" if dst == final else word[dst]
                lm = decoder.ln_prob(w, h2, h1)
                out.append((end if dst == final else (dst, h1), None if dst == final else w,
                            am, lm, am + lw * lm + wip))
            transitions[state] = out
        return transitions[state]

    start = (initial, None)
    order, seen, frontier = [], {start}, [start]
    while frontier:
        state = frontier.pop()
        order.append(state)
        for nxt, *_ in successors(state):
            if nxt not in seen and nxt != end:
                seen.add(nxt)
                frontier.append(nxt)
    order.sort(key=lambda s: frame[s[0]])
    rest = {end: 0.0}
    for state in reversed(order):
        rest[state] = max((total + rest[nxt] for nxt, _, _, _, total in transitions[state]),
                          default=-math.inf)

    found, done, tie = [], set(), 0
    queue = [(-rest[start], tie, start, (), 0.0, 0.0, 0.0)]
    while queue and len(found) < n:
        _, _, state, words, score, am, lm = heapq.heappop(queue)
        if (state, words) in done:
            continue
        done.add((state, words))
        if state == end:
            found.append((list(words), am, lm / math.log(10)))
            continue
        for nxt, w, step_am, step_lm, total in transitions[state]:
            if rest[nxt] == -math.inf:
                continue
            new_words = words + (w,) if w else words
            if target is not None and (new_words != tuple(target[:len(new_words)])
                                       or (nxt == end and len(new_words) != len(target))):
                continue
            tie += 1
            heapq.heappush(queue, (-(score + total + rest[nxt]), tie, nxt, new_words,
                                   score + total, am + step_am, lm + step_lm))
    return found


def prune(initial, final, word, frame, word_exits, decoder, lw, wip, beam):
    """The word nodes (and the final node) on some path whose best-path score, with the
    LM's context cut to one word, is within `beam` of the best such path: a forward
    and a backward Viterbi pass over nodes. The cut context makes this an estimate of
    the trigram score, so the beam is wide (BEAM nats; the 10 best of a list span some 40
    to 80, and on sample lattices any beam from 60 up gave the unpruned lists)."""
    forward, order, pending = {initial: 0.0}, [], [(frame[initial], initial)]
    while pending:
        _, node = heapq.heappop(pending)
        order.append(node)
        if node == final:
            continue
        for dst, am in word_exits(node):
            lm = decoder.ln_prob("</s>" if dst == final else word[dst], None, word[node])
            score = forward[node] + am + lw * lm + wip
            if dst not in forward:
                heapq.heappush(pending, (frame[dst], dst))
                forward[dst] = score
            else:
                forward[dst] = max(forward[dst], score)
    backward = {final: 0.0}
    for node in reversed(order):
        if node == final:
            continue
        best = -math.inf
        for dst, am in word_exits(node):
            lm = decoder.ln_prob("</s>" if dst == final else word[dst], None, word[node])
            best = max(best, am + lw * lm + wip + backward.get(dst, -math.inf))
        backward[node] = best
    top = backward[initial]
    return {node for node in order if forward[node] + backward[node] >= top - beam}


def speak(text, rng, tmp):
    """16 kHz mono samples of flite reading `text`, tempo and noise drawn from `rng`,
    with what was drawn."""
    voice = rng.choice(VOICES)
    tempo = rng.uniform(*TEMPO)
    snr = rng.uniform(*SNR_DB) if rng.random() < 0.5 else None
    noise_seed = rng.getrandbits(64)
    raw, out = os.path.join(tmp, "flite.wav"), os.path.join(tmp, "speech.wav")
    subprocess.run(["flite", "-voice", voice, "-t", text, "-o", raw], check=True)
    subprocess.run(["sox", "-D", raw, "-r", "16000", "-c", "1", "-b", "16", out,
                    "tempo", f"{tempo:.4f}"], check=True)
    with wave.open(out) as w:
        samples = array("h", w.readframes(w.getnframes()))
    if sys.byteorder != "little":
        samples.byteswap()
    if snr is not None:
        power = sum(s * s for s in samples) / max(len(samples), 1)
        sigma = math.sqrt(power) / 10 ** (snr / 20)
        noise = random.Random(noise_seed)
        samples = array("h", (max(-32768, min(32767, round(s + noise.gauss(0, sigma))))
                              for s in samples))
    return samples, {"voice": voice, "tempo": round(tempo, 4),
                     "snr_db": None if snr is None else round(snr, 2)}


def oracle_wer(results, depths):
    """{depth: WER in percent of the best candidate among each list's first `depth`}."""
    words = sum(len(r["reference"]) for r in results)
    out = {}
    for depth in depths:
        errors = sum(min(edit_distance(r["reference"], h[0]) for h in r["hyps"][:depth])
                     for r in results)
        out[str(depth)] = round(100.0 * errors / max(words, 1), 2)
    return out


def decode_one(job):
    """One utterance, start to end; runs in a worker process. Each utterance gets a
    decoder of its own: live CMN carries its estimate from one utterance to the next
    (and setting it back does not undo that), so a shared decoder would decode an
    utterance differently after different predecessors, that is, for another --jobs."""
    uttid, line, depth = job
    decoder = Decoder()
    words = speakable_words(line)
    rng = random.Random(f"{SEED}:{uttid}")
    text = " ".join(t for t in line.split() if t not in ("``", "''"))
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        samples, audio = speak(text, rng, tmp)
    synth = time.perf_counter() - started
    lattice, hyp = decoder.lattice(samples)
    decoded = time.perf_counter()
    hyps = nbest(lattice, decoder, depth) if lattice else []
    exact_first = True
    if hyps:
        # The decoder's own best-path search approximates the trigram context across
        # fillers, so now and then its best is not the exact search's first: it is
        # put first all the same, as the first-pass system's output.
        best = [base_word(w) for w in hyp.split()]
        if hyps[0][0] != best:
            exact_first = False
            own = [h for h in hyps if h[0] == best] or nbest(lattice, decoder, 1, target=best)
            hyps = (own + [h for h in hyps if h[0] != best])[:depth]
    return {
        "uttid": uttid,
        "reference": normalize(words, decoder.in_vocabulary),
        "hyps": hyps,
        "exact_first": exact_first,
        "audio": audio,
        "seconds_audio": len(samples) / 16000,
        "seconds_synth": synth,
        "seconds_decode": decoded - started - synth,
        "seconds_nbest": time.perf_counter() - decoded,
    }


def candidates(split, count):
    """(uttid, line) for a seeded draw of sentences of the right length, in draw order;
    the uttid names the Brown file and line."""
    with open(os.path.join(BROWN, f"{split}.txt"), encoding="utf-8") as f:
        lines = f.read().split("\n")
    eligible = []
    for number, line in enumerate(lines, 1):
        words = speakable_words(line) if line.strip() else None
        if words and MIN_WORDS <= len(words) <= MAX_WORDS:
            eligible.append((f"{split}-{number:05d}", line))
    random.Random(f"{SEED}:{split}").shuffle(eligible)
    return eligible[:count]


def csv_text(header, rows):
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()


def generate(out, jobs, limit, depth):
    os.makedirs(out, exist_ok=True)
    started = time.time()
    meta = {"seed": SEED, "utterances_per_split": limit, "nbest": depth,
            "sentence_words": [MIN_WORDS, MAX_WORDS], "voices": VOICES, "tempo": TEMPO,
            "noise": {"share": 0.5, "snr_db": SNR_DB},
            "versions": versions(), "splits": {}, "sha256": {}}
    with multiprocessing.get_context("spawn").Pool(jobs) as pool:
        for name, split in SPLITS:
            split_started = time.time()
            # A few spares: an utterance the decoder finds no speech in is replaced.
            jobs_of_split = [(uttid, line, depth)
                             for uttid, line in candidates(split, limit + limit // 20 + 2)]
            results = []
            for done, r in enumerate(pool.imap(decode_one, jobs_of_split), 1):
                if r["hyps"] and r["reference"]:
                    results.append(r)
                if done % 25 == 0:
                    print(f"{name}: {done}/{len(jobs_of_split)} decoded, "
                          f"{time.time() - split_started:.0f} s", file=sys.stderr, flush=True)
            results = results[:limit]
            nbest_rows, ref_rows, agree = [], [], 0
            for r in results:
                ref_rows.append([r["uttid"], " ".join(r["reference"])])
                for i, (words, am, lm10) in enumerate(r["hyps"], 1):
                    nbest_rows.append([r["uttid"], i, " ".join(words), f"{am:.4f}", f"{lm10:.4f}"])
                agree += r["exact_first"]
            files = {
                f"real-{name}.nbest.csv": csv_text(
                    ["utterance_id", "candidate_id", "sentence", "am_score", "ngram_log10"], nbest_rows),
                f"real-{name}.refs.csv": csv_text(["utterance_id", "reference"], ref_rows),
            }
            for file, text in files.items():
                with open(os.path.join(out, file), "w", encoding="utf-8") as f:
                    f.write(text)
                meta["sha256"][file] = hashlib.sha256(text.encode()).hexdigest()
            meta["splits"][name] = {
                "source": f"brown/{split}.txt",
                "utterances": len(results),
                "hypotheses": len(nbest_rows),
                "exact_search_first_is_decoder_best": agree,
                "oracle_wer_by_depth": oracle_wer(results, [d for d in ORACLE_DEPTHS if d <= depth]),
                "seconds_audio": round(sum(r["seconds_audio"] for r in results), 1),
                "seconds_synth_cpu": round(sum(r["seconds_synth"] for r in results), 1),
                "seconds_decode_cpu": round(sum(r["seconds_decode"] for r in results), 1),
                "seconds_nbest_cpu": round(sum(r["seconds_nbest"] for r in results), 1),
                "seconds_wall": round(time.time() - split_started, 1),
                "audio": {r["uttid"]: r["audio"] for r in results},
            }
            print(f"{name}: {len(results)} utterances, {len(nbest_rows)} hypotheses, "
                  f"{time.time() - split_started:.0f} s", file=sys.stderr)
    meta["decoder_settings"] = Decoder().settings
    meta["jobs"] = jobs
    meta["seconds_wall"] = round(time.time() - started, 1)
    meta["cpu"] = cpu_model()
    with open(os.path.join(out, "real.meta.json"), "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=1, sort_keys=True)
        f.write("\n")


def versions():
    flite = subprocess.run(["flite", "--version"], capture_output=True, text=True).stdout
    sox = subprocess.run(["sox", "--version"], capture_output=True, text=True).stdout
    return {"pocketsphinx": metadata.version("pocketsphinx"),
            "flite": re.search(r"flite-[\w.-]+", flite).group(0),
            "sox": sox.split()[-1], "python": platform.python_version()}


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def check(directory):
    with open(os.path.join(directory, "real.meta.json"), encoding="utf-8") as f:
        meta = json.load(f)
    bad = []
    for file in FILES:
        with open(os.path.join(directory, file), "rb") as f:
            if hashlib.sha256(f.read()).hexdigest() != meta["sha256"].get(file):
                bad.append(file)
    if bad:
        sys.exit(f"{directory}: {', '.join(bad)} differ from the checksums in real.meta.json")
    print(f"{directory}: {len(FILES)} real N-best files match real.meta.json")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=ASR, help="output directory (default datasets/asr)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="decoders in parallel")
    parser.add_argument("--limit", type=int, default=UTTERANCES, help="utterances per split")
    parser.add_argument("--nbest", type=int, default=NBEST,
                        help=f"hypotheses per utterance (default {NBEST})")
    parser.add_argument("--check", action="store_true", help="verify the shipped files' checksums")
    args = parser.parse_args()
    if args.check:
        check(args.out)
    else:
        if args.jobs < 1 or args.limit < 1 or args.nbest < 1:
            parser.error("--jobs, --limit and --nbest must be at least 1")
        generate(args.out, args.jobs, args.limit, args.nbest)


if __name__ == "__main__":
    main()
