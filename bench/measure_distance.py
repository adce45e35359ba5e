"""Distance study: choose cache.max_distance and the colour tolerance from real grocery photos.

Reproduce (about a minute on one core)::

    cd /work/main && nice -n 10 .venv/bin/python bench/measure_distance.py --train 204 --seed 7 > /tmp/distance.md

Each photo (all of val/ plus a seeded subset of train/) stands for one shelf-slot crop: the crop window is the
photo minus a 2 px border, so a 1-2 px camera shift moves the window inside the photo. Pairs measured:

* positive: the same crop after JPEG re-encode (q 60..95), gaussian noise (sigma 2..6), brightness x0.9..1.1,
  a 1-2 px window shift, and all of them combined: these must hit;
* different product: base crops of two photos of different fine classes: must not hit;
* same class, different photo: reported separately (neither a required hit nor a required miss);
* colour-only: the crop with its HSV hue rotated by 30..180 degrees: must not hit through the colour check.

A hit is "pHash Hamming distance <= d and colour distance <= tolerance"; the tables give the rates for a grid
of (d, tolerance) and the distributions as percentiles.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from shelfsense.footage.jpeg import encode_jpeg
from shelfsense.recognition.hashing import COLOUR_GRID, L_WEIGHT, colour_signature, phash_bits
from shelfsense.tools.dataset import SplitImage, read_split

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "datasets" / "grocery-store"
BORDER = 2
HUE_ANGLES = (30, 60, 90, 120, 150, 180)
PERTURBATIONS = ("jpeg", "noise", "brightness", "shift", "combined")
PERCENTILES = (0, 1, 5, 25, 50, 75, 95, 99, 100)


def window(img: np.ndarray, dx: int = 0, dy: int = 0) -> np.ndarray:
    h, w = img.shape[:2]
    return img[BORDER + dy : h - BORDER + dy, BORDER + dx : w - BORDER + dx]


def jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(encode_jpeg(img, quality), np.uint8), cv2.IMREAD_COLOR)


def noise(img: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    return np.clip(img + rng.normal(0.0, sigma, img.shape), 0, 255).astype(np.uint8)


def brightness(img: np.ndarray, factor: float) -> np.ndarray:
    return np.clip(img.astype(np.float32) * factor + 0.5, 0, 255).astype(np.uint8)


def hue_rotate(img: np.ndarray, degrees: int) -> np.ndarray:
    hsv = cv2.cvtColor(img, cv2.COLOR_BGR2HSV)
    # OpenCV 8-bit hue is degrees / 2 in 0..179.
    hsv[..., 0] = ((hsv[..., 0].astype(np.int32) + degrees // 2) % 180).astype(np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)


def random_shift(rng: np.random.Generator) -> tuple[int, int]:
    while True:
        dx, dy = (int(v) for v in rng.integers(-BORDER, BORDER + 1, size=2))
        if (dx, dy) != (0, 0):
            return dx, dy


def perturb(img: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    if kind == "jpeg":
        return jpeg(window(img), int(rng.integers(60, 96)))
    if kind == "noise":
        return noise(window(img), float(rng.uniform(2, 6)), rng)
    if kind == "brightness":
        return brightness(window(img), float(rng.choice([-1, 1]) * rng.uniform(0.03, 0.10) + 1))
    if kind == "shift":
        return window(img, *random_shift(rng)).copy()
    # Camera order: the window moves, exposure changes, the sensor adds noise, the camera encodes JPEG.
    out = window(img, *random_shift(rng))
    out = brightness(out, float(rng.uniform(0.9, 1.1)))
    out = noise(out, float(rng.uniform(2, 6)), rng)
    return jpeg(out, int(rng.integers(60, 96)))


def colour_dist_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise colour_distance between signature rows of a (n, cells, 3) and b (m, cells, 3)."""
    d = a[:, None].astype(np.float32) - b[None].astype(np.float32)
    d[..., 0] *= 100.0 / 255.0 * L_WEIGHT
    return np.sqrt((d * d).sum(-1)).max(-1)


def sig_array(sig: bytes) -> np.ndarray:
    return np.frombuffer(sig, np.uint8).reshape(-1, 3)


def pct_table(rows: dict[str, np.ndarray]) -> str:
    head = "| pairs | n | " + " | ".join(f"p{p}" for p in PERCENTILES) + " |"
    lines = [head, "|" + "---|" * (len(PERCENTILES) + 2)]
    for name, values in rows.items():
        cells = " | ".join(f"{v:.1f}" for v in np.percentile(values, PERCENTILES))
        lines.append(f"| {name} | {len(values)} | {cells} |")
    return "\n".join(lines)


