"""Code the examples share: the worker's HTTP server (server.py) and the masters' life cycle (cli.py)."""
