#!/usr/bin/env python3
"""The PyTorch reference that rnnlm is measured against and checked by.

The same model as rnnlm's (x<1> = 0, a<0> = 0, embedding -> nn.RNN/GRU/LSTM ->
linear -> log-softmax, or the same class-based output layer: a head of frequent
words and clusters of the rest; PyTorch's parameter names), the same sentence
batching (similar lengths together, loss only at real positions) and the same
vocabulary rule, written the plain PyTorch way.

    reference.py train-speed --data DIR --cell lstm [--cutoffs K,C1]  tokens/s (one epoch)
    reference.py score-speed --data FILE --model DIR                 sentences/s
    reference.py sample-speed --model DIR --count 100 --max-len 50   tokens/s
    reference.py logprobs --model DIR --data FILE                    one log-prob per line
    reference.py train --data DIR --epochs N ...                     valid perplexity

Every command prints one JSON object on stdout.
"""
import argparse
import json
import math
import os
import random
import sys
import time
from collections import Counter

import safetensors.torch
import torch
import torch.nn as nn
import torch.nn.functional as F

EOS, UNK = "<EOS>", "<UNK>"


def read_lines(path):
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\r\n") for line in f if line.strip()]


def tokenize(line, level):
    return list(line) if level == "char" else line.split()


def build_vocab(lines, level, min_count):
    counts = Counter(t for line in lines for t in tokenize(line, level))
    kept = sorted((t for t, c in counts.items() if c >= min_count), key=lambda t: (-counts[t], t))
    return [EOS, UNK] + kept


def encode(lines, vocab, level):
    index = {t: i for i, t in enumerate(vocab)}
    return [[index.get(t, 1) for t in tokenize(line, level)] + [0] for line in lines]


class ClassDecoder(nn.Module):
    """Head and clusters over a vocabulary in falling frequency, cutoffs [K, c1, ...]:

    P(w | h) = head(h)[w]                      for w < K
    P(w | h) = head(h)[K + i] * cluster_i(h)[w] for w in cluster i = [bounds[i], bounds[i+1])

    where head is a softmax over the K head words and one entry per cluster.
    """

    def __init__(self, hidden, vocab_size, cutoffs):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(vocab_size, hidden).uniform_(-0.1, 0.1))
        self.bias = nn.Parameter(torch.zeros(vocab_size))
        self.cluster_weight = nn.Parameter(torch.empty(len(cutoffs), hidden).uniform_(-0.1, 0.1))
        self.cluster_bias = nn.Parameter(torch.zeros(len(cutoffs)))
        self.bounds = list(cutoffs) + [vocab_size]

    def head(self, h):
        k = self.bounds[0]
        weight = torch.cat([self.weight[:k], self.cluster_weight])
        bias = torch.cat([self.bias[:k], self.cluster_bias])
        return F.log_softmax(F.linear(h, weight, bias), dim=-1)

    def cluster(self, h, i):
        start, end = self.bounds[i], self.bounds[i + 1]
        return F.log_softmax(F.linear(h, self.weight[start:end], self.bias[start:end]), dim=-1)

    def target_log_probs(self, h, targets):
        k = self.bounds[0]
        cluster = sum((targets >= start).long() for start in self.bounds[:-1])
        head_index = torch.where(cluster == 0, targets, k - 1 + cluster)
        out = self.head(h).gather(1, head_index.unsqueeze(1)).squeeze(1)
        for i in range(len(self.bounds) - 1):
            rows = (cluster == i + 1).nonzero().squeeze(1)
            if rows.numel() == 0:
                continue
            local = (targets[rows] - self.bounds[i]).unsqueeze(1)
            out = out.index_add(0, rows, self.cluster(h[rows], i).gather(1, local).squeeze(1))
        return out

    def log_probs(self, h):
        k = self.bounds[0]
        head = self.head(h)
        parts = [head[:, :k]] + [head[:, k + i:k + i + 1] + self.cluster(h, i) for i in range(len(self.bounds) - 1)]
        return torch.cat(parts, dim=1)


