#!/usr/bin/env python3
"""Per-inference busy time and kernel-to-kernel gaps from a bench/kernel_trace.cc CSV.

    python3 bench/kernel_gaps.py trace.csv [--split-us 20] [--top 12]

Kernels are sorted by GPU start time and cut into runs wherever the GPU sat idle for more than
--split-us (the host's wait between two `kiln bench` iterations); the runs with the most common
kernel count are the inferences. For those it prints the wall time (first start to last end),
the kernels' summed time, and the idle time between consecutive kernels, as a whole and by the
kernel pair around each gap (median over the inferences). Memsets and copies are left out
unless --with-copies. Where idle gaps inside an inference pass --split-us (a graph whose
memsets run early, a long host-side step), cut at the first kernel's name with --first.
"""
import argparse
import collections
import csv
import statistics


def kernel_base_name(name):
    """'void kiln::ops::(anonymous namespace)::f<__half, 4>(Args)' -> 'f<__half, 4>'."""
    name = name.replace("(anonymous namespace)::", "").replace("<unnamed>::", "")
    depth, cut = 0, len(name)
    for i, ch in enumerate(name):  # the argument list: the first '(' outside template brackets
        depth += (ch == "<") - (ch == ">")
        if ch == "(" and depth == 0:
            cut = i
            break
    head = name[:cut].removeprefix("void ").strip()
    depth, start = 0, 0
    for i, ch in enumerate(head):  # the last '::' outside template brackets
        depth += (ch == "<") - (ch == ">")
        if depth == 0 and head.startswith("::", i):
            start = i + 2
    return head[start:][:90]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("trace")
    p.add_argument("--split-us", type=float, default=20.0)
    p.add_argument("--top", type=int, default=12)
    p.add_argument("--first", default="",
                   help="start an inference at every kernel whose name contains this (e.g. the model's first "
                        "kernel) instead of cutting at idle gaps")
    p.add_argument("--with-copies", action="store_true",
                   help="count memsets and copies as kernels (by default they are left out: a graph can run them "
                        "beside the kernels)")
    a = p.parse_args()
    ks, copies = [], 0
    with open(a.trace) as f:
        for r in csv.DictReader(f):
            if r["name"].startswith("[") and not a.with_copies:
                copies += 1
                continue
            ks.append((int(r["start_ns"]), int(r["end_ns"]), r["name"]))
    ks.sort()
    runs, cur = [], []
    for k in ks:
        cut = a.first in k[2] if a.first else cur and k[0] - max(c[1] for c in cur[-4:]) > a.split_us * 1e3
        if cur and cut:
            runs.append(cur)
            cur = []
        cur.append(k)
    if cur:
        runs.append(cur)
    count = collections.Counter(len(r) for r in runs).most_common(1)[0][0]
    inf = [r for r in runs if len(r) == count]
    if len(inf) > 2:
        inf = inf[1:]  # the first replay can carry one-time costs
    walls, busy, idle = [], [], []
    pair_gaps = collections.defaultdict(list)
    for r in inf:
        walls.append((r[-1][1] - r[0][0]) / 1e3)
        busy.append(sum(e - s for s, e, _ in r) / 1e3)
        g_total = 0.0
        for i in range(1, len(r)):
            g = (r[i][0] - r[i - 1][1]) / 1e3
            g_total += g
            pair_gaps[(i, kernel_base_name(r[i - 1][2]), kernel_base_name(r[i][2]))].append(g)
        idle.append(g_total)
    print(f"{len(ks)} kernels ({copies} memsets and copies left out), {len(runs)} runs; "
          f"{len(inf)} inferences of {count} kernels")
    print(f"wall {statistics.median(walls):.1f} us, kernels {statistics.median(busy):.1f} us, "
          f"between kernels {statistics.median(idle):.1f} us (median; negative: overlap)")
    med = {k: statistics.median(v) for k, v in pair_gaps.items()}
    by_pair = collections.defaultdict(list)
    for (i, a_, b_), g in med.items():
        by_pair[(a_, b_)].append(g)
    print(f"{'gaps':>5} {'sum us':>8} {'median us':>9}  after -> before")
    rows = sorted(by_pair.items(), key=lambda kv: -sum(kv[1]))
    for (a_, b_), gs in rows[: a.top]:
        print(f"{len(gs):5d} {sum(gs):8.1f} {statistics.median(gs):9.2f}  {a_} -> {b_}")
    by_name = collections.defaultdict(list)
    for r in inf:
        per = collections.defaultdict(float)
        for s_, e_, n_ in r:
            per[kernel_base_name(n_)] += (e_ - s_) / 1e3
        for n_, us in per.items():
            by_name[n_].append(us)
    print(f"{'us':>9}  kernel (summed over an inference, median)")
    for n_, v in sorted(by_name.items(), key=lambda kv: -statistics.median(kv[1]))[: a.top]:
        print(f"{statistics.median(v):9.1f}  {n_}")


if __name__ == "__main__":
    main()
