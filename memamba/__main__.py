"""Run the memamba command line as `python -m memamba`."""

from memamba.cli import main

raise SystemExit(main())
