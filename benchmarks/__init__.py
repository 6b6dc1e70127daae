"""Benchmarks of logout-middleware, run with ``python -m benchmarks`` (or ``python dev.py
bench``); ``--smoke`` for a seconds-long run with tiny counts. See ``README.md`` here.

Modules: :mod:`.suite` (command line), :mod:`.variants` (the configurations measured,
one column each), :mod:`.apps` (bare apps, the ``BaseHTTPMiddleware`` alternative and
hand-written logout routes), :mod:`.inprocess`, :mod:`.sections` (through servers),
:mod:`.loadgen`, :mod:`.server`, :mod:`.floor`, :mod:`.mirror` (the revocation mirror's
memory and staleness), :mod:`.redisutil`, :mod:`.report`, :mod:`.charts`.
"""