Record = tuple[int, dict[int, float]]  # pHash distance, colour distance per grid


@dataclass
class Measured:
    """Every photo's base key and the distances of its perturbed and hue-rotated copies to it."""

    photos: list[SplitImage]
    picked: int  # train photos among them
    grids: list[int]
    base_bits: list[int] = field(default_factory=list)
    base_sig: dict[int, list[np.ndarray]] = field(default_factory=dict)
    pos: dict[str, list[Record]] = field(default_factory=lambda: {k: [] for k in PERTURBATIONS})
    hue: dict[int, list[Record]] = field(default_factory=lambda: {a: [] for a in HUE_ANGLES})
    chroma: list[float] = field(default_factory=list)

    def split(self, records: list[Record]) -> tuple[np.ndarray, dict[int, np.ndarray]]:
        return (np.array([r[0] for r in records]), {g: np.array([r[1][g] for r in records]) for g in self.grids})


def measure(
    photos: list[SplitImage], picked: int, grids: list[int], variants: int, rng: np.random.Generator, quiet: bool
) -> Measured:
    m = Measured(photos, picked, grids, base_sig={g: [] for g in grids})
    bar = tqdm(photos, desc="hashing", file=sys.stderr, disable=quiet or not sys.stderr.isatty())
    for photo in bar:
        img = cv2.imread(str(photo.path), cv2.IMREAD_COLOR)
        if img is None:
            raise SystemExit(f"cannot read {photo.path}")
        base = window(img)
        bits = phash_bits(base)
        sigs = {g: sig_array(colour_signature(base, g)) for g in grids}
        m.base_bits.append(bits)
        for g in grids:
            m.base_sig[g].append(sigs[g])
        lab = cv2.cvtColor(base, cv2.COLOR_BGR2Lab).astype(np.float32) - [0, 128, 128]
        m.chroma.append(float(np.hypot(lab[..., 1], lab[..., 2]).mean()))

        def record(variant: np.ndarray, sink: list, bits=bits, sigs=sigs) -> None:
            d = (phash_bits(variant) ^ bits).bit_count()
            cd = {
                g: float(colour_dist_matrix(sigs[g][None], sig_array(colour_signature(variant, g))[None])[0, 0])
                for g in grids
            }
            sink.append((d, cd))

        for kind in PERTURBATIONS:
            for _ in range(variants):
                record(perturb(img, kind, rng), m.pos[kind])
        for angle in HUE_ANGLES:
            record(hue_rotate(base, angle), m.hue[angle])
    return m


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--train", type=int, default=204, help="train photos added to val/ (seeded sample)")
    ap.add_argument("--variants", type=int, default=2, help="positives per perturbation kind per photo")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--grids", default="2,3,4", help=f"colour grids to compare (the module uses {COLOUR_GRID})")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    train = read_split(args.data, "train")
    picked = sorted(rng.choice(len(train), size=min(args.train, len(train)), replace=False))
    photos = read_split(args.data, "val") + [train[i] for i in picked]
    grids = [int(g) for g in args.grids.split(",")]
    m = measure(photos, len(picked), grids, args.variants, rng, args.quiet)
    print("\n".join(report(m, args.seed)))
    return 0


