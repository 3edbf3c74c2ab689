"""``python -m reproductions.spfde_neurips22.analysis``: see ``cli``."""

import sys

from .cli import main

sys.exit(main())
