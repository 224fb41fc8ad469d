"""The installed distribution: one top-level import name, `zhkd`, with its package data inside.

The wheel is built offline from a copy of the source tree (setuptools from this environment, no
build isolation), then unpacked and imported on its own: what a `pip install zhkd` user gets.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOT_SOURCE = (".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", ".ruff_cache",
              "demo-out")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*NOT_SOURCE))
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation",
                             "--no-index", "-q", "-w", str(tmp / "dist")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    (built,) = (tmp / "dist").glob("zhkd-*.whl")
    return built


def test_the_wheel_has_one_top_level_import_name(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert top == {"zhkd"}
    top_level = next(n for n in names if n.endswith(".dist-info/top_level.txt"))
    assert zipfile.ZipFile(wheel).read(top_level).decode().split() == ["zhkd"]


def test_the_stages_and_their_data_install_inside_zhkd(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {f"zhkd/{path.relative_to(ROOT).as_posix()}"
                for folder in ("augment", "pipelines", "distill")
                for path in (ROOT / folder).rglob("*")
                if path.suffix == ".py" and "__pycache__" not in path.parts
                or path.parent.name in ("data", "templates") and path.is_file()}
    assert expected - names == set()
    assert {"zhkd/augment/data/cilin.txt.gz", "zhkd/pipelines/data/pd98-types.test.jsonl.gz",
            "zhkd/pipelines/templates/dataset_card.md", "zhkd/tasks.py", "zhkd/commands/distill.py"} <= names


def test_the_unpacked_wheel_imports_and_reads_its_corpora(wheel, tmp_path):
    target = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(target)
    code = ("import sys; sys.path.insert(0, sys.argv[1]); "
            "import zhkd, zhkd.pipelines.corpora as corpora; "
            "assert zhkd.__file__.startswith(sys.argv[1]), zhkd.__file__; "
            "print(next(corpora.load_corpus('pd98-types', 'dev'))['id'])")
    result = subprocess.run([sys.executable, "-c", code, str(target)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("pd98-")
