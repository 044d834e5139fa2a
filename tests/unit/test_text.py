"""Unit tests of services.core.text: tricky LaTeX/abbreviation cases and properties over real abstracts."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest

from services.core.text import normalise, sentences_for_embedding, split_sentences

# 120 whole JSON lines of shared/data/astro-ph/astro-ph-train.jsonl.gz, in file order, picked by
# sorted(random.Random(42).sample(range(n_lines), 120)). Integration tests read this file too.
SAMPLE = Path(__file__).resolve().parents[1] / "data" / "papers-sample.jsonl"
PAPER_FIELDS = {
    "arxiv_id",
    "version",
    "announced",
    "title",
    "abstract",
    "authors",
    "categories",
    "comment",
}
# An unescaped dollar: not preceded by an odd number of backslashes.
DOLLAR = re.compile(r"(?<!\\)(?:\\\\)*\$")


def _load_sample() -> list[dict[str, object]]:
    with SAMPLE.open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines]


PAPERS = _load_sample()
ABSTRACTS = [str(paper["abstract"]) for paper in PAPERS]


def _dollars(text: str) -> int:
    return len(DOLLAR.findall(text))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "Smith et al. (2020) found a bar. We find none.",
            ["Smith et al. (2020) found a bar.", "We find none."],
            id="et-al-year",
        ),
        pytest.param(
            "As shown by Smith et al. We find none.",
            ["As shown by Smith et al.", "We find none."],
            id="et-al-ends-sentence",
        ),
        pytest.param(
            "the Edenhofer et al. Gaia map is used.",
            ["the Edenhofer et al. Gaia map is used."],
            id="et-al-then-name",
        ),
        pytest.param(
            "galaxies at z~2. We find a bar.",
            ["galaxies at z~2.", "We find a bar."],
            id="number-then-sentence",
        ),
        pytest.param(
            "a mass of $10^{11} M_\\odot$. The halo is hot.",
            ["a mass of $10^{11} M_\\odot$.", "The halo is hot."],
            id="split-after-math",
        ),
        pytest.param(
            "two massive ($M_\\text{star}=10^{11}M_\\odot$)\ngalaxies undergoing\nstripping. We"
            " find stars.",
            [
                "two massive ($M_\\text{star}=10^{11}M_\\odot$) galaxies undergoing stripping.",
                "We find stars.",
            ],
            id="math-in-parens-and-wraps",
        ),
        pytest.param(
            "We fit $a = 1. B$ to data. Then more.",
            ["We fit $a = 1. B$ to data.", "Then more."],
            id="no-split-inside-inline-math",
        ),
        pytest.param(
            "It costs \\$5. Then $x$ is $y$.",
            ["It costs \\$5.", "Then $x$ is $y$."],
            id="escaped-dollar",
        ),
        pytest.param(
            "A display $$ x = 1. Y $$ here. And \\( a. B \\) and \\[ c. D \\] too.",
            ["A display $$ x = 1. Y $$ here.", "And \\( a. B \\) and \\[ c. D \\] too."],
            id="display-and-bracket-math",
        ),
        pytest.param(
            "with $\\log U$$\\approx$-2. We find $z$$\\sim$4.8 sources.",
            ["with $\\log U$$\\approx$-2.", "We find $z$$\\sim$4.8 sources."],
            id="adjacent-inline-math-is-not-display",
        ),
        pytest.param(
            "Some objects (e.g. The Cannon. Also others) are fit. We stop.",
            ["Some objects (e.g. The Cannon. Also others) are fit.", "We stop."],
            id="no-split-inside-parentheses",
        ),
        pytest.param(
            "Lines (see Fig. 3). The fit is good.",
            ["Lines (see Fig. 3).", "The fit is good."],
            id="split-after-closing-parenthesis",
        ),
        pytest.param(
            "See Fig. 3, Figs. 4 and Eq. 2, Eqs. 5, Sect. 2, Sec. 3, Ref. 9 and Tab. 1 now.",
            ["See Fig. 3, Figs. 4 and Eq. 2, Eqs. 5, Sect. 2, Sec. 3, Ref. 9 and Tab. 1 now."],
            id="reference-abbreviations",
        ),
        pytest.param(
            "Tracers, e.g. CO, i.e. Molecules, A vs. B, cf. Figure 2, approx. 3, ca. 5, resp. B.",
            ["Tracers, e.g. CO, i.e. Molecules, A vs. B, cf. Figure 2, approx. 3, ca. 5, resp. B."],
            id="latin-abbreviations",
        ),
        pytest.param(
            "Dr. Who and Prof. Smith, No. 5, Vol. 2, a.k.a. Bob, in the U.S. Navy met.",
            ["Dr. Who and Prof. Smith, No. 5, Vol. 2, a.k.a. Bob, in the U.S. Navy met."],
            id="title-abbreviations",
        ),
        pytest.param(
            "Found by M. Smith and J. K. T. Qvam with the Vera C. Rubin Observatory. We agree.",
            [
                "Found by M. Smith and J. K. T. Qvam with the Vera C. Rubin Observatory.",
                "We agree.",
            ],
            id="initials",
        ),
        pytest.param(
            "as in R. A. Burns et al. (2020). It fits.",
            ["as in R. A. Burns et al. (2020).", "It fits."],
            id="initial-a-is-not-an-article",
        ),
        pytest.param(
            "cold gas at 5-35 K. Eley-Rideal reactions then. Type I. We end.",
            ["cold gas at 5-35 K.", "Eley-Rideal reactions then.", "Type I.", "We end."],
            id="unit-or-numeral-not-initial",
        ),
        pytest.param(
            "Values are 3.5 and 10.2 kpc. Version 2.0.1 is out. 20% remain.",
            ["Values are 3.5 and 10.2 kpc.", "Version 2.0.1 is out.", "20% remain."],
            id="decimals-versions-and-digit-start",
        ),
        pytest.param(
            'Is it? Yes! $\\gamma$-rays are seen. (This) works. "Quoted" too.',
            ["Is it?", "Yes!", "$\\gamma$-rays are seen.", "(This) works.", '"Quoted" too.'],
            id="question-exclamation-and-openers",
        ),
        pytest.param(
            "we do this.\nWe then\nwrap lines. the end",
            ["we do this.", "We then wrap lines. the end"],
            id="newline-wraps-and-lowercase-start",
        ),
        pytest.param(
            "A last sentence without a period",
            ["A last sentence without a period"],
            id="no-final-period",
        ),
        pytest.param(
            "It costs over $10 billion over the next two decades. We find $x=1$ here.",
            ["It costs over $10 billion over the next two decades.", "We find $x=1$ here."],
            id="stray-dollar-does-not-swallow-text",
        ),
        pytest.param(
            "{Dust is here.} {We model it.}",
            ["{Dust is here.}", "{We model it.}"],
            id="aa-braced-sections",
        ),
        pytest.param(
            "strongly-lensed waves.When fitting, we use astro-ph.GA data.",
            ["strongly-lensed waves.", "When fitting, we use astro-ph.GA data."],
            id="missing-space-after-period",
        ),
        pytest.param(
            "relations. \\citet{Desomma2021} refined them.",
            ["relations.", "\\citet{Desomma2021} refined them."],
            id="sentence-starting-with-citation",
        ),
        pytest.param("", [], id="empty"),
        pytest.param(" \n  ", [], id="whitespace-only"),
    ],
)
def test_split_sentences_cases(text: str, expected: list[str]) -> None:
    assert split_sentences(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "mass of $10^{11}\n M_\\odot$ here",
            "mass of [MATH_tex=10^{11} M_\\odot] here",
            id="inline",
        ),
        pytest.param("a $$ x = 1 $$ b", "a [MATH_tex=x = 1] b", id="display-dollars"),
        pytest.param("a \\( x \\) b \\[ y \\] c", "a [MATH_tex=x] b [MATH_tex=y] c", id="parens"),
        pytest.param(
            "$\\log U$$\\approx$-2", "[MATH_tex=\\log U][MATH_tex=\\approx]-2", id="adjacent"
        ),
        pytest.param("costs \\$5 and $x$", "costs \\$5 and [MATH_tex=x]", id="escaped-dollar"),
        pytest.param(
            "over $10 billion over the next two decades",
            "over $10 billion over the next two decades",
            id="stray-dollar-kept",
        ),
        pytest.param(
            "as in \\citep{a,b} and \\citet[see][p. 3]{c} or \\citealt{d}",
            "as in <CIT> and <CIT> or <CIT>",
            id="citations",
        ),
        pytest.param(
            "\\citeauthor{x} and \\citeyear{x} and \\citep*{y} and \\Citet{z} agree",
            "<CIT> and <CIT> and <CIT> and <CIT> agree",
            id="citation-variants",
        ),
        pytest.param("x $$ y", "x $$ y", id="unclosed-display-kept"),
        pytest.param("$a$$b", "[MATH_tex=a]$b", id="unclosed-inline-kept"),
        pytest.param("  many\n\tspaces   here ", "many spaces here", id="whitespace"),
        pytest.param(
            "Keep \\textit{Gaia} [OIII] (x) as is.",
            "Keep \\textit{Gaia} [OIII] (x) as is.",
            id="other-text-kept",
        ),
    ],
)
def test_normalise_cases(text: str, expected: str) -> None:
    assert normalise(text) == expected


def test_sentences_for_embedding_pairs_display_and_model_text() -> None:
    abstract = "Context. We model $M_\\odot$ stars \\citep{a}. (...) We end.\n(Abridged)"
    assert sentences_for_embedding(abstract) == [
        ("We model $M_\\odot$ stars \\citep{a}.", "We model [MATH_tex=M_\\odot] stars <CIT>."),
        ("We end.", "We end."),
    ]


def test_sentences_for_embedding_caps_count() -> None:
    abstract = " ".join(f"Sentence number {i} is here." for i in range(50))
    assert len(sentences_for_embedding(abstract)) == 50
    assert [d for d, _ in sentences_for_embedding(abstract, max_sentences=3)] == [
        "Sentence number 0 is here.",
        "Sentence number 1 is here.",
        "Sentence number 2 is here.",
    ]
    assert sentences_for_embedding(abstract, max_sentences=0) == []
    with pytest.raises(ValueError, match="max_sentences"):
        sentences_for_embedding(abstract, max_sentences=-1)


def test_sample_file_keeps_the_paper_format() -> None:
    assert len(PAPERS) == 120
    assert len({paper["arxiv_id"] for paper in PAPERS}) == 120
    for paper in PAPERS:
        assert set(paper) == PAPER_FIELDS
        assert isinstance(paper["abstract"], str) and paper["abstract"].strip()


@pytest.mark.parametrize("abstract", ABSTRACTS)
def test_sentences_keep_every_character_in_order(abstract: str) -> None:
    sentences = split_sentences(abstract)
    assert "".join(sentences).replace(" ", "") == "".join(abstract.split())
    for sentence in sentences:
        assert sentence == " ".join(sentence.split()) and sentence


@pytest.mark.parametrize("abstract", ABSTRACTS)
def test_sentences_never_split_math(abstract: str) -> None:
    assert _dollars(abstract) % 2 == 0  # the sample has no stray dollars
    for sentence in split_sentences(abstract):
        assert _dollars(sentence) % 2 == 0, sentence
        assert _dollars(normalise(sentence)) == 0, sentence


@pytest.mark.parametrize("abstract", ABSTRACTS)
def test_a_sentence_is_not_split_again(abstract: str) -> None:
    for sentence in split_sentences(abstract):
        assert split_sentences(sentence) == [sentence]


@pytest.mark.parametrize("abstract", ABSTRACTS)
def test_embedding_pairs_follow_the_sentences(abstract: str) -> None:
    sentences = split_sentences(abstract)
    pairs = sentences_for_embedding(abstract)
    displays = iter(sentences)
    for display, model in pairs:
        assert display in displays  # a subsequence, in order
        assert model == normalise(display)
        assert "\n" not in model and "$" not in model


def test_typical_abstracts_have_3_to_20_sentences() -> None:
    counts = [len(sentences_for_embedding(abstract)) for abstract in ABSTRACTS]
    assert max(counts) <= 20
    assert sum(3 <= n <= 20 for n in counts) >= 0.95 * len(counts)
    assert 5 <= sorted(counts)[len(counts) // 2] <= 12


def _fuzz_texts(count: int) -> list[str]:
    pieces = [*"ab Z.?!$\\()[]{}\n~'\"0", "et al. ", "e.g. ", "\\cite{x}", "$$", "\\(", "\\)"]
    pieces += ["\\[", "\\]", "We ", "K. ", "M. ", "3.5"]
    rng = random.Random(0)
    return ["".join(rng.choices(pieces, k=rng.randint(0, 40))) for _ in range(count)]


def test_properties_hold_on_arbitrary_latex_soup() -> None:
    for text in _fuzz_texts(2000):
        sentences = split_sentences(text)
        assert "".join(sentences).replace(" ", "") == "".join(text.split()), text
        for sentence in sentences:
            assert split_sentences(sentence) == [sentence], text
            assert normalise(sentence) == " ".join(normalise(sentence).split())
        assert len(sentences_for_embedding(text)) <= len(sentences)
