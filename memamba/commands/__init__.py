"""One module per `memamba` subcommand: `add_parser(subparsers)` defines it, its handler runs it.

Modules here import only argparse and the standard library at top level; each handler imports the heavy
stage code when it runs, so `memamba --help` stays instant.
"""
