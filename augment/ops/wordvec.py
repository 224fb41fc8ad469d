"""`wordvec`: replace content words by near neighbours in a user's word vectors (word2vec text format),
the analogue of TinyBERT's GloVe step. Neighbours must pass the same filters as synonyms (common
characters, no negator, not a name), lie within `min_similarity`, and are drawn by similarity."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from zhkd.augment.charset import is_cjk_word, is_plain_word
from zhkd.augment.errors import AugmentError
from zhkd.augment.lexicon import ENTITY_TAGS, dictionary_tag
from zhkd.augment.ops.base import check_rate, content_words, count_for
from zhkd.augment.rng import KeyedRandom
from zhkd.augment.segment import Segmented


class WordVectors:
    """Unit-normalised vectors of a word2vec text file; neighbours are computed once per word."""

    def __init__(self, path: str, max_words: int) -> None:
        import numpy as np

        if not Path(path).is_file():
            raise AugmentError(f"wordvec: no such word-vector file: {path}")
        from zhkd.rows import lines

        words, rows = [], []
        with open(path, "rb") as f:
            for line_no, raw, too_long in lines(f):
                if too_long:
                    raise AugmentError(f"wordvec: {path}:{line_no}: a line over the length cap, not `word v1 v2 ...`")
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError:
                    raise AugmentError(f"wordvec: {path}:{line_no}: not UTF-8 text") from None
                parts = line.rstrip().split(" ")
                if line_no == 1 and len(parts) == 2 and all(p.isdigit() for p in parts):
                    continue   # the optional "count dimension" header
                if len(parts) < 3:
                    continue
                try:
                    rows.append([float(x) for x in parts[1:]])
                except ValueError as err:
                    raise AugmentError(f"wordvec: {path}:{line_no}: not `word v1 v2 ...` ({err})") from err
                if rows and len(rows[-1]) != len(rows[0]):
                    raise AugmentError(f"wordvec: {path}:{line_no}: {len(rows[-1])} values, expected {len(rows[0])}")
                words.append(parts[0])
                if len(words) >= max_words:
                    break
        if not words:
            raise AugmentError(f"wordvec: {path} holds no vectors")
        matrix = np.asarray(rows, dtype=np.float32)
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        self.matrix = matrix / np.where(norms == 0, 1, norms)
        self.words = words
        self.index = {w: i for i, w in enumerate(words)}
        self._neighbours: dict[str, tuple[tuple[str, ...], tuple[float, ...]]] = {}

    def neighbours(self, word: str, top_n: int, min_similarity: float) -> tuple[tuple[str, ...], tuple[float, ...]]:
        """Usable neighbours of a word and their cumulative weights (similarity)."""
        if word not in self._neighbours:
            import numpy as np

            found: list[tuple[str, float]] = []
            if word in self.index:
                sims = self.matrix @ self.matrix[self.index[word]]
                for j in np.argsort(-sims, kind="stable")[: 20 * top_n + 1].tolist():
                    cand, sim = self.words[j], float(sims[j])
                    if sim < min_similarity or len(found) >= top_n:
                        break
                    if cand != word and usable(cand):
                        found.append((cand, sim))
            total, cum = 0.0, []
            for _, sim in found:
                total += sim
                cum.append(total)
            self._neighbours[word] = (tuple(c for c, _ in found), tuple(cum))
        return self._neighbours[word]


def usable(word: str) -> bool:
    return is_cjk_word(word) and is_plain_word(word) and (dictionary_tag(word) or "") not in ENTITY_TAGS


@cache
def vectors(path: str, max_words: int) -> WordVectors:
    return WordVectors(path, max_words)


class Wordvec:
    name = "wordvec"
    span_safe = True

    def __init__(self, path: str, p: float = 0.2, top_n: int = 10, min_similarity: float = 0.5,
                 max_words: int = 500_000) -> None:
        if not path:
            raise AugmentError("wordvec: needs a word-vector file (word2vec text format)")
        self.path, self.p, self.top_n = str(path), check_rate(self.name, p), top_n
        self.min_similarity, self.max_words = min_similarity, max_words

    def load(self) -> None:
        vectors(self.path, self.max_words)

    def slots(self, seg: Segmented) -> list[tuple[int, tuple]]:
        vecs = vectors(self.path, self.max_words)
        return [(i, cands) for i in content_words(seg)
                if (cands := vecs.neighbours(seg.words[i], self.top_n, self.min_similarity))[0]]

    def apply(self, seg: Segmented, rng: KeyedRandom) -> Segmented | None:
        slots = seg.remember(f"wordvec:{self.path}", self.slots)
        chosen = rng.sample(slots, count_for(self.p, len(slots)))
        if not chosen:
            return None
        return seg.replace({i: rng.pick(words, cum) for i, (words, cum) in chosen})
