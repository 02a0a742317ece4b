"""Soak benchmark: one `gravityd serve` under a steady mixed load for minutes, watching what
drifts (memory, latency, fold lag) and checking at the end that the log holds every
acknowledged event exactly once.

The daemon is a child process (bench/common.py serve()) with a fixed catalogue of tracks, so the
graph stops growing after a while, periodic snapshots every --snapshot-interval seconds, and a
session timeout short enough (--session-timeout, with --maintenance-parts so the sweep passes
often) that the fold's open-session state reaches a steady size inside the run too. With the
daemon's own defaults (30 min timeout, a sweep pass every ~10M events) session state grows for
the first half hour of any run, which a 10-minute soak could not tell from a leak.

Load, all at once, from one asyncio client (aiohttp; uvloop when installed):
- POST /events: --batch-workers closed-loop workers pacing --batch-rps in total, 50-500 events
  per batch (a quarter of them as NDJSON), each worker driving its own interleaved radio
  sessions over the catalogue (radio_next, play_start, play_10s / graded skip, like; the next
  track is usually one of the current track's neighbours, else a popularity draw);
- POST /event: --event-workers closed-loop workers pacing --event-rps single events, same kind
  of sessions;
- every event carries a client event_id "<run prefix><n>"; a request that fails is retried once
  with the same body (the idempotent retry a real client makes), and one batch in 40 and one
  single event in 100 is delivered twice on purpose (both must come back as duplicates);
- GET /tracks/{id}/gravity_neighbors, open loop at --neighbors-rps (popular tracks, limit 10/20/50,
  one in ten direction=both, one in twenty an unknown track);
- POST /rank, open loop at --rank-rps, pools of 200-500 candidates with a 10-track history;
- GET /metrics every --metrics-every s, POST /admin/snapshot every --admin-snapshot-every s;
- every --sample-every s: the daemon's VmRSS (/proc/PID/status), threads, open fds and CPU, and
  GET /readyz (log last id, fold cursor, edges) with the fold's session count from /metrics.

Each request's latency is recorded (send to last body byte), per route, with its status. The
daemon's stderr goes to a file (log level INFO) so the "snapshot written" lines give every
snapshot's time and duration; requests that started during a snapshot are reported apart.

At the end: POST /admin/fold, stop the daemon (SIGTERM: graceful shutdown), open the SQLite
log and check every acknowledged event_id is there exactly once, no event we never sent (or
that was rejected) is there, and single events sit at the id their 202 gave. Events whose
request failed are counted apart (they may or may not be there). Exit status 1 when an event
was lost or duplicated, anything the log should not hold is there, or any 5xx (or the daemon
died); timings are reported, never asserted.

The parts: world.py (the catalogue, the listening sessions and the ledger of every event
generated), load.py (the Soak driver: paced ingest workers with their retries and deliberate
duplicate deliveries, open-loop reads, periodic scrapes and snapshots), probes.py (what the
daemon shows of itself: /proc, /metrics, its log), check.py (the log against the ledger),
report.py (the tables and the verdict), __main__.py (arguments, the daemon, the run).

    python -m bench.soak          # 10 minutes
    python -m bench.soak --smoke  # ~20 s, small catalogue, CI-sized
    python -m bench.soak --minutes 30 --json /tmp/soak.json
"""
