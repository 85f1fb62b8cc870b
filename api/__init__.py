"""icsmon user-facing surfaces: the ``icsmon`` command line and (later) the HTTP API.

Top of the dependency chain: may import :mod:`analyzer` and :mod:`sensor`.
"""
