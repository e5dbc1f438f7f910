"""Applications: loading an APP in its three forms (:mod:`prefork.apps.loader`) and serving
WSGI applications over HTTP/1.1 with a socketserver handler (:mod:`prefork.apps.wsgi`, built
from :mod:`~prefork.apps.request`, :mod:`~prefork.apps.body` and :mod:`~prefork.apps.response`);
:mod:`prefork.apps.server` has the ready ``PreforkWSGIServer``."""
