"""Many attempts of many sentences at once: the draws and texts of the single-operator path, in numpy.

A single-operator policy on a text task makes up to 2N + 4 attempts per example, each a few draws and a
splice. One attempt at a time, the interpreter's overhead (a method call, a loop, a list per attempt)
costs more than the work itself. Here the attempts of a whole batch of examples are arrays: their stream
words (`stream_words`: the words `KeyedRandom` draws), their slot and item draws (`picks`: those of
`KeyedRandom.picks`), their swap pairs (`pairs`: those of `KeyedRandom.pairs`), and their texts, made of
pieces of the sources and the candidates (`gather`) and read back once per batch (`read_back`).

Every attempt gets exactly the text its operator's `text_maker` gives, and tests compare the two: a
batch changes no output, and its composition changes nothing (each attempt's draws come from its own
stream). An attempt whose draws the batch did not plan for (more redraws of taken slots than it allowed
for) is handed back to the text maker.

Arrays with an entry per character are the expensive ones (a batch holds about 80,000 characters, and
large temporaries cost page faults): each path makes as few as it can, and every other array has an
entry per attempt, draw or piece.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import accumulate, chain
from typing import NamedTuple

import numpy as np

from zhkd.augment.rng import GAMMA, MIX1, MIX2, KeyedRandom
from zhkd.augment.tables import draw_items, item_codes

_U64 = np.uint64
_LOW = _U64((1 << 32) - 1)
_ENCODING = "utf-32-le"

Job = tuple  # (plan, stream seed of `KeyedSeries`, attempts: range, text maker for the attempts left over)


def stream_words(seeds: np.ndarray, ks: np.ndarray, js: np.ndarray) -> np.ndarray:
    """Word j (from 0) of attempt k of the streams seeded `seeds`: what the (j+1)-th draw of
    `KeyedRandom.of_seed(seed, k)` takes (SplitMix64 output k·2^32 + j + 1; uint64 arithmetic wraps).
    In place on one array: a temporary per operation would cost several times the arithmetic."""
    z = ks.astype(_U64)
    z <<= _U64(32)
    z += js.astype(_U64)
    z += _U64(1)
    z *= _U64(GAMMA)
    z += seeds.astype(_U64, copy=False)
    for shift, multiplier in ((30, MIX1), (27, MIX2)):
        z ^= z >> _U64(shift)
        z *= _U64(multiplier)
    z ^= z >> _U64(31)
    return z


def ragged(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(owner, index) for groups of these sizes laid end to end: group i's elements have owner i and
    index 0 .. counts[i] - 1."""
    owner = np.repeat(np.arange(len(counts)), counts)
    starts = np.cumsum(counts) - counts
    return owner, np.arange(owner.size) - starts[owner]


class Rows(NamedTuple):
    """The attempts of a batch, one row each, job by job: its job (sentence) and k."""

    job: np.ndarray
    k: np.ndarray


def rows_of(attempts: Sequence[range]) -> Rows:
    job, index = ragged(np.fromiter((len(r) for r in attempts), np.int64, len(attempts)))
    first = np.fromiter((r.start for r in attempts), np.int64, len(attempts))
    return Rows(job, first[job] + index)


