"""The wsgi_sync example; a package only so that type checkers tell its modules from other examples'."""
