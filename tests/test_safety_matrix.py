"""The bad-input matrix of docs/safety.md: every command against every way its input or output can be wrong.

Each cell runs the command as a user would (in-process through `zhkd.cli.main`, or, for kill -9, in a
child process that SIGKILLs itself inside a write) and checks the documented outcome: a one-line error
naming the file (and line) with exit status 2, a dead letter or rejected row with its reason, or a rerun
that resumes to the result of an uninterrupted run. In every cell the files the user had before are
byte-identical afterwards, and a refused command leaves no new directory behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from itertools import islice
from pathlib import Path

import pytest
import torch
from conftest import write_jsonl
from distill_support import label_with_teacher
from safetensors.torch import load_file

from zhkd.cli import main
from zhkd.pipelines.corpora import load_corpus
from zhkd.rows import MAX_LINE_BYTES

pytestmark = pytest.mark.usefixtures("torch_one_thread")

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = ("augment", "build", "validate", "pretrain", "finetune", "distill", "evaluate", "demo")
CASES = ("missing", "empty", "invalid_utf8", "malformed", "oversized", "wrong_label", "input_is_output",
         "output_is_file", "foreign_dir", "kill9")
# Cells that do not apply, each with the reason docs/safety.md gives.
NOT_APPLICABLE = {
    ("validate", "oversized"): "a manifest is JSON read whole; no line cap applies",
    ("validate", "input_is_output"): "validate writes nothing",
    ("validate", "output_is_file"): "validate writes nothing",
    ("validate", "foreign_dir"): "validate writes nothing",
    ("pretrain", "wrong_label"): "pre-training reads text, no labels",
    ("demo", "invalid_utf8"): "the demo reads only the bundled corpora and the checkpoints it is given",
    ("demo", "malformed"): "the demo reads only the bundled corpora and the checkpoints it is given",
    ("demo", "oversized"): "the demo reads only the bundled corpora and the checkpoints it is given",
    ("demo", "wrong_label"): "the demo reads only the bundled corpora and the checkpoints it is given",
    ("demo", "kill9"): "not run in the suite (two tiny demos take 6 minutes); a rerun continues every step "
                       "through the resumes the other cells test",
}
CELLS = [(c, k) for c in COMMANDS for k in CASES if (c, k) not in NOT_APPLICABLE]
BAD_LINE = 3  # every bad file: two good rows, then the bad one
BAD = {
    "invalid_utf8": b'{"text": "\xe5\xa5\xbd\xff\xfe", "label": "positive"}',
    "malformed": b'{"text": "\xe5\xa5\xbd", "label": ',
    "oversized": b'{"text": "' + b"a" * (MAX_LINE_BYTES + 10) + b'", "label": "positive"}',
    "wrong_label": '{"text": "还行吧", "label": "neutral"}'.encode(),
}
# What each strict reader says about a bad row (finetune, distill and evaluate share zhkd.rows; pretrain its text).
STRICT = {"invalid_utf8": "UTF-8", "malformed": "JSON", "oversized": "over", "wrong_label": "'neutral'"}
REASON = {"invalid_utf8": "invalid_utf8", "malformed": "malformed_json", "oversized": "line_too_long",
          "wrong_label": "unknown_label"}


# --- helpers ----------------------------------------------------------------------------------------------


def snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def good_rows(n: int = 12) -> list[dict]:
    rows = islice(load_corpus("chnsenti", "dev"), n)
    return [{"id": r["id"], "text": r["text"], "label": r["label"]} for r in rows]


def bad_file(path: Path, case: str, rows: list[dict]) -> Path:
    """Two good rows, then the case's bad line, then the rest (so the reader must not stop early)."""
    lines = [json.dumps(r, ensure_ascii=False).encode() for r in rows]
    path.write_bytes(b"\n".join([*lines[:BAD_LINE - 1], BAD[case], *lines[BAD_LINE - 1:]]) + b"\n")
    return path


def input_file(case: str, user: Path, path: Path, rows: list[dict]) -> Path:
    """The input a cell hands over: `rows` at `path` (with the case's bad line when it names one), an
    empty file, or a path that does not exist."""
    if case in BAD:
        bad_file(path, case, rows)
    else:
        write_jsonl(path, rows)
    if case == "missing":
        return user / "absent.jsonl"
    if case == "empty":
        path.write_bytes(b"")
    return path


