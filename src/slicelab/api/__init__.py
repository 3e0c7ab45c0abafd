"""The HTTP APIs of slicelab: REST (``rest/``), later the GENI AM API and the agent channel."""

__all__: list[str] = []
