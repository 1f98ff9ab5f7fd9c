# SPDX-License-Identifier: Apache-2.0
# train.py: trains the digit classifier on the handwritten digits scikit-learn ships (no download) and writes
# its weights to weights/*.npy and held-out test images to samples/ (run by `make`).
import json
import os
import sys
import warnings

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier

HIDDEN = 128
SCALE = 4  # each of the 8x8 cells drawn as a SCALE x SCALE block: 32x32, the size of the original bitmaps


def picture(features: np.ndarray) -> np.ndarray:
    """An 8x8 sample (ink 0-16) as a 32x32 picture, dark ink on white, as it would be scanned."""
    ink = features.reshape(8, 8) / 16.0
    grey = np.rint(255 * (1 - ink)).astype(np.uint8)
    return np.kron(grey, np.ones((SCALE, SCALE), dtype=np.uint8))


def main() -> int:
    out = sys.argv[1] if len(sys.argv) > 1 else "."
    digits = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(
        digits.data, digits.target, test_size=0.25, random_state=0, stratify=digits.target)

    model = MLPClassifier(hidden_layer_sizes=(HIDDEN,), alpha=1e-3, max_iter=400, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(x_train / 16.0, y_train)
    probabilities = model.predict_proba(x_test / 16.0)
    predicted = np.argmax(probabilities, axis=1)
    accuracy = float(np.mean(predicted == y_test))

    # The weights: one .npy file per parameter array; predict.py needs numpy alone to run them.
    os.makedirs(os.path.join(out, "weights"), exist_ok=True)
    (w1, w2), (b1, b2) = model.coefs_, model.intercepts_
    params = {"hidden.weight": w1, "hidden.bias": b1, "output.weight": w2, "output.bias": b2}
    for name, value in params.items():
        np.save(os.path.join(out, "weights", name + ".npy"), value.astype(np.float32))

    # Test images: for each digit, the first held-out scan of it (never seen in training) that the model
    # classifies right with a probability of 0.9 or more, as samples/N.png; their 8x8 cells in pixels.json.
    os.makedirs(os.path.join(out, "samples"), exist_ok=True)
    chosen = {}
    for i, label in enumerate(y_test):
        if predicted[i] == label and probabilities[i, label] >= 0.9 and int(label) not in chosen:
            chosen[int(label)] = i
    for label, i in sorted(chosen.items()):
        Image.fromarray(picture(x_test[i]), "L").save(os.path.join(out, "samples", f"{label}.png"))
    with open(os.path.join(out, "samples", "pixels.json"), "w") as f:
        json.dump({str(label): [int(v) for v in x_test[i]] for label, i in sorted(chosen.items())}, f)

    print(f"trained on {len(y_train)} scans, {accuracy:.1%} right on {len(y_test)} held out; "
          f"weights in {os.path.join(out, 'weights')}, test images in {os.path.join(out, 'samples')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
