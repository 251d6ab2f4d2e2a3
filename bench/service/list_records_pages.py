"""Paging through every record of a server with ListRecords: the time of each page by its place.

    .venv/bin/python bench/service/list_records_pages.py HOST:PORT [PAGE_SIZE]

Prints the wall time of pages 1, 10, 50 and the last (ms), and the whole walk. With pages by
position (TuningDatabase::RecordsAfter) a page costs its own records wherever it is; by offset,
a page read every record before it again.
"""
import sys
import time

import grpc

from ktune.v1 import tuning_service_pb2 as ts
from ktune.v1 import tuning_service_pb2_grpc as ts_grpc


def main() -> None:
    address = sys.argv[1]
    page_size = int(sys.argv[2]) if len(sys.argv) > 2 else 10000
    stub = ts_grpc.TuningServiceStub(
        grpc.insecure_channel(address, options=[("grpc.max_receive_message_length", 1 << 30)]))
    request = ts.ListRecordsRequest(page_size=page_size)
    times, total = [], 0
    start = time.perf_counter()
    while True:
        t0 = time.perf_counter()
        page = stub.ListRecords(request, timeout=600)
        times.append((time.perf_counter() - t0) * 1000)
        total += len(page.records)
        if not page.next_page_token:
            break
        request.page_token = page.next_page_token
    whole = time.perf_counter() - start
    picks = [i for i in (0, 9, 49, len(times) - 1) if i < len(times)]
    print(f"{total} records in {len(times)} pages of {page_size}: {whole:.1f} s in all")
    for i in picks:
        print(f"  page {i + 1:4d}: {times[i]:8.1f} ms")


if __name__ == "__main__":
    main()
