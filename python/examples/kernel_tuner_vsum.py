#!/usr/bin/env python3
"""Kernel Tuner tunes a C kernel while ktune's agent proposes the configurations.

    ktune serve --db kt.db &
    .venv/bin/python python/examples/kernel_tuner_vsum.py [127.0.0.1:7470]
"""

import sys

import numpy as np
from kernel_tuner import tune_kernel

import ktune
from ktune.kernel_tuner import Strategy

SOURCE = r"""
#include <chrono>
extern "C" float vsum(float *out, const float *a, int n) {
  auto t0 = std::chrono::steady_clock::now();
  float total = 0;
  for (int i = 0; i < n; i += block_size_x) {
    float acc[unroll] = {0};
    for (int j = 0; j < block_size_x; j += unroll)
      for (int u = 0; u < unroll; ++u) acc[u] += a[i + j + u];
    for (int u = 0; u < unroll; ++u) total += acc[u];
  }
  out[0] = total;
  auto t1 = std::chrono::steady_clock::now();
  return std::chrono::duration<float, std::milli>(t1 - t0).count();
}
"""
n = 1 << 20
a = np.ones(n, dtype=np.float32)
out = np.zeros(1, dtype=np.float32)
tune_params = {"block_size_x": [64, 128, 256, 512, 1024, 2048], "unroll": [1, 2, 4, 8, 16]}

client = ktune.Client(sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:7470")
strategy = Strategy(client, strategy="ppo", batch_size=4, seed=1)
results, env = tune_kernel("vsum", SOURCE, n, [out, a, np.int32(n)], tune_params, lang="C",
                           restrictions=["block_size_x >= 16 * unroll"],
                           answer=[np.array([n], np.float32), None, None],
                           strategy=strategy, strategy_options={"max_fevals": 16},
                           iterations=7, quiet=True)
if results:
    fastest = min(results, key=lambda r: r["time"])
    print(f"Kernel Tuner measured {len(results)} configurations; fastest "
          f"block_size_x={fastest['block_size_x']} unroll={fastest['unroll']}: "
          f"{fastest['time']:.4f} ms")
else:  # run again on the same server: ktune has measured every configuration already
    print("Kernel Tuner measured 0 configurations: ktune's records hold every one of the space")
print(f"ktune: kernel {strategy.kernel_name}, jobs {strategy.job_ids}, {strategy.reported} "
      f"records committed under {strategy.device.device_class!r}")
answer = client.best(strategy.kernel_name, strategy.task.problem, strategy.device)
print(f"ktune best ({answer.level.value}): {answer.config} {answer.best.time_ms:.4f} ms "
      f"(median of {len(answer.best.repeat_times_ms)} repeats)")
print(f"Kernel Tuner cache written from ktune: {strategy.export_cache('vsum_cache.json')} entries"
      " in vsum_cache.json")