class RnnLm(nn.Module):
    def __init__(self, cell, vocab_size, embed, hidden, layers, dropout, tie, cutoffs=None):
        super().__init__()
        self.encoder = nn.Embedding(vocab_size, embed)
        rnn_class = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}[cell]
        kwargs = {"nonlinearity": "tanh"} if cell == "rnn" else {}
        self.rnn = rnn_class(embed, hidden, layers, dropout=dropout if layers > 1 else 0.0, batch_first=True, **kwargs)
        self.decoder = ClassDecoder(hidden, vocab_size, cutoffs) if cutoffs else nn.Linear(hidden, vocab_size)
        self.drop = nn.Dropout(dropout)
        nn.init.uniform_(self.encoder.weight, -0.1, 0.1)
        nn.init.zeros_(self.decoder.bias)
        if tie:
            self.decoder.weight = self.encoder.weight
        else:
            nn.init.uniform_(self.decoder.weight, -0.1, 0.1)
        self.cell, self.layers, self.hidden = cell, layers, hidden

    def log_probs(self, h):
        if isinstance(self.decoder, ClassDecoder):
            return self.decoder.log_probs(h)
        return F.log_softmax(self.decoder(h), dim=-1)

    def target_log_probs(self, h, targets):
        if isinstance(self.decoder, ClassDecoder):
            return self.decoder.target_log_probs(h, targets)
        return F.log_softmax(self.decoder(h), dim=-1).gather(1, targets.unsqueeze(1)).squeeze(1)

    def forward(self, inputs, state=None):
        # inputs: [batch, time], -1 = the zero vector (x<1>).
        x = self.encoder(inputs.clamp_min(0)) * (inputs >= 0).unsqueeze(-1)
        out, state = self.rnn(self.drop(x), state)
        return self.drop(out), state


def make_batch(sentences, device):
    time_len = max(len(s) for s in sentences)
    inputs = torch.zeros(len(sentences), time_len, dtype=torch.long)
    targets, positions = [], []
    for row, s in enumerate(sentences):
        inputs[row, 0] = -1
        inputs[row, 1:len(s)] = torch.tensor(s[:-1])
        targets.extend(s)
        positions.extend(range(row * time_len, row * time_len + len(s)))
    return inputs.to(device), torch.tensor(targets, device=device), torch.tensor(positions, device=device)


def length_batches(sentences, batch_size, rng):
    order = list(range(len(sentences)))
    if rng is not None:
        rng.shuffle(order)
    order.sort(key=lambda i: len(sentences[i]))
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    if rng is not None:
        rng.shuffle(batches)
    return batches


def token_log_probs(model, batch):
    inputs, targets, positions = batch
    hidden, _ = model(inputs)
    flat = hidden.reshape(-1, hidden.size(-1)).index_select(0, positions)
    return model.target_log_probs(flat, targets)


def sentence_log_probs(model, sentences, batch_size, device):
    model.eval()
    result = [0.0] * len(sentences)
    with torch.no_grad():
        for rows in length_batches(sentences, batch_size, None):
            batch = make_batch([sentences[r] for r in rows], device)
            lps = token_log_probs(model, batch).double().cpu().tolist()
            offset = 0
            for r in rows:
                n = len(sentences[r])
                result[r] = sum(lps[offset:offset + n])
                offset += n
    return result


def load_model(model_dir, device):
    with open(os.path.join(model_dir, "config.json")) as f:
        config = json.load(f)
    m = config["model"]
    output = m.get("output", {"kind": "full"})
    cutoffs = output["cutoffs"] if output["kind"] == "class" else None
    model = RnnLm(m["cell"], m["vocab_size"], m["embed"], m["hidden"], m["layers"], m["dropout"], m["tie"], cutoffs)
    state = safetensors.torch.load_file(os.path.join(model_dir, "weights.safetensors"))
    if m["tie"]:
        state["decoder.weight"] = state["encoder.weight"]
    model.load_state_dict(state)
    with open(os.path.join(model_dir, "vocab.txt"), encoding="utf-8") as f:
        vocab = f.read().split("\n")[:-1]
    return model.to(device).eval(), vocab, config["tokenizer"]["level"]


def model_from_args(args, vocab_size):
    cutoffs = [int(c) for c in args.cutoffs.split(",")] if args.cutoffs else None
    return RnnLm(args.cell, vocab_size, args.embed, args.hidden, args.layers, args.dropout, args.tie, cutoffs)


def train_epoch(model, optimizer, sentences, args, rng, device, seconds=None):
    model.train()
    start, tokens, loss_sum = time.perf_counter(), 0, 0.0
    for rows in length_batches(sentences, args.batch_size, rng):
        if seconds is not None and time.perf_counter() - start >= seconds:
            break
        batch = make_batch([sentences[r] for r in rows], device)
        loss = -token_log_probs(model, batch).sum()
        n = batch[1].numel()
        optimizer.zero_grad()
        (loss / n).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        optimizer.step()
        loss_sum += loss.item()
        tokens += n
    return tokens, time.perf_counter() - start, loss_sum