def picks(seeds: np.ndarray, ks: np.ndarray, slots: np.ndarray, count: np.ndarray):
    """The draws of `KeyedRandom.picks(slots, count)` for rows (stream seed, attempt k, number of slots,
    count): (row, slot, 32 item bits) of every chosen draw, rows in order and each row's in draw order,
    and which rows are complete (found `count` distinct slots among the words the batch drew: about
    count²/(slots - count) redraws are expected, and count + twice that + 2 words are drawn; a row that
    needs more is left to the caller)."""
    extra = np.minimum(2 * count * count // (slots - count + 1) + 2, 3 * count + 8)
    width = np.where(count == 1, 1, count + extra)   # one draw: the first slot is never taken
    row, j = ragged(width)
    words = stream_words(seeds[row], ks[row], j)
    slot = words >> _U64(32)
    slot *= slots[row].astype(_U64)
    slot >>= _U64(32)
    slot = slot.astype(np.int64)
    key = row * (int(slots.max()) + 1) + slot
    order = np.argsort(key, kind="stable")   # equal keys keep draw order: the first of a run is the first drawn
    ranked = key[order]
    first = np.ones(key.size, bool)
    first[order[1:]] = ranked[1:] != ranked[:-1]
    kept = np.cumsum(first)
    starts = np.cumsum(width) - width
    before = kept[starts] - first[starts]
    complete = kept[starts + width - 1] - before >= count
    chosen = first & (kept - before[row] <= count[row]) & complete[row]
    words &= _LOW
    return row[chosen], slot[chosen], words[chosen], complete


def pairs(seeds: np.ndarray, ks: np.ndarray, n: np.ndarray, count: np.ndarray):
    """The draws of `KeyedRandom.pairs(n, count)` for rows (seed, k, n, count), n·(n-1) < 2^32:
    (row, step, a, b) of every pair. floor(w·span / 2^64) is computed from w's 32-bit halves, exactly."""
    row, step = ragged(count)
    words = stream_words(seeds[row], ks[row], step)
    span = (n * (n - 1))[row].astype(_U64)
    q = (((words >> _U64(32)) * span + (((words & _LOW) * span) >> _U64(32))) >> _U64(32)).astype(np.int64)
    last = n[row] - 1
    a, b = np.divmod(q, last)
    return row, step, a, b + (b >= a)


def codes_of(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """The texts' code points end to end, and where each starts."""
    lengths = np.fromiter(map(len, texts), np.int64, len(texts))
    return (np.frombuffer("".join(texts).encode(_ENCODING, "surrogatepass"), np.uint32),
            np.cumsum(lengths) - lengths)


def gather(start: np.ndarray, length: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Pieces of `codes` end to end: piece i is `length[i]` code points from `start[i]`. Per character
    only its source index (one repeat, one add in place) and the gather."""
    index = np.repeat(start - (np.cumsum(length) - length), length)
    index += np.arange(index.size)
    return codes[index]


def read_back(out: np.ndarray, row_lengths: Sequence[int] | np.ndarray) -> list[str]:
    """Rows of code points laid end to end, as strings: one decode, a slice per row."""
    text = out.tobytes().decode(_ENCODING, "surrogatepass")
    ends = np.cumsum(row_lengths).tolist()
    return [text[a:b] for a, b in zip([0, *ends[:-1]], ends, strict=True)]


def read_back_by_job(out: np.ndarray, rows_per_job: Sequence[int], texts: Sequence[str]) -> list[str]:
    """Rows laid end to end, job by job, each as long as its job's text: a job's rows read back as one
    fixed-width string array (cheaper than a slice each). Such an array drops trailing NULs, so the rows
    of a text ending in one are decoded."""
    strings: list[str] = []
    at = 0
    for n, text in zip(rows_per_job, texts, strict=True):
        size = len(text)
        if n:
            block = out[at:at + n * size]
            strings += read_back(block, [size] * n) if text.endswith("\x00") else block.view(f"<U{size}").tolist()
        at += n * size
    return strings


def pieces_around(changes: np.ndarray, source: np.ndarray, lengths: np.ndarray, starts: np.ndarray,
                  ends: np.ndarray, new_start: np.ndarray, new_length: np.ndarray) -> tuple[np.ndarray, ...]:
    """(pieces per row, start, length) of rows that replace spans of their source: row i has changes[i]
    non-overlapping spans [starts, ends) in its source (which begins at source[i] and is lengths[i]
    long), left to right, rows in order, each replaced by `new_length` codes from `new_start`. A row's
    pieces: the text before change 1, change 1, ..., before change c, change c, the rest."""
    last = np.cumsum(changes) - 1
    previous_end = np.concatenate(([0], ends[:-1]))
    previous_end[last - changes + 1] = 0
    n_pieces = 2 * changes + 1
    piece_row, piece = ragged(n_pieces)
    tail = np.cumsum(n_pieces) - 1
    before = np.flatnonzero((piece % 2 == 0) & (piece != n_pieces[piece_row] - 1))   # in change order
    start = np.empty(piece_row.size, np.int64)
    length = np.empty(piece_row.size, np.int64)
    start[before] = source[piece_row[before]] + previous_end
    length[before] = starts - previous_end
    start[before + 1] = new_start
    length[before + 1] = new_length
    start[tail] = source + ends[last]
    length[tail] = lengths - ends[last]
    return n_pieces, start, length


def by_job(jobs: Sequence[Job], rows: Rows, done: np.ndarray, texts: list) -> list[list[str | None]]:
    """The texts back per job in attempt order, the rows the batch left out made by the text makers."""
    made: list = texts
    if len(done) < len(rows.k):
        made = [None] * len(rows.k)
        for r, text in zip(done.tolist(), texts, strict=True):
            made[r] = text
        missing = np.ones(len(rows.k), bool)
        missing[done] = False
        for r in np.flatnonzero(missing).tolist():
            _, seed, _, maker = jobs[rows.job[r]]
            made[r] = maker(KeyedRandom.of_seed(seed, int(rows.k[r])))
    out, at = [], 0
    for _, _, attempts, _ in jobs:
        out.append(made[at:at + len(attempts)])
        at += len(attempts)
    return out


# --- substitution (homophone, synonym) ---------------------------------------------------------------------

class Substitution(NamedTuple):
    """A sentence's substitution plan as the batch takes it: the text; each slot's start and end in the
    text and its table's number (`tables.Table.id`); how many slots a variant changes; and whether every
    item has its slot's length (one character for one: the texts are then copies of the source with
    characters written over)."""

    text: str
    starts: list[int]
    ends: list[int]
    tables: list[int]
    count: int
    same_length: bool


def _flat(lists: Sequence[list[int]], size: int) -> np.ndarray:
    return np.fromiter(chain.from_iterable(lists), np.int64, size)


def substitute(jobs: Sequence[Job]) -> list[list[str | None]]:
    """For jobs (Substitution, stream seed, attempts, text maker): each attempt's text, the text maker's
    for its rng: `count` distinct slots drawn (`picks`), each replaced by its table's drawn item."""
    plans: list[Substitution] = [plan for plan, _, _, _ in jobs]
    rows = rows_of([attempts for _, _, attempts, _ in jobs])
    slots = np.fromiter((len(p.tables) for p in plans), np.int64, len(plans))
    count = np.fromiter((p.count for p in plans), np.int64, len(plans))
    seeds = np.fromiter((seed for _, seed, _, _ in jobs), _U64, len(jobs))
    row, slot, bits, complete = picks(seeds[rows.job], rows.k, slots[rows.job], count[rows.job])
    at = (np.cumsum(slots) - slots)[rows.job[row]] + slot   # the slot among the batch's
    total = int(slots.sum())
    starts = _flat([p.starts for p in plans], total)[at]
    items = draw_items(_flat([p.tables for p in plans], total)[at], bits.astype(np.int64))
    done = np.flatnonzero(complete)   # its rows, each with `count` changes, lie in `row` in this order
    job = rows.job[done]
    lengths = np.fromiter((len(p.text) for p in plans), np.int64, len(plans))[job]
    codes, code_start, code_len = item_codes()
    per_job = np.bincount(job, minlength=len(plans)).tolist()
    if all(p.same_length for p in plans):
        # Copies of each source (the text repeated as a string: no index per character), one character
        # written over each change.
        out = np.frombuffer(bytearray("".join(p.text * n for p, n in zip(plans, per_job, strict=True)),
                                      _ENCODING, "surrogatepass"), np.uint32)
        out[np.repeat(np.cumsum(lengths) - lengths, count[job]) + starts] = codes[code_start[items]]
        return by_job(jobs, rows, done, read_back_by_job(out, per_job, [p.text for p in plans]))
    order = np.lexsort((starts, row))   # each row's changes left to right
    starts, ends, items = starts[order], _flat([p.ends for p in plans], total)[at][order], items[order]
    text_codes, text_start = codes_of([p.text for p in plans])
    # The sources, then the characters of the items the rows use (a gather of a few per row).
    item_len = code_len[items]
    used = gather(code_start[items], item_len, codes)
    n_pieces, start, length = pieces_around(count[job], text_start[job], lengths, starts, ends,
                                            text_codes.size + np.cumsum(item_len) - item_len, item_len)
    out = gather(start, length, np.concatenate((text_codes, used)))
    return by_job(jobs, rows, done, read_back(out, np.add.reduceat(length, np.cumsum(n_pieces) - n_pieces)
                                              if len(n_pieces) else []))


# --- swap (eda:swap) -----------------------------------------------------------------------------------------

class Swap(NamedTuple):
    """A sentence's swap plan as the batch takes it: the text; each word's start and length in the text,
    and the index of its first equal word (equal numbers, equal words); the indices of the words swaps
    move; how many swaps a variant makes; and the input's runs of spaces between CJK characters (None:
    it has no space)."""

    text: str
    starts: list[int]
    lengths: list[int]
    equal: list[int]
    movable: list[int]
    count: int
    gaps: int | None


def swap_plan(words: Sequence[str], movable: list[int], count: int, gaps: int | None) -> Swap:
    lengths = list(map(len, words))
    first: dict[str, int] = {}
    return Swap("".join(words), list(accumulate(lengths, initial=0))[:-1], lengths,
                [first.setdefault(w, i) for i, w in enumerate(words)], movable, count, gaps)


def swap(jobs: Sequence[Job]) -> list[list[str | None]]:
    """For jobs (Swap, stream seed, attempts, text maker): each attempt's text, the text maker's for its
    rng: `count` swaps of movable words (`pairs`), made one after another; None when the words come back
    as they were or a new space appears between CJK characters."""
    from zhkd.augment.ops.eda import cjk_gaps

    plans: list[Swap] = [plan for plan, _, _, _ in jobs]
    rows = rows_of([attempts for _, _, attempts, _ in jobs])
    n = np.fromiter((len(p.movable) for p in plans), np.int64, len(plans))
    fits = n * (n - 1) < 1 << 32   # `pairs` splits words in 32-bit halves; longer sentences go one by one
    done = np.flatnonzero(fits[rows.job])
    job = rows.job[done]
    count = np.fromiter((p.count for p in plans), np.int64, len(plans))
    seeds = np.fromiter((seed for _, seed, _, _ in jobs), _U64, len(jobs))
    row, step, a, b = pairs(seeds[job], rows.k[done], n[job], count[job])
    words = np.fromiter((len(p.lengths) for p in plans), np.int64, len(plans))
    movable = _flat([p.movable for p in plans], int(n.sum()))
    movable_base = (np.cumsum(n) - n)[job][row]
    # Only the words a row's swaps touch move: number each (row, position) touched, make the swaps on
    # those numbers in step order, and read the word each position ends up holding.
    width = int(words.max())
    touched, slot = np.unique(row[:, None] * width + np.stack((movable[movable_base + a], movable[movable_base + b]),
                                                              axis=1), return_inverse=True)
    slot = slot.reshape(-1, 2)
    touched_row, position = np.divmod(touched, width)
    held = position.copy()
    for s in range(int(count.max()) if len(plans) else 0):
        at = np.flatnonzero(step == s)
        first, second = slot[at, 0], slot[at, 1]
        held[first], held[second] = held[second], held[first]
    total = int(words.sum())
    word_start, word_len, equal = (_flat([getattr(p, f) for p in plans], total) for f in ("starts", "lengths", "equal"))
    base = (np.cumsum(words) - words)[job][touched_row]
    changed = np.bincount(touched_row, weights=equal[base + held] != equal[base + position], minlength=len(done)) > 0
    text_codes, text_start = codes_of([p.text for p in plans])
    lengths = np.fromiter((len(p.text) for p in plans), np.int64, len(plans))[job]
    source = text_start[job]
    n_pieces, start, length = pieces_around(np.bincount(touched_row, minlength=len(done)), source, lengths,
                                            word_start[base + position], word_start[base + position]
                                            + word_len[base + position], source[touched_row]
                                            + word_start[base + held], word_len[base + held])
    texts: list[str | None] = read_back_by_job(gather(start, length, text_codes),
                                               np.bincount(job, minlength=len(plans)).tolist(),
                                               [p.text for p in plans])
    for i in np.flatnonzero(~changed).tolist():
        texts[i] = None
    for i in np.flatnonzero(np.fromiter((p.gaps is not None for p in plans), bool, len(plans))[job]).tolist():
        if texts[i] is not None and cjk_gaps(texts[i]) > plans[job[i]].gaps:
            texts[i] = None
    return by_job(jobs, rows, done, texts)


# --- deletion (eda:delete) -----------------------------------------------------------------------------------

# Draws of a sample the batch makes before it leaves the attempt to the text maker. At rate 0.2 on reviews,
# 11% of the attempts still repeat a word after 4 draws and under 2% after 16 (the long reviews: 30 of
# 150 words repeat one in 19 draws of 20).
SAMPLE_TRIES = 16


class Deletion(NamedTuple):
    """A sentence's deletion plan as the batch takes it: the text; each word's start and length in the
    text; the indices of the words a deletion may drop; how many a variant drops; and the input's runs of
    spaces between CJK characters (None: it has no space)."""

    text: str
    starts: list[int]
    lengths: list[int]
    movable: list[int]
    count: int
    gaps: int | None


def deletion_plan(words: Sequence[str], movable: list[int], count: int, gaps: int | None) -> Deletion:
    lengths = list(map(len, words))
    return Deletion("".join(words), list(accumulate(lengths, initial=0))[:-1], lengths, movable, count, gaps)


def below(words: np.ndarray, n: np.ndarray) -> np.ndarray:
    """`KeyedRandom.randrange(n)` of each word, floor((w >> 11) · n / 2^53), exactly in 64-bit integers:
    the 53 bits split as 32 high and 21 low (n < 2^31)."""
    x = words >> _U64(11)
    n = n.astype(_U64)
    return (((x >> _U64(21)) * n + (((x & _U64((1 << 21) - 1)) * n) >> _U64(21))) >> _U64(32)).astype(np.int64)


def distinct_draws(seeds: np.ndarray, rows: Rows, n: np.ndarray, count: np.ndarray, candidates: np.ndarray,
                   tries: int = SAMPLE_TRIES) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The draws of `KeyedRandom.sample`'s at-once path (count indices below n from words j = t·count ..
    t·count + count - 1, redrawn whole, t = 1, 2, ..., while two coincide) for the candidate rows, per job
    (n, count): (done: the rows that found distinct indices within `tries` draws, in order; row: each
    index's row, a position in `done`; the indices, each row's in draw order)."""
    done, rows_of_draw, draws = [], [], []
    pending, found, span = candidates, 0, int(n.max(initial=0)) + 1
    for t in range(tries):
        if not pending.size:
            break
        job = rows.job[pending]
        width = count[job]
        row, j = ragged(width)
        j += t * width[row]
        drawn = below(stream_words(seeds[job][row], rows.k[pending][row], j), n[job][row])
        key = np.sort(row * span + drawn)   # rows stay in order: a row's keys stay among its own
        distinct = np.ones(pending.size, bool)
        distinct[key[1:][key[1:] == key[:-1]] // span] = False   # a row that drew an index twice
        kept = distinct[row]
        done.append(pending[distinct])
        rows_of_draw.append((np.cumsum(distinct) - 1)[row[kept]] + found)
        draws.append(drawn[kept])
        found += int(distinct.sum())
        pending = pending[~distinct]
    if not done:
        return (np.zeros(0, np.int64),) * 3
    done, row = np.concatenate(done), np.concatenate(rows_of_draw)
    order = np.argsort(done)   # rows in order again, as `by_job` takes them
    position = np.empty_like(order)
    position[order] = np.arange(order.size)
    return done[order], position[row], np.concatenate(draws)


def delete(jobs: Sequence[Job]) -> list[list[str | None]]:
    """For jobs (Deletion, stream seed, attempts, text maker): each attempt's text, the text maker's for its
    rng: `KeyedRandom.sample(movable, count)`'s words dropped; None when a new space appears between CJK
    characters. The batch makes the samples drawn at once (count 1, or 4·count ≤ movable words) that find
    distinct words within `SAMPLE_TRIES` draws (`distinct_draws`); a partial shuffle, or a sample that
    needs more draws, is left to the text maker."""
    from zhkd.augment.ops.eda import cjk_gaps

    plans: list[Deletion] = [plan for plan, _, _, _ in jobs]
    rows = rows_of([attempts for _, _, attempts, _ in jobs])
    n = np.fromiter((len(p.movable) for p in plans), np.int64, len(plans))
    count = np.fromiter((p.count for p in plans), np.int64, len(plans))
    seeds = np.fromiter((seed for _, seed, _, _ in jobs), _U64, len(jobs))
    at_once = np.flatnonzero(((count == 1) | (4 * count <= n))[rows.job])
    done, row, drawn = distinct_draws(seeds, rows, n, count, at_once)
    job = rows.job[done]
    total_movable, words = int(n.sum()), np.fromiter((len(p.lengths) for p in plans), np.int64, len(plans))
    word = _flat([p.movable for p in plans], total_movable)[(np.cumsum(n) - n)[job][row] + drawn]
    at = (np.cumsum(words) - words)[job][row] + word
    total = int(words.sum())
    starts = _flat([p.starts for p in plans], total)[at]
    ends = starts + _flat([p.lengths for p in plans], total)[at]
    order = np.lexsort((starts, row))   # each row's drops left to right
    row, starts, ends = row[order], starts[order], ends[order]
    text_codes, text_start = codes_of([p.text for p in plans])
    lengths = np.fromiter((len(p.text) for p in plans), np.int64, len(plans))[job]
    zero = np.zeros(len(starts), np.int64)
    n_pieces, start, length = pieces_around(count[job], text_start[job], lengths, starts, ends, zero, zero)
    texts: list[str | None] = read_back(gather(start, length, text_codes),
                                        lengths - np.bincount(row, weights=ends - starts, minlength=len(done))
                                        .astype(np.int64))
    for i in np.flatnonzero(np.fromiter((p.gaps is not None for p in plans), bool, len(plans))[job]).tolist():
        if cjk_gaps(texts[i]) > plans[job[i]].gaps:
            texts[i] = None
    return by_job(jobs, rows, done, texts)
