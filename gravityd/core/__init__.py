"""The pure parts: events, the graph, ranking, the scoreboard and takedowns.

Nothing here does I/O or knows about HTTP, the log or files: every function takes its inputs
(and its clock) explicitly, so the daemon, `build`, the evaluation and the tests share them.
"""
