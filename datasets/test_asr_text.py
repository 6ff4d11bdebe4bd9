"""Brown valid split into the dev lists' sentences and training text, on small files."""
import os
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import asr_text  # noqa: E402


def write(path, text):
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


class SplitValid(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        root = self.dir.name
        self.brown = os.path.join(root, "brown")
        self.asr = os.path.join(root, "asr")
        os.makedirs(self.brown)
        os.makedirs(self.asr)
        write(os.path.join(self.brown, "valid.txt"),
              "A first line .\nThe dev sentence .\n\nA middle line .\n"
              "The dev sentence .\nSaid in the test .\nThe last line .\n")
        write(os.path.join(self.brown, "test.txt"), "Not spoken .\nSaid in the test .\n")
        write(os.path.join(self.asr, "real-dev.refs.csv"),
              "utterance_id,reference\nvalid-00007,the last line\nvalid-00002,the dev sentence\n")
        write(os.path.join(self.asr, "real-test.refs.csv"),
              "utterance_id,reference\ntest-00002,said in the test\n")

    def tearDown(self):
        self.dir.cleanup()

    def build(self):
        return asr_text.build(self.brown, self.asr)

    def test_dev_holds_the_listed_lines_in_file_order(self):
        self.assertEqual(self.build()[asr_text.DEV_FILE], "The dev sentence .\nThe last line .\n")

    def test_train_drops_listed_lines_their_copies_test_sentences_and_empty_lines(self):
        self.assertEqual(self.build()[asr_text.TRAIN_FILE], "A first line .\nA middle line .\n")

    def test_check_names_a_changed_or_missing_file(self):
        files = self.build()
        for name, text in files.items():
            write(os.path.join(self.asr, name), text)
        self.assertEqual(asr_text.check(files, self.asr), [])
        write(os.path.join(self.asr, asr_text.TRAIN_FILE), "A first line .\n")
        os.remove(os.path.join(self.asr, asr_text.DEV_FILE))
        self.assertEqual(sorted(asr_text.check(files, self.asr)),
                         [asr_text.DEV_FILE, asr_text.TRAIN_FILE])

    def test_a_list_line_past_the_end_is_an_error(self):
        write(os.path.join(self.asr, "real-dev.refs.csv"),
              "utterance_id,reference\nvalid-00099,gone\n")
        with self.assertRaisesRegex(ValueError, "line 99 is past the end"):
            self.build()

    def test_a_test_list_line_past_the_end_is_an_error(self):
        # Line 3 would be the empty string after the final newline: not a line.
        write(os.path.join(self.asr, "real-test.refs.csv"),
              "utterance_id,reference\ntest-00003,gone\n")
        with self.assertRaisesRegex(ValueError, "test list line 3 is past the end of Brown test"):
            self.build()

    def test_an_utterance_of_another_split_is_an_error(self):
        write(os.path.join(self.asr, "real-dev.refs.csv"),
              "utterance_id,reference\ntest-00001,not spoken\n")
        with self.assertRaisesRegex(ValueError, "is not valid-NNNNN"):
            self.build()


class Shipped(unittest.TestCase):
    def test_the_shipped_files_are_what_brown_valid_and_the_real_lists_give(self):
        self.assertEqual(asr_text.check(asr_text.build()), [])


if __name__ == "__main__":
    unittest.main()
