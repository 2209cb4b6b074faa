"""The daemon's web side: Starlette pages and endpoints, served by uvicorn in the daemon's loop."""
