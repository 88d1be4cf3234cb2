"""The multi_app_cluster example; a package only so that type checkers find ``_shared``."""
