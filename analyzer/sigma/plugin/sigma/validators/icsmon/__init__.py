"""pySigma plugin: icsmon's offline validators (``sigma check``).

Registers :data:`analyzer.sigma.validators.validators`: ATT&CK for ICS tags (replacing pySigma's
downloading ATT&CK and D3FEND checks under their own identifiers), icsmon logsources and fields.
"""

from analyzer.sigma.validators import validators as _validators

validators = dict(_validators)
__all__ = ["validators"]  # only the mapping: pySigma would register every public class twice
