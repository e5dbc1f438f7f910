"""The core: the mix-in and ready server classes, the worker, the scoreboard, signals, sockets."""
