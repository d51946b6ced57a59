"""A small Flask-style notes service used to demonstrate cwescan. Do not deploy it."""