def report(m: Measured, seed: int) -> list[str]:
    n, grids = len(m.photos), m.grids
    bits_arr = np.array(m.base_bits, dtype=np.uint64)
    ham = np.bitwise_count(bits_arr[:, None] ^ bits_arr[None]).astype(np.int32)
    fine = np.array([p.fine_id for p in m.photos])
    upper = np.triu(np.ones((n, n), dtype=bool), 1)
    diff_mask = upper & (fine[:, None] != fine[None])
    same_mask = upper & (fine[:, None] == fine[None])
    cdist = {g: colour_dist_matrix(np.stack(m.base_sig[g]), np.stack(m.base_sig[g])) for g in grids}
    pos_all = [r for k in PERTURBATIONS for r in m.pos[k]]
    hue_all = [r for a in HUE_ANGLES for r in m.hue[a]]
    pos_h, pos_c = m.split(pos_all)
    hue_h, hue_c = m.split(hue_all)

    out = [
        f"Photos: {n} ({n - m.picked} val + {m.picked} train, seed {seed}); "
        f"{len(pos_all)} positive pairs, {int(diff_mask.sum())} different-product pairs, "
        f"{int(same_mask.sum())} same-class pairs, {len(hue_all)} hue-rotated pairs.",
        "",
    ]
    out += ["### pHash Hamming distance (percentiles)", ""]
    rows = {f"positive: {k}": m.split(m.pos[k])[0] for k in PERTURBATIONS}
    rows["positive: all"] = pos_h
    rows["different product"] = ham[diff_mask]
    rows["same class, other photo"] = ham[same_mask]
    for a in HUE_ANGLES:
        rows[f"hue +{a} deg"] = m.split(m.hue[a])[0]
    out += [pct_table(rows), ""]

    for g in grids:
        out += [f"### Colour distance, grid {g}x{g} (max over cells of Lab distance, L weight {L_WEIGHT})", ""]
        rows = {f"positive: {k}": m.split(m.pos[k])[1][g] for k in PERTURBATIONS}
        rows["different product"] = cdist[g][diff_mask]
        rows["same class, other photo"] = cdist[g][same_mask]
        for a in HUE_ANGLES:
            rows[f"hue +{a} deg"] = m.split(m.hue[a])[1][g]
        out += [pct_table(rows), ""]
    g = COLOUR_GRID
    pairs = Pairs(
        pos_h, pos_c[g], ham[diff_mask], cdist[g][diff_mask], ham[same_mask], cdist[g][same_mask], hue_h, hue_c[g]
    )
    return out + hit_rate_tables(pairs) + chroma_table(np.array(m.chroma), hue_c[g])


@dataclass
class Pairs:
    """pHash and colour distances (module grid) of each kind of pair."""

    pos_h: np.ndarray
    pos_c: np.ndarray
    diff_h: np.ndarray
    diff_c: np.ndarray
    same_h: np.ndarray
    same_c: np.ndarray
    hue_h: np.ndarray
    hue_c: np.ndarray


def hit_rate_tables(p: Pairs) -> list[str]:
    out = [
        f"### Hit rates by radius and colour tolerance (module grid {COLOUR_GRID}x{COLOUR_GRID})",
        "",
        "true = positive pairs that hit; false = different-product pairs that hit (count); "
        "hue = hue-rotated copies that hit; same = same-class other-photo pairs that hit.",
        "",
        "| d | tol | true hit % | false hits | false hit % | hue hits | hue hit % | same-class hits |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for d in range(4, 17, 2):
        for tol in (8, 10, 12, 14, 16, 20):
            tp = np.mean((p.pos_h <= d) & (p.pos_c <= tol)) * 100
            fh = int(((p.diff_h <= d) & (p.diff_c <= tol)).sum())
            hh = int(((p.hue_h <= d) & (p.hue_c <= tol)).sum())
            sh = int(((p.same_h <= d) & (p.same_c <= tol)).sum())
            out.append(
                f"| {d} | {tol} | {tp:.2f} | {fh} | {fh / len(p.diff_h) * 100:.4f} | {hh} | "
                f"{hh / len(p.hue_h) * 100:.2f} | {sh} |"
            )
    out.append("")
    out += [
        "### pHash alone (no colour check)",
        "",
        "| d | true hit % | false hits | hue hits % |",
        "|---|---|---|---|",
    ]
    for d in range(0, 21, 2):
        out.append(
            f"| {d} | {np.mean(p.pos_h <= d) * 100:.2f} | {int((p.diff_h <= d).sum())} | "
            f"{np.mean(p.hue_h <= d) * 100:.1f} |"
        )
    out.append("")
    return out


def chroma_table(chroma: np.ndarray, hue_c: np.ndarray) -> list[str]:
    """Hue-rotated copies that pass the colour check, by the photo's mean chroma (module grid)."""
    hue_chroma = np.concatenate([chroma for _ in HUE_ANGLES])
    out = [
        f"### Hue-rotated copies that pass the colour check, by photo mean chroma (grid {COLOUR_GRID})",
        "",
        "| mean chroma of photo | photos | hue copies within tol 12 | within tol 10 | within tol 8 |",
        "|---|---|---|---|---|",
    ]
    edges = [0, 5, 10, 15, 20, 30, 200]
    for lo, hi in zip(edges, edges[1:], strict=False):
        sel = (hue_chroma >= lo) & (hue_chroma < hi)
        if sel.any():
            out.append(
                f"| {lo}..{hi} | {int(((chroma >= lo) & (chroma < hi)).sum())} | "
                f"{int((hue_c[sel] <= 12).sum())}/{int(sel.sum())} | {int((hue_c[sel] <= 10).sum())} | "
                f"{int((hue_c[sel] <= 8).sum())} |"
            )
    return out


if __name__ == "__main__":
    raise SystemExit(main())
