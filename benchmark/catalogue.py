"""One catalogue of everything pluggable, for `mergesec list` and the leaderboard."""

import pandas as pd


def catalogue() -> dict[str, pd.DataFrame]:
    """Name -> table of the registered suites, merge methods and tracks."""
    from benchmark.attacks import list_attacks
    from benchmark.defenses import get_defense, list_defenses
    from benchmark.merging import get_method, list_methods
    from benchmark.suites import list_suites, load_suite
    from benchmark.tracks import TRACKS

    suites = [load_suite(n) for n in list_suites()]
    return {
        "suites": pd.DataFrame([{"suite": s.name, "version": s.version, "hash": s.hash,
                                 "tasks": ", ".join(s.task_names)} for s in suites]),
        "methods": pd.DataFrame([{"method": m.name, "source": m.source, "needs": ", ".join(sorted(m.needs)) or "-",
                                  "hparams": m.hparams, "paper": m.paper} for m in map(get_method, list_methods())]),
        "attacks": pd.DataFrame(list_attacks()),
        "defenses": pd.DataFrame([{"defense": d.name, "stage": d.stage, "source": d.source,
                                   "needs": ", ".join(sorted(d.needs)) or "-", "hparams": d.hparams,
                                   "paper": d.paper} for d in map(get_defense, list_defenses())]),
        "tracks": pd.DataFrame([{"track": name, "about": ((type(t).__doc__ or "").strip().splitlines() or [""])[0]}
                                for name, t in TRACKS.items()]),
    }
