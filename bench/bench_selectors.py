"""Selector cost: compiling, and evaluating against message headers.

Run: ``.venv/bin/python bench/bench_selectors.py``. Prints microseconds per operation.
"""

from __future__ import annotations

import timeit

from django_stripe_bridge.selectors import compile_selector

HEADERS = {
    "id": "ch_3PqZx2I56A1133zjexAcwndb",
    "type": "charge.succeeded",
    "event_id": "evt_3PqZx2I56A1133zj0bK9tYwz",
    "object": "charge",
    "status": "succeeded",
    "amount": 1000,
    "currency": "usd",
    "livemode": False,
    "created": 1_732_500_000,
}

SELECTORS = {
    "pinned id": "id = 'ch_3PqZx2I56A1133zjexAcwndb'",
    "id IN 100": "id IN (" + ", ".join(f"'ch_{n:024d}'" for n in range(100)) + ")",
    "typical": "id = 'ch_1' OR (type LIKE 'charge.%' AND amount BETWEEN 500 AND 5000)",
    "broad 6 terms": (
        "type IN ('charge.succeeded', 'charge.failed') AND amount >= 100 AND currency = 'usd' "
        "AND NOT livemode AND status <> 'pending' AND created > 0"
    ),
    "empty": "",
}


def per_op(statement, number: int) -> float:
    best = min(timeit.repeat(statement, number=number, repeat=5))
    return best / number * 1e6


def main() -> None:
    print(f"{'selector':<16} {'compile µs':>12} {'match µs':>10}")
    for name, text in SELECTORS.items():
        selector = compile_selector(text)
        compile_us = per_op(lambda text=text: compile_selector(text), 2_000)
        match_us = per_op(lambda s=selector: s.matches(HEADERS), 50_000)
        print(f"{name:<16} {compile_us:>12.2f} {match_us:>10.3f}")


if __name__ == "__main__":
    main()
