"""The bench report as text: the modes table, stability, where inferences went, and the frame cost.

It reports measurements only; what they are judged against belongs to tests and docs, not to the product.
"""

from __future__ import annotations

from typing import Any

__all__ = ["format_report"]


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f} %"


def format_report(report: dict[str, Any], motion_threshold: float) -> str:
    lines = _header(report, motion_threshold) + _table(report["modes"])
    st = report["stability"]
    lines += [
        "",
        f"model stability: {_pct(st['rate'])} of {st['pairs']} consecutive same-product slot pairs keep their "
        f"fresh label ({st['basis']})",
    ]
    for mode, m in report["modes"].items():
        if mode != "no-cache":
            lines += _where(m)
    lines += _frame_cost(report.get("frame_cost"))
    lines += _shelf(report["modes"])
    return "\n".join(lines)


def _shelf(modes: dict[str, Any]) -> list[str]:
    """Shelf state against the truth's states and events, per Recognizer mode (docs/shelf.md)."""
    lines = []
    for m in modes.values():
        sh = m.get("shelf")
        if not sh:
            continue
        ev = sh["events"]
        pr = " · ".join(
            f"{k.replace('_', ' ')} {_pct(ev[k]['precision'])} / {_pct(ev[k]['recall'])} ({ev[k]['truth']})"
            for k in ("product_removed", "restocked", "product_changed")
        )
        lines += [
            "",
            f"shelf state, {m['title']} (confirm_frames {sh['confirm_frames']}): "
            f"slot states {_pct(sh['state_accuracy'])} right; debounced empty precision / recall "
            f"{_pct(sh['empty_settled']['precision'])} / "
            f"{_pct(sh['empty_settled']['recall'])} (settled frames), "
            f"{_pct(sh['empty_all']['precision'])} / {_pct(sh['empty_all']['recall'])} (all)",
            f"  events precision / recall (truth events): {pr}; median delay {sh['median_delay_frames']} frames; "
            f"{sh['false_events_per_1000_slot_frames']} false events per 1000 slot-frames",
        ]
    return lines


def _header(report: dict[str, Any], motion_threshold: float) -> list[str]:
    base = report["modes"]["no-cache"]
    return [
        f"footage {report['footage']}: camera {report['camera']}, {base['frames']} frames, "
        f"{len(report['slots'])} slots (from {report['slots_from']}), {base['slots']} slot results"
        + (f", {base['skipped_frames']} undecodable frames skipped" if base["skipped_frames"] else ""),
        f"model {report['model']['path']}, {report['model']['threads']} inference threads; "
        f"cache {report['cache']['hash']} radius {report['cache']['max_distance']}; "
        f"motion threshold {motion_threshold:g} grey levels; truth {report['truth'] or 'none'}",
        "",
    ]


def _table(modes: dict[str, Any]) -> list[str]:
    lines = [
        "| mode | frames/s | vs no cache | slot inferences | hit rate | agreement (all / product slots) | accuracy |",
        "|---|---|---|---|---|---|---|",
    ]
    for mode, m in modes.items():
        acc = m.get("accuracy", {}).get("rate")
        agreement = "(audit)" if mode == "no-cache" else _pct(m["agreement"])
        if mode != "no-cache" and m.get("agreement_products") is not None:
            agreement += f" / {_pct(m['agreement_products'])}"
        ratio = f"{m['fps_vs_no_cache']:.2f}x" if m["fps_vs_no_cache"] else "-"
        fps = f"{m['fps']:.1f}" if m["fps"] else "-"
        inferences = str(m["inferences"]) + (f" + {m['confirmations']} confirming" if m["confirmations"] else "")
        lines.append(
            f"| {m['title']} | {fps} | {ratio} | {inferences} | {_pct(m['hit_rate'])} | {agreement} | {_pct(acc)} |"
        )
    return lines


def _where(m: dict[str, Any]) -> list[str]:
    """Where a mode's inferences went, and where its results differ from fresh inference."""
    where = ", ".join(f"{k}: {v}" for k, v in m["inferred_by_slot"].items())
    text = f"{m['title']}: {m['inferences']} inferences (by slot: {where or 'none'})"
    if "inferred_truth_null" in m:
        text += f"; {m['inferred_truth_null']} of them on slots with null truth (empty, or arm over > 30 %)"
    lines = [text]
    d = m["disagreements"]
    if d["total"]:
        parts = ", ".join(f"{v} {k}" for k, v in sorted(d["by_source"].items()))
        slots = ", ".join(f"{k}: {v}" for k, v in d["by_slot"].items())
        text = f"{m['title']}: {d['total']} results differ from fresh inference (by source: {parts}; by slot: {slots})"
        if d["by_truth"]:
            text += "; " + ", ".join(f"{v} {k}" for k, v in sorted(d["by_truth"].items()))
        lines.append(text)
    return lines


def _frame_cost(cost: dict[str, Any] | None) -> list[str]:
    if not cost or not cost["all_hit_ms"]:
        return []
    hit, other, base = cost["all_hit_ms"], cost["other_ms"], cost["no_cache_ms"]
    text = (
        f"frame cost (mean / P50): no cache {base['mean']:.2f} / {base['p50']:.2f} ms; perceptual cache, "
        f"{cost['all_hit_frames']} all-hit frames {hit['mean']:.2f} / {hit['p50']:.2f} ms (P50 decode "
        f"{hit['decode']:.2f}, keys {hit['keys']:.2f}, lookups {hit['lookups']:.2f})"
    )
    if other:
        text += f", {cost['other_frames']} frames with an inference {other['mean']:.2f} / {other['p50']:.2f} ms"
    lines = ["", text]
    hp = cost.get("hit_path")
    if hp:
        lines.append(
            f"hit path: all-hit frame (recognize() alone, P50 of {hp['frames']}) = {hp['ratio']:.2f}x decoding the "
            f"same JPEGs alone, timed beside each frame ({hp['frame_ms']:.2f} / {hp['decode_ms']:.2f} ms wall); "
            f"process CPU {hp['cpu_ratio']:.2f}x ({hp['frame_cpu_ms']:.2f} / {hp['decode_cpu_ms']:.2f} ms)"
        )
    return lines + [
        f"ceiling: at a 100 % hit rate the perceptual cache could reach {cost['ceiling']:.2f}x no cache with this "
        "model on this machine (no-cache frame / all-hit frame)",
    ]
