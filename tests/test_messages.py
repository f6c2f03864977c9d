"""messages: one table per language, the same keys and placeholders in each, and the choice of language."""
import re
import string

import pytest

from sifir import messages
from sifir.messages import MESSAGES, get_messages, language, page_messages, t


def fields(template: str) -> set:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}


def test_there_are_english_and_turkish_tables():
    assert {"en", "tr"} <= set(messages.languages())


@pytest.mark.parametrize("lang", sorted(set(MESSAGES) - {"en"}))
def test_every_language_has_the_same_keys_and_placeholders(lang):
    assert set(MESSAGES[lang]) == set(MESSAGES["en"])
    for key, template in MESSAGES["en"].items():
        assert fields(MESSAGES[lang][key]) == fields(template), key


@pytest.mark.parametrize("lang", sorted(MESSAGES))
def test_page_sentences_use_plain_placeholders(lang):
    # the page fills "{name}" itself (i18n.js), so no format specs or positional fields there
    for key, template in page_messages(lang).items():
        for _, name, spec, conversion in string.Formatter().parse(template):
            if name is not None:
                assert re.fullmatch(r"[a-z_]+", name) and not spec and not conversion, (key, template)


def test_language_comes_from_the_argument_then_the_environment(monkeypatch):
    for var in ("SIFIR_LANG", "LC_ALL", "LC_MESSAGES", "LANG"):
        monkeypatch.delenv(var, raising=False)
    assert language() == "en"
    monkeypatch.setenv("LANG", "tr_TR.UTF-8")
    assert language() == "tr"
    monkeypatch.setenv("SIFIR_LANG", "en")
    assert language() == "en"
    assert language("tr") == "tr"
    monkeypatch.setenv("SIFIR_LANG", "xx")     # unknown: the next choice decides
    assert language() == "tr"


def test_t_fills_the_template_in_the_chosen_language():
    assert t("page.reads", lang="en", digit=7) == "It reads a 7"
    assert t("page.reads", lang="tr", digit=7) == "Okunan: 7"


def test_unknown_language_is_refused():
    with pytest.raises(ValueError, match="have: en, tr"):
        get_messages("xx")
