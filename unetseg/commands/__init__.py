"""One module per ``unetseg`` subcommand: its arguments (``add_parser``) and its handler (``run``).

Only :mod:`unetseg.cli` imports this package; the library never does. Handlers print, parse arguments and
turn user errors into one line with an exit code; the work itself lives in the library.
"""