def cmd_train_speed(args):
    torch.manual_seed(args.seed)
    lines = read_lines(os.path.join(args.data, "train.txt"))
    vocab = build_vocab(lines, "word", args.min_count)
    sentences = encode(lines, vocab, "word")
    model = model_from_args(args, len(vocab))
    # --fused: PyTorch's best-effort Adam (one kernel over all parameters), the update
    # rnnlm makes; the default is what a Python user gets without asking.
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr, fused=args.fused)
    # One short warm-up so that one-time allocations are not timed.
    train_epoch(model, optimizer, sentences[:200], args, random.Random(args.seed), "cpu")
    tokens, seconds, _ = train_epoch(model, optimizer, sentences, args, random.Random(args.seed), "cpu", args.seconds)
    return {"tokens": tokens, "seconds": seconds, "tokens_per_s": tokens / seconds}


def cmd_score_speed(args):
    model, vocab, level = load_model(args.model, "cpu")
    sentences = encode(read_lines(args.data)[: args.limit], vocab, level)
    start = time.perf_counter()
    sentence_log_probs(model, sentences, args.batch_size, "cpu")
    seconds = time.perf_counter() - start
    return {"sentences": len(sentences), "seconds": seconds, "sentences_per_s": len(sentences) / seconds}


def cmd_sample_speed(args):
    model, vocab, _ = load_model(args.model, "cpu")
    torch.manual_seed(args.seed)
    start = time.perf_counter()
    tokens = 0
    with torch.no_grad():
        inputs = torch.full((args.count, 1), -1, dtype=torch.long)
        state, running = None, torch.ones(args.count, dtype=torch.bool)
        for _ in range(args.max_len):
            hidden, state = model(inputs, state)
            probs = model.log_probs(hidden[:, -1]).exp()
            probs[:, 1] = 0.0
            drawn = torch.multinomial(probs, 1)
            tokens += int(running.sum())
            running &= drawn.squeeze(1) != 0
            if not running.any():
                break
            inputs = drawn
    seconds = time.perf_counter() - start
    return {"tokens": tokens, "seconds": seconds, "tokens_per_s": tokens / seconds}


def cmd_logprobs(args):
    model, vocab, level = load_model(args.model, "cpu")
    sentences = encode(read_lines(args.data), vocab, level)
    return {"logprobs": sentence_log_probs(model, sentences, args.batch_size, "cpu")}


def cmd_train(args):
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    train_lines = read_lines(os.path.join(args.data, "train.txt"))
    vocab = build_vocab(train_lines, args.level, args.min_count)
    train = encode(train_lines, vocab, args.level)
    valid = encode(read_lines(os.path.join(args.data, "valid.txt")), vocab, args.level)
    model = model_from_args(args, len(vocab))
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    best, lr = float("inf"), args.lr
    for _ in range(args.epochs):
        train_epoch(model, optimizer, train, args, rng, "cpu")
        nats = -sum(sentence_log_probs(model, valid, 64, "cpu")) / sum(map(len, valid))
        if nats < best:
            best = nats
        else:
            lr *= 0.5
            for group in optimizer.param_groups:
                group["lr"] = lr
    return {"best_valid_ppl": math.exp(best), "best_valid_nats": best}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ["train-speed", "train"]:
        p = sub.add_parser(name)
        p.add_argument("--data", required=True)
        p.add_argument("--cell", default="lstm")
        p.add_argument("--embed", type=int, default=256)
        p.add_argument("--hidden", type=int, default=256)
        p.add_argument("--layers", type=int, default=2)
        p.add_argument("--dropout", type=float, default=0.3)
        p.add_argument("--tie", action="store_true")
        p.add_argument("--batch-size", type=int, default=32)
        p.add_argument("--lr", type=float, default=0.002)
        p.add_argument("--clip", type=float, default=1.0)
        p.add_argument("--seed", type=int, default=1)
        p.add_argument("--seconds", type=float, default=None, help="stop the timed epoch early")
        p.add_argument("--epochs", type=int, default=1)
        p.add_argument("--level", default="word")
        p.add_argument("--min-count", type=int, default=4)
        p.add_argument("--cutoffs", default=None, help="class output layer: K,c1,... (as rnnlm's)")
        p.add_argument("--fused", action="store_true", help="Adam(fused=True)")
    for name in ["score-speed", "logprobs", "sample-speed"]:
        p = sub.add_parser(name)
        p.add_argument("--model", required=True)
        p.add_argument("--data")
        p.add_argument("--batch-size", type=int, default=64)
        p.add_argument("--limit", type=int, default=None)
        p.add_argument("--count", type=int, default=100)
        p.add_argument("--max-len", type=int, default=50)
        p.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    command = {
        "train-speed": cmd_train_speed,
        "score-speed": cmd_score_speed,
        "sample-speed": cmd_sample_speed,
        "logprobs": cmd_logprobs,
        "train": cmd_train,
    }[args.command]
    json.dump(command(args), sys.stdout)
    print()


if __name__ == "__main__":
    main()
