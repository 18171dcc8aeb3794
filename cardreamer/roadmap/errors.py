"""Errors of the road map."""


class MapError(ValueError):
    """A map file is missing, malformed, or a location is not on the map."""
