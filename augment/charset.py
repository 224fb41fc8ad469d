"""Character classes the operators and the quality figures share: CJK, common characters, negators."""

from __future__ import annotations

from functools import cache

NEGATORS = frozenset("不没无非别未莫勿")
MASK_TOKEN = "[MASK]"


def is_cjk(char: str) -> bool:
    """A CJK unified ideograph (basic block, extension A, compatibility block or the supplementary planes)."""
    code = ord(char)
    return (0x4E00 <= code <= 0x9FFF or 0x3400 <= code <= 0x4DBF or 0xF900 <= code <= 0xFAFF
            or 0x20000 <= code <= 0x3FFFF)


def is_cjk_word(word: str) -> bool:
    return bool(word) and all(is_cjk(c) for c in word)


@cache
def common_chars() -> frozenset[str]:
    """GB2312 level 1 (rows 0xB0-0xD7): the 3,755 everyday characters. Anything else counts as rare."""
    chars = set()
    for row in range(0xB0, 0xD8):
        for cell in range(0xA1, 0xFF):
            try:
                chars.add(bytes((row, cell)).decode("gb2312"))
            except UnicodeDecodeError:
                continue
    return frozenset(chars)


def is_rare(char: str) -> bool:
    return is_cjk(char) and char not in common_chars()


@cache
def plain_chars() -> frozenset[str]:
    """The common characters but the negators."""
    return common_chars() - NEGATORS


def is_plain_word(word: str) -> bool:
    """Safe to put into a sentence: only common characters, and no negator (which would flip meaning)."""
    return bool(word) and plain_chars().issuperset(word)


def has_negator(word: str) -> bool:
    return any(c in NEGATORS for c in word)
