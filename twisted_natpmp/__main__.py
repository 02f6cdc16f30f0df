"""
C{python -m twisted_natpmp}: the C{natpmp} command.
"""

import sys

from ._cli import main

if __name__ == "__main__":
    sys.exit(main())