def output_path(case: str, user: Path, out: Path, source: Path) -> Path:
    """The output a cell names: `out`, or what the case puts in its place (the input itself, a file of the
    user's, or a directory of the user's at `out`)."""
    if case == "input_is_output":
        return source
    if case == "output_is_file":
        notes = user / "notes.txt"
        notes.write_text("mine")
        return notes
    if case == "foreign_dir":
        out.mkdir()
        (out / "notes.txt").write_text("mine")
    return out


def last_error(capsys, command: str) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err, err[-3000:]
    line = err.strip().splitlines()[-1]
    assert line.startswith(f"zhkd {command}: error: "), err[-3000:]
    return line


KILL = textwrap.dedent("""
    import importlib, os, signal, sys
    target, after = sys.argv[1], int(sys.argv[2])
    module_name, _, attr = target.partition(":")
    owner = importlib.import_module(module_name)
    *path, name = attr.split(".")
    for part in path:
        owner = getattr(owner, part)
    real, calls = getattr(owner, name), []
    def dying(*args, **kwargs):
        calls.append(1)
        if len(calls) == after:
            os.kill(os.getpid(), signal.SIGKILL)
        return real(*args, **kwargs)
    setattr(owner, name, dying)
    from zhkd.cli import main
    sys.exit(main(sys.argv[3:]))
""")


