"""Offline work on data: the Yes.com playlists, the evaluation and the session simulator."""
