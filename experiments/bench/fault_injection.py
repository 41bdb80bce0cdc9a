r"""Fault injection: SIGKILL a tiny training run at random moments, resume it, and check it is bitwise exact.

    python -m experiments.bench.fault_injection [--kills=12] [--write_kills=4] [--seed=0] [--out=/tmp/...]

Runs the tiny toy CLI job once uninterrupted (the reference), then once per kill
in a fresh workdir: a SIGKILL at a moment drawn over the reference's wall time
(or, for ``--write_kills`` of them, as soon as orbax's temporary directory of a
randomly chosen checkpoint appears, i.e. during a checkpoint write), then restarts
the same workdir until it completes. Each final checkpoint (params, EMA, optimizer
state, step, key), ``metrics.jsonl`` and ``metrics.json`` (less timings) must equal
the reference's bitwise, each logged step must appear once and no temporary
checkpoint directory may be left. Exits non-zero on any mismatch.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TMP_MARK = ".orbax-checkpoint-tmp"
NUM_STEPS, LOG_EVERY, CHECKPOINT_EVERY = 3000, 50, 200
ARGS = [
    "--config=experiments/configs/toy2d.py",
    "--config.model.mlp.width=32",
    "--config.model.mlp.depth=2",
    "--config.train.batch_size=64",
    "--config.sample.num_steps=4",
    "--config.eval.num_samples=200",
    f"--config.train.num_steps={NUM_STEPS}",
    f"--config.train.log_every={LOG_EVERY}",
    f"--config.train.checkpoint_every={CHECKPOINT_EVERY}",
    "--progress=false",
]


def start(workdir: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "experiments.run", f"--workdir={workdir}", *ARGS]
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(workdir: str, attempts: int = 3) -> tuple[int, str]:
    """Restart ``workdir`` until the run exits 0 (at most ``attempts`` times); return the last exit code and output."""
    for _ in range(attempts):
        proc = start(workdir)
        out, _ = proc.communicate(timeout=900)
        if proc.returncode == 0:
            break
    return proc.returncode, out


def tmp_dirs(ckpt_dir: str) -> list[str]:
    try:
        return sorted(name for name in os.listdir(ckpt_dir) if TMP_MARK in name)
    except FileNotFoundError:
        return []


def latest_checkpoint(ckpt_dir: str) -> int:
    try:
        steps = [int(name) for name in os.listdir(ckpt_dir) if name.isdigit()]
    except FileNotFoundError:
        return 0
    return max(steps, default=0)


def last_logged_step(workdir: str) -> int:
    path = os.path.join(workdir, "metrics.jsonl")
    if not os.path.exists(path):
        return 0
    with open(path) as f:
        lines = [line for line in f if line.endswith("\n")]
    return json.loads(lines[-1])["step"] if lines else 0


def kill_at_moment(workdir: str, moment: float) -> tuple[subprocess.Popen, str]:
    """SIGKILL a fresh run ``moment`` seconds after its start; the phase is read off the disk just before."""
    proc = start(workdir)
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < moment and proc.poll() is None:
        time.sleep(0.005)
    ckpt_dir = os.path.join(workdir, "checkpoints")
    if tmp_dirs(ckpt_dir):
        phase = "during write"
    elif latest_checkpoint(ckpt_dir) == NUM_STEPS:
        phase = "after training"
    else:
        phase = "between checkpoints"
    proc.send_signal(signal.SIGKILL)
    return proc, phase


def kill_during_write(workdir: str, nth: int) -> tuple[subprocess.Popen, str]:
    """SIGKILL a fresh run as soon as the temporary directory of its ``nth`` checkpoint write appears."""
    proc = start(workdir)
    ckpt_dir, seen = os.path.join(workdir, "checkpoints"), set()
    while proc.poll() is None:
        seen.update(tmp_dirs(ckpt_dir))
        if len(seen) >= nth:
            break
        time.sleep(0.001)
    proc.send_signal(signal.SIGKILL)
    return proc, "during write" if len(seen) >= nth else "missed (run ended)"


def compare(ref: str, run: str) -> list[str]:
    """What differs between the finished ``run`` and the reference (empty when bitwise equal)."""
    import jax
    import numpy as np
    import orbax.checkpoint as ocp

    problems = []
    final = [os.path.join(d, "checkpoints", str(NUM_STEPS), "default") for d in (ref, run)]
    if not os.path.isdir(final[1]):
        return [f"no final checkpoint {final[1]}"]
    a, b = (ocp.tree.to_flat_dict(ocp.StandardCheckpointer().restore(p)) for p in final)
    if a.keys() != b.keys():
        problems.append("checkpoint trees differ")
    for key in a.keys() & b.keys():
        x, y = a[key], b[key]
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            x, y = jax.random.key_data(x), jax.random.key_data(y)
        if not np.array_equal(np.asarray(x), np.asarray(y)):
            problems.append(f"checkpoint leaf {'/'.join(map(str, key))} differs")
    logs = []
    for d in (ref, run):
        with open(os.path.join(d, "metrics.jsonl"), "rb") as f:
            logs.append(f.read())
    if logs[0] != logs[1]:
        problems.append("metrics.jsonl differs")
    steps = [json.loads(line)["step"] for line in logs[1].splitlines()]
    if steps != list(range(LOG_EVERY, NUM_STEPS + 1, LOG_EVERY)):
        problems.append("logged steps are not each step once, in order")
    evals = []
    for d in (ref, run):
        with open(os.path.join(d, "metrics.json")) as f:
            m = json.load(f)
        evals.append({k: v for k, v in m.items() if "seconds" not in k})
    if evals[0] != evals[1]:
        problems.append("metrics.json differs")
    if tmp_dirs(os.path.join(run, "checkpoints")):
        problems.append(f"temporary checkpoint directories left: {tmp_dirs(os.path.join(run, 'checkpoints'))}")
    return problems


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kills", type=int, default=12, help="Killed runs (each resumed and checked).")
    p.add_argument("--write_kills", type=int, default=4, help="How many of them are aimed at a checkpoint write.")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="/tmp/jaxdiff_fault_injection")
    args = p.parse_args(argv)
    if args.kills < 1 or not 0 <= args.write_kills <= args.kills:
        raise ValueError(f"need kills >= 1 and 0 <= write_kills <= kills, got {args.kills}, {args.write_kills}")
    rng = random.Random(args.seed)
    shutil.rmtree(args.out, ignore_errors=True)
    t_start = time.perf_counter()

    ref = os.path.join(args.out, "ref")
    t0 = time.perf_counter()
    code, out = finish(ref, attempts=1)
    t_ref = time.perf_counter() - t0
    if code:
        print(out)
        raise RuntimeError(f"the reference run in {ref} failed with exit code {code}")
    print(f"reference: {NUM_STEPS} steps, checkpoint every {CHECKPOINT_EVERY}, {t_ref:.1f} s")

    at_writes = set(rng.sample(range(args.kills), args.write_kills))
    phases, failures = [], 0
    print(f"{'kill':>4}  {'moment':>16}  {'phase':<19}  {'step reached':>12}  {'tmp left':>8}  "
          f"{'resumed from':>12}  verdict")
    for i in range(args.kills):
        workdir = os.path.join(args.out, f"kill{i:02d}")
        if i in at_writes:
            nth = rng.randint(1, NUM_STEPS // CHECKPOINT_EVERY)
            proc, phase = kill_during_write(workdir, nth)
            moment = f"write #{nth} starts"
        else:
            t = rng.uniform(0.0, t_ref)
            proc, phase = kill_at_moment(workdir, t)
            moment = f"{t:.2f} s"
        proc.communicate()
        ckpt_dir = os.path.join(workdir, "checkpoints")
        reached, left, resumed = last_logged_step(workdir), len(tmp_dirs(ckpt_dir)), latest_checkpoint(ckpt_dir)
        code, out = finish(workdir)
        problems = [f"restart failed with exit code {code}: {out[-2000:]}"] if code else compare(ref, workdir)
        if proc.returncode != -signal.SIGKILL:
            problems.append(f"the run ended (exit code {proc.returncode}) before the kill")
        failures += bool(problems)
        verdict = "bitwise equal" if not problems else "MISMATCH: " + "; ".join(problems)
        phases.append(phase)
        print(f"{i + 1:>4}  {moment:>16}  {phase:<19}  {reached:>12}  {left:>8}  {resumed:>12}  {verdict}",
              flush=True)

    wall = time.perf_counter() - t_start
    n_write, n_after = (sum(phase == p for phase in phases) for p in ("during write", "after training"))
    print(f"\n{args.kills} kills ({n_write} during a checkpoint write, {n_after} after training, "
          f"{args.kills - n_write - n_after} between checkpoints), "
          f"{args.kills - failures} resumed bitwise equal to the reference, {failures} mismatched; "
          f"wall time {wall:.0f} s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
