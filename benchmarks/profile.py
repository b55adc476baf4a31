"""Profile one target under load with py-spy and print where its CPU goes.

    .venv/bin/python benchmarks/profile.py gw-all --mode plain -c 16 -d 15
    .venv/bin/python benchmarks/profile.py gw-all --mode stream --flame results/logs/gw-all.svg

Starts the fake provider (and the OTLP receiver for ``gw-all``), the target pinned like in the suite,
drives ``wrk`` for the duration while ``py-spy record --gil`` samples the target (only the thread holding
the GIL, i.e. where the Python CPU goes), then prints the heaviest functions: inclusive share (the
function and what it calls) and self share. Needs ``py-spy`` (``pip install py-spy``) and ptrace rights.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import threading
from collections import Counter
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from loadgen import have_wrk, run_load
from targets import HERE, Pinning, start_fake, start_receiver, start_target


def _frame_name(frame: str) -> str:
    # py-spy raw frames look like "function (path/to/module.py:123)"; keep function and file, not the line.
    name, _, where = frame.partition(" (")
    path = where.rsplit(":", 1)[0]
    for marker in ("site-packages/", "lib/python3."):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{name} ({path})"


def summarize(collapsed: Path, top: int) -> str:
    """Inclusive and self shares per function from py-spy's collapsed (``--format raw``) output."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = [_frame_name(f) for f in stack.split(";")]
        total += count
        for name in set(frames):
            inclusive[name] += count
        own[frames[-1]] += count
    lines = [f"{total} samples", "", "inclusive %  function", "-----------  --------"]
    lines += [f"{100 * n / total:10.1f}%  {name}" for name, n in inclusive.most_common(top)]
    lines += ["", "self %       function", "-----------  --------"]
    lines += [f"{100 * n / total:10.1f}%  {name}" for name, n in own.most_common(top)]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("target", help="bare-httpx, bare-aiohttp, gw-off, gw-all (and gw-* experiment suffixes)")
    parser.add_argument("--mode", choices=("plain", "stream"), default="plain")
    parser.add_argument("-c", "--concurrency", type=int, default=16)
    parser.add_argument("-d", "--duration", type=int, default=15)
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--flame", type=Path, help="also write a flame graph (SVG) here")
    args = parser.parse_args()
    if shutil.which("py-spy") is None and not (Path(sys.executable).parent / "py-spy").exists():
        sys.exit("py-spy is not installed: pip install py-spy")
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    pin = Pinning.detect()
    logs = HERE / "results" / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="llm-obs-profile-") as tmp:
        work = Path(tmp)
        fake = start_fake(pin, logs, 20)
        stack.callback(fake.stop)
        receiver = None
        if args.target.startswith("gw-all"):
            receiver = start_receiver(pin, logs)
            stack.callback(receiver.stop)
        target = start_target(args.target, fake=fake, receiver=receiver, pin=pin, logs=logs, work=work, server_args=[])
        stack.callback(target.proc.stop)
        run_load(target.url, mode=args.mode, concurrency=args.concurrency, duration=3, pin=pin.load)
        collapsed = work / "profile.txt"
        record = [py_spy, "record", "--pid", str(target.proc.pid), "--rate", str(args.rate), "--duration"]
        record += [str(args.duration), "--nonblocking", "--gil", "--format", "raw", "--output", str(collapsed)]
        spy = subprocess.Popen([*pin.load, *record], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        load = threading.Thread(
            target=run_load,
            args=(target.url,),
            kwargs={
                "mode": args.mode,
                "concurrency": args.concurrency,
                "duration": args.duration + 1,
                "pin": pin.load,
                "use_wrk": have_wrk(),
            },
        )
        load.start()
        spy.wait()
        load.join()
        sys.stdout.write(f"{args.target}, {args.mode}, c={args.concurrency}, {args.duration} s\n")
        sys.stdout.write(summarize(collapsed, args.top))
        if args.flame:
            flame = [py_spy, "record", "--pid", str(target.proc.pid), "--duration", "5", "--nonblocking"]
            flame += ["--output", str(args.flame)]
            threading.Thread(
                target=run_load,
                args=(target.url,),
                kwargs={"mode": args.mode, "concurrency": args.concurrency, "duration": 6, "pin": pin.load},
            ).start()
            subprocess.run([*pin.load, *flame], check=False, capture_output=True)


if __name__ == "__main__":
    main()
