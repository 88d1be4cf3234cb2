"""The runtime_scaling example; a package only so that type checkers find ``_shared``."""
