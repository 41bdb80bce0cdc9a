r"""Run one experiment as N processes of JAX's distributed runtime on this machine.

    python -m experiments.launch --num_processes=2 [--devices_per_process=1] [--logs=DIR] -- \
        --config=experiments/configs/toy2d.py --workdir=DIR [--config.FIELD=VALUE ...]

Starts ``python -m experiments.run`` with the arguments after ``--`` as processes 0..N-1 on the CPU
(gloo collectives over a loopback coordinator), each with ``--devices_per_process`` host devices,
and waits for them; exits with the first non-zero exit status, killing the others if one fails.
On a cluster, start ``experiments.run`` once per host instead (see the README's "Multi-host").
"""

from __future__ import annotations

import sys
import time

from absl import app, flags

from jaxdiff.train import distributed

FLAGS = flags.FLAGS


def define_flags() -> None:
    flags.DEFINE_integer("num_processes", 2, "Processes to start.", lower_bound=1)
    flags.DEFINE_integer("devices_per_process", 1, "CPU devices of each process.", lower_bound=1)
    flags.DEFINE_string("logs", None, "Write process i's output to LOGS/process_<i>.log (default: this "
                        "terminal).")


def supervise(processes, poll_s: float = 0.2) -> int:
    """Wait for every process; when one fails, kill the rest. Returns the first non-zero status, or 0."""
    while True:
        codes = [p.poll() for p in processes]
        failed = [c for c in codes if c not in (None, 0)]
        if failed:
            for p in processes:
                if p.poll() is None:
                    p.kill()
                    p.wait()
            return failed[0]
        if all(c == 0 for c in codes):
            return 0
        time.sleep(poll_s)


def main(argv: list[str]) -> None:
    command = [sys.executable, "-m", "experiments.run", *argv[1:]]
    processes = distributed.launch_local(command, FLAGS.num_processes,
                                         cpu_devices_per_process=FLAGS.devices_per_process, log_dir=FLAGS.logs)
    sys.exit(supervise(processes))


if __name__ == "__main__":
    define_flags()
    app.run(main)
