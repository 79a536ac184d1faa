"""`python -m discovery`: serve on PORT (default 8761) on all interfaces."""

import logging
import os

import uvicorn

from discovery.api import create_app

if __name__ == "__main__":
    # uvicorn configures only its own loggers; this makes eviction logs visible too.
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    # All interfaces: inside a container the pod IP is the only way in.
    uvicorn.run(create_app(), host="0.0.0.0", port=int(os.environ.get("PORT", "8761")))  # noqa: S104
