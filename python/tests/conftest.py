"""Tiny models trained with the command line, shared by all the tests of one pytest run."""
import os
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.join(ROOT, "target", "release", "rnnlm")

SENTENCES = [
    "the apple and pear salad",
    "the pear is ripe",
    "a pair of shoes",
    "we ate the salad",
    "a pear and an apple",
    "the cat sat on the mat",
    "we ate a ripe pear",
]


def rnnlm_cli(*args, input=None):
    """Runs the binary; returns its standard output, failing the test on an error."""
    if not os.path.exists(BIN):
        pytest.fail(f"{BIN} missing: run make build")
    result = subprocess.run([BIN, *args], input=input, capture_output=True)
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout.decode()


def train(out, data, *flags):
    rnnlm_cli("train", "--data", data, "--out", out, "--min-count", "2", "--embed", "12",
              "--hidden", "12", "--epochs", "3", "--patience", "0", "--device", "cpu",
              "--seed", "3", *flags)
    return out


@pytest.fixture(scope="session")
def models(tmp_path_factory):
    """(forward LSTM, backward GRU) directories, trained on SENTENCES with <UNK>s."""
    root = tmp_path_factory.mktemp("models")
    data = root / "data"
    data.mkdir()
    # Words seen once ("mat", "cat", "shoes", ...) fall under --min-count 2, so <UNK> is trained.
    (data / "train.txt").write_text("\n".join(SENTENCES * 6 + ["the dog sat", "a blue mat"]) + "\n")
    (data / "valid.txt").write_text("\n".join(SENTENCES) + "\n")
    forward = train(str(root / "forward"), str(data), "--cell", "lstm", "--layers", "2")
    backward = train(str(root / "backward"), str(data), "--cell", "gru", "--layers", "1", "--reverse")
    return forward, backward


@pytest.fixture(scope="session")
def lm(models):
    import rnnlm

    return rnnlm.Model(models[0], backward=models[1])
