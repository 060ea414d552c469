"""Joining result files of one study configuration whose seeds ran apart: the shards of a
sweep (merge_shards, used by pipeline.sweep) and result folders run at different times
(pool, `python -m pipeline.pool`).

    python -m pipeline.pool --out docs/runs/x/<configuration> FOLDER FOLDER [...]

Per-seed resume joins seeds only while the configuration's work folder (models/study/<name>/)
is kept. When it is gone — 16 seeds run, their level files deleted, 16 more run later — the
two result folders (reports/study/runs/<name>/) can still be pooled: the seeds' results do not
depend on which seeds shared a run (the engine's batch independence), so the pooled files are
the rows of both, ordered as one run of every seed (in increasing order) writes them, by the
same merge that joins a sharded sweep. The folders must be one configuration: config.json
equal but for the seeds and the name, every study axis of the same value (a folder written
before an axis existed means the value its params record: study.axis_value), and no seed in
two folders.

What a folder written by an older version lacks is filled where it is implied and left out
where it is not, and said: a study-axis column (bias_init, n_samples, …) is filled with the
configuration's value; a result file or another column that some folder lacks is left out of
the pool (the tools that read the folder ask only for what they need). A folder's seeds may
also come from different commits of the engine: single seeds move across those, fractions do
not (docs/engine.md, "Reproducibility"), so pool only runs of one protocol.
"""
from __future__ import annotations

import csv
import io as io_text
import json
import sys
from pathlib import Path

from pipeline import cli, config, io
from pipeline.config import STUDY_AXES

# config.json keys that name or list a folder's own seeds, and those the axes' values stand for
OWN_KEYS = ("seeds", "name", *STUDY_AXES)


def _csv_rows(data: bytes) -> tuple[str, list[str], list[dict]]:
    text = data.decode()
    lines = text.split("\n")
    if lines[-1] != "":
        raise ValueError("a result CSV does not end with a newline")
    header, rows = lines[0], lines[1:-1]
    parsed = list(csv.DictReader(io_text.StringIO(text)))
    if len(parsed) != len(rows):
        raise ValueError("a result CSV has fields with line breaks: rows cannot be merged")
    return header, rows, parsed


# The order of a result file's rows, as the study stage writes them: by level, then seed, or
# (every other file) by seed in model.seeds order, then level. Declared, not read off a shard:
# a shard of one seed, or of one level, is in both orders.
ROW_ORDER = {"levels.csv": "level", "random_levels.csv": "level"}


def merge_shards(parts: list[dict[str, bytes]], seeds: list[int]) -> dict[str, bytes]:
    """One configuration's result files from those of its seed shards (in seed order), byte
    for byte what the unsharded run writes.

    A seed's results do not depend on which seeds share its run (the engine's batch
    independence; tests/test_sweep_shard.py checks the whole files), and every CSV row belongs
    to one seed and is formatted on its own, so the unsharded file holds exactly the shards'
    rows. Their order is the file's (ROW_ORDER: by level and then seed, or by seed in
    model.seeds order; ValueError when a shard's rows are not in it), or the one
    study_dying.SHARD_ROW_ORDER gives (episodes.csv). config.json is the shards' (identical
    apart from their seeds) with every seed. dying.json holds answers over every seed: it is
    recomputed from the merged files (study_dying.merged_block).
    """
    from pipeline import study_dying

    pos = {s: i for i, s in enumerate(seeds)}
    out = {}
    for name in parts[0]:
        if name == "dying.json":  # answers over every seed: recomputed below
            continue
        if name.endswith(".json"):
            infos = [json.loads(p[name]) for p in parts]
            for info in infos:
                info.pop("seeds", None)
            if any(info != infos[0] for info in infos):
                raise ValueError(f"{name}: the shards disagree on more than their seeds")
            info = {**json.loads(parts[0][name]), "seeds": list(seeds)}
            out[name] = (json.dumps(info, indent=2, sort_keys=False) + "\n").encode()
            continue
        header, lines, keys = None, [], []
        order = ROW_ORDER.get(name, "seed")
        for part in parts:
            head, rows, parsed = _csv_rows(part[name])
            if header is not None and head != header:
                raise ValueError(f"{name}: the shards' columns differ")
            header = head
            if name in study_dying.SHARD_ROW_ORDER:  # rows in another order than by seed
                lines += rows
                keys += [study_dying.SHARD_ROW_ORDER[name](r, pos) for r in parsed]
                continue
            seed_major = [(pos[int(r["seed"])], int(r.get("level") or 0)) for r in parsed]
            own = [(b, a) for a, b in seed_major] if order == "level" else seed_major
            if own != sorted(own):
                raise ValueError(f"{name}: rows not by {order} as the stages write them")
            lines += rows
            keys += own
        order = sorted(range(len(lines)), key=keys.__getitem__)  # stable: ties keep shard order
        out[name] = "\n".join([header, *(lines[i] for i in order), ""]).encode()
    if "dying.json" in parts[0]:
        out["dying.json"] = study_dying.merged_block(out, [p["dying.json"] for p in parts])
    return out


