"""The uvicorn_app example; a package only so that type checkers find ``_shared``."""
