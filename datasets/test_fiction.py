"""The Gutenberg books' sentence splitting and tokenization, on examples."""
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fiction  # noqa: E402


class SplitSentences(unittest.TestCase):
    def split(self, text):
        return list(fiction.split_sentences(text))

    def test_ends_at_a_stop_before_a_capital(self):
        self.assertEqual(
            self.split("She smiled. He left! Why? Nobody knew."),
            ["She smiled.", "He left!", "Why?", "Nobody knew."],
        )

    def test_keeps_abbreviations_and_initials_inside(self):
        self.assertEqual(
            self.split("Mr. Knightley met Dr. Hood and G. K. Chesterton. Then rain."),
            ["Mr. Knightley met Dr. Hood and G. K. Chesterton.", "Then rain."],
        )

    def test_a_stop_before_a_small_letter_ends_nothing(self):
        self.assertEqual(self.split('"Oh!" said she. Later.'), ['"Oh!" said she.', "Later."])

    def test_closing_quotes_stay_with_their_sentence(self):
        self.assertEqual(
            self.split('"Go home." "I will! " Then he went.'),
            ['"Go home."', '"I will! "', "Then he went."],
        )


class Tokenize(unittest.TestCase):
    def test_punctuation_is_split_off_and_words_keep_apostrophes_and_hyphens(self):
        self.assertEqual(
            fiction.tokenize('"Don\'t," said the well-known man--Mr. Smith\'s friend.'),
            ['"', "Don't", ",", '"', "said", "the", "well-known", "man", "--", "Mr.",
             "Smith's", "friend", "."],
        )

    def test_italic_markup_is_dropped(self):
        self.assertEqual(fiction.tokenize("a _very_ *good* day"), ["a", "very", "good", "day"])


class Books(unittest.TestCase):
    def test_headings_are_skipped_and_latin1_is_read(self):
        raw = "[Emma by Jane Austen 1816]\n\nCHAPTER I\n\nEmma was caf\xe9-bound.\nShe sat.\n".encode(
            "latin-1"
        )
        self.assertEqual(
            list(fiction.sentences_of_book(raw)),
            ["Emma was caf\xe9-bound .", "She sat ."],
        )


if __name__ == "__main__":
    unittest.main()
