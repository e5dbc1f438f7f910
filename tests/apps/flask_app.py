"""A small Flask app: ``prefork serve tests.apps.flask_app:app`` (routes as in wsgi_plain)."""

from __future__ import annotations

import flask

from tests.apps.wsgi_plain import digest

app = flask.Flask(__name__)


@app.get("/hello")
def hello() -> flask.Response:
    return flask.Response(b"hello\n", mimetype="text/plain")


@app.post("/echo")
def echo() -> flask.Response:
    return flask.Response(digest(flask.request.get_data()), mimetype="text/plain")


@app.get("/stream")
def stream() -> flask.Response:
    def chunks() -> object:
        for n in range(3):
            yield b"chunk %d\n" % n
    return flask.Response(chunks(), mimetype="text/plain")


@app.get("/download")
def download() -> flask.Response:
    """flask.send_file of the file the query string names (wsgi.file_wrapper underneath)."""
    return flask.send_file(flask.request.query_string.decode(), mimetype="application/x")
