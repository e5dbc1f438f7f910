"""Imported by tests/apps/deep_import.py; the lookup below raises KeyError: 'b' at import."""

SETTINGS = {"a": 1}


def setting(name: str) -> int:
    return SETTINGS[name]  # line 7: where the boot failure points


VALUE = setting("b")


def make_app() -> None:
    """Never reached."""
