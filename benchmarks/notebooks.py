"""Time every tutorial notebook in full mode (issue #8): prints a table, writes benchmarks/notebooks.json.

    python benchmarks/notebooks.py                 # all seven, in order (04-06 reuse 03's and 05's checkpoints)
    python benchmarks/notebooks.py --only 03 05    # a subset
    python benchmarks/notebooks.py --smoke         # the CI mode (SMOKE=1), for comparison

Each notebook runs top to bottom on a real `python3` kernel from the `tutorial/` folder, exactly as
`jupyter lab` would, with MPLBACKEND=Agg. The executed copies go to `runs/tutorial-executed/` (git keeps
the notebooks stripped); full mode writes its figures to `figures/tutorial/`. Wall-clock depends on
everything else the machine is doing: run it on an otherwise idle machine.
"""
import argparse
import datetime
import json
import os
import pathlib
import platform
import resource
import subprocess
import sys
import time

import nbclient
import nbformat

ROOT = pathlib.Path(__file__).resolve().parents[1]
TUTORIAL = ROOT / "tutorial"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", nargs="*", default=None, help="notebook numbers to run, e.g. 03 05 (default: all)")
    p.add_argument("--smoke", action="store_true", help="SMOKE=1: the shrunk loops CI runs")
    p.add_argument("--timeout", type=int, default=1800, help="seconds allowed per cell (default 1800)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "notebooks.json"), help="JSON to write")
    args = p.parse_args(argv)

    os.environ["MPLBACKEND"] = "Agg"
    os.environ["SMOKE"] = "1" if args.smoke else "0"
    notebooks = sorted(TUTORIAL.glob("[0-9][0-9]_*.ipynb"))
    if args.only:
        notebooks = [n for n in notebooks if n.name[:2] in args.only]
    executed = ROOT / "runs" / "tutorial-executed"
    executed.mkdir(parents=True, exist_ok=True)

    rows = []
    for path in notebooks:
        nb = nbformat.read(path, as_version=4)
        client = nbclient.NotebookClient(nb, timeout=args.timeout, startup_timeout=300, kernel_name="python3",
                                         resources={"metadata": {"path": str(TUTORIAL)}})
        cpu = lambda: sum(resource.getrusage(resource.RUSAGE_CHILDREN)[:2])
        t0, cpu0 = time.time(), cpu()
        client.execute()                    # raises CellExecutionError on the first failing cell
        wall, cpu_s = time.time() - t0, cpu() - cpu0
        nbformat.write(nb, executed / path.name)
        rows.append({"notebook": path.name, "wall_s": round(wall, 1), "kernel_cpu_s": round(cpu_s, 1)})
        print(f"{path.name:32s} {wall:8.1f} s wall {cpu_s:8.1f} s CPU", flush=True)

    import torch
    result = {
        "mode": "smoke" if args.smoke else "full",
        "notebooks": rows,
        "total_wall_s": round(sum(r["wall_s"] for r in rows), 1),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "torch": torch.__version__, "threads": torch.get_num_threads(),
        "date": datetime.date.today().isoformat(),
        "git_commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                     text=True).stdout.strip(),
        "command": "python " + " ".join([os.path.relpath(__file__, ROOT)] + sys.argv[1:]),
    }
    print(f"{'total':32s} {result['total_wall_s']:8.1f} s wall")
    pathlib.Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
