"""Captions for world clips (templates with paraphrases and synonyms) and the parser that reads them back.

``make_caption(spec, rng)`` always names the colour, the shape and the direction (or that the object stands
still); the background, the speed, the size and the appearance change are said often but not always.
``parse_prompt(text)`` recovers every attribute a caption states (and those of reasonable paraphrases);
anything it cannot find is ``None``, which the judge treats as "not asked".
"""

from __future__ import annotations

import re
from typing import Callable

import numpy as np

from higen.world.spec import SIZE_BANDS, SPEED_BANDS, ClipSpec

# ------------------------------------------------------------------------------- vocabulary
# The first word of every list is the plain name; parsing accepts every word listed.
COLOUR_WORDS: dict[str, tuple[str, ...]] = {
    "red": ("red", "crimson", "scarlet"),
    "orange": ("orange", "tangerine"),
    "yellow": ("yellow", "golden", "lemon"),
    "green": ("green", "emerald", "jade"),
    "blue": ("blue", "azure", "cobalt", "sapphire"),
    "purple": ("purple", "violet", "magenta"),
}
SHAPE_WORDS: dict[str, tuple[str, ...]] = {
    "circle": ("circle", "ball", "disc", "disk", "dot"),
    "square": ("square", "box", "block"),
    "triangle": ("triangle",),
    "diamond": ("diamond", "rhombus", "lozenge"),
    "star": ("star",),
    "cross": ("cross", "plus sign", "plus"),
}
# Background words as they follow a preposition ("over black") or precede "background" ("a navy backdrop").
BACKGROUND_WORDS: dict[str, tuple[str, ...]] = {
    "black": ("black",),
    "white": ("white",),
    "gray": ("gray", "grey"),
    "navy": ("navy", "navy blue", "dark blue"),
}
GRADIENT_PHRASES = ("gradient", "gray gradient", "dark-to-light gradient", "shaded")
BACKGROUND_NOUNS = ("background", "backdrop")
DIRECTION_WORDS: dict[str, tuple[str, ...]] = {
    "left": ("to the left", "left", "leftward"),
    "right": ("to the right", "right", "rightward"),
    "up": ("upward", "up", "toward the top"),
    "down": ("downward", "down", "toward the bottom"),
}
MOVING_ING = ("moving", "sliding", "drifting", "gliding", "travelling")
MOVING_FINITE = ("moves", "slides", "drifts", "glides", "travels")
STILL_ING = ("standing still", "staying still", "sitting still", "not moving", "staying in place", "resting in place")
STILL_FINITE = ("stands still", "stays still", "sits still", "does not move", "stays in place", "rests in place")
SPEED_WORDS: dict[str, tuple[str, ...]] = {
    "slow": ("slowly", "gently", "leisurely"),
    "medium": ("steadily", "at a steady pace"),
    "fast": ("quickly", "rapidly", "swiftly", "fast"),
}
SIZE_WORDS: dict[str, tuple[str, ...]] = {"small": ("small", "tiny", "little"), "large": ("large", "big")}
# Appearance changes as -ing phrases and as finite verbs; "{c}" is the new colour.
CHANGE_ING: dict[str, tuple[str, ...]] = {
    "colour": ("turning {c}", "changing to {c}", "fading to {c}", "becoming {c}"),
    "grow": ("growing", "getting bigger", "expanding"),
    "shrink": ("shrinking", "getting smaller", "contracting"),
    "none": ("keeping its colour and size", "unchanging"),
}
CHANGE_FINITE: dict[str, tuple[str, ...]] = {
    "colour": ("turns {c}", "changes to {c}", "fades to {c}", "becomes {c}"),
    "grow": ("grows", "gets bigger", "expands"),
    "shrink": ("shrinks", "gets smaller", "contracts"),
    "none": ("keeps its colour and size", "stays the same"),
}

# How often optional parts are said.
P_BACKGROUND, P_SPEED, P_SIZE, P_CHANGE, P_NO_CHANGE = 0.8, 0.7, 0.5, 0.85, 0.2


# ------------------------------------------------------------------------------- captions
def speed_word(speed: float) -> str | None:
    """The caption word band of a speed (image sides per second), None in the gaps between bands."""
    return next((w for w, (lo, hi) in SPEED_BANDS.items() if lo <= speed <= hi), None)


