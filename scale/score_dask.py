#!/usr/bin/env python3
"""Score an N-best list on a Dask cluster: `rnnlm score` runs in the workers, one
process per partition, and the driver writes one output in input order.

    python scale/score_dask.py --input nbest.csv --output scored.csv --model models/word \\
        [--workers 2] [--threads 1] [--scheduler tcp://host:8786] [-- <rnnlm score flags>]

The input is cut into partitions of about --partition-rows rows, never inside a
group of candidates (the --group-column, utterance_id by default), so every group is
ranked whole. Each partition goes to a worker as headerless CSV text and comes back
as `rnnlm score --no-header` output, so the result equals what one `rnnlm score`
writes for the same input and flags. A CSV input gives a CSV output byte for byte;
Parquet (by the .parquet suffix) is read and written in row groups.

With --in-process, each worker scores with the Python API instead (`import rnnlm`, one
cached model per worker process, `make python`): the same output, without starting
a process and loading the model per partition. The `rnnlm score` flags it takes are
listed in IN_PROCESS_FLAGS.

Without --scheduler, a LocalCluster of --workers processes starts on 127.0.0.1.
A worker that dies has its tasks retried by Dask; a partition that `rnnlm` refuses
(a bad row) fails the whole job with that row's error, its line numbers those of the
input file. The output is written under a temporary name and renamed at the end, so a
failed job leaves no partial file.
"""
import argparse
import csv
import io
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_BIN = os.path.join(ROOT, "target", "release", "rnnlm")


class JobFailed(Exception):
    """A partition that rnnlm refused, with its message in the input's terms."""


def score_partition(binary, model, flags, columns, text, threads, device):
    """Runs in a worker: `rnnlm score` over one partition's headerless CSV text."""
    command = [binary, "score", "--model", model, "--no-header", "--columns", ",".join(columns),
               "--device", device, *flags]
    if threads:
        command += ["--threads", str(threads)]
    result = subprocess.run(command, input=text.encode("utf-8", "surrogateescape"), capture_output=True)
    return result.returncode, result.stdout, result.stderr.decode("utf-8", "replace")


# `rnnlm score` flags and the rnnlm.Model / Model.rescore_file arguments they become.
IN_PROCESS_FLAGS = {
    "--text-column": ("file", "text_column", str), "--group-column": ("file", "group_column", str),
    "--am-column": ("file", "am_column", str), "--ngram-column": ("file", "ngram_column", str),
    "--ngram-log-base": ("file", "ngram_base", str), "--lm-weight": ("file", "lm_weight", float),
    "--length-penalty": ("file", "length_penalty", float), "--ngram-weight": ("file", "ngram_weight", float),
    "--backward-weight": ("file", "backward_weight", float), "--digits": ("file", "digits", int),
    "--skip-bad": ("file", "skip_bad", None), "--backward-model": ("model", "backward", os.path.abspath),
    "--oov": ("model", "oov", str), "--oov-penalty": ("model", "oov_penalty", float),
    "--batch-size": ("model", "batch_size", int),
}


def in_process_settings(flags):
    """The `rnnlm score` flags as (Model settings, rescore_file settings)."""
    model, file = {}, {}
    i = 0
    while i < len(flags):
        name, _, value = flags[i].partition("=")
        if name not in IN_PROCESS_FLAGS:
            raise JobFailed(f"{name} is not supported with --in-process; leave it out or drop --in-process")
        where, key, kind = IN_PROCESS_FLAGS[name]
        if kind is None:
            parsed = True
        else:
            if not value:
                i += 1
                if i == len(flags):
                    raise JobFailed(f"{name} needs a value")
                value = flags[i]
            try:
                parsed = kind(value)
            except ValueError:
                raise JobFailed(f"{name} {value!r} is not a valid value") from None
        (model if where == "model" else file)[key] = parsed
        i += 1
    return model, file


