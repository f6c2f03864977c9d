"""User-facing walk-through text, one table per language (kept here, not scattered in code)."""
from __future__ import annotations

MESSAGES = {
    "en": {
        "toy_title": "1. The chain rule on the tutorial's example: y = (x + w1) · w2",
        "toy_forward": ("   forward:  h = x + w1 = {x:g} + ({w1:g}) = {h:g}\n"
                        "             y = h · w2 = {h:g} · {w2:g} = {y:g}"),
        "toy_chain": ("   backward: dy/dh = w2 = {dy_dh:g},  dh/dw1 = {dh_dw1:g}\n"
                      "             dy/dw1 = dy/dh · dh/dw1 = {dy_dh:g} · {dh_dw1:g} = {dy_dw1:g}\n"
                      "             dy/dw2 = h = {dy_dw2:g}"),
        "toy_step": ("   one step: w ← w − lr·dy/dw with lr = {lr:g}:  w1 = {new_w1:g},  w2 = {new_w2:g}\n"
                     "             new y = (x + w1) · w2 = {new_y:.4f}   (to make y smaller, step against the gradient)"),
        "net_title": "2. The seed network: 784 → hidden1 (10) → hidden2 (10) → softmax",
        "net_shapes": ("   W1: {w1} (10×784),  W2: {w2} (10×10)\n"
                       "   learnable weights: {weights:,}  (+ {biases} biases = {total:,} parameters)"),
        "net_forward": ("   forward on one image of a {label}:\n"
                        "     H1 = ReLU(W1·x + b1) = {h1}\n"
                        "     H2 = ReLU(W2·H1 + b2) = {h2}\n"
                        "     softmax(H2) = {probs}\n"
                        "     loss = −log p[{label}] = {loss:.4f}"),
        "net_backward": ("   backward: dL/dH2 = softmax − onehot, then the chain rule layer by layer\n"
                         "     dL/dW2 has shape {g2} (Σ|·| = {n2:.4f}),  dL/dW1 has shape {g1} (Σ|·| = {n1:.4f})"),
        "net_update": ("   update: every weight takes w ← w − lr·dL/dw; repeat over 55,000 images\n"
                       "   and the network learns (try: sifir train --model seed)"),
    },
    # Turkish: the same keys and placeholders. Numbers keep the format of the English table
    # (7,940; 0.01), so both walk-throughs print the very same figures.
    "tr": {
        "toy_title": "1. Öğreticideki örnekle zincir kuralı: y = (x + w1) · w2",
        "toy_forward": ("   ileri:    h = x + w1 = {x:g} + ({w1:g}) = {h:g}\n"
                        "             y = h · w2 = {h:g} · {w2:g} = {y:g}"),
        "toy_chain": ("   geri:     dy/dh = w2 = {dy_dh:g},  dh/dw1 = {dh_dw1:g}\n"
                      "             dy/dw1 = dy/dh · dh/dw1 = {dy_dh:g} · {dh_dw1:g} = {dy_dw1:g}\n"
                      "             dy/dw2 = h = {dy_dw2:g}"),
        "toy_step": ("   bir adım: lr = {lr:g} ile w ← w − lr·dy/dw:  w1 = {new_w1:g},  w2 = {new_w2:g}\n"
                     "             yeni y = (x + w1) · w2 = {new_y:.4f}   (y'yi küçültmek için gradyanın tersine adım atılır)"),
        "net_title": "2. seed ağı: 784 → gizli1 (10) → gizli2 (10) → softmax",
        "net_shapes": ("   W1: {w1} (10×784),  W2: {w2} (10×10)\n"
                       "   öğrenilebilir ağırlık sayısı: {weights:,}  (+ {biases} bias = {total:,} parametre)"),
        "net_forward": ("   {label} rakamının bir görüntüsünde ileri geçiş:\n"
                        "     H1 = ReLU(W1·x + b1) = {h1}\n"
                        "     H2 = ReLU(W2·H1 + b2) = {h2}\n"
                        "     softmax(H2) = {probs}\n"
                        "     kayıp = −log p[{label}] = {loss:.4f}"),
        "net_backward": ("   geri geçiş: dL/dH2 = softmax − onehot, ardından katman katman zincir kuralı\n"
                         "     dL/dW2'nin boyutu {g2} (Σ|·| = {n2:.4f}),  dL/dW1'in boyutu {g1} (Σ|·| = {n1:.4f})"),
        "net_update": ("   güncelleme: her ağırlık w ← w − lr·dL/dw adımını atar; bunu 55,000 görüntü\n"
                       "   üzerinde tekrarlayınca ağ öğrenir (deneyin: sifir train --model seed)"),
    },
}


def get_messages(lang: str) -> dict:
    if lang not in MESSAGES:
        raise ValueError(f"no messages for language '{lang}' (have: {', '.join(sorted(MESSAGES))})")
    return MESSAGES[lang]
