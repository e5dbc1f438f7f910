"""The ``prefork`` command: the settings table, config layers, the CLI and the server builder."""