def score_partition_in_process(model, settings, columns, text, threads, device):
    """Runs in a worker: Model.rescore_file over one partition, with the worker's cached
    model; returns what score_partition returns."""
    import rnnlm
    import torch

    if threads:
        torch.set_num_threads(threads)
    model_settings, file_settings = settings
    try:
        lm = rnnlm.cached_model(model, device=device, **model_settings)
    except (OSError, ValueError, RuntimeError) as e:
        return 1, b"", f"error: {e}"
    with tempfile.TemporaryDirectory(prefix="rnnlm-dask-") as work:
        source, target = os.path.join(work, "partition.csv"), os.path.join(work, "scored.csv")
        with open(source, "wb") as f:
            f.write(text.encode("utf-8", "surrogateescape"))
        try:
            lm.rescore_file(source, target, columns=columns, **file_settings)
        except (OSError, ValueError, RuntimeError) as e:
            return 1, b"", "error: " + str(e).replace(source, "<stdin>")
        with open(target, "rb") as f:
            return 0, f.read(), ""


def group_index(header, flags):
    """The column whose equal values make one group, as `rnnlm score` picks it."""
    name = None
    for i, flag in enumerate(flags):
        if flag == "--group-column" and i + 1 < len(flags):
            name = flags[i + 1]
        elif flag.startswith("--group-column="):
            name = flag.split("=", 1)[1]
    if name is None:
        name = "utterance_id" if "utterance_id" in header else None
    if name is None:
        return None
    if name not in header:
        sys.exit(f"score-dask: no column '{name}' in the input (columns: {', '.join(header)})")
    return header.index(name)


class Partition:
    """Rows of the input: headerless CSV text, its first row and input line, and how many."""

    def __init__(self, index, first_row, first_line, text, rows):
        self.index, self.first_row, self.first_line = index, first_row, first_line
        self.text, self.rows = text, rows


def csv_partitions(path, flags, partition_rows):
    """The header and the partitions of a CSV file, cut only between groups."""
    handle = open(path, newline="", encoding="utf-8", errors="surrogateescape")
    reader = csv.reader(handle)
    try:
        header = next(reader)
    except StopIteration:
        sys.exit(f"score-dask: {path} is empty: no header row")
    group = group_index(header, flags)

    def generate():
        buffer, writer = io.StringIO(), None
        rows, first_row, first_line, index, last_key = 0, 1, 2, 0, None
        with handle:
            line_before = reader.line_num
            for record in reader:
                if not record:  # a blank line, which rnnlm skips too
                    line_before = reader.line_num
                    continue
                key = record[group] if group is not None and group < len(record) else None
                if rows >= partition_rows and (group is None or key != last_key):
                    yield Partition(index, first_row, first_line, buffer.getvalue(), rows)
                    index, first_row = index + 1, first_row + rows
                    buffer, rows = io.StringIO(), 0
                if rows == 0:
                    writer = csv.writer(buffer, lineterminator="\n")
                    first_line = line_before + 1
                writer.writerow(record)
                rows += 1
                last_key = key
                line_before = reader.line_num
        if rows:
            yield Partition(index, first_row, first_line, buffer.getvalue(), rows)

    return header, generate()


def parquet_partitions(path, flags, partition_rows):
    """The column names and the partitions of a Parquet file, cut only between groups."""
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    source = pq.ParquetFile(path)
    header = source.schema_arrow.names
    group = group_index(header, flags)

    def to_text(table):
        sink = io.BytesIO()
        pacsv.write_csv(table, sink, pacsv.WriteOptions(include_header=False))
        return sink.getvalue().decode("utf-8")

    def generate():
        import pyarrow as pa

        pending, rows, first_row, index = [], 0, 1, 0
        for batch in source.iter_batches(batch_size=max(1024, partition_rows)):
            table = pa.Table.from_batches([batch])
            pending.append(table)
            rows += table.num_rows
            if rows < partition_rows:
                continue
            whole = pa.concat_tables(pending)
            cut = whole.num_rows
            if group is not None:
                keys = whole.column(group).to_pylist()
                # Keep the last group back: its next rows may be in the next batch.
                while cut > 0 and keys[cut - 1] == keys[-1]:
                    cut -= 1
            if cut == 0:
                continue
            yield Partition(index, first_row, first_row + 1, to_text(whole.slice(0, cut)), cut)
            index, first_row = index + 1, first_row + cut
            rest = whole.slice(cut)
            pending, rows = [rest], rest.num_rows
        if rows:
            whole = pa.concat_tables(pending)
            yield Partition(index, first_row, first_row + 1, to_text(whole), whole.num_rows)

    return header, generate()


