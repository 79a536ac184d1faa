"""`python -m discovery`: serve on PORT (default 8761) on all interfaces."""

import os

import uvicorn

from discovery.api import create_app

if __name__ == "__main__":
    # All interfaces: inside a container the pod IP is the only way in.
    uvicorn.run(create_app(), host="0.0.0.0", port=int(os.environ.get("PORT", "8761")))  # noqa: S104
