"""``python -m channels.simulators <kind> [options]``: run one platform simulator on loopback."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Sequence

SIMULATORS = {
    "correios": "channels.simulators.correios",
    "lojaintegrada": "channels.simulators.lojaintegrada",
}


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in SIMULATORS:
        known = ", ".join(sorted(SIMULATORS))
        sys.stderr.write(f"usage: python -m channels.simulators <kind> [options]  (kinds: {known})\n")
        return 2
    module = importlib.import_module(SIMULATORS[args[0]])
    run: Callable[[Sequence[str]], int] = module.main
    return run(args[1:])


if __name__ == "__main__":
    raise SystemExit(main())
