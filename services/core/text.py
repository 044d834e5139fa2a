"""Sentence splitting and model-format normalisation of raw arXiv abstracts (pure, no I/O)."""

from __future__ import annotations

import re

# Openers scanned left to right. Escapes come first so `\$` and `\\[` are never math openers.
_MATH_OPEN = re.compile(r"\\[\\$]|\\\(|\\\[|\$\$?")
# Bodies after an opener, up to and including the closer; `\\.` skips escaped characters.
_INLINE_BODY = re.compile(r"(?:[^$\\]|\\.)*\$", re.DOTALL)
_DISPLAY_BODY = re.compile(r"(?:[^$\\]|\\.)*\$\$", re.DOTALL)
_PAREN_BODY = re.compile(r".*?\\\)", re.DOTALL)
_BRACKET_BODY = re.compile(r".*?\\\]", re.DOTALL)
_BODY_FOR = {"$": _INLINE_BODY, "$$": _DISPLAY_BODY, "\\(": _PAREN_BODY, "\\[": _BRACKET_BODY}
# Real abstracts contain stray dollars ("over $10 billion"): a "math" span that runs this long,
# or contains a sentence boundary or a run of plain words, is a mis-pairing, so the `$` is text.
_MAX_MATH_CHARS = 400
_PROSE_IN_MATH = re.compile(
    r"[a-z]{2,}[.?!]\s+[A-Z][a-z]|(?<![\\{a-zA-Z])[a-z]{3,}(?:\s+[a-z]{2,}){3}"
)

# Braces are left out: text-mode groups are either short or, in A&A-style abstracts
# ("{Context...} {Aims...}"), whole paragraphs that must still be split.
_BRACKETS = re.compile(r"[()\[\]]")
_CLOSER_OF = {")": "(", "]": "["}
# A longer "pair" is no aside but a mis-match ([0, 1) ... [OIII]); don't let it swallow sentences.
_MAX_BRACKET_CHARS = 600

# Sentence-final punctuation and the closing quotes/brackets (or a LaTeX `\\`) kept with it,
# then whitespace, or nothing when a word runs straight into a capitalised one ("waves.When").
_CANDIDATE = re.compile(
    r"[.?!]+(?:['\")\]}\u2019\u201d]|\\\\)*(?:(\s+)|(?<=[a-z)]{2}[.?!])(?=[A-Z][a-z]))"
)
_OPENING_CHARS = frozenset("$([{\"'`\u201c\u2018")
_STRIP_TOKEN = "([{\"'`\u201c\u2018~"

# Word lists read better as text than as list literals (hence the noqa).
# Abbreviations matched in any case ("Fig.", "fig.", "FIG.") ...
_ABBREVIATIONS = frozenset(
    """e.g i.e al fig figs eq eqs eqn eqns sect sects sec secs ref refs tab tabs vs cf approx
    resp vol vols a.k.a u.s viz incl pop stat sys syst""".split()  # noqa: SIM905
)
# ... and ones whose other spellings are ordinary words or units ("Ca.", "no.", "ms.").
_ABBREVIATIONS_EXACT = frozenset("ca Dr Prof No Nos Mr Mrs Ms St Jr Chap".split())  # noqa: SIM905
_INITIAL = re.compile(r"[A-Z](?:\.-?[A-Z])*")
# After an initial or "et al." a following word from this list starts a new sentence
# ("... 10 K. We find", "... by Smith et al. The"), any other word is taken as a name.
_SENTENCE_STARTERS = frozenset(
    """We The In This Our These However Using A To For Here By While It Finally As Furthermore
    With Additionally At Although When From Such Moreover Despite Based If On They After Their
    Overall All An Both One Among Since Specifically Future Recent Thus Therefore Most Through
    Compared Notably Its Within Given Combining Further Assuming Two First Applying Instead
    Previous I Consequently Due Nevertheless There Unlike Building More No Even Together Because
    Then During Comparing Each Yet Motivated Beyond Current Some Under Interestingly Of Across
    Leveraging Recently Many Focusing Meanwhile Combined Several Three Second Hence Conversely
    Over Thanks Considering Remarkably Once Lastly Following Next Existing Similarly Alternatively
    Only Including Importantly Taking Nonetheless Also Currently But Besides Along Indeed
    Without Other So Subsequently Another Though Those That And Still Rather Previously Any
    Results Methods Aims Context Conclusions Background Objectives""".split()  # noqa: SIM905
)

