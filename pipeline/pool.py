"""Pool the result folders of one study configuration whose seeds ran apart; also the merge
that joins a sharded sweep's seed groups (merge_shards, used by pipeline.sweep).

    python -m pipeline.pool --out POOLED FOLDER FOLDER [...]

When to use it: adding seeds to a finished configuration normally reuses the finished ones
(per-seed resume), but only while its work folder (models/study/<name>/) is kept. When it is
gone — 16 seeds run and their level files deleted, 16 more run later or on another machine —
run the new seeds alone and pool the two result folders (reports/study/runs/<name>/). A seed's
results do not depend on which seeds shared its run (the engine's batch independence), so the
pooled result files are the rows of every folder, in the order one run of every seed (in
increasing order) writes them, by the same merge that joins a sharded sweep: byte for byte
that run's files, config.json apart (it lists where each seed came from, `pooled_from`).

What must hold (else one line naming the folder or file, exit code 2, nothing written): each
FOLDER a study result folder (config.json; seeds.csv, levels.csv, controls.csv, accuracy.csv,
each undamaged and holding the seeds config.json lists), their seeds disjoint and each listed
in increasing order, and one configuration: every study axis of one value (a folder written
before an axis existed means the value its params record) and every params key of one value,
but the run settings (RUN_SETTINGS: worker processes, threads, device, data folders), which
decide how a result is computed, not what is computed. Seeds computed on another device,
thread count or commit of the engine are pooled as they are: single seeds move across those,
fractions do not (docs/engine.md, "Reproducibility").

A folder written by an older version may lack files or columns: a study-axis column
(bias_init, n_samples, …) is filled with the configuration's value, anything else one folder
lacks is left out of the pool, and each such omission is printed."""
from __future__ import annotations

import csv
import io as io_text
import json
import os
import sys
from pathlib import Path

from pipeline import cli, config, io
from pipeline.config import STUDY_AXES


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
        ranked = sorted(range(len(lines)), key=keys.__getitem__)  # stable: ties keep shard order
        out[name] = "\n".join([header, *(lines[i] for i in ranked), ""]).encode()
    if "dying.json" in parts[0]:
        out["dying.json"] = study_dying.merged_block(out, [p["dying.json"] for p in parts])
    return out


class PoolError(ValueError):
    """Folders that cannot be pooled; the message names the folder or file and what differs."""


REQUIRED = ("seeds.csv", "levels.csv", "controls.csv", "accuracy.csv")  # what the tables read
RESULT_ALLOWED = ("allowed: a study result folder (config.json, " + ", ".join(REQUIRED) + ")")
# params that decide how a result is computed, not what: they may differ between the folders
RUN_SETTINGS = ("train.workers", "train.threads", "train.device", "data.mnist_dir",
                "data.fashion_mnist_dir")
# config.json keys of a folder's own: its seeds, its name (from the axes), where it was pooled from
OWN_KEYS = ("seeds", "name", "pooled_from", "params", *STUDY_AXES)


def read_json(path: Path) -> tuple[object, bytes]:
    """A result folder's JSON file, parsed, and its bytes; PoolError naming it if it is not
    UTF-8 JSON."""
    data = path.read_bytes()
    try:
        return json.loads(data.decode("utf-8")), data
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PoolError(f"{path}: not a JSON text ({exc})") from exc


def read_config(folder: Path) -> dict:
    path = folder / "config.json"
    if not path.is_file():
        raise PoolError(f"{folder} has no config.json: not a study result folder; {RESULT_ALLOWED}")
    info, _ = read_json(path)
    seeds = info.get("seeds") if isinstance(info, dict) else None
    if not isinstance(info, dict) or not isinstance(info.get("name"), str) or not isinstance(
            info.get("params"), dict) or not all(isinstance(v, dict) for v in info["params"].values()):
        raise PoolError(f"{path}: not a result folder's config.json (an object with a name, "
                        "seeds and params)")
    if not isinstance(seeds, list) or not seeds or not all(
            type(s) is int for s in seeds) or seeds != sorted(set(seeds)):
        raise PoolError(f"{path}: seeds {seeds!r} are not allowed; allowed: a list of distinct "
                        "integers in increasing order (the rows follow it)")
    return info


