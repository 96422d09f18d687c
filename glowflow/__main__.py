import sys

from glowflow.cli import main

sys.exit(main())
