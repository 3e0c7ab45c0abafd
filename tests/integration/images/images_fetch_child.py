"""Fetch one image into a node cache, printing progress; the test kills and restarts it."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from slicelab.images.cache import ImageCache, Quota
from slicelab.images.fetch import FetchOptions, Progress, RetryPolicy


def main() -> None:
    root, url, image, rate = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    batch = int(sys.argv[5]) if len(sys.argv) > 5 else 256
    options = FetchOptions(parallel=1, rate=rate, burst=16 * 1024, batch_chunks=batch,
                           retry=RetryPolicy(base_delay=0.05, max_delay=0.5))
    cache = ImageCache(Path(root), base_url=url, quota=Quota(1 << 30), options=options)

    def show(progress: Progress) -> None:
        print(f"progress {progress.done} {progress.total}", flush=True)

    asyncio.run(cache.fetch(image, progress=show))
    print("done", flush=True)


if __name__ == "__main__":
    main()
