"""One module per ``medgen`` sub-command: ``add_parser(subparsers)`` and ``run(args) -> exit code``."""
