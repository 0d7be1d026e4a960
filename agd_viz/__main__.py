import sys

from agd_viz.cli import main

sys.exit(main())
