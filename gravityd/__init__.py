"""gravityd: the gravity layer of the Live Radio.

Turns listening events into a weighted, directed track-to-track graph and serves it.
"""

__version__ = "0.5.0"
