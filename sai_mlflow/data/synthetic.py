"""A deterministic fire/smoke-like dataset in Ultralytics layout, for the demo, tests and benchmarks.

Each image is a sky-to-ground gradient with soft grey smoke plumes (class 1) and bright
orange-red flames (class 0); about one image in eight is a background with no object, as real
wildfire sets have. Same seed, same bytes: digests and tests stay stable.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml
from PIL import Image, ImageDraw, ImageFilter

CLASS_NAMES = {0: "fire", 1: "smoke"}


@dataclass(frozen=True)
class SyntheticSpec:
    train: int = 64
    val: int = 16
    width: int = 160
    height: int = 96
    background_every: int = 8  # every n-th image carries no object
    seed: int = 0


def parse_size(text: str) -> tuple[int, int]:
    """`160x96` -> (160, 96); a clear error otherwise."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"size {text!r} is not WIDTHxHEIGHT, e.g. 160x96") from None
    if w < 16 or h < 16:
        raise ValueError(f"size {text!r} is too small: each side needs at least 16 pixels")
    return w, h


def _scene(rng: np.random.Generator, w: int, h: int, with_objects: bool) -> tuple[Image.Image, list[tuple]]:
    horizon = int(h * rng.uniform(0.45, 0.7))
    sky_top = np.array([rng.uniform(90, 140), rng.uniform(140, 180), rng.uniform(200, 240)])
    sky_bot = np.array([200.0, 210.0, 220.0])
    ground = np.array([rng.uniform(60, 100), rng.uniform(80, 120), rng.uniform(30, 60)])
    t = np.linspace(0.0, 1.0, horizon)[:, None]
    arr = np.empty((h, w, 3), dtype=np.float32)
    arr[:horizon] = (sky_top * (1 - t) + sky_bot * t)[:, None, :]
    arr[horizon:] = ground
    arr += rng.normal(0, 6, size=arr.shape)
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    labels: list[tuple] = []
    if not with_objects:
        return img, labels

    for _ in range(int(rng.integers(1, 3))):  # smoke: soft, grey, above the horizon
        bw, bh = rng.uniform(0.15, 0.4) * w, rng.uniform(0.2, 0.45) * h
        cx = rng.uniform(bw / 2, w - bw / 2)
        cy = min(horizon - bh / 2, rng.uniform(bh / 2, horizon))
        cy = max(cy, bh / 2)
        layer = Image.new("L", (w, h), 0)
        ImageDraw.Draw(layer).ellipse([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2],
                                      fill=int(rng.uniform(150, 220)))
        layer = layer.filter(ImageFilter.GaussianBlur(radius=max(1.0, min(bw, bh) / 8)))
        grey = int(rng.uniform(150, 200))
        img = Image.composite(Image.new("RGB", (w, h), (grey, grey, grey)), img, layer)
        labels.append((1, cx / w, cy / h, bw / w, bh / h))

    for _ in range(int(rng.integers(1, 3))):  # fire: bright flame triangles near the ground line
        fw, fh = rng.uniform(0.06, 0.18) * w, rng.uniform(0.1, 0.25) * h
        cx = rng.uniform(fw / 2, w - fw / 2)
        base = min(h - 1.0, horizon + rng.uniform(0, (h - horizon) * 0.5))
        top = max(0.0, base - fh)
        draw = ImageDraw.Draw(img)
        colour = (255, int(rng.uniform(60, 160)), int(rng.uniform(0, 40)))
        draw.polygon([(cx - fw / 2, base), (cx + fw / 2, base), (cx, top)], fill=colour)
        draw.ellipse([cx - fw / 4, base - fh / 2, cx + fw / 4, base], fill=(255, 230, 120))
        labels.append((0, cx / w, (top + base) / 2 / h, fw / w, (base - top) / h))
    return img, labels


def scene_image(width: int, height: int, seed: int = 0) -> Image.Image:
    """One fire/smoke scene, for an input example or a quick prediction check."""
    return _scene(np.random.default_rng(seed), width, height, with_objects=True)[0]


def generate(out: str | Path, spec: SyntheticSpec = SyntheticSpec()) -> Path:
    """Write images, labels and data.yaml under `out`; return the data.yaml path."""
    out = Path(out)
    rng = np.random.default_rng(spec.seed)
    for split, count in (("train", spec.train), ("val", spec.val)):
        if count < 1:
            raise ValueError(f"{split} needs at least one image, got {count}")
        (out / "images" / split).mkdir(parents=True, exist_ok=True)
        (out / "labels" / split).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            background = spec.background_every > 0 and i % spec.background_every == spec.background_every - 1
            img, labels = _scene(rng, spec.width, spec.height, with_objects=not background)
            stem = f"{split}_{i:05d}"
            img.save(out / "images" / split / f"{stem}.jpg", quality=90)
            (out / "labels" / split / f"{stem}.txt").write_text(
                "".join(f"{c} {x:.6f} {y:.6f} {bw:.6f} {bh:.6f}\n" for c, x, y, bw, bh in labels)
            )
    data_yaml = out / "data.yaml"
    data_yaml.write_text(
        yaml.safe_dump(
            {"path": str(out.resolve()), "train": "images/train", "val": "images/val", "names": CLASS_NAMES},
            sort_keys=False,
        )
    )
    return data_yaml
