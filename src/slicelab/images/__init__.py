"""Content-addressed images and files, shared by the image server and the node cache.

Modules (import the one you need; nothing is re-exported here):

* ``chunker``  FastCDC content-defined chunking with BLAKE3 chunk hashes
* ``archive``  deterministic tar streams from directories and tarballs, safe extraction
* ``manifest`` canonical JSON manifests; the image id is the manifest's hash
* ``store``    zstd chunk files by hash, written atomically; catalog; resumable uploads
* ``delta``    changed chunks compressed against the old chunks at their place
* ``frames``   the wire format of a chunk batch (length-prefixed frames)
* ``http``     ``make_router(store)``: the FastAPI router of the image server
* ``fetch``    node-side HTTP fetching with retries, a bandwidth cap and progress
* ``cache``    the node's image cache: fetch queue, materialization, garbage collection
* ``upload``   chunk a file or directory into a store and push it to a server
* ``errors``   ``IntegrityError`` and ``CacheFull``, leaves of the domain error tree
"""

__all__: list[str] = []
