"""The one registry client (transport, retries, auth), OCI documents, the client pool and the upstream pull budget."""
