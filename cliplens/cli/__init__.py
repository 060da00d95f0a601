"""The ``cliplens`` command line. Each subcommand is a module ``cmd_<name>.py``
exposing ``add_parser(subparsers)`` and ``run(args) -> int``."""
