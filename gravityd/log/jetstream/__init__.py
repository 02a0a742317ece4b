"""The JetStream backend of the event log: one replicated stream for writers and replicas on any
number of machines (`--log-url nats://HOST:PORT[,HOST:PORT...]`). See docs/jetstream.md.

**Messages.** nats-py publishes some 23k single messages/s into an R3 stream, so an event per
message would cap a writer far below 100k events/s. A group commit is published instead as a
few messages of up to 8,192 events each (columns packed with msgpack). An event's position is
`sequence * 8192 + slot`, the slots of a message of n events being the last n (8192 - n ..
8191): positions are unique and strictly increasing, `position >> 13` is the stream sequence,
and the committed high-water mark is `last_seq * 8192 + 8191`, one cheap stream-info call.

**Durability.** A 202 is given once JetStream acknowledged every message of the commit, that
is once a quorum of the stream's replicas stored it. Each message carries a `Nats-Msg-Id`
unique to its writer and commit; a publish whose answer never came (leader lost, timeout) is
kept "in doubt" and published again, with the same id, before the writer's next commit:
JetStream stores it at most once inside its duplicate window and answers with its sequence.

**Duplicates of client event_ids.** Message ids cannot catch a client's retry, which the writer
may group differently. Each writer keeps an index event_id -> position of the duplicate window:
its own commits, and every other writer's, read from the stream by an ordered consumer (only
the ids block of a message is decoded). A retry inside the window is answered
`duplicate: true` with the first positions. Past the window, or in the milliseconds before
another writer's message reaches the index, a repeat is stored again; the fold counts each kind
of verdict once per session transition, so the graph counts it once.

**Modules.** `messages` (positions, the message format), `stream` (URL, connection, TLS,
creating and checking the stream, its origin), `dedup` (the duplicate index and the follower
of other writers), `writer` (group commits, commits in flight, republishing), `reader` (direct
gets, the high-water mark, the headers-only consumer that wakes replicas), `retry` (asking
again at open while the cluster is not ready), `metrics`, and `log` (JetStreamLog, which owns
the connection and puts the parts together).
"""

from gravityd.log.jetstream.log import JetStreamLog, open_jetstream_log
from gravityd.log.jetstream.stream import parse_log_url

__all__ = ["JetStreamLog", "open_jetstream_log", "parse_log_url"]
