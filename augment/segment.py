"""Segment once: a `Segmented` sentence (words, POS tags, entity marks) that every operator transforms.

jieba's dictionary and HMM run through a private `jieba.Tokenizer` per process (never the global one,
which other libraries mutate), quietly, cut by `jieba_cut.Cutter`: the same words as
`Tokenizer.cut(text)`, mostly from jieba-rs loaded with the same dictionary (about a third of the cost
of the pure-Python port it replaced). POS tags are the dictionary's tags, the table
jieba.posseg looks dictionary words up in (read here directly: importing jieba.posseg builds a second,
global tag table, about 1 s per process). A word jieba's HMM finds outside the dictionary gets the tag
"x" (unknown: possibly a name), which keeps lexical operators away from it. posseg's own HMM tagger
for such words would cost about 10x the segmentation itself.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from functools import cache, lru_cache

from zhkd.augment.charset import MASK_TOKEN
from zhkd.augment.errors import AugmentError
from zhkd.augment.jieba_cut import Cutter

_LATIN = re.compile(r"[A-Za-z]+")
_NUMBER = re.compile(r"[0-9０-９.．,，%％]+")
_TOKENS = re.compile(re.escape(MASK_TOKEN) + r"|.", re.S)


@dataclass(slots=True)
class Segmented:
    """A sentence as words. `ents[i]` is None outside entities, else the BIO tag of the word's first
    token ("B-PER"); an entity word is atomic: operators may move or convert it but never edit it.
    `memo` holds what an operator derives from this sentence once (its eligible slots), since a policy
    applies operators to the same source sentence for every variant. Treat it as immutable (it is not
    frozen only because frozen dataclasses cost a third more to create, on the per-variant path)."""

    words: tuple[str, ...]
    pos: tuple[str, ...]
    ents: tuple[str | None, ...]
    memo: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def text(self) -> str:
        return "".join(self.words)

    def spans(self) -> list[tuple[int, int]]:
        """Character (start, end) of each word in `text`."""
        out, start = [], 0
        for word in self.words:
            out.append((start, start + len(word)))
            start += len(word)
        return out

    def replace(self, changes: dict[int, str]) -> Segmented:
        """The same sentence with some words replaced (POS and entity marks kept)."""
        words = list(self.words)
        for i, word in changes.items():
            words[i] = word
        return Segmented(tuple(words), self.pos, self.ents)

    def remember(self, key: str, compute):
        """`compute(self)`, computed once per sentence and key."""
        try:
            return self.memo[key]
        except KeyError:
            value = self.memo[key] = compute(self)
            return value


def word_tokens(word: str) -> list[str]:
    """Character tokens of a word, the mask token kept whole."""
    return _TOKENS.findall(word) if MASK_TOKEN in word else list(word)


class Segmenter:
    """jieba words and POS tags for raw text; a user dictionary (jieba's format) adds words and tags."""

    def __init__(self, user_dict: str | None = None) -> None:
        import jieba

        jieba.setLogLevel(logging.WARNING)
        self.tokenizer = jieba.Tokenizer()
        self.tokenizer.initialize()
        with self.tokenizer.get_dict_file() as f:
            self.tags = _read_tags(f.read().decode("utf-8").splitlines())
        if user_dict:
            try:
                self.tokenizer.load_userdict(user_dict)
                with open(user_dict, encoding="utf-8") as f:
                    self.tags.update(_read_tags(f))
            except (OSError, UnicodeDecodeError, ValueError) as err:
                raise AugmentError(f"cannot read the user dictionary {user_dict}: {err}") from err
        self.cutter = Cutter(self.tokenizer)

    def tag(self, word: str) -> str:
        return self.tags.get(word) or _unknown_tag(word)

    def words(self, text: str) -> list[str]:
        return self.cutter.cut(text)

    def segment(self, text: str) -> Segmented:
        words = tuple(self.cutter.cut(text))
        tags = tuple(map(self.tags.get, words))
        if None in tags:   # words outside the dictionary (punctuation among them)
            tags = tuple([tag or _unknown_tag(w) for w, tag in zip(words, tags, strict=True)])
        return Segmented(words, tags, (None,) * len(words))


    def segment_tagged(self, tokens: tuple[str, ...], tags: tuple[str, ...]) -> Segmented:
        """NER input. Character tokens: each entity becomes one atomic word and the text between entities
        is segmented by jieba. Longer tokens are kept as the words themselves (entity tokens stay marked)."""
        if len(tokens) != len(tags):
            raise AugmentError(f"{len(tokens)} tokens but {len(tags)} tags")
        if any(len(t) != 1 for t in tokens):
            ents = tuple(None if t == "O" else t for t in _valid_bio(tags))
            return Segmented(tuple(tokens), tuple(map(self.tag, tokens)), ents)
        words: list[str] = []
        pos: list[str] = []
        ents: list[str | None] = []
        for start, end, etype in _chunks(tags):
            piece = "".join(tokens[start:end])
            if etype is None:
                for word in self.cutter.cut(piece):
                    words.append(word)
                    pos.append(self.tag(word))
                    ents.append(None)
            else:
                words.append(piece)
                pos.append("ent")
                ents.append("B-" + etype)
        return Segmented(tuple(words), tuple(pos), tuple(ents))


@lru_cache(maxsize=1 << 16)
def _unknown_tag(word: str) -> str:
    """The tag of a word outside the dictionary: a number, a Latin word, or "x" (unknown: possibly a name).
    Remembered per word: punctuation is outside the dictionary, and every sentence has some."""
    if _NUMBER.fullmatch(word):
        return "m"
    if _LATIN.fullmatch(word):
        return "eng"
    return "x"


def _read_tags(lines) -> dict[str, str]:
    """word -> POS tag from jieba dictionary lines (`word [freq] [tag]`), as jieba.posseg reads them."""
    tags = {}
    for line in lines:
        word, _, tag = line.strip().rpartition(" ")
        if word and not tag.isdigit():
            tags[word.partition(" ")[0]] = tag
    return tags


def _valid_bio(tags: tuple[str, ...]) -> list[str]:
    """BIO with the lenient reading of conlleval: an I- tag that continues nothing starts an entity."""
    out, previous = [], "O"
    for tag in tags:
        if tag.startswith("I-") and previous[2:] != tag[2:]:
            tag = "B-" + tag[2:]
        elif not (tag == "O" or tag.startswith(("B-", "I-"))):
            raise AugmentError(f"tag {tag!r} is not BIO (O, B-TYPE or I-TYPE)")
        out.append(tag)
        previous = tag
    return out


def _chunks(tags: tuple[str, ...]) -> list[tuple[int, int, str | None]]:
    """(start, end, entity type or None) runs covering the sentence."""
    chunks: list[tuple[int, int, str | None]] = []
    for i, tag in enumerate(_valid_bio(tags)):
        etype = None if tag == "O" else tag[2:]
        if chunks and ((etype is None and chunks[-1][2] is None) or (tag.startswith("I-"))):
            start, _, kind = chunks[-1]
            chunks[-1] = (start, i + 1, kind)
        else:
            chunks.append((i, i + 1, etype))
    return chunks


def tokens_and_tags(seg: Segmented, char_level: bool) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Tokens and BIO tags re-derived from the words: an entity word gives B-X then I-X for its tokens."""
    tokens: list[str] = []
    tags: list[str] = []
    for word, ent in zip(seg.words, seg.ents, strict=True):
        pieces = word_tokens(word) if char_level else [word]
        tokens += pieces
        if ent is None:
            tags += ["O"] * len(pieces)
        else:
            tags += [ent] + ["I-" + ent[2:]] * (len(pieces) - 1)
    return tuple(tokens), tuple(tags)


def segmenter(user_dict: str | None = None) -> Segmenter:
    """One per process and user dictionary, created on first use and never pickled."""
    return _segmenter(user_dict or None)


@cache
def _segmenter(user_dict: str | None) -> Segmenter:
    return Segmenter(user_dict)
