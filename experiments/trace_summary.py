"""Where a training loop iteration's time goes, from the trace ``loop.trace_at_frames`` takes.

    python experiments/trace_summary.py <run dir>/trace

Prints, per loop iteration: the device's busy time summed over its kernels (against the wall
clock the loop printed), that time split by XLA module (jit_act, jit_updates, the replay add,
...) with the kernel count of each, and the host's costliest events (jit dispatch, env waits).
A device busy far below the wall clock means the loop waits on the host or on launch gaps.
"""
from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("trace_dir")
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args()
    paths = sorted(glob.glob(f"{args.trace_dir}/**/*.trace.json.gz", recursive=True))
    if not paths:
        raise SystemExit(f"no *.trace.json.gz under {args.trace_dir!r}")
    events = json.load(gzip.open(paths[-1]))["traceEvents"]
    names = {e["pid"]: e.get("args", {}).get("name", "") for e in events
             if e.get("ph") == "M" and e.get("name") == "process_name"}
    device = {pid for pid, name in names.items() if "/device:" in name}
    spans = [e for e in events if e.get("ph") == "X"]
    with open(f"{args.trace_dir}/loop.json") as f:   # written by the loop when it stops
        loop = json.load(f)
    n = loop["iterations"]
    print(f"{n} loop iterations from agent step {loop['start_step']}: wall "
          f"{loop['wall_ms_per_iteration']:.2f} ms per iteration")

    dev = [e for e in spans if e["pid"] in device]
    by_module: dict[str, list[float]] = collections.defaultdict(lambda: [0.0, 0])
    for e in dev:
        module = e.get("args", {}).get("hlo_module", "(no module)")
        by_module[module][0] += e.get("dur", 0.0)
        by_module[module][1] += 1
    busy = sum(v[0] for v in by_module.values())
    print(f"device busy {busy / 1e3 / n:.2f} ms per iteration, {len(dev) / n:.0f} kernels "
          f"(processes: {sorted(set(names.values()))})")
    for module, (us, count) in sorted(by_module.items(), key=lambda kv: -kv[1][0])[:args.top]:
        print(f"  {us / 1e3 / n:8.3f} ms {count / n:7.1f} kernels  {module[:90]}")

    host = [e for e in spans if e["pid"] not in device]
    by_name: dict[str, list[float]] = collections.defaultdict(lambda: [0.0, 0])
    for e in host:
        by_name[e["name"]][0] += e.get("dur", 0.0)
        by_name[e["name"]][1] += 1
    print("host events (summed; nested events overlap their parents):")
    for name, (us, count) in sorted(by_name.items(), key=lambda kv: -kv[1][0])[:args.top]:
        print(f"  {us / 1e3 / n:8.3f} ms {count / n:7.1f} calls  {name[:90]}")


if __name__ == "__main__":
    main()
