"""What the worker benchmarks of bench/service share: a free port, and a worker's /metrics read."""

import socket
import urllib.request


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def alternating(specs, runs):
    """(label, path) of each `--ktune LABEL=PATH` in `specs`, `runs` times, one binary after the
    other: the baselines and the change run under the same load."""
    for _ in range(runs):
        for spec in specs:
            yield tuple(spec.split("=", 1))


def scrape(port):
    """The series of the /metrics page at 127.0.0.1:`port`, by name with labels: value."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    values = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name, value = line.rsplit(" ", 1)
        values[name] = float(value)
    return values
