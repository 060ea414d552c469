"""Iterative magnitude pruning with rewinding or fine-tuning (docs/science.md §4), level by level,
resumable.

Level 0 is the dense population trained by the `train` stage. Level i ≥ 1 ranks the surviving
prunable parameters of level i−1's trained networks by |value| globally across layers, keeps the
P_i largest (ties: lower flat index first) and retrains under the mask from a fresh optimizer:
with prune.method `rewind` the survivors start again from θ₀ (or θ_rewind), with `finetune`
from their trained values of level i−1.
Every level is one checkpoint file (`level_XX.pt`), written atomically; a rerun skips finished
levels, and since a level depends only on the previous checkpoint, a resumed run is identical.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pipeline import io
from pipeline.config import ModelConfig, TrainConfig
from pipeline.data import TaskInfo
from pipeline.engine import STOP_REASONS, Split, TaskLoss, TrainResult, evaluate, train_population
from pipeline.model import Layout, init_population, layers_from_state

CONTROLS = ("reinit", "random")  # prefixes of the control networks' keys in a level file


def prune_global(theta: torch.Tensor, mask: torch.Tensor, prunable: torch.Tensor,
                 keep: int) -> torch.Tensor:
    """New mask [K, P] keeping, per network, the `keep` largest-|θ| surviving prunable entries.

    Non-prunable entries (biases when they are not prunable) keep their mask. Ties in |θ| are
    broken by flat position (lower index kept), so the result is deterministic.
    """
    candidates = mask & prunable
    if int(candidates.sum(dim=1).min()) < keep:
        raise ValueError(f"cannot keep {keep} parameters: fewer survive")
    score = torch.where(candidates, theta.abs(), torch.full_like(theta, -1.0))
    order = torch.argsort(score, dim=1, descending=True, stable=True)
    kept = torch.zeros_like(mask)
    kept.scatter_(1, order[:, :keep], True)
    return kept | (mask & ~prunable)


def random_masks(like: torch.Tensor, layout: Layout, seeds: list[int]) -> torch.Tensor:
    """Random masks with the same number of survivors per weight matrix and per bias vector."""
    out = torch.zeros_like(like)
    for k, seed in enumerate(seeds):
        g = torch.Generator().manual_seed(int(seed))
        for w, b, e in layout.offsets:
            for lo, hi in ((w, b), (b, e)):
                n = int(like[k, lo:hi].sum())
                pick = torch.randperm(hi - lo, generator=g)[:n]
                out[k, lo + pick] = True
    return out


def rewind_error(rewind: int, seeds: list[int], dense_epochs: list[int]) -> str | None:
    """The one-line refusal of a rewind point (prune.rewind, epochs) that some seed's dense
    training never reached, or None. Such a seed would rewind to its last dense epoch instead:
    another protocol per seed (fine-tuning from trained weights for some), reported as
    rewinding (docs/science.md §4). The way to continue from trained weights is prune.method:
    finetune."""
    short = [(s, e) for s, e in zip(seeds, dense_epochs) if e < rewind]
    if rewind <= 0 or not short:
        return None
    shown = ", ".join(f"seed {s} ran {e}" for s, e in short[:8])
    more = f" and {len(short) - 8} more seeds" if len(short) > 8 else ""
    return (f"prune.rewind: {rewind} is not allowed; allowed: at most the epochs every seed's "
            f"dense training ran ({shown}{more}; train.max_epochs and early stopping decide "
            "them); to continue from the trained weights use prune.method: finetune")


def derived_seed(*parts: int) -> int:
    """A seed for a control network from (model seed, level, control index)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0] >> 1)


@dataclass
class Context:
    """Everything a level needs besides the previous level's checkpoint."""

    layout: Layout
    tasks: list[TaskInfo]
    splits: dict[str, Split]
    train_cfg: TrainConfig
    model_cfg: ModelConfig
    seeds: list[int]
    prunable: torch.Tensor
    rewind_theta: torch.Tensor   # θ₀ or the weights after `rewind` epochs
    reinit_control: bool = False
    random_mask_control: bool = False
    method: str = "rewind"       # prune.method: where a level's tickets start (level_population)


