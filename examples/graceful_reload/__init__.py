"""The graceful_reload example; a package only so that type checkers find ``_shared``."""
