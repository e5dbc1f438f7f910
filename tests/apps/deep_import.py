"""An APP whose import fails two modules down, in a dict lookup (tests/integration/
test_logging.py): the boot failure's line must name tests/apps/deep_config.py and its line."""

from tests.apps import deep_config

application = deep_config.make_app
