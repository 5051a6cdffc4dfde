"""`python -m agent.cli`: the same command line as `interp`."""

import sys

from agent.cli import main

sys.exit(main())
