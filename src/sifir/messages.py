"""Every sentence a user reads, one table per language: ``locales/<lang>.json``.

The command line, the library's explanations and the web page all read the same tables (the page
gets the keys that start with "page." from GET /api/messages). A key is dotted by where it is
used ("explain.toy_title", "page.start"); a value is a ``str.format`` template, and every
language has the same keys with the same placeholders (a test holds them to it).

The language is chosen, first to last, by an explicit ``lang``, by $SIFIR_LANG, then by the
locale ($LC_ALL, $LC_MESSAGES, $LANG: "tr_TR.UTF-8" means Turkish); English otherwise.
"""
from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path

LOCALES = Path(__file__).resolve().parent / "locales"
DEFAULT = "en"


@lru_cache(maxsize=None)
def _load(lang: str) -> dict:
    with open(LOCALES / f"{lang}.json", encoding="utf-8") as f:
        return json.load(f)


def languages() -> list[str]:
    return sorted(p.stem for p in LOCALES.glob("*.json"))


class _Tables(dict):
    """MESSAGES[lang] -> that language's table, read from disk once."""

    def __missing__(self, lang):
        if lang not in languages():
            raise KeyError(lang)
        self[lang] = _load(lang)
        return self[lang]

    def __iter__(self):
        return iter(languages())

    def __contains__(self, lang):
        return lang in languages()

    def keys(self):
        return languages()

    def __len__(self):
        return len(languages())


MESSAGES = _Tables()


def get_messages(lang: str) -> dict:
    if lang not in MESSAGES:
        raise ValueError(f"no messages for language '{lang}' (have: {', '.join(languages())})")
    return MESSAGES[lang]


def language(lang: str | None = None) -> str:
    """The language to speak: ``lang`` if given and known, else from the environment."""
    for candidate in (lang, os.environ.get("SIFIR_LANG"), os.environ.get("LC_ALL"),
                      os.environ.get("LC_MESSAGES"), os.environ.get("LANG")):
        if candidate:
            code = candidate.split(".")[0].split("_")[0].split("-")[0].lower()
            if code in MESSAGES:
                return code
    return DEFAULT


def t(key: str, lang: str | None = None, **values) -> str:
    """The sentence ``key`` in the chosen language, filled with ``values``."""
    table = MESSAGES[language(lang)]
    template = table.get(key) or MESSAGES[DEFAULT][key]
    return template.format(**values)


def number(value: float, decimals: int = 0, lang: str | None = None) -> str:
    """``value`` with ``decimals`` decimals and grouped thousands, in the language's style (the
    table's "_decimal" and "_thousands" marks): 7,940.5 in English, 7.940,5 in Turkish."""
    table = MESSAGES[language(lang)]
    text = f"{value:,.{decimals}f}"
    marks = {",": table.get("_thousands", ","), ".": table.get("_decimal", ".")}
    return "".join(marks.get(ch, ch) for ch in text)


def page_messages(lang: str) -> dict:
    """The web page's sentences (keys "page.…", without the prefix) in ``lang``."""
    table = get_messages(lang)
    return {k[len("page."):]: v for k, v in table.items() if k.startswith("page.")}
