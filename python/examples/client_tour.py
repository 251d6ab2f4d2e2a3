#!/usr/bin/env python3
"""A tour of the ktune client, as a compiler would use it.

    ktune serve --db tour.db --replay pnpoly_RTX_2080_Ti_kernel_tuner_cache.json.gz &
    ktune worker --device replay:pnpoly_RTX_2080_Ti_kernel_tuner_cache.json.gz &
    .venv/bin/python python/examples/client_tour.py [127.0.0.1:7470]
"""

import sys

import ktune

address = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:7470"
with ktune.Client(address) as client:  # token=..., tls=True, root_certificates=... when needed
    # 1. Tune now, with progress (a one-task job on the device class's workers).
    final = client.tune("pnpoly", {}, "RTX_2080_Ti", budget=32, strategy="ppo", seed=1,
                        on_progress=lambda e: print(f"  tune: {e.measurements_done}/"
                                                    f"{e.budget_measurements}, best "
                                                    f"{e.best_time_ms} ms"))
    print(f"tuned: {final.best_config} in {final.best_time_ms:.4f} ms")

    # 2. The best known configuration (from what was just measured), and which level of
    #    the fallback answered.
    for device in ["RTX_2080_Ti",                                        # a device class
                   ktune.Device.make("RTX_2080_Ti", "turing",            # a full fingerprint
                                     name="NVIDIA GeForce RTX 2080 Ti"),
                   ktune.Device("NVIDIA GeForce RTX 2070", "turing"),    # same family only
                   "cpu:nowhere"]:
        answer = client.best("pnpoly", {}, device, top=2)
        times = [f"{r.time_ms:.4f} ms" for r in answer.records]
        print(f"best on {getattr(device, 'device_class', device)!r}: {answer.level.value}, "
              f"{answer.config}, {times}")

    # 3. A fleet job: submit, watch, list; and one cancelled.
    job = client.submit(ktune.JobSpec(name="tour", kernels=["pnpoly"], problems=[{}],
                                      device_classes=["RTX_2080_Ti"], budget=48,
                                      strategy="random", seed=2))
    for event in client.watch(job.job_id):
        print(f"  job {job.job_id}: {event.job.state.value} {event.job.measurements_done}/"
              f"{event.job.measurements_total}")
    big = client.submit({"name": "cancelled", "kernels": ["pnpoly"], "problems": [{}],
                         "device_classes": ["RTX_2080_Ti"], "budget": 2000, "strategy": "random"})
    stopped = client.cancel(big.job_id)  # what was measured is kept
    print(f"job {big.job_id}: {big.state.value} -> {stopped.state.value} "
          f"({client.get_job(big.job_id).measurements_done} measured)")
    print("jobs:", [(j.job_id, j.name, j.state.value) for j in client.jobs()])

    # 4. Errors carry the gRPC code and ktune's message.
    try:
        client.submit(ktune.JobSpec(kernels=["no_such_kernel"], problems=[{"M": 1}],
                                    device_classes=["cpu:x"], budget=4))
    except ktune.NotFound as e:
        print(f"error: {e.code.name}: {e.message[:60]}...")

    # 5. Records out (and into another server with import_records).
    records = list(client.export_records())
    ok = [r for r in records if r.ok]
    print(f"exported {len(records)} records, {len(ok)} ok; fastest {min(r.time_ms for r in ok):.4f} ms")