def in_input_terms(message, input_path, part):
    """rnnlm's message about a partition, with the input's name and line numbers."""
    def relabel(match):
        line, row = int(match.group(1)), int(match.group(2))
        return f"line {part.first_line + line - 1} (row {part.first_row + row - 1})"

    message = message.replace("<stdin>", input_path)
    return re.sub(r"line (\d+) \(row (\d+)\)", relabel, message)


class CsvOutput:
    def __init__(self, handle):
        self.handle = handle

    def header(self, names):
        self.handle.write((",".join(_csv_field(n) for n in names) + "\n").encode("utf-8"))

    def write(self, data, _columns):
        self.handle.write(data)

    def close(self):
        pass


def _csv_field(value):
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="").writerow([value])
    return buffer.getvalue()


class ParquetOutput:
    """Writes each partition's output CSV as a row group, with one fixed schema."""

    INTEGER = {"tokens", "oov_count", "rank"}

    def __init__(self, path, input_schema):
        self.path, self.input_schema, self.writer = path, input_schema, None

    def header(self, names):
        import pyarrow as pa

        fields = []
        for name in names:
            if name in self.input_schema.names:
                fields.append(self.input_schema.field(name))
            elif name in self.INTEGER:
                fields.append(pa.field(name, pa.int64()))
            elif name == "best":
                fields.append(pa.field(name, pa.bool_()))
            else:
                fields.append(pa.field(name, pa.float64()))
        self.schema = pa.schema(fields)

    def write(self, data, columns):
        import pyarrow.csv as pacsv
        import pyarrow.parquet as pq

        table = pacsv.read_csv(
            io.BytesIO(data),
            read_options=pacsv.ReadOptions(column_names=columns),
            convert_options=pacsv.ConvertOptions(column_types=self.schema, strings_can_be_null=False),
        ).cast(self.schema)
        if self.writer is None:
            self.writer = pq.ParquetWriter(self.path, self.schema)
        self.writer.write_table(table)

    def close(self):
        import pyarrow.parquet as pq

        if self.writer is None:
            self.writer = pq.ParquetWriter(self.path, self.schema)
        self.writer.close()


def output_columns(binary, model, flags, header):
    """The output's column names: rnnlm's header for an empty input with these columns
    (on the CPU: the driver's machine need not have the workers' GPUs)."""
    text = ",".join(_csv_field(h) for h in header) + "\n"
    result = subprocess.run([binary, "score", "--model", model, *flags, "--device", "cpu"],
                            input=text.encode("utf-8"), capture_output=True)
    if result.returncode != 0:
        raise JobFailed(result.stderr.decode("utf-8", "replace").strip())
    return next(csv.reader(io.StringIO(result.stdout.decode("utf-8"))))


