"""jieba's accurate mode with its HMM (`jieba.Tokenizer.cut(text)`), word for word, at well under half the cost.

A character-level operator makes each of its outputs in a few microseconds, so segmenting the sentence
once is most of its cost. jieba builds a prefix DAG as a dict of lists, takes a logarithm of every
candidate's frequency on every call, and runs its HMM (a Viterbi over B/M/E/S states, copying paths as
lists) on every unknown run anew. `Cutter` scores candidates in one backward pass over a table of
log-probabilities made once, and runs an unrolled Viterbi with back-pointers whose result is remembered
per run. The sums, their order and every tie-break are jieba's, so the words are the same; a test
compares the two on the bundled corpora.
"""

from __future__ import annotations

from functools import lru_cache
from math import inf, log

_PREFIX = 1.0   # marks a dictionary entry that is only a prefix (log-probabilities are negative)


class Cutter:
    """jieba's accurate mode with the HMM (`Tokenizer.cut(text)`), word for word, over a tokenizer's
    dictionary as it stands when the cutter is made (user dictionary included)."""

    def __init__(self, tokenizer) -> None:
        import jieba

        self.freq = tokenizer.FREQ
        self.logtotal = log(tokenizer.total)
        # Every dictionary entry once: a word's log-probability (< 0), or _PREFIX for an entry that is
        # only a prefix of words (frequency 0). About 0.3 s per process, then one look-up per candidate.
        logtotal = self.logtotal
        self.table = {w: log(f) - logtotal if f else _PREFIX for w, f in tokenizer.FREQ.items()}
        self.han, self.skip = jieba.re_han_default, jieba.re_skip_default

    def cut(self, text: str) -> list[str]:
        out: list[str] = []
        for block in self.han.split(text):
            if not block:
                continue
            if self.han.match(block):
                self._cut_block(block, out)
            else:
                for piece in self.skip.split(block):
                    if self.skip.match(piece):
                        out.append(piece)
                    else:
                        out.extend(piece)
        return out

    def _cut_block(self, block: str, out: list[str]) -> None:
        # The best route from each position, right to left: log-probability and end of its first word.
        # Candidates are the dictionary words starting there (or the single character when none is);
        # ties go to the longer word, as jieba's max over (score, end) does.
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
        # Walk the route; runs of single characters that are not a dictionary word go to the HMM.
        x = 0
        buf = ""
        while x < n:
            y = end[x] + 1
            if y - x == 1:
                buf += block[x]
            else:
                if buf:
                    self._flush(buf, out)
                    buf = ""
                out.append(block[x:y])
            x = y
        if buf:
            self._flush(buf, out)

    def _flush(self, buf: str, out: list[str]) -> None:
        if len(buf) == 1:
            out.append(buf)
        elif not self.freq.get(buf):
            out += _hmm_cut(buf)
        else:
            out.extend(buf)


def _hmm_cut(run: str) -> tuple[str, ...]:
    """jieba's `finalseg.cut(run)`: HMM words of the CJK pieces, the other pieces split as it splits them."""
    from jieba import finalseg

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