def size_word(size: float) -> str | None:
    return next((w for w, (lo, hi) in SIZE_BANDS.items() if lo <= size <= hi), None)


def _pick(rng: np.random.Generator, options) -> str:
    return str(options[rng.integers(len(options))])


def _article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def _parts(spec: ClipSpec, rng: np.random.Generator) -> dict[str, str | None]:
    """The caption's phrases; optional ones are None when this caption leaves them out."""
    size = size_word(spec.size) if rng.random() < P_SIZE else None
    noun = " ".join(w for w in (
        _pick(rng, SIZE_WORDS[size]) if size else None,
        _pick(rng, COLOUR_WORDS[spec.colour]),
        _pick(rng, SHAPE_WORDS[spec.shape]),
    ) if w)
    if spec.direction == "still":
        ing, finite = _pick(rng, STILL_ING), _pick(rng, STILL_FINITE)
    else:
        words = SPEED_WORDS.get(speed_word(spec.speed) or "", ())
        adverb = _pick(rng, words) if words and rng.random() < P_SPEED else None
        direction = _pick(rng, DIRECTION_WORDS[spec.direction])
        ing = " ".join(w for w in (_pick(rng, MOVING_ING), adverb, direction) if w)
        finite = " ".join(w for w in (_pick(rng, MOVING_FINITE), adverb, direction) if w)
    said = rng.random() < (P_CHANGE if spec.change != "none" else P_NO_CHANGE)
    new_colour = _pick(rng, COLOUR_WORDS[spec.end_colour]) if spec.end_colour else ""
    return dict(
        noun=_article(noun), ing=ing, finite=finite, background=_background_phrase(spec.background, rng) if rng.random() < P_BACKGROUND else None,
        change_ing=_pick(rng, CHANGE_ING[spec.change]).format(c=new_colour) if said else None,
        change_finite=_pick(rng, CHANGE_FINITE[spec.change]).format(c=new_colour) if said else None,
    )


def _background_phrase(name: str, rng: np.random.Generator) -> str:
    preposition = _pick(rng, ("on", "over", "against", "in front of"))
    if name == "gradient":
        if rng.random() < 0.5:  # "over a gray gradient"
            return f"{preposition} {_article(_pick(rng, GRADIENT_PHRASES[:3]))}"
        return f"{preposition} {_article(_pick(rng, ('gradient', 'shaded')))} {_pick(rng, BACKGROUND_NOUNS)}"
    word = _pick(rng, BACKGROUND_WORDS[name])
    return f"{preposition} {word}" if rng.random() < 0.3 else f"{preposition} {_article(word)} {_pick(rng, BACKGROUND_NOUNS)}"


def _join(*words: str | None) -> str:
    return " ".join(w for w in words if w)


# Sentence structures. Each takes the parts and returns the caption (without final punctuation).
_TEMPLATES: tuple[Callable[[dict], str], ...] = (
    # "a red circle moving left on a black background" / "... moving left and turning blue on black"
    lambda p: _join(p["noun"], p["ing"], p["change_ing"] and f"and {p['change_ing']}", p["background"]),
    # "a crimson ball slides to the left over black" / "a red ball grows as it slides left over black"
    lambda p: _join(p["noun"], p["change_finite"] and f"{p['change_finite']} as it", p["finite"], p["background"]),
    # "on a white backdrop, a small green square drifts slowly upward"
    lambda p: _join(p["background"] and p["background"] + ",", p["noun"], p["finite"], p["change_finite"] and f"and {p['change_finite']}"),
    # "a blue star that turns yellow while standing still"
    lambda p: _join(p["noun"], "that", p["change_finite"] and f"{p['change_finite']} while", p["ing"] if p["change_finite"] else p["finite"], p["background"]),
    # "a red circle is moving left over black, shrinking"
    lambda p: _join(p["noun"], "is", p["ing"], p["background"]) + (f", {p['change_ing']}" if p["change_ing"] else ""),
    # "a video of an orange box gliding quickly to the right against a gray backdrop"
    lambda p: _join("a video of", p["noun"], p["ing"], p["background"], p["change_ing"] and f"while {p['change_ing']}"),
)


def make_caption(spec: ClipSpec, rng: np.random.Generator) -> str:
    """A caption for ``spec``, drawn with ``rng`` (deterministic given its state)."""
    parts = _parts(spec, rng)
    return _TEMPLATES[rng.integers(len(_TEMPLATES))](parts)


