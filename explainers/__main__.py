"""``python -m explainers --help``"""

import sys

from explainers.cli import main

sys.exit(main())