class PoolError(ValueError):
    """Folders that cannot be pooled; the message names the folder and what differs."""


def read_folder(folder: Path) -> tuple[dict, dict[str, bytes]]:
    """config.json (parsed) and every other result file's bytes of one result folder."""
    from pipeline import study

    if not folder.is_dir():
        raise PoolError(f"{folder} is not a folder")
    info = io.read_json(folder / "config.json", ("name", "seeds", "params"))
    files = {}
    for name in study.RESULT_FILES[1:]:
        if (folder / name).is_file():
            files[name] = (folder / name).read_bytes()
    if "seeds.csv" not in files:
        raise PoolError(f"{folder} has no seeds.csv: not a study result folder")
    return info, files


def axes_of(info: dict) -> dict:
    from pipeline import study

    return {axis: study.axis_value(info, axis) for axis in STUDY_AXES}


def check_same_configuration(folders: list[Path], infos: list[dict]) -> None:
    """Raises PoolError naming the first folder whose configuration or seeds differ."""
    first, seen = infos[0], {}
    for folder, info in zip(folders, infos):
        for axis, value in axes_of(info).items():
            if str(value) != str(axes_of(first)[axis]):
                raise PoolError(f"{folder}: study axis {axis} is {value!r}, "
                                f"{folders[0]} has {axes_of(first)[axis]!r}")
        for key in sorted(set(info) | set(first)):
            if key not in OWN_KEYS and info.get(key) != first.get(key):
                raise PoolError(f"{folder}: config.json's {key} differs from {folders[0]}'s")
        if info["seeds"] != sorted(info["seeds"]):
            raise PoolError(f"{folder}: its seeds {info['seeds']} are not in increasing order "
                            "(its rows follow them); allowed: runs of increasing seeds")
        for seed in info["seeds"]:
            if seed in seen:
                raise PoolError(f"seed {seed} is in both {seen[seed]} and {folder}")
            seen[seed] = folder


def aligned(name: str, parts: list[bytes], axes: dict) -> tuple[list[bytes], list[str]]:
    """One CSV of every folder with the same columns: those of the widest header, axis columns
    a folder lacks filled with the configuration's value, other columns some folder lacks
    dropped (returned)."""
    tables = []
    for data in parts:
        text = data.decode("utf-8")
        rows = list(csv.reader(io_text.StringIO(text)))
        if len(rows) != text.count("\n"):
            raise PoolError(f"{name}: fields with line breaks cannot be pooled")
        tables.append(rows)
    widest = max((rows[0] for rows in tables), key=len)
    keep = [c for c in widest if c in axes or all(c in rows[0] for rows in tables)]
    dropped = [c for c in widest if c not in keep]
    out = []
    for rows in tables:
        at = {c: i for i, c in enumerate(rows[0])}
        fill = {c: _axis_text(c, axes[c], [r for r in tables if c in r[0]]) for c in keep
                if c not in at}
        body = [[row[at[c]] if c in at else fill[c] for c in keep] for row in rows[1:]]
        buffer = io_text.StringIO()
        csv.writer(buffer, lineterminator="\n").writerows([keep, *body])
        out.append(buffer.getvalue().encode("utf-8"))
    return out, dropped


