"""Scanning on a Ray cluster: the file stage as Ray tasks, the model stage in Ray actors.

Imported only when a scan is given ``--cluster`` (or ``cluster =`` in ``[tool.cwescan]``);
Ray is the optional extra ``cwescan[cluster]``. See docs/SCALING.md.
"""
