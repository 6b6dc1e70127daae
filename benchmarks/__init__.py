"""Benchmarks of logout-middleware, run with ``python -m benchmarks`` (or ``python dev.py
bench``); ``--smoke`` for a short run with tiny counts. See ``README.md`` here.

One module per thing measured: :mod:`.inprocess` (pass-through in-process, timed by
pyperf), :mod:`.passthrough`, :mod:`.logout` (with the hand-written routes and the
redis-py floor), :mod:`.everywhere`, :mod:`.scaling`, :mod:`.mirror` (memory),
:mod:`.staleness`, :mod:`.cluster`, :mod:`.stream`. Shared pieces: :mod:`.common`
(settings, variants, requests), :mod:`.apps` (the apps and their server),
:mod:`.load` (server processes and rounds of wrk runs), :mod:`.wrk`,
:mod:`.redisutil` (round-trip counting, the local cluster), :mod:`.report`,
:mod:`.charts`, :mod:`.suite` (the command line). No module imports one that imports it.
"""
