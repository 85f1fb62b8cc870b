"""pySigma plugin: the ``icsmon`` processing pipeline (``sigma convert -p icsmon``).

pySigma discovers pipelines in the ``sigma.pipelines`` namespace package; this module only
registers the pipeline that lives in :mod:`analyzer.sigma.pipeline`.
"""

from analyzer.sigma.pipeline import icsmon_pipeline as _icsmon_pipeline

pipelines = {"icsmon": _icsmon_pipeline}
__all__ = ["pipelines"]  # only the mapping: pySigma would register every public function
