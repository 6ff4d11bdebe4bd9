"""The Dask driver against one `rnnlm score` process: same output, and failures that
fail the job whole. Run by `make test` (about half a minute)."""
import csv
import io
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import score_dask  # noqa: E402

BIN = score_dask.DEFAULT_BIN
WORDS = "the apple and pear salad is ripe a pair of shoes we ate red green".split()


def nbest_rows(groups, candidates):
    """`groups` utterances of `candidates` candidates each, with an am_score column."""
    rows = []
    for g in range(groups):
        for c in range(candidates):
            words = [WORDS[(g * 7 + c * 3 + k * 5) % len(WORDS)] for k in range(3 + (g + c) % 6)]
            rows.append([f"utt{g:04d}", str(c + 1), " ".join(words), f"{-10.0 - 0.37 * c - 0.01 * g:.2f}"])
    return rows


def write_csv(path, rows):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["utterance_id", "candidate_id", "sentence", "am_score"])
        writer.writerows(rows)


class DaskScoring(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        from dask.distributed import Client, LocalCluster

        cls.dir = tempfile.TemporaryDirectory()
        root = cls.dir.name
        data = os.path.join(root, "data")
        os.makedirs(data)
        sentences = [" ".join(WORDS[i % 5:i % 5 + 6]) for i in range(40)]
        for name in ("train.txt", "valid.txt"):
            with open(os.path.join(data, name), "w") as f:
                f.write("\n".join(sentences) + "\n")
        cls.model = os.path.join(root, "model")
        subprocess.run([BIN, "train", "--data", data, "--out", cls.model, "--min-count", "2", "--cell", "gru",
                        "--embed", "8", "--hidden", "8", "--epochs", "2", "--device", "cpu"],
                       check=True, capture_output=True)
        cls.input = os.path.join(root, "nbest.csv")
        write_csv(cls.input, nbest_rows(400, 5))  # 2,000 rows
        cls.flags = ["--am-column", "am_score", "--lm-weight", "0.5"]
        single = subprocess.run([BIN, "score", "--model", cls.model, "--input", cls.input, "--device", "cpu",
                                 "--threads", "1", *cls.flags], check=True, capture_output=True)
        cls.expected = single.stdout
        cls.cluster = LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1",
                                   dashboard_address=None, processes=True)
        cls.client = Client(cls.cluster)

    @classmethod
    def tearDownClass(cls):
        cls.client.close()
        cls.cluster.close()
        cls.dir.cleanup()

    def drive(self, output, *extra, flags=None, partition_rows=300, input_path=None):
        argv = ["--input", input_path or self.input, "--output", output, "--model", self.model,
                "--scheduler", self.cluster.scheduler_address, "--threads", "1",
                "--partition-rows", str(partition_rows), *extra, "--", *(flags if flags is not None else self.flags)]
        return score_dask.run(score_dask.parse_args(argv), self.client)

    def leftovers(self):
        return [n for n in os.listdir(self.dir.name) if n.startswith(".")]

    def test_two_workers_write_what_one_process_writes(self):
        output = os.path.join(self.dir.name, "out.csv")
        rows, _ = self.drive(output)
        self.assertEqual(rows, 2000)
        with open(output, "rb") as f:
            self.assertEqual(f.read(), self.expected)

    def test_in_process_workers_write_what_one_process_writes(self):
        output = os.path.join(self.dir.name, "in-process.csv")
        rows, _ = self.drive(output, "--in-process")
        self.assertEqual(rows, 2000)
        with open(output, "rb") as f:
            self.assertEqual(f.read(), self.expected)

    def test_in_process_a_bad_row_fails_with_its_line_and_a_foreign_flag_is_refused(self):
        rows = nbest_rows(400, 5)
        rows[1499][3] = "oops"
        bad = os.path.join(self.dir.name, "bad-in-process.csv")
        write_csv(bad, rows)
        output = os.path.join(self.dir.name, "bad-in-process-out.csv")
        with self.assertRaises(score_dask.JobFailed) as failure:
            self.drive(output, "--in-process", input_path=bad)
        self.assertIn(f"{bad}: line 1501 (row 1500): am score 'oops' is not a finite number", str(failure.exception))
        self.assertFalse(os.path.exists(output))
        with self.assertRaises(score_dask.JobFailed) as failure:
            self.drive(output, "--in-process", flags=[*self.flags, "--chunk-rows", "5"])
        self.assertIn("--chunk-rows is not supported with --in-process", str(failure.exception))
        self.assertEqual(self.leftovers(), [])

    def test_partitions_never_split_a_group(self):
        header, parts = score_dask.csv_partitions(self.input, [], 7)
        seen = set()
        total = 0
        for part in parts:
            keys = [r[0] for r in csv.reader(io.StringIO(part.text))]
            self.assertTrue(seen.isdisjoint(keys), "a group in two partitions")
            seen.update(keys)
            self.assertEqual(part.first_row, total + 1)
            total += part.rows
        self.assertEqual(total, 2000)
        self.assertEqual(header[0], "utterance_id")

    def test_parquet_in_and_out(self):
        import pyarrow.csv as pacsv
        import pyarrow.parquet as pq

        source = os.path.join(self.dir.name, "nbest.parquet")
        pq.write_table(pacsv.read_csv(self.input), source, row_group_size=128)
        output = os.path.join(self.dir.name, "out.parquet")
        self.drive(output, input_path=source)
        got = pq.read_table(output).to_pylist()
        want = list(csv.DictReader(io.StringIO(self.expected.decode())))
        self.assertEqual(len(got), len(want))
        for g, w in zip(got, want):
            self.assertEqual(g["utterance_id"], w["utterance_id"])
            self.assertEqual(g["sentence"], w["sentence"])
            self.assertEqual(g["rank"], int(w["rank"]))
            self.assertEqual(g["best"], w["best"] == "true")
            self.assertAlmostEqual(g["logprob"], float(w["logprob"]), delta=1e-4)

    def test_a_bad_row_fails_the_job_with_its_line(self):
        rows = nbest_rows(400, 5)
        rows[1499] = rows[1499][:2]  # row 1500, line 1501: two fields where four belong
        bad = os.path.join(self.dir.name, "bad.csv")
        write_csv(bad, rows)
        output = os.path.join(self.dir.name, "bad-out.csv")
        with self.assertRaises(score_dask.JobFailed) as failure:
            self.drive(output, input_path=bad)
        message = str(failure.exception)
        self.assertIn(f"{bad}: line 1501 (row 1500): 2 fields where the header has 4", message)
        self.assertFalse(os.path.exists(output))
        self.assertEqual(self.leftovers(), [])

        skipped = os.path.join(self.dir.name, "skipped.csv")
        self.drive(skipped, input_path=bad, flags=[*self.flags, "--skip-bad"])
        with open(skipped) as f:
            self.assertEqual(sum(1 for _ in csv.reader(f)), 1 + 1999)

    def test_a_killed_worker_is_retried_and_the_output_is_complete(self):
        output = os.path.join(self.dir.name, "killed.csv")
        pids = self.client.run(os.getpid)
        address, victim = min(pids.items(), key=lambda item: item[1])
        result = {}

        def job():
            try:
                result["rows"] = self.drive(output, partition_rows=60)[0]
            except BaseException as e:  # reported below
                result["error"] = e

        thread = threading.Thread(target=job)
        thread.start()
        # Killed once it is at work on a partition, not after a guessed delay.
        deadline = time.monotonic() + 120
        while not self.client.processing().get(address) and time.monotonic() < deadline:
            time.sleep(0.01)
        self.assertTrue(self.client.processing().get(address), "the worker got a partition")
        self.assertTrue(thread.is_alive(), "the job was still running when the worker was killed")
        os.kill(victim, signal.SIGKILL)
        thread.join(timeout=120)
        self.assertNotIn("error", result, result.get("error"))
        self.assertEqual(result["rows"], 2000)
        with open(output, "rb") as f:
            self.assertEqual(f.read(), self.expected)
        self.assertNotIn(victim, self.client.run(os.getpid).values())


if __name__ == "__main__":
    unittest.main()