# ------------------------------------------------------------------------------- parsing
ATTRIBUTES = ("colour", "shape", "direction", "speed", "size", "background", "change", "end_colour")


def _alternation(words) -> str:
    # Longest first so "navy blue" wins over "navy"; spaces match any run of spaces or hyphens.
    return "|".join(re.escape(w).replace(r"\ ", r"[\s-]+") for w in sorted(words, key=len, reverse=True))


def _lookup(table: dict[str, tuple[str, ...]]) -> dict[str, str]:
    return {w: name for name, words in table.items() for w in words}


_COLOUR_OF = _lookup(COLOUR_WORDS)
_SHAPE_OF = _lookup(SHAPE_WORDS)
_BACKGROUND_OF = _lookup(BACKGROUND_WORDS)
_COLOUR_RE = _alternation(_COLOUR_OF)
_PREPOSITION = r"(?:on|over|against|in\s+front\s+of|across|atop)"
_NOUN = r"(?:background|backdrop|backround|canvas|ground|surface)"
_GRADIENT_RE = re.compile(r"\b(?:(?:gray|grey|dark|light|dark[\s-]+to[\s-]+light)[\s-]+)?gradient\b(?:\s+" + _NOUN + r")?|\bshaded\s+" + _NOUN + r"\b")
_PLAIN_BACKGROUND_RE = re.compile(
    rf"\b{_PREPOSITION}\s+(?:(?:a|an|the)\s+)?(?:plain\s+|solid\s+)?(?P<a>{_alternation(_BACKGROUND_OF)})\b(?:\s+{_NOUN}\b)?"
    rf"|\b(?P<b>{_alternation(_BACKGROUND_OF)})\s+{_NOUN}\b"
)
_CHANGE_COLOUR_RE = re.compile(
    r"\b(?:turn(?:s|ing|ed)?|becom(?:es|ing|e)|chang(?:es|ing|e)(?:\s+colou?r)?\s+(?:in)?to|fad(?:es|ing|e)\s+(?:in)?to|shift(?:s|ing)?\s+to)"
    rf"\s+(?:(?:a|an)\s+)?(?P<c>{_COLOUR_RE})\b"
)
_CHANGE_RE = {
    "grow": re.compile(r"\b(?:grow(?:s|ing)?|getting\s+(?:bigger|larger)|gets\s+(?:bigger|larger)|expand(?:s|ing)?|enlarg(?:es|ing)|swell(?:s|ing)?)\b"),
    "shrink": re.compile(r"\b(?:shrink(?:s|ing)?|getting\s+smaller|gets\s+smaller|contract(?:s|ing)?|dwindl(?:es|ing))\b"),
    "none": re.compile(r"\b(?:unchanging|stay(?:s|ing)?\s+the\s+same|keep(?:s|ing)?\s+its\s+(?:colou?r|size|look)(?:\s+and\s+(?:colou?r|size))?)\b"),
}
_STILL_RE = re.compile(
    r"\b(?:(?:stand|stay|sit|remain)(?:s|ing)?\s+still|still|motionless|stationary|unmoving|static|not\s+moving|"
    r"(?:does\s*n[o']t|doesn't|does\s+not)\s+move|(?:stay|rest|remain)(?:s|ing)?\s+in\s+place|at\s+rest)\b"
)
_DIRECTION_RE = {
    "left": re.compile(r"\bleft(?:wards?)?\b"),
    "right": re.compile(r"\bright(?:wards?)?\b"),
    "up": re.compile(r"\b(?:up(?:wards?)?|rises|rising|ascend(?:s|ing)?|towards?\s+the\s+top)\b"),
    "down": re.compile(r"\b(?:down(?:wards?)?|falls|falling|sinks|sinking|descend(?:s|ing)?|towards?\s+the\s+bottom)\b"),
}
_SPEED_RE = {name: re.compile(rf"\b(?:{_alternation(words + extra)})\b") for name, words, extra in (
    ("slow", SPEED_WORDS["slow"], ("slow", "lazily")),
    ("medium", SPEED_WORDS["medium"], ("steady", "moderately", "at a moderate pace")),
    ("fast", SPEED_WORDS["fast"], ("quick", "speedily", "rapid")),
)}
_SIZE_RE = {name: re.compile(rf"\b(?:{_alternation(words + extra)})\b") for name, words, extra in (
    ("small", SIZE_WORDS["small"], ()), ("large", SIZE_WORDS["large"], ("huge",)),
)}


