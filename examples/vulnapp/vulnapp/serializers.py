"""Import and export of notes."""

import json
import pickle

import yaml
from flask import request


def import_backup():
    blob = request.get_data()
    return pickle.loads(blob)


def import_settings(text):
    return yaml.load(text, Loader=yaml.Loader)


def import_settings_safe(text):
    return yaml.safe_load(text)


def import_backup_safe():
    return json.loads(request.get_data(as_text=True))
