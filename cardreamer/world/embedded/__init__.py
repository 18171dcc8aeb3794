"""The embedded simulator: the default world backend, pure numpy, no server."""
from cardreamer.world.embedded.world import EmbeddedWorld

__all__ = ["EmbeddedWorld"]
