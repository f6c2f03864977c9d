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


def numbers(text: str) -> Counter:
    return Counter(re.findall(r"-?\d+(?:[.,]\d+)*", text))


def test_english_walkthrough_has_the_tutorials_numbers(capsys, mnist_dir):
    out = explain(capsys, "--data-dir", str(mnist_dir))
    for line in TOY_LINES:
        assert line in out
    assert "learnable weights: 7,940  (+ 20 biases = 7,960 parameters)" in out
    assert "W1: (10, 784)" in out and "W2: (10, 10)" in out


def test_turkish_walkthrough_has_the_same_numbers(capsys, mnist_dir):
    en = explain(capsys, "--data-dir", str(mnist_dir))
    tr = explain(capsys, "--lang", "tr", "--data-dir", str(mnist_dir))
    for line in TOY_LINES:
        assert line in tr
    assert "öğrenilebilir ağırlık sayısı: 7,940" in tr
    assert "zincir kuralı" in tr and "ileri geçiş" in tr and "kayıp = −log p[7]" in tr
    assert "learnable" not in tr and "forward" not in tr and "backward" not in tr
    # Every figure of the English walk-through, and no other, appears in the Turkish one.
    assert numbers(tr) == numbers(en)


def test_turkish_walkthrough_without_data(capsys, tmp_path):
    out = explain(capsys, "--lang", "tr", "--data-dir", str(tmp_path), "--lr", "0.1")
    assert "bir adım: lr = 0.1" in out and "w1 = -2.3,  w2 = 2.2" in out  # −2 − 0.1·3, 3 − 0.1·8
    assert "1 rakamının bir görüntüsünde ileri geçiş" in out


def test_unknown_language(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["explain", "--lang", "xx"])
    assert e.value.code == 2
    assert "invalid choice: 'xx'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="have: en, tr"):
        get_messages("xx")
