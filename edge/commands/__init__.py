"""The `hootwatch` command line: `main` dispatches to one module per command (and to the trainer and export
commands through entry points). Commands parse arguments, call the packages below and print
what a person reads; what they compute lives in those packages."""
