"""jieba's accurate mode with its HMM (`jieba.Tokenizer.cut(text)`), word for word, mostly in compiled code.

A character-level operator makes each of its outputs in a few microseconds, so segmenting the sentence
once is a large part of its cost. `Cutter` hands jieba's work to jieba-rs (the `rjieba` binding), loaded
with the tokenizer's own dictionary (jieba's dict.txt plus any user dictionary: every word with its
frequency, and the same total), wherever jieba-rs gives jieba's words, and keeps a Python port of
jieba's algorithm for the rest:

- jieba-rs and jieba build the same DAG, pick the same route (the same sums, the same tie-break to the
  longer word) and run the same HMM (jieba's model) over runs of CJK characters.
- They differ on Latin letters, digits and `+#&._%-` inside a run that goes to the HMM (jieba-rs
  splits such a run with its own pattern: jieba gives `300 - 350`, jieba-rs `300-350`), and on CJK
  characters outside U+4E00..U+9FD5 (extension A, compatibility ideographs: jieba splits its blocks at
  them, jieba-rs does not). So a text free of both goes to jieba-rs whole; a text holding them is cut at
  the edges of jieba's blocks (jieba cuts each block alone): each stretch of blocks free of both goes to
  jieba-rs whole, and in a block holding them jieba-rs gives the route (its cut without the HMM) and the
  runs of single characters off the route go to jieba's HMM handling here. On the bundled corpora half
  the reviews hold a digit or a Latin letter.

The HMM handling here runs an unrolled Viterbi with back-pointers whose result is remembered per run.
Where a user dictionary holds a word of ASCII letters and digits, jieba-rs's route can be read two ways,
and the block's route is computed here, in one backward pass over a table of log-probabilities made
once. Sums, their order and every tie-break are jieba's. A test compares `Cutter` with jieba on the
bundled corpora, with and without a user dictionary.
"""

from __future__ import annotations

import re
from functools import cache, lru_cache, partial
from math import inf, log

_PREFIX = 1.0   # marks a dictionary entry that is only a prefix (log-probabilities are negative)
# What jieba-rs cuts differently from jieba (see the module docstring): jieba's non-CJK word characters,
# and CJK characters outside jieba's range (U+4E00..U+9FD5).
_DIFFERS = re.compile("[A-Za-z0-9+#&._%\\-\u3400-\u4dbf\u9fd6-\u9fff\uf900-\ufaff\U00020000-\U0002fa1f]")
# A word jieba-rs never meets: its frequency makes jieba-rs's total equal to jieba's (jieba counts a word
# listed twice in dict.txt twice, and a user word that redefines one on top of it). A control character
# never lies inside a block that is cut, so it is never a candidate.
_TOTAL_PAD = "\x00"


class Cutter:
    """jieba's accurate mode with the HMM (`Tokenizer.cut(text)`), word for word, over a tokenizer's
    dictionary as it stands when the cutter is made (user dictionary included)."""

    def __init__(self, tokenizer) -> None:
        import jieba
        from jieba import finalseg
        from rjieba import Jieba

        self.freq = tokenizer.FREQ
        self.logtotal = log(tokenizer.total)
        # Every dictionary entry once: a word's log-probability (< 0), or _PREFIX for an entry that is
        # only a prefix of words (frequency 0). About 0.3 s per process, then one look-up per candidate.
        logtotal = self.logtotal
        self.table = {w: log(f) - logtotal if f else _PREFIX for w, f in tokenizer.FREQ.items()}
        self.han, self.skip = jieba.re_han_default, jieba.re_skip_default
        # jieba-rs over the same words: a private instance (rjieba's module-level one is left alone).
        fast = Jieba.empty()
        add, listed = fast.add_word, 0
        for word, freq in tokenizer.FREQ.items():
            if freq:
                add(word, freq, None)
                listed += freq
        if tokenizer.total > listed:
            add(_TOTAL_PAD, tokenizer.total - listed, None)
        self.fast = fast.cut
        self.route = partial(fast.cut, hmm=False)
        self.has_word = fast.has_word
        # Words a user dictionary gave frequency 0: jieba's HMM output splits them into characters.
        self.force_split = finalseg.Force_Split_Words

    def cut(self, text: str) -> list[str]:
        if not _DIFFERS.search(text):
            return self._split_forced(self.fast(text))
        # jieba cuts each of its blocks alone, so the text is cut at block edges: the stretches of blocks
        # free of what jieba-rs cuts differently go to jieba-rs whole (as a text free of it does), the
        # blocks holding it are cut here.
        out: list[str] = []
        plain = ""
        for block in self.han.split(text):
            if not block:
                continue
            if not _DIFFERS.search(block):
                plain += block
                continue
            if plain:
                out += self._split_forced(self.fast(plain))
                plain = ""
            if self.han.match(block):
                self._cut_block(block, out)
            else:
                for piece in self.skip.split(block):
                    if self.skip.match(piece):
                        out.append(piece)
                    else:
                        out.extend(piece)
        if plain:
            out += self._split_forced(self.fast(plain))
        return out

    def _split_forced(self, words: list[str]) -> list[str]:
        """jieba-rs's words with jieba's forced splits applied (a word of frequency 0 is never a route
        word, so only the HMM can have made it)."""
        force = self.force_split
        if not force:
            return words
        return [piece for word in words for piece in (word if word in force else (word,))]

    def _cut_block(self, block: str, out: list[str]) -> None:
        """jieba's words for a block that jieba-rs would cut otherwise: jieba-rs's route (its cut without
        the HMM), the runs of single characters off the route handled as jieba handles them."""
        steps = self.route(block)
        # Without the HMM, jieba-rs joins consecutive single-character steps of ASCII letters and digits
        # into one word: split them again. Such a run is a dictionary word only with a user dictionary,
        # and then it could be a step as well: jieba's route decides.
        has_word, ascii_run = self.has_word, False
        for word in steps:
            if len(word) > 1 and word.isascii() and word.isalnum():
                if has_word(word):
                    steps = self._route(block)
                    ascii_run = False
                    break
                ascii_run = True
        if ascii_run:
            steps = [piece for word in steps
                     for piece in (word if len(word) > 1 and word.isascii() and word.isalnum() else (word,))]
        buf = ""
        for word in steps:
            if len(word) == 1:
                buf += word
            else:
                if buf:
                    self._flush(buf, out)
                    buf = ""
                out.append(word)
        if buf:
            self._flush(buf, out)

    def _route(self, block: str) -> list[str]:
        """jieba's route through a block: the best route from each position, right to left (its
        log-probability and the end of its first word). Candidates are the dictionary words starting
        there (or the single character when none is); ties go to the longer word, as jieba's max over
        (score, end) does."""
        n = len(block)
        get, fallback, prefix, none = self.table.get, -self.logtotal, _PREFIX, -inf
        score = [0.0] * (n + 1)
        end = list(range(n))
        for start in range(n - 1, -1, -1):
            best = none
            i = start
            lp = get(block[start])
            while lp is not None:
                if lp < prefix:
                    s = lp + score[i + 1]
                    if s >= best:
                        best = s
                        end[start] = i
                i += 1
                if i == n:
                    break
                lp = get(block[start:i + 1])
            score[start] = best if best > none else fallback + score[start + 1]
        steps, x = [], 0
        while x < n:
            y = end[x] + 1
            steps.append(block[x:y])
            x = y
        return steps

    def _flush(self, buf: str, out: list[str]) -> None:
        if len(buf) == 1:
            out.append(buf)
        elif not self.freq.get(buf):
            out += _hmm_cut(buf)
        else:
            out.extend(buf)


