"""The uvicorn_app example; a package only so that type checkers tell its modules from other examples'."""
