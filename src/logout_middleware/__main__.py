"""``python -m logout_middleware``: the operator's command line.

The same as the ``logout-middleware`` console script; see :mod:`logout_middleware.cli`::

    python -m logout_middleware status
    python -m logout_middleware revoke --subject 42
"""

from logout_middleware.cli import main

if __name__ == "__main__":
    main()