def run(args, client):
    settings = in_process_settings(args.flags) if args.in_process else None
    parquet = args.input.endswith(".parquet")
    if parquet:
        header, partitions = parquet_partitions(args.input, args.flags, args.partition_rows)
    else:
        header, partitions = csv_partitions(args.input, args.flags, args.partition_rows)
    binary, model = os.path.abspath(args.bin), os.path.abspath(args.model)
    columns = output_columns(binary, model, args.flags, header)

    out_dir = os.path.dirname(os.path.abspath(args.output))
    fd, temp = tempfile.mkstemp(prefix="." + os.path.basename(args.output) + ".", dir=out_dir)
    os.close(fd)
    started = time.perf_counter()
    rows = partitions_done = 0
    handle = None
    try:
        if args.output.endswith(".parquet"):
            import pyarrow.parquet as pq

            schema = pq.ParquetFile(args.input).schema_arrow if parquet else _string_schema(header)
            sink = ParquetOutput(temp, schema)
            sink.header(columns)
        else:
            handle = open(temp, "wb")
            sink = CsvOutput(handle)
            sink.header(columns)
        # Partitions are submitted a few per worker ahead and written back in order,
        # so memory holds a bounded window, not the whole list.
        window = max(2, 3 * args.workers)
        job = uuid.uuid4().hex[:12]
        in_flight = []
        source = iter(partitions)
        exhausted = False
        while True:
            while not exhausted and len(in_flight) < window:
                part = next(source, None)
                if part is None:
                    exhausted = True
                    break
                if args.in_process:
                    task = (score_partition_in_process, model, settings, header, part.text, args.threads,
                            args.device)
                else:
                    task = (score_partition, binary, model, args.flags, header, part.text, args.threads,
                            args.device)
                future = client.submit(*task, key=f"rnnlm-score-{job}-{part.index}",
                                       retries=args.retries, pure=False)
                in_flight.append((part, future))
            if not in_flight:
                break
            part, future = in_flight.pop(0)
            code, data, messages = future.result()
            future.release()
            for line in messages.splitlines():
                if line.startswith("skipped:"):
                    print(in_input_terms(line, args.input, part), file=sys.stderr)
            if code != 0:
                for _, pending in in_flight:
                    pending.cancel()
                errors = [l for l in messages.splitlines() if l.startswith("error:")] or [messages.strip()]
                raise JobFailed(in_input_terms(errors[-1], args.input, part))
            sink.write(data, columns)
            rows += part.rows
            partitions_done += 1
        sink.close()
        if handle:
            handle.close()
        os.replace(temp, args.output)
    except BaseException:
        if handle:
            handle.close()
        if os.path.exists(temp):
            os.remove(temp)
        raise
    seconds = time.perf_counter() - started
    print(f"score-dask: {rows} rows in {partitions_done} partitions, {seconds:.2f} s, "
          f"{rows / max(seconds, 1e-9):.1f} rows/s -> {args.output}", file=sys.stderr)
    return rows, seconds


def _string_schema(header):
    import pyarrow as pa

    return pa.schema([pa.field(name, pa.string()) for name in header])


def parse_args(argv):
    if "--" in argv:
        at = argv.index("--")
        argv, flags = argv[:at], argv[at + 1:]
    else:
        flags = []
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", required=True, help="N-best CSV (with a header) or .parquet")
    parser.add_argument("--output", required=True, help="output CSV or .parquet")
    parser.add_argument("--model", required=True, help="model directory, at the same path on every worker")
    parser.add_argument("--workers", type=int, default=2, help="LocalCluster worker processes (default 2)")
    parser.add_argument("--threads", type=int, default=None,
                        help="libtorch threads per rnnlm process (default: cores / workers)")
    parser.add_argument("--scheduler", default=None, help="address of a running Dask scheduler")
    parser.add_argument("--partition-rows", type=int, default=20000,
                        help="rows per partition, extended to the end of a group (default 20000)")
    parser.add_argument("--device", default="cpu", help="rnnlm --device in the workers (cpu, cuda)")
    parser.add_argument("--retries", type=int, default=2, help="retries of a partition whose worker died")
    parser.add_argument("--in-process", action="store_true",
                        help="score with `import rnnlm` in the workers (one cached model each) instead of "
                             "an rnnlm process per partition")
    parser.add_argument("--bin", default=DEFAULT_BIN, help="the rnnlm binary, at the same path on every worker")
    args = parser.parse_args(argv)
    args.flags = flags
    for name in ("workers", "partition_rows"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.threads is None and args.scheduler is None:
        args.threads = max(1, (os.cpu_count() or 1) // args.workers)
    forbidden = {"--input", "--output", "--model", "--no-header", "--columns", "--per-token", "--format",
                 "--device", "--threads"}
    for flag in flags:
        if flag.split("=", 1)[0] in forbidden:
            parser.error(f"{flag} is set by the driver; pass it as a driver option or leave it out")
    if not os.path.exists(args.bin):
        parser.error(f"{args.bin} missing: run make build")
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    from dask.distributed import Client, LocalCluster

    try:
        if args.scheduler:
            with Client(args.scheduler) as client:
                return run(args, client)
        with LocalCluster(n_workers=args.workers, threads_per_worker=1, host="127.0.0.1",
                          dashboard_address=None, processes=True) as cluster, Client(cluster) as client:
            return run(args, client)
    except JobFailed as e:
        sys.exit(f"score-dask: {e}")


if __name__ == "__main__":
    main()
