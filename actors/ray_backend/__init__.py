"""The Ray actor backend (``--backend ray``).

* :mod:`actors.ray_backend.connect`: joining a cluster or starting a loopback-only
  local instance, with token authentication;
* :mod:`actors.ray_backend.actor`: the Ray actors that act and the parameter server;
* :mod:`actors.ray_backend.source`: :class:`RayRolloutSource`, the learner's side (the
  data flow is described there).
"""

from actors.ray_backend.actor import (ObjectStoreParams, ParameterServer, RolloutActor,
                                      _RemoteParameterServer, _RemoteRolloutActor)
from actors.ray_backend.connect import connect_ray, keep_token_auth_on
from actors.ray_backend.source import RayRolloutSource

__all__ = ["RayRolloutSource", "connect_ray", "keep_token_auth_on", "ObjectStoreParams", "ParameterServer",
           "RolloutActor", "_RemoteParameterServer", "_RemoteRolloutActor"]
