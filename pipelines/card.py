"""The data card: `README.md` rendered from the template with the build's figures, and a length histogram."""

from __future__ import annotations

import importlib.metadata
import json
from datetime import UTC, datetime
from pathlib import Path

from zhkd.pipelines.sink import NO_LABEL
from zhkd.shards import FORMAT_VERSION
from zhkd.tasks import MULTILABEL, SEQUENCE, TOKEN, get_task

TEMPLATE = Path(__file__).parent / "templates" / "dataset_card.md"
REASON_MEANINGS = {
    "malformed_json": "line is not a JSON object",
    "malformed_csv": "CSV/TSV row with a quoting error or the wrong number of fields",
    "malformed_row": "a field has the wrong type",
    "invalid_utf8": "a JSON \\u escape of a lone surrogate, or bytes that are not UTF-8",
    "missing_field": "the text (or tokens) field is absent",
    "empty_text": "empty or whitespace-only text",
    "text_too_long": "over the --max-chars cap (use --truncate to cut instead)",
    "unknown_label": "label not among the label names",
    "missing_label": "no label (use --allow-unlabeled to keep such rows)",
    "length_mismatch": "tokens and tags differ in length",
    "invalid_bio": "tags are not valid BIO",
    "duplicate_id": "an id already used by an earlier row",
}

# What the label table counts, by label kind (see `sink.gold_names`).
LABEL_HEADERS = {SEQUENCE: "label", TOKEN: "entity (B- tags)",
                 MULTILABEL: f"label (rows holding it; {NO_LABEL}: an empty set)"}

AGREEMENT = {SEQUENCE: "The teacher's argmax agrees with the gold label",
             TOKEN: "The teacher's argmax agrees with the gold tag at every token",
             MULTILABEL: "The labels the teacher gives 0.5 or more are exactly the gold set"}


def _table(header: tuple[str, ...], rows: list[tuple]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _rate(part: dict) -> str:
    if not part.get("labelled"):
        return "no labelled rows"
    return f"{part['agree'] / part['labelled']:.1%} ({part['agree']:,} of {part['labelled']:,})"


def render_card(manifest: dict, *, input_desc: str) -> str:
    counts, stats, config = manifest["counts"], manifest["stats"], manifest["config"]
    teacher = manifest["teacher"]
    stage_rows = [
        ("rows in", f"{counts['rows_in']:,}"),
        ("dead-lettered", f"{counts['dead_letter_total']:,}"),
        ("valid examples", f"{counts['valid']:,}"),
        ("variants (originals + augmented)",
         f"{counts['variants']['total']:,} ({counts['variants']['original']:,} + {counts['variants']['augmented']:,})"),
        ("exact duplicates removed", f"{counts['duplicates']:,}"),
        ("labelled by the teacher", f"{counts['labelled']:,}"),
        ("filtered (label preservation)", f"{counts['filtered_total']:,}"),
        ("written", f"{counts['written']:,}"),
    ]
    notes = (f"Control characters were stripped from {counts['control_chars_stripped']:,} rows; "
             f"{counts['truncated']:,} rows were truncated to {config['max_chars']} characters; "
             f"{counts['teacher_truncated']:,} rows were cut to the teacher's {teacher['max_length']} tokens.")
    dead = [(r, f"{n:,}", REASON_MEANINGS.get(r, "")) for r, n in counts["dead_letter"].items() if n]
    labels = stats["labels"]
    label_rows = [(name, f"{labels['original'].get(name, 0):,}", f"{labels['augmented'].get(name, 0):,}")
                  for name in sorted(set(labels["original"]) | set(labels["augmented"]))]
    agreement = stats["agreement"]
    filter_desc = "off" if not (config["filter_disagreement"] or config["min_confidence"] > 0) else (
        f"on (drop disagreeing: {config['filter_disagreement']}, minimum confidence {config['min_confidence']})")
    agreement_text = (f"{AGREEMENT[get_task(manifest['task']).label_kind]} on {_rate(agreement['original'])} of the "
                      f"labelled originals and {_rate(agreement['augmented'])} of the labelled augmented rows "
                      f"(before filtering). Label-preservation filter: {filter_desc}.")
    ops_rows = [(op, f"{n:,}") for op, n in sorted(stats["ops"].items(), key=lambda kv: (-kv[1], kv[0]))]
    lengths = stats["lengths"]
    longest = max((int(b) for part in lengths.values() for b in part), default=0)
    pretty = f"zhkd {manifest['task']} soft labels"
    spec = get_task(manifest["task"])
    values = {
        "pretty_name": pretty, "pretty_name_json": json.dumps(pretty, ensure_ascii=False),
        "task_category": spec.card_category,
        "format_version": FORMAT_VERSION, "task": manifest["task"], "config_hash": manifest["config_hash"],
        "teacher": teacher["name"], "teacher_json": json.dumps(teacher["name"], ensure_ascii=False),
        "teacher_sha256": teacher["weights_sha256"], "tokenizer_sha256": teacher["tokenizer_sha256"],
        "label_names_json": json.dumps(manifest["label_names"], ensure_ascii=False),
        "total_rows": manifest["total_rows"],
        "zhkd_version": importlib.metadata.version("zhkd"),
        "built_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "input": input_desc, "num_aug": config["num_aug"],
        "ops": ", ".join(f"`{op}`" for op in manifest["augmentation"]["operators"]) or "none",
        "seed": config["seed"],
        "stage_table": _table(("stage", "rows"), stage_rows) + "\n\n" + notes,
        "dead_letter_table": (_table(("reason", "rows", "meaning"), dead) if dead else "No row was rejected.")
        + "\n\nRejected rows are in `dead_letter/<reason>.jsonl`, each with its source, position and raw text.",
        "label_table": _table((LABEL_HEADERS[spec.label_kind], "originals", "augmented"), label_rows)
        if label_rows else "No gold labels.",
        "agreement": agreement_text,
        "ops_table": _table(("operator", "rows"), ops_rows) if ops_rows else "No augmented rows.",
        "length_summary": f"Characters per row, in bins of {manifest['stats']['length_bin']}; the longest bin "
                          f"starts at {longest} characters.",
    }
    return TEMPLATE.read_text("utf-8").format(**values)


def length_histogram(lengths: dict[str, dict[str, int]], bin_width: int, path: Path) -> None:
    """Rows per length bin, originals and augmented side by side (matplotlib, Agg: no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5), dpi=100)
    for offset, kind in ((0.0, "original"), (0.5, "augmented")):
        part = {int(b): n for b, n in lengths.get(kind, {}).items()}
        if part:
            starts = sorted(part)
            ax.bar([s + offset * bin_width for s in starts], [part[s] for s in starts], width=bin_width * 0.5,
                   align="edge", label=kind)
    ax.set_xlabel("characters")
    ax.set_ylabel("rows")
    ax.set_title("Row length")
    if lengths.get("original") or lengths.get("augmented"):
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)