_CITATION = re.compile(r"\\[Cc]ite[a-zA-Z]*\*?\s*(?:\[[^\]]*\]\s*){0,2}\{[^}]*\}")
_WORD = re.compile(r"[^\W_]+")
_TWO_WORDS = re.compile(r"(?<![^\W_])[^\W_]+[\W_]+[^\W_]")
_LETTER = re.compile(r"[^\W\d_]")


def _collapse(text: str) -> str:
    return " ".join(text.split())  # several times faster than a regex substitution


def _math_spans(text: str) -> list[tuple[int, int, int, int]]:
    """Math spans as (start, end, inner_start, inner_end), in order and non-overlapping."""
    spans: list[tuple[int, int, int, int]] = []
    # Openers whose closer was not found: none follows later either, so don't rescan (O(n^2)).
    unclosed: set[str] = set()
    pos = 0
    while (opener := _MATH_OPEN.search(text, pos)) is not None:
        token = opener.group()
        pos = opener.end()
        body_re = _BODY_FOR.get(token)
        if body_re is None:  # an escaped `\$` or `\\`
            continue
        body = None if token in unclosed else body_re.match(text, pos)
        if body is None:
            unclosed.add(token)
        else:
            inner_end = body.end() - (1 if token == "$" else 2)
            inner = text[pos:inner_end]
            mispaired = len(inner) > _MAX_MATH_CHARS or _PROSE_IN_MATH.search(inner) is not None
            if token[0] != "$" or not mispaired:
                spans.append((opener.start(), body.end(), pos, inner_end))
                pos = body.end()
                continue
        if token == "$$":
            pos = opener.start() + 1  # "$a$$b$" out of step: the second dollar may open math
        # Otherwise a stray dollar (or an unclosed opener): scan on from just after it.
    return spans


def _protected_mask(text: str, math: list[tuple[int, int, int, int]]) -> bytearray:
    """1 at every position strictly inside math or a matched () or [] pair outside math."""
    mask = bytearray(len(text) + 1)
    for start, end, _, _ in math:
        mask[start + 1 : end] = b"\x01" * (end - start - 1)
    stack: list[tuple[str, int]] = []
    for match in _BRACKETS.finditer(text):
        i = match.start()
        if mask[i]:
            continue  # brackets inside math don't count, whether balanced or not
        char = match.group()
        opener = _CLOSER_OF.get(char)
        if opener is None:
            stack.append((char, i))
            continue
        # Close the nearest opener of the same kind; unmatched brackets in between are dropped.
        for depth in range(len(stack) - 1, -1, -1):
            if stack[depth][0] == opener:
                start = stack[depth][1]
                del stack[depth:]
                if i - start <= _MAX_BRACKET_CHARS:
                    mask[start + 1 : i + 1] = b"\x01" * (i - start)
                break
    return mask


