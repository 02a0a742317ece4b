"""One module per view family; each handler parses, calls the service, serialises."""
