"""HTTP routes of the notes service."""

import os
import subprocess
from urllib.parse import urlparse

from flask import Flask, abort, redirect, request, send_file
from markupsafe import escape

from vulnapp import db

app = Flask(__name__)
NOTES_DIR = "/srv/notes"
ALLOWED_REDIRECT_HOSTS = {"example.com", "www.example.com"}


@app.route("/search")
def search():
    term = request.args.get("q", "")
    return {"results": db.find_notes(term)}


@app.route("/search-safe")
def search_safe():
    term = request.args.get("q", "")
    return {"results": db.find_notes_safe(term)}


@app.route("/ping")
def ping():
    host = request.args.get("host", "localhost")
    return os.popen("ping -c 1 " + host).read()


@app.route("/ping-safe")
def ping_safe():
    host = request.args.get("host", "localhost")
    if not host.replace(".", "").replace("-", "").isalnum():
        abort(400)
    done = subprocess.run(["ping", "-c", "1", host], capture_output=True, text=True, check=False)
    return done.stdout


@app.route("/lookup")
def lookup():
    domain = request.args.get("domain", "")
    return subprocess.check_output(f"nslookup {domain}", shell=True)


@app.route("/notes/<name>")
def read_note(name):
    path = os.path.join(NOTES_DIR, name)
    with open(path) as f:
        return f.read()


@app.route("/notes-safe/<name>")
def read_note_safe(name):
    root = os.path.realpath(NOTES_DIR)
    path = os.path.realpath(os.path.join(root, name))
    if os.path.commonpath([root, path]) != root:
        abort(404)
    return send_file(path)


@app.route("/calc")
def calc():
    expression = request.args.get("expr", "0")
    return str(eval(expression))


@app.route("/calc-safe")
def calc_safe():
    a = int(request.args.get("a", "0"))
    b = int(request.args.get("b", "0"))
    return str(a + b)


@app.route("/hello")
def hello():
    name = request.args.get("name", "world")
    return f"<h1>Hello {name}!</h1>"


@app.route("/hello-safe")
def hello_safe():
    name = request.args.get("name", "world")
    return f"<h1>Hello {escape(name)}!</h1>"


@app.route("/login/done")
def after_login():
    target = request.args.get("next", "/")
    return redirect(target)


@app.route("/login/done-safe")
def after_login_safe():
    target = request.args.get("next", "/")
    host = urlparse(target).netloc
    if host and host not in ALLOWED_REDIRECT_HOSTS:
        target = "/"
    return redirect(target)
