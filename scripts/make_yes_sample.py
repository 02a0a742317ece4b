"""Write tests/data/yes_sample: a small, generated folder in the Yes.com playlist format.

    python scripts/make_yes_sample.py [--out tests/data/yes_sample] [--seed 0]

The tests need real-format data without the real data beside the clone. The format is that of
the Yes.com radio playlists of Chen, Moore, Turnbull and Joachims, "Playlist prediction via
metric embedding" (KDD 2012): `train.txt` (line 1 the Yes.com song ids, line 2 each song's play
count, then one playlist per line as 0-based song indices, each ending with a space),
`song_hash.txt` (`index<TAB>title<TAB>artist`, slashes escaped as `\\/`), `tags.txt` (the tag
indices of each song, `#` for none) and `tag_hash.txt` (`index, tag`). The songs, playlists and
tags here are made up: stations of a few genres, each playing its songs mostly in one order, so
the next-track structure is there for the graph to find. Seeded: the same seed writes the same
bytes (a test checks the committed folder against this script).
"""

from __future__ import annotations

import argparse
import random
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "tests" / "data" / "yes_sample"
N_GENRES = 6
SONGS_PER_GENRE = 50
N_PLAYLISTS = 400
GENRES = ("rock", "pop", "country", "hip hop", "jazz", "electronic")
EXTRA_TAGS = (
    "90s",
    "80s",
    "female vocalists",
    "male vocalists",
    "dance",
    "chill",
    "love",
    "guitar",
    "acoustic",
    "party",
    "classic",
    "indie",
    "soul",
    "live",
)
README = """\
# yes_sample: generated playlists in the Yes.com format

Written by `python scripts/make_yes_sample.py` (seed {seed}); the tests use it so that a clone of
the repository needs no other data. The songs, titles, tags and playlists are made up. The format
is that of the Yes.com radio playlists published by Chen, Moore, Turnbull and Joachims with
"Playlist prediction via metric embedding" (KDD 2012), on the authors' data page at Cornell
(http://www.cs.cornell.edu/~shuochen/lme/data_page.html): see docs/evaluation.md of the
repository, "Real playlists: Yes.com radio", for running `gravityd eval` on the real sets.

- `train.txt`: line 1 the songs' Yes.com ids, line 2 each song's play count, then one playlist
  per line as 0-based song indices, each line ending with a space; no song follows itself.
- `song_hash.txt`: `index<TAB>title<TAB>artist` (slashes escaped as `\\/`).
- `tags.txt`: line i holds the tag indices of song i, `#` where it has none.
- `tag_hash.txt`: `index, tag`.

{songs} songs, {playlists} playlists, {transitions} transitions.
"""


def generate(seed: int = 0) -> dict[str, str]:
    """The folder's files as {name: text}."""
    rng = random.Random(seed)
    n_songs = N_GENRES * SONGS_PER_GENRE
    genre = [s // SONGS_PER_GENRE for s in range(n_songs)]
    # Each genre's station plays its songs mostly in one (shuffled) order.
    orders = []
    for g in range(N_GENRES):
        songs = list(range(g * SONGS_PER_GENRE, (g + 1) * SONGS_PER_GENRE))
        rng.shuffle(songs)
        orders.append(songs)
    position = {s: (g, i) for g, order in enumerate(orders) for i, s in enumerate(order)}
    playlists = []
    for _ in range(N_PLAYLISTS):
        g = rng.randrange(N_GENRES)
        song = rng.choice(orders[g])
        playlist = [song]
        for _ in range(rng.randint(3, 19)):
            r = rng.random()
            if r < 0.65:  # the station's usual next song
                gg, i = position[song]
                nxt = orders[gg][(i + 1) % SONGS_PER_GENRE]
            elif r < 0.9:  # another song of the genre
                nxt = rng.choice(orders[genre[song]])
            else:  # anything
                nxt = rng.randrange(n_songs)
            if nxt == song:
                continue
            playlist.append(nxt)
            song = nxt
        playlists.append(playlist)
    plays = Counter(s for p in playlists for s in p)
    tag_names = [*GENRES, *EXTRA_TAGS]
    tags = []
    for s in range(n_songs):
        if rng.random() < 0.15:
            tags.append("#")
            continue
        mine = {genre[s]} | {len(GENRES) + rng.randrange(len(EXTRA_TAGS)) for _ in range(2)}
        tags.append(" ".join(str(t) for t in sorted(mine)))
    names = []
    for s in range(n_songs):
        title = f"Song {s}" + (f" (w\\/ Guest {s % 11})" if s % 17 == 0 else "")
        names.append(f"{s}\t{title}\tArtist {genre[s]}-{s % 9}")
    train = [
        " ".join(str(17_000_000 + 37 * s) for s in range(n_songs)),
        " ".join(str(plays[s]) for s in range(n_songs)),
        *("".join(f"{s} " for s in p) for p in playlists),
    ]
    readme = README.format(
        seed=seed,
        songs=n_songs,
        playlists=len(playlists),
        transitions=sum(len(p) - 1 for p in playlists),
    )
    return {
        "train.txt": "\n".join(train) + "\n",
        "song_hash.txt": "\n".join(names) + "\n",
        "tags.txt": "\n".join(tags) + "\n",
        "tag_hash.txt": "\n".join(f"{i}, {t}" for i, t in enumerate(tag_names)) + "\n",
        "README.md": readme,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(DEFAULT_OUT), help="folder to write")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, text in generate(args.seed).items():
        (out / name).write_text(text, encoding="utf-8")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
