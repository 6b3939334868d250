"""Goodput against offered load, from half to five times Hatif's capacity, and the recovery after overload.

    .venv/bin/python bench/overload.py [--seconds 5] [--multiples 0.5,1,1.5,2,3,4,5]

A real `hatif serve` process answers SIPp callers of the echo test (600) from a trusted endpoint
(`tests/interop/overload.py`: a caller ACKs admission control's 503 and gives up after 5 s). The capacity
is measured first, as the best goodput of a short ramp (100 to 1600 calls/s, 2 s a step); then each
multiple of it is offered for `--seconds` and its goodput (answered calls a second) printed, one line a
step: the curve. After the last step (the highest load) single calls are tried until one completes:
`recovery` is the seconds from the end of the load to that call's completion. A figure, not a test.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "interop"))

from overload import Rig, capacity  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--multiples", default="0.5,1,1.5,2,3,4,5")
    args = parser.parse_args()
    multiples = [float(m) for m in args.multiples.split(",")]
    rig = Rig()
    with rig.process:
        rig.step(50, 1.0)
        ramp = rig.ramp()
        peak = capacity(ramp)
        print(f"capacity: {peak:.0f} calls/s (ramp {', '.join(f'{s.rate:.0f}->{s.goodput:.0f}' for s in ramp)})")
        for m in multiples:
            time.sleep(2.0)
            step = rig.step(m * peak, args.seconds)
            print(f"offered {m:3.1f}x {m * peak:6.0f}/s: goodput {step.goodput:6.0f}/s ({step.goodput / peak:4.2f} "
                  f"of capacity) refused {step.refused / step.seconds:6.0f}/s gave up {step.gave_up}", flush=True)
        recovered = rig.one_call(within=30.0)
        print(f"recovery: {recovered:.2f} s" if recovered is not None else "recovery: none within 30 s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
