"""`cwescan eval`: one code path for every number the project states about detectors."""