def read_table(path: Path, seeds: list[int], every_seed: bool) -> bytes:
    """A result CSV's bytes, checked: UTF-8, whole, one row per line, a seed column of
    integers among `seeds` (all of them where `every_seed`), rows in the file's order."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PoolError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    if not text.endswith("\n"):
        raise PoolError(f"{path}: cut short (no newline at its end)")
    rows = list(csv.reader(io_text.StringIO(text)))
    if len(rows) != text.count("\n") or not rows:
        raise PoolError(f"{path}: not one row per line (a field with a line break, or empty)")
    if "seed" not in rows[0]:
        raise PoolError(f"{path}: no seed column (its header starts {rows[0][:3]})")
    col, found = rows[0].index("seed"), set()
    for n, row in enumerate(rows[1:], start=2):
        if len(row) != len(rows[0]):
            raise PoolError(f"{path}: line {n} has {len(row)} fields, its header {len(rows[0])}")
        if not row[col].lstrip("-").isdigit() or int(row[col]) not in seeds:
            raise PoolError(f"{path}: line {n} has seed {row[col]!r}; allowed: the seeds its "
                            f"config.json lists, {seeds}")
        found.add(int(row[col]))
    if every_seed and found != set(seeds):
        raise PoolError(f"{path}: no rows for seeds {sorted(set(seeds) - found)} of its "
                        "config.json")
    try:
        merge_shards([{path.name: data}], seeds)  # its rows in the order the stages write them
    except ValueError as exc:
        raise PoolError(f"{path}: {exc}") from exc
    return data


def read_folder(folder: Path) -> tuple[dict, dict[str, bytes]]:
    """config.json (parsed) and every other result file's bytes of one result folder, checked."""
    from pipeline import study

    if not folder.is_dir():
        raise PoolError(f"{folder} is not a folder; {RESULT_ALLOWED}")
    info = read_config(folder)
    files = {}
    for name in study.RESULT_FILES[1:]:
        path = folder / name
        if path.exists() and not path.is_file():
            raise PoolError(f"{path} is not a file; {RESULT_ALLOWED}")
        if name in REQUIRED and not path.is_file():
            raise PoolError(f"{folder} has no {name}; {RESULT_ALLOWED}")
        if not path.exists():
            continue
        if name.endswith(".json"):
            block, files[name] = read_json(path)
            if not isinstance(block, dict):
                raise PoolError(f"{path}: not a JSON object")
        else:
            files[name] = read_table(path, info["seeds"], name in (*REQUIRED, "random_levels.csv"))
    return info, files


def axes_of(info: dict) -> dict:
    from pipeline import study

    return {axis: study.axis_value(info, axis) for axis in STUDY_AXES}


def flat_params(info: dict) -> dict:
    """{'section.key': value} of a config.json's params; a key a folder written before it
    existed lacks means its default (config.Params)."""
    defaults = config.Params()
    out = {}
    for section in config.SECTIONS:
        if section in ("study", "plot"):
            continue
        recorded = info["params"].get(section, {})
        default = config.section_dict(getattr(defaults, section))
        for key in sorted({*default, *recorded}):
            out[f"{section}.{key}"] = recorded.get(key, default.get(key))
    return out


