"""`dama cache list|verify|prune`: what the caches under $DAMA_HOME/cache hold, check them, free space."""

from __future__ import annotations

import argparse
import time

from dama_asr.errors import DamaError


def _size(n: int) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"


def _age(seconds: float) -> str:
    for unit, length in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= length:
            return f"{seconds / length:.0f} {unit} ago"
    return "just now"


def cmd_list(args: argparse.Namespace) -> None:
    from dama_asr.features.cache_store import cache_root, list_caches

    caches = list_caches()
    if not caches:
        print(f"no caches under {cache_root()}")
        return
    now = time.time()
    print(f"{'cache':<26} {'shards':>7} {'utts':>8} {'size':>10}  last used")
    for c in caches:
        shards = "-" if c.shards is None else str(c.shards)
        utts = "-" if c.utterances is None else str(c.utterances)
        print(f"{c.name:<26} {shards:>7} {utts:>8} {_size(c.size_bytes):>10}  {_age(now - c.last_used)}")
    print(f"total {_size(sum(c.size_bytes for c in caches))} in {cache_root()}")


def cmd_verify(args: argparse.Namespace) -> None:
    from dama_asr.features.cache_store import CacheError, verify_caches

    results = verify_caches(fix=args.fix)
    bad = 0
    for r in results:
        state = "ok" if not (r.bad or r.torn_lines) else ("fixed" if r.fixed else "damaged")
        print(
            f"{r.folder.name}: {r.shards} shard(s), {len(r.bad)} bad, {r.torn_lines} torn index line(s): {state}"
        )
        for shard, problem in r.bad.items():
            print(f"  {shard}: {problem}")
        bad += 0 if r.fixed else len(r.bad) + r.torn_lines
    if bad:
        raise CacheError(
            f"{bad} bad shard(s) or index line(s); `dama cache verify --fix` drops them "
            "(their utterances are encoded again by the next run)"
        )
    print(f"checked {len(results)} encoder cache folder(s)")


def cmd_prune(args: argparse.Namespace) -> None:
    from dama_asr.features.cache_store import prune_caches

    if args.max_gb is not None and args.max_gb < 0:
        raise DamaError(f"--max-gb {args.max_gb}: give a size of 0 or more (GB)")
    report = prune_caches(max_bytes=None if args.max_gb is None else int(args.max_gb * 1e9))
    for path in report.removed_files:
        print(f"removed {path}")
    for cache in report.evicted:
        print(f"evicted {cache.name} ({_size(cache.size_bytes)})")
    for cache in report.in_use:
        read = _age(time.time() - cache.last_used)
        print(f"kept {cache.name} ({_size(cache.size_bytes)}): read {read}, a run may be using it")
    print(f"caches: {_size(report.total_before)} -> {_size(report.total_after)}")
    if args.max_gb is not None and report.total_after > args.max_gb * 1e9:
        print(
            f"still above {args.max_gb} GB: the rest is in use or not an encoder cache (see `dama cache list`)"
        )


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cache", help="list, verify or prune the caches under $DAMA_HOME/cache")
    verbs = p.add_subparsers(dest="cache_command", required=True)
    q = verbs.add_parser("list", help="each cache with shards, utterances, size and last use")
    q.set_defaults(func=cmd_list)
    q = verbs.add_parser("verify", help="read every encoder-cache shard and check its keys and shapes")
    q.add_argument("--fix", action="store_true", help="drop the bad shards (re-encoded by the next run)")
    q.set_defaults(func=cmd_verify)
    q = verbs.add_parser(
        "prune", help="remove abandoned temporary files and dropped shards; with --max-gb, evict too"
    )
    q.add_argument(
        "--max-gb",
        type=float,
        help="evict encoder caches, least recently used first, until all caches fit in this many GB",
    )
    q.set_defaults(func=cmd_prune)
