"""`sifir explain`: the tutorial's walk-through, in English and in Turkish."""
import re
from collections import Counter

import pytest

from sifir import cli
from sifir.messages import get_messages

TOY_LINES = ("h = x + w1 = 10 + (-2) = 8", "y = h · w2 = 8 · 3 = 24", "dy/dh = w2 = 3,  dh/dw1 = 1",
             "dy/dw1 = dy/dh · dh/dw1 = 3 · 1 = 3", "dy/dw2 = h = 8")


def explain(capsys, *args) -> str:
    assert cli.main(["explain", *args]) == 0
    return capsys.readouterr().out


# Counts are prose, written the language's way: 7,940 in English, 7.940 in Turkish. Formulas and
# arrays keep Python's decimal point in both (0.01, 2.4131). A grouped number is a digit run
# in groups of exactly three after the first, not followed by more digits.
GROUPED = {"en": r"\d{1,3}(?:,\d{3})+", "tr": r"\d{1,3}(?:\.\d{3})+"}


def numbers(text: str, lang: str) -> Counter:
    """Every number's value in the text: grouped counts read with the language's separator,
    the rest as Python writes them."""
    grouped = GROUPED[lang]
    pattern = rf"(?<![\d.,])-?(?:{grouped}(?![\d])|\d+(?:\.\d+)?)"
    return Counter(re.sub(r"[.,]", "", n) if re.fullmatch(f"-?{grouped}", n) else n
                   for n in re.findall(pattern, text))


def test_english_walkthrough_has_the_tutorials_numbers(capsys, mnist_dir):
    out = explain(capsys, "--data-dir", str(mnist_dir))
    for line in TOY_LINES:
        assert line in out
    assert "learnable weights: 7,940  (+ 20 biases = 7,960 parameters)" in out
    assert "W1: 10×784" in out and "W2: 10×10" in out and "(10, 784)" not in out
    assert "untrained network" in out and "the first MNIST test image, a 7" in out
    assert "Σ|·|: the sum of the absolute values" in out
    assert "55,000 training images" in out


def test_turkish_walkthrough_has_the_same_numbers_in_turkish_style(capsys, mnist_dir):
    en = explain(capsys, "--data-dir", str(mnist_dir))
    tr = explain(capsys, "--lang", "tr", "--data-dir", str(mnist_dir))
    for line in TOY_LINES:
        assert line in tr
    assert "öğrenilebilir ağırlık sayısı: 7.940; 20 bias ile birlikte toplam 7.960 parametre" in tr
    assert "55.000 eğitim görüntüsü" in tr
    assert "eğitilmemiş ağ" in tr and "ilk MNIST test görüntüsü (bir 7)" in tr
    for english_style in ("7,940", "7,960", "55,000"):  # a Turkish reader takes these for decimals
        assert english_style not in tr
    assert "zincir kuralı" in tr and "ileri geçiş" in tr and "kayıp = −log p[7]" in tr
    assert "learnable" not in tr and "forward" not in tr and "backward" not in tr
    # Every figure of the English walk-through, and no other, appears in the Turkish one.
    assert numbers(tr, "tr") == numbers(en, "en")
    assert numbers(tr, "tr")["7940"] == 1 and numbers(en, "en")["0.01"] == 1


def test_the_number_reader_tells_counts_from_decimals():
    assert numbers("7.940 ve 0.01, 2.4131 ile 55.000", "tr") == Counter(["7940", "0.01", "2.4131", "55000"])
    assert numbers("7,940 and 0.01, 2.4131 and 55,000", "en") == Counter(["7940", "0.01", "2.4131", "55000"])
    assert numbers("7,940", "tr") != numbers("7,940", "en")


def test_turkish_walkthrough_without_data(capsys, tmp_path):
    out = explain(capsys, "--lang", "tr", "--data-dir", str(tmp_path), "--lr", "0.1")
    assert "bir adım: lr = 0.1" in out and "w1 = -2.3,  w2 = 2.2" in out  # −2 − 0.1·3, 3 − 0.1·8
    assert "elle çizilmiş bir 1 (MNIST diskte yok)" in out


def test_unknown_language(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["explain", "--lang", "xx"])
    assert e.value.code == 2
    assert "invalid choice: 'xx'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="have: en, tr"):
        get_messages("xx")


def test_numbers_in_prose_follow_the_language():
    from sifir.messages import number
    assert (number(7940, "en"), number(7940, "tr")) == ("7,940", "7.940")
    assert (number(0.01, "en", 2), number(0.01, "tr", 2)) == ("0.01", "0,01")
    assert number(1234567.5, "tr", 1) == "1.234.567,5"