def level_state(ctx: Context, theta: torch.Tensor, mask: torch.Tensor, result: TrainResult | None,
                prefix: str = "") -> dict[str, torch.Tensor]:
    """Checkpoint dict of one population: weights, masks, test metrics, curves."""
    loss_fn = TaskLoss(ctx.tasks)
    state = ctx.layout.to_state(theta, mask, prefix)
    for split in ("train", "val", "test"):
        ev = evaluate(ctx.layout, theta, ctx.splits[split], loss_fn, ctx.train_cfg)
        state[f"{prefix}metrics.{split}_loss"] = ev.loss
        state[f"{prefix}metrics.{split}_acc_tasks"] = ev.accuracy
    if result is not None:
        state[f"{prefix}metrics.epochs"] = result.epochs
        state[f"{prefix}metrics.best_epoch"] = result.best_epoch
        state[f"{prefix}metrics.stop_code"] = result.stop_code
        state[f"{prefix}curves.train_loss"] = result.train_curve
        state[f"{prefix}curves.val_loss"] = result.val_curve
        if result.frozen is not None:  # docs/science.md §8: no loss gradient in this training
            state[f"{prefix}metrics.frozen"] = result.frozen
    return state


def level_start(ctx: Context, mask: torch.Tensor, trained: torch.Tensor | None) -> torch.Tensor:
    """The tickets' start weights [K, P] under their new mask (docs/science.md §4): prune.method
    `rewind`, the survivors' values in ctx.rewind_theta (θ₀ or θ_rewind); `finetune`, their
    trained values `trained` [K, P] of the previous level (a fresh optimizer follows either
    way). Pruned entries are exactly 0."""
    if ctx.method == "finetune":
        if trained is None:
            raise ValueError("prune.method finetune needs the previous level's trained weights")
        return trained * mask
    return ctx.rewind_theta * mask


def level_population(ctx: Context, mask: torch.Tensor, level: int,
                     trained: torch.Tensor | None = None):
    """Start weights, masks and key prefixes of the networks a level trains: the tickets
    (level_start) and the controls switched on, batched together. The controls start as with
    rewinding whatever the method: a fresh initialisation, and θ₀ / θ_rewind under a random
    mask (its split statistics depend on the mask alone)."""
    thetas, masks, names = [level_start(ctx, mask, trained)], [mask], [""]
    if ctx.reinit_control:
        fresh = init_population(ctx.layout, ctx.model_cfg,
                                [derived_seed(s, level, 1) for s in ctx.seeds])
        thetas.append(fresh * mask)
        masks.append(mask)
        names.append("reinit.")
    if ctx.random_mask_control:
        rmask = random_masks(mask, ctx.layout, [derived_seed(s, level, 2) for s in ctx.seeds])
        thetas.append(ctx.rewind_theta * rmask)
        masks.append(rmask)
        names.append("random.")
    return thetas, masks, names


