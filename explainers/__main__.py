"""``python -m explainers --help``"""

import sys

from .cli import main

sys.exit(main())
