"""The `worth` command line, one module per command group."""
