"""Batched inference on the learner's device (``--inference learner``).

* :mod:`actors.inference.wire`: the shared-memory request/response slots and the
  messages on the actors' Unix sockets;
* :mod:`actors.inference.planner`: which waiting rows run in which forward (pure);
* :mod:`actors.inference.server`: :class:`InferenceServer`, a thread of the trainer
  (the data flow is described there);
* :mod:`actors.inference.client`: :class:`InferenceClient`, the acting policy of an
  actor process.
"""

from actors.inference.client import InferenceClient
from actors.inference.server import InferenceServer, ServerStats
from actors.inference.wire import InferenceServerError, InferenceSlots

__all__ = ["InferenceServer", "InferenceClient", "InferenceSlots", "InferenceServerError", "ServerStats"]
