"""The state that travels together (graph, takedowns, scoreboard, cursor): its files, its
object store, and the lease that says which process writes them."""
