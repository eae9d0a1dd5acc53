"""`python -m cc_executor.cli`: the `cc-executor` command."""

from cc_executor.cli import main

raise SystemExit(main())