def killed(target: str, after: int, argv: list) -> None:
    """Run `zhkd argv` in a child process that SIGKILLs itself on the `after`-th call of `target`."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-c", KILL, target, str(after), *map(str, argv)], capture_output=True,
                            text=True, env=env, timeout=600)
    assert result.returncode == -signal.SIGKILL, result.stderr[-3000:]


def same_weights(a: Path, b: Path) -> bool:
    left, right = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    return left.keys() == right.keys() and all(torch.equal(left[k], right[k]) for k in left)


# --- shared inputs ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, tiny_classifier):
    """A soft-label dataset of good rows, labelled by the tiny classifier (for distill and validate)."""
    root = tmp_path_factory.mktemp("matrix-data")
    source = write_jsonl(root / "rows.jsonl", good_rows(24))
    return label_with_teacher(root / "data", "classification", source, tiny_classifier, num_shards=2)


def build_argv(source, teacher, out, *extra) -> list:
    return ["build", "--task", "classification", "--input", source, "--teacher", teacher, "--output", out,
            "--num-shards", "2", "--num-aug", "0", *extra]


@pytest.fixture(scope="module")
def dirty_build(tmp_path_factory, tiny_classifier):
    """One Beam build of a file holding every bad row at once (lines 3 to 6): the build cells read its
    dead letters. The input is hashed before and after."""
    user = tmp_path_factory.mktemp("matrix-build")
    rows = good_rows(8)
    lines = [json.dumps(r, ensure_ascii=False).encode() for r in rows]
    cases = ("invalid_utf8", "malformed", "oversized", "wrong_label")
    source = user / "rows.jsonl"
    source.write_bytes(b"\n".join([*lines[:2], *(BAD[c] for c in cases), *lines[2:]]) + b"\n")
    before = snapshot(user)
    out = tmp_path_factory.mktemp("matrix-build-out") / "data"
    assert main([str(a) for a in build_argv(source, tiny_classifier, out)]) == 0
    letters = {}
    for path in (out / "dead_letter").glob("*.jsonl"):
        for line in path.read_text("utf-8").splitlines():
            letter = json.loads(line)
            letters[letter["position"]] = letter
    lines_of = {case: BAD_LINE + i for i, case in enumerate(cases)}
    return {"source": source, "out": out, "letters": letters, "lines": lines_of,
            "intact": snapshot(user) == before}


# --- one function per command: set the cell up in `user`, run it, check the outcome ------------------------


def augment_cell(case, user, ctx, capsys):
    source = user / "rows.jsonl"
    out = user / "augmented.jsonl"
    argv = ["augment", "--task", "classification", "--input", source, "--output", out, "--num-aug", "1"]
    if case == "missing":
        source = user / "absent.jsonl"
        argv[4] = source
    elif case == "empty":
        source.write_bytes(b"")
    elif case == "wrong_label":  # augment has no label set; a tag that is not BIO is a wrong label it can see
        ner = list(islice(load_corpus("pd98-ner", "dev"), 4))
        write_jsonl(source, [*ner[:2], {"tokens": ["张", "三"], "tags": ["X-PER", "O"]}, *ner[2:]])
        argv[2] = "ner"
    elif case in BAD:
        bad_file(source, case, good_rows(4))
    else:
        write_jsonl(source, good_rows(4))
    if case == "input_is_output":
        argv[6] = source
    elif case == "output_is_file":
        out.write_text("my notes\n")
    elif case == "foreign_dir":
        out.mkdir()
        (out / "notes.txt").write_text("mine")
    yield
    if case == "kill9":
        clean = ctx["tmp"] / "clean.jsonl"
        assert main([str(a) for a in argv[:6]] + [str(clean)] + [str(a) for a in argv[7:]]) == 0
        killed("zhkd.commands.augment:_dumps", 3, argv)
        assert not out.exists()  # the half-written output never took the output's name
        assert main([str(a) for a in argv]) == 0
        assert out.read_bytes() == clean.read_bytes()
        return "resumed"
    code = main([str(a) for a in argv])
    expected_error = {"missing": "absent.jsonl: no such file", "empty": "rows.jsonl: empty file",
                      "input_is_output": "it is also an input", "output_is_file": "exists; pass --overwrite",
                      "foreign_dir": "an existing directory"}
    if case in expected_error:
        assert code == 2 and expected_error[case] in last_error(capsys, "augment")
        return "error"
    assert code == 0
    rejected = [json.loads(line) for line in (user / "augmented.rejected.jsonl").read_text("utf-8").splitlines()]
    reason = {"malformed": "malformed_json", "invalid_utf8": "invalid_utf8", "oversized": "line_too_long",
              "wrong_label": "invalid_bio"}[case]
    assert [(r["line"], r["reason"]) for r in rejected] == [(BAD_LINE, reason)]
    assert "\ufffd" not in out.read_text("utf-8")  # nothing decoded with replacement characters
    return "rejected"


def build_cell(case, user, ctx, capsys):
    teacher = ctx["classifier"]
    source = user / "rows.jsonl"
    out = user / "data"
    if case in BAD:
        yield
        built = ctx["dirty_build"]()
        assert built["intact"]
        letter = built["letters"][built["lines"][case]]
        assert letter["reason"] == REASON[case] and letter["source"] == "rows.jsonl"
        assert "\ufffd" not in letter["raw"] and len(letter["raw"]) < 1000  # an over-long line is not kept whole
        return "dead letter"
    source = input_file(case, user, source, good_rows(8))
    out = output_path(case, user, out, source)
    argv = [str(a) for a in build_argv(source, teacher, out)]
    yield
    if case == "kill9":
        built = ctx["dirty_build"]()
        argv = [str(a) for a in build_argv(built["source"], teacher, out)]
        killed("zhkd.pipelines.storage:move", 2, argv)  # inside the swap: one shard in, COMPLETED not yet
        assert not (out / "COMPLETED").exists()
        assert main(argv) == 0  # finishes the swap of the staged, complete dataset
        assert main(["validate", str(out)]) == 0
        for shard in built["out"].glob("data-*.arrow"):
            assert (out / shard.name).read_bytes() == shard.read_bytes()
        return "resumed"
    assert main(argv) == 2
    expected = {"missing": "absent.jsonl: no such file", "empty": "rows.jsonl: empty file",
                "input_is_output": "it is also an input", "output_is_file": "an existing file",
                "foreign_dir": "not made by zhkd build"}[case]
    assert expected in last_error(capsys, "build")
    return "error"


def validate_cell(case, user, ctx, capsys):
    data = user / "data"
    shutil.copytree(ctx["dataset"], data)
    manifest = data / "manifest.json"
    if case == "missing":
        data = user / "absent"
    elif case == "empty":
        manifest.write_bytes(b"")
    elif case == "invalid_utf8":
        manifest.write_bytes(manifest.read_bytes().replace(b'"task"', b'"t\xffsk"'))
    elif case == "malformed":
        manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "shards": [{"file": "../x"}]}))
    elif case == "wrong_label":
        manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "label_names": ["bad", "good"]}))
    elif case == "kill9":  # validate writes nothing: what it must refuse is a dataset whose build was killed
        (data / "COMPLETED").unlink()
    yield
    assert main(["validate", str(data)]) == 2
    expected = {"missing": "no such dataset directory", "empty": "not valid JSON", "invalid_utf8": "not UTF-8",
                "malformed": "plain file name", "wrong_label": "label names differ",
                "kill9": "COMPLETED: missing"}[case]
    assert expected in last_error(capsys, "validate")
    return "error"


def pretrain_argv(source, out, *extra) -> list:
    return ["pretrain", "--input", source, "--output", out, "--shape", "mini", "--max-steps", "6", "--batch-size",
            "4", "--max-length", "32", "--save-every", "2", *extra]


def pretrain_cell(case, user, ctx, capsys):
    source = user / "rows.jsonl"
    out = user / "mlm"
    source = input_file(case, user, source, good_rows(6))
    out = output_path(case, user, out, source)
    argv = [str(a) for a in pretrain_argv(source, out)]
    yield
    if case == "kill9":
        clean = ctx["tmp"] / "clean"
        assert main([str(a) for a in pretrain_argv(source, clean)]) == 0
        killed("zhkd.distill.checkpoints:Checkpoints.commit", 2, argv)  # the second checkpoint, written not committed
        assert main(argv) == 2  # an interrupted run is not restarted silently
        assert "pass --resume" in last_error(capsys, "pretrain")
        assert main([*argv, "--resume"]) == 0
        assert same_weights(out, clean)
        assert json.loads((out / "summary.json").read_text())["resumed_at_step"] == 2
        return "resumed"
    assert main(argv) == 2
    expected = {"missing": "absent.jsonl: no such file", "empty": "no text to pre-train on",
                "input_is_output": "it is also an input", "output_is_file": "an existing file",
                "foreign_dir": "not made by zhkd pretrain"}
    line = last_error(capsys, "pretrain")
    if case in BAD:
        assert f"rows.jsonl:{BAD_LINE}: " in line and STRICT[case] in line
    else:
        assert expected[case] in line
    return "error"


def training_cell(command, case, user, ctx, capsys):
    """finetune and distill: bad gold rows in --train, and the output cases on --output."""
    train = user / "train.jsonl"
    out = user / "model"
    train = input_file(case, user, train, good_rows(12))
    data = user / "data"
    shutil.copytree(ctx["dataset"], data)
    out = output_path(case, user, out, train if command == "finetune" else data)

    def argv(output):
        common = ["--output", output, "--max-steps", "4", "--batch-size", "4", "--max-length", "32",
                  "--save-every", "2", "--lr", "1e-3"]
        if command == "finetune":
            return [str(a) for a in ["finetune", "--task", "classification", "--train", train, "--init",
                                     ctx["classifier"], "--labels", "negative,positive", *common]]
        return [str(a) for a in ["distill", "--data", data, "--teacher", ctx["classifier"], "--student", "mini",
                                 "--layer-map", "none", "--stages", "pre,kd", "--train", train, *common]]

    yield
    if case == "kill9":
        clean = ctx["tmp"] / "clean"
        assert main(argv(clean)) == 0
        killed("zhkd.distill.checkpoints:Checkpoints.commit", 2, argv(out))
        assert main([*argv(out), "--resume"]) == 0
        assert same_weights(out, clean)
        return "resumed"
    assert main(argv(out)) == 2
    line = last_error(capsys, command)
    if case in BAD:
        assert f"train.jsonl:{BAD_LINE}: " in line and STRICT[case] in line
        return "error"
    expected = {"missing": "absent.jsonl: no such file", "empty": "train.jsonl: empty file",
                "input_is_output": "it is also an input", "output_is_file": "an existing file",
                "foreign_dir": f"not made by zhkd {command}"}[case]
    assert expected in line
    return "error"


def evaluate_cell(case, user, ctx, capsys):
    test = user / "test.jsonl"
    out = user / "evaluation"
    test = input_file(case, user, test, good_rows(8))
    out = output_path(case, user, out, test)

    def argv(output):
        return [str(a) for a in ["evaluate", "--task", "classification", "--model", ctx["classifier"], "--test", test,
                                 "--output", output, "--reference", "none", "--runs", "2", "--warmup", "0",
                                 "--devices", "cpu", "--throughput-batch", "2"]]

    yield
    if case == "kill9":
        clean = ctx["tmp"] / "clean"
        assert main(argv(clean)) == 0
        killed("zhkd.distill.evaluate:plot", 1, argv(out))  # evaluation.md staged, the figure half made
        assert not (out / "evaluation.json").exists()
        assert main(argv(out)) == 0
        scores = [json.loads((d / "evaluation.json").read_text())["models"][0]["scores"] for d in (out, clean)]
        assert scores[0] == scores[1]
        assert main(argv(out)) == 2 and "--overwrite" in last_error(capsys, "evaluate")
        return "resumed"
    assert main(argv(out)) == 2
    line = last_error(capsys, "evaluate")
    if case in BAD:
        assert f"test.jsonl:{BAD_LINE}: " in line and STRICT[case] in line
        return "error"
    expected = {"missing": "absent.jsonl: no such file", "empty": "test.jsonl: empty file",
                "input_is_output": "it is also an input", "output_is_file": "an existing file",
                "foreign_dir": "not made by zhkd evaluate"}[case]
    assert expected in line
    return "error"


def demo_cell(case, user, ctx, capsys):
    mlm = user / "mlm"
    shutil.copytree(ctx["mlm"], mlm)
    out = user / "demo"
    if case == "missing":
        mlm = user / "absent"
    elif case == "empty":
        mlm = user / "empty"
        mlm.mkdir()
    out = output_path(case, user, out, mlm)
    yield
    assert main(["demo", "--scale", "tiny", "--mlm", str(mlm), "--output", str(out)]) == 2
    expected = {"missing": "absent: not a checkpoint directory", "empty": "empty: not a checkpoint directory",
                "input_is_output": "it is also an input", "output_is_file": "an existing file",
                "foreign_dir": "not made by zhkd demo"}[case]
    assert expected in last_error(capsys, "demo")
    return "error"


RUNNERS = {"augment": augment_cell, "build": build_cell, "validate": validate_cell, "pretrain": pretrain_cell,
           "evaluate": evaluate_cell, "demo": demo_cell,
           "finetune": lambda *a: training_cell("finetune", *a), "distill": lambda *a: training_cell("distill", *a)}


@pytest.fixture
def ctx(tmp_path, tiny_classifier, tiny_mlm, dataset, request):
    return {"tmp": tmp_path / "zhkd-side", "classifier": tiny_classifier, "mlm": tiny_mlm, "dataset": dataset,
            "dirty_build": lambda: request.getfixturevalue("dirty_build")}


@pytest.mark.parametrize(("command", "case"), CELLS, ids=[f"{c}-{k}" for c, k in CELLS])
def test_matrix_cell(command, case, tmp_path, ctx, capsys):
    user = tmp_path / "user"
    user.mkdir()
    ctx["tmp"].mkdir()
    cell = RUNNERS[command](case, user, ctx, capsys)
    next(cell)  # the user's files are in place
    before, names = snapshot(user), set(os.listdir(user))
    try:
        next(cell)
    except StopIteration as stop:
        outcome = stop.value
    else:
        raise AssertionError("a cell yields once")
    after = snapshot(user)
    assert {path: after.get(path) for path in before} == before  # byte-identical, none removed
    if outcome == "error":  # a refused command leaves nothing behind either
        assert set(os.listdir(user)) == names
    assert outcome in ("error", "rejected", "dead letter", "resumed")


def test_the_docs_table_has_every_cell():
    """docs/safety.md states each cell's outcome; the table's rows and columns are this matrix's."""
    text = (ROOT / "docs" / "safety.md").read_text("utf-8")
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    table = {}
    for line in rows:
        cells = [c.strip() for c in line.strip("|").split("|")]
        table[cells[0].strip("`")] = cells[1:]
    assert list(table) == list(COMMANDS)
    for command, cells in table.items():
        assert len(cells) == len(CASES), command
        for case, cell in zip(CASES, cells, strict=True):
            assert cell, (command, case)
            assert cell.startswith("n/a") == ((command, case) in NOT_APPLICABLE), (command, case, cell)
