"""Use cases of the clearinghouse. Each takes a unit of work and the caller, checks the
permission table (:func:`slicelab.domain.roles.authorize`), does its work, records it in the
audit log and commits. A refused call raises and so commits nothing."""

__all__: list[str] = []
