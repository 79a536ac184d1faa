"""Make `import streaming` resolve to this app, and `import servicekit` to the kit beside
it (apps/servicekit), whatever pytest's rootdir is and whatever is installed: a checkout
tests its own servicekit, not one installed from another tree."""

import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
for _path in (str(_HERE.parent / "servicekit"), str(_HERE)):  # the last ends up first
    if sys.path[:1] != [_path]:
        sys.path.insert(0, _path)