def _normalise_text(text: str) -> str:
    text = text.lower().replace("’", "'")
    return re.sub(r"\s+", " ", re.sub(r"[^a-z0-9',\s-]", " ", text)).strip()


def _cut(text: str, match: re.Match) -> str:
    """Remove a matched phrase (so its words are not read again, e.g. "navy blue" as the object's colour)."""
    return text[: match.start()] + " , " + text[match.end():]


def _unique(found: set[str]) -> str | None:
    """One value when the text names exactly one; None when it names none or contradicts itself."""
    return next(iter(found)) if len(found) == 1 else None


def parse_prompt(text: str) -> dict[str, str | None]:
    """Read a caption's attributes: ``colour``, ``shape``, ``direction`` (left/right/up/down/still), ``speed``
    (slow/medium/fast), ``size`` (small/large), ``background``, ``change`` (none/colour/grow/shrink) and
    ``end_colour`` (the colour a colour change ends in). Attributes the text does not state are None."""
    text = _normalise_text(text)
    out: dict[str, str | None] = dict.fromkeys(ATTRIBUTES)
    # The background first: its colour words must not be read as the object's colour.
    if (m := _GRADIENT_RE.search(text)) is not None:
        out["background"], text = "gradient", _cut(text, m)
    elif (m := _PLAIN_BACKGROUND_RE.search(text)) is not None:
        out["background"], text = _BACKGROUND_OF[re.sub(r"[\s-]+", " ", m.group("a") or m.group("b"))], _cut(text, m)
    # Then the appearance change, whose new colour must not be read as the object's colour either.
    if (m := _CHANGE_COLOUR_RE.search(text)) is not None:
        out["change"], out["end_colour"], text = "colour", _COLOUR_OF[m.group("c")], _cut(text, m)
    else:
        found = {name for name, pattern in _CHANGE_RE.items() if pattern.search(text)}
        out["change"] = _unique(found)
        for pattern in _CHANGE_RE.values():
            text = pattern.sub(" , ", text)
    out["colour"] = _unique({_COLOUR_OF[w] for w in re.findall(rf"\b(?:{_COLOUR_RE})\b", text)})
    out["shape"] = _unique({_SHAPE_OF[re.sub(r"[\s-]+", " ", w)] for w in re.findall(rf"\b(?:{_alternation(_SHAPE_OF)})\b", text)})
    still = _STILL_RE.search(text) is not None
    moving = {name for name, pattern in _DIRECTION_RE.items() if pattern.search(text)}
    out["direction"] = _unique(moving | ({"still"} if still else set()))
    out["speed"] = _unique({name for name, pattern in _SPEED_RE.items() if pattern.search(text)})
    out["size"] = _unique({name for name, pattern in _SIZE_RE.items() if pattern.search(text)})
    return out


# The values of each attribute, in the order of ``attribute_labels`` (a model's AttributeContext vocabulary).
ATTRIBUTE_VALUES: dict[str, tuple[str, ...]] = {
    "colour": tuple(COLOUR_WORDS), "shape": tuple(SHAPE_WORDS), "direction": (*DIRECTION_WORDS, "still"),
    "speed": tuple(SPEED_WORDS), "size": tuple(SIZE_WORDS), "background": (*BACKGROUND_WORDS, "gradient"),
    "change": tuple(CHANGE_ING), "end_colour": tuple(COLOUR_WORDS),
}


def attribute_labels(captions: list[str]) -> list[list[int]]:
    """Each caption's attributes as indices into ``ATTRIBUTE_VALUES`` (``parse_prompt``'s reading); an attribute
    the caption does not state gets ``len(values)``, "not said"."""
    out = []
    for caption in captions:
        found = parse_prompt(caption)
        out.append([values.index(found[name]) if found[name] is not None else len(values) for name, values in ATTRIBUTE_VALUES.items()])
    return out


def spec_attributes(spec: ClipSpec) -> dict[str, str | None]:
    """What a spec is, in ``parse_prompt``'s terms (every attribute known; speed/size None in the gaps)."""
    return dict(
        colour=spec.colour, shape=spec.shape, direction=spec.direction,
        speed=speed_word(spec.speed) if spec.direction != "still" else None, size=size_word(spec.size),
        background=spec.background, change=spec.change, end_colour=spec.end_colour,
    )
