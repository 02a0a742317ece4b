"""The HTTP layer: parse, call the core, serialise. The core never imports this package."""
