"""What happens on the synthetic shelf: stocking, and shoppers' and staff's arms reaching in to take,
restock or just look. Everything random comes from the one generator, in a fixed order, so a seed gives
the same footage byte for byte.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["OCCLUDED_ABOVE", "Arm", "Shelf"]

OCCLUDED_ABOVE = 0.30  # fraction of a slot an arm must hide before the slot has no truth
SKIN_TONES = [(172, 200, 238), (130, 165, 214), (95, 130, 190), (60, 90, 140), (45, 65, 105)]
SLEEVES = [(90, 50, 20), (40, 40, 170), (110, 110, 110), (40, 110, 40), (25, 25, 25), (215, 215, 215)]


@dataclass
class Arm:
    start: int
    duration: int
    target: int
    entry: tuple[float, float]
    sleeve: tuple[int, int, int]
    skin: tuple[int, int, int]
    action: str  # "take" | "restock" | "swap" (take and put another product back) | "look"

    def reach(self, f: int) -> float:
        """How far along its way to the slot the hand is in frame `f`: reach in, hold, pull back.

        The hand is still over the slot on the arm's last frame.
        """
        k = f - self.start
        return 0.8 if k == self.duration - 1 else (0.7 if k == 0 and self.duration > 2 else 1.0)


class Shelf:
    """The product in each slot (None: empty), stocked in runs of facings: one product in 1-3 neighbouring slots."""

    def __init__(
        self, classes: list[str], rows: int, cols: int, rng: np.random.Generator, swap_rate: float = 0.0
    ) -> None:
        self.classes = classes
        self.rng = rng
        self.swap_rate = swap_rate  # share of takes that put another product back in the same reach
        self.state: list[str | None] = []
        for _ in range(rows):
            row: list[str | None] = []
            while len(row) < cols:
                run = int(rng.integers(1, 4))
                name = classes[int(rng.integers(len(classes)))]
                row.extend([name] * min(run, cols - len(row)))
            self.state.extend(row)
        self.last_class = list(self.state)  # what each slot held last, for restocking the same product
        self.arms: list[Arm] = []
        self.takes = self.restocks = self.swaps = 0
        self.events: list[tuple[str, int, int, str | None, str | None]] = []  # kind, slot, frame, before, after

    def maybe_reach(self, f: int, arm_rate: float, size: tuple[int, int]) -> None:
        """With chance `arm_rate`, while no arm is in the picture, an arm starts reaching in at frame `f`."""
        rng, (w, h) = self.rng, size
        if any(a.start + a.duration > f for a in self.arms) or rng.random() >= arm_rate:
            return
        empty = [i for i, name in enumerate(self.state) if name is None]
        # Gaps get refilled: some arms are staff restocking an empty slot.
        if empty and rng.random() < 0.5:
            target = empty[int(rng.integers(len(empty)))]
        else:
            target = int(rng.integers(len(self.state)))
        side = rng.random()
        if side < 0.7:  # from below, the shopper standing in front of the shelf
            entry = (float(rng.uniform(0.2 * w, 0.8 * w)), 1.1 * h)
        else:  # from the side, sweeping across the neighbouring slots
            entry = (-0.05 * w if side < 0.85 else 1.05 * w, float(rng.uniform(0.5 * h, 1.0 * h)))
        action = "take" if self.state[target] is not None else "restock"
        if rng.random() < 0.3:
            action = "look"  # reaches in, touches nothing
        # Drawn only when swaps are asked for, so footage without them stays byte for byte what it was.
        if action == "take" and self.swap_rate > 0 and rng.random() < self.swap_rate:
            action = "swap"
        duration = int(rng.integers(2, 5))
        sleeve = SLEEVES[int(rng.integers(len(SLEEVES)))]
        skin = SKIN_TONES[int(rng.integers(len(SKIN_TONES)))]
        self.arms.append(Arm(f, duration, target, entry, sleeve, skin, action))

    def active(self, f: int) -> list[Arm]:
        return [a for a in self.arms if a.start <= f < a.start + a.duration]

    def act(self, f: int, active: list[Arm]) -> list[int]:
        """Apply the takes and restocks of arms pulling back in frame `f`; the slots to repaint."""
        changed = []
        for a in active:
            if f != a.start + a.duration - 1 or a.action == "look":
                continue
            # The change shows on the arm's last frame, as it pulls back.
            before = self.state[a.target]
            if a.action == "take" and before is not None:
                self.last_class[a.target] = before
                self.state[a.target] = None
                self.takes += 1
            elif a.action == "restock" and before is None:
                same = self.rng.random() < 0.5 and self.last_class[a.target] is not None
                self.state[a.target] = (
                    self.last_class[a.target] if same else self.classes[int(self.rng.integers(len(self.classes)))]
                )
                self.restocks += 1
            elif a.action == "swap" and before is not None and len(self.classes) > 1:
                others = [c for c in self.classes if c != before]
                self.state[a.target] = others[int(self.rng.integers(len(others)))]
                self.last_class[a.target] = before
                self.swaps += 1
            if self.state[a.target] != before:
                self.events.append((a.action, a.target, f, before, self.state[a.target]))
            changed.append(a.target)
        return changed

    def truth(self, cover: np.ndarray) -> tuple[str | None, ...]:
        """The product a viewer can name in each slot: None where empty or more than OCCLUDED_ABOVE hidden."""
        return tuple(None if cover[i] > OCCLUDED_ABOVE else self.state[i] for i in range(len(self.state)))

    def states(self, cover: np.ndarray) -> tuple[str, ...]:
        """What each slot shows: `occluded` (more than OCCLUDED_ABOVE hidden), `empty` or `product`."""
        return tuple(
            "occluded" if cover[i] > OCCLUDED_ABOVE else "empty" if name is None else "product"
            for i, name in enumerate(self.state)
        )
