"""icsmon analyzer: turns sensor events into alerts (Sigma rules, device baselines, asset inventory).

Imports from :mod:`sensor` only; :mod:`api` builds on it.
"""
