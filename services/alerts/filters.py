"""A subscription's filters people ask for: keyword include/exclude, followed authors, cross-lists.

Pure functions, no I/O: the alert hook applies them after percolation. A paper by a followed
author always alerts (even one that percolation did not reach, or below the threshold, in
another category, or without an include term); only an exclude term or the reader's own
"not relevant" keeps it out.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from functools import lru_cache

REASON_AUTHOR = "author you follow"
REASON_INTERESTS = "related to your interests"

# Name suffixes that are not a surname ("Smith Jr.", "J. Smith III").
_SUFFIXES = {"jr", "sr", "ii", "iii", "iv", "v"}
# LaTeX accent commands as arXiv metadata writes them: M\"uller, Garc\'{\i}a.
_LATEX_ACCENT = re.compile(r"\\[\"'`^~=.uvHckb]\s*|[{}]")
_LATEX_DOTLESS = re.compile(r"\\([ij])\b")


def author_key(name: str) -> str:
    """A name reduced to ``surname|first initial``, for matching authors written differently.

    ``"Smith, John A."``, ``"J. A. Smith"``, ``"John Smith"`` and ``"J.~Smith"`` all give
    ``"smith|j"``; accents and LaTeX accent commands are dropped (``M\\"uller`` = ``Müller``
    = ``Muller``). A surname with particles keeps its last word (``"van der Berg, A."`` =
    ``"A. van der Berg"``). A single word gives ``"word|"`` (matches only itself). An
    empty or punctuation-only name gives ``""``.
    """
    text = _LATEX_ACCENT.sub("", _LATEX_DOTLESS.sub(r"\1", name)).replace("~", " ")
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c)).lower()
    if "," in text:
        surname, _, given = text.partition(",")
        given_words = _words(given)
        if given_words and given_words[0] in _SUFFIXES:  # "Smith, Jr., John"
            given_words = _words(given.partition(",")[2])
        surname_words = _words(surname)
    else:
        words = _words(text)
        while len(words) > 1 and words[-1] in _SUFFIXES:
            words.pop()
        surname_words, given_words = words[-1:], words[:-1]
    if not surname_words:
        return ""
    initial = given_words[0][0] if given_words else ""
    return f"{surname_words[-1]}|{initial}"


def _words(text: str) -> list[str]:
    return [w for w in re.split(r"[^\w'-]+", text) if w.strip("'-")]


def author_keys(names: Iterable[str]) -> set[str]:
    return {k for k in (author_key(n) for n in names) if k}


@lru_cache(maxsize=4096)
def _term_pattern(term: str) -> re.Pattern[str]:
    """Whole words, any whitespace between them, case-insensitive ("dark  Matter" = "dark matter")."""
    words = [re.escape(w) for w in term.split()]
    return re.compile(r"(?<!\w)" + r"\s+".join(words) + r"(?!\w)", re.IGNORECASE)


def contains_any(text: str, terms: Sequence[str]) -> bool:
    """Whether ``text`` contains one of ``terms`` as whole words (case-insensitive)."""
    return any(_term_pattern(t).search(text) for t in terms if t.strip())


def passes_terms(text: str, include: Sequence[str], exclude: Sequence[str]) -> bool:
    """No exclude term, and (when include terms are given) at least one include term."""
    if exclude and contains_any(text, exclude):
        return False
    return not include or contains_any(text, include)


def passes_cross_lists(categories: Sequence[str], wanted: Sequence[str], cross_lists: bool) -> bool:
    """With ``cross_lists`` off, only papers whose primary (first) category is wanted."""
    if cross_lists or not wanted:
        return True
    return bool(categories) and categories[0] in wanted


def follows(paper_authors: Sequence[str], followed: Sequence[str]) -> bool:
    """Whether one of the paper's authors is one of the followed authors."""
    return bool(followed) and bool(author_keys(paper_authors) & author_keys(followed))
