# SPDX-License-Identifier: Apache-2.0
# predict.py: says which digit a handwritten one is (a picture, or its 8x8 cells), with the small neural
# network that `make` trained (train.py) and saved in weights/. Runs under Cog and under kiln.
from typing import Optional

import numpy as np
from cog import BaseModel, BaseRunner, Input, Path
from PIL import Image, ImageOps


class Output(BaseModel):
    digit: int
    probabilities: list[float]


def cells(path: Path) -> np.ndarray:
    """The picture at PATH as the 64 cells the model reads, row by row: how much ink (dark) each eighth of
    its height and width holds, from 0 to 16, as in the scans it learned from."""
    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im)
        if im.mode in ("RGBA", "LA", "P"):  # transparent parts are paper
            im = Image.alpha_composite(Image.new("RGBA", im.size, "white"), im.convert("RGBA"))
        grey = im.convert("L").resize((8, 8), Image.Resampling.BOX)  # each cell the mean of its pixels
    return (255 - np.asarray(grey, dtype=np.float64).reshape(64)) * 16 / 255


class Predictor(BaseRunner):
    def setup(self) -> None:
        def load(name: str) -> np.ndarray:
            return np.load(f"weights/{name}.npy")

        self.hidden = load("hidden.weight"), load("hidden.bias")
        self.output = load("output.weight"), load("output.bias")

    def run(
        self,
        image: Optional[Path] = Input(description="A handwritten digit, dark on light (PNG, JPEG, PGM, ...)",
                            default=None),
        pixels: Optional[list[int]] = Input(description="Or its 8x8 cells, row by row: 64 integers from 0 (blank) "
                                  "to 16 (ink)", default=None),
    ) -> Output:
        if (image is None) == (pixels is None):
            raise ValueError("give one of image and pixels")
        if pixels is not None and (len(pixels) != 64 or not all(0 <= v <= 16 for v in pixels)):
            raise ValueError("pixels must be 64 integers from 0 to 16")
        x = cells(image) if image is not None else np.array(pixels, dtype=np.float64)
        h = np.maximum(x / 16 @ self.hidden[0] + self.hidden[1], 0)  # ReLU
        logits = h @ self.output[0] + self.output[1]
        p = np.exp(logits - logits.max())  # softmax
        p /= p.sum()
        return Output(digit=int(np.argmax(p)), probabilities=[round(float(v), 4) for v in p])
