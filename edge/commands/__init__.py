"""The `hootwatch` command line: `main` dispatches to one module per command (and to the trainer and export
commands through entry points). Commands parse arguments and call the packages below; they hold no logic of
their own."""
