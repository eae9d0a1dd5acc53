"""`python -m cc_executor` starts the service, like `cc-executor start`."""

from cc_executor.server import main

if __name__ == "__main__":
    raise SystemExit(main())