def _is_boundary(text: str, dot: int, after: int) -> bool:
    """Whether the punctuation at `dot`, with the next sentence starting at `after`, ends one."""
    nxt = text[after]
    if not (
        nxt.isupper()
        or nxt.isdigit()
        or nxt in _OPENING_CHARS
        or (nxt == "\\" and text[after + 1 : after + 2].isalpha())
    ):
        return False
    if text[dot] != "." or text[dot + 1 : dot + 2] == ".":
        return True  # "?", "!" and an ellipsis always end a sentence
    token_start = max(text.rfind(" ", 0, dot), text.rfind("\n", 0, dot)) + 1
    token = text[token_start:dot].lstrip(_STRIP_TOKEN)
    next_word = _WORD.match(text, after)
    starts_sentence = (
        next_word is not None
        and next_word.group() in _SENTENCE_STARTERS
        and text[next_word.end() : next_word.end() + 1] != "."  # "R. A. Burns": "A." is a name
    )
    if token.lower() == "al":
        return starts_sentence
    if token in _ABBREVIATIONS_EXACT:
        return False
    acronym = len(token) > 1 and token.isupper() and "." not in token  # "DR.", "MS."
    if token.lower() in _ABBREVIATIONS and not acronym:
        return False
    if _INITIAL.fullmatch(token):
        # A single capital after a number or math is a unit ("5-35 K. Eley-Rideal"), not a name.
        before = text[:token_start].rstrip()
        return starts_sentence or before[-1:].isdigit() or before.endswith("$")
    return True


def split_sentences(text: str) -> list[str]:
    """Split a raw abstract into sentences.

    Hard line wraps count as spaces. No split happens inside math, inside a bracketed
    aside, after an abbreviation or an initial, or in a number.

    Args:
        text: the abstract as it comes from arXiv, LaTeX included.

    Returns:
        The sentences in order, whitespace collapsed, wording unchanged. Joined together they
        hold every non-whitespace character of `text`, in order.
    """
    mask = _protected_mask(text, _math_spans(text))
    sentences: list[str] = []
    begin = 0
    for match in _CANDIDATE.finditer(text):
        dot, after = match.start(), match.end()
        cut = after if match.group(1) is None else match.start(1)
        # A cut strictly inside math or brackets is no boundary ("(e.g. The ...)", "$a. B$").
        if after >= len(text) or mask[cut]:
            continue
        if _is_boundary(text, dot, after):
            sentences.append(_collapse(text[begin:cut]))
            begin = after
    sentences.append(_collapse(text[begin:]))
    return [s for s in sentences if s]


def _replace_citations(text: str) -> str:
    return _CITATION.sub("<CIT>", text)


def normalise(text: str) -> str:
    """Rewrite one sentence into the format the model was trained on.

    Math (`$..$`, `$$..$$`, `\\(..\\)`, `\\[..\\]`) becomes `[MATH_tex=<inner tex>]`,
    citation commands (`\\cite`, `\\citep[..]{..}`, `\\citet`, ...) become `<CIT>`, runs of
    whitespace become one space; everything else is kept. Stray dollars stay as they are.
    """
    parts: list[str] = []
    pos = 0
    for start, end, inner_start, inner_end in _math_spans(text):
        parts.append(_replace_citations(text[pos:start]))
        parts.append(f"[MATH_tex={_collapse(text[inner_start:inner_end])}]")
        pos = end
    parts.append(_replace_citations(text[pos:]))
    return _collapse("".join(parts))


def _is_content(sentence: str) -> bool:
    """Whether a fragment is worth embedding: not bare punctuation or a heading like "Aims."."""
    return _TWO_WORDS.search(sentence) is not None and _LETTER.search(sentence) is not None


def sentences_for_embedding(abstract: str, max_sentences: int = 200) -> list[tuple[str, str]]:
    """Sentences of an abstract ready to embed.

    Args:
        abstract: the raw abstract.
        max_sentences: keep at most this many (the first ones).

    Returns:
        `(display_text, model_text)` pairs: the sentence as written and its `normalise`d form,
        without fragments too short to mean anything (bare punctuation, one-word headings).

    Raises:
        ValueError: when `max_sentences` is negative.
    """
    if max_sentences < 0:
        raise ValueError(f"max_sentences must be >= 0, got {max_sentences}")
    pairs: list[tuple[str, str]] = []
    for sentence in split_sentences(abstract):
        if len(pairs) >= max_sentences:
            break
        if _is_content(sentence):
            pairs.append((sentence, normalise(sentence)))
    return pairs
