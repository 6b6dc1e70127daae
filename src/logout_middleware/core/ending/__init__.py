"""Ending credentials: what a logout, logging out everywhere, an impersonation's end and
an operator's revocation have in common.

* :mod:`.request`: what ends and who asked (:class:`Ending`, :class:`Asked`), and the
  result (:class:`Ended`);
* :mod:`.flow`: :class:`Ender`, the steps (learn, decide, find what else ends);
* :mod:`.event`: the events it emits;
* :mod:`.writes`: the one transaction it plans.
"""

from .event import event_type
from .flow import Ender
from .request import Asked, Ended, Ending

__all__ = ["Asked", "Ended", "Ender", "Ending", "event_type"]
