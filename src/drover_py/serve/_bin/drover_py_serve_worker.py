"""The script a `drover-py serve` master runs: `drover_py.serve.worker` as a program.

A file of its own, in a folder of its own: ``python SCRIPT`` puts the script's folder
first on ``sys.path``, and nothing here may shadow a module of the app's.
"""

import sys

del sys.path[0]  # this folder; the worker puts the app's folder first instead

from drover_py.serve.worker import main  # noqa: E402

main()
