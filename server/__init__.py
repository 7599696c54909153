"""The ganpaint application layer: command line and (FastAPI) web server."""
