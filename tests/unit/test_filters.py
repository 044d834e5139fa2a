"""Unit tests of the subscription filters: author names, keyword terms, cross-lists."""

from __future__ import annotations

import pytest

from services.alerts.filters import (
    author_key,
    contains_any,
    follows,
    passes_cross_lists,
    passes_terms,
)


@pytest.mark.parametrize(
    "name",
    [
        "Smith, John A.",
        "Smith, J.",
        "J. A. Smith",
        "John Smith",
        "J.~Smith",
        "  john   SMITH ",
        "Smith, Jr., John",
        "John Smith Jr.",
    ],
)
def test_author_spellings_share_one_key(name: str) -> None:
    assert author_key(name) == "smith|j"


def test_author_keys_drop_accents_and_latex_and_keep_particles_apart() -> None:
    assert author_key('M\\"uller, Anna') == author_key("Anna Müller") == "muller|a"
    assert author_key("Garc\\'{\\i}a, P.") == author_key("Pablo García") == "garcia|p"
    assert author_key("van der Berg, A.") == author_key("A. van der Berg") == "berg|a"
    assert author_key("O'Brien, K.") == author_key("Kate O'Brien")
    assert author_key("Smith, J.") != author_key("Smith, K.")
    assert author_key("Planck Collaboration") == "collaboration|p"
    assert author_key("Euclid") == "euclid|"
    assert author_key("...") == "" and author_key("") == ""


def test_follows_matches_any_author() -> None:
    assert follows(["A. Author", "Jane Doe"], ["Doe, J."])
    assert not follows(["A. Author", "Jane Doe"], ["Doe, K."])
    assert not follows(["Jane Doe"], [])


def test_terms_match_whole_words_case_insensitively() -> None:
    text = "Dark  matter halos of dwarf galaxies; the Tully-Fisher relation."
    assert contains_any(text, ["dark matter"])
    assert contains_any(text, ["HALOS"])
    assert contains_any(text, ["tully-fisher"])
    assert not contains_any(text, ["halo"])  # a word, not a prefix
    assert not contains_any(text, ["matter halo"])
    assert not contains_any(text, ["a+b"])  # regex characters are literal


def test_include_and_exclude() -> None:
    text = "Bars in disc galaxies drive gas inwards."
    assert passes_terms(text, [], [])
    assert passes_terms(text, ["bars", "spirals"], [])
    assert not passes_terms(text, ["spirals"], [])
    assert not passes_terms(text, ["bars"], ["gas"])
    assert passes_terms(text, [], ["quasar"])


def test_cross_lists() -> None:
    assert passes_cross_lists(["astro-ph.CO", "astro-ph.GA"], ["astro-ph.GA"], True)
    assert not passes_cross_lists(["astro-ph.CO", "astro-ph.GA"], ["astro-ph.GA"], False)
    assert passes_cross_lists(["astro-ph.GA", "astro-ph.CO"], ["astro-ph.GA"], False)
    assert passes_cross_lists(["astro-ph.CO"], [], False)  # no categories: nothing to restrict
