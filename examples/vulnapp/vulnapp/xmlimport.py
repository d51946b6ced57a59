"""Importing notes from XML exports."""

import defusedxml.ElementTree as SafeET
from lxml import etree


def parse_export(data):
    parser = etree.XMLParser(resolve_entities=True, no_network=False)
    return etree.fromstring(data, parser)


def parse_export_safe(data):
    return SafeET.fromstring(data)