def _hmm_cut(run: str) -> tuple[str, ...]:
    """jieba's `finalseg.cut(run)`: HMM words of the CJK pieces, the other pieces split as it splits them."""
    finalseg = _finalseg()
    out: list[str] = []
    for block in finalseg.re_han.split(run):
        if finalseg.re_han.match(block):
            for word in _viterbi_words(block):
                if word in finalseg.Force_Split_Words:
                    out.extend(word)
                else:
                    out.append(word)
        else:
            out += [piece for piece in finalseg.re_skip.split(block) if piece]
    return tuple(out)


@cache
def _finalseg():
    """jieba's HMM module (imported once: an import statement per run costs more than its look-ups)."""
    from jieba import finalseg

    return finalseg


@lru_cache(maxsize=1 << 16)
def _viterbi_words(obs: str) -> tuple[str, ...]:
    """The words of jieba's HMM for a run of CJK characters (`finalseg.viterbi`, unrolled).

    Each state's best predecessor is jieba's max over (probability, state letter): the higher sum, and
    on a tie the later letter (S > M > E > B). Sums are added in jieba's order.
    """
    from jieba.finalseg import MIN_FLOAT, emit_P, start_P, trans_P

    eb, em, ee, es = emit_P["B"].get, emit_P["M"].get, emit_P["E"].get, emit_P["S"].get
    t_eb, t_sb, t_mm, t_bm = trans_P["E"]["B"], trans_P["S"]["B"], trans_P["M"]["M"], trans_P["B"]["M"]
    t_ss, t_es, t_be, t_me = trans_P["S"]["S"], trans_P["E"]["S"], trans_P["B"]["E"], trans_P["M"]["E"]
    c = obs[0]
    vb, vm = start_P["B"] + eb(c, MIN_FLOAT), start_P["M"] + em(c, MIN_FLOAT)
    ve, vs = start_P["E"] + ee(c, MIN_FLOAT), start_P["S"] + es(c, MIN_FLOAT)
    back: list[tuple[str, str, str, str]] = []   # per step: best predecessor of B, M, E, S
    for c in obs[1:]:
        x = eb(c, MIN_FLOAT)
        a, b = ve + t_eb + x, vs + t_sb + x
        nb, pb = (b, "S") if b >= a else (a, "E")
        x = em(c, MIN_FLOAT)
        a, b = vm + t_mm + x, vb + t_bm + x
        nm, pm = (a, "M") if a >= b else (b, "B")
        x = ee(c, MIN_FLOAT)
        a, b = vb + t_be + x, vm + t_me + x
        ne, pe = (b, "M") if b >= a else (a, "B")
        x = es(c, MIN_FLOAT)
        a, b = vs + t_ss + x, ve + t_es + x
        ns, ps = (a, "S") if a >= b else (b, "E")
        back.append((pb, pm, pe, ps))
        vb, vm, ve, vs = nb, nm, ne, ns
    state = "S" if vs >= ve else "E"
    states = [state]
    column = {"B": 0, "M": 1, "E": 2, "S": 3}
    for step in reversed(back):
        state = step[column[state]]
        states.append(state)
    states.reverse()
    words: list[str] = []
    begin = following = 0
    for i, state in enumerate(states):
        if state == "B":
            begin = i
        elif state == "E":
            words.append(obs[begin:i + 1])
            following = i + 1
        elif state == "S":
            words.append(obs[i])
            following = i + 1
    if following < len(obs):
        words.append(obs[following:])
    return tuple(words)
