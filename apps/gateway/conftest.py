"""Make `import gateway` resolve to this app, `import servicekit` to the kit beside it
(apps/servicekit) and `import discovery` to the registry app (apps/discovery, which the
tests run for real), whatever pytest's rootdir is and whatever is installed: a checkout
tests its own code, not one installed from another tree."""

import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
# The last ends up first.
for _path in (str(_HERE.parent / "discovery"), str(_HERE.parent / "servicekit"), str(_HERE)):
    if sys.path[:1] != [_path]:
        sys.path.insert(0, _path)
