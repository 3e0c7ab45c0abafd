"""Identity: API token secrets and SSH public keys (later: CA, certificates, credentials)."""

__all__: list[str] = []
