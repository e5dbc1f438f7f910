"""An APP module that cannot be imported (tests/test_app_loader.py)."""

raise KeyError("missing setting")
