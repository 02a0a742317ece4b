"""The `gravityd` command line: one module per command family, and the parser in cli.py."""