def _axis_text(column: str, value, having: list[list[list[str]]]) -> str:
    """An axis column's text as the folders that have it write it (one value in a configuration),
    else the value's own text."""
    texts = {row[rows[0].index(column)] for rows in having for row in rows[1:]}
    if len(texts) > 1:
        raise PoolError(f"the {column} column holds {sorted(texts)} in one configuration")
    return texts.pop() if texts else str(value)


def pool(folders: list[Path]) -> tuple[dict[str, bytes], list[str]]:
    """The pooled result files ({file name: bytes}, config.json included) and notes on what was
    left out. Raises PoolError, io.ReadError."""
    from pipeline import study_dying

    if len(folders) < 2:
        raise PoolError("pooling needs at least two folders")
    read = [read_folder(f) for f in folders]
    infos = [info for info, _ in read]
    check_same_configuration(folders, infos)
    widest = max(infos, key=len)  # the newest config.json: every axis listed
    info = {**widest, **axes_of(widest), "name": config.configuration_name(axes_of(widest))}
    seeds = sorted(s for i in infos for s in i["seeds"])  # the same pool in any folder order
    names = set.intersection(*(set(files) for _, files in read))
    notes = [f"{n} left out: not in every folder" for n in sorted(
        set.union(*(set(files) for _, files in read)) - names)]
    others = sorted(set(study_dying.DYING_FILES) - {"dying.json"})
    if "dying.json" in names and not set(others) <= names:
        names.discard("dying.json")  # recomputed from the pooled others (merge_shards)
        notes.append(f"dying.json left out: it is recomputed from {', '.join(others)}, "
                     "not all in every folder")
    names = sorted(names)
    shards = [{"config.json": json.dumps({**info, "seeds": i["seeds"]}).encode()} for i in infos]
    for name in names:
        if name.endswith(".json"):  # dying.json: recomputed from the pooled files (merge_shards)
            for shard, (_, files) in zip(shards, read):
                shard[name] = files[name]
            continue
        parts, dropped = aligned(name, [files[name] for _, files in read], axes_of(widest))
        for shard, part in zip(shards, parts):
            shard[name] = part
        if dropped:
            notes.append(f"{name}: columns left out (not in every folder): {', '.join(dropped)}")
    try:
        merged = merge_shards(shards, seeds)
    except ValueError as exc:
        raise PoolError(str(exc)) from exc
    merged["config.json"] = (json.dumps({**info, "seeds": seeds, "pooled_from": [
        {"folder": f.name, "seeds": i["seeds"]} for f, i in zip(folders, infos)]}, indent=2)
        + "\n").encode("utf-8")
    return merged, notes


def write(out: Path, files: dict[str, bytes]) -> None:
    with io.atomic_dir(out) as folder:
        for name, data in files.items():
            (folder / name).write_bytes(data)


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser("python -m pipeline.pool", description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", type=Path, metavar="FOLDER",
                        help="result folders of one configuration (reports/study/runs/<name>/)")
    parser.add_argument("--out", type=Path, required=True,
                        help="the pooled result folder to write (replaced if it exists)")
    args = parser.parse_args(argv)
    if any(args.out.resolve() == f.resolve() for f in args.folders):
        cli.stop(f"--out {str(args.out)!r} is not allowed; allowed: a folder other than those "
                 "pooled")
    try:
        files, notes = pool(args.folders)
        write(args.out, files)
    except (PoolError, io.ReadError, io.WriteError) as exc:
        cli.stop(str(exc))
    seeds = json.loads(files["config.json"])["seeds"]
    for note in notes:
        print(f"pool: {note}")
    print(f"pool: {len(seeds)} seeds of {json.loads(files['config.json'])['name']} "
          f"from {len(args.folders)} folders in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