def train_level(ctx: Context, mask: torch.Tensor, level: int,
                trained: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Train the ticket population (and its controls, batched with it) under `mask`;
    `trained` [K, P]: the previous level's trained weights (used by prune.method finetune)."""
    k = len(ctx.seeds)
    thetas, masks, names = level_population(ctx, mask, level, trained)
    theta0, mask_all = torch.cat(thetas), torch.cat(masks)
    shuffle = [derived_seed(s, level, 3 + j) for j in range(len(names)) for s in ctx.seeds]
    result = train_population(ctx.layout, theta0, mask_all, ctx.splits["train"],
                              ctx.splits["val"], TaskLoss(ctx.tasks), ctx.train_cfg,
                              shuffle_seeds=shuffle)
    state: dict[str, torch.Tensor] = {"seeds": torch.tensor(ctx.seeds, dtype=torch.long)}
    for j, prefix in enumerate(names):
        part = slice(j * k, (j + 1) * k)
        # clones: torch.save stores a view's whole storage, so the bytes would depend on batching
        sub = TrainResult(theta=result.theta[part].clone(), epochs=result.epochs[part].clone(),
                          best_epoch=result.best_epoch[part].clone(),
                          stop_code=result.stop_code[part].clone(),
                          train_curve=result.train_curve[part].clone(),
                          val_curve=result.val_curve[part].clone(), rewind_theta=None,
                          frozen=result.frozen[part].clone())
        state.update(level_state(ctx, sub.theta, masks[j], sub, prefix))
    return state


def _train_chunk(args) -> dict[str, torch.Tensor]:
    ctx, mask, level, threads, trained = args
    torch.set_num_threads(threads)
    return train_level(ctx, mask, level, trained)


def merge_states(parts: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Concatenate level states of disjoint seed groups along the network axis."""
    out = {}
    for key in parts[0]:
        tensors = [p[key] for p in parts]
        if ".curves." in f".{key}":  # [K, E]: pad every group to the longest training
            e = max(t.shape[1] for t in tensors)
            tensors = [torch.nn.functional.pad(t, (0, e - t.shape[1]), value=float("nan"))
                       for t in tensors]
        out[key] = torch.cat(tensors)
    return out


def train_level_parallel(ctx: Context, mask: torch.Tensor, level: int, pool, workers: int,
                         threads: int = 1,
                         trained: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """train_level with the seeds split into `workers` groups, one process each.

    Networks never interact and, in their canonical compact layouts (train.compact, the
    default), a network's arithmetic does not depend on which others share its batch, so the
    result is bit-identical to workers=1 for any shape (tested). Without compaction this holds
    for the default shape family only: for some odd layer widths the BLAS batched matmul
    rounds a network differently by its place in the batch (benchmarks/README.md).
    """
    if pool is None or len(ctx.seeds) < 2:
        return train_level(ctx, mask, level, trained)
    groups = [g for g in np.array_split(np.arange(len(ctx.seeds)), workers) if len(g)]
    jobs = []
    for g in groups:
        lo, hi = int(g[0]), int(g[-1]) + 1
        sub = dataclasses.replace(ctx, seeds=ctx.seeds[lo:hi],
                                  rewind_theta=ctx.rewind_theta[lo:hi])
        jobs.append((sub, mask[lo:hi], level, threads,
                     None if trained is None else trained[lo:hi]))
    return merge_states(list(pool.map(_train_chunk, jobs)))


def _die_with_parent(parent: int) -> None:
    """Pool worker start-up: ask Linux to kill this worker when the stage process dies. A
    forked worker holds both ends of the task queue's pipe, so after a `kill -9` of the stage
    it would otherwise wait for work forever (an orphan holding its memory)."""
    import ctypes
    import signal
    # Ctrl+C reaches the whole process group: the stage stops its workers itself (close_pool),
    # so a worker must not die of it with a traceback of its own
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: no such call
        return
    if os.getppid() != parent:  # the stage died before the call above took effect
        os._exit(1)


def make_pool(workers: int):
    """A fork-based process pool (workers inherit the imports), or None for one worker."""
    if workers <= 1:
        return None
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("fork"),
                               initializer=_die_with_parent, initargs=(os.getpid(),))


def close_pool(pool, kill: bool = False) -> None:
    """Shut a make_pool pool down; kill=True (an interrupt or an error) kills its workers at
    once instead of waiting for the level they are training, so none outlives the stage."""
    if pool is None:
        return
    if kill:
        # concurrent.futures keeps its workers in `_processes` {pid: Process}
        for process in list((getattr(pool, "_processes", None) or {}).values()):
            process.kill()
        pool.shutdown(wait=False, cancel_futures=True)
    else:
        pool.shutdown()


# ---- resumable level files --------------------------------------------------------------------
def level_path(folder: Path, level: int) -> Path:
    return folder / f"level_{level:02d}.pt"


MANIFEST_VERSION = 3  # 3: `files`, each level file's sha256, seeds and P_k


def fingerprint(record: dict, files: list[str | Path], root: str | Path = ".",
                entry: Path | None = None) -> dict:
    """What decides a level's bytes besides its seed's own networks (docs/science.md §4; docs/running.md,
    "Resuming and interrupts"): the params `record` (model.seeds left out: seeds are checked one by one,
    seed_hashes), the sha256 of every input file (named by its path relative to the run's root,
    so a run hashes alike wherever its folder is), the sha256 of every source file in the import
    closure of the stage module `entry` (pipeline.closure; default pipeline/stages/imp.py), and
    torch's version. A JSON-ready dict; prepare_folder compares it part by part."""
    from pipeline import closure

    entry = entry or closure.ROOT / "pipeline" / "stages" / "imp.py"
    inputs = {Path(os.path.relpath(f, root)).as_posix(): hashlib.sha256(Path(f).read_bytes())
              .hexdigest() for f in files}
    return {"params": json.loads(json.dumps(record, sort_keys=True)), "inputs": inputs,
            "code": closure.code_hashes(entry), "torch": torch.__version__}


def seed_hashes(init: dict[str, torch.Tensor], dense: dict[str, torch.Tensor]) -> dict[int, str]:
    """{seed: sha256} of what a seed's levels start from: its rows of models/init.pt (θ₀, the
    rewind weights) and its trained dense net in models/dense.pt (weights, masks, metrics).
    A seed's rows do not depend on which seeds share the batch (the engine's batch
    independence), so a seed keeps its hash when seeds are added or removed."""
    keys = [("init", k, v) for k, v in sorted(init.items()) if k != "seeds"]
    keys += [("dense", k, v) for k, v in sorted(dense.items())
             if k != "seeds" and k.split(".")[0] in ("layers", "metrics")]
    out = {}
    for row, seed in enumerate(init["seeds"].tolist()):
        h = hashlib.sha256()
        for source, key, value in keys:
            part = value[row].contiguous()
            h.update(f"{source}:{key}:{part.dtype}:{tuple(part.shape)}".encode())
            h.update(part.numpy().tobytes())
        out[int(seed)] = h.hexdigest()
    return out


def _changes(old: dict, new: dict) -> str | None:
    """What differs between two fingerprints, in words (None: nothing)."""
    if old.get("version") != MANIFEST_VERSION:
        return "the manifest is from an older version of the imp stage"
    parts = []
    for part, what in (("params", "params"), ("inputs", "inputs"), ("code", "code")):
        a, b = old.get(part, {}), new[part]
        if part == "params":
            diff = sorted(f"{s}.{k}" for s in a.keys() | b.keys()
                          for k in (a.get(s) or {}).keys() | (b.get(s) or {}).keys()
                          if (a.get(s) or {}).get(k) != (b.get(s) or {}).get(k))
        else:
            diff = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
        if diff:
            shown = ", ".join(diff[:3]) + (f" and {len(diff) - 3} more" if len(diff) > 3 else "")
            parts.append(f"{what} ({shown})")
    if old.get("torch") != new["torch"]:
        parts.append(f"torch ({old.get('torch')} -> {new['torch']})")
    return " and ".join(parts) + " changed" if parts else None


def _malformed(manifest) -> str | None:
    """What makes a manifest of this version unusable (None: nothing): a part missing or of
    another type (a file edited by hand, or of another program)."""
    if not isinstance(manifest, dict):
        return "not a JSON object"
    if manifest.get("version") != MANIFEST_VERSION:
        return None  # an older version: prepare_folder starts over, saying so
    for part in ("params", "inputs", "code", "seeds", "levels", "files"):
        if not isinstance(manifest.get(part), dict):
            return f"no {part}"
    if not all(isinstance(v, dict) for v in (*manifest["params"].values(),
                                             *manifest["levels"].values())):
        return "levels or params not objects"
    for record in manifest["files"].values():
        if not (isinstance(record, dict) and isinstance(record.get("sha256"), str)
                and isinstance(record.get("seeds"), list)
                and isinstance(record.get("params"), list)):
            return "a file record without sha256, seeds and params"
    return None


def read_manifest(folder: Path) -> tuple[dict, str | None]:
    """(models/imp/manifest.json as a dict, None), or ({}, why it cannot be used) when it is
    missing ("missing"), unreadable or malformed."""
    path = folder / "manifest.json"
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}, "missing"
    except (OSError, ValueError) as exc:  # ValueError: not JSON, not UTF-8
        return {}, f"cannot be read ({type(exc).__name__})"
    why = _malformed(manifest)
    return ({}, f"is malformed ({why})") if why else (manifest, None)


def write_manifest(folder: Path, manifest: dict) -> None:
    """Written with the levels in level order, so that a level made again (drop_bad_levels)
    leaves the manifest byte for byte as an uninterrupted run's."""
    in_order = {part: dict(sorted(manifest[part].items(), key=lambda kv: int(kv[0])))
                for part in ("levels", "files") if part in manifest}
    io.write_json(folder / "manifest.json", {**manifest, **in_order})


def prepare_folder(folder: Path, print_fn, fp: dict, seeds: dict[int, str] | None = None) -> dict:
    """Keep finished levels only if params, inputs, code and torch are the same as when they
    were made; otherwise print one line saying which changed (or that the manifest is missing
    or cannot be read) and start over. Returns the manifest (written to folder/manifest.json):
    the fingerprint, `seeds` {seed: hash of its starting networks now (seed_hashes)}, `levels`
    {level: {seed: the hash its row in that file was made from}}, in the file's row order, and
    `files` {level: what the file holds (file_record)}. A row is reused only while its seed's
    hash is the same (reusable_rows), so seeds can be added to or removed from a finished run
    without redoing the others; a file only while it is the one recorded (drop_bad_levels)."""
    seeds = {str(k): v for k, v in (seeds or {}).items()}
    old, unusable = read_manifest(folder) if folder.exists() else ({}, "missing")
    reason = _changes(old, fp) if old else None
    if folder.exists() and old and reason is None:
        manifest = {**old, "seeds": seeds}
    else:
        if folder.exists():
            if any(folder.glob("level_*.pt")):
                print_fn(f"imp: {reason} since {folder} was written; starting over" if reason
                         else f"imp: {folder / 'manifest.json'} {unusable}; starting over")
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        manifest = {"version": MANIFEST_VERSION, **fp, "seeds": seeds, "levels": {}, "files": {}}
    io.remove_stale(folder)
    write_manifest(folder, manifest)
    return manifest


def reusable_rows(manifest: dict, level: int) -> list[int]:
    """Seeds whose row in the level file was made from the networks the seed starts from now,
    in the file's row order."""
    now = manifest["seeds"]
    rows = manifest["levels"].get(str(level), {})
    return [int(s) for s, h in rows.items() if now.get(s) == h]


def record_level(manifest: dict, level: int, seeds: list[int], file: dict) -> None:
    """The level file now holds exactly `seeds` (rows in that order), made from today's nets;
    `file`: its file_record."""
    manifest["levels"][str(level)] = {str(s): manifest["seeds"][str(s)] for s in seeds}
    manifest["files"][str(level)] = file


# ---- what a level file holds: checked before a finished level is reused -----------------------
def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def live_params(state: dict[str, torch.Tensor], layout: Layout,
                prunable: torch.Tensor) -> list[int]:
    """P_k of every network in a (dense) level dict: its unpruned prunable parameters."""
    return (layout.from_state(state, masks=True) & prunable).sum(dim=1).tolist()


def file_record(path: Path, state: dict[str, torch.Tensor], layout: Layout,
                prunable: torch.Tensor) -> dict:
    """What the level file at `path` (just written from `state`) holds, for the manifest: its
    sha256, its seeds (row order) and P_k per seed."""
    return {"sha256": sha256_file(path), "seeds": state["seeds"].tolist(),
            "params": live_params(state, layout, prunable)}


def _listed(values: list[int]) -> str:
    return ", ".join(map(str, values[:8])) + (f" and {len(values) - 8} more"
                                              if len(values) > 8 else "")


def level_problem(folder: Path, level: int, manifest: dict, biases: bool) -> str | None:
    """Why the file of `level` in `folder` is not the one the manifest records (None: it is,
    byte for byte), in words: missing, empty, unreadable, another level's file, a file of other
    seeds or of another run. `biases`: prune.biases (P_k counts them). Never loads anything
    but tensors."""
    path = level_path(folder, level)
    record = manifest["files"].get(str(level))
    if record is None:
        return "is not recorded in the manifest (written by an interrupted run)"
    try:
        digest = sha256_file(path)
    except FileNotFoundError:
        return "is missing"
    except OSError as exc:
        return f"cannot be read ({exc.strerror or type(exc).__name__})"
    if digest == record["sha256"]:
        return None
    if path.stat().st_size == 0:
        return "is empty (0 bytes)"
    twin = next((int(k) for k, r in manifest["files"].items() if r["sha256"] == digest), None)
    if twin is not None:
        return f"is a copy of {level_path(folder, twin).name}, not the level {level} written"
    try:
        state = load_level(path)
        seeds = state["seeds"].tolist()
        layout = Layout(layers_from_state(state))
        params = live_params(state, layout, layout.prunable(biases))
    except io.ReadError as exc:
        return f"is damaged ({exc.why})"
    except (KeyError, RuntimeError, ValueError, IndexError):  # no such keys or shapes
        return "is not a level file (other keys or shapes)"
    if seeds != record["seeds"]:
        return (f"holds seeds {_listed(seeds)}, not the seeds {_listed(record['seeds'])} "
                "written (another run's file)")
    if params != record["params"]:
        return (f"holds networks of {_listed(params)} parameters, not the "
                f"{_listed(record['params'])} written (another level's or run's file)")
    return "has other bytes than the file written (another run's, or changed by hand)"


def drop_bad_levels(folder: Path, manifest: dict, biases: bool, print_fn) -> dict[int, str]:
    """Check every finished level's file against the manifest; forget (and remove) each one that
    is not the file recorded, with one line naming it and why, so that the stage makes it
    again. Returns {level: the sha256 recorded for it}: a remade level that comes out with
    other bytes invalidates the levels made from it (forget_after)."""
    dropped = {}
    for key in sorted(manifest["levels"], key=int):
        level = int(key)
        problem = level_problem(folder, level, manifest, biases)
        if problem is None:
            continue
        print_fn(f"imp: {level_path(folder, level)} {problem}; making level {level} again")
        record = manifest["files"].pop(key, None)
        del manifest["levels"][key]
        level_path(folder, level).unlink(missing_ok=True)
        if record is not None:
            dropped[level] = record["sha256"]
    return dropped


def forget_after(manifest: dict, level: int) -> list[int]:
    """Forget the finished levels after `level` (made from another file of it); returns them."""
    later = sorted(int(k) for k in manifest["levels"] if int(k) > level)
    for lv in later:
        manifest["levels"].pop(str(lv))
        manifest["files"].pop(str(lv), None)
    return later


def check_written(folder: Path, biases: bool) -> None:
    """Raise io.ReadError naming the first level file in `folder` that is not the one the imp
    stage recorded in its manifest, and why (level_problem), or that it did not record (for
    the stages that read the levels: analyze, plot; `biases`: prune.biases). Folders without a
    manifest of this version (made before it, or by hand) are not checked."""
    manifest, _ = read_manifest(folder)
    if manifest.get("version") != MANIFEST_VERSION:
        return
    files = sorted(int(p.stem.split("_")[1]) for p in folder.glob("level_*.pt")
                   if p.stem.split("_")[1].isdigit())
    for level in sorted({*map(int, manifest["files"]), *files}):
        problem = level_problem(folder, level, manifest, biases)
        if problem is not None:
            path = level_path(folder, level)
            raise io.ReadError(f"{io.public_path(path)} {problem}; {io.remake_hint(path)}", path,
                               problem)


def select_seeds(state: dict[str, torch.Tensor], seeds: list[int]) -> dict[str, torch.Tensor]:
    """The level dict of `seeds` (in that order) out of a level dict holding them: every tensor's
    rows, the curves cut to the longest training among them — exactly what a run of these
    seeds alone writes (the curves are as wide as the longest training of the batch)."""
    held = state["seeds"].tolist()
    index = torch.tensor([held.index(s) for s in seeds], dtype=torch.long)
    out = {k: v.index_select(0, index) for k, v in state.items()}
    width = max(int(v.max()) for k, v in out.items() if k.endswith("metrics.epochs"))
    for key in out:
        if ".curves." in f".{key}":
            out[key] = out[key][:, :width].clone()
    return out


def merge_in_order(parts: list[dict[str, torch.Tensor]], seeds: list[int]) -> dict[str, torch.Tensor]:
    """One level dict of the disjoint seed groups `parts`, rows in `seeds` order (merge_states,
    then reordered): byte for byte the level a run of all `seeds` together writes."""
    merged = parts[0] if len(parts) == 1 else merge_states(parts)
    if merged["seeds"].tolist() == list(seeds):
        return merged
    return select_seeds(merged, seeds)


# ---- level files whose size follows the live weights (docs/running.md "Checkpoint contract") ----------
# Layouts with at least this many parameters are written packed: the wide image nets, whose
# dense level files were 7.7 MB of mostly zeros per network. Smaller ones (the default run and
# the narrow studies) keep the dense format, byte for byte as before.
PACK_MIN_PARAMS = 2 ** 16
PACKED_KEY = "packed.layers"  # present (the layer sizes) in a packed level file only


def pack_level(state: dict[str, torch.Tensor], layout: Layout) -> dict[str, torch.Tensor]:
    """A level dict with every population's dense `layers.*` tensors replaced by its survivors.

    Per population (prefix "", "reinit.", "random."): `live.count` int64 [K] survivors per
    network; which entries survive, as a bitmap `live.bits` uint8 [K, ⌈P/8⌉] (numpy.packbits of
    the flat mask, big-endian bit order) or, when fewer than 1 in 32 survive, as their flat
    positions `live.index` int32 [Σ count] (network after network, ascending); and their values
    `live.values` float32 [Σ count] in the same order; the frozen record `metrics.frozen`, one
    bit per survivor in that order (`live.frozen_bits`). Entries off the mask are exactly 0 and
    not frozen in every level the engine writes (ValueError otherwise), so nothing else is lost.
    Layouts smaller than PACK_MIN_PARAMS are returned unchanged.
    """
    if layout.size < PACK_MIN_PARAMS:
        return state
    out = {PACKED_KEY: torch.tensor(layout.layers, dtype=torch.long)}
    weight_keys = {f"layers.{i}.{part}" for i in range(layout.depth)
                   for part in ("weight", "bias", "weight_mask", "bias_mask")}
    for key, value in state.items():
        prefix = key[:-len("layers.0.weight")] if key.endswith("layers.0.weight") else None
        if prefix is not None:
            theta = layout.from_state(state, prefix)
            mask = layout.from_state(state, prefix, masks=True)
            if bool((theta[~mask] != 0).any()):
                raise ValueError(f"{prefix}layers: nonzero weights off the mask; not packable")
            count = mask.sum(dim=1)
            out[f"{prefix}live.count"] = count
            if int(count.sum()) * 32 < mask.numel():
                out[f"{prefix}live.index"] = torch.nonzero(mask)[:, 1].to(torch.int32)
            else:
                out[f"{prefix}live.bits"] = torch.from_numpy(
                    np.packbits(mask.numpy(), axis=1))
            out[f"{prefix}live.values"] = theta[mask].contiguous()
            frozen = state.get(f"{prefix}metrics.frozen")
            if frozen is not None:  # one bit per survivor, in the order of live.values
                if bool((frozen & ~mask).any()):
                    raise ValueError(f"{prefix}metrics.frozen: frozen entries off the mask")
                out[f"{prefix}live.frozen_bits"] = torch.from_numpy(
                    np.packbits(frozen[mask].numpy()))
        elif not any(key == f"{p}{w}" for w in (*weight_keys, "metrics.frozen")
                     for p in ("", *(f"{c}." for c in CONTROLS))):
            out[key] = value
    return out


def unpack_level(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The dense level dict (today's `layers.{i}.weight / bias / weight_mask / bias_mask`) of a
    packed one (pack_level); a dense one is returned as it is."""
    if PACKED_KEY not in state:
        return state
    layout = Layout(tuple(int(n) for n in state[PACKED_KEY]))
    out = {}
    for key, value in state.items():
        if key == PACKED_KEY or ".live." in f".{key}" and not key.endswith("live.count"):
            continue
        if key.endswith("live.count"):
            prefix = key[:-len("live.count")]
            k = value.shape[0]
            if f"{prefix}live.bits" in state:
                mask = torch.from_numpy(np.unpackbits(state[f"{prefix}live.bits"].numpy(), axis=1,
                                                      count=layout.size).astype(bool))
            else:
                mask = torch.zeros(k, layout.size, dtype=torch.bool)
                rows = torch.repeat_interleave(torch.arange(k), value)
                mask[rows, state[f"{prefix}live.index"].long()] = True
            theta = torch.zeros(k, layout.size, dtype=state[f"{prefix}live.values"].dtype)
            theta[mask] = state[f"{prefix}live.values"]
            out.update(layout.to_state(theta, mask, prefix))
            if f"{prefix}live.frozen_bits" in state:
                frozen = torch.zeros_like(mask)
                frozen[mask] = torch.from_numpy(np.unpackbits(
                    state[f"{prefix}live.frozen_bits"].numpy(), count=int(mask.sum())).astype(bool))
                out[f"{prefix}metrics.frozen"] = frozen
        else:
            out[key] = value
    return out


def save_level(path: Path, state: dict[str, torch.Tensor], layout: Layout) -> None:
    """Write a level file atomically, packed for wide layouts (pack_level)."""
    io.save_tensors(path, pack_level(state, layout))


def load_level(path: Path) -> dict[str, torch.Tensor]:
    """A level file (dense or packed) as the dense dict of the checkpoint contract
    (docs/running.md): `layers.{i}.weight` [K, out, in], `.bias`, `.weight_mask`, `.bias_mask`, metrics,
    curves, seeds; controls under their prefixes. Read with torch.load(weights_only=True); a
    damaged file, or one of another kind, raises io.ReadError naming it."""
    state = io.read_torch(path, required=("seeds",))
    with io.reading(path):  # a packed file missing parts: damaged
        return unpack_level(state)


# what every trained population's file holds besides its layers (train: dense.pt; imp: levels)
TRAINED_KEYS = (*(f"metrics.{split}_{what}" for split in ("train", "val", "test")
                  for what in ("loss", "acc_tasks")),
                "metrics.epochs", "metrics.best_epoch", "metrics.stop_code",
                "curves.train_loss", "curves.val_loss")


def check_networks(path: Path, state: dict[str, torch.Tensor], layout: Layout,
                   seeds: list[int] | None = None, trained: bool = True) -> None:
    """Raise io.ReadError naming `path` unless the (dense) checkpoint dict read from it holds
    one network of `layout` per seed (of `seeds`, when given, in that order), every tensor with
    one row per network: θ (models/init.pt), or with trained=True masks, metrics and curves too
    (models/dense.pt, level files). A file of another run (other seeds or shapes) is named so."""
    held = state["seeds"]
    if held.dim() != 1:
        raise io.read_error(path, "seeds is not a list")
    if seeds is not None and held.tolist() != list(seeds):
        raise io.read_error(path, f"it holds seeds {_listed(held.tolist())}; model.seeds are "
                            f"{_listed(list(seeds))}", "is another run's file")
    parts = ("weight", "bias", *(("weight_mask", "bias_mask") if trained else ()))
    for i, (n_in, n_out) in enumerate(zip(layout.layers[:-1], layout.layers[1:])):
        for part in parts:
            key, shape = f"layers.{i}.{part}", (n_out, n_in) if "weight" in part else (n_out,)
            if key not in state:
                raise io.read_error(path, f"no key {key}")
            if tuple(state[key].shape[1:]) != shape:
                raise io.read_error(path, f"its networks are not {list(layout.layers)}",
                                    "is another run's file")
    io.require_keys(path, state, TRAINED_KEYS if trained else ())
    ragged = next((k for k, v in state.items() if v.dim() == 0 or len(v) != len(held)), None)
    if ragged is not None:
        raise io.read_error(path, f"{ragged} has not one row per seed")


def describe_level(state: dict[str, torch.Tensor], tasks: list[TaskInfo], params: int) -> str:
    """One compact progress line: parameters left, epochs, mean test accuracy per task."""
    acc = state["metrics.test_acc_tasks"].mean(dim=0)
    accs = " ".join(f"{t.name} {a:.3f}" for t, a in zip(tasks, acc.tolist()))
    epochs = state.get("metrics.epochs")
    ep = f", epochs {int(epochs.float().mean())}" if epochs is not None else ""
    codes = state.get("metrics.stop_code")
    diverged = int((codes == STOP_REASONS.index("diverged")).sum()) if codes is not None else 0
    warn = f"  WARNING: {diverged} network(s) diverged" if diverged else ""
    return f"{params} params{ep}; test acc {accs}{warn}"


# ---- tables -------------------------------------------------------------------------------------
# columns of reports/imp/levels.csv that tell it from any other table (the stages reading it ask
# for them: a table of another kind under its name is named so, not a KeyError)
LEVELS_COLUMNS = ("seed", "level", "base_level", "params", "epochs", "stop_reason", "test_acc")


def level_tables(state: dict[str, torch.Tensor], layout: Layout, prunable: torch.Tensor,
                 tasks: list[TaskInfo], level: int, base_level: int, prefix: str = ""):
    """(rows of levels.csv, curves frame) of one level file for one population."""
    import pandas as pd

    seeds = state["seeds"].tolist()
    mask = layout.from_state(state, prefix, masks=True)
    is_bias = layout.is_bias()
    frame = pd.DataFrame({
        "seed": seeds, "level": level, "base_level": base_level,
        "params": (mask & prunable).sum(dim=1).numpy(), "weights": mask[:, ~is_bias].sum(dim=1).numpy(),
        "biases": mask[:, is_bias].sum(dim=1).numpy(),
    })
    m = lambda key: state[f"{prefix}metrics.{key}"]  # noqa: E731
    frame["epochs"] = m("epochs").numpy()
    frame["best_epoch"] = m("best_epoch").numpy()
    frame["stop_reason"] = [STOP_REASONS[int(c)] for c in m("stop_code")]
    for split in ("train", "val", "test"):
        frame[f"{split}_loss"] = m(f"{split}_loss").numpy()
    frame["test_acc"] = m("test_acc_tasks").mean(dim=1).numpy()
    for i, t in enumerate(tasks):
        frame[f"test_acc_{t.name}"] = m("test_acc_tasks")[:, i].numpy()
    train_c, val_c = state[f"{prefix}curves.train_loss"], state[f"{prefix}curves.val_loss"]
    k, e = train_c.shape
    curves = pd.DataFrame({"seed": np.repeat(seeds, e), "level": level,
                           "epoch": np.tile(np.arange(1, e + 1), k),
                           "train_loss": train_c.reshape(-1).numpy(),
                           "val_loss": val_c.reshape(-1).numpy()})
    curves = curves[np.isfinite(curves["train_loss"].to_numpy())
                    | np.isfinite(curves["val_loss"].to_numpy())]
    return frame, curves
