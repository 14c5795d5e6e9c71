"""``python -m bench``: run the whole benchmark (see :mod:`bench.agi_bench`)."""

from bench.agi_bench import main

raise SystemExit(main())
