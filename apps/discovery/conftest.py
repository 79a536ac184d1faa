"""Make `import discovery` resolve to this app whatever pytest's rootdir is."""

import sys
from pathlib import Path

_HERE = str(Path(__file__).resolve().parent)
if sys.path[:1] != [_HERE]:
    sys.path.insert(0, _HERE)