def configuration_difference(info: dict, first: dict, other: str = "the other",
                             ignore: tuple[str, ...] = ()) -> str | None:
    """The first thing by which two result folders' config.json differ apart from their seeds,
    run settings and the study axes and params keys in `ignore` (`study axis …`, `params …`,
    `config.json's …`: `<what> is <info's> where <other> has <first's>`; `other` names the
    folder of `first`), or None: one configuration."""
    first_axes, first_params = axes_of(first), flat_params(first)
    for axis, value in axes_of(info).items():
        if axis not in ignore and str(value) != str(first_axes[axis]):
            return f"study axis {axis} is {value!r} where {other} has {first_axes[axis]!r}"
    mine = flat_params(info)
    for key in mine:
        if (key not in (*RUN_SETTINGS, *ignore, "model.seeds")
                and mine[key] != first_params.get(key)):
            return f"params {key} is {mine[key]!r} where {other} has {first_params.get(key)!r}"
    for key in sorted(set(info) | set(first)):
        if key not in OWN_KEYS and info.get(key) != first.get(key):
            return f"config.json's {key} is {info.get(key)!r} where {other} has {first.get(key)!r}"
    return None


def check_same_configuration(folders: list[Path], infos: list[dict]) -> None:
    """Raises PoolError naming the first folder whose configuration or seeds differ."""
    first, seen, where = infos[0], {}, {}
    allowed = ("allowed: folders of one configuration, which differ only in their seeds and "
               f"run settings ({', '.join(RUN_SETTINGS)})")
    for folder, info in zip(folders, infos):
        if folder.resolve() in where:
            raise PoolError(f"{folder} is given twice (as {where[folder.resolve()]}); allowed: "
                            "distinct result folders of one configuration, each once")
        where[folder.resolve()] = folder
        difference = configuration_difference(info, first, str(folders[0]))
        if difference:
            raise PoolError(f"{folder}: {difference}; {allowed}")
        for seed in info["seeds"]:
            if seed in seen:
                raise PoolError(f"seed {seed} is in both {seen[seed]} and {folder}; allowed: "
                                "folders of disjoint seeds")
            seen[seed] = folder


def aligned(name: str, parts: list[bytes], axes: dict) -> tuple[list[bytes], list[str]]:
    """One CSV of every folder with the same columns: those of the widest header, axis columns
    a folder lacks filled with the configuration's value, columns some folder lacks dropped
    (returned, in the order the folders name them)."""
    tables = [list(csv.reader(io_text.StringIO(data.decode("utf-8")))) for data in parts]
    widest = max((rows[0] for rows in tables), key=len)
    keep = [c for c in widest if c in axes or all(c in rows[0] for rows in tables)]
    dropped = list(dict.fromkeys(c for rows in tables for c in rows[0] if c not in keep))
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


def provenance(folder: Path, info: dict) -> list[dict]:
    """Where a folder's seeds came from: its pooled_from (a pooled folder pooled again), else
    the folder itself, with its run settings."""
    if isinstance(info.get("pooled_from"), list):
        return info["pooled_from"]
    params = flat_params(info)
    name = os.fsencode(folder.resolve().name).decode("utf-8", "replace")  # as on disk, any locale
    return [{"folder": name, "seeds": info["seeds"],
             "run_settings": {k: params[k] for k in RUN_SETTINGS}}]


