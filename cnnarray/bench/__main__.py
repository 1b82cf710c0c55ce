"""``python -m cnnarray.bench --worker PEER CASE ...``: one worker process of ``cnnarray bench``.

An internal command line (see :func:`cnnarray.bench.worker.main`); the
benchmarks themselves run with ``cnnarray bench``.
"""

import sys

from .worker import main

if __name__ == "__main__":
    sys.exit(main())
