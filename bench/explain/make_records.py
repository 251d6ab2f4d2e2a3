#!/usr/bin/env python3
"""Writes N synthetic records as ktune JSONL (stdout) for the explain benchmark: 1,000 tasks of a
kernel `synthetic` (problem n=0..999) on one device, each a 4-parameter space with a known effect
(`tile` matters 1.5x, `unroll` not at all), 3 repeats per record. Deterministic (seeded)."""
import json
import random
import sys

n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
tasks = 1000
rng = random.Random(22)
device = {"fingerprint": {"name": "bench-device"}, "class": "bench-device", "family": "bench"}
out = sys.stdout
for i in range(n):
    task = i % tasks
    config = {"tile": rng.choice([8, 16, 32, 64]), "unroll": rng.choice([1, 2, 4]),
              "block": rng.choice([64, 128, 256]), "vec": rng.choice([1, 2, 4, 8])}
    base = (1.5 if config["tile"] == 8 else 1.0) * (1 + 0.1 * rng.random()) * (1 + task / tasks)
    repeats = [base * (1 + 0.01 * rng.random()) for _ in range(3)]
    repeats.sort()
    record = {"kernel": "synthetic", "kernel_version": "", "problem": {"n": task},
              "device": device, "config": config, "status": "ok", "message": "",
              "time_ms": repeats[1], "repeat_times_ms": repeats, "median_ms": repeats[1],
              "min_ms": repeats[0], "stddev_ms": (repeats[2] - repeats[0]) / 2, "worker": "bench",
              "measured_at": "2026-12-03T00:00:00+00:00", "source": "worker"}
    out.write(json.dumps(record, separators=(",", ":")) + "\n")