def pool(folders: list[Path]) -> tuple[dict[str, bytes], list[str]]:
    """The pooled result files ({file name: bytes}, config.json included) and notes on what was
    left out or renamed. Raises PoolError."""
    from pipeline import study_dying

    if len(folders) < 2:
        raise PoolError(f"pooling needs at least two folders ({len(folders)} given); allowed: two "
                        "or more result folders of one configuration with disjoint seeds")
    read = [read_folder(f) for f in folders]
    infos = [info for info, _ in read]
    check_same_configuration(folders, infos)
    newest = max(infos, key=len)  # the config.json that lists every axis
    axes = axes_of(newest)
    info = {**newest, **axes, "name": config.configuration_name(axes)}
    notes = [f"{f}: config.json's name {i['name']} is {info['name']} now (named as "
             "configurations are today)" for f, i in zip(folders, infos) if i["name"] != info["name"]]
    seeds = sorted(s for i in infos for s in i["seeds"])  # the same pool in any folder order
    names = set.intersection(*(set(files) for _, files in read))
    notes += [f"{n} left out: not in every folder" for n in sorted(
        set.union(*(set(files) for _, files in read)) - names)]
    others = sorted(set(study_dying.DYING_FILES) - {"dying.json"})
    if "dying.json" in names and not set(others) <= names:
        names.discard("dying.json")  # recomputed from the pooled others (merge_shards)
        notes.append(f"dying.json left out: it is recomputed from {', '.join(others)}, "
                     "not all in every folder")
    shards = [{"config.json": json.dumps({**info, "seeds": i["seeds"]}).encode()} for i in infos]
    for name in sorted(names):
        if name.endswith(".json"):  # dying.json: recomputed from the pooled files (merge_shards)
            for shard, (_, files) in zip(shards, read):
                shard[name] = files[name]
            continue
        parts, dropped = aligned(name, [files[name] for _, files in read], axes)
        for shard, part in zip(shards, parts):
            shard[name] = part
        if dropped:
            notes.append(f"{name}: columns left out (not in every folder): {', '.join(dropped)}")
    merged = merge_shards(shards, seeds)
    sources = sorted((p for f, i in zip(folders, infos) for p in provenance(f, i)),
                     key=lambda p: p["seeds"][0])
    merged["config.json"] = (json.dumps({**info, "seeds": seeds, "pooled_from": sources},
                                        indent=2, ensure_ascii=False) + "\n").encode("utf-8")
    return merged, notes


def check_out(out: Path, folders: list[Path]) -> None:
    """Refuses an --out that would destroy or mix into what it should not: an input, a folder
    holding one or inside one, a file, or a folder that is not a study result folder."""
    allowed = ("allowed: a new folder, or a study result folder to replace, apart from the "
               "folders pooled")
    if out.name in ("", ".", ".."):
        cli.stop(f"--out {str(out)!r} is not allowed; {allowed}")
    target = out.resolve()
    for folder in folders:
        there = folder.resolve()
        if target == there or target in there.parents or there in target.parents:
            cli.stop(f"--out {str(out)!r} is not allowed: it is, holds or is inside {folder}; "
                     f"{allowed}")
    if out.exists() and not out.is_dir():
        cli.stop(f"--out {str(out)!r} is not allowed: it is a file; {allowed}")
    if out.is_dir() and any(out.iterdir()) and not (out / "config.json").is_file():
        cli.stop(f"--out {str(out)!r} is not allowed: a folder with files but no config.json "
                 f"(not a study result folder); {allowed}")


def write(out: Path, files: dict[str, bytes]) -> None:
    """A result folder ({file name: bytes}) written in one rename (io.atomic_dir); the sweep
    writes its configurations' folders with it too."""
    with io.atomic_dir(out) as folder:
        for name, data in files.items():
            (folder / name).write_bytes(data)


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser("python -m pipeline.pool", description=(
        "Pool the result folders of one study configuration whose seeds ran apart (the work "
        "folder of the first seeds gone, so per-seed resume cannot add the new ones): the "
        "pooled files are those one run of every seed writes. docs/running.md, 'More seeds "
        "for a finished configuration'."))
    parser.add_argument("folders", nargs="+", type=Path, metavar="FOLDER",
                        help="two or more result folders of one configuration, disjoint seeds "
                             "(reports/study/runs/<name>/)")
    parser.add_argument("--out", type=Path, required=True,
                        help="the pooled result folder to write: a new folder, or a result "
                             "folder to replace (never one of the FOLDERs)")
    args = parser.parse_args(argv)
    check_out(args.out, args.folders)
    try:
        files, notes = pool(args.folders)
        write(args.out, files)
    except (PoolError, io.WriteError) as exc:
        cli.stop(str(exc))
    info = json.loads(files["config.json"])
    for note in notes:
        print(f"pool: {note}")
    print(f"pool: {len(info['seeds'])} seeds of {info['name']} from {len(args.folders)} "
          f"folders in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
